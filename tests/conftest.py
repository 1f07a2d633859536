"""Shared test helpers: real processes, real signals, real files.

`sample` starts a program from sample_leaks/ with the hook (through the same
environment `memdiag run` builds), waits for its READY line, and kills it by
pid when the test ends. `memdiag(...)` runs the CLI as a real subprocess and
returns (exit code, stdout, stderr).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "sample_leaks")
PROGRAMS = os.path.join(ROOT, "tests", "programs")
sys.path.insert(0, SAMPLES)

from load import run_load  # noqa: E402

from memdiag.cli.run import hook_env  # noqa: E402


def pytest_configure(config):
    """`memdiag run` and `attach` build a compiled walker for a target whose
    Python is not this one (memdiag/walker_build.py) into the user's cache:
    in the tests, a cache of the session's own, which every test shares, so
    each Python's walker is built once per session, and never in ~/.cache."""
    import tempfile
    config._memdiag_walker_cache = tempfile.mkdtemp(prefix="memdiag-test-walkers-")
    os.environ["MEMDIAG_WALKER_CACHE"] = os.path.join(config._memdiag_walker_cache, "walkers")


def pytest_unconfigure(config):
    import shutil
    cache = getattr(config, "_memdiag_walker_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


def memdiag(*args, env=None, timeout=120, check=None):
    """Run the memdiag CLI in a subprocess: (returncode, stdout, stderr)."""
    e = dict(os.environ if env is None else env)
    e.setdefault("MEMDIAG_PLAIN", "1")
    p = subprocess.run([sys.executable, "-m", "memdiag.cli.main", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p.returncode, p.stdout, p.stderr


def memdiag_json(*args, **kw):
    code, out, err = memdiag(*args, "--json", **kw)
    assert code == 0, (code, out, err)
    return json.loads(out)


def kill_pid(pid):
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:
                if not os.path.exists(f"/proc/{pid}"):
                    return
            time.sleep(0.02)


class Target:
    """A running sample server with the hook installed."""

    def __init__(self, proc, port, snapdir, stderr_path):
        self.proc = proc
        self.pid = proc.pid
        self.port = port
        self.dir = snapdir
        self.stderr_path = stderr_path

    def load(self, path, n, concurrency=4):
        r = run_load(self.port, path, n, concurrency=concurrency, max_seconds=120)
        assert r["failed"] == 0 and r["ok"] == n, r
        return r

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def snapshot(self, timeout=120):
        code, out, err = memdiag("snapshot", self.pid, "--timeout", timeout)
        assert code == 0, (code, out, err, self.stderr())
        path = out.strip()
        assert os.path.isfile(path), path
        return path

    def stderr(self):
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None


def wait_ready(out_path, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(out_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("READY"):
                    fields = dict(p.split("=", 1) for p in line.split()[1:])
                    return int(fields["port"])
        if proc.poll() is not None:
            raise AssertionError(f"program exited with {proc.returncode} before READY")
        time.sleep(0.02)
    raise AssertionError("program did not print READY in time")


@pytest.fixture
def sample(tmp_path):
    started = []

    def start(script, *args, hook=True, signal_name="USR2", mode="auto", extra_env=None,
              directory=None, cwd=None):
        snapdir = directory or str(tmp_path / "snaps")
        env = hook_env(None, snapdir, signal_name, 0, False, mode) if hook else dict(os.environ)
        env["MEMDIAG_QUIET"] = "1"
        env.update(extra_env or {})
        path = script if os.path.isabs(script) else os.path.join(SAMPLES, script)
        n = len(started)
        out_path = tmp_path / f"stdout-{n}.txt"
        err_path = tmp_path / f"stderr-{n}.txt"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, path, "--max-seconds", "300", *args],
                                    env=env, stdout=out, stderr=err, cwd=cwd or ROOT)
        started.append(proc)
        port = wait_ready(out_path, proc)
        return Target(proc, port, snapdir, err_path)

    yield start
    for proc in started:
        kill_pid(proc.pid)
    # Whatever else a test checks: the hook never puts a traceback in the
    # program's stderr.
    for n in range(len(started)):
        err = (tmp_path / f"stderr-{n}.txt").read_text(errors="replace")
        assert "Traceback" not in err and "Error in sitecustomize" not in err, err
