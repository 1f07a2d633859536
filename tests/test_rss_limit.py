"""--snapshot-at-rss: the evidence is taken when RSS crosses a limit (seed 002:
a supervisor recycles a worker once its memory passes a threshold)."""

import os
import time

from conftest import PROGRAMS
from memdiag.model import Snapshot


def test_one_snapshot_when_rss_crosses_the_limit(sample):
    t = sample(os.path.join(PROGRAMS, "rss_grower.py"), "--cap-mib", "160",
               extra_env={"MEMDIAG_RSS_LIMIT": str(100 << 20), "MEMDIAG_RSS_INTERVAL": "0.2"})
    deadline = time.monotonic() + 60
    snaps = []
    while time.monotonic() < deadline and not snaps:
        snaps = [n for n in os.listdir(t.dir) if n.endswith(".snap")] if os.path.isdir(t.dir) else []
        time.sleep(0.1)
    assert snaps, t.stderr()
    s = Snapshot.load(os.path.join(t.dir, snaps[0]))
    assert s.meta["rss"] >= 100 << 20
    assert "crossed" in t.stderr()
    # It stays above the limit: no second snapshot (the trigger re-arms only
    # after RSS falls below 80% of the limit).
    time.sleep(2.0)
    assert len([n for n in os.listdir(t.dir) if n.endswith(".snap")]) == 1
    assert t.alive()
    # The watcher thread is the hook's: it is not in the snapshot (the program
    # itself starts no thread, so there is no threading.Thread at all).
    assert "threading.Thread" not in s.type_names
    assert "threading._MainThread" in s.type_names
