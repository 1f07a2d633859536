"""Time and memory of retained sizes for one snapshot, in a fresh process.

    .venv/bin/python bench/retained.py SNAP      # prints one JSON object

Loads the snapshot, decodes what the dominator tree needs and computes it
(memdiag.analysis.retained.dominator_tree): the work `top --retained` adds
to `top`. Peak memory is the whole process's VmHWM above its RSS once the
imports are done (interpreter, numpy, memdiag), so it counts the decoded
columns, the extension's work arrays and the results.
"""

import json
import sys
import time

from memdiag.analysis import retained
from memdiag.model import Snapshot


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def main(path):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                 # VmHWM starts again from the current RSS
    base = status()["VmRSS"]
    t = time.perf_counter()
    snap = Snapshot.load(path)
    tree = retained.dominator_tree(snap)
    seconds = time.perf_counter() - t
    peak = status()["VmHWM"] - base
    # What the virtual root's children retain is the whole heap: a check
    # that the answer is whole, not a measurement.
    by_roots = int(tree.retained[tree.idom == snap.n_objects].sum(dtype="uint64"))
    print(json.dumps({"objects": snap.n_objects, "edges": snap.n_edges, "seconds": seconds,
                      "peak_bytes_above_imports": peak,
                      "compiled": retained._dominators is not None,
                      "output_ok": by_roots == int(snap.size.sum(dtype="uint64"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
