"""Who holds the objects of a type: shortest paths to roots, merged by shape.

    >>> from memdiag.model import Snapshot
    >>> old, snap = Snapshot.load("a.snap"), Snapshot.load("b.snap")
    >>> chains, total = retainer_chains(snap, "CAP", since=old)
    >>> total, chains[0].path, chains[0].count, chains[0].size
    (500, "ccap.timer.timer['reg_ary'][*]", 500, 28000)
    >>> chains[0].example
    "ccap.timer.timer['reg_ary'][200]"
"""

from __future__ import annotations

import numpy as np

from .results import RetainerChain
from .match import global_type_ids, match
from .paths import retainer_path, shape_hashes


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


def retainer_chains(snap, type_name, since=None, top=10):
    """(RetainerChains for objects of `type_name`, by RetainerChain.sort_key;
    how many objects they cover).

    With `since`, only objects that are new since that snapshot count.
    """
    sel = objects_of_type(snap, type_name)
    if since is not None:
        sel = new_objects(snap, since, sel)
    if not len(sel):
        return [], 0
    h = shape_hashes(snap, sel)
    uniq, first, inv, counts = np.unique(h, return_index=True, return_inverse=True,
                                         return_counts=True)
    sizes = np.bincount(inv, weights=snap.size[sel].astype(np.float64), minlength=len(uniq))
    order = np.lexsort((-counts, -sizes))[:top]
    sites = snap.site if snap.sites else None
    out = []
    for g in order.tolist():
        p = retainer_path(snap, int(sel[first[g]]))
        site = ""
        if sites is not None:
            here = sites[sel[inv == g]]
            here = here[here > 0]
            if len(here):
                site = snap.site_text(int(np.bincount(here.astype(np.int64)).argmax()))
        out.append(RetainerChain(p.shape(), int(counts[g]), int(sizes[g]), p.text(), site))
    out.sort(key=RetainerChain.sort_key)
    return out, len(sel)
