"""Suspects: what grew between snapshots, and holds on to it.

    ccap.timer.timer['reg_ary']   list   200 → 700   (+500 ccap.cap.CAP)
    app.history[*]                list   ×300, 3,000 → 4,000 (+1,000 dict)
    app.capture                   _io.BytesIO   +1.0 MiB

Three kinds of growth:

- a container alive in every snapshot whose length grew;
- many containers with the same path shape that grew, together (a group:
  `history[user_id].append(event)` for a few hundred users, per-tenant
  caches, per-connection buffers), reported once with the shape's `[*]`,
  how many containers there are and how many grew;
- an object alive in every snapshot whose own size grew (a bytearray, a
  BytesIO, a str rebuilt ever longer at the same place): analysis.bytegrowth.

Ranking (Suspect.sort_key): strong, unbounded growth first, then bounded
containers still filling up, then weakly held ones (analysis.holders);
within each, steady growth above a one-off jump, then bytes. With three or
more snapshots, a container that did not grow in the last interval (a
bounded cache that filled up) is not a suspect at all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .bytegrowth import byte_growers
from .holders import bound_of, holds_weakly
from .match import match
from .paths import has_folded_run, retainer_path, shape_hashes
from .results import Suspect, span_shape
from .retained import dominator_trees, retained_together

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
# Members of a group whose elements are checked for weak references (the
# ones that grew most).
WEAK_SAMPLE = 16


def matched_containers(first, last, ia, ib):
    """Of the objects matched between two snapshots (ia in first, ib in last),
    the pairs that are containers."""
    keep = (_container_types(last)[last.type[ib].astype(np.int64)]
            & _container_types(first)[first.type[ia].astype(np.int64)])
    return ia[keep], ib[keep]


@dataclass
class _Candidate:
    """A suspect before it is named: its members, as indexes per snapshot."""
    unit: str                 # "elements" or "bytes"
    members: np.ndarray       # (snapshots, members) int64
    lengths: np.ndarray       # (snapshots, members)
    sizes: np.ndarray         # (snapshots, members) own bytes
    size_delta: int = 0
    group: bool = False
    weak: bool = False
    bound: int | None = None

    @property
    def growth(self):
        g = self.lengths[-1] - self.lengths[0]
        return g if self.unit == "elements" else self.sizes[-1] - self.sizes[0]

    def intervals_grown(self):
        total = (self.lengths if self.unit == "elements" else self.sizes).sum(axis=1)
        return int((np.diff(total) > 0).sum())

    def rank(self):
        strength = 2 if self.weak else 1 if self.bound is not None else 0
        return (strength, -self.intervals_grown(), -self.size_delta,
                -int(self.growth.sum()) if self.unit == "elements" else 0)

    def biggest(self):
        """Position of the member that grew most."""
        return int(np.argmax(self.growth))


def follow_containers(snaps, gids, matched=None):
    """The containers of the last snapshot that are alive in every snapshot:
    an int64 array (snapshots, containers) of their index in each.

    A container counts as the same object in every snapshot when address and
    type match. With two snapshots, `matched` may give the containers
    matched between them already (matched_containers())."""
    if matched is not None and len(snaps) == 2:
        aligned = [np.asarray(a, dtype=np.int64) for a in matched]
        followed = 1            # snaps[0] is aligned already
    else:
        aligned = [containers(snaps[-1])]
        followed = 0
    for k in range(len(snaps) - 2 - followed, -1, -1):
        ip, ic = match(snaps[k], snaps[k + 1], gids[k], gids[k + 1],
                       containers(snaps[k]), aligned[0])
        order = np.argsort(ic)
        ic, ip = ic[order], ip[order]
        keep = np.isin(aligned[0], ic)
        aligned = [a[keep] for a in aligned]
        aligned.insert(0, ip[np.searchsorted(ic, aligned[0])])
    return np.stack([np.asarray(a, dtype=np.int64) for a in aligned])


def _column(snaps, aligned, name):
    return np.stack([getattr(snaps[k], name)[aligned[k]].astype(np.int64)
                     for k in range(len(snaps))])


def find_suspects(snaps, gids, new_mask_last=None, top=20, min_growth=1, matched=None,
                  byte_pairs=None, retained=True):
    """Suspects across snapshots (oldest first), best first, at most `top`.

    A container counts as the same object in every snapshot when address and
    type match and, if it held anything in the first snapshot, some of those
    elements are still in it in the last one (an address reused by a new
    container shares none). With two snapshots, `matched` may give the
    containers matched between them already (matched_containers()).
    `byte_pairs` is (ia, ib, freed_mask): all objects matched between the
    first and the last snapshot, and the first's objects that were freed; it
    enables byte growth. With `retained`, each suspect gets its retained
    sizes in the first and the last snapshot.
    """
    first, last = snaps[0], snaps[-1]
    cands = _container_candidates(snaps, gids, matched, min_growth)
    if byte_pairs is not None and new_mask_last is not None:
        ia, ib, freed_mask = byte_pairs
        grown = byte_growers(snaps, gids, ia, ib, new_mask_last, freed_mask)
        cands += _byte_candidates(snaps, grown)
    if not cands:
        return []
    _set_size_deltas(last, first, cands, new_mask_last)
    cands.sort(key=_Candidate.rank)
    picked = []
    for c in cands:
        if len(picked) >= top * 4:
            break
        if not c.group and c.unit == "elements" and c.lengths[0, 0] > 0 \
                and not _kept_elements(first, last, c.members[0, 0], c.members[-1, 0]):
            continue
        if c.unit == "elements":
            c.weak = _weak(last, c, new_mask_last)
            c.bound = _bound(last, c)
        picked.append(c)
    picked.sort(key=_Candidate.rank)
    picked = picked[:top]
    trees = dominator_trees([first, last]) if retained and picked else None
    out = [_name(snaps, c, new_mask_last, trees) for c in picked]
    out.sort(key=Suspect.sort_key)
    return out


def _container_candidates(snaps, gids, matched, min_growth):
    """Containers that grew, alone or as groups of one path shape."""
    aligned = follow_containers(snaps, gids, matched)
    lengths = _column(snaps, aligned, "length")
    growth = lengths[-1] - lengths[0]
    ok = growth >= min_growth
    ok &= (lengths[0] > 0) | (growth >= max(min_growth, MIN_GROWTH_FROM_EMPTY))
    if len(snaps) >= 3:
        ok &= lengths[-1] > lengths[-2]   # stopped growing: a bounded cache, not a leak
    cand = np.flatnonzero(ok)
    if not len(cand):
        return []
    last = snaps[-1]
    if len(cand) > 1:
        keys = _shape_keys(last, aligned[-1][cand])
        uniq, counts = np.unique(keys, return_counts=True)
        shared = uniq[counts >= 2]
    else:                       # one container: no group to form
        keys = np.zeros(1, np.uint64)
        shared = keys[:0]
    out = []
    singles = cand[~np.isin(keys, shared)]
    sizes = _column(snaps, aligned[:, singles], "size")
    for k, c in enumerate(singles.tolist()):
        out.append(_Candidate("elements", aligned[:, [c]], lengths[:, [c]], sizes[:, [k]]))
    if len(shared):
        # Members: every followed container of those shapes, grown or not.
        types = np.unique(last.type[aligned[-1][cand]])
        pool = np.flatnonzero(np.isin(last.type[aligned[-1]], types))
        pool_keys = _shape_keys(last, aligned[-1][pool])
        for key in shared.tolist():
            sel = aligned[:, pool[pool_keys == key]]
            sel = sel[:, _same_holder(snaps, sel)]
            lens = _column(snaps, sel, "length")
            total = lens.sum(axis=1)
            if total[-1] - total[0] < min_growth:
                continue
            if len(snaps) >= 3 and total[-1] <= total[-2]:
                continue
            out.append(_Candidate("elements", sel, lens, _column(snaps, sel, "size"),
                                  group=True))
    return out


def _same_holder(snaps, members):
    """Which members are held by the same object in every snapshot (the one
    whose edge discovered them has the same address). A container of the
    group's shape at an address that a freed container of another place used
    in an earlier snapshot is not the same container."""
    addrs = []
    for k, snap in enumerate(snaps):
        holder = snap.parents_at(members[k]).astype(np.int64) - 1
        addrs.append(np.where(holder >= 0, snap.addr[np.maximum(holder, 0)], 0))
    return (np.stack(addrs) == addrs[-1]).all(axis=0)


def _shape_keys(snap, idx):
    """Path shape and type in one key: objects that are alike."""
    return shape_hashes(snap, idx) ^ (snap.type[idx].astype(np.uint64)
                                      * np.uint64(0xD6E8FEB86659FD93))


def _byte_candidates(snaps, aligned):
    """Objects that grew in bytes, alone or as groups of one path shape."""
    if not aligned.shape[1]:
        return []
    sizes = _column(snaps, aligned, "size")
    if len(snaps) >= 3:
        keep = sizes[-1] > sizes[-2]
        aligned, sizes = aligned[:, keep], sizes[:, keep]
        if not aligned.shape[1]:
            return []
    lengths = _column(snaps, aligned, "length")
    keys = _shape_keys(snaps[-1], aligned[-1])
    out = []
    for key in np.unique(keys).tolist():
        at = np.flatnonzero(keys == key)
        out.append(_Candidate("bytes", aligned[:, at], lengths[:, at], sizes[:, at],
                              group=len(at) > 1))
    return out


def _set_size_deltas(last, first, cands, new_mask):
    """What each candidate's growth accounts for in bytes: its own growth,
    plus for a container the new objects below it."""
    owners = [c.members[-1] for c in cands if c.unit == "elements"]
    below = iter([])
    if owners:
        flat = np.concatenate(owners)
        sizes = np.array(_subtree_new_sizes(last, flat, new_mask), dtype=np.int64)
        bounds = np.cumsum([0] + [len(o) for o in owners])
        below = iter([int(sizes[bounds[k]:bounds[k + 1]].sum()) for k in range(len(owners))])
    for c in cands:
        own = int((c.sizes[-1] - c.sizes[0]).sum())
        c.size_delta = own + (next(below) if c.unit == "elements" else 0)


def _weak(snap, cand, new_mask):
    """Whether the candidate's elements are held only weakly (for a group,
    by most of the members that grew most)."""
    order = np.argsort(-cand.growth, kind="stable")[:WEAK_SAMPLE]
    votes = [holds_weakly(snap, cand.members[-1, k], new_mask) for k in order.tolist()]
    return sum(votes) * 2 > len(votes)


def _bound(snap, cand):
    """The candidate's bound (for a group, the sum when every member has one)."""
    total = 0
    for i in cand.members[-1].tolist():
        b = bound_of(snap, i)
        if b is None:
            return None
        total += b
    return total


def _name(snaps, c, new_mask, trees):
    """The Suspect for a candidate: paths, added type, retained sizes."""
    first, last = snaps[0], snaps[-1]
    k = c.biggest()
    i_last = int(c.members[-1, k])
    path = retainer_path(last, i_last)
    deep = has_folded_run(path)
    text = path.text()
    shape = path.shape()
    if c.group and deep:
        order = np.argsort(c.members[-1])
        shape = span_shape(retainer_path(last, int(c.members[-1, order[0]])),
                           retainer_path(last, int(c.members[-1, order[-1]])))
    lengths = tuple(int(x) for x in c.lengths.sum(axis=1))
    sizes = tuple(int(x) for x in c.sizes.sum(axis=1))
    growth = c.growth
    before = after = None
    if trees is not None:
        before = retained_together(trees[0], c.members[0], nested=deep)
        after = retained_together(trees[1], c.members[-1], nested=deep)
    added = _added_type(last, i_last, new_mask) if c.unit == "elements" else None
    return Suspect(
        shape if c.group else text, last.type_name_of(i_last), lengths, c.size_delta,
        added, c.intervals_grown(), index=i_last,
        kind="group" if c.group else "container", containers=c.members.shape[1],
        grew=int((growth > 0).sum()), max_growth=int(growth.max()) if c.group else None,
        unit=c.unit, sizes=sizes, retained_before=before, retained_after=after,
        weak=c.weak, bound=c.bound, example=text)


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
