"""Diagnosis depth on hand-built snapshots (issue 10): grouped suspects, byte
growth, weak and bounded holders, retained sizes in diff and retainers, and
deep chains folded to their true depth. Exact expectations, no process."""

import io

import numpy as np
import pytest

from memdiag.analysis import paths
from memdiag.analysis.diff import diff
from memdiag.analysis.retainers import retainer_chains
from memdiag.model import Snapshot, SnapshotError
from memdiag.render.diff import diff_blocks, diff_json, suspect_notes
from memdiag.render.blocks import print_plain

from snapbuild import Graph, leak_heap
from snapcraft import parse


def load(g, tmp_path, name, **meta):
    meta.setdefault("pid", 7)
    return Snapshot.load(g.write(str(tmp_path / name), **meta))


def text_of(result):
    out = io.StringIO()
    print_plain(diff_blocks(result), out)
    return out.getvalue()


# ------------------------------------------------------------- groups

def spread_heap(per_user, users=200, log_len=0):
    """app.history: {user id (int): [Event, ...]} for `users` users, each
    holding per_user[u] events (or per_user for all); app.log: a list of
    log_len Events. Same arguments, same addresses."""
    g = Graph()
    app = g.module("app", addr=0x1000)
    history = g.obj("dict", "dict", 9000, addr=0x2000)
    g.item(app.dict, "history", history)
    for u in range(users):
        key = g.obj("int", "int", 28, addr=0x100000 + u * 0x40)
        events = g.obj("list", "list", 88, addr=0x200000 + u * 0x40)
        g.opaque_item(history, key, events)
        n = per_user[u] if isinstance(per_user, list) else per_user
        for k in range(n):
            g.append(events, g.obj("app.Event", "instance", 56,
                                   addr=0x10000000 + u * 0x100000 + k * 0x40))
    log = g.obj("list", "list", 88, addr=0x3000)
    g.item(app.dict, "log", log)
    for k in range(log_len):
        g.append(log, g.obj("app.Line", "instance", 48, addr=0x4000000 + k * 0x40))
    return g


def test_many_lists_of_one_shape_are_one_group_that_outranks_a_single_list(tmp_path):
    a = load(spread_heap(5, log_len=10), tmp_path, "a.snap", time=1)
    b = load(spread_heap(10, log_len=60), tmp_path, "b.snap", time=2)
    r = diff([a, b])
    group, single = r.suspects[0], r.suspects[1]
    assert (group.path, group.kind, group.type) == ("app.history[*]", "group", "list")
    assert (group.containers, group.grew, group.largest_growth) == (200, 200, 5)
    assert (group.len_before, group.len_after, group.growth) == (1000, 2000, 1000)
    assert group.size_delta == 1000 * 56
    assert group.added_type == "app.Event"
    assert group.example.startswith("app.history[<int>]")
    # the single list that gained 50 ranks below the 200 that gained 1,000
    assert (single.path, single.kind, single.containers, single.growth) == \
        ("app.log", "container", 1, 50)
    js = diff_json(r)["suspects"]
    assert [(s["kind"], s["containers"]) for s in js] == [("group", 200), ("container", 1)]
    assert js[0]["grew"] == 200 and js[0]["max_growth"] == 5
    assert "200 lists, 200 grew, most +5" in text_of(r)


def test_a_group_counts_its_members_that_did_not_grow(tmp_path):
    before = [5] * 200
    after = [5] * 150 + [9] * 50
    r = diff([load(spread_heap(before), tmp_path, "a.snap", time=1),
              load(spread_heap(after), tmp_path, "b.snap", time=2)])
    s = r.suspects[0]
    assert (s.containers, s.grew, s.growth, s.largest_growth) == (200, 50, 200, 4)


def test_group_growth_over_three_snapshots_and_its_retained_sizes(tmp_path):
    snaps = [load(spread_heap(n), tmp_path, f"{n}.snap", time=n) for n in (2, 4, 7)]
    s = diff(snaps).suspects[0]
    assert s.lengths == (400, 800, 1400) and s.intervals_grown == 2
    # each list keeps itself and its events alive; the int keys are the dict's
    assert s.retained_before == 200 * (88 + 2 * 56)
    assert s.retained_after == 200 * (88 + 7 * 56)
    assert s.retained_delta == 200 * 5 * 56


def test_two_containers_that_grew_under_names_are_not_a_group(tmp_path):
    r = diff([load(leak_heap(100, 10, 5), tmp_path, "a.snap", time=1),
              load(leak_heap(200, 10, 50), tmp_path, "b.snap", time=2)])
    assert [(s.path, s.kind) for s in r.suspects] == [
        ("ccap.timer.timer['reg_ary']", "container"), ("app.jumpy", "container")]


# ------------------------------------------------------------- retained in diff

def test_diff_gives_retained_sizes_before_and_after(tmp_path):
    r = diff([load(leak_heap(200, 10, 5), tmp_path, "a.snap", time=1),
              load(leak_heap(700, 10, 5), tmp_path, "b.snap", time=2)])
    s = r.suspects[0]
    # the list (88 B), and per CAP the CAP (56 B) and its text (55 B)
    assert (s.retained_before, s.retained_after) == (88 + 200 * 111, 88 + 700 * 111)
    assert diff_json(r)["suspects"][0]["retained_delta"] == 500 * 111
    assert "What the suspects keep alive (retained size)" in text_of(r)
    off = diff([load(leak_heap(200, 10, 5), tmp_path, "c.snap", time=1),
                load(leak_heap(700, 10, 5), tmp_path, "d.snap", time=2)], retained=False)
    assert off.suspects[0].retained_after is None
    assert diff_json(off)["suspects"][0]["retained_delta"] is None


# ------------------------------------------------------------- byte growth

def buffer_heap(buf_size, text_size, text_addr, extra=()):
    """app.buf: a bytearray of buf_size bytes at a fixed address; app.text: a
    str of text_size bytes at text_addr (a str rebuilt longer is a new object
    at a new address); app.pool: a list of connections, each with a
    .buffer bytearray of the size given in `extra`."""
    g = Graph()
    app = g.module("app", addr=0x1000)
    g.item(app.dict, "buf", g.obj("bytearray", "bytes", buf_size, length=buf_size - 57,
                                  addr=0x2000))
    g.item(app.dict, "text", g.obj("str", "str", text_size, length=text_size - 49,
                                   addr=text_addr))
    pool = g.obj("list", "list", 88, addr=0x3000)
    g.item(app.dict, "pool", pool)
    for k, size in enumerate(extra):
        conn = g.obj("app.Conn", "instance", 56, addr=0x100000 + k * 0x40)
        g.append(pool, conn)
        g.attr(conn, "buffer", g.obj("bytearray", "bytes", size, length=size - 57,
                                     addr=0x200000 + k * 0x40))
    return g


def test_objects_whose_own_size_grew_are_suspects_ranked_by_bytes(tmp_path):
    a = load(buffer_heap(1000, 5000, 0x5000), tmp_path, "a.snap", time=1)
    b = load(buffer_heap(201000, 45000, 0x6000), tmp_path, "b.snap", time=2)
    r = diff([a, b])
    got = [(s.path, s.type, s.unit, s.growth, s.size_delta) for s in r.suspects]
    assert got == [("app.buf", "bytearray", "bytes", 0, 200000),
                   ("app.text", "str", "bytes", 0, 40000)]
    assert r.suspects[0].sizes == (1000, 201000)
    js = diff_json(r)["suspects"][1]
    assert (js["growth"], js["size_delta"], js["growth_unit"]) == (0, 40000, "bytes")
    assert (js["len_before"], js["len_after"]) == (5000 - 49, 45000 - 49)


def test_a_value_rebuilt_longer_is_followed_through_every_snapshot(tmp_path):
    sizes = [(5000, 0x5000), (25000, 0x6000), (45000, 0x7000)]
    snaps = [load(buffer_heap(1000, size, addr), tmp_path, f"{k}.snap", time=k)
             for k, (size, addr) in enumerate(sizes)]
    s = diff(snaps).suspects[0]
    assert (s.path, s.unit, s.sizes, s.intervals_grown) == \
        ("app.text", "bytes", (5000, 25000, 45000), 2)
    # rebuilt, then no longer growing: not a suspect with three snapshots
    sizes[2] = (25000, 0x7000)
    snaps = [load(buffer_heap(1000, size, addr), tmp_path, f"s{k}.snap", time=k)
             for k, (size, addr) in enumerate(sizes)]
    assert diff(snaps).suspects == ()


def test_small_size_changes_are_not_byte_suspects(tmp_path):
    r = diff([load(buffer_heap(1000, 5000, 0x5000), tmp_path, "a.snap", time=1),
              load(buffer_heap(1500, 5400, 0x6000), tmp_path, "b.snap", time=2)])
    assert r.suspects == ()


def test_buffers_of_one_shape_grow_as_a_group(tmp_path):
    a = load(buffer_heap(1000, 5000, 0x5000, extra=[2000] * 30), tmp_path, "a.snap", time=1)
    b = load(buffer_heap(1000, 5000, 0x5000, extra=[2000] * 10 + [10000] * 20),
             tmp_path, "b.snap", time=2)
    s = diff([a, b]).suspects[0]
    assert (s.path, s.kind, s.unit, s.containers, s.size_delta) == \
        ("app.pool[*].buffer", "group", "bytes", 20, 20 * 8000)
    assert "most +7.8 KiB" in suspect_notes(s)


# ------------------------------------------------------------- weak and bounded

def holders_heap(n, bound=None, weak_type="weakref.KeyedRef"):
    """app.opened: a list of n Sessions; app.by_id.data: a dict of n weak
    references to the same Sessions (a WeakValueDictionary: weakrefs are no
    edges, so it reaches no Session); app.recent: a deque of the last
    min(n, 50) session ids, bounded when `bound` is given."""
    g = Graph()
    app = g.module("app", addr=0x1000)
    opened = g.obj("list", "list", 88, addr=0x2000)
    g.item(app.dict, "opened", opened)
    by_id = g.obj("weakref.WeakValueDictionary", "instance", 56, addr=0x3000)
    g.item(app.dict, "by_id", by_id)
    data = g.obj("dict", "dict", 4000, addr=0x3100)
    g.attr(by_id, "data", data)
    recent = g.obj("collections.deque", "deque", 600, addr=0x4000)
    g.item(app.dict, "recent", recent)
    if bound is not None:
        g.bound(recent, bound)
    for k in range(n):
        s = g.obj("app.Session", "instance", 56, addr=0x100000 + k * 0x40)
        g.append(opened, s)
        g.attr(s, "scratch", g.obj("bytearray", "bytes", 313, length=256,
                                   addr=0x200000 + k * 0x40))
        key = g.obj("int", "int", 28, addr=0x300000 + k * 0x40)
        g.opaque_item(data, key, g.obj(weak_type, "instance", 80, addr=0x400000 + k * 0x40))
        sid = g.obj("int", "int", 28, addr=0x500000 + k * 0x40)
        recent.edges.append((sid, ("none", None)))
        recent.length += 1
    return g


def test_a_weak_holder_ranks_below_the_strong_list_and_is_marked(tmp_path):
    r = diff([load(holders_heap(100), tmp_path, "a.snap", time=1),
              load(holders_heap(300), tmp_path, "b.snap", time=2)])
    by_path = {s.path: s for s in r.suspects}
    assert [s.path for s in r.suspects] == ["app.opened", "app.recent", "app.by_id.data"]
    strong, weak = by_path["app.opened"], by_path["app.by_id.data"]
    assert (strong.weak, weak.weak) == (False, True)
    # the list keeps the sessions and their bytearrays alive; the weak dict
    # only its weak references (the keys are its own too)
    assert strong.retained_delta == 200 * (56 + 313)
    assert weak.retained_delta == 200 * (80 + 28)
    assert [s["weak"] for s in diff_json(r)["suspects"]] == [False, False, True]
    assert "weak" in text_of(r)


def test_a_weak_holder_ranks_below_strong_growth_even_if_it_grew_more(tmp_path):
    # the weak dict gains 200 entries; a strong list elsewhere gains 20
    g_a, g_b = holders_heap(100), holders_heap(300)
    for g, n in ((g_a, 0), (g_b, 20)):
        extra = g.obj("list", "list", 88, addr=0x9000)
        g.item(g.roots[0][0].dict, "late", extra)
        for k in range(n + 10):
            g.append(extra, g.obj("app.Line", "instance", 48, addr=0x900000 + k * 0x40))
    r = diff([load(g_a, tmp_path, "a.snap", time=1), load(g_b, tmp_path, "b.snap", time=2)])
    assert [s.path for s in r.suspects] == ["app.opened", "app.recent", "app.late",
                                            "app.by_id.data"]


def test_a_dict_of_weak_keys_and_strong_values_is_not_weak(tmp_path):
    # a WeakKeyDictionary holds its values strongly: only its keys are weak
    r = diff([load(holders_heap(100, weak_type="app.Value"), tmp_path, "a.snap", time=1),
              load(holders_heap(300, weak_type="app.Value"), tmp_path, "b.snap", time=2)])
    assert not any(s.weak for s in r.suspects)


def test_a_bounded_container_says_its_bound_and_ranks_below_unbounded(tmp_path):
    r = diff([load(holders_heap(10, bound=4096), tmp_path, "a.snap", time=1),
              load(holders_heap(40, bound=4096), tmp_path, "b.snap", time=2)])
    s = next(s for s in r.suspects if s.path == "app.recent")
    assert s.bound == 4096 and not s.weak
    assert suspect_notes(s) == "bounded: 40 / 4,096"
    assert [x.path for x in r.suspects] == ["app.opened", "app.recent", "app.by_id.data"]
    assert diff_json(r)["suspects"][1]["bound"] == 4096
    assert "bounded: 40 / 4,096" in text_of(r)
    unbounded = diff([load(holders_heap(10), tmp_path, "c.snap", time=1),
                      load(holders_heap(40), tmp_path, "d.snap", time=2)])
    assert next(s for s in unbounded.suspects if s.path == "app.recent").bound is None


def lru_heap(n, maxsize):
    """app.price: an lru_cache wrapper with maxsize, holding its cache dict
    under the walker's `__cache__` label."""
    g = Graph()
    app = g.module("app", addr=0x1000)
    wrapper = g.obj("functools._lru_cache_wrapper", "lru_cache", 120, addr=0x2000)
    g.item(app.dict, "price", wrapper)
    g.bound(wrapper, maxsize)
    cache = g.obj("dict", "dict", 4000, addr=0x3000)
    g.attr(wrapper, "__cache__", cache)
    for k in range(n):
        g.opaque_item(cache, g.obj("int", "int", 28, addr=0x100000 + k * 0x40),
                      g.obj("functools._lru_list_elem", "other", 64, addr=0x200000 + k * 0x40))
    return g


def test_an_lru_cache_dict_takes_its_wrappers_bound(tmp_path):
    r = diff([load(lru_heap(2000, 4096), tmp_path, "a.snap", time=1),
              load(lru_heap(3012, 4096), tmp_path, "b.snap", time=2)])
    s = r.suspects[0]
    assert (s.path, s.bound) == ("app.price.__cache__", 4096)
    assert suspect_notes(s) == "bounded: 3,012 / 4,096"


def test_items_of_a_deque_read_as_list_items(tmp_path):
    snap = load(holders_heap(5), tmp_path, "a.snap", time=1)
    recent = next(i for i in range(snap.n_objects) if snap.type_name_of(i) == "collections.deque")
    targets, _ = snap.edges_of(recent)
    path = paths.retainer_path(snap, int(targets[0]))
    assert (path.text(), path.shape()) == ("app.recent[*]", "app.recent[*]")


@pytest.mark.parametrize("table", [
    {"bounds": [[1 << 40, 5]]}, {"bounds": [[0, -1]]}, {"bounds": [[0]]},
    {"bounds": [["0", 5]]}, {"bounds": [[0, True]]}, {"bounds": {"0": 5}},
])
def test_a_bad_bounds_table_is_a_corrupted_snapshot(tmp_path, table):
    path = leak_heap(3, 1, 1).write(str(tmp_path / "a.snap"))
    with open(path, "rb") as f:
        p = parse(f.read())
    p.set_trailer({**p.trailer, **table})
    with open(path, "wb") as f:
        f.write(p.build())
    with pytest.raises(SnapshotError, match=r"corrupted snapshot \(bad 'bounds' table\)"):
        Snapshot.load(path)


# ------------------------------------------------------------- deep chains

def linked_list(n):
    """app.state['head'] -> Node -> .next -> ... n nodes, each with a .value str."""
    g = Graph()
    app = g.module("app", addr=0x1000)
    state = g.obj("dict", "dict", 232, addr=0x2000)
    g.item(app.dict, "state", state)
    prev = None
    for k in range(n):
        node = g.obj("app.Node", "instance", 48, addr=0x100000 + k * 0x40)
        g.attr(node, "value", g.obj("str", "str", 60, length=11, addr=0x800000 + k * 0x40))
        if prev is None:
            g.item(state, "head", node)
        else:
            g.attr(prev, "next", node)
        prev = node
    return g


def test_a_deep_chain_is_one_retainer_row_with_its_true_depth(tmp_path):
    snap = load(linked_list(3000), tmp_path, "a.snap", time=1)
    chains, total = retainer_chains(snap, "Node")
    first = chains[0]
    assert total == 3000
    assert (first.path, first.count) == ("app.state['head'](.next ×4–2,999)", 2996)
    assert first.example == "app.state['head'](.next ×2,999)"
    # the shallowest node of the row keeps all the others (and their strs) alive
    assert first.retained == 2996 * (48 + 60)
    assert [c.count for c in chains[1:]] == [1, 1, 1, 1]
    strs, _ = retainer_chains(snap, "str")
    assert strs[0].path == "app.state['head'](.next ×4–2,999).value"
    assert strs[0].retained == 2996 * 60


def test_deep_paths_fold_and_hash_the_same_from_either_end(tmp_path, monkeypatch):
    snap = load(linked_list(400), tmp_path, "a.snap", time=1)
    nodes = snap.find_type("Node")
    assert paths.retainer_path(snap, nodes[-1]).text() == "app.state['head'](.next ×399)"
    assert paths.retainer_path(snap, nodes[2]).text() == "app.state['head'].next.next"
    for sel in (nodes, snap.find_type("str"), np.arange(snap.n_objects)):
        walked_up = paths.shape_hashes(snap, sel)
        monkeypatch.setattr(paths, "_VECTOR_DEPTH", 0)       # all from the root down
        from_root = paths.shape_hashes(snap, sel)
        monkeypatch.setattr(paths, "_VECTOR_DEPTH", 24)
        assert (walked_up == from_root).all()
    h = paths.shape_hashes(snap, nodes)
    assert len(set(h[4:].tolist())) == 1 and len(set(h[:4].tolist())) == 4
    # shapes of other heaps agree too, and still tell apart what differs
    other = load(leak_heap(50, 20, 5), tmp_path, "b.snap", time=1)
    everything = np.arange(other.n_objects)
    up = paths.shape_hashes(other, everything)
    monkeypatch.setattr(paths, "_VECTOR_DEPTH", 0)
    assert (paths.shape_hashes(other, everything) == up).all()
    caps = other.find_type("CAP")
    assert len(set(up[caps].tolist())) == 1


def test_no_retained_leaves_the_retained_keys_null(tmp_path):
    import json
    from safety_helpers import run_cli_full
    a = leak_heap(200, 10, 5).write(str(tmp_path / "a.snap"), pid=3, time=1.0)
    b = leak_heap(700, 10, 5).write(str(tmp_path / "b.snap"), pid=3, time=2.0)
    for flag, kept in (("--retained", True), ("--no-retained", False)):
        code, out, err = run_cli_full(["diff", a, b, "--json", flag])
        assert code == 0, err
        s = json.loads(out)["suspects"][0]
        assert (s["retained_after"] is not None) is kept
        assert (s["retained_delta"] == 500 * 111) is kept
        code, out, err = run_cli_full(["retainers", b, "--type", "CAP", "--json", flag])
        assert code == 0, err
        assert (json.loads(out)["chains"][0]["retained"] == 700 * 111) is kept
