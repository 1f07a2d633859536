"""Faults in the target's world: the disk is full, the file size limit is hit,
the snapshot directory is read-only or gone, the snapshot writer is killed
mid-write, fork is refused.

In every case the target keeps running and answering HTTP, the user gets one
clear line (on the target's stderr, and from `memdiag snapshot`, which exits
5), and the next snapshot works once the condition is gone. Real processes,
real mounts, real rlimits, real signals.
"""

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import http.client

import pytest

from safety_helpers import (NOBODY, NOGROUP, ROOT, as_user, children_of, nobody_python,  # noqa: F401
                            one_line, remount, run_cli_full, shared_tmpdir, snap_files,
                            start_target, targets, temp_files, tmpfs, wait_writers_done)

from memdiag.model import Snapshot

PROGRAMS = os.path.join(ROOT, "tests", "programs")
EXIT_SNAPSHOT_FAILED = 5


def failed_snapshot(t, timeout=30):
    """Ask for a snapshot that must fail: (one-line error, seconds it took).
    `memdiag snapshot` runs in-process (run_cli_full): the same main(), exit
    code and stderr, without a second of interpreter start-up each time."""
    t0 = time.monotonic()
    code, out, err = run_cli_full(["snapshot", t.pid, "--timeout", timeout], timeout + 30)
    took = time.monotonic() - t0
    assert code == EXIT_SNAPSHOT_FAILED, (code, out, err, t.stderr())
    assert out == ""
    return one_line(err), took


def good_snapshot(t):
    code, out, err = run_cli_full(["snapshot", t.pid, "--timeout", 120], 150)
    assert code == 0, (code, out, err, t.stderr())
    path = out.strip()
    snap = Snapshot.load(path)
    assert snap.meta["pid"] == t.pid
    assert len(snap.type) == snap.n_objects > 1000
    snap.close()
    return path


def still_serving(t, path="/captcha"):
    assert t.alive(), t.stderr()
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
    finally:
        conn.close()


def hook_lines(t):
    return [ln for ln in t.stderr().splitlines() if ln.strip()]


MODES = ["auto", "inline"]


@pytest.mark.parametrize("mode", MODES)
def test_disk_full(tmp_path, targets, mode):
    with tmpfs(tmp_path / "full", size="128k") as mnt:
        snapdir = os.path.join(mnt, "snaps")
        t = start_target(tmp_path, snapdir=snapdir, mode=mode, started=targets)
        t.load("/captcha", 50)

        line, took = failed_snapshot(t)
        assert "no space left on device" in line, line
        assert took < 20, took            # a clear answer, not the timeout
        still_serving(t)
        lines = hook_lines(t)
        assert len(lines) == 1 and "no space left on device" in lines[0], t.stderr()
        wait_writers_done(t.pid)
        assert snap_files(snapdir) == [] and temp_files(snapdir) == []

        remount(mnt, "size=16m")                       # the condition is gone
        path = good_snapshot(t)
        assert os.path.dirname(path) == snapdir
        still_serving(t)
        assert temp_files(snapdir) == []
        assert len(hook_lines(t)) == 1, t.stderr()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("host", ["python", "sigxfsz-default"])
def test_file_size_limit(tmp_path, targets, mode, host):
    """RLIMIT_FSIZE: the write fails with EFBIG. CPython ignores SIGXFSZ, but a
    host embedding Python with Py_InitializeEx(0) leaves it at its default
    action, which would kill the writer (or, inline, the target itself)."""
    limit = 64 << 10

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    if host == "python":
        script, args = "captcha_leak.py", ()
    else:
        script, args = os.path.join(PROGRAMS, "sigxfsz_default_host.py"), ("captcha_leak.py",)
    t = start_target(tmp_path, script, *args, mode=mode, preexec_fn=small_files,
                     started=targets)
    t.load("/captcha", 50)

    line, took = failed_snapshot(t)
    assert "file size limit" in line, line
    assert took < 20, took
    still_serving(t)
    lines = hook_lines(t)
    assert len(lines) == 1 and "file size limit" in lines[0], t.stderr()
    wait_writers_done(t.pid)
    assert snap_files(t.dir) == [] and temp_files(t.dir) == []

    # The same uid may raise its soft limit back up to the hard limit.
    resource.prlimit(t.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    good_snapshot(t)
    still_serving(t)
    assert len(hook_lines(t)) == 1, t.stderr()


@pytest.mark.parametrize("mode", MODES)
def test_read_only_directory(tmp_path, targets, mode):
    with tmpfs(tmp_path / "ro", size="16m") as mnt:
        snapdir = os.path.join(mnt, "snaps")
        t = start_target(tmp_path, snapdir=snapdir, mode=mode, started=targets)
        remount(mnt, "ro")
        line, took = failed_snapshot(t)
        assert "Read-only file system" in line, line
        assert took < 20, took
        still_serving(t)
        assert len(hook_lines(t)) == 1, t.stderr()
        wait_writers_done(t.pid)

        remount(mnt, "rw")
        good_snapshot(t)
        still_serving(t)
        assert temp_files(snapdir) == []


@pytest.mark.parametrize("mode", MODES)
def test_directory_removed_or_replaced(tmp_path, targets, mode):
    t = start_target(tmp_path, mode=mode, started=targets)
    first = good_snapshot(t)

    shutil.rmtree(t.dir)                      # removed: the hook recreates it, 0700
    second = good_snapshot(t)
    assert os.path.dirname(second) == os.path.dirname(first)
    assert os.stat(t.dir).st_mode & 0o777 == 0o700

    shutil.rmtree(t.dir)                      # replaced by a file: a clear refusal
    with open(t.dir, "w") as f:
        f.write("not a directory\n")
    line, took = failed_snapshot(t)
    assert t.dir in line and "exists" in line.lower(), line
    assert took < 20
    still_serving(t)
    assert len(hook_lines(t)) == 1, t.stderr()
    with open(t.dir) as f:
        assert f.read() == "not a directory\n"   # left alone

    os.unlink(t.dir)                          # gone again: works again
    good_snapshot(t)
    still_serving(t)


def test_writer_killed_mid_write(tmp_path, targets):
    """SIGKILL (what the OOM killer sends) to the snapshot child while it writes:
    no partial .snap is ever visible, `memdiag snapshot` says what happened, and
    the next snapshot removes the stale temp file."""
    t = start_target(tmp_path, os.path.join(PROGRAMS, "big_heap_server.py"),
                     "--objects", "150000", started=targets)
    cli = subprocess.Popen([sys.executable, "-m", "memdiag.cli.main", "snapshot", str(t.pid),
                            "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT)
    try:
        victim = None
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline:
            writers = [p for p, state in children_of(t.pid) if state != "Z"]
            if writers and temp_files(t.dir):
                victim = writers[0]
                break
            assert not snap_files(t.dir), "the writer finished before it could be killed"
            time.sleep(0.002)
        assert victim is not None, "no snapshot writer appeared"
        os.kill(victim, signal.SIGKILL)
        out, err = cli.communicate(timeout=90)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == EXIT_SNAPSHOT_FAILED, (out, err)
    line = one_line(err)
    assert "killed by signal 9" in line, line
    assert snap_files(t.dir) == []
    stale = temp_files(t.dir)
    assert len(stale) == 1 and stale[0].endswith(f".{victim}.tmp"), stale
    still_serving(t, "/ping")

    good_snapshot(t)
    assert temp_files(t.dir) == []          # the stale temp file was cleaned
    still_serving(t, "/ping")
    lines = hook_lines(t)
    assert len(lines) == 1 and "killed by signal 9" in lines[0], t.stderr()


def _set_nproc(pid, soft):
    """Set the target's soft RLIMIT_NPROC from a helper running as its uid
    (root here lacks CAP_SYS_RESOURCE for other users' processes)."""
    code = ("import resource, sys; pid, soft = int(sys.argv[1]), int(sys.argv[2]); "
            "hard = resource.prlimit(pid, resource.RLIMIT_NPROC)[1]; "
            "resource.prlimit(pid, resource.RLIMIT_NPROC, (hard if soft < 0 else soft, hard))")
    return code, [str(pid), str(soft)]


def test_fork_refused(tmp_path, targets, nobody_python):
    """fork() fails with EAGAIN when the target's uid is at its RLIMIT_NPROC (which
    root ignores, so the target runs as uid 65534). The hook walks in-process
    instead and says so once; the snapshot is still written."""
    with shared_tmpdir("memdiag-test-snaps-") as snapdir:
        t = start_target(tmp_path, snapdir=snapdir, nobody=nobody_python, started=targets)
        # Handler threads are tasks too: open the connection before the limit.
        conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)

        def ask():
            conn.request("GET", "/captcha")
            resp = conn.getresponse()
            assert resp.status == 200
            return resp.read()

        ask()
        code, args = _set_nproc(t.pid, 1)
        subprocess.run([nobody_python.exe, "-c", code, *args], check=True, cwd="/",
                       preexec_fn=as_user(NOBODY, NOGROUP), timeout=30)
        try:
            paths = [good_snapshot(t) for _ in range(2)]
            ask()                                    # still answering
        finally:
            code, args = _set_nproc(t.pid, -1)
            subprocess.run([nobody_python.exe, "-c", code, *args], check=True, cwd="/",
                           preexec_fn=as_user(NOBODY, NOGROUP), timeout=30)
        for p in paths:
            snap = Snapshot.load(p)
            assert snap.meta["mode"] == "inline"
            assert os.stat(p).st_uid == NOBODY and os.stat(p).st_mode & 0o777 == 0o600
        lines = hook_lines(t)
        assert len(lines) == 1, t.stderr()          # said once, not per snapshot
        assert "fork refused" in lines[0] and "in-process" in lines[0], lines

        after = good_snapshot(t)                     # the condition is gone
        assert Snapshot.load(after).meta["mode"] == "fork"
        ask()
        still_serving(t)
        conn.close()


@pytest.mark.parametrize("mode", MODES)
def test_shutdown_signal_during_a_snapshot_is_not_lost(tmp_path, targets, mode):
    """SIGTERM while a snapshot is being taken: the program's own handler (the
    sample's raises its stop exception) runs nested inside the hook's, between
    two bytecodes of an inline walk. The exception is the program's: the
    program must stop as asked, not go on serving with its SIGTERM swallowed
    as a failed snapshot; and no half-written file may stay behind."""
    t = start_target(tmp_path, os.path.join(PROGRAMS, "big_heap_server.py"),
                     "--objects", "150000", mode=mode, started=targets)
    os.kill(t.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 60
    while not temp_files(t.dir):             # the walk is under way
        assert time.monotonic() < deadline and not snap_files(t.dir), "no walk to interrupt"
        time.sleep(0.002)
    os.kill(t.pid, signal.SIGTERM)
    try:
        code = t.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running 30 s after SIGTERM; stderr: {t.stderr()!r}")
    assert code == 0, (code, t.stderr())
    assert "snapshot failed" not in t.stderr(), t.stderr()
    wait_writers_done(t.pid)
    if mode == "inline":                      # the walk was abandoned and cleaned up
        assert temp_files(t.dir) == [] and snap_files(t.dir) == []
    else:                                     # the forked writer finished on its own
        deadline = time.monotonic() + 60
        while temp_files(t.dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert temp_files(t.dir) == []
