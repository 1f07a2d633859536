"""The hook's promises to the target (issue 2, "Not harming the target"),
checked on real processes with real signals and real snapshot files.

Tests that take a `walker` parameter run once with the pure-Python walker
(MEMDIAG_PURE_PYTHON=1) and once with the compiled one (skipped when it is
not built for this interpreter); tests about one walker say so in their name.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import memdiag
from hookutil import (PROGRAMS, expected_walker, hook_lines, load, run_program, snap_files,
                      start, wait_file, walker_env)  # noqa: F401 (start is a fixture)

LOOP = os.path.join(PROGRAMS, "hooked_loop.py")
MODES = ["fork", "inline"]
WALKERS = ["python", "compiled"]
PY = sys.version_info[:2]


def loop(start, tmp_path, mode, objects=0, env=None):
    d = tmp_path / "snaps"
    p = start(script=LOOP, args=(d, mode, objects), env=env)
    info = p.ready()
    p.dir = str(d)
    p.walker = info["walker"]
    return p


# ------------------------------------------------------------ taking snapshots

@pytest.mark.parametrize("mode", MODES)
def test_signal_writes_numbered_snapshot_and_target_keeps_running(start, tmp_path, mode):
    p = loop(start, tmp_path, mode, objects=30000)
    p.kill(signal.SIGUSR2)
    first = wait_file(os.path.join(p.dir, f"memdiag-{p.pid}-1.snap"), proc=p)
    s = load(first)
    assert (s.meta["pid"], s.meta["seq"], s.meta["mode"]) == (p.pid, 1, mode)
    assert s.meta["walker"] == p.walker
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    assert s.n_objects > 30000
    n = p.count()
    p.wait_count_above(n)                      # still counting after the snapshot

    p.kill(signal.SIGUSR2)
    second = wait_file(os.path.join(p.dir, f"memdiag-{p.pid}-2.snap"), proc=p)
    assert load(second).meta["seq"] == 2
    time.sleep(0.2)
    assert snap_files(p.dir, p.pid) == [f"memdiag-{p.pid}-1.snap", f"memdiag-{p.pid}-2.snap"]
    assert not [n for n in os.listdir(p.dir) if n.endswith(".tmp")]
    assert p.alive() and not p.lines("EXC")
    assert hook_lines(p.stderr()) == []


def test_fork_mode_pause_is_small_and_recorded(start, tmp_path):
    # 150k objects: the walk takes a while, the fork only copies page tables.
    p = loop(start, tmp_path, "fork", objects=150000)
    p.kill(signal.SIGUSR2)
    meta = load(wait_file(os.path.join(p.dir, f"memdiag-{p.pid}-1.snap"), proc=p)).meta
    assert meta["mode"] == "fork"
    pause, walk = meta["pause_seconds"], meta["walk_seconds"]
    assert pause is not None and 0 < pause < 0.1, meta
    if p.walker == "python":
        assert pause < walk / 5, meta      # the walk did not happen in the target


DUMP = """
    import json, os, sys, time
    import memdiag
    path, mode = sys.argv[1], sys.argv[2]
    keep = [str(i) for i in range(1000)]
    returned = memdiag.dump(path, mode=mode)
    st = os.stat(path)                      # must be complete right now
    try:
        memdiag.dump(path, mode=mode)
        again = "overwrote"
    except Exception as e:
        again = f"{type(e).__name__}: {e}"
    print("RESULT " + json.dumps({"returned": returned, "size": st.st_size,
                                  "mode": oct(st.st_mode & 0o777), "again": again,
                                  "listing": sorted(os.listdir(os.path.dirname(path)))}))
"""


@pytest.mark.parametrize("mode", MODES)
def test_dump_writes_the_file_before_it_returns(tmp_path, mode):
    target = tmp_path / "out" / "now.snap"
    os.makedirs(target.parent)
    r = run_program(DUMP, target, mode)
    assert r["returned"] == str(target)
    assert r["size"] == os.path.getsize(target) and r["mode"] == "0o600"
    assert r["listing"] == ["now.snap"]           # no temp file left behind
    # The second dump refuses to overwrite (in fork mode the child says why on stderr).
    assert r["again"].startswith("HookError")
    assert "will not overwrite" in r["again"] + r["_stderr"]
    s = load(target)
    assert s.meta["mode"] == mode and s.meta["seq"] == 1
    assert len(s.find_type("str")) > 1000
