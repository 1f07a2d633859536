"""Helpers for the hook, run and oracle tests: start real Python programs,
talk to them through their stdout lines, and always kill them by pid.

A program prints `READY key=value ...` when it is set up; `Program.ready`
returns those fields. Programs that do their work and exit print one
`RESULT {json}` line instead (`run_program`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, kill_pid
from needs import compiled_walker_missing

PROGRAMS = os.path.join(ROOT, "tests", "programs")


def compiled_walker_built(python=sys.executable):
    """Whether memdiag._walker imports in `python` (the in-place build)."""
    p = subprocess.run([python, "-c", "import memdiag._walker"], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    return p.returncode == 0


_BUILT = {}


def walker_env(walker):
    """Environment for a target that must use `walker` ("python" or "compiled");
    when the compiled walker is not built for this interpreter the test fails
    (skips with MEMDIAG_ALLOW_PURE=1: tests/needs.py)."""
    env = dict(os.environ)
    env.pop("MEMDIAG_PURE_PYTHON", None)
    if walker == "python":
        env["MEMDIAG_PURE_PYTHON"] = "1"
    else:
        if sys.executable not in _BUILT:
            _BUILT[sys.executable] = compiled_walker_built()
        if not _BUILT[sys.executable]:
            compiled_walker_missing("the compiled walker (memdiag._walker)")
    return env


def expected_walker(walker):
    return "python" if walker == "python" else "c"


class Program:
    """A running target program; its stdout and stderr go to files."""

    def __init__(self, proc, out_path, err_path):
        self.proc = proc
        self.pid = proc.pid
        self.out_path = out_path
        self.err_path = err_path

    def stdout(self):
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.err_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def lines(self, prefix):
        return [line for line in self.stdout().splitlines() if line.startswith(prefix)]

    def wait_line(self, prefix, timeout=30.0, count=1):
        """The `count`-th stdout line starting with prefix (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.lines(prefix)
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                found = self.lines(prefix)
                if len(found) >= count:
                    return found[count - 1]
                raise AssertionError(f"program exited ({self.proc.returncode}) before "
                                     f"{prefix!r}:\n{self.stdout()}\n{self.stderr()}")
            time.sleep(0.01)
        raise AssertionError(f"no {prefix!r} line within {timeout}s:\n{self.stdout()}\n"
                             f"{self.stderr()}")

    def ready(self, timeout=30.0):
        line = self.wait_line("READY", timeout)
        return dict(p.split("=", 1) for p in line.split()[1:])

    def count(self):
        """The last COUNT the program printed (its main loop's progress)."""
        found = self.lines("COUNT ")
        return int(found[-1].split()[1]) if found else 0

    def wait_count_above(self, n, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() > n:
                return self.count()
            assert self.alive(), (self.stdout(), self.stderr())
            time.sleep(0.02)
        raise AssertionError(f"the program stopped counting at {self.count()}:\n"
                             f"{self.stdout()[-2000:]}\n{self.stderr()}")

    def alive(self):
        return self.proc.poll() is None

    def kill(self, sig=signal.SIGUSR2):
        os.kill(self.pid, sig)

    def send(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()


@pytest.fixture
def start(tmp_path):
    """start(code=..., or script=..., args, env, python, cwd) -> Program.

    `code` is dedented and written to a file in tmp_path. Every program
    started is killed by pid when the test ends; other pids a test learns
    (forked children) go in `start.pids` to be killed too.
    """
    started = []

    def _start(code=None, script=None, args=(), env=None, python=None, cwd=None,
               argv=None, name="target.py"):
        n = len(started)
        if argv is None:
            if code is not None:
                script = str(tmp_path / f"{n}-{name}")
                with open(script, "w") as f:
                    f.write(textwrap.dedent(code))
            argv = [python or sys.executable, script, *map(str, args)]
        out_path = str(tmp_path / f"out-{n}.txt")
        err_path = str(tmp_path / f"err-{n}.txt")
        e = dict(os.environ if env is None else env)
        e.setdefault("MEMDIAG_QUIET", "1")
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(argv, env=e, stdout=out, stderr=err,
                                    stdin=subprocess.PIPE, text=True, cwd=cwd or ROOT)
        started.append(proc)
        return Program(proc, out_path, err_path)

    _start.pids = []
    yield _start
    for proc in started:
        kill_pid(proc.pid)
        if proc.stdin:
            proc.stdin.close()
    for pid in _start.pids:
        kill_other(pid)


def _gone(pid):
    """No such process, or a zombie waiting for a parent that is not us."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rindex(b")") + 2:][:1] in (b"Z", b"X")


def kill_other(pid):
    """Kill a process we did not start (a target's child) by pid."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if _gone(pid):
                return
            time.sleep(0.02)


def run_program(code, *args, env=None, python=None, timeout=120, cwd=None, tmp_path=None):
    """Run a program to completion; return the object on its RESULT line."""
    argv = [python or sys.executable]
    if tmp_path is not None:
        path = os.path.join(str(tmp_path), "program.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(code))
        argv.append(path)
    else:
        argv += ["-c", textwrap.dedent(code)]
    e = dict(os.environ if env is None else env)
    e.setdefault("MEMDIAG_QUIET", "1")
    p = subprocess.run(argv + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, env=e, cwd=cwd or ROOT)
    lines = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    assert p.returncode == 0 and lines, (p.returncode, p.stdout, p.stderr)
    result = json.loads(lines[-1][len("RESULT "):])
    result["_stderr"] = p.stderr
    return result


def wait_file(path, timeout=60.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return path
        if proc is not None:
            assert proc.alive(), (proc.stdout(), proc.stderr())
        time.sleep(0.01)
    raise AssertionError(f"{path} did not appear within {timeout}s" +
                         (f":\n{proc.stderr()}" if proc else ""))


def snap_files(directory, pid):
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(f"memdiag-{pid}-") and n.endswith(".snap"))


def load(path):
    from memdiag.model import Snapshot
    return Snapshot.load(path)


def hook_lines(text):
    """The lines the hook wrote on a program's stderr."""
    return [line for line in text.splitlines() if line.startswith("memdiag:")]
