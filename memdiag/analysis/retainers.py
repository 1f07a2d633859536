"""Who holds the objects of a type: shortest paths to roots, merged by shape.

    >>> from memdiag.model import Snapshot
    >>> old, snap = Snapshot.load("a.snap"), Snapshot.load("b.snap")
    >>> chains, total = retainer_chains(snap, "CAP", since=old)
    >>> total, chains[0].path, chains[0].count, chains[0].size
    (500, "ccap.timer.timer['reg_ary'][*]", 500, 28000)
    >>> chains[0].example, chains[0].retained      # each CAP and its text str
    ("ccap.timer.timer['reg_ary'][200]", 55500)
"""

from __future__ import annotations

import numpy as np

from .match import global_type_ids, match
from .paths import has_folded_run, retainer_path, shape_hashes
from .results import RetainerChain, span_shape
from .retained import dominator_tree, retained_together


class UnknownType(LookupError):
    """No object in the snapshot has this type (or a type ending in '.' + it)."""


def objects_of_type(snap, type_name):
    sel = snap.find_type(type_name)
    if not len(sel):
        raise UnknownType(type_name)
    return sel


def new_objects(snap, since, sel):
    """The subset of `sel` (indexes in snap) not present in `since`."""
    (ga, gb), _ = global_type_ids([since, snap])
    _, matched = match(since, snap, ga, gb, None, sel)
    return np.setdiff1d(sel, matched, assume_unique=True)


def retainer_chains(snap, type_name, since=None, top=10, retained=True):
    """(RetainerChains for objects of `type_name`, by RetainerChain.sort_key;
    how many objects they cover).

    With `since`, only objects that are new since that snapshot count. With
    `retained`, each chain says how many bytes its objects keep alive
    (through the snapshot's dominator tree, computed once and kept on it).

    A chain whose path folds a run of repeated steps (a linked list) holds
    objects at many depths: its path gives the range, `(.next ×4–199,999)`,
    and its example is the deepest of them.
    """
    sel = objects_of_type(snap, type_name)
    if since is not None:
        sel = new_objects(snap, since, sel)
    if not len(sel):
        return [], 0
    h = shape_hashes(snap, sel)
    uniq, first, inv, counts = np.unique(h, return_index=True, return_inverse=True,
                                         return_counts=True)
    inv = inv.reshape(-1)
    last = np.zeros(len(uniq), np.int64)
    np.maximum.at(last, inv, np.arange(len(sel)))
    sizes = np.bincount(inv, weights=snap.size[sel].astype(np.float64), minlength=len(uniq))
    order = np.lexsort((-counts, -sizes))[:top]
    sites = snap.site if snap.sites else None
    tree = dominator_tree(snap) if retained else None
    out = []
    for g in order.tolist():
        p = retainer_path(snap, int(sel[first[g]]))
        path, example = p.shape(), p.text()
        deep = has_folded_run(p)
        if deep:
            q = retainer_path(snap, int(sel[last[g]]))
            path, example = span_shape(p, q), q.text()
        site = ""
        if sites is not None:
            here = sites[sel[inv == g]]
            here = here[here > 0]
            if len(here):
                site = snap.site_text(int(np.bincount(here.astype(np.int64)).argmax()))
        kept = None
        if tree is not None:
            kept = retained_together(tree, sel[inv == g], nested=deep)
        out.append(RetainerChain(path, int(counts[g]), int(sizes[g]), example, site, kept))
    out.sort(key=RetainerChain.sort_key)
    return out, len(sel)
