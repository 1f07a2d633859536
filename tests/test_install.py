"""memdiag as pip installs it, not only the checkout: a wheel built from the
sources and installed into a fresh venv (memdiag --version, shell
completion, MEMDIAG_ENABLE=1 through the .pth file at the top of
site-packages), and the .pth of the editable install the tests run from.

The wheel is built once per session, from a copy of the sources (the
checkout's in-place builds stay out of it), with this interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from conftest import ROOT, kill_pid, memdiag

PTH = "memdiag-enable.pth"
VERSION = "%d.%d" % sys.version_info[:2]

# Waits until SIGTERM; prints READY and the memdiag modules it has at startup.
WAITER = textwrap.dedent("""
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    mods = sorted(m for m in sys.modules if "memdiag" in m)
    print("READY pid=%d modules=%s" % (os.getpid(), ",".join(mods) or "-"), flush=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.2)
""")


def run(argv, env=None, cwd=None, timeout=300):
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "MEMDIAG_ENABLE"}
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env,
                       cwd=cwd, timeout=timeout)
    return p


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory):
    """A fresh venv with memdiag installed from a wheel built from the sources."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, "memdiag"), src / "memdiag",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.o"))
    dist = base / "dist"
    p = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "-w", dist, src], cwd=base, timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    (wheel,) = [dist / n for n in os.listdir(dist) if n.endswith(".whl")]
    venv = base / "venv"
    p = run([sys.executable, "-m", "venv", "--without-pip", venv])
    assert p.returncode == 0, p.stderr
    python = venv / "bin" / "python"
    # this venv's pip installs into the fresh one (which has no pip of its own)
    p = run([sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel],
            timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    return {"wheel": wheel, "venv": venv, "python": python, "memdiag": venv / "bin" / "memdiag",
            "site": run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"]).stdout.strip(), "dir": base}


def test_wheel_puts_the_pth_at_the_top_of_site_packages(wheel_venv):
    import zipfile
    with zipfile.ZipFile(wheel_venv["wheel"]) as z:
        names = z.namelist()
        record = z.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
    assert PTH in names and any(line.startswith(PTH + ",sha256=") for line in record.split())
    site = wheel_venv["site"]
    with open(os.path.join(site, PTH)) as f:
        installed = f.read()
    with open(os.path.join(ROOT, "memdiag", "_boot", PTH)) as f:
        assert installed == f.read()
    # one line, run by site.py because it starts with "import"; it imports
    # nothing of memdiag's unless the variable is set
    assert installed.startswith("import os;") and installed.count("\n") == 1
    assert 'os.environ.get("MEMDIAG_ENABLE", "") not in ("", "0") and __import__(' in installed


def test_version_from_the_installed_wheel(wheel_venv, tmp_path):
    p = run([wheel_venv["memdiag"], "--version"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "memdiag 0.1.0"
    assert lines[1] == f"Python {sys.version.split()[0]} ({wheel_venv['python']})"
    assert f"compiled walker: built for {VERSION}" in lines
    assert f"compiled matcher: built for {VERSION}" in lines
    # and it is the installed copy that runs, not the checkout
    p = run([wheel_venv["python"], "-c", "import memdiag; print(memdiag.__file__)"], cwd=tmp_path)
    assert p.stdout.startswith(str(wheel_venv["venv"])), p.stdout


def test_version_says_what_is_missing(tmp_path):
    """Without the compiled modules for this Python (a copy of the package
    without its .so files), --version says so instead of claiming them."""
    pkg = tmp_path / "memdiag"
    shutil.copytree(os.path.join(ROOT, "memdiag"), pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    code = "from memdiag.cli.version import version_text; print(version_text())"
    p = run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(tmp_path)),
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"compiled walker: not built for this Python {VERSION}" in p.stdout, p.stdout
    assert "hooked processes on this Python use the pure-Python one" in p.stdout


def test_completion_from_the_installed_wheel(wheel_venv, tmp_path):
    exe = wheel_venv["memdiag"]
    # typer finds the shell among the command's ancestors, as when a person
    # types it; `; true` keeps bash from exec'ing the command in its place
    p = run(["bash", "-c", f"{exe} --show-completion; true"], cwd=tmp_path)
    assert p.stderr == "", p.stderr
    assert "_MEMDIAG_COMPLETE=complete_bash" in p.stdout
    env = dict(os.environ, _MEMDIAG_COMPLETE="complete_bash", COMP_WORDS="memdiag sn",
               COMP_CWORD="1")
    p = run([exe], env=env, cwd=tmp_path)
    assert p.stdout.split() == ["snapshot"], (p.stdout, p.stderr)
    env.update(COMP_WORDS="memdiag snapshot --ch", COMP_CWORD="2")
    assert run([exe], env=env, cwd=tmp_path).stdout.split() == ["--children"]
    home = tmp_path / "home"
    home.mkdir()
    p = run(["bash", "-c", f"{exe} --install-completion && echo installed"],
            env=dict(os.environ, HOME=str(home)), cwd=tmp_path)
    assert p.stdout.rstrip().endswith("installed"), (p.stdout, p.stderr)
    assert "bash completion installed in" in p.stdout
    assert "memdiag" in (home / ".bashrc").read_text()


@pytest.fixture
def waiters(tmp_path):
    started = []

    def start(python, env):
        script = tmp_path / "waiter.py"
        script.write_text(WAITER)
        out = tmp_path / f"out-{len(started)}.txt"
        err = tmp_path / f"err-{len(started)}.txt"
        with open(out, "w") as o, open(err, "w") as e:
            proc = subprocess.Popen([str(python), str(script)], stdout=o, stderr=e, env=env,
                                    cwd=str(tmp_path))
        started.append(proc)
        deadline = 120
        import time
        t0 = time.monotonic()
        while "READY" not in out.read_text():
            assert proc.poll() is None, (out.read_text(), err.read_text())
            assert time.monotonic() - t0 < deadline, err.read_text()
            time.sleep(0.02)
        line = next(x for x in out.read_text().splitlines() if x.startswith("READY"))
        fields = dict(f.split("=", 1) for f in line.split()[1:])
        return proc, fields, err

    yield start
    for proc in started:
        kill_pid(proc.pid)


def enable_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMDIAG_")}
    env.update(MEMDIAG_ENABLE="1", MEMDIAG_DIR=str(tmp_path / "snaps"), **extra)
    return env


def test_enable_from_the_installed_wheel(wheel_venv, waiters, tmp_path):
    # a registry of its own (it lives under TMPDIR): `ps` lists only the waiter
    (tmp_path / "tmp").mkdir()
    env = enable_env(tmp_path, TMPDIR=str(tmp_path / "tmp"))
    proc, fields, err = waiters(wheel_venv["python"], env)
    pid = int(fields["pid"])
    mods = set(fields["modules"].split(","))
    assert {"memdiag", "memdiag._boot", "memdiag._boot.enable", "_memdiag_boot_loader",
            "_memdiag_hook", "_memdiag_hook.hook"} <= mods, mods
    # the hook, loaded as memdiag run loads it; none of the CLI's side
    assert {m for m in mods if m.startswith("memdiag")} == {
        "memdiag", "memdiag._boot", "memdiag._boot.enable"}, mods
    assert (f"memdiag: pid {pid} writes a heap snapshot to {tmp_path / 'snaps'} on SIGUSR2"
            in err.read_text())
    # the installed CLI, itself started with MEMDIAG_ENABLE=1, is not hooked: it
    # says nothing on stderr and lists only the waiter
    p = run([wheel_venv["memdiag"], "ps", "--json"], env=env, cwd=tmp_path)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert [x["pid"] for x in json.loads(p.stdout)] == [pid]
    p = run([wheel_venv["memdiag"], "snapshot", pid, "--json"], env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    path = json.loads(p.stdout)["path"]
    assert os.path.dirname(path) == str(tmp_path / "snaps") and os.path.getsize(path) > 0
    assert proc.poll() is None


def test_without_the_variable_nothing_of_memdiag_is_imported(wheel_venv, waiters, tmp_path):
    for value in (None, "", "0"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMDIAG_")}
        if value is not None:
            env["MEMDIAG_ENABLE"] = value
        proc, fields, err = waiters(wheel_venv["python"], env)
        assert fields["modules"] == "-", (value, fields)
        assert err.read_text() == ""


def test_enable_in_the_editable_install_with_options(waiters, tmp_path):
    """The venv the tests run in (pip install -e) has the .pth too, and the
    options come from the environment as for memdiag run."""
    site = sysconfig.get_paths()["purelib"]
    if not os.path.exists(os.path.join(site, "__editable__.memdiag-0.1.0.pth")):
        pytest.skip(f"the tests run from a non-editable install ({site})")
    assert os.path.exists(os.path.join(site, PTH))
    env = enable_env(tmp_path, MEMDIAG_SIGNAL="USR1", MEMDIAG_QUIET="1")
    proc, fields, err = waiters(sys.executable, env)
    pid = int(fields["pid"])
    assert err.read_text() == ""                     # MEMDIAG_QUIET
    listed = {x["pid"]: x for x in json.loads(memdiag("ps", "--json")[1])}
    assert listed[pid]["signal"] == "SIGUSR1" and listed[pid]["dir"] == str(tmp_path / "snaps")
    code, out, err = memdiag("snapshot", pid)
    assert code == 0 and os.path.isfile(out.strip()), err
    # the CLI started as `python -m memdiag.cli.main` under MEMDIAG_ENABLE is not hooked
    p = run([sys.executable, "-m", "memdiag.cli.main", "ps"], env=env, cwd=ROOT)
    assert p.returncode == 0 and "writes a heap snapshot" not in p.stderr
