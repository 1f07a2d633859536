"""Matching objects between snapshots by address and type name.

An object alive in both snapshots keeps its address. An address reused by a
new object of the same type is counted as the same object; that is rare
enough not to change a ranking.
"""

from __future__ import annotations

import numpy as np


def global_type_ids(snaps):
    """Per snapshot, an array mapping its type index to an id shared by name."""
    ids = {}
    out = []
    for s in snaps:
        out.append(np.array([ids.setdefault(n, len(ids)) for n in s.type_names], dtype=np.int64))
    return out, list(ids)


def match(a, b, ga, gb, idx_a=None, idx_b=None):
    """Indexes (ia, ib) of objects present in both a and b with the same type.

    idx_a / idx_b restrict the search to those objects of each snapshot.
    """
    addr_a = a.addr if idx_a is None else a.addr[idx_a]
    addr_b = b.addr if idx_b is None else b.addr[idx_b]
    if not len(addr_a) or not len(addr_b):
        empty = np.zeros(0, np.int64)
        return empty, empty
    # One sort and a binary search; robust to duplicate addresses (a damaged
    # file), which np.intersect1d(assume_unique=True) is not.
    order = np.argsort(addr_a, kind="stable")
    sorted_a = addr_a[order]
    pos = np.searchsorted(sorted_a, addr_b)
    pos[pos == len(sorted_a)] = 0
    hit = sorted_a[pos] == addr_b
    pb = np.flatnonzero(hit)
    pa = order[pos[hit]]
    ia = pa if idx_a is None else np.asarray(idx_a)[pa]
    ib = pb if idx_b is None else np.asarray(idx_b)[pb]
    same = ga[a.type[ia].astype(np.int64)] == gb[b.type[ib].astype(np.int64)]
    return ia[same], ib[same]
