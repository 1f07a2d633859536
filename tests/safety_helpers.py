"""Helpers for the safety tests (load, faults, bad input, secrets).

Everything here starts real processes and touches real files; whatever it
starts or mounts, it stops or unmounts (by pid, by path) when the test ends.

- `start_target(...)`: a sample server (or any program printing READY) with
  the hook, optionally under another uid, with a preexec_fn (rlimits), in
  fork or inline mode.
- `children_of(pid)`: the target's child processes (the snapshot writers).
- `tmpfs(path, size)`: a small tmpfs, or pytest.skip if mounting is refused.
- `nobody_python` (fixture): an interpreter uid 65534 can execute (the pyenv
  ones live under /root, which is 0700): the base prefix bind-mounted
  read-only under /tmp.
- `real_seed(name)`: two real snapshots of a real process, written once per
  test session; `run_cli(argv)`: the CLI's main() in this process, time-bounded.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import io
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time

import pytest

from conftest import ROOT, SAMPLES, Target, kill_pid, wait_ready  # noqa: F401

from memdiag.cli.run import hook_env

NOBODY = 65534
NOGROUP = 65534


def as_user(uid, gid, then=None):
    """A preexec_fn that drops to uid/gid (and runs `then` afterwards)."""
    def pre():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        if then is not None:
            then()
    return pre


def start_target(tmp_path, script="captcha_leak.py", *args, snapdir=None, mode="auto",
                 hook=True, preexec_fn=None, exe=None, extra_env=None, cwd=None,
                 started=None, max_seconds=300):
    """Start a program that prints READY, with the hook; return a conftest.Target.

    `started` is a list the caller's fixture uses to kill it at the end.
    """
    snapdir = snapdir or str(tmp_path / "snaps")
    env = hook_env(None, snapdir, "USR2", 0, False, mode) if hook else dict(os.environ)
    env["MEMDIAG_QUIET"] = "1"
    env.update(extra_env or {})
    path = script if os.path.isabs(script) else os.path.join(SAMPLES, script)
    n = len(started) if started is not None else 0
    out_path = tmp_path / f"target-stdout-{n}-{time.monotonic_ns()}.txt"
    err_path = tmp_path / f"target-stderr-{n}-{time.monotonic_ns()}.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        if preexec_fn is not None:  # the target may run as another uid
            os.chmod(out_path, 0o666)
            os.chmod(err_path, 0o666)
        proc = subprocess.Popen([exe or sys.executable, path, "--max-seconds", str(max_seconds),
                                 *args], env=env, stdout=out, stderr=err,
                                cwd=cwd or ROOT, preexec_fn=preexec_fn)
    if started is not None:
        started.append(proc)
    port = wait_ready(out_path, proc)
    return Target(proc, port, snapdir, err_path)


@pytest.fixture
def targets():
    """A list to pass as start_target(started=...); everything in it is killed at the end."""
    started = []
    yield started
    for proc in started:
        kill_pid(proc.pid)


def children_of(pid):
    """[(child pid, state letter)] of every process whose parent is pid."""
    out = []
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path, "rb") as f:
                data = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = data[data.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append((int(path.split("/")[2]), fields[0]))
    return out


def wait_writers_done(pid, timeout=60.0):
    """Wait until no snapshot writer of pid is still running (zombies are done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(state == "Z" for _, state in children_of(pid)):
            return
        time.sleep(0.02)
    raise AssertionError(f"snapshot writers of pid {pid} still running after {timeout}s")


def snap_files(directory, pid=None):
    prefix = f"memdiag-{pid}-" if pid is not None else "memdiag-"
    try:
        return sorted(n for n in os.listdir(directory)
                      if n.startswith(prefix) and n.endswith(".snap"))
    except FileNotFoundError:
        return []


def temp_files(directory):
    try:
        return sorted(n for n in os.listdir(directory)
                      if n.startswith(".memdiag-") and n.endswith(".tmp"))
    except FileNotFoundError:
        return []


def one_line(text):
    """The single non-empty line of `text` (asserting there is exactly one)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text, text
    return lines[0]


@contextlib.contextmanager
def tmpfs(path, size="128k"):
    """Mount a tmpfs of `size` at path (created), unmount at the end; skip if refused."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
    try:
        yield str(path)
    finally:
        remount(path, "rw", check=False)
        for _ in range(50):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)


def remount(path, how, check=True):
    r = subprocess.run(["mount", "-o", f"remount,{how}", str(path)], capture_output=True,
                       text=True)
    if check and r.returncode != 0:
        pytest.skip(f"cannot remount {path} {how}: {r.stderr.strip()}")


class NobodyPython:
    """An interpreter (and the test venv's packages) usable by uid 65534."""

    def __init__(self, exe, site_packages):
        self.exe = exe
        self.site_packages = site_packages

    def cli_env(self, base=None):
        """Environment for running `python -m memdiag.cli.main` as uid 65534."""
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = os.pathsep.join([ROOT, self.site_packages])
        env["MEMDIAG_PLAIN"] = "1"
        env["HOME"] = "/"
        return env


@pytest.fixture(scope="session")
def nobody_python():
    base = sys.base_prefix
    mnt = tempfile.mkdtemp(prefix="memdiag-test-py-")
    os.chmod(mnt, 0o755)
    r = subprocess.run(["mount", "--bind", base, mnt], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        pytest.skip(f"cannot bind-mount {base} for uid {NOBODY} ({r.stderr.strip()})")
    wrapper_dir = tempfile.mkdtemp(prefix="memdiag-test-pybin-")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", mnt], capture_output=True)
        real = os.path.join(mnt, "bin", os.path.basename(os.path.realpath(sys.executable)))
        # A --enable-shared build finds libpython through an RPATH under /root.
        exe = os.path.join(wrapper_dir, "python3")
        with open(exe, "w") as f:
            f.write(f'#!/bin/sh\nLD_LIBRARY_PATH="{mnt}/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" '
                    f'exec "{real}" "$@"\n')
        os.chmod(exe, 0o755)
        os.chmod(wrapper_dir, 0o755)
        site = sysconfig.get_paths()["purelib"]
        probe = subprocess.run([exe, "-c", "import sys; print(sys.version)"],
                               capture_output=True, text=True, timeout=30,
                               preexec_fn=as_user(NOBODY, NOGROUP), cwd="/")
        if probe.returncode != 0:
            pytest.skip(f"uid {NOBODY} cannot run {exe}: {probe.stderr.strip()}")
        yield NobodyPython(exe, site)
    finally:
        shutil.rmtree(wrapper_dir, ignore_errors=True)
        for _ in range(50):
            if subprocess.run(["umount", mnt], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            os.rmdir(mnt)


@contextlib.contextmanager
def shared_tmpdir(prefix, uid=NOBODY, gid=NOGROUP, mode=0o700):
    """A temp dir under /tmp owned by uid (pytest's tmp_path is 0700 root)."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chown(d, uid, gid)
    os.chmod(d, mode)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def signal_mask_catches(pid, signum):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


# ------------------------------------------------------ real snapshot seeds

DUMP_PAIR = os.path.join(ROOT, "tests", "programs", "dump_pair.py")
# name -> (dump_pair.py arguments, force the Python walker). The Python walker
# goes through snapfile.Writer.add, which cuts columns at --chunk values; the
# compiled walker chunks on its own.
SEEDS = {
    "plain": ([], False),
    "chunked": (["--chunk", "512"], True),
    "strings": (["--strings", "--chunk", "2048"], True),
    "traced": (["--trace", "1", "--chunk", "1024"], True),
}
_seeds = {}


def real_seed(name):
    """(a.snap, b.snap): a real process (python -S, small heap) dumped twice with
    memdiag.dump, 200 Session objects leaked in between. Written once per test
    session, removed at exit."""
    if name not in _seeds:
        args, pure = SEEDS[name]
        d = tempfile.mkdtemp(prefix=f"memdiag-seed-{name}-")
        atexit.register(shutil.rmtree, d, True)
        env = dict(os.environ)
        if pure:
            env["MEMDIAG_PURE_PYTHON"] = "1"
        subprocess.run([sys.executable, "-S", DUMP_PAIR, d, *args], check=True,
                       capture_output=True, timeout=120, cwd=ROOT, env=env)
        _seeds[name] = (os.path.join(d, "a.snap"), os.path.join(d, "b.snap"))
    return _seeds[name]


# ------------------------------------------------------- the CLI in-process

class CaseTimeout(BaseException):
    """Raised by run_cli's alarm; a BaseException so no handler in memdiag eats it."""


def run_cli(argv, seconds=20.0):
    """memdiag.cli.main.main(argv) in this process: (exit code, stderr).

    Far cheaper than a subprocess (no interpreter, numpy and typer start-up);
    an alarm bounds the time. With MEMDIAG_DEBUG=1 in the environment an
    unexpected exception propagates with its traceback. Never for `run`,
    which execs."""
    rc, out, err = run_cli_full(argv, seconds)
    return rc, err


def run_cli_full(argv, seconds=20.0):
    """run_cli, also returning stdout: (exit code, stdout, stderr)."""
    from memdiag.cli.main import main
    assert str(argv[0]) != "run", "memdiag run execs: run it in a subprocess"

    def alarm(signum, frame):
        raise CaseTimeout(f"memdiag {' '.join(map(str, argv))} took more than {seconds}s")

    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in argv])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return rc, out.getvalue(), err.getvalue()
