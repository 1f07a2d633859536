"""Matching objects between snapshots by address and type name.

An object alive in both snapshots keeps its address. An address reused by a
new object of the same type is counted as the same object; that is rare
enough not to change a ranking.
"""

from __future__ import annotations

import numpy as np


try:
    from .. import _fastmatch
except ImportError:  # not built: numpy does it, about 3x slower
    _fastmatch = None


def global_type_ids(snaps):
    """Per snapshot, an array mapping its type index to an id shared by name."""
    ids = {}
    out = []
    for s in snaps:
        out.append(np.array([ids.setdefault(n, len(ids)) for n in s.type_names], dtype=np.int32))
    return out, list(ids)


def match_addresses(addr_a, addr_b):
    """Positions (pa, pb) with addr_a[pa] == addr_b[pb], in addr_b's order."""
    if not len(addr_a) or not len(addr_b):
        empty = np.zeros(0, np.int64)
        return empty, empty
    a = np.ascontiguousarray(addr_a, dtype=np.uint64)
    b = np.ascontiguousarray(addr_b, dtype=np.uint64)
    if _fastmatch is not None:
        pa, pb = _fastmatch.match(a, b)
        return np.frombuffer(pa, np.uint32), np.frombuffer(pb, np.uint32)
    # Sort both (a stable sort of integers is a radix sort), then search the
    # sorted queries: sequential access, robust to repeated addresses.
    order_a = np.argsort(a, kind="stable")
    sorted_a = a[order_a]
    order_b = np.argsort(b, kind="stable")
    sorted_b = b[order_b]
    pos = np.searchsorted(sorted_a, sorted_b)
    pos[pos == len(sorted_a)] = 0
    hit = sorted_a[pos] == sorted_b
    pa = order_a[pos[hit]]
    pb = order_b[hit]
    keep = np.argsort(pb, kind="stable")
    return pa[keep], pb[keep]


def match(a, b, ga, gb, idx_a=None, idx_b=None):
    """Indexes (ia, ib) of objects present in both a and b with the same type.

    idx_a / idx_b restrict the search to those objects of each snapshot.
    """
    addr_a = a.addr if idx_a is None else a.addr[idx_a]
    addr_b = b.addr if idx_b is None else b.addr[idx_b]
    pa, pb = match_addresses(addr_a, addr_b)
    ia = pa if idx_a is None else np.asarray(idx_a)[pa]
    ib = pb if idx_b is None else np.asarray(idx_b)[pb]
    same = np.empty(len(ia), bool)
    ta, tb = a.type, b.type
    for lo in range(0, len(ia), _STEP):       # in slices: small temporaries
        hi = lo + _STEP
        same[lo:hi] = ga[ta[ia[lo:hi]]] == gb[tb[ib[lo:hi]]]
    return ia[same], ib[same]


_STEP = 1 << 18
