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
    if idx_a is None:
        addr_a = a.addr
        idx_a = None
    else:
        addr_a = a.addr[idx_a]
    if idx_b is None:
        addr_b = b.addr
    else:
        addr_b = b.addr[idx_b]
    _, pa, pb = np.intersect1d(addr_a, addr_b, assume_unique=True, return_indices=True)
    ia = pa if idx_a is None else idx_a[pa]
    ib = pb if idx_b is None else idx_b[pb]
    same = ga[a.type[ia].astype(np.int64)] == gb[b.type[ib].astype(np.int64)]
    return ia[same], ib[same]
