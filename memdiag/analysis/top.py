"""`memdiag top`: one snapshot at a glance.

    >>> from memdiag.model import Snapshot
    >>> result = top(Snapshot.load("b.snap"), 3)
    >>> result.totals["objects"], [t.type for t in result.by_count]
    (1437, ['str', 'ccap.cap.CAP', 'bytes'])
    >>> [(c.path, c.length) for c in result.containers]
    [("ccap.timer.timer['reg_ary']", 700), ('app.cache', 10), ('app.jumpy', 5)]
"""

from __future__ import annotations

import numpy as np

from .paths import retainer_path
from .results import Container, TopResult, TypeStat
from .suspects import containers
from .types import type_stats


def _memory_limit(meta):
    """The metadata's memory_limit ({bytes, source, file}) if well formed, else None."""
    limit = meta.get("memory_limit")
    if not (isinstance(limit, dict) and type(limit.get("bytes")) is int
            and 0 < limit["bytes"] < 1 << 63 and isinstance(limit.get("source"), str)):
        return None
    return {"bytes": limit["bytes"], "source": limit["source"],
            "file": _text(limit.get("file"))}


def _text(value):
    return value if isinstance(value, str) else None


def top(snap, n=10):
    """A TopResult: totals, the n biggest types by bytes and by count, and
    the n longest containers with their paths."""
    stats = type_stats(snap)
    by_count = sorted(stats, key=TypeStat.count_sort_key)
    idx = containers(snap)
    lengths = snap.length[idx].astype(np.int64)
    sizes = snap.size[idx].astype(np.int64)
    order = np.lexsort((-sizes, -lengths))[:n]
    boxes = sorted((Container(retainer_path(snap, i).text(), snap.type_name_of(i),
                              int(snap.length[i]), int(snap.size[i]))
                    for i in idx[order].tolist()), key=Container.sort_key)
    meta = snap.meta
    totals = {
        "objects": snap.n_objects, "edges": snap.n_edges, "roots": snap.n_roots,
        "python_heap": int(snap.python_heap), "rss": meta.get("rss"),
        "pid": meta.get("pid"), "time": meta.get("time"), "python": meta.get("python"),
        "mode": meta.get("mode"), "walker": meta.get("walker"),
        "argv": meta.get("argv"),
        "memory_limit": _memory_limit(meta), "trigger": _text(meta.get("trigger")),
    }
    return TopResult(snap.path, totals, tuple(stats[:n]), tuple(by_count[:n]), tuple(boxes))
