"""Retainer paths: from a root down to an object, along the BFS tree.

The walker numbers objects in breadth-first order from the roots, and each
object records the edge that discovered it, so following those edges upward
gives a shortest path to a root without searching the graph.

    ccap.timer            module ccap.timer (a root)
      .timer              its global 'timer' (module __dict__ collapsed)
      ['reg_ary']         a dict key
      [17]                a list index, folded to [*] when paths are merged

A step repeated RUN_FOLD times or more is written once with its count, so a
linked list 200,000 nodes long reads `app.state['head'](.next ×199,999)`.

    >>> from memdiag.model import Snapshot
    >>> snap = Snapshot.load("b.snap")
    >>> path = retainer_path(snap, snap.find_type("CAP")[17])
    >>> path.text(), path.shape(), path.root_kind
    ("ccap.timer.timer['reg_ary'][17]", "ccap.timer.timer['reg_ary'][*]", 'module')
"""

from __future__ import annotations

import numpy as np

from .. import snapfile as sf
from .results import RUN_FOLD, RetainerPath, Step

_ATTR_DICT_OWNERS = ("module", "instance", "type", "function", "other", "lru_cache")
_ATTR_DICT = sf.L_ATTR | 1 << sf.LABEL_KIND_BITS      # the edge to an object's __dict__


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


def step_text(snap, code, type_name, parent_kind, via_attr_dict):
    """(text, folded text, is_attr_dict) of an edge with label `code` that
    reaches an object of `type_name` from an object of kind `parent_kind`.

    An object's `__dict__` hop is not written (its items read as
    attributes); an item of a deque, which the walkers do not number, is
    written `[*]` like a list item."""
    kind = code & sf.LABEL_KIND_MASK
    payload = code >> sf.LABEL_KIND_BITS
    if kind == sf.L_ATTR:
        name = snap.label(payload)
        if name == "__dict__" and parent_kind in _ATTR_DICT_OWNERS:
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
    if parent_kind == "deque":
        return "[*]", "[*]", False
    return f"→{_short(type_name)}", f"→{_short(type_name)}", False


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


# A chain longer than this reads the whole parent column instead of chunks.
_LONG_CHAIN = 256


def chain_to_root(snap, i):
    """[i, parent(i), ..., root]: every object's parent has a smaller index,
    so the walk ends after at most i steps."""
    chain = [i]
    cur = i
    while True:
        p = snap.parent_at(cur)
        if p == 0:
            return chain
        cur = p - 1
        chain.append(cur)
        if len(chain) == _LONG_CHAIN:
            break
    parent = snap.parent
    while True:
        p = int(parent[cur])
        if p == 0:
            return chain
        cur = p - 1
        chain.append(cur)


def retainer_path(snap, i):
    """The RetainerPath from a root down to object i, along the BFS tree (a
    shortest path), with repeated steps counted rather than repeated."""
    i = int(i)
    chain = chain_to_root(snap, i)
    chain.reverse()                       # root first
    root = chain[0]
    kind, desc, name = snap.roots_by_object().get(root, (sf.ROOT_UNREACHED, "", ""))
    names, kinds = snap.type_names, snap.type_kinds
    types = snap.type[np.asarray(chain, dtype=np.int64)].tolist()
    root_str = root_text(kind, desc, name, names[types[0]])
    codes = snap.plabels_at(chain[1:]).tolist() if len(chain) > 1 else []
    cache = {}
    steps = []           # [text, type name, folded, count]
    via_attr_dict = False
    for k, code in enumerate(codes, 1):
        t, pt = types[k], types[k - 1]
        key = (code, t, pt, via_attr_dict)
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = step_text(snap, code, names[t], kinds[pt], via_attr_dict)
        text, folded, via_attr_dict = hit
        if not text:
            continue
        if steps and steps[-1][0] == text and steps[-1][1] == names[t]:
            steps[-1][3] += 1
        else:
            steps.append([text, names[t], folded, 1])
    return RetainerPath(root_str, root_kind_name(kind), tuple(Step(*s) for s in steps))


def has_folded_run(path):
    """Whether the path's shape folds a run of RUN_FOLD steps or more."""
    return any(count >= RUN_FOLD and piece for piece, count in path.runs(folded=True))


# ------------------------------------------------------- vectorized shapes
#
# The shape hash of an object's path is H = sum(r_i * B**i) over the runs of
# its folded steps, root first (r_0 the root), where r_i mixes a run's step
# signature with its length, lengths of RUN_FOLD and more counting as one.
# Walking up from the objects (numpy, all objects a level at a time) finds
# the runs last first, so it sums r * B**-j and multiplies by B**(m-1) at the
# root; objects deeper than _VECTOR_DEPTH are finished from the root down
# instead, once per ancestor shared by all of them (a linked list of 200k
# nodes costs 200k steps, not 200k times its depth).

_U64 = (1 << 64) - 1
_B = 0x9E3779B97F4A7C15
_BINV = pow(_B, -1, 1 << 64)
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_VECTOR_DEPTH = 24          # deeper objects: _deep_hashes
# Up to this many objects, only the chunks of the parent and label columns
# that their paths cross are decoded (a diff names a few containers).
_FEW = 4096


def _run_values(sig, count):
    """r for runs of step signature `sig`, `count` steps long (uint64 arrays)."""
    bucket = np.minimum(count, RUN_FOLD).astype(np.uint64)
    return (sig ^ (bucket * np.uint64(_C1))) * np.uint64(_C2)


def _run_value(sig, count):
    """The same for one run, in Python integers."""
    return ((sig ^ ((min(count, RUN_FOLD) * _C1) & _U64)) * _C2) & _U64


def _powers(base, n):
    out = np.empty(n, np.uint64)
    v = 1
    for k in range(n):
        out[k] = v
        v = (v * base) & _U64
    return out


def hop_signatures(snap, nodes, parents):
    """A 64-bit signature per edge parent -> node, folded as in shapes (indexes
    and opaque keys are alike; an unlabeled edge is told by the type it
    reaches); 0 for the `__dict__` hop, which paths do not show."""
    code = snap.plabels_at(nodes).astype(np.uint64)
    kind = code & np.uint64(sf.LABEL_KIND_MASK)
    ptypes = snap.type[parents].astype(np.int64)
    is_deque = np.array([k == "deque" for k in snap.type_kinds] or [False])
    indexlike = ((kind == sf.L_INDEX) | (kind == sf.L_ITEM_OPAQUE)
                 | ((kind == sf.L_NONE) & is_deque[ptypes]))
    unlabeled = (kind == sf.L_NONE) & ~indexlike
    # An item of a dict reached as some object's __dict__ reads as an attribute.
    as_attr = (kind == sf.L_ITEM) & (snap.plabels_at(parents) == _ATTR_DICT)
    code = np.where(as_attr, code - np.uint64(sf.L_ITEM) + np.uint64(sf.L_ATTR), code)
    name_ids, _ = snap.name_ids()
    tsig = name_ids[snap.type[nodes].astype(np.int64)].astype(np.uint64)
    sig = np.where(indexlike, np.uint64(sf.L_INDEX << 1), code << np.uint64(1))
    sig = np.where(unlabeled, (tsig << np.uint64(8)) | np.uint64(0x80), sig)
    sig = sig * np.uint64(0x9E3779B97F4A7C15)          # a bijection: nonzero stays so
    sig[code == _ATTR_DICT] = 0
    return sig


def shape_hashes(snap, sel):
    """A 64-bit hash per selected object of its path shape (root included),
    the same for paths whose text() differ only in indexes, opaque keys, and
    the length of runs of RUN_FOLD or more identical steps."""
    sel = np.asarray(sel, dtype=np.int64)
    n = len(sel)
    if n > _FEW:
        snap.parent, snap.plabel        # noqa: B018 (whole columns: every level reads them)
    out = np.zeros(n, np.uint64)
    acc = np.zeros(n, np.uint64)          # closed runs, sum of r * B**-j
    closed = np.zeros(n, np.int64)        # j: runs closed so far
    open_sig = np.zeros(n, np.uint64)
    open_len = np.zeros(n, np.int64)
    binv = _powers(_BINV, _VECTOR_DEPTH + 3)
    bpow = _powers(_B, _VECTOR_DEPTH + 3)
    root_sigs = _root_signatures(snap)
    cur = sel.copy()
    todo = np.arange(n)

    def close(rows, sig, length):
        has = length > 0
        r = rows[has]
        acc[r] += _run_values(sig[has], length[has]) * binv[closed[r]]
        closed[r] += 1

    for _ in range(_VECTOR_DEPTH + 1):
        if not len(todo):
            break
        c = cur[todo]
        p = snap.parents_at(c).astype(np.int64) - 1
        at_root = p < 0
        if at_root.any():
            done = todo[at_root]
            close(done, open_sig[done], open_len[done])
            acc[done] += _run_values(root_sigs(cur[done]), np.ones(len(done), np.int64)) \
                * binv[closed[done]]
            out[done] = acc[done] * bpow[closed[done]]      # closed + 1 runs: B**(m-1)
        go = todo[~at_root]
        pc = p[~at_root]
        s = hop_signatures(snap, c[~at_root], pc)
        live = s != 0
        same = live & (s == open_sig[go])
        open_len[go[same]] += 1
        fresh = live & ~same
        g = go[fresh]
        close(g, open_sig[g], open_len[g])
        open_sig[g] = s[fresh]
        open_len[g] = 1
        cur[go] = pc
        todo = go
    if len(todo):
        out[todo] = _deep_hashes(snap, sel[todo], root_sigs)
    return out


def _deep_hashes(snap, objs, root_sigs):
    """Shape hashes of deep objects, from the root down, over the ancestors
    their chains share. A node either opens a run (its step differs from the
    run open above it), continues it, or is a hidden `__dict__` hop; the sum
    of closed runs changes only where a run opens, so Python visits those
    nodes alone (a few in a linked list of 200k nodes), and the rest is
    numpy over the whole set of ancestors."""
    parent = snap.parent
    nodes = _with_ancestors(parent, objs)
    pars = parent[nodes].astype(np.int64) - 1
    inner = pars >= 0
    ppos = np.where(inner, np.searchsorted(nodes, pars), -1)    # parents are in the set
    sig = np.zeros(len(nodes), np.uint64)
    sig[inner] = hop_signatures(snap, nodes[inner], pars[inner])
    root_sig = root_sigs(nodes[~inner])
    # The signature of the run open at each node (0 at a root: nothing open).
    osig = sig.copy()
    hidden = np.flatnonzero(inner & (sig == 0))
    while len(hidden):                   # a pass per hidden hop in a row (one, in practice)
        above = osig[ppos[hidden]]
        if np.array_equal(above, osig[hidden]):
            break
        osig[hidden] = above
    pos = np.arange(len(nodes))
    cont = inner & (sig != 0) & (sig == osig[np.maximum(ppos, 0)])
    cont &= inner               # a root's child always opens a run
    opens = inner & (sig != 0) & ~cont
    head = np.where(opens | ~inner, pos, ppos)          # the node that opened my run
    steps = (sig != 0) & inner
    depth = steps.astype(np.int64)                       # runs' steps from the root
    anc = ppos.copy()
    while True:
        follow = head != head[head]
        live = anc >= 0
        if not follow.any() and not live.any():
            break
        head = np.where(follow, head[head], head)
        depth = depth + np.where(live, depth[np.maximum(anc, 0)], 0)
        anc = np.where(live, anc[np.maximum(anc, 0)], -1)
    olen = np.where(~inner[head], 0, depth - depth[head] + 1)
    # Sum of closed runs and B**closed at each run's head, root first.
    closed = np.zeros(len(nodes), np.uint64)
    bk = np.zeros(len(nodes), np.uint64)
    rv_root = _run_values(root_sig, np.ones(len(root_sig), np.int64))
    closed[~inner] = rv_root
    bk[~inner] = _B
    heads = np.flatnonzero(opens)
    hp = head[ppos[heads]]                               # the head of my parent's run
    p_osig = osig[ppos[heads]].tolist()
    p_olen = olen[ppos[heads]].tolist()
    c_list, b_list = closed.tolist(), bk.tolist()
    for v, h, ps, pl in zip(heads.tolist(), hp.tolist(), p_osig, p_olen):
        c, b = c_list[h], b_list[h]
        if pl:
            c = (c + _run_value(ps, pl) * b) & _U64
            b = (b * _B) & _U64
        c_list[v], b_list[v] = c, b
    closed = np.array(c_list, dtype=np.uint64)[head]
    bk = np.array(b_list, dtype=np.uint64)[head]
    final = np.where(olen > 0, closed + _run_values(osig, olen) * bk, closed)
    return final[np.searchsorted(nodes, objs)]


def _with_ancestors(parent, objs):
    """objs and all their ancestors in the BFS tree, sorted."""
    seen = np.zeros(len(parent), bool)
    seen[objs] = True
    frontier = np.flatnonzero(seen)
    while len(frontier) > 8:
        p = parent[frontier].astype(np.int64) - 1
        p = p[p >= 0]
        p = p[~seen[p]]
        seen[p] = True          # a parent of several: once in the next frontier
        frontier = _distinct(p)
    for x in frontier.tolist():          # a few chains left: one step at a time
        while True:
            x = int(parent[x]) - 1
            if x < 0 or seen[x]:
                break
            seen[x] = True
    return np.flatnonzero(seen)


def _distinct(a):
    """The distinct values of an int array, sorted (np.unique without its
    hash table, which is slower for these)."""
    a = np.sort(a)
    if len(a) < 2:
        return a
    return a[np.concatenate(([True], a[1:] != a[:-1]))]


def _root_signatures(snap):
    roots = snap.roots_by_object()
    keys = np.array(sorted(roots), dtype=np.int64)
    vals = np.zeros(len(keys), np.uint64)
    for n, k in enumerate(keys.tolist()):
        kind, desc, name = roots[k]
        if kind == sf.ROOT_UNREACHED:
            text = f"u:{snap.type_name_of(k)}"
        else:
            text = f"{kind}:{desc}:{name}"
        vals[n] = np.uint64(_stable_hash(text))

    def lookup(objs):
        objs = np.asarray(objs, dtype=np.int64)
        if not len(keys):
            return np.full(len(objs), 0x5EED, np.uint64)
        pos = np.clip(np.searchsorted(keys, objs), 0, len(keys) - 1)
        found = keys[pos] == objs
        return np.where(found, vals[pos], np.uint64(0x5EED)).astype(np.uint64)
    return lookup


def _stable_hash(text):
    import zlib
    data = text.encode("utf-8", "surrogatepass")
    return (zlib.crc32(data) << 32) | zlib.adler32(data)
