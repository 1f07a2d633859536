"""`memdiag top`: one snapshot at a glance.

    >>> result = top(Snapshot.load("b.snap"))          # doctest: +SKIP
    >>> result.totals["objects"], result.containers[0].path   # doctest: +SKIP
    (1843211, "ccap.timer.timer['reg_ary']")
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .suspects import containers
from .types import type_stats


@dataclass(frozen=True)
class Container:
    path: str
    type: str
    length: int
    size: int


@dataclass(frozen=True)
class TopResult:
    path: str
    totals: dict
    by_size: list      # [TypeStat]
    by_count: list     # [TypeStat]
    containers: list   # [Container], longest first


def top(snap, n=10):
    stats = type_stats(snap)
    by_count = sorted(stats, key=lambda t: (-t.count, -t.size, t.type))
    idx = containers(snap)
    lengths = snap.length[idx].astype(np.int64)
    order = np.argsort(-lengths, kind="stable")[:n]
    boxes = []
    for i in idx[order].tolist():
        boxes.append(Container(snap.path_of(i).text(), snap.type_name_of(i),
                               int(snap.length[i]), int(snap.size[i])))
    meta = snap.meta
    totals = {
        "objects": snap.n_objects, "edges": snap.n_edges, "roots": snap.n_roots,
        "python_heap": int(snap.python_heap), "rss": meta.get("rss"),
        "pid": meta.get("pid"), "time": meta.get("time"), "python": meta.get("python"),
        "mode": meta.get("mode"), "walker": meta.get("walker"),
    }
    return TopResult(snap.path, totals, stats[:n], by_count[:n], boxes)
