"""The pure-Python walker (memdiag/walker.py) against docs/WALK.md, alone: on
every Python from 3.11 to 3.15, whether the compiled walker is built or not
(where it is not, as on a free-threaded build, this is the walker users
get). tests/test_walker_c.py checks that both walkers write the same snapshot
where both exist; this file checks the clauses themselves, cited as W4.13
and so on.

The helper (tests/walker_helpers/heapcheck.py, mode `pure`) runs as such a
target does (MEMDIAG_PURE_PYTHON=1: the Python capture, pointer reads on),
builds a varied heap, and takes two snapshots through the hook: one in a fork
child, one in the process itself (inline mode).
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import pytest

from test_walker_c import HELPER, ROOT, Snap, _env

from memdiag import snapfile as sf

PY = sys.version_info[:2]


def run_mode(mode, d):
    """Run the helper in `mode`; (info, fork snapshot, inline snapshot)."""
    r = subprocess.run([sys.executable, HELPER, mode, str(d)], capture_output=True,
                       text=True, cwd=ROOT, env=_env(), timeout=600)
    assert r.returncode == 0, f"helper failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    info = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    return info, Snap(info["fork"]), Snap(info["inline"])


@pytest.fixture(scope="module")
def pure(tmp_path_factory):
    """(info, fork snapshot, inline snapshot), one helper run per session."""
    info, fork, inline = run_mode("pure", tmp_path_factory.mktemp("pure"))
    assert fork.t["meta"]["walker"] == inline.t["meta"]["walker"] == "python"
    assert fork.t["meta"]["mode"] == "fork" and inline.t["meta"]["mode"] == "inline"
    return info, fork, inline


def edges_of(snap, addr):
    """[(target address, label)] of the object at addr, labels resolved."""
    return [(t, snap.resolved(lab)) for t, lab in snap.elist[snap.index[addr]]]


def labels_of(snap, addr):
    return collections.Counter(lab for _, lab in edges_of(snap, addr))


def label_to(snap, addr, target):
    return [lab for t, lab in edges_of(snap, addr) if t == target]


def test_pointer_reads_pass_their_probes(pure):
    """W8.1: on 3.11-3.15 (GIL builds) every group of reads by address finds
    the layout its version's headers give."""
    info, _, _ = pure
    assert info["pointer_reads"] == dict.fromkeys(
        ("intern", "dict", "code", "type", "frame", "lru"), True)


def test_unreached_and_frozen_objects(pure):
    """W2.5: a cycle no root reaches is walked from an `unreached` root. W2.6:
    so is an object in the permanent generation (gc.freeze()), in a fork
    child; in the live process PyWalker cannot list that generation (W11.3)."""
    info, fork, inline = pure

    def root_kind(s, addr):
        i = s.index[addr]
        while s.parent[i]:
            i = s.parent[i] - 1
        return [r[1] for r in s.roots if r[0] == s.addrs[i]]
    assert root_kind(fork, info["cycle_addr"]) == [sf.ROOT_UNREACHED]
    assert root_kind(inline, info["cycle_addr"]) == [sf.ROOT_UNREACHED]
    assert root_kind(fork, info["frozen_addr"]) == [sf.ROOT_UNREACHED]
    assert info["frozen_addr"] not in inline.index


def test_numbering_and_root_records(pure):
    """W3.1-W3.3: objects are numbered once, in discovery order: a parent is
    numbered before its child and following parents ends at a root. W2.8,
    W2.1: the phases' roots come in order, modules by name. W2.7: a root whose
    object was numbered earlier is recorded all the same."""
    info, fork, inline = pure
    for s in (fork, inline):
        rooted = {s.index[r[0]] for r in s.roots}
        for i in range(len(s.addrs)):
            p = s.parent[i]
            assert p - 1 < i
            if p == 0:
                assert i in rooted and s.plabel[i] == ("none",)
        kinds = [r[1] for r in s.roots]
        assert kinds == sorted(kinds)
        modules = [r[2] for r in s.roots if r[1] == sf.ROOT_MODULE]
        assert modules == sorted(modules) and len(modules) == len(set(modules))
        again = [r for r in s.roots if r[1] == sf.ROOT_LOCAL and s.parent[s.index[r[0]]]]
        assert again        # e.g. a function's variable holding a module global
        for r in s.roots:   # an unreached root is numbered by its own record
            if r[1] == sf.ROOT_UNREACHED:
                assert s.parent[s.index[r[0]]] == 0


def test_kinds_tables_and_totals(pure):
    """W4.3 kinds (subclasses take their base's kind; a metaclass's instance
    is a type), W5.4 the fixed labels, W6.5 the heap total."""
    info, fork, inline = pure
    for s in (fork, inline):
        kinds = dict(zip(s.t["types"], s.t["type_kinds"]))
        assert (kinds["__main__.DictSub"], kinds["__main__.ListSub"], kinds["__main__.TupleSub"],
                kinds["__main__.StrSub"], kinds["__main__.IntSub"], kinds["bool"],
                kinds["__main__.Meta"], kinds["__main__.Plain"], kinds["frame"],
                kinds["functools._lru_cache_wrapper"]) == (
            "dict", "list", "tuple", "str", "int", "int", "type", "instance", "frame",
            "lru_cache")
        assert tuple(s.t["labels"][:len(sf.WELL_KNOWN_LABELS)]) == tuple(sf.WELL_KNOWN_LABELS)
        assert s.t["python_heap"] == sum(s.size)


def test_edge_order_module_dict_and_type_edge(pure):
    """W4.2: labeled edges first, then tp_traverse's others, then the type
    edge. W4.6: a module's dict is labeled. W4.14: an object whose type
    nothing else reached has an edge to it (sys.float_info's type is in no
    module's dict)."""
    info, fork, inline = pure
    smp = info["samples"]
    for s in (fork, inline):
        for r in s.roots:
            if r[1] == sf.ROOT_MODULE:
                assert ("attr", "__dict__") in labels_of(s, r[0]), r[2]
        labs = [lab for _, lab in edges_of(s, smp["dict_sub"])]
        n = sum(1 for lab in labs if lab[0] in ("key", "item", "opaque"))
        assert n == 4 and all(lab[0] in ("key", "item", "opaque") for lab in labs[:n])
        assert ("attr", "__class__") in labels_of(s, smp["float_info"])
        tp = [t for t, lab in edges_of(s, smp["float_info"]) if lab == ("attr", "__class__")]
        assert s.kind[s.index[tp[0]]] == "type" and s.parent[s.index[tp[0]]] - 1 == \
            s.index[smp["float_info"]]


def test_every_referent_is_an_edge(pure):
    """W4.1: every object tp_traverse shows is the target of an edge (a
    labeled one, or an unlabeled one when no label applies)."""
    info, fork, inline = pure
    for s in (fork, inline):
        for name, refs in info["referents"].items():
            targets = {t for t, _ in edges_of(s, info["samples"][name])}
            assert set(refs) <= targets, name


def test_instance_attributes(pure):
    """W4.13: inline values are labeled by attribute name in a fork child; in
    the live process they stay unlabeled (W11.2: naming them would need the
    type's shared keys, which the pure-Python walker does not read). Slots
    are labeled everywhere, and so is an existing __dict__."""
    info, fork, inline = pure
    smp = info["samples"]
    assert label_to(fork, smp["plain"], smp["plain_gamma"]) == [("attr", "gamma")]
    assert {"alpha", "beta", "gamma"} <= {lab[1] for lab in labels_of(fork, smp["plain"])
                                          if lab[0] == "attr"}
    assert label_to(inline, smp["plain"], smp["plain_gamma"]) == [("none",)]
    for s in (fork, inline):
        assert ("attr", "__class__") in labels_of(s, smp["plain"])
        assert label_to(s, smp["slotted"], smp["slot_z"]) == [("attr", "z")]
        # A class with __slots__ = (..., "__dict__"): its other attributes are in
        # a dict (3.13) or in inline values (3.11, 3.12, 3.14+: no dict yet).
        dicts = [t for t, lab in edges_of(s, smp["slotted"]) if lab == ("attr", "__dict__")]
        if info["slotted_has_dict"]:
            assert len(dicts) == 1
            assert label_to(s, dicts[0], smp["slot_extra"]) == [("item", "extra")]
        else:
            assert dicts == []
            assert label_to(s, smp["slotted"], smp["slot_extra"]) == (
                [("attr", "extra")] if s is fork else [("none",)])
        assert label_to(s, smp["materialized"], smp["materialized_dict"]) == [
            ("attr", "__dict__")]


def test_dict_keys_written_or_opaque(pure):
    """W5.2: a str key is written as a name only when it is name-like and
    interned: on this Python the interning bit is read (W8.2), so a
    name-like key made at run time is opaque and an interned one is written."""
    info, fork, inline = pure
    smp = info["samples"]
    for s in (fork, inline):
        labs = labels_of(s, smp["dicts0"])
        items = {lab[1] for lab in labs if lab[0] == "item"}
        assert items == {"ok_name", "MAX2", "__dict__"}
        assert sum(k for lab, k in labs.items() if lab[0] == "opaque") == 8
        assert labs[("key",)] == 11
        rk = {lab for lab in labels_of(s, smp["runtime_keyed"]) if lab[0] in ("item", "opaque")}
        assert ("item", "interned_key") in rk
        assert not any(lab == ("item", "runtime_made") for lab in rk)
        assert "runtime_made" not in s.t["labels"]
        for token in ("a8f5f167f44f4964e6c998dee827110c", "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                      "AuthorizationHeaderValue", "x-y"):
            assert token not in s.t["labels"]


def test_names_the_program_makes_at_run_time_are_written(pure):
    """W5.2: a key made at run time is written when it is a name: a dunder
    the interpreter makes (a module's __warningregistry__, interned on
    3.12+ but not on 3.11), a dunder made by the program, a name the
    program's code spells out (a method's name, an attribute name). A
    name-like key that is none of these stays opaque."""
    info, fork, inline = pure
    smp = info["samples"]
    for s in (fork, inline):
        assert label_to(s, smp["warned_dict"], smp["warning_registry"]) == [
            ("item", "__warningregistry__")]
        events = {lab for lab in labels_of(s, smp["events"]) if lab[0] in ("item", "opaque")}
        assert {("item", "on_start"), ("item", "on_connect")} <= events
        assert ("item", "on_stop_xyz") not in events and "on_stop_xyz" not in s.t["labels"]
        assert sum(1 for lab in events if lab[0] == "opaque") == 1
        dunders = {lab for lab in labels_of(s, smp["dunders"]) if lab[0] in ("item", "opaque")}
        assert ("item", "__custom_registry__") in dunders
        assert "___" not in s.t["labels"]


def test_deque_items_are_labeled_by_index(pure):
    """W4.5: a deque's items, a subclass's too, are labeled by index; the
    subclass's __dict__ follows from tp_traverse."""
    info, fork, inline = pure
    smp = info["samples"]
    for s in (fork, inline):
        items = [lab for _, lab in edges_of(s, smp["deque"]) if lab[0] == "index"]
        assert items == [("index", 0), ("index", 1), ("index", 2)]
        sub = edges_of(s, smp["deque_sub"])
        # "sub" twice: the same interned str, two index edges
        assert [lab for _, lab in sub if lab[0] == "index"] == [
            ("index", 0), ("index", 1), ("index", 2)]
        assert [t for t, lab in sub if lab[0] == "index"] == info["deque_sub_items"]


def test_bounds(pure):
    """W10.3: the trailer's bounds: a deque's maxlen, an lru_cache wrapper's
    maxsize, an int maxsize or maxlen attribute (a cachetools-style private
    one, a slot); nothing for maxsize=None, a bool, a float, a negative or
    too big int. In the live process an attribute in inline values has no
    name for this walker (W11.2), so its bound is not read either."""
    info, fork, inline = pure
    smp = info["samples"]
    for s in (fork, inline):
        by_addr = {s.addrs[i]: b for i, b in s.t["bounds"]}
        assert by_addr[smp["deque"]] == 10 and by_addr[smp["deque0"]] == 0
        assert by_addr[smp["lru64"]] == 64 and by_addr[smp["slotted5"]] == 5
        assert by_addr.get(smp["cache4096"]) == (4096 if s is fork else None)
        for name in ("cached", "cache_bool", "cache_big", "cache_float", "cache_negative",
                     "deque_sub"):
            assert smp[name] not in by_addr, name
        indexes = [i for i, _ in s.t["bounds"]]
        assert indexes == sorted(set(indexes))          # in index order, once each


def test_code_type_function_cell_lru_fields(pure):
    """W4.7-W4.10, W4.12: the fields read without tp_traverse, labeled
    (W8.4, W8.5: code and type fields read by address)."""
    info, fork, inline = pure
    smp = info["samples"]
    for s in (fork, inline):
        code = {lab[1] for lab in labels_of(s, smp["code"]) if lab[0] == "attr"}
        want = {"co_consts", "co_names", "co_filename", "co_name", "co_qualname",
                "co_linetable", "co_exceptiontable", "co_localsplusnames",
                "co_localspluskinds", "co_code"}
        if PY >= (3, 12):
            want |= {"co_varnames", "co_cellvars", "co_freevars"}
        assert want <= code, want - code
        tp = {lab[1] for lab in labels_of(s, smp["plain_type"]) if lab[0] == "attr"}
        assert {"__dict__", "__mro__", "__bases__", "__name__", "__qualname__"} <= tp
        subs = [lab for es in s.elist for _, lab in es if lab == ("attr", "__subclasses__")]
        assert len(subs) > 20
        fn = {lab[1] for lab in labels_of(s, smp["closure"]) if lab[0] == "attr"}
        assert {"__code__", "__globals__", "__closure__"} <= fn
        assert ("attr", "__cache__") in labels_of(s, smp["cached"])
        cells = [lab for es in s.elist for _, lab in es if lab == ("attr", "cell_contents")]
        assert cells


def test_frame_locals(pure):
    """W4.11: a suspended generator's frame has its locals labeled by name
    (in the live process only on 3.13+, where f_locals is a proxy that makes
    nothing: W11.2)."""
    info, fork, inline = pure
    frame = info["samples"]["gen_frame"]
    locs = {lab[1] for lab in labels_of(fork, frame) if lab[0] == "local"}
    assert {"n", "local_list", "shared"} <= locs
    assert not [lab for lab in labels_of(inline, frame) if lab[0] == "local"]


def test_sizes_and_lengths(pure):
    """W6.1: sizes are sys.getsizeof's, a __sizeof__ written in Python is not
    called (object.__sizeof__ plus the pre-header, W6.2, instead). W6.4: a
    materialized __dict__ has its own size. W7.1: lengths."""
    info, fork, inline = pure
    smp = info["samples"]
    for s in (fork, inline):
        for name, size in info["sizes"].items():
            if name != "pysizeof_formula":
                assert s.size[s.index[smp[name]]] == size, name
        assert s.size[s.index[smp["pysizeof"]]] == info["sizes"]["pysizeof_formula"]
        length = lambda name: s.length[s.index[smp[name]]]  # noqa: E731
        assert (length("dicts0"), length("deque"), length("str_sub"), length("ints"),
                length("plain")) == (11, 3, 3, 8, 0)


def test_strings_sites_roots_and_ignore_set(pure):
    """W10.1 strings, W10.2 allocation sites, W2.1 module roots, W2.2 stack
    roots (W11.5: the Python capture gives no thread dicts), W9.1: nothing of
    memdiag's own in the snapshot."""
    info, fork, inline = pure
    for s in (fork, inline):
        datas = set(s.strings.values())
        for text in ("latin1 \xe9", "ucs2 \u20ac", "ucs4 \U0001f600", "lone \ud800"):
            assert text.encode("utf-8", "surrogatepass") in datas
        assert s.site_frames(s.index[info["samples"]["plain"]])
        assert any(r[1] == sf.ROOT_LOCAL and r[3] == "thread_list" for r in s.roots)
        assert not any(r[1] == sf.ROOT_THREAD for r in s.roots)
        assert any(r[1] == sf.ROOT_MODULE and r[2] == "__main__" for r in s.roots)
        assert not any(r[1] == sf.ROOT_MODULE and r[2].startswith("memdiag") for r in s.roots)
        assert not [t for t in s.t["types"] if t.startswith("memdiag.")]


def test_live_walk_makes_nothing(pure):
    """W1.2: in the live process the walk creates no instance __dict__ and
    leaves no object behind (but the hook's own state dict, made once)."""
    info, _, _ = pure
    assert info["dicts_made"] == 0
    # Neither a staticmethod __sizeof__ (W6.1) nor a __slots__ iterable of
    # the program's own (W11.8) was called.
    assert info["program_code_calls"] == []
    left = [o for o in info["objects_left"]
            if not o.startswith("dict: {'installed'")
            and not (o.startswith("tuple:") and "follow_symlinks" in o)]
    assert left == []


@pytest.mark.xfail(strict=True, reason=(
    "WALK.md W9.6, both walkers: phase 4 expands memdiag's objects through "
    "tp_traverse only, which shows nothing inside a code object, so the "
    "constants tuples of memdiag's own code are walked as unreached objects"))
def test_memdiag_code_constants_are_ignored(pure):
    """W9.1: the constants of memdiag's own code are memdiag's objects."""
    info, fork, inline = pure
    assert len(info["own_consts"]) > 20
    for s in (fork, inline):
        assert not set(info["own_consts"]) & set(s.index)


def test_without_reads_by_address(tmp_path):
    """W11.4: without its reads by address PyWalker still walks, with less:
    no code-object fields beyond the getters' (W4.8), no __subclasses__
    (W4.9), name-like keys written without the interning check (W5.3), and
    in the live process no inline value labeled (a fork child makes the
    __dict__ to read the names, W9.5)."""
    info, fork, inline = run_mode("noreads", tmp_path)
    assert not any(info["pointer_reads"].values())
    smp = info["samples"]
    for s in (fork, inline):
        code = {lab[1] for lab in labels_of(s, smp["code"]) if lab[0] == "attr"}
        assert "co_consts" in code and "co_localsplusnames" not in code
        assert not [lab for es in s.elist for _, lab in es if lab == ("attr", "__subclasses__")]
        assert ("item", "runtime_made") in labels_of(s, smp["runtime_keyed"])
    assert label_to(fork, smp["plain"], smp["plain_gamma"]) == [("attr", "gamma")]
    assert label_to(inline, smp["plain"], smp["plain_gamma"]) == [("none",)]


ENABLE = r"""
import ctypes, gc, json, sys
from memdiag import walker_reads
gc.disable()


def left_behind(action):
    kept = gc.get_objects()          # alive, so that no new object reuses an id
    before = {id(o) for o in kept}
    before.update((id(kept), id(before)))
    action()
    # What the modules reach (memdiag.walker's tables and the functions that
    # read memory among it) by the edges the walker follows: the referents,
    # and a type's tp_subclasses dict (W4.9), which holds the weak references
    # to the few ctypes types the reads are made with. A new object outside
    # it would be left behind.
    own = set()
    stack = [m for m in list(sys.modules.values()) if m is not None]
    while stack:
        o = stack.pop()
        if id(o) not in own:
            own.add(id(o))
            stack.extend(gc.get_referents(o))
            if isinstance(o, type) and walker_reads.pointer_reads()["type"]:
                subs = walker_reads.type_subclasses(o)
                if subs is not None:
                    stack.append(subs)
    left = []
    for o in gc.get_objects():
        if id(o) not in before and id(o) not in own and not (
                o is left or o is own or o is stack):
            left.append(o)
    return [type(o).__name__ + ": " + repr(o)[:60] for o in left]


left_behind(lambda: None)   # once for nothing: 3.15 completes lazy imports here
left = left_behind(walker_reads.enable_pointer_reads)
print(json.dumps({"left": left, "reads": walker_reads.pointer_reads()}))
"""


def test_enabling_reads_leaves_nothing_but_memdiags_own():
    """W1.2, W9.1: the probes of enable_pointer_reads (run at install, in the
    program) leave no object behind that no module holds: no co_varnames
    tuple cached on memdiag's code (walked as unreached), no generator frame
    in a cycle. (Both were there before the probes were changed.)"""
    r = subprocess.run([sys.executable, "-c", ENABLE], capture_output=True, text=True,
                       cwd=ROOT, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert all(out["reads"].values())
    assert out["left"] == []
