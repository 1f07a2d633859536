"""Limits: --snapshot-at-rss as a share of the memory limit, --snapshot-every
with --max-snapshots, and --exit-after-snapshot (seed 002: the worker retires
itself gracefully once the evidence is written).

Real programs started through `memdiag run`, growing when the test says so
(tests/programs/limit_grower.py), so each step is waited for, never timed.
The limit is a real cgroup where this machine lets root create one (cgroup
v1 or v2), and otherwise, and in the other tests, a file that
MEMDIAG_CGROUP_ROOT (for tests only) puts in place of the process's cgroup.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import memdiag
from hookutil import PROGRAMS, hook_lines, load, start  # noqa: F401
from needs import IS_ROOT
from test_run import gunicorn  # noqa: F401  (the fixture)

from memdiag import hook_limits, protocol

GROWER = os.path.join(PROGRAMS, "limit_grower.py")
RUN = [sys.executable, "-m", "memdiag.cli.main", "run"]
MIB = 1 << 20


def run_grower(start, tmp_path, *options, env=None, wrap=(), args=()):
    """`memdiag run --dir D OPTIONS -- python limit_grower.py`, the RSS watcher
    reading every 0.1 s; returns the Program (its pid is the grower's: run execs)."""
    d = str(tmp_path / "snaps")
    e = {**os.environ, "MEMDIAG_RSS_INTERVAL": "0.1", "MEMDIAG_RSS_MAX_INTERVAL": "0.5",
         **(env or {})}
    p = start(argv=[*wrap, *RUN, "--dir", d, *options, "--", sys.executable, GROWER, *args],
              env=e)
    p.ready()
    p.dir = d
    p.steps = 0
    return p


def grow(p, mib):
    """Grow by mib MiB; returns the RSS the program saw afterwards."""
    p.steps += 1
    p.send(f"grow {mib}")
    line = p.wait_line("GREW", timeout=60, count=p.steps)
    return int(line.split("rss=")[1])


def snapshots(p):
    return protocol.snapshot_files(p.dir, p.pid)


def wait_for(what, check, timeout=120.0, p=None):
    """check() until it returns something true; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout}s"
                         + (f":\n{p.stdout()}\n{p.stderr()}" if p else ""))


def crossings(p):
    return [line for line in hook_lines(p.stderr()) if "taking a snapshot" in line]


def grow_past(p, threshold, step_mib=10, max_steps=40):
    """Grow step by step until RSS is past threshold; wait for the automatic
    snapshot; return its path."""
    for _ in range(max_steps):
        if grow(p, step_mib) >= threshold:
            names = wait_for("the automatic snapshot", lambda: snapshots(p), p=p)
            return os.path.join(p.dir, names[0])
        assert not snapshots(p), "a snapshot below the threshold"
    raise AssertionError(f"RSS did not reach {threshold} in {max_steps} steps")


def fake_limit(tmp_path, limit, version):
    """A directory standing for the process's cgroup, with its memory limit."""
    root = tmp_path / "cgroup"
    root.mkdir()
    name = "memory.max" if version == "v2" else "memory.limit_in_bytes"
    (root / name).write_text(f"{limit}\n")
    return str(root), str(root / name)


# ------------------------------------------------------------- the limit

def test_memory_limit_order_and_no_limit_values(tmp_path, monkeypatch):
    root = tmp_path / "cg"
    root.mkdir()
    monkeypatch.setenv("MEMDIAG_CGROUP_ROOT", str(root))
    physical = hook_limits.physical_memory()
    assert hook_limits.memory_limit() == (physical, "physical memory", None)
    (root / "memory.limit_in_bytes").write_text("9223372036854771712\n")   # v1: no limit
    (root / "memory.max").write_text("max\n")                              # v2: no limit
    assert hook_limits.memory_limit().source == "physical memory"
    (root / "memory.limit_in_bytes").write_text(f"{300 * MIB}\n")
    assert hook_limits.memory_limit() == (300 * MIB, "cgroup v1",
                                          str(root / "memory.limit_in_bytes"))
    (root / "memory.max").write_text(f"{200 * MIB}\n")
    assert hook_limits.memory_limit() == (200 * MIB, "cgroup v2", str(root / "memory.max"))
    (root / "memory.max").write_text(f"{physical * 2}\n")   # above physical memory: none
    assert hook_limits.memory_limit().source == "cgroup v1"


def test_percent_options_are_checked_before_the_program_starts(tmp_path):
    for args, message in ((["--snapshot-at-rss", "0%"], "above 0%"),
                          (["--snapshot-at-rss", "lots"], "not a size"),
                          (["--snapshot-every", "10M"], "need --snapshot-at-rss"),
                          (["--exit-after-snapshot"], "need --snapshot-at-rss")):
        code, out, err = memdiag("run", *args, "--", sys.executable, "-c", "print('ran')")
        assert code == 2 and message in err and "ran" not in out, (args, err)


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_snapshot_at_60_percent_of_a_limit_file(start, tmp_path, version):
    limit = 200 * MIB
    root, limit_file = fake_limit(tmp_path, limit, version)
    p = run_grower(start, tmp_path, "--snapshot-at-rss", "60%",
                   env={"MEMDIAG_CGROUP_ROOT": root})
    path = grow_past(p, 0.6 * limit)
    meta = load(path).meta
    assert meta["trigger"] == "rss"
    assert meta["memory_limit"] == {"bytes": limit, "source": f"cgroup {version}",
                                    "file": limit_file}
    assert 0.6 * limit <= meta["rss"] < limit
    [said] = crossings(p)
    assert re.fullmatch(rf"memdiag: RSS \d+ MiB crossed 120 MiB \(60% of the 200 MiB cgroup "
                        rf"{version} limit\) in pid {p.pid}; taking a snapshot", said), said
    # The registry lists it once the watcher has seen its writer end.
    entry = wait_for("the registry entry to list it", lambda: (
        lambda e: e if e["rss_trigger"]["snapshots"] else None)(
            protocol.read_entry(p.pid, os.getuid())), p=p)
    assert entry["memory_limit"]["bytes"] == limit
    assert entry["rss_trigger"]["at"] == {"percent": 60}
    assert entry["rss_trigger"]["snapshots"] == [path]
    assert p.alive()


def own_cgroup_dir():
    """(version, directory) of this process's memory cgroup where root may make
    a child with a memory limit in it, else (None, why not)."""
    if not IS_ROOT:
        return None, "needs root to create a cgroup"
    v2, v1 = hook_limits._cgroup_dirs()
    for version, dirs, name in (("v2", v2, "memory.max"), ("v1", v1, "memory.limit_in_bytes")):
        if not dirs:
            continue
        probe = os.path.join(dirs[0], f"memdiag-probe-{os.getpid()}")
        try:
            os.mkdir(probe)
        except OSError as e:
            why = f"cannot create a cgroup under {dirs[0]}: {e.strerror}"
            continue
        usable = os.path.exists(os.path.join(probe, name))
        os.rmdir(probe)
        if usable:
            return version, dirs[0]
        why = f"no memory controller in the cgroups under {dirs[0]}"
    return None, locals().get("why", "no cgroup filesystem mounted")


def test_snapshot_at_60_percent_of_a_real_cgroup_limit(start, tmp_path):
    """The process runs in a memory cgroup of its own, limited to 300 MiB."""
    version, parent = own_cgroup_dir()
    if version is None:
        pytest.skip(f"no real cgroup here ({parent}); the limit-file test covers the logic")
    limit = 300 * MIB
    cgroup = os.path.join(parent, f"memdiag-test-{os.getpid()}")
    os.mkdir(cgroup)
    try:
        name = "memory.max" if version == "v2" else "memory.limit_in_bytes"
        with open(os.path.join(cgroup, name), "w") as f:
            f.write(str(limit))
        # The shell moves itself into the cgroup, then execs memdiag run, which
        # execs the grower: its hook reads the limit when it starts.
        wrap = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh"]
        p = run_grower(start, tmp_path, "--snapshot-at-rss", "60%", "--exit-after-snapshot",
                       wrap=wrap)
        path = grow_past(p, 0.6 * limit)
        meta = load(path).meta
        assert meta["memory_limit"] == {"bytes": limit, "source": f"cgroup {version}",
                                        "file": os.path.join(cgroup, name)}
        assert 0.6 * limit <= meta["rss"] < limit
        assert p.proc.wait(timeout=60) == 0, p.stderr()
        assert "RETIRED" in p.stdout()
    finally:
        # Only this test's processes are in it: the grower and its writer, if
        # the test failed before they ended.
        wait_for("the test cgroup to empty", lambda: _kill_members(cgroup), timeout=30)
        os.rmdir(cgroup)


def _kill_members(cgroup):
    """SIGKILL every process in the cgroup, by pid; True when none is left."""
    with open(os.path.join(cgroup, "cgroup.procs")) as f:
        pids = [int(pid) for pid in f.read().split()]
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return not pids


# ------------------------------------------------ exit after the snapshot

@pytest.mark.parametrize("mode", ["fork", "inline"])
def test_exit_after_snapshot_retires_through_the_program_s_own_sigterm(start, tmp_path, mode):
    root, _ = fake_limit(tmp_path, 200 * MIB, "v2")
    p = run_grower(start, tmp_path, "--mode", mode, "--snapshot-at-rss", "60%",
                   "--exit-after-snapshot", env={"MEMDIAG_CGROUP_ROOT": root})
    path = grow_past(p, 0.6 * 200 * MIB)
    assert p.proc.wait(timeout=60) == 0, p.stderr()
    assert p.stdout().rstrip().endswith("RETIRED")      # its handler ran, its loop ended
    said = hook_lines(p.stderr())
    assert said[-1] == (f"memdiag: {path} written; pid {p.pid} sends itself SIGTERM "
                        f"(--exit-after-snapshot)"), said
    assert load(path).meta["mode"] == mode                # complete, and the one announced
    assert snapshots(p) == [os.path.basename(path)]


def test_exit_after_snapshot_says_when_sigterm_kills_at_once(start, tmp_path):
    """A plain script without a SIGTERM handler ends at SIGTERM's default action."""
    root, _ = fake_limit(tmp_path, 200 * MIB, "v2")
    p = run_grower(start, tmp_path, "--snapshot-at-rss", "60%", "--exit-after-snapshot",
                   env={"MEMDIAG_CGROUP_ROOT": root}, args=["--default-sigterm"])
    grow_past(p, 0.6 * 200 * MIB)
    assert p.proc.wait(timeout=60) == -15
    assert "RETIRED" not in p.stdout()
    assert "SIGTERM is at its default action here: the process ends now" in p.stderr()


# ------------------------------------------ a step, and at most N of them

@pytest.mark.parametrize("mode", ["fork", "inline"])
def test_snapshot_every_keeps_the_first_and_the_latest(start, tmp_path, mode):
    d = tmp_path / "snaps"
    d.mkdir()
    (d / "notes.txt").write_text("not a snapshot")
    p = run_grower(start, tmp_path, "--mode", mode, "--snapshot-at-rss", "100M",
                   "--snapshot-every", "10M", "--max-snapshots", "3")
    other = d / f"memdiag-{p.pid + 1}-2.snap"        # another process's file: never touched
    other.write_bytes(b"x")
    grow_past(p, 100 * MIB)                           # snapshot 1
    for k in range(2, 6):
        grow(p, 12)                                   # each step past the next one: one more
        wait_for(f"automatic snapshot {k}", lambda: len(crossings(p)) >= k and
                 f"memdiag-{p.pid}-{k}.snap" in snapshots(p), p=p)
    assert len(crossings(p)) == 5
    kept = [f"memdiag-{p.pid}-{k}.snap" for k in (1, 4, 5)]
    assert snapshots(p) == kept
    assert sorted(os.listdir(d)) == sorted(["notes.txt", other.name, *kept])
    metas = [load(str(d / name)).meta for name in kept]
    assert all(m["trigger"] == "rss" for m in metas)
    assert metas[0]["rss"] >= 100 * MIB and metas[2]["rss"] >= metas[1]["rss"] + 10 * MIB
    assert wait_for("the registry entry to list them", lambda: protocol.read_entry(
        p.pid, os.getuid())["rss_trigger"]["snapshots"] == [str(d / n) for n in kept], p=p)


# ------------------------------------------------------- a gunicorn worker

GROWING_APP = """
import os

LEAK = []


def app(environ, start_response):
    if len(LEAK) < 40:
        LEAK.append(b"x" * (4 << 20))      # 4 MiB a request, touched, up to 160 MiB
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_gunicorn_worker_retires_after_its_snapshot_and_is_replaced(start, tmp_path, gunicorn,
                                                                    worker):
    """The worker that crosses 60% of the limit writes its snapshot, sends itself
    SIGTERM, finishes its request and exits 0; the arbiter starts another, and
    no request fails."""
    appdir = tmp_path / "app"
    appdir.mkdir()
    (appdir / "growapp.py").write_text(GROWING_APP)
    root, _ = fake_limit(tmp_path, 200 * MIB, "v2")
    d = str(tmp_path / "snaps")
    extra = ["--threads", "2"] if worker == "gthread" else []
    helptext = subprocess.run([gunicorn, "--help"], capture_output=True, text=True).stdout
    if "--control-socket " in helptext:        # gunicorn 25+: keep it out of $HOME
        extra += ["--control-socket", str(tmp_path / "gunicorn.ctl")]
    env = {**os.environ, "MEMDIAG_CGROUP_ROOT": root, "MEMDIAG_RSS_INTERVAL": "0.1"}
    master = start(argv=[*RUN, "--dir", d, "--snapshot-at-rss", "60%", "--exit-after-snapshot",
                         "--", gunicorn, "-w", "1", "-k", worker, "-b", "127.0.0.1:0",
                         "--chdir", str(appdir), *extra, "growapp:app"],
                   env=env, cwd=str(appdir))
    port = int(wait_for("gunicorn to listen", lambda: re.search(
        r"Listening at: http://127\.0\.0\.1:(\d+)", master.stderr()), p=master).group(1))
    pids = []
    deadline = time.monotonic() + 120
    # Requests one after the other (the worker crosses 120 MiB within ~25 of
    # them, and keeps serving while its snapshot is written), until another
    # worker answers.
    while time.monotonic() < deadline and len(set(pids)) < 2:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as r:
            assert r.status == 200
            pids.append(int(r.read()))
        if pids[-1] not in start.pids:
            start.pids.append(pids[-1])
    old, new = pids[0], pids[-1]
    assert new != old, master.stderr()
    wait_for("the old worker to be gone", lambda: not os.path.exists(f"/proc/{old}"), p=master)
    [name] = protocol.snapshot_files(d, old)
    meta = load(os.path.join(d, name)).meta
    assert meta["trigger"] == "rss" and meta["memory_limit"]["bytes"] == 200 * MIB
    log = master.stderr()
    assert f"sends itself SIGTERM" in log and f"Worker exiting (pid: {old})" in log, log
    assert f"Booting worker with pid: {new}" in log
    assert f"(pid:{old}) exited with code" not in log and f"(pid:{old}) was sent" not in log
    assert master.alive()
