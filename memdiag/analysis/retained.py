"""Retained size: how many bytes each object keeps alive, through the
dominator tree of the snapshot's object graph (docs/RETAINED.md).

Object d dominates object x when every path from the roots to x goes
through d: if d were freed, x would be freed too. The retained size of d is
its own size plus the sizes of all objects it dominates.

    >>> snap = Snapshot.load("memdiag-26685-2.snap")       # doctest: +SKIP
    >>> top = biggest_retainers(snap, 1)[0]                 # doctest: +SKIP
    >>> top.path, top.objects                               # doctest: +SKIP
    ("ccap.timer.timer['reg_ary']", 2801)
    >>> int(snap.size[top.index]), int(retained_sizes(snap)[top.index])  # doctest: +SKIP
    (6136, 375736)

The tree is computed once per Snapshot (about 0.2 s a million objects with
the compiled extension, plus decoding the edges) and kept on it, so every
analysis of that snapshot shares it.
"""

from __future__ import annotations

import os
import threading
from array import array
from dataclasses import dataclass

import numpy as np

from .. import snapfile as sf
from ..model import SnapshotError
from .paths import retainer_path
from .results import RetainedObject

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


def compiled():
    """Whether the compiled extension computes the trees (else the Python
    reference does, about 60 times slower: commands compute them by
    default only when it is built)."""
    return _dominators is not None


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


def dominator_trees(snaps):
    """dominator_tree of each snapshot, computed side by side: decoding the
    edges (zlib, numpy) and the compiled algorithm release the GIL, so two
    snapshots take about the time of one on two cores. A SnapshotError in
    any of them is raised here."""
    todo = [s for s in snaps if "dominators" not in s.derived]
    if len(todo) < 2 or (os.cpu_count() or 1) < 2:
        return [dominator_tree(s) for s in snaps]
    errors = []

    def work(snap):
        try:
            dominator_tree(snap)
        except Exception as e:     # re-raised in the calling thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in todo[1:]]
    for t in threads:
        t.start()
    work(todo[0])
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [dominator_tree(s) for s in snaps]


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
    etarget = snap.edge_targets
    if etarget.dtype != np.uint32:
        etarget = etarget.astype(np.uint32)     # values are < n_objects (checked on decode)
    objs = snap.root_objects
    kinds = snap.root_kinds
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
    """`compute` with the compiled extension (memdiag/_native/dominators.c)."""
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
    del indeg
    for r in np.asarray(roots).tolist():
        yield r, True
    for r in unreached[free].tolist():
        yield r, True
    for r in unreached.tolist():
        yield r, False
    for r in range(n):
        yield r, False


def reference_dominators(nedges, etarget, size, roots, unreached):
    """The same as the compiled `_dominators.dominators`, in Python:
    Lengauer and Tarjan's algorithm as the paper gives it (simple path
    compression), without recursion. For tests, and where the extension is
    not built (about 60x slower, and about 220 bytes an object).

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

    # Depth-first search from the virtual root (node 0); objects get nodes
    # 1..n in preorder. Arrays of machine ints, not lists: a list costs
    # 8 bytes a slot plus an int object for every value above 256.
    off_l = array("q", off.tobytes())
    tg = array("q", targets.tobytes())
    dfn = array("q", bytes(8 * n))          # 0: not reached yet
    vertex = array("q", [-1])
    parent = array("q", [-1])
    root_edges = array("q")
    for r, always in virtual_root_children(nedges, etarget, roots, unreached):
        if dfn[r]:
            if always:
                root_edges.append(r)
            continue
        root_edges.append(r)
        dfn[r] = len(vertex)
        vertex.append(r)
        parent.append(0)
        stack = [(r, off_l[r])]
        while stack:
            v, e = stack[-1]
            end = off_l[v + 1]
            while e < end and dfn[tg[e]]:
                e += 1
            if e == end:
                stack.pop()
                continue
            stack[-1] = (v, e + 1)
            w = tg[e]
            dfn[w] = len(vertex)
            vertex.append(w)
            parent.append(dfn[v])
            stack.append((w, off_l[w]))
    del off_l, tg
    nodes = len(vertex)

    # Predecessors of each node, grouped by node (pstart[k]:pstart[k + 1]):
    # the snapshot's edges and one from the virtual root to each child.
    dfn_np = np.frombuffer(dfn, np.int64)
    src = np.concatenate([np.repeat(dfn_np, np.asarray(nedges, dtype=np.int64)),
                          np.zeros(len(root_edges), np.int64)])
    dst = np.concatenate([dfn_np[targets], dfn_np[np.frombuffer(root_edges, np.int64)]])
    order = np.argsort(dst, kind="stable")
    pred = array("q", src[order].tobytes())
    pstart = array("q", np.searchsorted(dst[order], np.arange(nodes + 1)).tobytes())
    del dfn_np, src, dst, order

    semi = array("q", range(nodes))
    label = array("q", range(nodes))
    ancestor = array("q", [-1]) * nodes
    idom = array("q", bytes(8 * nodes))
    bucket = array("q", bytes(8 * nodes))   # first node of each bucket; 0: empty
    # idom[] links the bucket lists: a node's idom is set when it leaves its bucket.

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
        for k in range(pstart[w], pstart[w + 1]):
            u = evaluate(pred[k])
            if semi[u] < semi[w]:
                semi[w] = semi[u]
        idom[w] = bucket[semi[w]]
        bucket[semi[w]] = w
        p = parent[w]
        ancestor[w] = p
        v = bucket[p]
        bucket[p] = 0
        while v:
            after = idom[v]
            u = evaluate(v)
            idom[v] = u if semi[u] < semi[v] else p
            v = after
    for w in range(1, nodes):
        if idom[w] != semi[w]:
            idom[w] = idom[idom[w]]

    sizes = array("Q", np.asarray(size, dtype=np.uint64).tobytes())
    out_idom = array("q", [n]) * n
    retained = array("Q", bytes(8 * n))
    count = array("q", bytes(8 * n))
    for w in range(nodes - 1, 0, -1):
        v = vertex[w]
        retained[v] += sizes[v]
        count[v] += 1
        if idom[w]:
            d = vertex[idom[w]]
            out_idom[v] = d
            retained[d] += retained[v]
            count[d] += count[v]
    return (np.frombuffer(out_idom, np.int64).astype(np.uint32),
            np.frombuffer(retained, np.uint64).copy(),
            np.frombuffer(count, np.int64).astype(np.uint32))


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
        out.append(RetainedObject(retainer_path(snap, i).text(), snap.type_name_of(i),
                                  int(snap.size[i]), int(tree.retained[i]),
                                  int(tree.count[i]), i))
    return out


def retained_together(tree, objs, nested=False):
    """Bytes the objects `objs` keep alive between them, each object counted
    once: the sum of their retained sizes, leaving out those another of them
    dominates (already inside that one's retained size).

    Objects at the same depth never dominate one another (a dominator is on
    every path, so on the shortest one, above the object): pass nested=True
    only when they may sit at different depths (a path with a folded run,
    the nodes of a linked list), which walks up the dominator tree once per
    object shared by their chains.

    >>> tree = DominatorTree(np.array([3, 0, 1], np.uint32),       # 0 -> 1 -> 2
    ...                      np.array([60, 50, 30], np.uint64), np.array([3, 2, 1], np.uint32))
    >>> retained_together(tree, [1, 2], nested=True), retained_together(tree, [2])
    (50, 30)
    """
    objs = np.unique(np.asarray(objs, dtype=np.int64))
    if not len(objs):
        return 0
    ret = tree.retained
    if not nested:
        return int(ret[objs].sum(dtype=np.uint64))
    idom = tree.idom
    top = tree.virtual_root
    members = set(objs.tolist())
    below = {}          # object -> whether one of `objs` dominates it (or is it)
    total = 0
    for x in objs.tolist():
        path = []
        y = int(idom[x])
        while y != top and y not in members and y not in below:
            path.append(y)
            y = int(idom[y])
        inside = y in members or (y != top and below[y])
        for z in path:
            below[z] = inside
        if not inside:
            total += int(ret[x])
    return total
