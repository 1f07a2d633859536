"""The compiled walker (memdiag._walker, from memdiag/_native/) against the
pure-Python one (memdiag/walker.py); both implement docs/WALK.md, whose
clauses (W2.1...) the tests cite.

Every test runs real interpreters on real heaps (tests/walker_helpers/
heapcheck.py). The interpreter running pytest is tested in every run; the
other Pythons 3.11-3.15 found on this machine are `slow` cases (make
test-slow). The interpreter running pytest must have memdiag._walker built
(tests/needs.py: else the tests fail, or skip with MEMDIAG_ALLOW_PURE=1);
another version is skipped when it has no interpreter or no build
(`pythonX.Y setup.py build_ext --inplace`; make test-all builds each).

Equivalence (WALK.md W11.1): the helper builds a varied heap, captures the
stacks with the C capture, then forks two children with identical heaps
(fork(2) without Python's at-fork handlers); one writes a snapshot with
PyWalker (pointer reads enabled, as the hook does), the other with the C
walker, both as in a fork child (may_materialize=True). The check is exact:
the same objects (by address) in the same order, with the same parents,
discovering labels, edges in order, types, kinds, sizes, lengths, strings,
allocation sites and roots. Nothing is excused: the code-object and type
fields PyWalker reads by address (W4.8, W4.9), the permanent generation it
joins to the oldest one in a fork child (W2.6), the generator frames' f_locals
dicts (W4.11) and the 3.11 allocation sites (W10.2) were once differences.

The differences that remain are the ones PyWalker has in the live target
(may_materialize=False, the hook's inline mode, W11.2-W11.4) and in the
pure-Python capture (W11.5, W11.6); tests/test_hook.py covers those.
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
VERSIONS = ["3.11", "3.12", "3.13", "3.14", "3.15"]   # what memdiag/_native/compat.h supports
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
    # else what `make test` finds (scripts/find-python: it may unpack Debian's build)
    try:
        r = subprocess.run([os.path.join(ROOT, "scripts", "find-python"), ver],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return
    if r.returncode == 0 and r.stdout.strip():
        yield r.stdout.strip()


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


def compare(py, c):
    """Every difference between the two snapshots, as readable lines (empty
    when they are the same snapshot, WALK.md W11.1)."""
    problems = []

    def where(s, i):
        up = s.parent[i] - 1
        return (f"{s.type[i]} #{i} via {s.plabel[i]} from "
                f"{s.type[up] if up >= 0 else 'a root'}")

    if py.addrs != c.addrs:
        only_py, only_c = set(py.index) - set(c.index), set(c.index) - set(py.index)
        for a in list(only_py)[:10]:
            problems.append("py-only " + where(py, py.index[a]))
        for a in list(only_c)[:10]:
            problems.append("c-only " + where(c, c.index[a]))
        k = next((k for k, (x, y) in enumerate(zip(py.addrs, c.addrs)) if x != y),
                 min(len(py.addrs), len(c.addrs)))
        problems.append(f"{len(py.addrs)} objects in PyWalker's, {len(c.addrs)} in C's; "
                        f"order differs from #{k}")
        return problems
    for i, a in enumerate(py.addrs):
        for what in ("type", "kind", "size", "length", "parent"):
            x, y = getattr(py, what)[i], getattr(c, what)[i]
            if x != y:
                problems.append(f"{what} of {where(py, i)}: py {x} c {y}")
        if py.resolved(py.plabel[i]) != c.resolved(c.plabel[i]):
            problems.append(f"discovering label of {where(py, i)}: c {c.plabel[i]}")
        if py.strings.get(a) != c.strings.get(a):
            problems.append(f"string data of {where(py, i)} differ")
        if (py.site is None) != (c.site is None) or (
                py.site is not None and py.site_frames(i) != c.site_frames(i)):
            problems.append(f"allocation site of {where(py, i)} differs")
        pe = [(t, py.resolved(lab)) for t, lab in py.elist[i]]
        ce = [(t, c.resolved(lab)) for t, lab in c.elist[i]]
        if pe != ce:
            extra_py = collections.Counter(pe) - collections.Counter(ce)
            extra_c = collections.Counter(ce) - collections.Counter(pe)
            problems.append(f"edges of {where(py, i)}: py-only {dict(extra_py)} "
                            f"c-only {dict(extra_c)}"
                            + ("" if extra_py or extra_c else " (order)"))
        if len(problems) > 40:
            break
    if py.roots != c.roots:
        problems.append(f"roots differ: py-only {sorted(set(py.roots) - set(c.roots))[:5]} "
                        f"c-only {sorted(set(c.roots) - set(py.roots))[:5]}")
    for key in ("types", "type_kinds", "strings", "string_bytes", "objects", "edges",
                "roots", "python_heap", "bounds"):
        if py.t.get(key) != c.t.get(key):
            problems.append(f"trailer {key} differs")
    return problems


def equivalence_run(python, tmp_path, *extra):
    info = run_helper(python, "equiv", tmp_path, *extra)
    py = Snap(os.path.join(tmp_path, "py.snap"))
    c = Snap(os.path.join(tmp_path, "c.snap"))
    assert py.t["meta"]["walker"] == "py" and c.t["meta"]["walker"] == "c"
    return info, py, c


# -------------------------------------------------------------------- tests

def test_same_snapshot_as_pywalker(python, tmp_path):
    """WALK.md W11.1 (and through it W2-W10): in a fork child, PyWalker with
    its pointer reads and the C walker write the same snapshot."""
    info, py, c = equivalence_run(python, tmp_path)
    assert all(info["pointer_reads"].values()), info["pointer_reads"]
    problems = compare(py, c)
    assert not problems, "\n".join(problems[:40])
    assert len(py.addrs) > 10000
    # W2.5: the interpreter's table of interned strs, a tracked dict from 3.14
    # on, is no unreached root (every interned str would be a label).
    ver = tuple(info["python"])
    assert (info["interned_table"] != 0) == (ver >= (3, 14))
    assert info["interned_table"] not in py.index and info["interned_table"] not in c.index
    # W4.8, W4.9: the fields read by address are there: code objects' locals
    # tables and cached attributes (the heap has code whose getters ran),
    # types' subclasses. (3.11 before they were read: PyWalker had 9% fewer
    # objects, the tuples, bytes and strs only co_localsplus* hold.)
    attrs = collections.Counter(lab[1] for es in py.elist for _, lab in es if lab[0] == "attr")
    assert attrs["__subclasses__"] > 20
    assert attrs["co_localsplusnames"] > 100 and attrs["co_localspluskinds"] > 100
    assert attrs["co_code"] > 0
    if ver >= (3, 12):
        assert attrs["co_varnames"] > 0 and attrs["co_cellvars"] > 0
    # W10.2: every object has its allocation site, managed-dict instances
    # included (3.11's tracemalloc lookup misses those).
    managed = set(info["managed_types"])
    sited = [py.site_frames(i) is not None for i in range(len(py.addrs))
             if py.type[i] in managed and py.type[i].startswith("__main__.")]
    assert len(sited) > 50 and all(sited)
    # W4.11 (3.11-3.12): a generator frame's existing f_locals dict is walked.
    gen_dicts = [i for i in range(len(py.addrs)) if py.type[i] == "dict"
                 and py.parent[i] and py.type[py.parent[i] - 1] == "generator"]
    if ver <= (3, 12):
        assert gen_dicts
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
    # W5.2: keys that are not names are never written; run-time keys that are
    # (a dunder, a name the program's code spells) are.
    for token in ("a8f5f167f44f4964e6c998dee827110c", "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                  "AuthorizationHeaderValue", "x-y", "on_stop_xyz", "___"):
        assert token not in names, token
    for name in ("__warningregistry__", "__custom_registry__", "on_start", "on_connect"):
        assert name in names, name
    # W10.3: bounds (a deque's, lru_cache wrappers', cache attributes) were
    # compared above; the heap has each kind.
    assert len(c.t["bounds"]) >= 5
    kinds = dict(zip(c.t["types"], c.t["type_kinds"]))
    assert kinds["__main__.DictSub"] == "dict" and kinds["__main__.Slotted"] == "instance"
    assert kinds["collections.deque"] == "deque" and kinds["functools._lru_cache_wrapper"] == "lru_cache"
    assert kinds["frame"] == "frame" and kinds["cell"] == "cell"
    # W2.5: the unreachable cycle is found, as an unreached root.
    root = c.index[info["cycle_addr"]]
    while c.parent[root]:
        root = c.parent[root] - 1
    assert any(r[0] == c.addrs[root] and r[1] == sf.ROOT_UNREACHED for r in c.roots)
    # W2.3, W2.2: thread roots (C capture) and the blocked thread's locals.
    if ver < (3, 13):
        assert any(r[1] == sf.ROOT_THREAD for r in c.roots)
    assert any(r[1] == sf.ROOT_LOCAL and r[3] == "thread_list" for r in c.roots)
    assert any(r[1] == sf.ROOT_MODULE and r[2] == "__main__" for r in c.roots)
    # W10.1: strings: ascii, latin-1, ucs2, ucs4, a lone surrogate.
    datas = set(c.strings.values())
    for text in ("latin1 \xe9", "ucs2 \u20ac", "ucs4 \U0001f600", "lone \ud800"):
        assert text.encode("utf-8", "surrogatepass") in datas
    # W10.2: allocation sites (tracemalloc) are recorded.
    assert c.site is not None and any(c.site)


def test_permanent_generation(python, tmp_path):
    """WALK.md W2.6: gc.freeze() puts objects where gc.get_objects() does not
    look; the C walker reads the permanent generation's list after the
    others, PyWalker in a fork child joins it to the oldest generation
    (gc.unfreeze()) before it lists them: the same snapshot."""
    info, py, c = equivalence_run(python, tmp_path, "freeze", "notrace")
    problems = compare(py, c)
    assert not problems, "\n".join(problems[:40])
    frozen = info["frozen_addr"]
    assert frozen in set(info["permanent_ids"])
    i = py.index[frozen]
    while py.parent[i]:
        i = py.parent[i] - 1
    assert (py.addrs[i], sf.ROOT_UNREACHED, "", "") in py.roots


def test_inplace_walk_leaves_the_heap_alone(python):
    """WALK.md W1.2 (the C walk in the live process: nothing made, no
    reference count changed), W2.5 (unreached roots in the gc lists' order)."""
    r = run_helper(python, "inplace")
    assert r["objects"] > 1000 and r["holder_in_snapshot"]
    assert r["after_count"] == r["before_count"], "the walk left objects behind"
    assert r["after_refs"] == r["before_refs"], "reference counts changed"
    assert r["managed_dict_ptr"] == 0, "an instance __dict__ was created"
    # Its attribute is labeled by name, read from the inline values, and its
    # class is reached.
    assert ["value", True] in r["holder_labels"], r["holder_labels"]
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
    # rooted in the order of the gc's lists. About 340 of the helper's
    # garbage cycles survive its collection half way; the other unreached
    # objects vary with what the interpreter imported (the ast node types are
    # unreached until some module, the hook's dataclasses included, imports ast).
    assert r["unreached_roots"] > 300 and r["unreached_in_order"]
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
    """WALK.md W2.2, W11.6. The C capture reads frames without materializing them or running
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


# What a walk deflated with (its stats say), printed by a small walk.
WALK_COMPRESSOR = """\
import io, memdiag._walker as w, memdiag.snapfile as sf
wr = sf.Writer(io.BytesIO())
print(w.walk(wr, [], [], [], [wr.__dict__], [], False, False, True)["stats"]["compressor"])
"""


@pytest.mark.parametrize("no_libdeflate", ["", "1"])
def test_both_compressors_write_loadable_files(tmp_path, no_libdeflate):
    """The compiled walker deflates with libdeflate when the system has it and
    with zlib otherwise (or with MEMDIAG_NO_LIBDEFLATE=1): both paths write
    files whose every column inflates, checks out and holds the heap."""
    exe, why = python_with_walker(CURRENT)
    if exe is None:
        compiled_walker_missing("the compiled walker (memdiag._walker)")
    from memdiag.analysis.paths import retainer_path
    from memdiag.model import Snapshot
    code = ("import memdiag\n"
            "class Planted: pass\n"
            "KEEP = [Planted() for _ in range(20000)]\n"
            "NUMS = [i * 7919 for i in range(50000)]\n"
            "for mode in ('fork', 'inline'):\n"
            "    print(memdiag.dump(%r + '/' + mode + '.snap', mode=mode))\n") % str(tmp_path)
    env = _env()
    env["MEMDIAG_NO_LIBDEFLATE"] = no_libdeflate
    which = subprocess.run([exe, "-c", WALK_COMPRESSOR], capture_output=True, text=True,
                           cwd=ROOT, env=env, timeout=60)
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
        keep = retainer_path(snap, snap.find_type("Planted")[0]).text()
        assert keep.startswith("__main__.KEEP["), keep
