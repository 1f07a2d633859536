"""Bad command lines and wrong targets: each is refused with one line on
stderr and its documented exit code (memdiag/cli/errors.py), never a
traceback, and memdiag never sends its signal to a process without the hook.

"Never sent" is checked on targets that would die of it: SIGUSR2's default
action terminates a process, so a target without a handler still alive
afterwards was not signaled.
"""

import json
import os
import signal
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from needs import needs_root, root_refused
from safety_helpers import (NOBODY, NOGROUP, as_user, kill_pid, nobody_python,  # noqa: F401
                            one_line, run_cli_full, shared_tmpdir, snap_files, start_target,
                            targets)

from memdiag import protocol
from memdiag.model import Snapshot

EXIT_USAGE, EXIT_BAD_FILE, EXIT_TARGET, EXIT_SNAPSHOT_FAILED = 2, 3, 4, 5


def refused(args, code, *, env=None, preexec_fn=None, cwd=ROOT, python=None):
    """Run the CLI, expect `code` and exactly one line on stderr; return it.

    As this user, main() runs in-process (run_cli_full: the same exit code and
    stderr, no interpreter start-up); as another user, or for `run` (it
    execs), in a subprocess."""
    if env is None and preexec_fn is None and python is None and str(args[0]) != "run":
        rc, out, err = run_cli_full(args, 60)
        assert rc == code, (args, rc, out, err)
        line = one_line(err)
        assert line.startswith("memdiag: error: "), line
        return line
    e = dict(os.environ if env is None else env)
    e.setdefault("MEMDIAG_PLAIN", "1")
    e.pop("MEMDIAG_DEBUG", None)
    p = subprocess.run([python or sys.executable, "-m", "memdiag.cli.main", *map(str, args)],
                       capture_output=True, text=True, timeout=120, env=e, cwd=cwd,
                       preexec_fn=preexec_fn)
    assert p.returncode == code, (args, p.returncode, p.stdout, p.stderr)
    line = one_line(p.stderr)
    assert line.startswith("memdiag: error: "), line
    return line


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        kill_pid(p.pid)


def spawn(procs, argv, **kw):
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def wait_exec(p, timeout=30):
    """Wait until a just-spawned program that is not ours (so it cannot say
    READY) runs: /proc/<pid>/exe is its binary. Until then the child is
    still a copy of this Python, between fork and exec."""
    exe = os.path.realpath(shutil.which(p.args[0]))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert alive(p), f"{p.args} exited with {p.returncode}"
        try:
            if os.readlink(f"/proc/{p.pid}/exe") == exe:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{p.args} did not start within {timeout}s")


def alive(p):
    return p.poll() is None


def never_signaled(p):
    """p got no signal: it is running and none is pending. kill(2) marks the
    signal pending before it returns, so one memdiag sent shows here (dead,
    or pending until p next runs) without waiting for its delivery."""
    with open(f"/proc/{p.pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    pending = {k: status[k].strip() for k in ("SigPnd", "ShdPnd")}
    assert status["State"].split()[0] not in ("Z", "X"), f"pid {p.pid} died: {status['State']}"
    assert not any(int(v, 16) for v in pending.values()), f"a signal is pending: {pending}"
    assert alive(p)


# ------------------------------------------------------------ files

def test_missing_file(tmp_path):
    line = refused(["top", tmp_path / "nope.snap"], EXIT_BAD_FILE)
    assert "no such file" in line


def test_directory_as_file(tmp_path):
    line = refused(["top", tmp_path], EXIT_BAD_FILE)
    assert "is a directory" in line
    line = refused(["diff", tmp_path, tmp_path], EXIT_BAD_FILE)
    assert "is a directory" in line


def test_unreadable_file(tmp_path, targets, nobody_python):
    """Permission denied, for a user who may not read the file (root reads any)."""
    t = start_target(tmp_path, started=targets)
    path = t.snapshot()
    line = refused(["top", path], EXIT_BAD_FILE, env=nobody_python.cli_env(),
                   preexec_fn=as_user(NOBODY, NOGROUP), cwd="/", python=nobody_python.exe)
    assert "permission denied" in line.lower(), line


# ------------------------------------------------------------ usage

@pytest.mark.parametrize("args,expect", [
    (["frobnicate"], "No such command"),
    (["top"], "Missing argument"),
    (["snapshot", "abc"], "pid"),
    (["diff", "only-one.snap"], "at least two"),
    (["top", "x.snap", "--top", "0"], "--top"),
    (["run"], "Missing argument"),
], ids=["unknown command", "top without file", "pid not a number", "diff one file",
        "top 0", "run without command"])
def test_bad_usage(args, expect):
    assert expect in refused(args, EXIT_USAGE)


@pytest.mark.parametrize("value", ["FOO", "99", "0", "-5", "SIGKILL", "KILL", "STOP", "9"])
def test_bad_signal_for_run(tmp_path, value):
    """`memdiag run --signal X` must refuse what cannot trigger a snapshot,
    before starting anything: the program would run without the hook."""
    marker = tmp_path / "ran"
    line = refused(["run", "--signal", value, "--", sys.executable, "-c",
                    f"open({str(marker)!r}, 'w').close()"], EXIT_USAGE)
    assert "signal" in line.lower(), line
    assert not marker.exists(), "the program was started"


def test_run_command_not_found():
    assert "command not found" in refused(["run", "--", "no-such-program-xyz"], EXIT_USAGE)


# ------------------------------------------------------------ pids

def test_dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    line = refused(["snapshot", p.pid], EXIT_TARGET)
    assert f"no process with pid {p.pid}" in line


@pytest.mark.parametrize("pid", [0, -1])
def test_invalid_pid(pid):
    assert "not a valid pid" in refused(["snapshot", "--", pid], EXIT_TARGET)


def test_not_python_is_never_signaled(procs):
    sleeper = spawn(procs, ["sleep", "60"])
    wait_exec(sleeper)
    line = refused(["snapshot", sleeper.pid, "--timeout", "2"], EXIT_TARGET)
    assert "not a Python process" in line and "will not signal" in line
    never_signaled(sleeper)          # (SIGUSR2 would kill it)


def test_python_without_hook_is_never_signaled(procs, tmp_path):
    ready = tmp_path / "ready"
    p = spawn(procs, [sys.executable, "-c",
                      f"import time; open({str(ready)!r}, 'w').close(); time.sleep(60)"])
    while not ready.exists():
        assert alive(p)
        time.sleep(0.02)
    line = refused(["snapshot", p.pid, "--timeout", "2"], EXIT_TARGET)
    assert "has no memdiag hook" in line and "memdiag run" in line
    never_signaled(p)                # (SIGUSR2 would kill it)


def test_hooked_process_whose_handler_was_replaced(procs, tmp_path):
    """The registry says hooked, but the program since reset SIGUSR2 with a C
    call memdiag cannot see: the signal mask says it is not caught."""
    ready = tmp_path / "ready"
    code = ("import ctypes, signal, sys, time; sys.path.insert(0, %r); import memdiag; "
            "memdiag.install(dir=%r); "
            "ctypes.CDLL(None).signal(int(signal.SIGUSR2), 0); "   # SIG_DFL behind its back
            "open(%r, 'w').close(); time.sleep(60)") % (ROOT, str(tmp_path / "s"), str(ready))
    p = spawn(procs, [sys.executable, "-c", code])
    while not ready.exists():
        assert alive(p)
        time.sleep(0.02)
    line = refused(["snapshot", p.pid, "--timeout", "2"], EXIT_TARGET)
    assert "does not catch" in line
    never_signaled(p)                # (SIGUSR2 would kill it)


def test_forged_registry_entry_is_not_trusted(procs, tmp_path):
    """Another user writes a registry entry for a Python process without the
    hook that catches SIGTERM (most servers do), naming SIGTERM as its
    signal. memdiag must not believe it: the entry is not owned by the
    process's user."""
    needs_root(f"makes a registry entry owned by uid {NOBODY}")
    ready = tmp_path / "ready"
    code = ("import signal, sys, time; "
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); "
            f"open({str(ready)!r}, 'w').close(); time.sleep(60)")
    p = spawn(procs, [sys.executable, "-c", code])
    while not ready.exists():
        assert alive(p)
        time.sleep(0.02)
    reg = protocol.registry_dir(os.getuid())
    os.makedirs(reg, mode=0o700, exist_ok=True)
    entry = os.path.join(reg, f"{p.pid}.json")
    with open(entry, "w") as f:
        json.dump({"pid": p.pid, "start_time": protocol.proc_start_time(p.pid),
                   "signal": int(signal.SIGTERM), "dir": str(tmp_path)}, f)
    os.chown(entry, NOBODY, NOGROUP)
    try:
        line = refused(["snapshot", p.pid, "--timeout", "2"], EXIT_TARGET)
        assert "registry" in line, line
        time.sleep(0.3)
        assert alive(p), "memdiag sent SIGTERM on a forged registry entry"
    finally:
        os.unlink(entry)


def test_forged_registry_in_a_directory_another_user_made(procs, tmp_path, nobody_python):
    """The registry of a user who never ran a hooked program does not exist,
    so another user can create /tmp/memdiag-<uid>/hooks. Target: uid 65533;
    forger: uid 65534; memdiag run by root must refuse."""
    victim, forger = 65533, NOBODY
    base = protocol.base_dir(victim)
    if os.path.exists(base):
        pytest.fail(f"{base} exists already (left by an earlier run? remove it)", pytrace=False)
    ready = f"/tmp/memdiag-test-ready-{os.getpid()}"
    code = ("import signal, sys, time; "
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); "
            f"open({ready!r}, 'w').close(); time.sleep(60)")
    p = spawn(procs, [nobody_python.exe, "-c", code], cwd="/",
              preexec_fn=as_user(victim, victim))
    try:
        while not os.path.exists(ready):
            assert alive(p)
            time.sleep(0.02)
        forge = (f"import json, os; os.makedirs({protocol.registry_dir(victim)!r}, 0o755); "
                 f"f = open(os.path.join({protocol.registry_dir(victim)!r}, '{p.pid}.json'), 'w'); "
                 f"json.dump({{'pid': {p.pid}, 'start_time': {protocol.proc_start_time(p.pid)}, "
                 f"'signal': 15, 'dir': '/tmp'}}, f); f.close()")
        subprocess.run([nobody_python.exe, "-c", forge], check=True, cwd="/",
                       preexec_fn=as_user(forger, forger), timeout=30)
        line = refused(["snapshot", p.pid, "--timeout", "2"], EXIT_TARGET)
        assert "registry" in line, line
        time.sleep(0.3)
        assert alive(p), "memdiag sent SIGTERM on a forged registry entry"
    finally:
        subprocess.run(["rm", "-rf", base, ready])


# ---------------------------------------------------- other users

def test_other_users_process_is_refused(tmp_path, targets, nobody_python):
    """uid 65534 may not signal root's hooked target: refused, nothing sent."""
    t = start_target(tmp_path, started=targets)
    line = refused(["snapshot", t.pid, "--timeout", "5"], EXIT_TARGET,
                   env=nobody_python.cli_env(), preexec_fn=as_user(NOBODY, NOGROUP),
                   cwd="/", python=nobody_python.exe)
    assert "belongs to uid 0" in line and "run memdiag as that user" in line, line
    assert t.alive()
    assert snap_files(t.dir) == []


def test_root_snapshots_another_users_process(tmp_path, targets, nobody_python):
    """root may snapshot uid 65534's hooked target; the file is the target's:
    owned by 65534, mode 0600, in the target's directory."""
    with shared_tmpdir("memdiag-test-snaps-") as snapdir:
        t = start_target(tmp_path, snapdir=snapdir, nobody=nobody_python, started=targets)
        path = t.snapshot()
        st = os.stat(path)
        assert (st.st_uid, st.st_mode & 0o777) == (NOBODY, 0o600)
        assert Snapshot.load(path).meta["pid"] == t.pid


def test_other_non_root_users_process_is_refused(procs, tmp_path, nobody_python):
    """uid 65534 against uid 65533's hooked target: refused, target alive."""
    with shared_tmpdir("memdiag-test-snaps-", uid=65533, gid=65533) as snapdir:
        ready = os.path.join(snapdir, "ready")
        code = (f"import sys, time; sys.path.insert(0, {nobody_python.root!r}); import memdiag; "
                f"memdiag.install(dir={snapdir!r}); open({ready!r}, 'w').close(); "
                "time.sleep(60)")
        p = spawn(procs, [nobody_python.exe, "-c", code], cwd="/",
                  preexec_fn=as_user(65533, 65533))
        try:
            while not os.path.exists(ready):
                assert alive(p)
                time.sleep(0.02)
            line = refused(["snapshot", p.pid, "--timeout", "2"], EXIT_TARGET,
                           env=nobody_python.cli_env(), preexec_fn=as_user(NOBODY, NOGROUP),
                           cwd="/", python=nobody_python.exe)
            assert "belongs to uid 65533" in line, line
            assert alive(p)
            assert snap_files(snapdir) == []
        finally:
            kill_pid(p.pid)
            subprocess.run(["rm", "-rf", protocol.base_dir(65533)])


def test_registry_entry_that_is_a_fifo_does_not_hang(procs, tmp_path):
    """A FIFO at the entry's name would block open() forever."""
    ready = tmp_path / "ready"
    p = spawn(procs, [sys.executable, "-c",
                      f"import time; open({str(ready)!r}, 'w').close(); time.sleep(60)"])
    while not ready.exists():
        assert alive(p)
        time.sleep(0.02)
    reg = protocol.registry_dir(os.getuid())
    os.makedirs(reg, mode=0o700, exist_ok=True)
    entry = os.path.join(reg, f"{p.pid}.json")
    os.mkfifo(entry, 0o600)
    try:
        line = refused(["snapshot", p.pid, "--timeout", "2"], EXIT_TARGET)
        assert "registry" in line, line
        assert alive(p)
    finally:
        os.unlink(entry)


def test_may_signal_but_not_read_the_registry(tmp_path, targets, nobody_python):
    """A user given CAP_KILL (a support account, a sidecar) may signal root's
    target but cannot read its 0700 registry: refused, nothing sent."""
    if shutil.which("setpriv") is None:
        root_refused("no setpriv (util-linux) to grant CAP_KILL with")
    t = start_target(tmp_path, started=targets)
    env = nobody_python.cli_env()
    p = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups",
                        "--inh-caps=+kill", "--ambient-caps=+kill", nobody_python.exe, "-m",
                        "memdiag.cli.main", "snapshot", str(t.pid), "--timeout", "5"],
                       capture_output=True, text=True, timeout=120, env=env, cwd="/")
    if "setpriv" in p.stderr and p.returncode != EXIT_TARGET:
        root_refused(f"cannot grant CAP_KILL to uid {NOBODY}: {p.stderr.strip()}")
    assert p.returncode == EXIT_TARGET, (p.returncode, p.stderr)
    line = one_line(p.stderr)
    assert "registry is not readable by uid 65534" in line, line
    assert t.alive()
    assert snap_files(t.dir) == []
