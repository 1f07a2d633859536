"""Suspects: containers alive in every snapshot whose length grew.

    ccap.timer.timer['reg_ary']   list   200 → 700   (+500 ccap.cap.CAP)

Ranking: with three or more snapshots, a container that grew in every
interval ranks above one that jumped once, and one that did not grow in the
last interval (a bounded cache that filled up) is not a suspect at all.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .paths import retainer_path
from .results import Suspect
from .match import match

CONTAINER_KINDS = ("list", "dict", "set", "deque")


def _container_types(snap):
    """Per type index of snap: whether objects of that type are containers."""
    return np.array([k in CONTAINER_KINDS for k in snap.type_kinds] or [False])


def containers(snap):
    return np.flatnonzero(_container_types(snap)[snap.type.astype(np.int64)])


# An empty container in the first snapshot cannot be told apart from a new
# container that happens to reuse a freed one's address; it must grow by this
# much to be named.
MIN_GROWTH_FROM_EMPTY = 10


def matched_containers(first, last, ia, ib):
    """Of the objects matched between two snapshots (ia in first, ib in last),
    the pairs that are containers."""
    keep = (_container_types(last)[last.type[ib].astype(np.int64)]
            & _container_types(first)[first.type[ia].astype(np.int64)])
    return ia[keep], ib[keep]


def find_suspects(snaps, gids, new_mask_last=None, top=20, min_growth=1, matched=None):
    """Suspects across snapshots (oldest first), best first, at most `top`.

    A container counts as the same object in every snapshot when address and
    type match and, if it held anything in the first snapshot, some of those
    elements are still in it in the last one (an address reused by a new
    container shares none). With two snapshots, `matched` may give the
    containers matched between them already (matched_containers()).
    """
    first, last = snaps[0], snaps[-1]
    # aligned[k][j] is the index in snaps[k] of the j-th container followed.
    if matched is not None and len(snaps) == 2:
        aligned = list(matched)
        followed = 1            # snaps[0] is aligned already
    else:
        aligned = [containers(last)]
        followed = 0
    for k in range(len(snaps) - 2 - followed, -1, -1):
        ip, ic = match(snaps[k], snaps[k + 1], gids[k], gids[k + 1],
                       containers(snaps[k]), aligned[0])
        order = np.argsort(ic)
        ic, ip = ic[order], ip[order]
        keep = np.isin(aligned[0], ic)
        aligned = [a[keep] for a in aligned]
        aligned.insert(0, ip[np.searchsorted(ic, aligned[0])])
    lengths = np.stack([snaps[k].length[aligned[k]].astype(np.int64)
                        for k in range(len(snaps))])
    growth = lengths[-1] - lengths[0]
    ok = growth >= min_growth
    ok &= (lengths[0] > 0) | (growth >= max(min_growth, MIN_GROWTH_FROM_EMPTY))
    if len(snaps) >= 3:
        ok &= lengths[-1] > lengths[-2]   # stopped growing: a bounded cache, not a leak
    cand = np.flatnonzero(ok)
    if not len(cand):
        return []
    grown = (np.diff(lengths[:, cand], axis=0) > 0).sum(axis=0)
    cand = cand[np.lexsort((-growth[cand], -grown))]
    cand = np.array([c for c in cand[: top * 4].tolist()
                     if lengths[0, c] == 0 or _kept_elements(first, last, aligned[0][c],
                                                              aligned[-1][c])],
                    dtype=np.int64)[:top]
    if not len(cand):
        return []
    grown = (np.diff(lengths[:, cand], axis=0) > 0).sum(axis=0)
    last_idx = aligned[-1][cand]
    first_idx = aligned[0][cand]
    sizes = _subtree_new_sizes(last, last_idx, new_mask_last)
    out = []
    for j, c in enumerate(cand.tolist()):
        i_last = int(last_idx[j])
        size_delta = int(last.size[i_last]) - int(first.size[int(first_idx[j])]) + sizes[j]
        out.append(Suspect(retainer_path(last, i_last).text(), last.type_name_of(i_last),
                           tuple(int(x) for x in lengths[:, c]), size_delta,
                           _added_type(last, i_last, new_mask_last),
                           int((np.diff(lengths[:, c]) > 0).sum()),
                           index=i_last))
    out.sort(key=Suspect.sort_key)
    return out


def _kept_elements(first, last, i_first, i_last):
    """Whether the container still holds some of what it held in `first`."""
    ta, _ = first.edges_of(int(i_first))
    tb, _ = last.edges_of(int(i_last))
    if not len(ta):
        return True
    return bool(np.isin(first.addr[ta.astype(np.int64)], last.addr[tb.astype(np.int64)]).any())


def _children_in_tree(snap, idx):
    """Objects whose BFS parent is object idx: the targets of its edges that
    it discovered (only the chunks holding them are decoded)."""
    targets, _ = snap.edges_of(idx)
    if not len(targets):
        return np.zeros(0, np.int64)
    targets = np.unique(np.asarray(targets, dtype=np.int64))   # an item held twice counts once
    return targets[snap.parents_at(targets) == idx + 1]


def _added_type(snap, idx, new_mask):
    kids = _children_in_tree(snap, idx)
    if new_mask is not None and len(kids):
        fresh = kids[new_mask[kids]]
        if len(fresh):
            kids = fresh
    if not len(kids):
        targets, _ = snap.edges_of(idx)
        kids = np.asarray(targets, dtype=np.int64)
    if not len(kids):
        return None
    kinds = snap.type_kinds
    types = snap.type[kids].astype(np.int64)
    counts = Counter(types.tolist())
    # A dict's keys are usually strs; prefer the commonest non-key type.
    for t, _ in counts.most_common():
        if kinds[t] != "str" or len(counts) == 1:
            return snap.type_names[t]
    return snap.type_names[counts.most_common(1)[0][0]]


def _subtree_new_sizes(snap, owners, new_mask, max_depth=16):
    """Bytes of new objects under each owner in the BFS tree (depth-limited)."""
    if new_mask is None or not len(owners):
        return [0] * len(owners)
    fresh = np.flatnonzero(new_mask)
    if not len(fresh):
        return [0] * len(owners)
    parent = snap.parents_at(fresh).astype(np.int64) - 1
    # owner of each fresh object, found level by level: a fresh object whose
    # parent is an owner, or is a fresh object already assigned.
    got = np.full(len(fresh), -1, np.int64)
    owner_pos = {int(o): k for k, o in enumerate(owners.tolist())}
    o_sorted = np.array(sorted(owner_pos), dtype=np.int64)
    o_label = np.array([owner_pos[o] for o in o_sorted.tolist()], dtype=np.int64)
    pos = np.searchsorted(o_sorted, parent)
    pos[pos == len(o_sorted)] = 0
    direct = o_sorted[pos] == parent
    got[direct] = o_label[pos[direct]]
    for _ in range(max_depth):
        pending = np.flatnonzero(got < 0)
        if not len(pending):
            break
        # parents that are fresh objects: where are they in `fresh`?
        p = parent[pending]
        at = np.searchsorted(fresh, p)
        at[at == len(fresh)] = 0
        inside = fresh[at] == p
        lab = np.where(inside, got[at], -1)
        hit = lab >= 0
        if not hit.any():
            break
        got[pending[hit]] = lab[hit]
    ok = got >= 0
    sizes = np.bincount(got[ok], weights=snap.size[fresh[ok]].astype(np.float64),
                        minlength=len(owners))
    return [int(x) for x in sizes.tolist()]
