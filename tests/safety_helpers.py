"""Helpers for the safety tests (load, faults, bad input, secrets).

Everything here starts real processes and touches real files; whatever it
starts or mounts, it stops or unmounts (by pid, by path) when the test ends.

- `start_target(...)`: a sample server (or any program printing READY) with
  the hook, optionally as uid 65534 (nobody=nobody_python), with a preexec_fn
  (rlimits), in fork or inline mode.
- `children_of(pid)`: the target's child processes (the snapshot writers).
- `tmpfs(path, size)`: a small tmpfs (needs root: tests/needs.py).
- `nobody_python` (fixture): an interpreter, memdiag and the samples that uid
  65534 can use wherever the checkout lives (pyenv's Pythons live under /root,
  which is 0700, and so may the checkout): under one 0755 temp directory
  (needs root: tests/needs.py).
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
from needs import needs_root, root_refused

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
                 started=None, max_seconds=300, nobody=None):
    """Start a program that prints READY, with the hook; return a conftest.Target.

    `started` is a list the caller's fixture uses to kill it at the end.
    `nobody` (the nobody_python fixture) runs it as uid 65534, from "/", with
    the copies of the program and of memdiag that uid 65534 can read.
    """
    snapdir = snapdir or str(tmp_path / "snaps")
    env = hook_env(None, snapdir, "USR2", 0, False, mode) if hook else dict(os.environ)
    env["MEMDIAG_QUIET"] = "1"
    env.update(extra_env or {})
    path = script if os.path.isabs(script) else os.path.join(SAMPLES, script)
    if nobody is not None:
        env, path, exe, cwd = nobody.target_env(env), nobody.path(path), nobody.exe, "/"
        preexec_fn = as_user(NOBODY, NOGROUP)
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
    """Mount a tmpfs of `size` at path (created), unmount at the end."""
    needs_root("mounts a tmpfs")
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        root_refused(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
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
        root_refused(f"cannot remount {path} {how}: {r.stderr.strip()}")


class NobodyPython:
    """An interpreter, memdiag and the test venv's packages, usable by uid 65534
    wherever the checkout and the interpreter live (a 0700 directory such as
    /root or `mktemp -d` included): all of it under one 0755 directory.

    - `exe`: the interpreter: its base prefix bind-mounted read-only, started
      by a wrapper script (see `_wrapper`).
    - `root`: a copy of memdiag/, sample_leaks/ and tests/programs/, so
      `path()` maps a path under the checkout to the copy.
    - `site_packages`: the test venv's site-packages, bind-mounted read-only.
    """

    def __init__(self, exe, root, site_packages, mapped):
        self.exe = exe
        self.root = root
        self.site_packages = site_packages
        self._mapped = mapped          # [(directory in the checkout, its copy)]

    def _copy_of(self, path):
        path = os.path.abspath(str(path))
        for src, dst in self._mapped:
            if path == src or path.startswith(src + os.sep):
                return dst + path[len(src):]
        return None

    def path(self, path):
        """The copy of `path` (a file or directory under one of the copied ones)."""
        copy = self._copy_of(path)
        assert copy is not None, f"{path} is not copied where uid {NOBODY} can read it"
        return copy

    def _paths(self, value):
        return os.pathsep.join(self._copy_of(p) or p for p in value.split(os.pathsep))

    def cli_env(self, base=None):
        """Environment for running `python -m memdiag.cli.main` as uid 65534."""
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = os.pathsep.join([self.root, self.site_packages])
        env["MEMDIAG_PLAIN"] = "1"
        env["HOME"] = "/"
        return env

    def target_env(self, env):
        """A hook environment (memdiag.cli.run.hook_env) with its paths mapped
        to the copies uid 65534 can read."""
        env = dict(env)
        for key in ("PYTHONPATH", "MEMDIAG_PKG_DIR"):
            if env.get(key):
                env[key] = self._paths(env[key])
        return env


def _searchable_by_all(path):
    """Whether every directory on the way to path lets other users through."""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        if path == os.sep:
            return True
        path = os.path.dirname(path)


def shared_parent():
    """The temp directory, if other users can reach it, else /tmp."""
    tmp = tempfile.gettempdir()
    return tmp if _searchable_by_all(tmp) else "/tmp"


def _wrapper(mnt):
    """A shell script that runs the interpreter of the base prefix mounted at mnt.

    A --enable-shared build (pyenv's) finds libpython through an RPATH under
    /root: LD_LIBRARY_PATH points into mnt instead. An interpreter unpacked by
    scripts/debian-python has its own ELF loader and glibc under its prefix
    (under /root too): the mounted loader is started explicitly."""
    real = os.path.join(mnt, "bin", os.path.basename(os.path.realpath(sys.executable)))
    loader = os.path.join(mnt, "lib", "x86_64-linux-gnu", "ld-linux-x86-64.so.2")
    if os.path.exists(loader):
        libs = os.path.dirname(loader)
        return f'#!/bin/sh\nexec "{loader}" --library-path "{libs}" "{real}" "$@"\n'
    return (f'#!/bin/sh\nLD_LIBRARY_PATH="{mnt}/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" '
            f'exec "{real}" "$@"\n')


def _copy_readable(src, dst):
    """Copy the directory src to dst, readable by everyone (whatever the umask was)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for d, dirs, files in os.walk(dst):
        os.chmod(d, 0o755)
        for f in files:
            p = os.path.join(d, f)
            os.chmod(p, 0o755 if os.stat(p).st_mode & 0o100 else 0o644)


def _bind_ro(src, mnt):
    os.makedirs(mnt, mode=0o755)
    r = subprocess.run(["mount", "--bind", src, mnt], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        root_refused(f"cannot bind-mount {src} for uid {NOBODY} ({r.stderr.strip()})")
    subprocess.run(["mount", "-o", "remount,bind,ro", mnt], capture_output=True)


def _unmount(mnt):
    if not os.path.isdir(mnt):
        return
    for _ in range(50):
        if subprocess.run(["umount", mnt], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        os.rmdir(mnt)              # only when empty: never a directory still mounted


@pytest.fixture(scope="session")
def nobody_python():
    needs_root(f"runs programs as uid {NOBODY}")
    import memdiag
    view = tempfile.mkdtemp(prefix="memdiag-test-nobody-", dir=shared_parent())
    os.chmod(view, 0o755)
    py, site = os.path.join(view, "py"), os.path.join(view, "site")
    try:
        _bind_ro(sys.base_prefix, py)
        _bind_ro(sysconfig.get_paths()["purelib"], site)
        root = os.path.join(view, "root")
        mapped = [(os.path.dirname(os.path.abspath(memdiag.__file__)),
                   os.path.join(root, "memdiag")),
                  (SAMPLES, os.path.join(root, "sample_leaks")),
                  (os.path.join(ROOT, "tests", "programs"), os.path.join(root, "programs"))]
        for src, dst in mapped:
            _copy_readable(src, dst)
        os.chmod(root, 0o755)
        exe = os.path.join(view, "python3")
        with open(exe, "w") as f:
            f.write(_wrapper(py))
        os.chmod(exe, 0o755)
        probe = subprocess.run([exe, "-c", "import memdiag, numpy, typer; print(memdiag.__file__)"],
                               capture_output=True, text=True, timeout=60, cwd="/",
                               env=NobodyPython(exe, root, site, mapped).cli_env(),
                               preexec_fn=as_user(NOBODY, NOGROUP))
        if probe.returncode != 0:
            root_refused(f"uid {NOBODY} cannot run {exe}: {probe.stderr.strip()}")
        yield NobodyPython(exe, root, site, mapped)
    finally:
        _unmount(py)
        _unmount(site)
        for name in ("root", "python3"):
            p = os.path.join(view, name)
            if os.path.isdir(p) and not os.path.ismount(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.isfile(p):
                os.unlink(p)
        with contextlib.suppress(OSError):
            os.rmdir(view)


@contextlib.contextmanager
def shared_tmpdir(prefix, uid=NOBODY, gid=NOGROUP, mode=0o700):
    """A temp dir under /tmp owned by uid (pytest's tmp_path is 0700 root)."""
    needs_root(f"makes a directory for uid {uid}")
    d = tempfile.mkdtemp(prefix=prefix, dir=shared_parent())
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
