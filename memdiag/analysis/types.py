"""Per-type counts and bytes, and their growth between snapshots."""

from __future__ import annotations

import numpy as np

from .results import TypeGrowth, TypeStat


STEP = 1 << 20


def counts_by_type(snap, mask=None):
    """(count, bytes) per type index, in slices so temporaries stay small."""
    ntypes = len(snap.type_names)
    counts = np.zeros(ntypes, np.int64)
    sizes = np.zeros(ntypes, np.float64)
    types, size = snap.type, snap.size
    for lo in range(0, snap.n_objects, STEP):
        t = types[lo:lo + STEP]
        w = size[lo:lo + STEP]
        if mask is not None:
            m = mask[lo:lo + STEP]
            t, w = t[m], w[m]
        counts += np.bincount(t, minlength=ntypes)
        sizes += np.bincount(t, weights=w, minlength=ntypes)
    return counts, sizes


def type_table(snap, mask=None):
    """{type name: (count, bytes)} for one snapshot (or the objects in mask)."""
    counts, sizes = counts_by_type(snap, mask)
    out = {}
    for name, c, s in zip(snap.type_names, counts.tolist(), sizes.tolist()):
        if c:
            c0, s0 = out.get(name, (0, 0))
            out[name] = (c0 + c, s0 + int(s))
    return out


def type_stats(snap):
    """TypeStats of one snapshot, largest total size first (TypeStat.sort_key).

    >>> from memdiag.model import Snapshot
    >>> [(s.type, s.count, s.size) for s in type_stats(Snapshot.load("b.snap"))][:3]
    [('str', 714, 39528), ('ccap.cap.CAP', 700, 39200), ('dict', 4, 6928)]
    """
    table = type_table(snap)
    return sorted((TypeStat(n, c, s) for n, (c, s) in table.items()), key=TypeStat.sort_key)


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
