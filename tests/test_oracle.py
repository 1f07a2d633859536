"""Independent oracles for what a snapshot contains (issue 2, "Done when": a
snapshot's per-type counts agree with guppy3's hpy().heap() on the same heap
within 1%).

One program builds a realistic heap, takes a memdiag snapshot, and then,
without changing the heap, asks guppy3 for hpy().heap() and objgraph for
typestats(). It compares the objects of both sides by address, so every
difference can be put in a category and explained.

What guppy's heap() is: the objects reachable from its RootState (every
interpreter's modules, sys and builtins dicts, every thread's frames and
state), after a gc.collect(), minus its own objects (those carrying its
hiding tag, and what is reachable only through them). It walks with each
type's tp_traverse, plus its own traversal for some types (code objects).

Differences that are by design, subtracted before comparing:
- guppy materializes instance __dict__s (3.11+) as it walks: the
  classifier asks for the dict pointer. Counted exactly: instances of
  managed-dict classes whose dict pointer (read with ctypes) was NULL before
  heap() and not after; their new dicts are taken out of guppy's count.
- guppy's own objects (its Use instance `h`, the Glue/Interface objects of
  its modules): guppy hides them, memdiag shows them. Subtracted from
  memdiag's side: objects guppy does not report whose retainer path starts
  in a guppy module or at `__main__.h`.
- memdiag's own objects: the snapshot leaves them out; guppy reports them.
  Subtracted from guppy's side: h.iso(memdiag modules).dominos.
- objects held only from C (memdiag's `<unreached ...>` roots: gc-tracked
  objects no Python root reaches): guppy's root does not reach them.
- str dict keys: CPython's dict tp_traverse skips str keys, so guppy does
  not see a str that only a dict key holds; memdiag reads keys.
- 3.10: the code object of a running frame (the main module's, with the
  code nested in it): guppy reaches it through the frame; memdiag never
  traverses a running frame (its locals are roots). Counted as "other",
  within the 1%.
- an object's type: memdiag follows ob_type (a `__class__` edge) to a type
  no other edge reached, such as a static metatype (`type(sys.float_info)`,
  ctypes' metatypes) with its dict and descriptors; guppy never follows
  ob_type. Subtracted from memdiag's side: objects guppy does not report
  whose retainer path goes through `.__class__`.
Code objects (not gc-tracked: gc.get_referents shows nothing inside them):
both walkers read their fields (WALK.md W4.8), the pure-Python one by address
for co_localsplusnames, co_localspluskinds and the cached co_code, so nothing
guppy finds inside a code object may be missing; test_walker_sees_inside_code_objects
checks it, and the subtraction below ("code") must stay empty.
"""

from __future__ import annotations

import sys

import pytest

from hookutil import expected_walker, run_program, walker_env

pytest.importorskip("guppy")
pytest.importorskip("objgraph")

PY = sys.version_info[:2]
WALKERS = ["python", "compiled"]

ORACLE = r"""
import ctypes, gc, json, sys, types
from guppy import hpy
import objgraph
import memdiag
from memdiag import hook

h = hpy()
h.heap()                    # guppy's one-time setup, before the heap under test exists
PY = sys.version_info[:2]
MANAGED = 1 << 4            # Py_TPFLAGS_MANAGED_DICT, 3.11+
WORD = ctypes.sizeof(ctypes.c_void_p)


def dict_ptr(o):
    # The managed-dict pointer, 3 words before the object (3.11-3.13); on
    # 3.12 that word holds the inline-values pointer instead, tagged bit 0.
    v = ctypes.c_ssize_t.from_address(id(o) - 3 * WORD).value
    return 0 if (PY == (3, 12) and v & 1) else v


def managed():
    if PY < (3, 11):
        return []
    return [o for o in gc.get_objects() if type(o).__flags__ & MANAGED]


# ---------------------------------------------------------- a realistic heap

class Customer:
    def __init__(self, i):
        self.id = i
        self.name = f"customer-{i}"
        self.tags = ("vip" if i % 7 == 0 else "std", i % 13)
        self.balance = i * 1.5


class Order:
    __slots__ = ("customer", "lines", "total")

    def __init__(self, customer, i):
        self.customer = customer
        self.lines = [(f"sku-{i % 700}", i % 5 + 1)]
        self.total = i * 2.25


class Event:
    def __init__(self, i):
        self.kind = "event"
        self.payload = {"seq": i, "ok": bool(i % 2), "note": f"n{i}"}


CUSTOMERS = [Customer(i) for i in range(6000)]
ORDERS = [Order(CUSTOMERS[i % 6000], i) for i in range(8000)]
EVENTS = [Event(i) for i in range(4000)]
for e in EVENTS[::2]:
    vars(e)                 # half of them with a real __dict__ (3.11+)
BY_NAME = {c.name: c for c in CUSTOMERS}
SQUARES = {i: i * i for i in range(3000, 6000)}
BLOBS = [bytes(range(i % 200)) + b"!" for i in range(2000)]
WORDS = frozenset(f"w{i}" for i in range(1500))

dict_ptr(CUSTOMERS[0])      # ctypes' own caches exist before the snapshot
gc.collect()
gc.disable()
no_dict = {id(o) for o in managed() if not dict_ptr(o)}

path = hook.dump(mode=sys.argv[1])

heap = h.heap()             # the same heap: nothing ran in between but the hook
materialized = set()        # dicts guppy's walk created
for o in managed():
    if id(o) in no_dict and dict_ptr(o):
        materialized.add(dict_ptr(o))
own = [m for n, m in sys.modules.items() if n == "memdiag" or n.startswith("memdiag.")]
mine = h.iso(*own).dominos  # memdiag's own objects
heap = heap - mine

from memdiag.walker import type_name
guppy = {id(o): type_name(type(o)) for o in heap.nodes}
mine_ids = {id(o) for o in mine.nodes}
og = objgraph.typestats(objects=[o for o in gc.get_objects() if id(o) not in mine_ids],
                        shortnames=False)

from memdiag.analysis.paths import retainer_path
from memdiag.model import Snapshot
from memdiag import snapfile as sf
s = Snapshot.load(path)
addr = s.addr.tolist()
names = s.type_names
types_ = s.type.tolist()
M = {a: names[t] for a, t in zip(addr, types_)}
index = {a: i for i, a in enumerate(addr)}
roots = s.roots_by_object()
parent = s.parent.tolist()
plabel = s.plabel.tolist()

def root_of(i):
    while parent[i]:
        i = parent[i] - 1
    return i

only_m = {}
examples_m = {}
for a, t in M.items():
    if a in guppy:
        continue
    i = index[a]
    kind = roots.get(root_of(i), (sf.ROOT_UNREACHED,))[0]
    text = retainer_path(s, i).text()
    if kind == sf.ROOT_UNREACHED:
        why = "unreached"
    elif text.startswith(("guppy", "__main__.h.", "__main__.h→")) or text == "__main__.h":
        why = "guppy"
    elif plabel[i] & sf.LABEL_KIND_MASK == sf.L_KEY and t == "str":
        why = "key"
    elif ".__class__" in text:
        why = "class"
    else:
        why = "other"
        if len(examples_m.setdefault(t, [])) < 4:
            examples_m[t].append(text)
    only_m.setdefault(t, {}).setdefault(why, 0)
    only_m[t][why] += 1

# Objects memdiag misses that hang off code objects both sides see.
missing = h.idset([o for o in heap.nodes if id(o) not in M])
codes = (heap & h.Type(types.CodeType)) - missing
inside = codes.referents & missing
frontier = inside
while frontier:
    frontier = (frontier.referents & missing) - inside
    inside = inside | frontier
inside_ids = {id(o) for o in inside.nodes}
# What the pure-Python walker reads of code objects both sides have: those
# fields' objects must all be in the snapshot.
from memdiag.walker import _CODE_FIELDS
code_fields_missing = {}
for co in codes.nodes:
    if id(co) not in M:
        continue
    for f in _CODE_FIELDS:
        v = getattr(co, f)
        if v is not None and id(v) not in M:
            code_fields_missing[f] = code_fields_missing.get(f, 0) + 1

only_g = {}
examples = {}
for a, t in guppy.items():
    if a in M:
        continue
    if a in materialized:
        why = "materialized"
    elif a in inside_ids:
        why = "code"
    else:
        why = "other"
        examples.setdefault(t, []).append(a)
    only_g.setdefault(t, {}).setdefault(why, 0)
    only_g[t][why] += 1

count_m, count_g = {}, {}
for t in M.values():
    count_m[t] = count_m.get(t, 0) + 1
for t in guppy.values():
    count_g[t] = count_g.get(t, 0) + 1
tracked = {}
for o in gc.get_objects():
    t = type_name(type(o))
    tracked[t] = tracked.get(t, 0) + 1
print("RESULT " + json.dumps({
    "memdiag": count_m, "guppy": count_g, "only_m": only_m, "only_g": only_g,
    "objgraph": {k.removeprefix("builtins."): v for k, v in og.items()},
    "materialized": len(materialized), "walker": s.meta["walker"],
    "code_fields_missing": code_fields_missing,
    "examples_m": examples_m,
    "examples_g": {t: [repr(o)[:80] for o in heap.nodes if id(o) in set(v[:3])]
                   for t, v in examples.items()},
}))
"""


_RESULTS = {}


@pytest.fixture
def oracle(tmp_path_factory):
    """oracle(walker) -> the program's RESULT, one run per walker per session."""
    def run(walker, mode="fork"):
        env = walker_env(walker)
        if (walker, mode) not in _RESULTS:
            d = tmp_path_factory.mktemp(f"oracle-{walker}-{mode}")
            _RESULTS[walker, mode] = run_program(ORACLE, mode, env=env, tmp_path=d,
                                                 timeout=240)
        r = _RESULTS[walker, mode]
        assert r["walker"] == expected_walker(walker)
        return r
    return run


def adjusted(r, t):
    """(memdiag, guppy) counts of type t with the by-design differences taken out."""
    om = r["only_m"].get(t, {})
    og = r["only_g"].get(t, {})
    m = r["memdiag"].get(t, 0) - sum(om.get(k, 0) for k in ("guppy", "unreached", "key", "class"))
    g = r["guppy"].get(t, 0) - og.get("materialized", 0) - og.get("code", 0)
    return m, g


def table(r, types):
    rows = []
    for t in types:
        m, g = adjusted(r, t)
        rows.append(f"{t:28s} memdiag {r['memdiag'].get(t, 0):7d} guppy "
                    f"{r['guppy'].get(t, 0):7d} | adjusted {m:7d} {g:7d} "
                    f"({100 * (m - g) / max(m, g, 1):+.2f}%)  only memdiag "
                    f"{r['only_m'].get(t, {})} only guppy {r['only_g'].get(t, {})}")
    return "\n".join(rows)


@pytest.mark.parametrize("walker", WALKERS)
def test_per_type_counts_agree_with_guppy_within_one_percent(oracle, walker):
    r = oracle(walker)
    big = sorted(t for t in set(r["memdiag"]) | set(r["guppy"])
                 if max(r["memdiag"].get(t, 0), r["guppy"].get(t, 0)) >= 500)
    # The heap under test is there, on both sides.
    for t in ("__main__.Customer", "__main__.Order", "__main__.Event", "str", "int",
              "tuple", "dict", "list", "float", "bytes"):
        assert t in big, (t, big)
    assert r["memdiag"]["__main__.Customer"] == r["guppy"]["__main__.Customer"] == 6000
    if PY >= (3, 11):
        # guppy made a dict for every Customer and for each Event that had none.
        assert r["materialized"] >= 6000 + 2000
    # WALK.md W4.13: 3.13's tp_traverse does not show an instance __dict__
    # made while its inline values stay valid; both walkers read it.
    known = set()
    bad = []
    for t in big:
        m, g = adjusted(r, t)
        if abs(m - g) > max(m, g) / 100:
            bad.append(t)
    report = table(r, big)
    print(report)
    assert not [t for t in bad if t not in known], report
    if bad:
        pytest.xfail(f"known walker gap on this Python: {bad}\n{report}")


@pytest.mark.parametrize("walker", WALKERS)
def test_walker_sees_inside_code_objects(oracle, walker):
    """WALK.md W4.8: code objects are not gc-tracked, gc.get_referents shows
    nothing inside them. Both walkers read all their fields (the pure-Python
    one the locals tables and cached co_code by address, as the hook enables
    it): nothing guppy finds inside a code object is missing. (Before the
    pure-Python walker read them, guppy found the co_localsplus* tuples and
    bytes only: 3.11, 6% of its objects.)"""
    r = oracle(walker)
    assert r["code_fields_missing"] == {}, r["code_fields_missing"]
    inside = {t: w["code"] for t, w in r["only_g"].items() if w.get("code")}
    assert inside == {}, inside


@pytest.mark.parametrize("walker", WALKERS)
def test_gc_tracked_type_counts_agree_with_objgraph(oracle, walker):
    """objgraph.typestats() counts gc.get_objects(): compare the types with
    500 objects or more whose objects are always gc-tracked (dicts and tuples
    are untracked when they hold only atoms, static types never are)."""
    r = oracle(walker)
    for t in ("__main__.Customer", "__main__.Order", "__main__.Event", "list", "function"):
        m, o = r["memdiag"].get(t, 0), r["objgraph"].get(t, 0)
        assert o >= 500 and abs(m - o) <= max(m, o) / 100, (t, m, o)
