"""What a container holds: the objects below it, grouped level by level by
how each is held (its edge, with indexes and opaque keys folded to `[*]`)
and by type.

    ccap.timer.timer['reg_ary']     list               1
      [*]                           ccap.cap.CAP     800   (600 new)
        .image                      bytes            800
        .style                      dict             800
        .text                       str              800

The first level is what the container discovered in the walk (its children
in the breadth-first tree the paths come from), or, when it discovered
nothing, everything it refers to; this is how `diff` names the added type.
Deeper levels are what those objects discovered: what is reached through
them first. An instance's `__dict__` is looked through, as in paths: its
items show as `.name` under the instance.

    >>> node = held_tree(snap, suspect.index)                     # doctest: +SKIP
    >>> [(g.step, g.type, g.count) for g in node.children]        # doctest: +SKIP
    [('[*]', 'ccap.cap.CAP', 800)]
    >>> [(g.step, g.type) for g in node.children[0].children]     # doctest: +SKIP
    [('.image', 'bytes'), ('.style', 'dict'), ('.text', 'str')]

Each level costs one pass over the parent column (a few milliseconds a
million objects), whatever the container's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import snapfile as sf
from .paths import _ATTR_DICT_OWNERS


@dataclass(frozen=True)
class HeldGroup:
    """Objects held the same way, of one type, under one parent group.

    `retained` is what they keep alive together (their dominator-tree
    sizes, None when not computed); `new` how many are not in the first
    snapshot (None when unknown); `site` their commonest allocation site
    when tracing was on. `others` counts the groups not listed under this
    one (the smallest) as (groups, objects, bytes).

    >>> HeldGroup("[*]", "ccap.cap.CAP", 800, 44800, 430000, 600)
    HeldGroup(step='[*]', type='ccap.cap.CAP', count=800, size=44800, retained=430000, new=600, site='', children=(), others=(0, 0, 0))
    """
    step: str
    type: str
    count: int
    size: int
    retained: int | None = None
    new: int | None = None
    site: str = ""
    children: tuple = ()
    others: tuple = (0, 0, 0)


def held_tree(snap, index, depth=2, width=6, retained=None, new_mask=None):
    """The container at `index` as a HeldGroup (step '', count 1) whose
    children are what it holds, `depth` levels down, at most `width` groups
    under each parent group (largest first).

    `retained`: per-object retained bytes of this snapshot (or None);
    `new_mask`: per object, whether it is new since the first snapshot (or None).
    """
    index = int(index)
    n = snap.n_objects
    parent = snap.parent
    dict_owner = np.array([k in _ATTR_DICT_OWNERS for k in snap.type_kinds] or [False])
    dict_label = _attr_dict_code(snap)
    sites = _sites(snap)
    name_ids, _ = snap.name_ids()
    member = np.zeros(n + 1, bool)      # by index + 1, as the parent column counts
    group_of = np.zeros(n + 1, np.int32)

    # levels[k]: the groups of level k as dicts (step, type, count, ..., and
    # "parent", the position of their parent group in levels[k - 1]);
    # level 0 is the container alone
    root = _record(snap, np.array([index]), "", retained, new_mask, sites)
    root["parent"] = -1
    levels = [[root]]
    frontier = np.array([index], np.int64)
    frontier_group = np.zeros(1, np.int32)
    for level in range(depth):
        kids, kid_group, via = _children(snap, frontier, frontier_group, member, group_of,
                                         parent, dict_owner, dict_label)
        codes = snap.plabel[kids]
        if level == 0 and not len(kids):
            # It discovered nothing: what it refers to, labeled by its own edges.
            targets, labels = snap.edges_of(index)
            kids, first = np.unique(np.asarray(targets, dtype=np.int64), return_index=True)
            codes = np.asarray(labels)[first]
            kid_group = np.zeros(len(kids), np.int32)
            via = np.zeros(len(kids), bool)
        if not len(kids):
            break
        records, frontier, frontier_group = _group(snap, kids, codes, kid_group, via, name_ids,
                                                   retained, new_mask, sites, width, levels[-1])
        levels.append(records)
        if not len(frontier):
            break
    return _build(levels, 0, 0)


def _attr_dict_code(snap):
    """The parent-label code of an `.__dict__` edge, or -1."""
    try:
        k = snap.labels.index("__dict__")
    except ValueError:
        return -1
    return sf.L_ATTR | (k << sf.LABEL_KIND_BITS)


def _sites(snap):
    """The allocation-site column when the snapshot was traced, else None."""
    if not snap.sites:
        return None
    return snap.site


def _children(snap, nodes, groups, member, group_of, parent, owner_kinds, dict_code):
    """Objects the nodes discovered, the group of the node each came from,
    and whether it was reached through an instance's `__dict__` (which is
    looked through: its items are the instance's attributes)."""
    member[nodes + 1] = True
    group_of[nodes + 1] = groups
    try:
        kids = np.flatnonzero(member[parent])
        kid_group = group_of[parent[kids].astype(np.int64)]
    finally:
        member[nodes + 1] = False
    via = np.zeros(len(kids), bool)
    if dict_code >= 0 and len(kids):
        plabel = snap.plabel[kids]
        owners = parent[kids].astype(np.int64) - 1
        looked = (plabel == dict_code) & owner_kinds[snap.type[owners].astype(np.int64)]
        if looked.any():
            dicts = kids[looked]
            inner, inner_group, _ = _children(snap, dicts, kid_group[looked], member,
                                              group_of, parent, owner_kinds, -1)
            kids = np.concatenate([kids[~looked], inner])
            kid_group = np.concatenate([kid_group[~looked], inner_group])
            via = np.concatenate([via[~looked], np.ones(len(inner), bool)])
    return kids, kid_group, via


def _group(snap, kids, codes, kid_group, via, name_ids, retained, new_mask, sites, width,
           above):
    """Records of the groups of one level (the largest `width` under each
    parent group), and the objects of those groups with their group numbers,
    for the next level. `codes`: the label of the edge each kid is held by."""
    code = np.asarray(codes).astype(np.int64)
    kind = code & sf.LABEL_KIND_MASK
    folded = np.where((kind == sf.L_INDEX) | (kind == sf.L_ITEM_OPAQUE), kind, code)
    tname = name_ids[snap.type[kids].astype(np.int64)]
    order = np.lexsort((via, tname, folded, kid_group))
    kids, kid_group, via = kids[order], kid_group[order], via[order]
    code, folded, tname = code[order], folded[order], tname[order]
    edge = np.ones(len(kids), bool)
    edge[1:] = ((kid_group[1:] != kid_group[:-1]) | (folded[1:] != folded[:-1])
                | (tname[1:] != tname[:-1]) | (via[1:] != via[:-1]))
    starts = np.flatnonzero(edge)
    ends = np.append(starts[1:], len(kids))
    size = snap.size
    sizes = np.add.reduceat(size[kids].astype(np.int64), starts)
    held = (np.add.reduceat(retained[kids].astype(np.int64), starts)
            if retained is not None else sizes)
    counts = ends - starts
    # Per parent group: the largest groups first (retained bytes, then count).
    rank = np.lexsort((-counts, -held, kid_group[starts]))
    records = []
    next_nodes, next_groups = [], []
    shown = {}
    for g in rank.tolist():
        pg = int(kid_group[starts[g]])
        lo, hi = int(starts[g]), int(ends[g])
        if shown.get(pg, 0) >= width:
            o = above[pg].setdefault("others", [0, 0, 0])
            o[0] += 1
            o[1] += hi - lo
            o[2] += int(held[g])
            continue
        shown[pg] = shown.get(pg, 0) + 1
        nodes = kids[lo:hi]
        step = step_text(snap, int(code[lo]), snap.type_name_of(int(nodes[0])), bool(via[lo]))
        rec = _record(snap, nodes, step, retained, new_mask, sites, sizes[g])
        rec["parent"] = pg
        next_groups.append(np.full(len(nodes), len(records), np.int32))
        next_nodes.append(nodes)
        records.append(rec)
    nodes = np.concatenate(next_nodes) if next_nodes else np.zeros(0, np.int64)
    groups = np.concatenate(next_groups) if next_groups else np.zeros(0, np.int32)
    return records, nodes, groups


def step_text(snap, code, type_name, via_attr_dict=False):
    """An edge label as paths fold it (analysis.paths.step_text, from the
    label code rather than from an object's parent edge).

    >>> step_text(snap, sf.L_INDEX | 17 << sf.LABEL_KIND_BITS, "ccap.cap.CAP")  # doctest: +SKIP
    '[*]'
    """
    kind = code & sf.LABEL_KIND_MASK
    payload = code >> sf.LABEL_KIND_BITS
    if kind in (sf.L_INDEX, sf.L_ITEM_OPAQUE):
        return "[*]"
    if kind == sf.L_KEY:
        return "<key>"
    if kind == sf.L_ITEM and not via_attr_dict:
        return f"['{snap.label(payload)}']"
    if kind in (sf.L_ATTR, sf.L_ITEM, sf.L_LOCAL):
        return f".{snap.label(payload)}"
    return f"→{type_name.rsplit('.', 1)[-1]}"


def _record(snap, nodes, step, retained, new_mask, sites, size=None):
    first = int(nodes[0])
    rec = {"step": step, "type": snap.type_name_of(first), "count": len(nodes),
           "size": int(snap.size[nodes].sum(dtype=np.uint64)) if size is None else int(size),
           "retained": (int(retained[nodes].sum(dtype=np.uint64))
                        if retained is not None else None),
           "new": int(np.count_nonzero(new_mask[nodes])) if new_mask is not None else None,
           "site": ""}
    if sites is not None:
        here = sites[nodes]
        here = here[here > 0]
        if len(here):
            rec["site"] = snap.site_text(int(np.bincount(here.astype(np.int64)).argmax()))
    return rec


def _build(levels, k, pos):
    rec = levels[k][pos]
    kids = ()
    if k + 1 < len(levels):
        kids = tuple(_build(levels, k + 1, j) for j, r in enumerate(levels[k + 1])
                     if r["parent"] == pos)
    return HeldGroup(rec["step"], rec["type"], rec["count"], rec["size"], rec["retained"],
                     rec["new"], rec["site"], kids, tuple(rec.get("others", (0, 0, 0))))
