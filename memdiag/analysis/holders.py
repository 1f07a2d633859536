"""Holders that do not hold: weak containers, and bounded ones.

A WeakValueDictionary, a WeakSet or a list of weakref objects grows with
every object it refers to, but keeps none of them alive: its elements are
weak references, which are not edges in a snapshot (a weakref's
tp_traverse does not visit its referent). Such a holder dominates nothing
it refers to, so its retained size grows by its own table and weakref
objects only; fixing it frees nothing.

A bounded container (a deque with maxlen, an lru_cache with maxsize, a
cache object with an int `maxsize`) still filling up grows like a leak, but
stops at its bound. The walker records bounds in the snapshot's optional
"bounds" table (docs/FORMAT.md); a container's bound is its own, or that of
the object holding it directly (an lru_cache wrapper's `__cache__` dict, a
cache object's `_data` dict).
"""

from __future__ import annotations

import numpy as np

from .. import snapfile as sf

# Type names of weak references, as the walkers write them: weakref.ref and
# the proxies, and the subclasses the weakref module itself uses
# (WeakValueDictionary's KeyedRef, WeakMethod). A program's own subclass of
# weakref.ref is not recognized by name.
WEAKREF_TYPES = frozenset({
    "weakref.ReferenceType", "weakref.ProxyType", "weakref.CallableProxyType",
    "weakref.KeyedRef", "weakref.WeakMethod",
})
# Share of a container's (new) elements that must be weak references.
WEAK_SHARE = 0.9

_ATTR_DICT = sf.L_ATTR | 1 << sf.LABEL_KIND_BITS
# Objects whose int attribute is no bound on what they hold.
_NOT_BOUNDING = ("module", "type", "function", "code", "frame")


def holds_weakly(snap, idx, new_mask=None):
    """Whether container idx holds its elements through weak references: at
    least WEAK_SHARE of its values (dict keys aside; new ones only, when
    `new_mask` marks the new objects and some are new) are weakref objects.
    A WeakKeyDictionary's values are strong: it does not count."""
    targets, codes = snap.edges_of(int(idx))
    if not len(targets):
        return False
    codes = np.asarray(codes, dtype=np.int64)
    values = np.asarray(targets, dtype=np.int64)[(codes & sf.LABEL_KIND_MASK) != sf.L_KEY]
    if new_mask is not None and len(values):
        fresh = values[new_mask[values]]
        if len(fresh):
            values = fresh
    if not len(values):
        return False
    weak = np.array([n in WEAKREF_TYPES for n in snap.type_names] or [False])
    return bool(weak[snap.type[values].astype(np.int64)].mean() >= WEAK_SHARE)


def bound_of(snap, idx):
    """The bound recorded for container idx, its own or its holder's (the
    object whose edge discovered it, or whose `__dict__` did); None if none."""
    bounds = snap.bounds()
    if not bounds:
        return None
    idx = int(idx)
    if idx in bounds:
        return bounds[idx]
    holder = snap.parent_at(idx) - 1
    if holder < 0:
        return None
    if snap.plabel_at(idx) != _ATTR_DICT and holder in bounds \
            and snap.kind_of(holder) not in _NOT_BOUNDING:
        return bounds[holder]
    if snap.plabel_at(holder) == _ATTR_DICT:          # held in holder.__dict__
        owner = snap.parent_at(holder) - 1
        if owner >= 0 and owner in bounds and snap.kind_of(owner) not in _NOT_BOUNDING:
            return bounds[owner]
    return None
