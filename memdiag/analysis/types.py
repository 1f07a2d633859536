"""Per-type counts and bytes, and their growth between snapshots."""

from __future__ import annotations

import numpy as np

from ..model import TypeGrowth, TypeStat


def type_table(snap):
    """{type name: (count, bytes)} for one snapshot."""
    name_ids, names = snap.name_ids()
    per_name = name_ids[snap.type.astype(np.int64)]
    counts = np.bincount(per_name, minlength=len(names))
    sizes = np.bincount(per_name, weights=snap.size.astype(np.float64), minlength=len(names))
    return {n: (int(c), int(s)) for n, c, s in zip(names, counts.tolist(), sizes.tolist()) if c}


def type_stats(snap):
    """TypeStats of one snapshot, largest total size first.

    >>> [s.type for s in type_stats(snap)][:3]        # doctest: +SKIP
    ['str', 'dict', 'ccap.cap.CAP']
    """
    table = type_table(snap)
    return sorted((TypeStat(n, c, s) for n, (c, s) in table.items()),
                  key=lambda t: (-t.size, -t.count, t.type))


def type_growth(first, last, new_counts=None, freed_counts=None):
    """TypeGrowth for every type present in either snapshot, most grown first."""
    a = type_table(first)
    b = type_table(last)
    out = []
    for name in set(a) | set(b):
        ca, sa = a.get(name, (0, 0))
        cb, sb = b.get(name, (0, 0))
        out.append(TypeGrowth(
            name, ca, cb, sa, sb,
            None if new_counts is None else new_counts.get(name, 0),
            None if freed_counts is None else freed_counts.get(name, 0)))
    out.sort(key=TypeGrowth.sort_key)
    return out
