"""The compiled walker (memdiag/_walker.c) against the specification, PyWalker.

Every test runs real interpreters on real heaps (tests/walker_helpers/
heapcheck.py). The interpreter running pytest is tested in every run; the
other Pythons 3.11-3.15 found on this machine are `slow` cases (make
test-slow). The interpreter running pytest must have memdiag._walker built
(tests/needs.py: else the tests fail, or skip with MEMDIAG_ALLOW_PURE=1);
another version is skipped when it has no interpreter or no build
(`pythonX.Y setup.py build_ext --inplace`; make test-all builds each).

Equivalence: the helper builds a varied heap, captures the stacks with the C
capture, then forks two children with identical heaps (fork(2) without
Python's at-fork handlers); one writes a snapshot with PyWalker (pointer
reads enabled, as the hook does), the other with the C walker, both as in a
fork child (may_materialize=True). Objects are matched by address. The check
is exact: PyWalker's snapshot is the C walker's with the C walker's extra
edges taken out and the breadth-first walk redone from PyWalker's roots (the
same objects, order, discovering edges, edges of every object in order,
sizes, lengths, strings, sites, roots). The differences allowed, each checked
to be exactly that:

- C-only edges, which PyWalker cannot follow without creating objects: from
  code objects (3.11+) to co_localsplusnames and co_localspluskinds and to
  what the co_code getter cached (3.12+: also the cached co_varnames,
  co_cellvars, co_freevars tuples); from types (3.10-3.11 all, 3.12+ all but
  static builtin ones) to their tp_subclasses dict ("__subclasses__"). The
  objects C reaches first through them are discovered earlier: objects only C
  has hang off such an edge (PyWalker ignores them as reachable only from
  memdiag's objects, or never reaches them), and PyWalker's "unreached" roots
  that C reached through one are not C's roots.
- The C walker also walks the gc's permanent generation (gc.freeze(); 3.12
  freezes objects at start-up): objects only it has, under "unreached" roots.
- 3.11: tracemalloc._get_object_traceback misses objects with a managed dict
  (it forgets their pre-header); the C walker looks their block up itself,
  so only its snapshot has their allocation site.
- 3.11-3.12: PyWalker ignores the existing f_locals dict of a generator's
  frame (walker.py takes it for one its f_locals read made, as the frame
  object's referents do not show it; the generator's do): only C has it.

Not exercised here because the helper avoids them: PyWalker does not ignore
the `ignore` list it is given (the C walker ignores all its argument lists),
and it labels inline values and frame locals only in a fork child (the C
walker always does, read-only). The C walker's __slots__ members are PyWalker's
(a class's own __slots__ names, from ht_slots): C heap types' object members
are not labeled by either.
"""

from __future__ import annotations

import collections
import functools
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from memdiag import snapfile as sf  # noqa: E402
from needs import compiled_walker_missing  # noqa: E402

HELPER = os.path.join(ROOT, "tests", "walker_helpers", "heapcheck.py")
VERSIONS = ["3.11", "3.12", "3.13", "3.14", "3.15"]
SCALARS = {"int", "bool", "float", "NoneType", "str", "bytes"}


# ------------------------------------------------------------- interpreters

def _candidates(ver):
    if "%d.%d" % sys.version_info[:2] == ver:
        yield sys.executable
    env = os.environ.get("MEMDIAG_TEST_PYTHON_" + ver.replace(".", "_"))
    if env:
        yield env
    which = shutil.which("python" + ver)
    if which:
        yield which
    for base in (os.path.expanduser("~/.pyenv/versions"), "/root/.pyenv/versions"):
        yield from sorted(glob.glob(os.path.join(base, ver + ".*", "bin", "python" + ver)))
    # where scripts/find-python (scripts/debian-python) unpacks 3.14 and 3.15
    yield os.path.expanduser(f"~/.cache/debian-python/{ver}/bin/python{ver}")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MEMDIAG_PURE_PYTHON", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@functools.lru_cache(maxsize=None)
def python_with_walker(ver):
    """(interpreter, None) or (None, why it is skipped)."""
    seen = set()
    for exe in _candidates(ver):
        if not exe or exe in seen or not os.path.exists(exe):
            continue
        seen.add(exe)
        try:
            r = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.stdout.strip() != ver:
            continue
        r = subprocess.run([exe, "-c", "import memdiag._walker"], capture_output=True,
                           text=True, cwd=ROOT, env=_env(), timeout=60)
        if r.returncode != 0:
            return None, (f"memdiag._walker is not built for Python {ver} "
                          f"(run: {exe} setup.py build_ext --inplace)")
        return exe, None
    return None, f"no Python {ver} interpreter found"


CURRENT = "%d.%d" % sys.version_info[:2]


@pytest.fixture(params=[v if v == CURRENT else pytest.param(v, marks=pytest.mark.slow)
                        for v in VERSIONS])
def python(request):
    exe, why = python_with_walker(request.param)
    if exe is None:
        if request.param == CURRENT:
            compiled_walker_missing("the compiled walker (memdiag._walker)")
        pytest.skip(why)
    return exe


def run_helper(exe, *args, timeout=600):
    r = subprocess.run([exe, HELPER, *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT, env=_env(), timeout=timeout)
    assert r.returncode == 0, f"helper failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from the helper:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return json.loads(lines[-1])


# ---------------------------------------------------------------- snapshots

class Snap:
    """A snapshot decoded into per-address records."""

    def __init__(self, path):
        r = sf.Reader.open(path)
        try:
            self.t = t = r.trailer
            col = {c: r.column_values(c) for c in r.chunks}
        finally:
            r.close()
        self.addrs = addrs = col[sf.COL_ADDR]
        n = len(addrs)
        assert n == t["objects"] and len(set(addrs)) == n
        self.index = {a: i for i, a in enumerate(addrs)}
        self.type = [t["types"][k] for k in col[sf.COL_TYPE]]
        self.kind = [t["type_kinds"][k] for k in col[sf.COL_TYPE]]
        self.size = col[sf.COL_SIZE]
        self.length = col[sf.COL_LENGTH]
        self.parent = col[sf.COL_PARENT]
        self.plabel = [self.label(x) for x in col[sf.COL_PLABEL]]
        self.site = col.get(sf.COL_SITE)
        nedges = col[sf.COL_NEDGES]
        et, el = col.get(sf.COL_ETARGET, []), col.get(sf.COL_ELABEL, [])
        assert sum(nedges) == len(et) == len(el) == t["edges"]
        self.elist = []
        pos = 0
        for i in range(n):
            k = nedges[i]
            self.elist.append([(addrs[et[j]], self.label(el[j])) for j in range(pos, pos + k)])
            pos += k
        self.edges = [collections.Counter(e) for e in self.elist]
        self.roots = [(addrs[o], k, t["labels"][d], t["labels"][nm]) for o, k, d, nm in zip(
            col[sf.COL_ROOT_OBJ], col[sf.COL_ROOT_KIND], col[sf.COL_ROOT_DESC],
            col[sf.COL_ROOT_NAME])]
        assert len(self.roots) == t["roots"]
        self.strings = {}
        data = bytes(col.get(sf.COL_STR_DATA, []))
        pos = 0
        for i, ln in zip(col.get(sf.COL_STR_OBJ, []), col.get(sf.COL_STR_LEN, [])):
            self.strings[addrs[i]] = data[pos:pos + ln]
            pos += ln
        assert pos == len(data) == t["string_bytes"] and len(self.strings) == t["strings"]

    def label(self, code):
        k, p = code & sf.LABEL_KIND_MASK, code >> sf.LABEL_KIND_BITS
        labels = self.t["labels"]
        if k == sf.L_NONE:
            return ("none",)
        if k == sf.L_INDEX:
            return ("index", p)
        if k == sf.L_KEY:
            return ("key",)
        if k == sf.L_ITEM:
            return ("item", labels[p])
        if k == sf.L_ITEM_OPAQUE:
            return ("opaque", p)        # an object index: resolved by the caller
        return ({sf.L_ATTR: "attr", sf.L_LOCAL: "local"}[k], labels[p])

    def resolved(self, lab):
        if lab[0] == "opaque":
            return ("opaque", self.addrs[lab[1]])
        return lab

    def edge_set(self, i):
        return collections.Counter({(a, self.resolved(lab)): c
                                    for (a, lab), c in self.edges[i].items()})

    def parent_addr(self, i):
        p = self.parent[i]
        return self.addrs[p - 1] if p else None

    def site_frames(self, i):
        s = self.site[i]
        return self.t["sites"][s - 1] if s else None

    def first_unreached(self):
        for addr, kind, _, _ in self.roots:
            if kind == sf.ROOT_UNREACHED:
                return self.index[addr]
        return len(self.addrs)


def extra_labels(ver):
    """The labeled edges only the C walker makes (it reads fields PyWalker
    cannot read without creating objects), by the kind of their source."""
    code = set()
    if ver >= (3, 11):
        code |= {"co_localsplusnames", "co_localspluskinds", "co_code"}
    if ver >= (3, 12):
        code |= {"co_varnames", "co_cellvars", "co_freevars"}
    return {"code": code, "type": {"__subclasses__"}}


def compare(py, c, info):
    """Every difference between the two snapshots, minus the documented ones.
    Returns a list of unexplained differences (empty when equivalent).

    The check is exact: PyWalker's snapshot must be the C walker's with the
    C-only edges (extra_labels) taken out and the breadth-first walk redone
    from PyWalker's roots; objects only C has hang off a C-only edge or the
    permanent generation."""
    problems = []
    ver = tuple(info["python"])
    extras = extra_labels(ver)
    common = set(py.index) & set(c.index)
    only_py = set(py.index) - common
    only_c = set(c.index) - common
    permanent = set(info.get("permanent_ids", []))
    managed = set(info.get("managed_types", []))

    def is_extra(j, lab):
        return lab[0] == "attr" and lab[1] in extras.get(c.kind[j], ())

    def pywalker_drops(up, j):
        # 3.11-3.12: PyWalker takes the f_locals dict of a generator's frame
        # for one its own read made (the frame object's referents do not show
        # it; the generator's do) and ignores it: from there on only C has it.
        return ((3, 11) <= ver <= (3, 12) and c.type[j] == "dict" and c.plabel[j] == ("none",)
                and c.type[up] in ("generator", "coroutine", "async_generator")
                and c.addrs[j] not in common)

    # Objects only PyWalker has: none any more (it creates no object it walks).
    for a in only_py:
        i = py.index[a]
        pa = py.parent_addr(i)
        problems.append(f"py-only {py.type[i]} via {py.plabel[i]} from "
                        f"{py.type[py.index[pa]] if pa in py.index else None}")
    # Objects only the C walker has: under a C-only edge, or the permanent
    # generation (gc.freeze(); 3.12 freezes objects at start-up).
    for a in only_c:
        j = c.index[a]
        while c.parent[j]:
            up = c.parent[j] - 1
            if is_extra(up, c.plabel[j]) or pywalker_drops(up, j):
                break
            j = up
        else:
            if c.addrs[j] not in permanent:
                problems.append(f"c-only {c.type[c.index[a]]} under {c.type[j]} root, "
                                "not through a C-only edge nor in the permanent generation")

    stats = collections.Counter()
    for a in common:
        i, j = py.index[a], c.index[a]
        for what in ("type", "size", "length"):
            x, y = getattr(py, what)[i], getattr(c, what)[j]
            if x != y:
                problems.append(f"{what} of {py.type[i]} at {a:#x}: py {x} c {y}")
        if py.strings.get(a) != c.strings.get(a):
            problems.append(f"string data of {a:#x} differ")
        if py.site is not None and py.site_frames(i) != c.site_frames(j):
            # 3.11: tracemalloc._get_object_traceback misses objects with a
            # managed dict; the C walker looks their block up itself.
            if ver == (3, 11) and py.site_frames(i) is None and c.type[j] in managed:
                stats["sites_only_c"] += 1
            else:
                problems.append(f"allocation site of {py.type[i]} at {a:#x} differs")
        # Edges, in order: PyWalker's are the C walker's minus its extras.
        pe = [(t, py.resolved(lab)) for t, lab in py.elist[i]]
        ce = []
        for t, lab in c.elist[j]:
            if is_extra(j, lab):
                stats[lab[1]] += 1
            elif t in common:   # the C-only objects were checked above
                ce.append((t, c.resolved(lab)))
        if pe != ce:
            extra_py = collections.Counter(pe) - collections.Counter(ce)
            extra_c = collections.Counter(ce) - collections.Counter(pe)
            problems.append(f"edges of {py.type[i]} at {a:#x}: py-only {dict(extra_py)} "
                            f"c-only {dict(extra_c)}"
                            + ("" if extra_py or extra_c else " (order)"))

    # Breadth-first order: redo C's walk without its extra edges, from
    # PyWalker's roots phase by phase: PyWalker's order, parents and labels.
    order, seen, disc = [], {}, {}
    pos = 0

    def discover(a, via):
        if a not in seen:
            seen[a] = len(order)
            order.append(a)
            disc[a] = via

    def exhaust():
        nonlocal pos
        while pos < len(order):
            a = order[pos]
            j = c.index.get(a)
            if j is not None:
                for t, lab in c.elist[j]:
                    if not is_extra(j, lab) and t in common:
                        discover(t, (a, c.resolved(lab)))
            pos += 1

    prev_kind = None
    for a, kind, _, _ in py.roots:
        if kind != prev_kind or kind == sf.ROOT_UNREACHED:
            exhaust()
        prev_kind = kind
        discover(a, (None, ("none",)))
    exhaust()
    if order != py.addrs:
        k = next((k for k, (x, y) in enumerate(zip(order, py.addrs)) if x != y),
                 min(len(order), len(py.addrs)))
        problems.append(f"discovery order differs at object #{k} ({len(order)} redone, "
                        f"{len(py.addrs)} in PyWalker's)")
    else:
        for i, a in enumerate(py.addrs):
            if disc[a] != (py.parent_addr(i), py.resolved(py.plabel[i])):
                problems.append(f"discovering edge of {py.type[i]} at {a:#x} differs: "
                                f"py {py.parent_addr(i), py.plabel[i]} c {disc[a]}")
                break
    # Roots: PyWalker's, but for the unreached ones C reached by an extra
    # edge, and C's own unreached ones in the permanent generation; the
    # rest in the same order.
    py_roots, c_roots = set(py.roots), set(c.roots)
    for r in py.roots:
        if r not in c_roots:
            a = r[0]
            ok = r[1] == sf.ROOT_UNREACHED and a in c.index
            j = c.index.get(a)
            while ok and c.parent[j]:
                if is_extra(c.parent[j] - 1, c.plabel[j]):
                    break
                j = c.parent[j] - 1
            else:
                ok = False
            if not ok:
                problems.append(f"py-only root {r[1:]} of {py.type[py.index[a]]}")
    for r in c.roots:
        if r not in py_roots and not (r[1] == sf.ROOT_UNREACHED and r[0] in permanent):
            problems.append(f"c-only root {r[1:]} of {c.type[c.index[r[0]]]}")
    if [r for r in py.roots if r in c_roots] != [r for r in c.roots if r in py_roots]:
        problems.append("roots in a different order")
    # Tables: the labels C uses are PyWalker's too, or its extras'.
    used = set()
    for a in common:
        j = c.index[a]
        for (_, lab) in c.elist[j]:
            if lab[0] in ("item", "attr", "local") and not is_extra(j, lab):
                used.add(lab[1])
    used |= {r[2] for r in c.roots if r[0] in common} | {r[3] for r in c.roots if r[0] in common}
    if not used <= set(py.t["labels"]):
        problems.append(f"labels only C made: {sorted(used - set(py.t['labels']))[:10]}")
    types_py = set(py.t["types"])
    types_c = set(c.t["types"]) - {c.type[c.index[a]] for a in only_c}
    if types_c - types_py:
        problems.append(f"type tables differ: {sorted(types_c - types_py)[:10]}")
    for t in (py.t, c.t):
        assert len(t["types"]) == len(t["type_kinds"])
    kinds_py = dict(zip(py.t["types"], py.t["type_kinds"]))
    for name, kind in zip(c.t["types"], c.t["type_kinds"]):
        if name in kinds_py and kinds_py[name] != kind:
            problems.append(f"kind of {name}: py {kinds_py[name]} c {kind}")
    return problems, common, only_py, only_c, stats


def equivalence_run(python, tmp_path, *extra):
    info = run_helper(python, "equiv", tmp_path, *extra)
    py = Snap(os.path.join(tmp_path, "py.snap"))
    c = Snap(os.path.join(tmp_path, "c.snap"))
    assert py.t["meta"]["walker"] == "py" and c.t["meta"]["walker"] == "c"
    return info, py, c


# -------------------------------------------------------------------- tests

def test_same_snapshot_as_pywalker(python, tmp_path):
    info, py, c = equivalence_run(python, tmp_path)
    problems, common, only_py, only_c, stats = compare(py, c, info)
    assert not problems, "\n".join(problems[:40])
    assert len(common) > 10000 and not only_py
    # The C-only edges are there: code objects' locals tables and cached
    # attributes (the heap has code whose getters ran), types' subclasses.
    ver = tuple(info["python"])
    assert stats["__subclasses__"] > 20
    if ver >= (3, 11):
        assert stats["co_localsplusnames"] > 100 and stats["co_localspluskinds"] > 100
        assert stats["co_code"] > 0
    if ver >= (3, 12):
        assert stats["co_varnames"] > 0 and stats["co_cellvars"] > 0
    if ver == (3, 11):
        # tracemalloc's own lookup misses them; the C walker finds their site.
        assert stats["sites_only_c"] > 50
    # What the heap was built to exercise is there, labeled the same way.
    edges = collections.Counter()
    for j in range(len(c.addrs)):
        for (_, lab), k in c.edges[j].items():
            edges[lab[0]] += k
    for kind in ("index", "key", "item", "opaque", "attr", "local", "none"):
        assert edges[kind] > 0, kind
    names = set(c.t["labels"])
    for name in ("alpha", "beta", "gamma", "first", "second", "third", "x", "z",
                 "__cache__", "cell_contents", "f_back", "local_list", "thread_list",
                 "visible", "ok_name", "MAX2"):
        assert name in names, name
    for token in ("a8f5f167f44f4964e6c998dee827110c", "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                  "AuthorizationHeaderValue", "x-y"):
        assert token not in names, token
    kinds = dict(zip(c.t["types"], c.t["type_kinds"]))
    assert kinds["__main__.DictSub"] == "dict" and kinds["__main__.Slotted"] == "instance"
    assert kinds["collections.deque"] == "deque" and kinds["functools._lru_cache_wrapper"] == "lru_cache"
    assert kinds["frame"] == "frame" and kinds["cell"] == "cell"
    # The unreachable cycle is found, as an unreached root, by both.
    cyc = info["cycle_addr"]
    assert cyc in common
    for s in (py, c):
        root = s.index[cyc]
        while s.parent[root]:
            root = s.parent[root] - 1
        assert any(r[0] == s.addrs[root] and r[1] == sf.ROOT_UNREACHED for r in s.roots)
    # Thread roots (C capture) and the blocked thread's locals are roots.
    if tuple(info["python"]) < (3, 13):
        assert any(r[1] == sf.ROOT_THREAD for r in c.roots)
    assert any(r[1] == sf.ROOT_LOCAL and r[3] == "thread_list" for r in c.roots)
    assert any(r[1] == sf.ROOT_MODULE and r[2] == "__main__" for r in c.roots)
    # Strings: ascii, latin-1, ucs2, ucs4, a lone surrogate.
    datas = set(c.strings.values())
    for text in ("latin1 \xe9", "ucs2 \u20ac", "ucs4 \U0001f600", "lone \ud800"):
        assert text.encode("utf-8", "surrogatepass") in datas
    # Allocation sites (tracemalloc) are recorded.
    assert c.site is not None and any(c.site)


def test_permanent_generation(python, tmp_path):
    """gc.freeze() puts objects where gc.get_objects() does not look; the C
    walker walks them too (its only other difference from PyWalker here)."""
    info, py, c = equivalence_run(python, tmp_path, "freeze", "notrace")
    problems, common, only_py, only_c, stats = compare(py, c, info)
    assert not problems, "\n".join(problems[:40])
    frozen = info["frozen_addr"]
    assert frozen in c.index and frozen not in py.index
    assert frozen in set(info["permanent_ids"])


def test_inplace_walk_leaves_the_heap_alone(python):
    r = run_helper(python, "inplace")
    assert r["objects"] > 1000 and r["holder_in_snapshot"]
    assert r["after_count"] == r["before_count"], "the walk left objects behind"
    assert r["after_refs"] == r["before_refs"], "reference counts changed"
    if r["managed_dict_ptr"] is not None:
        assert r["managed_dict_ptr"] == 0, "an instance __dict__ was created"
    # Its attribute is labeled by name, read from the inline values (3.11+),
    # or its __dict__ (3.10), and its class is reached.
    if r["managed_dict_ptr"] is not None:
        assert ["value", True] in r["holder_labels"], r["holder_labels"]
    else:
        assert ["__dict__", False] in r["holder_labels"], r["holder_labels"]
    # The chunks waited in memory, compressed past 8 bytes an object, and
    # the walker's own memory (chunks included) stayed within 32 bytes an
    # object plus its fixed buffers (one chunk per column).
    assert r["raw_bytes"] > 20 << 20
    assert r["pending_bytes"] < r["raw_bytes"] / 2
    assert r["peak_bytes"] < 32 * r["objects"] + (8 << 20)
    assert r["gc_enabled_after"] is True
    assert r["switch_interval_restored"] is True
    # Chunks were deflated by worker threads; with none (the walk deflating
    # them itself, fork-child streaming) the snapshot reads back as well.
    assert r["compress_threads"] >= 1
    # Unreached objects (cycles in both young and old generations) are
    # rooted in the order of the gc's lists.
    assert r["unreached_roots"] > 500 and r["unreached_in_order"]
    assert r["small_threads"] == 0 and r["small_objects"] > 100


def test_fork_child_unshares_little(python):
    r = run_helper(python, "unshare", 1_000_000)
    parent_rss = r["parent"]["Rss"]
    before, after = r["child_before"], r["child_after"]
    dirtied = after["Private_Dirty"] - before["Private_Dirty"]
    unshared = before["Shared_Dirty"] - after["Shared_Dirty"]
    assert parent_rss > 50 << 20
    assert dirtied < 0.10 * parent_rss, (dirtied, parent_rss)
    assert unshared < 0.10 * parent_rss, (unshared, parent_rss)


def test_capture_matches_the_python_capture(python):
    """The C capture reads frames without materializing them or running
    PyFrame_FastToLocals, yet finds the same stack roots as the hook's Python
    capture (sys._current_frames and f_locals): in a class body, a running
    generator, cell and free variables, an argument kept in a cell."""
    r = run_helper(python, "capture")

    def split(roots):
        main = [x for x in roots if x[0].startswith("MainThread:")]
        return main, [x for x in roots if not x[0].startswith("MainThread:")]
    c_main, c_other = split(r["c"])
    p_main, p_other = split(r["py"])
    assert c_other == p_other
    assert len(c_other) > 20
    descs = " ".join(x[0] for x in c_other)
    for where in ("Body (", "gen (", "_blocked_with_cells (", "blocked_thread ("):
        assert where in descs, where
    names = {x[1] for x in c_other}
    assert {"gen_local", "shared", "arg", "thread_list"} <= names
    assert "<locals>" in names and "unbound_later" not in names
    # The main thread ran the two captures on different lines, with one more
    # local ('c') the second time.
    assert [x[1:] for x in c_main] == [x[1:] for x in p_main if x[1] != "c"]
    # Only frame objects that exist are listed (the Python capture makes them).
    assert r["c_frames_in_py"] and r["c_frames"] <= r["py_frames"]
    if r["c_threads"]:
        assert all(kind == "dict" for _, kind in r["c_threads"])


@pytest.mark.parametrize("no_libdeflate", ["", "1"])
def test_both_compressors_write_loadable_files(tmp_path, no_libdeflate):
    """The compiled walker deflates with libdeflate when the system has it and
    with zlib otherwise (or with MEMDIAG_NO_LIBDEFLATE=1): both paths write
    files whose every column inflates, checks out and holds the heap."""
    exe, why = python_with_walker(CURRENT)
    if exe is None:
        compiled_walker_missing("the compiled walker (memdiag._walker)")
    from memdiag.model import Snapshot
    code = ("import memdiag\n"
            "class Planted: pass\n"
            "KEEP = [Planted() for _ in range(20000)]\n"
            "NUMS = [i * 7919 for i in range(50000)]\n"
            "for mode in ('fork', 'inline'):\n"
            "    print(memdiag.dump(%r + '/' + mode + '.snap', mode=mode))\n") % str(tmp_path)
    env = _env()
    env["MEMDIAG_NO_LIBDEFLATE"] = no_libdeflate
    which = subprocess.run([exe, "-c", "import memdiag._walker as w; print(w.compressor())"],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    import ctypes.util
    if not no_libdeflate and ctypes.util.find_library("deflate") is None:
        pytest.skip("no libdeflate on this machine: the other case tests zlib")
    assert which.stdout.strip() == ("zlib" if no_libdeflate else "libdeflate"), which
    r = subprocess.run([exe, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    for path in r.stdout.split():
        snap = Snapshot.load(path)
        assert snap.meta["walker"] == "c"
        for col in range(sf.COL_ADDR, sf.COL_STR_DATA + 1):
            if snap._reader.has(col):
                snap.column(col)        # inflates, checks crc and values
        names = snap.type_names
        planted = names.index("__main__.Planted")
        assert int((snap.type == planted).sum()) == 20000
        keep = snap.path_of(int(snap.find_type("Planted")[0])).text()
        assert keep.startswith("__main__.KEEP["), keep
