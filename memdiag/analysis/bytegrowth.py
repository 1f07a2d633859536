"""Byte growth: objects alive in every snapshot whose own size grew.

A bytearray, an io.BytesIO or an array.array that keeps growing gains no
elements; its own size grows (their C `__sizeof__` counts the buffer). A
str rebuilt ever longer (`log = log + line`) is a new object every time,
but at the same place: the same parent object, alive in both snapshots,
holds it under the same label (attribute, name-like key, index, or the same
opaque key object). Both are followed here, from the first snapshot to the
last, through every snapshot in between.

io.StringIO has no `__sizeof__` of its own on 3.11-3.13: its size is its
basic size (136 or 184 bytes), whatever it holds, so a growing StringIO is
not seen here; RSS grows instead.
"""

from __future__ import annotations

import numpy as np

from .. import snapfile as sf
from .match import match

# Kinds whose own size can grow: str and bytes (bytearray; a str resized in
# place), C objects with a buffer (BytesIO, array.array), instances of
# classes (subclasses of those). Containers grow in elements instead.
BYTE_KINDS = ("str", "bytes", "other", "instance")
# A smaller change is noise (an int rebuilt, a small scratch buffer).
MIN_BYTE_GROWTH = 1024
_STEP = 1 << 18

_NAMED = (sf.L_ITEM, sf.L_ATTR, sf.L_LOCAL)


def _kind_mask(snap, kinds=BYTE_KINDS):
    return np.array([k in kinds for k in snap.type_kinds] or [False])


def byte_growers(snaps, gids, ia, ib, new_mask, freed_mask, min_bytes=MIN_BYTE_GROWTH):
    """Objects that grew in bytes from the first snapshot to the last, as
    `aligned`, an int64 array of shape (snapshots, objects): aligned[k] is the
    index of each in snaps[k]. (ia, ib) are all objects matched between the
    first and the last by address and type; new_mask / freed_mask mark the
    objects of the last / first that have no match."""
    first, last = snaps[0], snaps[-1]
    if not len(first.type_names) or not len(last.type_names):
        return np.zeros((len(snaps), 0), np.int64)
    grew = []
    for lo in range(0, len(ia), _STEP):     # in slices: small temporaries
        d = (last.size[ib[lo:lo + _STEP]].astype(np.int64)
             - first.size[ia[lo:lo + _STEP]].astype(np.int64))
        grew.append(np.flatnonzero(d >= min_bytes) + lo)
    grew = np.concatenate(grew) if grew else np.zeros(0, np.int64)
    a, b = np.asarray(ia)[grew].astype(np.int64), np.asarray(ib)[grew].astype(np.int64)
    kind = _kind_mask(last)[last.type[b].astype(np.int64)]
    pairs_a, pairs_b = [a[kind]], [b[kind]]
    ra, rb = rebuilt_pairs(first, last, gids[0], gids[-1], ia, ib, new_mask, freed_mask)
    grew = last.size[rb].astype(np.int64) - first.size[ra].astype(np.int64) >= min_bytes
    pairs_a.append(ra[grew])
    pairs_b.append(rb[grew])
    a, b = np.concatenate(pairs_a), np.concatenate(pairs_b)
    order = np.argsort(b, kind="stable")
    a, b = a[order], b[order]
    aligned = [b]
    labels = _Labels()
    for k in range(len(snaps) - 2, 0, -1):
        prev = np.full(len(b), -1, np.int64)
        known = aligned[0] >= 0
        prev[known] = predecessors(snaps[k], snaps[k + 1], gids[k], gids[k + 1],
                                   aligned[0][known], labels)
        aligned.insert(0, prev)
    aligned.insert(0, a)
    aligned = np.stack(aligned) if len(b) else np.zeros((len(snaps), 0), np.int64)
    return aligned[:, (aligned >= 0).all(axis=0)]


class _Labels:
    """Edge labels of several snapshots made comparable: a named label by its
    text, an opaque key by the key object's address, an index by itself."""

    def __init__(self):
        self.ids = {}
        self.tables = {}

    def keys(self, snap, codes):
        """(kind, value) arrays for label codes of `snap`."""
        codes = np.asarray(codes, dtype=np.uint64)
        kind = (codes & np.uint64(sf.LABEL_KIND_MASK)).astype(np.int64)
        payload = codes >> np.uint64(sf.LABEL_KIND_BITS)
        value = payload.copy()
        table = self.tables.get(id(snap))
        if table is None:
            table = np.array([self.ids.setdefault(s, len(self.ids)) for s in snap.labels]
                             or [0], dtype=np.uint64)
            self.tables[id(snap)] = table
        named = np.isin(kind, _NAMED)
        inside = payload < np.uint64(len(snap.labels))
        value[named & inside] = table[payload[named & inside].astype(np.int64)]
        value[named & ~inside] = np.uint64((1 << 64) - 1)
        opaque = (kind == sf.L_ITEM_OPAQUE) & (payload < np.uint64(snap.n_objects))
        value[opaque] = snap.addr[payload[opaque].astype(np.int64)]
        value[(kind == sf.L_NONE) | (kind == sf.L_KEY)] = 0
        return kind, value


def rebuilt_pairs(first, last, ga, gb, ia, ib, new_mask, freed_mask, labels=None):
    """(index in first, index in last) of objects replaced by a new one of
    the same type at the same place: a freed object of `first` and a new
    object of `last` whose parents are the same object (matched) and whose
    discovering edges have the same label."""
    labels = labels or _Labels()
    empty = np.zeros(0, np.int64)
    fa = np.flatnonzero(freed_mask & _kind_mask(first)[first.type.astype(np.int64)])
    nb = np.flatnonzero(new_mask & _kind_mask(last)[last.type.astype(np.int64)])
    if not len(fa) or not len(nb):
        return empty, empty
    to_last = np.full(first.n_objects, -1, np.int32 if last.n_objects < 1 << 31 else np.int64)
    to_last[ia] = ib
    pa = first.parents_at(fa).astype(np.int64) - 1
    fa, pa = fa[pa >= 0], pa[pa >= 0]
    pa = to_last[pa].astype(np.int64)
    del to_last
    fa, pa = fa[pa >= 0], pa[pa >= 0]
    pb = last.parents_at(nb).astype(np.int64) - 1
    nb, pb = nb[pb >= 0], pb[pb >= 0]
    if not len(fa) or not len(nb):
        return empty, empty
    ka, va = labels.keys(first, first.plabels_at(fa))
    kb, vb = labels.keys(last, last.plabels_at(nb))
    ta = ga[first.type[fa].astype(np.int64)].astype(np.uint64)
    tb = gb[last.type[nb].astype(np.int64)].astype(np.uint64)
    ha = _key_hash(pa, ka, va, ta)
    hb = _key_hash(pb, kb, vb, tb)
    order = np.argsort(ha, kind="stable")
    ha = ha[order]
    pos = np.clip(np.searchsorted(ha, hb), 0, len(ha) - 1)
    hit = ha[pos] == hb
    j = order[pos[hit]]
    nb_hit = np.flatnonzero(hit)
    same = ((pa[j] == pb[nb_hit]) & (ka[j] == kb[nb_hit]) & (va[j] == vb[nb_hit])
            & (ta[j] == tb[nb_hit]))
    return fa[j[same]], nb[nb_hit[same]]


def _key_hash(parent, kind, value, type_id):
    h = parent.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= (value + kind.astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
    h ^= type_id * np.uint64(0x94D049BB133111EB)
    return h


def predecessors(prev, cur, g_prev, g_cur, objs, labels=None):
    """For objects `objs` of `cur`, the same object in `prev` (address and
    type), or the object its parent held at the same label there (a value
    rebuilt in between); -1 where neither exists."""
    labels = labels or _Labels()
    objs = np.asarray(objs, dtype=np.int64)
    out = np.full(len(objs), -1, np.int64)
    if not len(objs):
        return out
    parents = cur.parents_at(objs).astype(np.int64) - 1
    want = np.unique(np.concatenate([objs, parents[parents >= 0]]))
    ip, ic = match(prev, cur, g_prev, g_cur, None, want)
    order = np.argsort(ic, kind="stable")
    ip, ic = np.asarray(ip, dtype=np.int64)[order], np.asarray(ic, dtype=np.int64)[order]
    pos = np.clip(np.searchsorted(ic, objs), 0, max(len(ic) - 1, 0))
    direct = (ic[pos] == objs) if len(ic) else np.zeros(len(objs), bool)
    out[direct] = ip[pos[direct]]
    for k in np.flatnonzero(~direct & (parents >= 0)).tolist():
        at = np.searchsorted(ic, parents[k])
        if at >= len(ic) or ic[at] != parents[k]:
            continue
        targets, codes = prev.edges_of(int(ip[at]))
        if not len(targets):
            continue
        kind, value = labels.keys(cur, cur.plabels_at([objs[k]]))
        tk, tv = labels.keys(prev, codes)
        targets = np.asarray(targets, dtype=np.int64)
        hit = ((tk == kind[0]) & (tv == value[0])
               & (g_prev[prev.type[targets].astype(np.int64)]
                  == g_cur[int(cur.type[objs[k]])]))
        if hit.any():
            out[k] = targets[np.argmax(hit)]
    return out
