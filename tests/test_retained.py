"""Retained sizes through the dominator tree (issue 10).

Three implementations check each other: the compiled Lengauer-Tarjan
(memdiag._dominators), the pure-Python one (reference_dominators), and, on
graphs small enough, the definition itself (d dominates x when x cannot be
reached from the virtual root once d is taken out). On real heaps, guppy3's
`dominos` (the set of objects an object dominates) is the independent
oracle: same process, same heap, same objects.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import memdiag, memdiag_json
from hookutil import expected_walker, run_program, walker_env
from snapbuild import Graph

from memdiag import snapfile as sf
from memdiag.analysis import retained as R
from memdiag.analysis.paths import retainer_path
from memdiag.model import Snapshot, SnapshotError

needs_c = pytest.mark.skipif(R._dominators is None,
                             reason="memdiag._dominators not built for this interpreter "
                                    "(make test builds it; without a compiler it cannot be)")
EXAMPLES = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def arrays(n, edges, size, roots, unreached, nedges_dtype=np.uint32, size_dtype=np.uint64):
    """The arguments of compute() for a graph given as (source, target) pairs."""
    order = sorted(range(len(edges)), key=lambda k: edges[k][0])     # stable: keeps order
    nedges = np.bincount([s for s, _ in edges], minlength=n).astype(nedges_dtype)
    etarget = np.array([edges[k][1] for k in order], np.uint32)
    return (nedges, etarget, np.array(size, size_dtype), np.array(roots, np.uint32),
            np.array(unreached, np.uint32))


def by_definition(n, edges, size, roots, unreached):
    """(idom, retained, count) straight from the definitions: the virtual
    root's children by the documented rule, then one reachability search
    per object taken out."""
    succ = [[] for _ in range(n)]
    indeg = [0] * n
    for s, t in edges:
        succ[s].append(t)
        indeg[t] += 1

    def reach(starts, removed=-1):
        seen = set()
        stack = [r for r in starts if r != removed]
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            stack.extend(w for w in succ[v] if w != removed)
        return seen

    order = ([(r, True) for r in roots] + [(r, True) for r in unreached if indeg[r] == 0]
             + [(r, False) for r in unreached] + [(r, False) for r in range(n)])
    kids, reached = [], set()
    for r, always in order:
        if always or r not in reached:
            kids.append(r)
            reached |= reach([r])
    assert reached == set(range(n))
    doms = {x: set() for x in range(n)}
    for d in range(n):
        alive = reach(kids, removed=d)
        for x in range(n):
            if x != d and x not in alive:
                doms[x].add(d)
    idom = [max(doms[x], key=lambda d: len(doms[d])) if doms[x] else n for x in range(n)]
    retained = [size[x] + sum(size[y] for y in range(n) if x in doms[y]) for x in range(n)]
    count = [1 + sum(1 for y in range(n) if x in doms[y]) for x in range(n)]
    return idom, retained, count


@st.composite
def small_graphs(draw, max_n=9):
    n = draw(st.integers(1, max_n))
    node = st.integers(0, n - 1)
    edges = draw(st.lists(st.tuples(node, node), max_size=3 * n))
    roots = draw(st.lists(node, max_size=3))
    unreached = draw(st.lists(node, max_size=4))
    size = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    return n, edges, size, roots, unreached


def as_lists(result):
    return tuple(a.tolist() for a in result)


@EXAMPLES
@given(small_graphs())
def test_reference_matches_the_definition(g):
    assert as_lists(R.reference_dominators(*arrays(*g))) == by_definition(*g)


@needs_c
@EXAMPLES
@given(small_graphs())
def test_compiled_matches_the_definition(g):
    assert as_lists(R.compiled_dominators(*arrays(*g))) == by_definition(*g)


@st.composite
def heap_like_graphs(draw):
    """Bigger graphs shaped like heaps: a spanning forest from a few roots,
    extra edges (many pointing back and across), unreached islands."""
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(2, 400))
    rng = np.random.default_rng(seed)
    edges = [(int(rng.integers(0, i)), i) for i in range(1, n) if rng.random() < 0.9]
    extra = int(rng.integers(0, 3 * n))
    edges += [(int(a), int(b)) for a, b in rng.integers(0, n, size=(extra, 2))]
    rng.shuffle(edges)
    roots = rng.integers(0, n, size=int(rng.integers(0, 4))).tolist()
    unreached = rng.integers(0, n, size=int(rng.integers(0, 6))).tolist()
    size = rng.integers(0, 5000, size=n).tolist()
    return n, edges, size, roots, unreached


@needs_c
@EXAMPLES
@given(heap_like_graphs(), st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64]))
def test_compiled_matches_reference_on_heap_like_graphs(g, dtype):
    n, edges, size, roots, unreached = g
    if dtype == np.uint8:
        size = [s % 256 for s in size]
        if max(np.bincount([s for s, _ in edges], minlength=n), default=0) > 255:
            dtype = np.uint16
    args = arrays(n, edges, size, roots, unreached, nedges_dtype=dtype, size_dtype=dtype)
    assert as_lists(R.compiled_dominators(*args)) == as_lists(R.reference_dominators(*args))


# ------------------------------------------------------------ chosen shapes

def test_shapes_multiple_roots_and_unreached():
    #  root 0 -> 1 -> 2        root 3 -> 2: 2 has two roots above it
    #  unreached 6 (listed first) <- 5 (nothing points to 5): 5 retains 6
    #  unreached cycle 7 <-> 8, listed as 8 then 7: 8 stands for the cycle
    edges = [(0, 1), (1, 2), (3, 2), (5, 6), (7, 8), (8, 7), (4, 4)]
    size = [1, 10, 100, 1000, 5, 20, 40, 7, 9]
    idom, retained, count = as_lists(R.reference_dominators(
        *arrays(9, edges, size, [0, 3], [6, 5, 8, 7])))
    V = 9   # the virtual root
    assert idom == [V, 0, V, V, V, V, 5, 8, V]
    assert retained == [11, 10, 100, 1000, 5, 60, 40, 7, 16]
    assert count == [2, 1, 1, 1, 1, 2, 1, 1, 2]


@needs_c
def test_a_chain_of_200k_objects_needs_no_deep_stack():
    n = 200_000
    nedges = np.ones(n, np.uint8)
    nedges[-1] = 0
    etarget = np.arange(1, n, dtype=np.uint32)
    size = np.full(n, 3, np.uint16)
    idom, retained, count = R.compiled_dominators(
        nedges, etarget, size, np.array([0], np.uint32), np.zeros(0, np.uint32))
    assert idom[0] == n and (idom[1:] == np.arange(n - 1)).all()
    assert retained[0] == 3 * n and retained[-1] == 3 and count[0] == n


@pytest.mark.parametrize("impl", ["compiled", "reference"])
def test_inconsistent_graphs_are_refused(impl):
    if impl == "compiled" and R._dominators is None:
        pytest.skip("memdiag._dominators not built for this interpreter")
    fn = R.compiled_dominators if impl == "compiled" else R.reference_dominators
    ok = dict(nedges=np.array([1, 0], np.uint32), etarget=np.array([1], np.uint32),
              size=np.array([1, 1], np.uint32), roots=np.array([0], np.uint32),
              unreached=np.zeros(0, np.uint32))
    for bad in (dict(nedges=np.array([2, 0], np.uint32)),
                dict(etarget=np.array([2], np.uint32)),
                dict(roots=np.array([5], np.uint32)),
                dict(unreached=np.array([2], np.uint32))):
        with pytest.raises(ValueError, match="bad graph"):
            fn(**{**ok, **bad})


# ------------------------------------------------- hand-built snapshots

def registry_heap(n_caps):
    """ccap.timer.timer['reg_ary'] holds CAPs, each with a dict and a str of
    its own and a style str shared by all; app.cache holds one of the CAPs too."""
    g = Graph()
    mod = g.module("ccap.timer")
    timer = g.obj("dict", "dict", 232)
    g.item(mod.dict, "timer", timer)
    reg = g.obj("list", "list", 88, n_caps)
    g.item(timer, "reg_ary", reg)
    shared = g.obj("str", "str", 60, 5)
    g.item(timer, "style", shared)
    keys = {name: g.obj("str", "str", 49 + len(name), len(name)) for name in ("text", "style")}
    g.item(timer, "keys", keys["text"])         # interned key names: held elsewhere too
    g.item(timer, "more_keys", keys["style"])

    def item(d, name, value):                   # d[name] = value, with the shared key
        d.edges += [(keys[name], ("key", None)), (value, ("item", name))]
        d.length += 1
    caps = []
    for _ in range(n_caps):
        cap = g.obj("ccap.cap.CAP", "instance", 56)
        g.append(reg, cap)
        d = g.obj("dict", "dict", 184)
        g.attr(cap, "__dict__", d)
        item(d, "text", g.obj("str", "str", 55, 6))
        item(d, "style", shared)
        caps.append(cap)
    app = g.module("app")
    g.item(app.dict, "cache", caps[0])
    return g


def test_snapshot_retained_sizes_and_cache(tmp_path):
    snap = Snapshot.load(registry_heap(50).write(str(tmp_path / "r.snap")))
    reg = int(next(i for i in snap.find_type("list")
                   if retainer_path(snap, i).text() == "ccap.timer.timer['reg_ary']"))
    tree = R.dominator_tree(snap)
    assert R.dominator_tree(snap) is tree            # computed once per snapshot
    # 49 CAPs with their dict and str (the first one app.cache holds too)
    assert tree.retained[reg] == 88 + 49 * (56 + 184 + 55)
    assert tree.count[reg] == 1 + 49 * 3
    first = snap.find_type("CAP")
    assert sorted(R.dominators(snap)[first].tolist()).count(reg) == 49
    assert R.retained_sizes(snap).sum() > 0


def test_top_retained_lists_accumulation_points(tmp_path):
    path = registry_heap(400).write(str(tmp_path / "r.snap"))
    data = memdiag_json("top", path, "--retained", "--top", "3")
    first = data["retained"][0]
    # The module, its dict and `timer` retain about as much: the list is
    # where the bytes spread over many objects, so it is the row.
    assert first == {"path": "ccap.timer.timer['reg_ary']", "type": "list", "size": 88,
                     "retained": 88 + 399 * (56 + 184 + 55), "objects": 1 + 399 * 3}
    assert "ccap.timer" not in [r["path"] for r in data["retained"]]
    assert data["types"] and data["containers"]                 # the usual keys stay
    code, out, err = memdiag("top", path, "--retained", check=0)
    assert "Keeps the most memory alive (retained size)" in out
    assert "ccap.timer.timer['reg_ary']" in out and "115.0 KiB" in out
    assert "retained" not in memdiag_json("top", path)


def test_a_graph_the_columns_cannot_make_is_a_bad_file(tmp_path):
    snap = Snapshot.load(registry_heap(3).write(str(tmp_path / "r.snap")))
    snap.column(sf.COL_NEDGES)
    etarget = snap.column(sf.COL_ETARGET)
    snap._cols[sf.COL_ETARGET] = etarget[:-1]        # one edge short of the counts
    with pytest.raises(SnapshotError, match="corrupted snapshot"):
        R.dominator_tree(snap)


# ------------------------------------------------------ real heaps, guppy3

ORACLE = r"""
import gc, json, sys, weakref
from guppy import hpy
import memdiag

h = hpy()
h.heap()                    # guppy's one-time setup, before the heap under test


class Node:
    __slots__ = ("next", "payload", "__weakref__")


class Box:
    __slots__ = ("items",)


def blob(n):
    return bytes(bytearray(n))          # a new bytes object of n bytes


# A list holding exclusive dicts (int keys > 256, new bytes values) and bytes.
EXCLUSIVE = [{1000 + k: blob(100 + k) for k in range(3)} for _ in range(40)]
EXCLUSIVE += [blob(300) for _ in range(20)]
# Two lists sharing some of their items.
SHARED = [blob(50) for _ in range(10)]
LEFT = SHARED + [blob(70) for _ in range(10)]
RIGHT = SHARED[5:] + [[blob(90)] for _ in range(10)]
# A cycle held from one global; an object inside it also from another.
c1, c2, c3 = Node(), Node(), Node()
c1.next, c2.next, c3.next = c2, c3, c1
c1.payload, c2.payload, c3.payload = blob(400), (blob(10), blob(20)), Box()
c3.payload.items = [blob(30) for _ in range(5)]
CYCLE = c1
ALSO = c3.payload
del c1, c2, c3
# Weak holders of objects a strong list keeps.
KEPT = [Node() for _ in range(30)]
WEAK_VALUES = weakref.WeakValueDictionary((1000 + i, o) for i, o in enumerate(KEPT))
WEAK_SET = weakref.WeakSet(KEPT)
# guppy creates an instance's __dict__ when it reads it (3.11+); memdiag reads
# the inline values. Create them now, so both sides see the same objects.
vars(WEAK_VALUES), vars(WEAK_SET)

CHOSEN = {name: globals()[name] for name in
          ("EXCLUSIVE", "SHARED", "LEFT", "RIGHT", "CYCLE", "ALSO", "KEPT",
           "WEAK_VALUES", "WEAK_SET")}
CHOSEN["EXCLUSIVE[0]"] = EXCLUSIVE[0]
CHOSEN["RIGHT[-1]"] = RIGHT[-1]
kept = [id(o) for o in KEPT]

gc.collect()
gc.disable()
path = memdiag.dump(sys.argv[1], mode="fork")
out = {"path": path, "kept": kept, "objects": {}}
for name, o in CHOSEN.items():
    iso = h.iso(o)
    out["objects"][name] = {"addr": id(o), "domisize": iso.domisize,
                            "dominos": sorted(id(x) for x in iso.dominos.nodes)}
print("RESULT " + json.dumps(out))
"""


def dominated_by(tree, x):
    """Indexes of the objects x dominates, itself included."""
    n = len(tree.idom)
    up = np.append(tree.idom.astype(np.int64), n)
    cur = np.arange(n, dtype=np.int64)
    inside = cur == x
    while (cur < n).any():
        cur = up[cur]
        inside |= cur == x
    return np.flatnonzero(inside)


@pytest.fixture(scope="module", params=["compiled", "python"])
def guppy_heap(request, tmp_path_factory):
    """(snapshot, guppy's answers) for the oracle heap, with each walker."""
    pytest.importorskip("guppy")
    env = walker_env(request.param)
    d = tmp_path_factory.mktemp(f"retained-{request.param}")
    r = run_program(ORACLE, str(d / "oracle.snap"), env=env, tmp_path=d, timeout=240)
    snap = Snapshot.load(r["path"])
    assert snap.meta["walker"] == expected_walker(request.param)
    return snap, r


def test_retained_sets_and_sizes_agree_with_guppy(guppy_heap):
    snap, r = guppy_heap
    tree = R.dominator_tree(snap)
    addr = snap.addr
    index = {a: i for i, a in enumerate(addr.tolist())}
    for name, o in r["objects"].items():
        x = index[o["addr"]]
        mine = set(addr[dominated_by(tree, x)].tolist())
        theirs = set(o["dominos"])
        assert mine == theirs, (name, len(mine), len(theirs),
                                sorted(snap.type_name_of(index[a]) for a in mine - theirs),
                                len(theirs - mine))
        # Same objects, so the same bytes on memdiag's sizes; guppy's own sizes
        # agree too for these types.
        assert tree.retained[x] == sum(int(snap.size[index[a]]) for a in theirs)
        assert tree.retained[x] == o["domisize"], name
        assert tree.count[x] == len(theirs)
    kept = {index[a] for a in r["kept"]}
    for weak in ("WEAK_VALUES", "WEAK_SET"):
        held = set(dominated_by(tree, index[r["objects"][weak]["addr"]]).tolist())
        assert not held & kept, weak                  # a weak holder keeps none of them
    assert kept <= set(dominated_by(tree, index[r["objects"]["KEPT"]["addr"]]).tolist())


@needs_c
def test_compiled_matches_reference_on_a_real_snapshot(guppy_heap):
    snap, _ = guppy_heap
    args = R.graph_of(snap)
    assert as_lists(R.compiled_dominators(*args)) == as_lists(R.reference_dominators(*args))


# --------------------------------------------------------- seed 004 demo

def test_seed_004_reg_ary_retains_the_caps_dicts_bytes_and_strs(sample):
    t = sample("captcha_leak.py")
    t.load("/captcha", 500)
    path = t.snapshot()
    rows = memdiag_json("top", path, "--retained")["retained"]
    reg = next(r for r in rows if r["path"] == "ccap.timer.timer['reg_ary']")

    snap = Snapshot.load(path)
    caps = snap.find_type("ccap.cap.CAP")
    assert len(caps) == 500
    shallow = int(snap.size[caps].sum())          # the 27 KiB `retainers` shows
    reg_i = int(next(i for i in snap.find_type("list")
                     if retainer_path(snap, i).text() == "ccap.timer.timer['reg_ary']"))
    tree = R.dominator_tree(snap)
    inside = dominated_by(tree, reg_i)
    kinds = collections.Counter(snap.kind_of(i) for i in inside.tolist())
    # Each CAP holds a style dict, a text str and image bytes of its own.
    assert kinds["instance"] == 500
    assert kinds["dict"] >= 500 and kinds["str"] >= 500 and kinds["bytes"] >= 500
    assert reg["retained"] == int(snap.size[inside].sum())
    assert reg["objects"] == len(inside)
    assert reg["retained"] > 5 * shallow          # far more than the CAPs themselves
    assert t.alive()
