"""`memdiag attach PID`: the hook goes into a running Python process that was
started without memdiag. Real processes under other Pythons than the CLI's
(3.14/3.15 through sys.remote_exec, 3.11-3.13 through a debugger), real
signals, real HTTP load on 127.0.0.1.

After every refusal the target must be as it was: running, its signal
handlers unchanged (SigCgt), no debugger attached (TracerPid 0), and no
attach directory left behind.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

from conftest import ROOT, SAMPLES, kill_pid, memdiag, memdiag_json, run_load, wait_ready
from needs import tool_missing
from safety_helpers import NOBODY, NOGROUP, as_user, nobody_python  # noqa: F401

from memdiag import protocol
from memdiag.attach import debugger as attach_debugger
from memdiag.attach import elf

EXIT_USAGE, EXIT_TARGET = 2, 4
TARGET = os.path.join(ROOT, "tests", "programs", "attach_target.py")
LEAK_PATH = "ccap.timer.timer['reg_ary']"


# ------------------------------------------------------------ interpreters

def find_python(version):
    """An interpreter of `version` (scripts/find-python, then debian-python's cache), or None."""
    p = subprocess.run([os.path.join(ROOT, "scripts", "find-python"), version],
                       capture_output=True, text=True)
    if p.returncode == 0 and p.stdout.strip():
        return p.stdout.strip()
    cached = os.path.expanduser(f"~/.cache/debian-python/{version}/bin/python{version}")
    return cached if os.access(cached, os.X_OK) else None


def python_for(route):
    """(version, interpreter) a target on `route` runs: remote_exec needs 3.14+, the
    debugger route 3.11-3.13 (3.12 first: not the tested pair's 3.11 or 3.15)."""
    versions = ("3.15", "3.14") if route == "remote_exec" else ("3.12", "3.13", "3.11")
    for v in versions:
        exe = find_python(v)
        if exe:
            return v, exe
    tool_missing(f"no Python {' or '.join(versions)} here for the {route} route "
                 f"(scripts/find-python finds none)")


def need_debugger():
    if not attach_debugger.candidates():
        tool_missing("no gdb or lldb here for Python 3.11-3.13 targets: "
                     "scripts/install-debugger installs one")


ROUTES = ["remote_exec", "debugger"]


def python_route(route):
    version, exe = python_for(route)
    if route == "debugger":
        need_debugger()
    return version, exe


# ------------------------------------------------------------ targets

def plain_env():
    """The environment of a program started without memdiag: no PYTHONPATH, no
    MEMDIAG_* variables. TMPDIR stays (the tests' private temp directory), and
    so does PYTHONDONTWRITEBYTECODE: a target that loads the hook would write
    .pyc files into the checkout's memdiag/, which changes what other tests'
    programs allocate at startup."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("MEMDIAG_") and k not in ("PYTHONPATH", "PYTHONHOME",
                                                          "PYTHONSTARTUP", "VIRTUAL_ENV")}


class Proc:
    """A running target; stdout and stderr go to files, stdin is a pipe."""

    def __init__(self, argv, tmp_path, env=None, cwd=None, preexec_fn=None):
        n = time.monotonic_ns()
        self.out_path = str(tmp_path / f"out-{n}.txt")
        self.err_path = str(tmp_path / f"err-{n}.txt")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            if preexec_fn is not None:
                os.chmod(self.out_path, 0o666)
                os.chmod(self.err_path, 0o666)
            self.proc = subprocess.Popen(argv, env=plain_env() if env is None else env,
                                         stdout=out, stderr=err, stdin=subprocess.PIPE,
                                         cwd=cwd or str(tmp_path), preexec_fn=preexec_fn)
        self.pid = self.proc.pid

    def stdout(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_line(self, prefix, count=1, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [ln for ln in self.stdout().splitlines() if ln.startswith(prefix)]
            if len(found) >= count:
                return found[count - 1]
            assert self.alive(), (self.stdout(), self.stderr())
            time.sleep(0.01)
        raise AssertionError(f"no {prefix!r} line:\n{self.stdout()}\n{self.stderr()}")

    def state(self):
        n = len([ln for ln in self.stdout().splitlines() if ln.startswith("STATE ")])
        self.send("state")
        return json.loads(self.wait_line("STATE ", n + 1)[len("STATE "):])

    def alive(self):
        return self.proc.poll() is None


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        kill_pid(p.pid)
        if p.proc.stdin:
            p.proc.stdin.close()


def start(procs, tmp_path, argv, **kw):
    p = Proc(argv, tmp_path, **kw)
    procs.append(p)
    return p


def start_program(procs, tmp_path, python, *args, target=TARGET, **kw):
    p = start(procs, tmp_path, [python, target, *args], **kw)
    p.wait_line("READY")
    return p


def start_sample(procs, tmp_path, python, script="captcha_leak.py"):
    p = start(procs, tmp_path, [python, os.path.join(SAMPLES, script), "--max-seconds", "300"])
    p.port = wait_ready(p.out_path, p.proc)
    return p


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def attach_dirs(pid):
    return glob.glob(os.path.join(tempfile.gettempdir(), f"memdiag-attach-{pid}-*"))


def assert_untouched(p, sigcgt):
    """The target after a refused or failed attach: as it was."""
    assert p.alive(), p.stderr()
    st = status(p.pid)
    assert st["TracerPid"].strip() == "0", st["TracerPid"]
    assert st["SigCgt"] == sigcgt, "the target's signal handlers changed"
    assert attach_dirs(p.pid) == []
    assert "Traceback" not in p.stderr(), p.stderr()


def refused(args, code=EXIT_TARGET, env=None, **kw):
    """Run the CLI; expect `code` and exactly one line on stderr; return it."""
    e = dict(os.environ if env is None else env)
    e.pop("MEMDIAG_DEBUG", None)
    rc, out, err = memdiag(*args, env=e, **kw)
    assert rc == code, (args, rc, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("memdiag: error: "), err
    return lines[0]


def attach_json(pid, *args, env=None):
    rc, out, err = memdiag("attach", pid, *args, "--json", env=env)
    assert rc == 0, (rc, out, err)
    return json.loads(out)


def snapshot(pid):
    rc, out, err = memdiag("snapshot", pid, "--timeout", 120)
    assert rc == 0, (rc, out, err)
    return out.strip()


def stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as resp:
        return json.loads(resp.read())


# ------------------------------------------------------------ end to end

@pytest.mark.parametrize("route", ROUTES)
def test_attach_then_snapshots_and_diff_name_the_leak(procs, tmp_path, route):
    """The issue's case: a sample leak started with plain `pythonX.Y app.py`,
    no memdiag anywhere in its environment; attach, snapshot twice, diff."""
    version, python = python_route(route)
    probe = subprocess.run([python, "-c", "import memdiag"], env=plain_env(), cwd=str(tmp_path),
                           capture_output=True, text=True)
    assert probe.returncode != 0, "the target could import memdiag: not a clean environment"
    t = start_sample(procs, tmp_path, python)
    info = attach_json(t.pid)
    assert info["state"] == "installed" and info["python"].startswith(version + ".")
    assert ("sys.remote_exec" in info["method"]) == (route == "remote_exec"), info["method"]
    assert info["signal"] == "SIGUSR2" and info["hook_module"] == "_memdiag_hook.hook"
    if info["walker"] == "python":
        assert version in info["walker_reason"], info
    else:
        assert info["walker"] == "compiled" and info["walker_reason"] is None
    assert status(t.pid)["TracerPid"].strip() == "0"
    assert attach_dirs(t.pid) == []
    a = snapshot(t.pid)
    r = run_load(t.port, "/captcha", 300, concurrency=4, max_seconds=120)
    assert r["ok"] == 300 and r["failed"] == 0, r
    b = snapshot(t.pid)
    d = memdiag_json("diff", a, b)
    first = d["suspects"][0]
    assert first["path"] == LEAK_PATH, d["suspects"][:3]
    assert first["growth"] == 300 and first["added_type"] == "ccap.cap.CAP"
    from memdiag.model import Snapshot
    walker = Snapshot.load(b).meta["walker"]
    assert walker == ("python" if info["walker"] == "python" else "c"), walker
    err = t.stderr()
    assert f"memdiag: attached: pid {t.pid} writes a heap snapshot" in err
    assert "Traceback" not in err, err


@pytest.mark.parametrize("route", ROUTES)
def test_attach_under_http_load_loses_no_request(procs, tmp_path, route):
    """Attach while four clients keep the server busy: every request answered."""
    _, python = python_route(route)
    t = start_sample(procs, tmp_path, python)
    stop = threading.Event()
    rounds = []

    def load():
        for _ in range(300):                      # at most 300 rounds of 200 requests
            rounds.append(run_load(t.port, "/captcha", 200, concurrency=4, max_seconds=60))
            if stop.is_set():
                return

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while not rounds and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rounds, "the load did not start"
    before = len(rounds)
    try:
        info = attach_json(t.pid)
    finally:
        stop.set()
        worker.join(180)
    assert not worker.is_alive()
    assert info["state"] == "installed"
    assert len(rounds) > before, "no load round ran across the attach"
    sent = 200 * len(rounds)
    assert sum(r["failed"] for r in rounds) == 0, [r for r in rounds if r["failed"]]
    assert sum(r["ok"] for r in rounds) == sent
    assert stats(t.port)["requests"] == sent


def test_debugger_route_with_busy_threads_leaves_main_untouched(procs, tmp_path):
    """Two threads run Python code without pause (PyGILState_Ensure from a
    debugger deadlocked here); the pending call still runs, on the main
    thread, and binds no name in __main__."""
    _, python = python_route("debugger")
    p = start_program(procs, tmp_path, python, "--busy-threads", "2")
    before = p.state()
    info = attach_json(p.pid, "--timeout", 120)
    assert info["state"] == "installed" and "sys.remote_exec" not in info["method"]
    after = p.state()
    assert after["main_names"] == before["main_names"]
    assert after["usr2"] == "_memdiag_hook.hook._on_signal" and after["hook_loaded"]
    assert not after["memdiag_loaded"]


@pytest.mark.parametrize("route", ROUTES)
def test_attach_leaves_no_garbage_of_its_own_in_the_target(procs, tmp_path, route):
    """With the gc off, a cycle the injected code left behind (its functions and
    their namespace) would stay, and show in snapshots as unreached objects.
    Importing modules leaves garbage of the standard library's own; none of
    memdiag's."""
    _, python = python_route(route)
    p = start_program(procs, tmp_path, python, "--no-gc")
    assert attach_json(p.pid)["state"] == "installed"
    p.send("collect")
    line = p.wait_line("COLLECTED")
    assert line.endswith(" OURS 0"), line


def test_attach_twice_installs_one_handler(procs, tmp_path):
    """A second attach (and --snapshot) finds the hook and changes nothing."""
    p = start_program(procs, tmp_path, sys.executable)
    first = attach_json(p.pid)
    assert first["state"] == "installed"
    handlers = status(p.pid)["SigCgt"]
    again = attach_json(p.pid, "--snapshot")
    assert again["state"] == "already" and again["method"] is None
    assert again["dir"] == first["dir"] and os.path.isfile(again["snapshot"])
    assert status(p.pid)["SigCgt"] == handlers
    rc, out, err = memdiag("attach", p.pid)
    assert rc == 0 and f"pid {p.pid} has the memdiag hook already (SIGUSR2); nothing changed" in out
    assert p.state()["usr2"] == "_memdiag_hook.hook._on_signal"


def test_attach_after_memdiag_run_is_a_noop(procs, tmp_path):
    run = [sys.executable, "-m", "memdiag.cli.main", "run", "--dir", str(tmp_path / "snaps"),
           "--", sys.executable, TARGET]
    env = dict(os.environ, PYTHONPATH=ROOT, MEMDIAG_QUIET="1")
    p = start(procs, tmp_path, run, env=env, cwd=ROOT)
    p.wait_line("READY")
    handlers = status(p.pid)["SigCgt"]
    info = attach_json(p.pid)
    assert info["state"] == "already" and info["method"] is None
    assert info["dir"] == str(tmp_path / "snaps")
    assert status(p.pid)["SigCgt"] == handlers


def test_attach_with_another_signal_finds_run_s_hook_in_the_target(procs, tmp_path):
    """memdiag run's hook on SIGUSR2, its registry where this CLI does not look
    (the target's own TMPDIR): attach --signal USR1 injects, and the code in
    the target finds the hook and installs no second handler."""
    other = tmp_path / "other-tmp"
    other.mkdir()
    run = [sys.executable, "-m", "memdiag.cli.main", "run", "--", sys.executable, TARGET]
    env = dict(os.environ, PYTHONPATH=ROOT, MEMDIAG_QUIET="1", TMPDIR=str(other))
    p = start(procs, tmp_path, run, env=env, cwd=ROOT)
    p.wait_line("READY")
    handlers = status(p.pid)["SigCgt"]
    rc, out, err = memdiag("attach", p.pid, "--signal", "USR1", "--json")
    assert rc == 0, (rc, out, err)
    info = json.loads(out)
    assert info["state"] == "already" and info["signal"] == "SIGUSR2", info
    assert info["registry"].startswith(str(other)) and "TMPDIR=" in info["warning"]
    assert status(p.pid)["SigCgt"] == handlers        # no SIGUSR1 handler added
    assert p.state()["usr2"] == "_memdiag_hook.hook._on_signal"


@pytest.mark.parametrize("route", ROUTES)
def test_timeout_leaves_nothing_to_install_later(procs, tmp_path, route):
    """The main thread blocks in read(2): no safe point. Attach gives up; when
    the target runs the queued code later, it finds the request called off,
    removes the directory and installs nothing."""
    _, python = python_route(route)
    p = start_program(procs, tmp_path, python)
    handlers = status(p.pid)["SigCgt"]
    p.send("block")
    p.wait_line("BLOCKED")
    line = refused(["attach", p.pid, "--timeout", "1"])
    assert "did not reach a safe point within 1s" in line and "waits for input (read)" in line
    assert "nothing will be later" in line
    assert p.alive() and status(p.pid)["TracerPid"].strip() == "0"
    assert status(p.pid)["SigCgt"] == handlers
    assert len(attach_dirs(p.pid)) == 1     # kept for the target's queued code
    p.send("go")
    p.wait_line("RELEASED")
    state = p.state()
    assert state["usr2"] == "default" and not state["hook_loaded"]
    deadline = time.monotonic() + 60
    while attach_dirs(p.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert attach_dirs(p.pid) == [], "the called-off code did not clean up after itself"
    assert status(p.pid)["SigCgt"] == handlers
    assert "Traceback" not in p.stderr() and "memdiag" not in p.stderr(), p.stderr()


# ------------------------------------------------------------ refusals

def test_no_such_pid():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert f"no process with pid {gone.pid}" in refused(["attach", gone.pid])
    assert "not a valid pid" in refused(["attach", "--", "0"])


def test_not_a_python_process(procs, tmp_path):
    p = start(procs, tmp_path, ["sleep", "120"])
    while status(p.pid).get("Name") != "sleep":   # exec done
        time.sleep(0.01)
    handlers = status(p.pid)["SigCgt"]
    line = refused(["attach", p.pid])
    assert f"pid {p.pid} (sleep) is not a Python process" in line
    assert_untouched(p, handlers)


def test_bad_signal_option(procs, tmp_path):
    p = start_program(procs, tmp_path, sys.executable)
    handlers = status(p.pid)["SigCgt"]
    assert "SIGKILL cannot be caught" in refused(["attach", p.pid, "--signal", "KILL"], EXIT_USAGE)
    assert "unknown signal" in refused(["attach", p.pid, "--signal", "NOPE"], EXIT_USAGE)
    assert_untouched(p, handlers)


def test_program_with_its_own_handler_is_refused(procs, tmp_path):
    p = start_program(procs, tmp_path, sys.executable, "--own-usr2")
    handlers = status(p.pid)["SigCgt"]
    line = refused(["attach", p.pid])
    assert "has its own handler for SIGUSR2" in line and "--signal USR1" in line
    assert_untouched(p, handlers)
    os.kill(p.pid, signal.SIGUSR2)        # its handler is still the one that runs
    p.wait_line("GOT-USR2")
    assert p.state()["usr2"] == "__main__._own_usr2"


def test_python_too_old(procs, tmp_path):
    exe = find_python("3.10")
    if exe is None:
        pytest.skip("no Python 3.10 here (test_python_version_outside_the_range covers the "
                    "refusal with a patched interpreter)")
    p = start_program(procs, tmp_path, exe)
    handlers = status(p.pid)["SigCgt"]
    line = refused(["attach", p.pid])
    assert "runs Python 3.10" in line and "3.11 to 3.15" in line
    assert_untouched(p, handlers)


def shared_libpython(python):
    """Path of the libpython a --enable-shared interpreter loads, or skip."""
    code = ("import sysconfig as s, os; print(os.path.join(s.get_config_var('LIBDIR'), "
            "s.get_config_var('INSTSONAME') or ''))")
    path = subprocess.run([python, "-c", code], capture_output=True, text=True,
                          env=plain_env()).stdout.strip()
    if ".so" not in os.path.basename(path) or not os.path.isfile(path):
        pytest.skip(f"{python} is not a --enable-shared build (no libpython to patch a copy of)")
    return path


def patched_copy(libpython, tmp_path, edit):
    """A copy of libpython with `edit(data, sections)` applied, to LD_PRELOAD."""
    out = tmp_path / "patched"
    out.mkdir(exist_ok=True)
    dst = out / os.path.basename(libpython)
    data = bytearray(open(libpython, "rb").read())
    with open(libpython, "rb") as f:
        sections = elf._sections(f)
    edit(data, sections, libpython)
    dst.write_bytes(bytes(data))
    return str(dst)


def rename_dynamic_symbol(name, new):
    def edit(data, sections, path):
        dynsym = next(s for s in sections if s[0] == elf.SHT_DYNSYM)
        _, _, offset, size, _, _ = sections[dynsym[4]]
        at = data.find(b"\0" + name.encode() + b"\0", offset, offset + size)
        assert at >= 0, f"{name} not in {path}'s .dynstr"
        data[at + 1:at + 1 + len(new)] = new.encode()
    return edit


def set_py_version(hexversion):
    def edit(data, sections, path):
        sym = elf.dynamic_symbols(path, {"Py_Version"})["Py_Version"]
        _, addr, offset, _, _, _ = sections[sym.section]
        at = offset + sym.value - addr
        data[at:at + 8] = struct.pack("<Q", hexversion)
    return edit


def start_with_patched_libpython(procs, tmp_path, edit):
    _, python = python_for("debugger")
    lib = patched_copy(shared_libpython(python), tmp_path, edit)
    env = dict(plain_env(), LD_PRELOAD=lib)
    p = start_program(procs, tmp_path, python, env=env)
    with open(f"/proc/{p.pid}/maps") as f:
        assert lib in f.read(), "the patched libpython was not the one loaded"
    return p


def test_python_version_outside_the_range(procs, tmp_path):
    """A Python that says it is 3.16 (Py_Version patched in a copy of libpython)."""
    p = start_with_patched_libpython(procs, tmp_path, set_py_version(0x031000F0))
    handlers = status(p.pid)["SigCgt"]
    line = refused(["attach", p.pid])
    assert "runs Python 3.16.0" in line and "3.11 to 3.15" in line and "newer memdiag" in line
    assert_untouched(p, handlers)


def test_python_without_the_symbols_the_injector_calls(procs, tmp_path):
    """Py_AddPendingCall renamed in the copy's dynamic symbol table."""
    p = start_with_patched_libpython(procs, tmp_path,
                                     rename_dynamic_symbol("Py_AddPendingCall", "Py_AddPendingCalX"))
    handlers = status(p.pid)["SigCgt"]
    line = refused(["attach", p.pid])
    assert "does not export Py_AddPendingCall" in line and "memdiag run" in line
    assert_untouched(p, handlers)


def test_remote_debugging_turned_off(procs, tmp_path):
    _, python = python_for("remote_exec")
    env = dict(plain_env(), PYTHON_DISABLE_REMOTE_DEBUG="1")
    p = start_program(procs, tmp_path, python, env=env)
    handlers = status(p.pid)["SigCgt"]
    line = refused(["attach", p.pid])
    assert "remote debugging turned off" in line and "PYTHON_DISABLE_REMOTE_DEBUG" in line
    assert_untouched(p, handlers)


def test_no_debugger(procs, tmp_path):
    _, python = python_for("debugger")
    if os.access(os.path.join(os.path.dirname(sys.executable), "gdb"), os.X_OK):
        pytest.skip("memdiag's own environment has a gdb (gdb-for-pwndbg), always found")
    p = start_program(procs, tmp_path, python)
    handlers = status(p.pid)["SigCgt"]
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty))
    env.pop("MEMDIAG_DEBUGGER", None)
    line = refused(["attach", p.pid], env=env)
    assert "no debugger to attach to Python 3." in line and "apt-get install gdb" in line
    assert "gdb-for-pwndbg" in line
    assert_untouched(p, handlers)


def broken_debugger(tmp_path):
    """A stand-in for a debugger that cannot call functions here (Debian's gdb
    13.1 on an Intel CPU with AMX): it prints that gdb's error and fails."""
    path = tmp_path / "broken-gdb"
    path.write_text("#!/bin/sh\necho \"Couldn't write extended state status: Bad address.\"\n"
                    "exit 1\n")
    path.chmod(0o755)
    return str(path)


def test_no_usable_debugger_then_fallback_to_the_next(procs, tmp_path):
    _, python = python_route("debugger")
    broken = broken_debugger(tmp_path)
    p = start_program(procs, tmp_path, python)
    handlers = status(p.pid)["SigCgt"]
    line = refused(["attach", p.pid], env=dict(os.environ, MEMDIAG_DEBUGGER=broken))
    assert "no debugger could call a function" in line
    assert "Couldn't write extended state status" in line and "install gdb" in line
    assert_untouched(p, handlers)
    real = attach_debugger.candidates()[0].path
    info = attach_json(p.pid, env=dict(os.environ, MEMDIAG_DEBUGGER=f"{broken},{real}"))
    assert info["state"] == "installed" and real in info["method"]


def test_another_users_process(procs, tmp_path, nobody_python):
    """uid 65534 may not attach to root's process."""
    p = start_program(procs, tmp_path, sys.executable)
    handlers = status(p.pid)["SigCgt"]
    e = nobody_python.cli_env()
    e.pop("MEMDIAG_DEBUG", None)
    r = subprocess.run([nobody_python.exe, "-m", "memdiag.cli.main", "attach", str(p.pid)],
                       capture_output=True, text=True, timeout=120, env=e, cwd="/",
                       preexec_fn=as_user(NOBODY, NOGROUP))
    assert r.returncode == EXIT_TARGET, (r.returncode, r.stdout, r.stderr)
    line = r.stderr.strip()
    assert line.startswith(f"memdiag: error: pid {p.pid} (") and "\n" not in line, line
    assert "belongs to uid 0; run memdiag attach as that user or as root" in line
    assert_untouched(p, handlers)


def test_root_attaches_to_another_users_process(procs, tmp_path, nobody_python):
    """Root attaches to uid 65534's process: the attach directory is handed to
    that user, the hook registers as that user, and snapshots work."""
    # the program's copy uid 65534 can read (the checkout may be in a 0700 directory)
    p = start_program(procs, tmp_path, nobody_python.exe, target=nobody_python.path(TARGET),
                      preexec_fn=as_user(NOBODY, NOGROUP),
                      cwd="/")
    try:
        # Root runs the copy of memdiag that uid 65534 can read: attach loads
        # the hook into the target from memdiag's own directory, which the
        # target cannot read when the checkout is in a 0700 directory (attach
        # then refuses and says so).
        r = subprocess.run([nobody_python.exe, "-m", "memdiag.cli.main", "attach", str(p.pid),
                            "--json"], capture_output=True, text=True, timeout=300,
                           env=nobody_python.cli_env(), cwd="/")
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        info = json.loads(r.stdout)
        assert info["state"] == "installed", info
        # in the target's temporary directory (its TMPDIR, or /tmp when it
        # cannot write there), as uid 65534
        registry = info["registry"]
        assert registry.endswith(f"/memdiag-{NOBODY}/hooks/{p.pid}.json"), registry
        assert os.stat(registry).st_uid == NOBODY
        path = snapshot(p.pid)
        assert os.stat(path).st_uid == NOBODY
        assert attach_dirs(p.pid) == [] and status(p.pid)["TracerPid"].strip() == "0"
    finally:
        kill_pid(p.pid)
        subprocess.run(["rm", "-rf", protocol.base_dir(NOBODY)])


@pytest.mark.parametrize("name", ["gdb", "lldb"])
def test_each_debugger_here_can_attach(procs, tmp_path, name):
    """The debugger route with each debugger this machine has (CI has gdb)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"no {name} here (the other debugger covers the route; CI installs gdb)")
    _, python = python_for("debugger")
    p = start_program(procs, tmp_path, python)
    info = attach_json(p.pid, env=dict(os.environ, MEMDIAG_DEBUGGER=name))
    assert info["state"] == "installed" and info["method"] == f"{name} ({path})", info
    assert p.state()["usr2"] == "_memdiag_hook.hook._on_signal"
    assert status(p.pid)["TracerPid"].strip() == "0"


def test_ptrace_denied_without_cap_sys_ptrace(procs, tmp_path):
    """Root without CAP_SYS_PTRACE (a container's default) cannot trace a
    process whose capabilities it lacks: refused before any debugger runs."""
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv (util-linux) to drop CAP_SYS_PTRACE with")
    p = start_program(procs, tmp_path, sys.executable)
    handlers = status(p.pid)["SigCgt"]
    r = subprocess.run(["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace",
                        sys.executable, "-m", "memdiag.cli.main", "attach", str(p.pid)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=dict(os.environ, MEMDIAG_PLAIN="1"))
    if "setpriv" in r.stderr:
        pytest.skip(f"setpriv cannot drop CAP_SYS_PTRACE here: {r.stderr.strip()}")
    assert r.returncode == EXIT_TARGET, (r.returncode, r.stdout, r.stderr)
    line = r.stderr.strip()
    assert line.startswith(f"memdiag: error: not allowed to trace pid {p.pid}"), line
    assert "CAP_SYS_PTRACE" in line
    assert_untouched(p, handlers)


# ------------------------------------------------------------ the injected code

FAKE_HOOK = '''
import os, signal
def is_installed():
    return False
def describe():
    return {"installed": False, "signal": None, "dir": None, "registry": "/nowhere",
            "walker": "python", "compiled_walker": False, "walker_error": None}
def install(dir=None, signal=None, strings=False):
    os.kill(os.getpid(), 2)          # SIGINT arrives while the code runs
    for _ in range(1000):            # bytecode: where Python runs handlers
        pass
    return dir
'''


def test_injected_code_holds_back_a_raising_handler(tmp_path):
    """SIGINT (whose default handler raises KeyboardInterrupt) arrives while the
    injected code runs: no exception reaches the program, and the result asks
    the CLI to send SIGINT again. The hook here is a stand-in whose install()
    signals itself; the code under test is the real payload."""
    from memdiag.attach.handshake import script_text
    pkg = tmp_path / "pkg"
    (pkg / "_boot").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "hook.py").write_text(FAKE_HOOK)
    shutil.copy(os.path.join(ROOT, "memdiag", "_boot", "_memdiag_boot_loader.py"), pkg / "_boot")
    d = tmp_path / "handshake"
    d.mkdir(mode=0o700)
    (d / "token").write_text("")
    request = {"dir": str(d), "pkg": str(pkg), "signal": int(signal.SIGUSR2),
               "strings": False, "snapshot_dir": str(tmp_path)}
    # SIGINT's default handler set explicitly: a test run started in the
    # background inherits SIGINT ignored, and Python then keeps it ignored.
    program = ("import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
               "ns = {'__name__': '_memdiag_attach'}\ntry:\n"
               f"    exec({script_text(request)!r}, ns)\n"
               "    print('NO-EXCEPTION')\nexcept BaseException as e:\n"
               "    print('LEAKED', type(e).__name__)\n"
               "print('HANDLER', signal.getsignal(signal.SIGINT) is "
               "signal.default_int_handler)\n")
    r = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                       timeout=60, env=plain_env())
    assert "NO-EXCEPTION" in r.stdout and "HANDLER True" in r.stdout, (r.stdout, r.stderr)
    result = json.loads((d / "result.json").read_text())
    assert result["state"] == "installed" and result["deferred_signals"] == [2]
    assert "Traceback" not in r.stderr, r.stderr
