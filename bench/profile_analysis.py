"""Where `memdiag diff` and `retainers` spend their time, in-process.

    .venv/bin/python bench/run.py --sizes 3M --keep /tmp/snaps
    .venv/bin/python bench/profile_analysis.py /tmp/snaps/n3000000

Loads the two snapshots the benchmark kept (a.snap, before the leak grew,
and the first SIGUSR2 one, after), runs what the two commands run under cProfile,
and prints the functions with the most time of their own, plus the time and
peak RSS of each step. A third section times the snapshot writer's zlib
compression of the same columns, the part of a snapshot that is not the walk.
"""

from __future__ import annotations

import cProfile
import glob
import io
import os
import pstats
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def profiled(title, fn):
    pr = cProfile.Profile()
    t = time.perf_counter()
    pr.enable()
    out = fn()
    pr.disable()
    took = time.perf_counter() - t
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(12)
    body = buf.getvalue()
    body = body[body.index("   ncalls"):] if "   ncalls" in body else body
    print(f"== {title}: {took:.2f} s (under cProfile), peak RSS so far {peak_mib():.0f} MiB")
    print(body.rstrip() + "\n")
    return out


def steps(a_path, b_path):
    """The same work as `diff A B` / `retainers B --type`, timed step by step."""
    from memdiag.analysis import diff as diff_mod
    from memdiag.analysis.match import global_type_ids, match
    from memdiag.analysis.retainers import retainer_chains
    from memdiag.model import Snapshot

    rows = []

    def step(name, fn):
        t = time.perf_counter()
        out = fn()
        rows.append((name, time.perf_counter() - t, peak_mib()))
        return out

    a = step("load A (trailer)", lambda: Snapshot.load(a_path))
    b = step("load B (trailer)", lambda: Snapshot.load(b_path))
    step("decode addr+type A,B", lambda: (a.addr, a.type, b.addr, b.type))
    step("decode size+length A,B", lambda: (a.size, a.length, b.size, b.length))
    step("decode parent+plabel A,B", lambda: (a.parent, a.plabel, b.parent, b.plabel))
    gids, _ = global_type_ids([a, b])
    step("match A,B (all objects)", lambda: match(a, b, gids[0], gids[1]))
    step("diff (rest, columns cached)", lambda: diff_mod.diff([a, b]))
    b2 = Snapshot.load(b_path)
    step("retainers B --type AuditEntry (fresh)", lambda: retainer_chains(b2, "shop.AuditEntry"))
    step("decode etarget B (not needed by diff)", lambda: b.edge_targets)
    print("== step by step (wall time, peak RSS of this process so far)")
    for name, sec, mib in rows:
        print(f"  {name:<42} {sec * 1000:8.0f} ms   {mib:6.0f} MiB")
    print()


def writer_compression(path):
    from run import writer_zlib
    took, raw = writer_zlib(path)
    print(f"== snapshot writer: zlib level 1 over the columns of {os.path.basename(path)}: "
          f"{raw / 2**20:.0f} MiB raw, {took:.2f} s ({raw / took / 2**20:.0f} MiB/s)")


def main(argv):
    if len(argv) != 1:
        sys.exit("usage: profile_analysis.py DIR   (a directory kept by bench/run.py --keep)")
    d = argv[0]
    a = os.path.join(d, "a.snap")
    # B is the first snapshot taken on SIGUSR2: the lowest seq.
    bs = sorted(glob.glob(os.path.join(d, "memdiag-*.snap")),
                key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))
    if not os.path.exists(a) or not bs:
        sys.exit(f"{d}: expected a.snap and memdiag-<pid>-<seq>.snap files (from run.py --keep)")
    b = bs[0]
    steps(a, b)
    from memdiag.analysis.diff import diff
    from memdiag.analysis.retainers import retainer_chains
    from memdiag.model import Snapshot
    from memdiag.render.diff import diff_json
    profiled("diff A B (load, analyse, JSON)",
             lambda: diff_json(diff([Snapshot.load(a), Snapshot.load(b)]), 10))
    profiled("retainers B --type shop.AuditEntry",
             lambda: retainer_chains(Snapshot.load(b), "shop.AuditEntry"))
    writer_compression(b)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
