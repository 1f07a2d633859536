"""The compiled walker (memdiag/_walker.c) against the specification, PyWalker.

Every test runs real interpreters on real heaps (tests/walker_helpers/
heapcheck.py), for each Python 3.10-3.13 found on this machine; a version is
skipped when it has no interpreter or when memdiag._walker is not built for it
(`pythonX.Y setup.py build_ext --inplace`).

Equivalence: the helper builds a varied heap, captures the stacks with the C
capture, then forks two children with identical heaps (fork(2) without
Python's at-fork handlers); one writes a snapshot with PyWalker, the other with
the C walker, both as in a fork child (may_materialize=True). Objects are
matched by address. The differences allowed are the documented ones, each
checked to be exactly that:

- PyWalker reads every member descriptor of a heap type (C types are heap
  types on 3.12+, and some on 3.10/3.11) with __get__, so int/bool members
  such as re.Pattern.flags become edges to int objects, some of them made by
  that read (objects only PyWalker has); a NULL T_OBJECT member becomes an
  edge to None. The C walker follows object members only.
- PyWalker's __dict__ getter makes a dict for an instance that has none
  (functools.partial), and f_locals makes one for a frame (3.10-3.12): new
  empty or copied dicts that only PyWalker's snapshot has.
- The C walker also walks the gc's permanent generation (gc.freeze(); 3.12
  freezes objects at start-up): objects only it has, under "unreached" roots.
- 3.13: an instance whose __dict__ was made while its inline values stay valid:
  tp_traverse shows the values, not the dict; PyWalker ignores that dict (and
  so the strings only it reaches), the C walker gives it a __dict__ edge.

Not exercised here because the helper avoids them: PyWalker does not ignore
the `ignore` list it is given (the C walker ignores all its argument lists),
and it labels frame locals and inline values only in a fork child (the C
walker always does, read-only).
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

HELPER = os.path.join(ROOT, "tests", "walker_helpers", "heapcheck.py")
VERSIONS = ["3.10", "3.11", "3.12", "3.13"]
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


@pytest.fixture(params=VERSIONS)
def python(request):
    exe, why = python_with_walker(request.param)
    if exe is None:
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
        self.edges = []
        pos = 0
        for i in range(n):
            k = nedges[i]
            self.edges.append(collections.Counter(
                (addrs[et[j]], self.label(el[j])) for j in range(pos, pos + k)))
            pos += k
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


def compare(py, c, info):
    """Every difference between the two snapshots, minus the documented ones.
    Returns a list of unexplained differences (empty when equivalent)."""
    problems = []
    common = set(py.index) & set(c.index)
    only_py = set(py.index) - common
    only_c = set(c.index) - common
    permanent = set(info.get("permanent_ids", []))
    mat_dict = info.get("materialized_dict_addr") if tuple(info["python"]) >= (3, 13) else None

    # Objects only PyWalker has: made by its own reads (see the module doc).
    for a in only_py:
        i = py.index[a]
        pa = py.parent_addr(i)
        lab = py.plabel[i]
        if pa not in common:
            problems.append(f"py-only {py.type[i]} not under a common object")
        elif lab == ("none",) and py.type[i] == "dict":
            pass        # a __dict__ or f_locals PyWalker's read made
        elif lab[0] == "attr" and py.type[i] in SCALARS:
            pass        # an int/bool member read as a value
        else:
            problems.append(f"py-only {py.type[i]} via {lab} from {py.type[py.index[pa]]}")
    # Objects only the C walker has: the permanent generation; 3.13's dict.
    for a in only_c:
        top = c.index[a]
        while c.parent[top] and c.addrs[c.parent[top] - 1] in only_c:
            top = c.parent[top] - 1
        ta = c.addrs[top]
        if c.parent[top] == 0 and ta in permanent:
            continue
        if mat_dict is not None and ta == mat_dict:
            continue
        problems.append(f"c-only {c.type[c.index[a]]} under {c.type[top]} "
                        f"{c.plabel[top]} (not in the permanent generation)")

    for a in common:
        i, j = py.index[a], c.index[a]
        for what in ("type", "size", "length"):
            x, y = getattr(py, what)[i], getattr(c, what)[j]
            if x != y:
                problems.append(f"{what} of {py.type[i]} at {a:#x}: py {x} c {y}")
        if py.strings.get(a) != c.strings.get(a):
            problems.append(f"string data of {a:#x} differ")
        if py.site is not None and py.site_frames(i) != c.site_frames(j):
            problems.append(f"allocation site of {py.type[i]} at {a:#x} differs")
        pe = collections.Counter({k: v for k, v in py.edge_set(i).items() if k[0] in common})
        ce = collections.Counter({k: v for k, v in c.edge_set(j).items() if k[0] in common})
        if pe != ce:
            extra_py, extra_c = pe - ce, ce - pe
            bad_py = {k: v for k, v in extra_py.items()
                      if not (k[1][0] == "attr" and py.type[py.index[k[0]]] in SCALARS)}
            if bad_py or extra_c:
                problems.append(f"edges of {py.type[i]} at {a:#x}: py-only {dict(bad_py)} "
                                f"c-only {dict(extra_c)}")

    # Roots: the same for common objects; C's extra ones are permanent.
    pr = collections.Counter(r for r in py.roots if r[0] in common)
    cr = collections.Counter(r for r in c.roots if r[0] in common)
    if pr != cr:
        problems.append(f"roots differ: py-only {list((pr - cr).elements())[:5]} "
                        f"c-only {list((cr - pr).elements())[:5]}")
    # Breadth-first order, parent and label of discovery through phases 1-3.
    po = [a for a in py.addrs[:py.first_unreached()] if a in common]
    co = [a for a in c.addrs[:c.first_unreached()] if a in common]
    if po != co:
        k = next((k for k, (x, y) in enumerate(zip(po, co)) if x != y), min(len(po), len(co)))
        problems.append(f"discovery order differs at common object #{k} "
                        f"({len(po)} vs {len(co)} before the unreached phase)")
    else:
        for a in po:
            i, j = py.index[a], c.index[a]
            if (py.parent_addr(i), py.resolved(py.plabel[i])) != (
                    c.parent_addr(j), c.resolved(c.plabel[j])):
                problems.append(f"discovering edge of {py.type[i]} at {a:#x} differs")
                break
    # Tables: the labels C uses for common objects are PyWalker's too.
    used = set()
    for a in common:
        for (_, lab) in c.edges[c.index[a]]:
            if lab[0] in ("item", "attr", "local"):
                used.add(lab[1])
    used |= {r[2] for r in c.roots if r[0] in common} | {r[3] for r in c.roots if r[0] in common}
    if not used <= set(py.t["labels"]):
        problems.append(f"labels only C made: {sorted(used - set(py.t['labels']))[:10]}")
    types_py = set(py.t["types"]) - {py.type[py.index[a]] for a in only_py}
    types_c = set(c.t["types"]) - {c.type[c.index[a]] for a in only_c}
    if types_py - set(c.t["types"]) or types_c - set(py.t["types"]):
        problems.append(f"type tables differ: {sorted(types_py ^ types_c)[:10]}")
    for t in (py.t, c.t):
        assert len(t["types"]) == len(t["type_kinds"])
    kinds_py = dict(zip(py.t["types"], py.t["type_kinds"]))
    for name, kind in zip(c.t["types"], c.t["type_kinds"]):
        if name in kinds_py and kinds_py[name] != kind:
            problems.append(f"kind of {name}: py {kinds_py[name]} c {kind}")
    return problems, common, only_py, only_c


def equivalence_run(python, tmp_path, *extra):
    info = run_helper(python, "equiv", tmp_path, *extra)
    py = Snap(os.path.join(tmp_path, "py.snap"))
    c = Snap(os.path.join(tmp_path, "c.snap"))
    assert py.t["meta"]["walker"] == "py" and c.t["meta"]["walker"] == "c"
    return info, py, c


# -------------------------------------------------------------------- tests

def test_same_snapshot_as_pywalker(python, tmp_path):
    info, py, c = equivalence_run(python, tmp_path)
    problems, common, only_py, only_c = compare(py, c, info)
    assert not problems, "\n".join(problems[:40])
    # The differences stay small: a handful of objects on this heap.
    assert len(common) > 10000
    assert len(only_py) < 50 and len(only_c) < 50 + len(info["permanent_ids"])
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
    info, py, c = equivalence_run(python, tmp_path, "freeze")
    problems, common, only_py, only_c = compare(py, c, info)
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
