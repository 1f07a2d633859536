"""Retainer paths: from a root down to an object, along the BFS tree.

The walker numbers objects in breadth-first order from the roots, and each
object records the edge that discovered it, so following those edges upward
gives a shortest path to a root without searching the graph.

    ccap.timer            module ccap.timer (a root)
      .timer              its global 'timer' (module __dict__ collapsed)
      ['reg_ary']         a dict key
      [17]                a list index, folded to [*] when paths are merged

    >>> from memdiag.model import Snapshot
    >>> snap = Snapshot.load("b.snap")
    >>> path = retainer_path(snap, snap.find_type("CAP")[17])
    >>> path.text(), path.shape(), path.root_kind
    ("ccap.timer.timer['reg_ary'][17]", "ccap.timer.timer['reg_ary'][*]", 'module')
"""

from __future__ import annotations

import numpy as np

from .. import snapfile as sf
from .results import RetainerPath, Step

_ATTR_DICT_OWNERS = ("module", "instance", "type", "function", "other", "lru_cache")


def root_text(kind, desc, name, type_name):
    if kind == sf.ROOT_MODULE:
        return desc
    if kind == sf.ROOT_LOCAL:
        return f"<{desc}>.{name}" if name != "<locals>" else f"<{desc}>"
    if kind == sf.ROOT_THREAD:
        return f"<thread {desc} locals>"
    return f"<unreached {type_name}>"


def root_kind_name(kind):
    return sf.ROOT_KIND_NAMES.get(kind, "unreached")


def _short(type_name):
    return type_name.rsplit(".", 1)[-1]


def step_text(snap, node, parent_node, via_attr_dict):
    """(text, folded text, is_attr_dict) for the edge parent_node -> node."""
    code = snap.plabel_at(node)
    kind = code & sf.LABEL_KIND_MASK
    payload = code >> sf.LABEL_KIND_BITS
    tname = snap.type_name_of(node)
    if kind == sf.L_ATTR:
        name = snap.label(payload)
        if name == "__dict__" and snap.kind_of(parent_node) in _ATTR_DICT_OWNERS:
            return "", "", True
        return f".{name}", f".{name}", False
    if kind == sf.L_ITEM:
        name = snap.label(payload)
        if via_attr_dict:
            return f".{name}", f".{name}", False
        return f"['{name}']", f"['{name}']", False
    if kind == sf.L_INDEX:
        return f"[{payload}]", "[*]", False
    if kind == sf.L_ITEM_OPAQUE:
        return f"[{key_text(snap, payload)}]", "[*]", False
    if kind == sf.L_KEY:
        return "<key>", "<key>", False
    if kind == sf.L_LOCAL:
        name = snap.label(payload)
        return f".{name}", f".{name}", False
    return f"→{_short(tname)}", f"→{_short(tname)}", False


def key_text(snap, key_idx):
    """How an opaque dict key is shown: its type and length, never its contents."""
    if key_idx >= snap.n_objects:
        return "<?>"
    kind = snap.kind_of(key_idx)
    tname = snap.type_name_of(key_idx)
    if kind in ("str", "bytes"):
        return f"<{tname} len {snap.length_at(key_idx)}>"
    if kind == "tuple":
        return f"<tuple len {snap.length_at(key_idx)}>"
    return f"<{tname}>"


def chain_to_root(snap, i, max_steps=200):
    """[i, parent(i), ..., root] (possibly truncated) and whether it was cut."""
    chain = [i]
    cur = i
    while True:
        p = snap.parent_at(cur)
        if p == 0:
            return chain, False
        cur = p - 1
        chain.append(cur)
        if len(chain) > max_steps:
            return chain, True


def retainer_path(snap, i, max_steps=200):
    """The RetainerPath from a root down to object i, along the BFS tree (a
    shortest path); cut to "<deep>…" after max_steps hops."""
    i = int(i)
    chain, truncated = chain_to_root(snap, i, max_steps)
    root = chain[-1]
    if truncated:
        root_str, rkind = "<deep>", "deep"
    else:
        kind, desc, name = snap.roots_by_object().get(root, (sf.ROOT_UNREACHED, "", ""))
        root_str = root_text(kind, desc, name, snap.type_name_of(root))
        rkind = root_kind_name(kind)
    steps = []
    via_attr_dict = False
    for k in range(len(chain) - 2, -1, -1):
        node, par = chain[k], chain[k + 1]
        text, folded, is_attr_dict = step_text(snap, node, par, via_attr_dict)
        via_attr_dict = is_attr_dict
        if text:
            steps.append(Step(text, snap.type_name_of(node), folded))
    return RetainerPath(root_str, rkind, tuple(steps), truncated)


# ------------------------------------------------------- vectorized shapes

_M = np.uint64(0x100000001B3)


def _mix(h, s):
    return (h ^ s) * _M


def step_signatures(snap, idx):
    """For objects idx, a 64-bit signature of each one's discovering edge,
    folded like paths. Computed for the objects asked for only, so that the
    temporaries stay the size of a selection, not of the heap."""
    code = snap.plabel[idx].astype(np.uint64)
    kind = code & np.uint64(sf.LABEL_KIND_MASK)
    folded = np.where((kind == sf.L_INDEX) | (kind == sf.L_ITEM_OPAQUE), kind, code)
    name_ids, _ = snap.name_ids()
    tsig = name_ids[snap.type[idx].astype(np.int64)].astype(np.uint64)
    # Unlabeled hops render with the type of what they reach, so they fold on it.
    unl = kind == sf.L_NONE
    folded = np.where(unl, (tsig << np.uint64(8)) | np.uint64(0x80), folded << np.uint64(1))
    return folded * np.uint64(0x9E3779B97F4A7C15)


def shape_hashes(snap, sel, max_depth=64):
    """A hash per selected object of its folded path shape (root included).

    Objects deeper than max_depth hash the first max_depth hops only.
    """
    sel = np.asarray(sel, dtype=np.int64)
    parent = snap.parent
    h = np.zeros(len(sel), np.uint64)
    cur = sel.copy()
    todo = np.arange(len(sel))
    root_sigs = _root_signatures(snap)
    for _ in range(max_depth):
        if not len(todo):
            break
        c = cur[todo]
        p = parent[c].astype(np.int64)
        at_root = p == 0
        if at_root.any():
            done = todo[at_root]
            h[done] = _mix(h[done], root_sigs(cur[done]))
        go = todo[~at_root]
        h[go] = _mix(h[go], step_signatures(snap, cur[go]))
        cur[go] = parent[cur[go]].astype(np.int64) - 1
        todo = go
    if len(todo):
        h[todo] = _mix(h[todo], np.uint64(0xDEE9))
    return h


def _root_signatures(snap):
    roots = snap.roots_by_object()
    keys = np.array(sorted(roots), dtype=np.int64)
    vals = np.zeros(len(keys), np.uint64)
    name_ids, _ = snap.name_ids()
    for n, k in enumerate(keys.tolist()):
        kind, desc, name = roots[k]
        if kind == sf.ROOT_UNREACHED:
            text = f"u:{snap.type_name_of(k)}"
        else:
            text = f"{kind}:{desc}:{name}"
        vals[n] = np.uint64(_stable_hash(text))

    def lookup(objs):
        pos = np.searchsorted(keys, objs)
        pos = np.clip(pos, 0, max(len(keys) - 1, 0))
        found = (keys[pos] == objs) if len(keys) else np.zeros(len(objs), bool)
        out = np.where(found, vals[pos] if len(keys) else 0, np.uint64(0x5EED))
        return out.astype(np.uint64)
    return lookup


def _stable_hash(text):
    import zlib
    data = text.encode("utf-8", "surrogatepass")
    return (zlib.crc32(data) << 32) | zlib.adler32(data)
