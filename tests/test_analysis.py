"""Analyses on hand-built snapshots: exact expectations, no process needed."""

import pytest

from memdiag.analysis.diff import diff
from memdiag.analysis.retainers import retainer_chains
from memdiag.analysis.top import top
from memdiag.model import Snapshot

from needs import compiled_walker_missing
from snapbuild import Graph, leak_heap


def write(g, tmp_path, name, **meta):
    return Snapshot.load(g.write(str(tmp_path / name), **meta))


def test_suspect_path_growth_and_added_type(tmp_path):
    a = write(leak_heap(200, 10, 5), tmp_path, "a.snap", time=1.0)
    b = write(leak_heap(700, 10, 5), tmp_path, "b.snap", time=2.0)
    r = diff([a, b])
    s = r.suspects[0]
    assert s.path == "ccap.timer.timer['reg_ary']"
    assert (s.len_before, s.len_after, s.growth) == (200, 700, 500)
    assert s.added_type == "ccap.cap.CAP"
    # 500 CAPs of 56 bytes and their 500 strs of 55 bytes were added under it
    assert s.size_delta == 500 * (56 + 55)
    caps = next(t for t in r.types if t.type == "ccap.cap.CAP")
    assert (caps.count_before, caps.count_after, caps.new, caps.freed) == (200, 700, 500, 0)
    assert len(r.suspects) == 1


def test_steady_growth_ranks_above_one_off_jump(tmp_path):
    snaps = [write(leak_heap(n, 10, j), tmp_path, f"{k}.snap", time=k)
             for k, (n, j) in enumerate([(100, 5), (110, 1005), (120, 1005)])]
    r = diff(snaps)
    # The jumpy list grew by 1000 once, then stopped: with three snapshots it is
    # not a suspect at all; the steady +10/+10 list is.
    assert [s.path for s in r.suspects] == ["ccap.timer.timer['reg_ary']"]
    assert r.suspects[0].lengths == (100, 110, 120)
    assert r.suspects[0].intervals_grown == 2


def test_steady_growth_ranks_above_bigger_jump_in_last_interval(tmp_path):
    snaps = [write(leak_heap(n, 10, j), tmp_path, f"{k}.snap", time=k)
             for k, (n, j) in enumerate([(100, 5), (110, 5), (120, 1005)])]
    r = diff(snaps)
    assert [s.path for s in r.suspects] == ["ccap.timer.timer['reg_ary']", "app.jumpy"]


def test_bounded_cache_that_filled_is_not_a_suspect(tmp_path):
    snaps = [write(leak_heap(100, c, 5), tmp_path, f"{k}.snap", time=k)
             for k, c in enumerate([300, 512, 512])]
    r = diff(snaps)
    assert "app.cache" not in [s.path for s in r.suspects]


def test_container_at_a_reused_address_is_not_the_same_container(tmp_path):
    a = leak_heap(100, 10, 5)
    b = leak_heap(100, 10, 5)
    # In b, app.jumpy is a new list at the old list's address, holding new ints.
    jumpy_b = next(o for o in b.objs if o.addr == 0x100000 + 0x500)
    jumpy_b.edges.clear()
    jumpy_b.length = 0
    for i in range(40):
        b.append(jumpy_b, b.obj("int", "int", 28, 0, addr=0x900000 + i * 0x20))
    r = diff([write(a, tmp_path, "a.snap", time=1), write(b, tmp_path, "b.snap", time=2)])
    assert "app.jumpy" not in [s.path for s in r.suspects]
    # ... while a list that kept its elements and grew is one.
    c = leak_heap(100, 10, 45)
    r = diff([write(a, tmp_path, "a2.snap", time=1), write(c, tmp_path, "c.snap", time=2)])
    assert "app.jumpy" in [s.path for s in r.suspects]


def test_snapshots_of_different_processes_compare_types_only(tmp_path):
    a = write(leak_heap(100, 10, 5), tmp_path, "a.snap", pid=1, time=1)
    b = write(leak_heap(600, 10, 5), tmp_path, "b.snap", pid=2, time=2)
    r = diff([a, b])
    assert r.suspects == () and r.matched is False
    caps = next(t for t in r.types if t.type == "ccap.cap.CAP")
    assert caps.count_delta == 500 and caps.new is None


def test_memory_verdicts(tmp_path):
    base = leak_heap(100, 10, 5)
    a = write(base, tmp_path, "a.snap", time=1, rss=100 << 20)
    b = write(base, tmp_path, "b.snap", time=2, rss=400 << 20)
    assert diff([a, b]).verdict == "native"
    c = write(leak_heap(5000, 10, 5), tmp_path, "c.snap", time=2, rss=100 << 20)
    assert diff([a, c]).verdict == "python"
    d = write(base, tmp_path, "d.snap", time=2, rss=100 << 20)
    assert diff([a, d]).verdict == "flat"


def test_retainers_merge_paths_by_shape(tmp_path):
    s = write(leak_heap(300, 40, 5), tmp_path, "a.snap")
    chains, total = retainer_chains(s, "CAP")
    assert total == 300
    assert [(c.path, c.count, c.size) for c in chains] == [
        ("ccap.timer.timer['reg_ary'][*]", 300, 300 * 56)]
    assert chains[0].example.startswith("ccap.timer.timer['reg_ary'][")
    chains, _ = retainer_chains(s, "bytes")
    assert chains[0].path == "app.cache[*]" and chains[0].count == 40
    # opaque keys show type and length, never contents
    assert chains[0].example == "app.cache[<str len 32>]"


def test_retainers_since_counts_only_new_objects(tmp_path):
    a = write(leak_heap(200, 10, 5), tmp_path, "a.snap", time=1)
    b = write(leak_heap(260, 10, 5), tmp_path, "b.snap", time=2)
    chains, total = retainer_chains(b, "ccap.cap.CAP", since=a)
    assert total == 60 and chains[0].count == 60


def test_top_lists_largest_containers_with_paths(tmp_path):
    s = write(leak_heap(300, 40, 5), tmp_path, "a.snap")
    r = top(s, 3)
    assert [(c.path, c.length) for c in r.containers] == [
        ("ccap.timer.timer['reg_ary']", 300), ("app.cache", 40), ("app.jumpy", 5)]
    assert r.by_count[0].type == "str"
    assert r.totals["objects"] == s.n_objects


def test_local_variable_root_path(tmp_path):
    g = Graph()
    big = g.obj("list", "list", 88)
    g.local("worker-1: handle (app.py:42)", "pending", big)
    for i in range(3):
        g.append(big, g.obj("str", "str", 50, 1))
    s = write(g, tmp_path, "a.snap")
    chains, _ = retainer_chains(s, "str")
    assert chains[0].path == "<worker-1: handle (app.py:42)>.pending[*]"


@pytest.mark.parametrize("module_first", [True, False])
def test_module_path_preferred_over_stack_path(tmp_path, module_first):
    g = Graph()
    lst = g.obj("list", "list", 88)
    g.append(lst, g.obj("ccap.cap.CAP", "instance", 56))
    if not module_first:
        g.local("MainThread: f (a.py:1)", "x", lst)
    mod = g.module("lib")
    g.item(mod.dict, "registry", lst)
    if module_first:
        g.local("MainThread: f (a.py:1)", "x", lst)
    # the walkers walk module roots first; the builder walks roots in the order given
    g.roots.sort(key=lambda r: r[1])
    s = write(g, tmp_path, "a.snap")
    chains, _ = retainer_chains(s, "CAP")
    assert chains[0].path == "lib.registry[*]"


def test_compiled_and_numpy_address_matching_agree(monkeypatch):
    """The hash join (memdiag._fastmatch) and the numpy fallback give the same pairs."""
    import numpy as np
    from memdiag.analysis import match as m
    if m._fastmatch is None:
        compiled_walker_missing("the compiled address matcher (memdiag._fastmatch)")
    rng = np.random.default_rng(7)
    # sizes that are not multiples of the hash join's batch of 32
    a = np.unique(rng.integers(1, 1 << 36, 210_000, dtype=np.uint64) << np.uint64(4))[:200_003]
    a = rng.permutation(a)
    b = np.concatenate([rng.permutation(a)[:120_000],
                        rng.integers(1 << 37, 1 << 38, 80_001, dtype=np.uint64) << np.uint64(4)])
    rng.shuffle(b)
    fast = m.match_addresses(a, b)
    _fm = m._fastmatch
    monkeypatch.setattr(m, "_fastmatch", None)
    slow = m.match_addresses(a, b)
    assert len(fast[0]) == 120_000
    for x, y in zip(fast, slow):
        assert np.array_equal(np.asarray(x, np.int64), np.asarray(y, np.int64))
    assert np.array_equal(a[np.asarray(fast[0], np.int64)], b[np.asarray(fast[1], np.int64)])
    # b repeating an address (a damaged file) more often than a has entries
    a2 = np.array([16, 32, 48], np.uint64)
    b2 = np.array([32, 32, 32, 32, 48], np.uint64)
    slow2 = m.match_addresses(a2, b2)
    monkeypatch.setattr(m, "_fastmatch", _fm)
    fast2 = m.match_addresses(a2, b2)
    assert len(fast2[0]) == 5
    for x, y in zip(fast2, slow2):
        assert np.array_equal(np.asarray(x, np.int64), np.asarray(y, np.int64))
