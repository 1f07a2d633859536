"""One interpreter's side of the cross-version walker benchmark: bench/shop.py's
heap, then a fork-mode snapshot with the compiled walker each time run.py asks.

    python3.15 bench/versions.py N DIR      # started by bench/run.py --versions

run.py starts one such process per Python version (3.13 and 3.15 by default)
on heaps of the same shape (shop.build(N) is seeded: the same objects in the
same order on every version) and asks them for snapshots in turn, so that
every version's runs are spread over the same stretch of the machine's load.

Protocol: one JSON object per line on stdout. {"event": "ready", ...} once the
heap is built; then one {"event": "snap", ...} per "snap" line on stdin;
"quit" or the end of stdin ends the process. {"event": "error", "why": ...}
when there is no compiled walker to measure. Progress goes to stderr.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import probe  # noqa: E402
import shop  # noqa: E402


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def snap(hook, snapfile, path):
    """One memdiag.dump in fork mode: its costs, per object."""
    gc.collect()
    t = time.perf_counter()
    final = hook.dump(path, mode="fork")
    seconds = time.perf_counter() - t
    readings = probe.read(final) or {}
    with snapfile.Reader.open(final) as r:
        objects = r.trailer["objects"]
        meta = r.trailer["meta"]
    os.unlink(final)
    if os.path.exists(final + ".probe.json"):
        os.unlink(final + ".probe.json")
    extra_kb = readings.get("child_hwm_kb", 0) - readings.get("child_rss_start_kb", 0)
    return {
        "objects": objects,
        "walker": meta.get("walker"),
        "dump_seconds": seconds - readings.get("probe_seconds", 0.0),
        # in the child: walk, type names and writing the file
        "walk_seconds": meta["walk_seconds"],
        "child_cpu_seconds": readings.get("child_cpu_seconds"),
        "child_main_thread_cpu_seconds": readings.get("child_main_thread_cpu_seconds"),
        "extra_bytes_per_object": extra_kb * 1024 / objects if readings else None,
    }


def main(n, directory):
    import memdiag.hook as hook
    import memdiag.hook_publish
    import memdiag.hook_walk
    from memdiag import snapfile
    python = "%d.%d.%d" % sys.version_info[:3]
    if memdiag.hook_walk.cwalker is None:
        emit(event="error", why=f"no compiled walker for Python {python} "
                                f"(make bench builds it: scripts/mkvenv .venv-X.Y {sys.executable} bench)")
        return 0
    hook.install(dir=directory, mode="fork")
    probe.attach(memdiag.hook_publish)
    t = time.perf_counter()
    built = shop.build(n)
    gc.collect()
    emit(event="ready", python=python, objects_built=built,
         build_seconds=time.perf_counter() - t, rss_kb=probe.status()["VmRSS"])
    k = 0
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "snap":
            emit(event="snap", **snap(hook, snapfile, os.path.join(directory, f"v{k}.snap")))
            k += 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: versions.py N DIR  (started by bench/run.py)")
    sys.exit(main(int(sys.argv[1]), sys.argv[2]))
