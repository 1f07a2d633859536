"""Retained size: how many bytes each object keeps alive, through the
dominator tree of the snapshot's object graph (docs/RETAINED.md).

Object d dominates object x when every path from the roots to x goes
through d: if d were freed, x would be freed too. The retained size of d is
its own size plus the sizes of all objects it dominates.

    >>> snap = Snapshot.load("b.snap")                     # doctest: +SKIP
    >>> reg = ...  # index of ccap.timer.timer['reg_ary']   # doctest: +SKIP
    >>> int(snap.size[reg]), int(retained_sizes(snap)[reg])  # doctest: +SKIP
    (8856, 317440)
    >>> biggest_retainers(snap, 1)[0].path                 # doctest: +SKIP
    "ccap.timer.timer['reg_ary']"

The tree is computed once per Snapshot (about 0.5 s a million objects with
the compiled extension) and kept on it, so every analysis of that snapshot
shares it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import snapfile as sf
from ..model import SnapshotError

try:
    from .. import _dominators
except ImportError:  # not built: the pure-Python reference does it, far slower
    _dominators = None


@dataclass(frozen=True)
class DominatorTree:
    """Per object: its immediate dominator (`n_objects` for the virtual
    root above all roots), the bytes it retains and how many objects that
    is (itself included)."""
    idom: np.ndarray        # uint32
    retained: np.ndarray    # uint64
    count: np.ndarray       # uint32

    @property
    def virtual_root(self):
        return len(self.idom)


@dataclass(frozen=True)
class RetainedObject:
    """One object and what it keeps alive.

    >>> RetainedObject("ccap.timer.timer['reg_ary']", "list", 8856, 317440, 2601, 42)
    RetainedObject(path="ccap.timer.timer['reg_ary']", type='list', size=8856, retained=317440, objects=2601, index=42)
    """
    path: str
    type: str
    size: int           # its own bytes
    retained: int       # bytes freed if it were freed: its own and all it dominates
    objects: int        # objects that is, itself included
    index: int = -1

    def sort_key(self):
        return (-self.retained, self.index)


def dominator_tree(snap):
    """The DominatorTree of a snapshot, computed on first use and kept on it."""
    tree = snap.derived.get("dominators")
    if tree is None:
        try:
            tree = DominatorTree(*compute(*graph_of(snap)))
        except OverflowError as e:
            raise SnapshotError(f"{snap.path}: too big for retained sizes ({e})") from None
        except ValueError as e:
            # The columns passed their checks; the graph they make does not.
            raise SnapshotError(f"{snap.path}: corrupted snapshot ({e})") from None
        for a in (tree.idom, tree.retained, tree.count):
            a.flags.writeable = False
        snap.derived["dominators"] = tree
    return tree


def dominators(snap):
    """Immediate dominator of every object (uint32); `snap.n_objects` stands
    for the virtual root (the object is a root, or several roots reach it)."""
    return dominator_tree(snap).idom


def retained_sizes(snap):
    """Bytes each object keeps alive (uint64): its size plus the sizes of all
    the objects it dominates."""
    return dominator_tree(snap).retained


def graph_of(snap):
    """The arguments of `compute` for a snapshot: its edge columns, sizes and
    root entries (strong roots apart from the '<unreached>' ones)."""
    etarget = snap.column(sf.COL_ETARGET)
    if etarget.dtype != np.uint32:
        etarget = etarget.astype(np.uint32)     # values are < n_objects (checked on decode)
    objs = snap.column(sf.COL_ROOT_OBJ)
    kinds = snap.column(sf.COL_ROOT_KIND)
    unreached = kinds == sf.ROOT_UNREACHED
    return (snap.nedges, etarget, snap.size, objs[~unreached].astype(np.uint32),
            objs[unreached].astype(np.uint32))


def compute(nedges, etarget, size, roots, unreached):
    """(idom, retained, count) arrays, with the compiled extension when it is
    built, else with `reference_dominators`. A graph that is not consistent
    (edge counts, indexes out of range) raises ValueError."""
    if _dominators is None:
        return reference_dominators(nedges, etarget, size, roots, unreached)
    return compiled_dominators(nedges, etarget, size, roots, unreached)


def compiled_dominators(nedges, etarget, size, roots, unreached):
    """`compute` with the compiled extension (memdiag/_dominators.c)."""
    idom, retained, count = _dominators.dominators(
        np.ascontiguousarray(nedges), np.ascontiguousarray(etarget, dtype=np.uint32),
        np.ascontiguousarray(size), np.ascontiguousarray(roots, dtype=np.uint32),
        np.ascontiguousarray(unreached, dtype=np.uint32))
    return (np.frombuffer(idom, np.uint32), np.frombuffer(retained, np.uint64),
            np.frombuffer(count, np.uint32))


def virtual_root_children(nedges, etarget, roots, unreached):
    """The order in which the virtual root's children are tried, as
    (object, always) pairs: an `always` child is one whatever else reaches
    it; the others are children only if nothing before reached them.

        roots, in order                          always
        unreached entries no edge points to      always
        the other unreached entries, in order    if not reached yet
        every object, in index order             if not reached yet (damaged files)
    """
    n = len(nedges)
    indeg = np.bincount(np.asarray(etarget, dtype=np.int64), minlength=n)[:n]
    unreached = np.asarray(unreached, dtype=np.int64)
    free = indeg[unreached] == 0 if len(unreached) else np.zeros(0, bool)
    out = [(int(r), True) for r in np.asarray(roots).tolist()]
    out += [(int(r), True) for r in unreached[free].tolist()]
    out += [(int(r), False) for r in unreached.tolist()]
    out += [(r, False) for r in range(n)]
    return out


def reference_dominators(nedges, etarget, size, roots, unreached):
    """The same as the compiled `_dominators.dominators`, in plain Python:
    Lengauer and Tarjan's algorithm as the paper gives it (simple path
    compression), without recursion. For tests, and where the extension is
    not built (about 40x slower).

    >>> # 0 -> 1 -> 2 and 0 -> 2: 0 dominates both, 1 dominates nothing
    >>> idom, retained, count = reference_dominators(
    ...     np.array([2, 1, 0]), np.array([1, 2, 2]), np.array([10, 20, 30]),
    ...     np.array([0]), np.array([], np.uint32))
    >>> idom.tolist(), retained.tolist(), count.tolist()
    ([3, 0, 0], [60, 20, 30], [3, 1, 1])
    """
    n = len(nedges)
    off = np.zeros(n + 1, np.int64)
    np.cumsum(np.asarray(nedges, dtype=np.int64), out=off[1:])
    if int(off[-1]) != len(etarget):
        raise ValueError("bad graph: edge counts do not add up")
    targets = np.asarray(etarget, dtype=np.int64)
    if len(targets) and (targets.min() < 0 or targets.max() >= n):
        raise ValueError("bad graph: edge target out of range")
    for group in (roots, unreached):
        g = np.asarray(group, dtype=np.int64)
        if len(g) and (g.min() < 0 or g.max() >= n):
            raise ValueError("bad graph: root object out of range")
    off = off.tolist()
    targets = targets.tolist()

    # Depth-first search from the virtual root (node 0); objects get nodes
    # 1..n in preorder. pred[k] lists the nodes with an edge to node k.
    dfn = [-1] * n
    vertex = [-1]
    parent = [-1]
    root_edges = []
    for r, always in virtual_root_children(nedges, etarget, roots, unreached):
        if dfn[r] >= 0:
            if always:
                root_edges.append(r)
            continue
        root_edges.append(r)
        dfn[r] = len(vertex)
        vertex.append(r)
        parent.append(0)
        stack = [(r, off[r])]
        while stack:
            v, e = stack[-1]
            end = off[v + 1]
            while e < end and dfn[targets[e]] >= 0:
                e += 1
            if e == end:
                stack.pop()
                continue
            stack[-1] = (v, e + 1)
            w = targets[e]
            dfn[w] = len(vertex)
            vertex.append(w)
            parent.append(dfn[v])
            stack.append((w, off[w]))
    nodes = len(vertex)
    pred = [[] for _ in range(nodes)]
    for v in range(n):
        for e in range(off[v], off[v + 1]):
            pred[dfn[targets[e]]].append(dfn[v])
    for r in root_edges:
        pred[dfn[r]].append(0)

    semi = list(range(nodes))
    label = list(range(nodes))
    ancestor = [-1] * nodes
    idom = [0] * nodes
    bucket = [[] for _ in range(nodes)]

    def evaluate(v):
        if ancestor[v] < 0:
            return v
        path = []
        u = v
        while ancestor[ancestor[u]] >= 0:
            path.append(u)
            u = ancestor[u]
        for x in reversed(path):
            a = ancestor[x]
            if semi[label[a]] < semi[label[x]]:
                label[x] = label[a]
            ancestor[x] = ancestor[a]
        return label[v]

    for w in range(nodes - 1, 0, -1):
        for v in pred[w]:
            u = evaluate(v)
            if semi[u] < semi[w]:
                semi[w] = semi[u]
        bucket[semi[w]].append(w)
        p = parent[w]
        ancestor[w] = p
        for v in bucket[p]:
            u = evaluate(v)
            idom[v] = u if semi[u] < semi[v] else p
        bucket[p] = []
    for w in range(1, nodes):
        if idom[w] != semi[w]:
            idom[w] = idom[idom[w]]

    sizes = np.asarray(size).tolist()
    out_idom = [n] * n
    retained = [0] * n
    count = [0] * n
    for w in range(nodes - 1, 0, -1):
        v = vertex[w]
        retained[v] += sizes[v]
        count[v] += 1
        if idom[w]:
            d = vertex[idom[w]]
            out_idom[v] = d
            retained[d] += retained[v]
            count[d] += count[v]
    return (np.array(out_idom, np.uint32), np.array(retained, np.uint64),
            np.array(count, np.uint32))


# ------------------------------------------------------ top --retained

def accumulation_points(tree, k):
    """Among the k objects that retain the most, those that are not a mere
    link in a chain: no single object they dominate directly retains more
    than half of what they do. A module, its dict, the dict's
    `registry`, and the registry's list all retain about the same bytes;
    the list is where they spread over many objects, and it is the one
    kept. Returns indexes, most retained first."""
    ret = tree.retained
    n = len(ret)
    if not n:
        return np.zeros(0, np.int64)
    k = min(k, n)
    cand = np.argpartition(ret, n - k)[n - k:].astype(np.int64)
    cand.sort()
    is_cand = np.zeros(n + 1, bool)
    is_cand[cand] = True
    kids = np.flatnonzero(is_cand[tree.idom])
    biggest_kid = np.zeros(len(cand), np.uint64)
    np.maximum.at(biggest_kid, np.searchsorted(cand, tree.idom[kids].astype(np.int64)),
                  ret[kids])
    keep = cand[biggest_kid * np.uint64(2) <= ret[cand]]
    return keep[np.lexsort((keep, -ret[keep].astype(np.float64)))]


def biggest_retainers(snap, top=10):
    """The objects that keep the most memory alive, as RetainedObjects, most
    retained first: accumulation points of the dominator tree (MAT's
    "biggest objects", with chains of single links skipped). Rows may nest:
    a list's row includes the bytes of a dict row inside it."""
    tree = dominator_tree(snap)
    n = snap.n_objects
    k = max(64, 8 * top)
    while True:
        picked = accumulation_points(tree, k)
        if len(picked) >= top or k >= n:
            break
        k *= 4
    out = []
    for i in picked[:top].tolist():
        out.append(RetainedObject(snap.path_of(i).text(), snap.type_name_of(i),
                                  int(snap.size[i]), int(tree.retained[i]),
                                  int(tree.count[i]), i))
    return out
