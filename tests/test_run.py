"""`memdiag run -- COMMAND`: the hook goes into any Python program through
PYTHONPATH. Real programs, started through the real CLI, signaled through
`memdiag snapshot`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, memdiag, memdiag_json
from hookutil import (PROGRAMS, expected_walker, hook_lines, load, start,  # noqa: F401
                      walker_env)
from needs import compiled_walker_missing

from memdiag import snapfile as sf
from memdiag.analysis.paths import retainer_path

TARGET = os.path.join(PROGRAMS, "run_target.py")
RUN = [sys.executable, "-m", "memdiag.cli.main", "run"]


def run(start, tmp_path, command, *options, env=None, cwd=None):
    """Start `memdiag run --dir D OPTIONS -- COMMAND`; the Program is the target
    itself, since run execs it."""
    d = str(tmp_path / "snaps")
    p = start(argv=[*RUN, "--dir", d, *options, "--", *command], env=env, cwd=cwd)
    p.info = p.ready()
    p.dir = d
    return p


def snapshot(p):
    code, out, err = memdiag("snapshot", p.pid, "--timeout", 60)
    assert code == 0, (code, out, err, p.stderr())
    path = out.strip()
    assert os.path.dirname(path) == p.dir
    return path


def grow_and_diff(p, n=500):
    a = snapshot(p)
    p.send(f"grow {n}")
    p.wait_line("GREW")
    b = snapshot(p)
    d = memdiag_json("diff", a, b)
    first = d["suspects"][0]
    assert first["path"] == "__main__.LEAKY", d["suspects"][:3]
    assert first["growth"] == n and first["added_type"].endswith("LeakedItem")
    return a, b


def test_run_script_execs_so_the_program_has_run_s_pid(start, tmp_path):
    env = dict(os.environ)
    env.pop("MEMDIAG_QUIET", None)
    p = run(start, tmp_path, [sys.executable, TARGET], env={**env, "MEMDIAG_QUIET": ""})
    assert int(p.info["pid"]) == p.proc.pid           # no wrapper process in between
    assert p.info["hook"] == "True" and p.info["memdiag"] == "False"
    banner = hook_lines(p.stderr())
    assert banner == [f"memdiag: pid {p.pid} writes a heap snapshot to {p.dir} on SIGUSR2 "
                      f"(memdiag snapshot {p.pid})"]
    a, b = grow_and_diff(p)
    assert load(b).meta["argv"] == [sys.executable, TARGET]     # sys.orig_argv


def test_run_python_dash_m_module(start, tmp_path):
    shutil.copy(TARGET, tmp_path / "leakmod.py")
    p = run(start, tmp_path, [sys.executable, "-m", "leakmod"], cwd=str(tmp_path))
    assert int(p.info["pid"]) == p.proc.pid and p.info["hook"] == "True"
    grow_and_diff(p)


def test_run_console_script_found_on_path(start, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "leaky-service"
    with open(TARGET) as f:
        script.write_text(f"#!{sys.executable}\n" + f.read())
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = run(start, tmp_path, ["leaky-service"], env=env)
    assert int(p.info["pid"]) == p.proc.pid and p.info["hook"] == "True"
    grow_and_diff(p)


def test_run_unknown_command_is_a_usage_error(tmp_path):
    code, out, err = memdiag("run", "--", "no-such-program-memdiag")
    assert code == 2 and "command not found: no-such-program-memdiag" in err


# -------------------------------------------------- another interpreter, bare

def other_python():
    """A pyenv-style interpreter of another minor version, without memdiag."""
    mine = "%d.%d" % sys.version_info[:2]
    for v in ("3.13", "3.12", "3.11"):
        if v == mine:
            continue
        p = subprocess.run([os.path.join(ROOT, "scripts", "find-python"), v],
                           capture_output=True, text=True)
        exe = p.stdout.strip()
        if p.returncode == 0 and exe:
            probe = subprocess.run([exe, "-c", "import memdiag"], capture_output=True,
                                   cwd="/", env={k: v for k, v in os.environ.items()
                                                 if k != "PYTHONPATH"})
            if probe.returncode != 0:          # memdiag not installed there
                return v, exe
    pytest.skip("no other Python interpreter without memdiag")


def test_run_with_a_bare_interpreter_of_another_version(start, tmp_path):
    version, exe = other_python()
    p = run(start, tmp_path, [exe, TARGET], cwd=str(tmp_path))
    assert p.info["python"] == version and p.info["hook"] == "True"
    p.send("imports")
    imports = json.loads(p.wait_line("IMPORTS")[len("IMPORTS "):])
    # memdiag's own dependencies stay out of the target's path.
    assert imports == {"numpy": False, "rich": False, "typer": False, "memdiag": False}
    a, b = grow_and_diff(p)
    meta = load(b).meta
    assert meta["python"].startswith(version + ".")
    # memdiag run found a compiled walker for that version, or built one
    # (tests/test_walkers.py has the cases where it cannot).
    if meta["walker"] != "c":
        compiled_walker_missing(f"the compiled walker for Python {version} "
                                f"({meta.get('walker_reason')})")


# ------------------------------------------------------- the program's own site

def test_programs_own_sitecustomize_still_runs(start, tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text(
        "import builtins\nbuiltins.OWN_SITECUSTOMIZE_RAN = True\n")
    env = {**os.environ, "PYTHONPATH": str(own)}
    p = run(start, tmp_path, [sys.executable, TARGET], env=env)
    assert p.info["own_site"] == "True" and p.info["hook"] == "True"
    snapshot(p)
    assert "Error in sitecustomize" not in p.stderr()


# ------------------------------------------------------------------ options

def sigcgt(pid):
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("SigCgt:"))
    return int(line.split()[1], 16)


def test_run_signal_usr1(start, tmp_path):
    import signal
    p = run(start, tmp_path, [sys.executable, TARGET], "--signal", "USR1")
    caught = sigcgt(p.pid)
    assert caught >> (signal.SIGUSR1 - 1) & 1
    assert not caught >> (signal.SIGUSR2 - 1) & 1       # USR2 left as it was
    path = snapshot(p)                                   # sends USR1, from the registry
    assert os.path.basename(path) == f"memdiag-{p.pid}-1.snap"


def line_of(text):
    with open(TARGET) as f:
        return 1 + next(n for n, line in enumerate(f) if text in line)


def traced_snapshot(start, tmp_path, walker):
    p = run(start, tmp_path, [sys.executable, TARGET], "--trace-frames", "5",
            env=walker_env(walker))
    p.send("grow 200")
    p.wait_line("GREW")
    s = load(snapshot(p))
    assert s.meta["tracemalloc"] is True and s.meta["walker"] == expected_walker(walker)
    assert s.sites, "the trailer has no sites"
    return s


def site_frames(s, i):
    site = int(s.site[i])
    return [list(f) for f in s.sites[site - 1]] if site else []


# With tracing on, the pure-Python walk takes seconds even on a small heap.
TRACE_WALKERS = [pytest.param("python", marks=pytest.mark.slow), "compiled"]


@pytest.mark.parametrize("walker", TRACE_WALKERS)
def test_run_trace_frames_records_allocation_sites(start, tmp_path, walker):
    s = traced_snapshot(start, tmp_path, walker)
    # A str made at run time (lists and tuples may come from free lists,
    # which tracemalloc does not see).
    canary = [i for i in s.find_type("str") if retainer_path(s, i).text() == "__main__.CANARY"]
    assert len(canary) == 1
    assert [TARGET, line_of("CANARY = ")] in site_frames(s, canary[0])
    sites = s.site
    assert int((sites > 0).sum()) > 10 and int(sites.max()) <= len(s.sites)


@pytest.mark.parametrize("walker", [
    # The compiled walker looks their block up itself.
    pytest.param("python", marks=[pytest.mark.slow, pytest.mark.xfail(
        sys.version_info[:2] == (3, 11), strict=True, raises=AssertionError,
        reason="3.11's tracemalloc looks up objects with a managed dict at the wrong address "
               "(it forgets their pre-header) and finds no traceback")]),
    "compiled"])
def test_run_trace_frames_site_of_class_instances(start, tmp_path, walker):
    s = traced_snapshot(start, tmp_path, walker)
    items = s.find_type("LeakedItem")
    assert len(items) == 200
    line = line_of("LEAKY.append(LeakedItem")
    assert all([TARGET, line] in site_frames(s, i) for i in items)


def string_data(path):
    r = sf.Reader.open(path)
    try:
        n = r.trailer.get("strings", 0)
        data = bytes(r.column_values(sf.COL_STR_DATA)) if n else b""
    finally:
        r.close()
    return n, data


@pytest.mark.parametrize("strings", [True, False])
def test_run_strings_writes_contents_only_when_asked(start, tmp_path, strings):
    p = run(start, tmp_path, [sys.executable, TARGET], *(["--strings"] if strings else []))
    path = snapshot(p)
    n, data = string_data(path)
    assert load(path).meta["strings"] is strings
    if strings:
        assert n > 1000 and b"canary-memdiag-strings-42" in data
    else:
        assert n == 0 and data == b""
        with open(path, "rb") as f:
            assert b"canary-memdiag-strings-42" not in f.read()


# ---------------------------------------------------------------- gunicorn

APP = """
LEAK = []


class Request:
    def __init__(self, path):
        self.path = path


def app(environ, start_response):
    LEAK.append(Request(environ.get("PATH_INFO", "")))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(len(LEAK)).encode()]
"""


@pytest.fixture(scope="session")
def gunicorn(tmp_path_factory):
    """gunicorn from the test environment, else installed into a scratch venv."""
    here = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    if os.path.exists(here):
        return here
    venv = tmp_path_factory.mktemp("gunicorn-venv")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "gunicorn"], check=True, capture_output=True, timeout=240)
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"gunicorn cannot be installed here: {e}")
    return str(venv / "bin" / "gunicorn")


def get(port, n):
    for _ in range(n):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/leak", timeout=10) as r:
            r.read()


def test_gunicorn_worker_snapshots_show_the_leak(start, tmp_path, gunicorn):
    appdir = tmp_path / "app"
    appdir.mkdir()
    (appdir / "leakyapp.py").write_text(APP)
    d = str(tmp_path / "snaps")
    extra = []
    helptext = subprocess.run([gunicorn, "--help"], capture_output=True, text=True).stdout
    if "--control-socket " in helptext:        # gunicorn 25+: keep it out of $HOME
        extra = ["--control-socket", str(tmp_path / "gunicorn.ctl")]
    master = start(argv=[*RUN, "--dir", d, "--", gunicorn, "-w", "1", "-b", "127.0.0.1:0",
                         "--chdir", str(appdir), *extra, "leakyapp:app"], cwd=str(appdir))
    deadline = time.monotonic() + 30
    port = worker = None
    while time.monotonic() < deadline and not (port and worker):
        err = master.stderr()
        m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", err)
        w = re.search(r"Booting worker with pid: (\d+)", err)
        port, worker = (m and int(m.group(1))), (w and int(w.group(1)))
        assert master.alive(), err
        time.sleep(0.05)
    assert port and worker, master.stderr()
    start.pids.append(worker)
    # The arbiter takes SIGUSR2 for itself (re-exec): the hook steps aside there.
    assert any("taken over" in line and str(master.pid) in line
               for line in hook_lines(master.stderr())), master.stderr()
    get(port, 50)
    a = memdiag_json("snapshot", worker, "--timeout", 60)["path"]
    get(port, 300)
    b = memdiag_json("snapshot", worker, "--timeout", 60)["path"]
    assert load(b).meta["pid"] == worker
    d = memdiag_json("diff", a, b)
    first = d["suspects"][0]
    assert first["path"] == "leakyapp.LEAK", d["suspects"][:3]
    assert first["growth"] == 300 and first["added_type"] == "leakyapp.Request"
    code, out, err = memdiag("snapshot", master.pid, "--timeout", 5)
    assert code == 4                                   # not sent to the arbiter
    assert master.alive()


def test_run_warns_when_the_interpreter_ignores_the_environment(tmp_path):
    """python -I (or -E, -S) ignores PYTHONPATH or skips site: no hook, and run says so."""
    import subprocess
    import sys
    script = tmp_path / "hello.py"
    script.write_text("import sys; print('modules', '_memdiag_hook' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-m", "memdiag.cli.main", "run", "--",
                        sys.executable, "-I", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "modules False" in p.stdout
    assert "python -I ignores PYTHONPATH" in p.stderr
    p = subprocess.run([sys.executable, "-m", "memdiag.cli.main", "run", "--",
                        sys.executable, str(script)],
                       capture_output=True, text=True, timeout=60)
    assert "modules True" in p.stdout and "warning" not in p.stderr
