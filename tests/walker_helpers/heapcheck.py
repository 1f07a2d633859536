"""Test helper for tests/test_walker_c.py and tests/test_walker_py.py, run as
a script under any Python 3.11+. The heap it builds exercises the clauses of
docs/WALK.md (W4: every kind of edge and label; W2: every kind of root; W6:
sizes, a __sizeof__ written in Python and one that is a staticmethod).

    python heapcheck.py equiv OUTDIR [freeze] [notrace]
                                               # one snapshot per walker, same heap
    python heapcheck.py pure OUTDIR            # PyWalker alone (any Python 3.11+):
                                               # fork child and in-process snapshots
    python heapcheck.py noreads OUTDIR         # the same, without reads by address
    python heapcheck.py inplace                # the C walk leaves the heap alone
    python heapcheck.py capture                # C capture against the Python one
    python heapcheck.py unshare N              # pages a forked C walk dirties
    python heapcheck.py bench N [guppy] [py]   # timings (not a test; for reports)

Each mode prints one JSON object on its last stdout line.
"""

import collections
import functools
import gc
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from memdiag import hook, hook_capture, hook_walk, snapfile  # noqa: E402
from memdiag import walker, walker_reads  # noqa: E402
from memdiag.walker import PyWalker, type_name  # noqa: E402

try:
    from memdiag import _walker
except ImportError:  # pragma: no cover - reported to the test
    _walker = None

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "native"))
import walkertest  # noqa: E402  (test-only entry points: permanent_generation_ids)

PY = sys.version_info[:2]


# ------------------------------------------------------------------ the heap

class Plain:
    def __init__(self, i):
        self.alpha = i
        self.beta = str(i)
        self.gamma = [i, i + 1]


class Reordered:
    pass


class Slotted:
    __slots__ = ("x", "y", "__weakref__")


class SlottedDict(Slotted):
    __slots__ = ("z", "__dict__")


class DictSub(dict):
    pass


class ListSub(list):
    pass


class TupleSub(tuple):
    pass


class StrSub(str):
    pass


class IntSub(int):
    pass


class PySizeof:
    def __init__(self):
        self.payload = list(range(3))

    def __sizeof__(self):
        return 12345


PROGRAM_CODE_CALLS = []     # code of "the program" a walk must never run (W1.2)


class StaticSizeof:
    # Not a plain function, yet Python code all the same: never called (W6.1).
    __sizeof__ = staticmethod(lambda: PROGRAM_CODE_CALLS.append("__sizeof__") or 7)


class SlotsIterable:
    def __iter__(self):
        PROGRAM_CODE_CALLS.append("__slots__ iteration")
        return iter(("odd",))


class Meta(type):
    pass


class WithMeta(metaclass=Meta):
    attr = "meta"


class Materialized:
    pass


class FrozenGarbage:
    pass


class CycleGarbage:
    pass


@functools.lru_cache(maxsize=None)
def cached(x, y=1):
    return (x, y, "cached")


@functools.lru_cache(maxsize=64)
def bounded_cached(x):
    return [x]


class BoundedCache:
    """cachetools' Cache keeps its bound as a private attribute (W10.3)."""

    def __init__(self, maxsize):
        self.__data = {}
        self.__maxsize = maxsize


class SlottedBound:
    __slots__ = ("maxlen", "items")


class DequeSub(collections.deque):
    pass


def make_closure(n):
    counter = [n]
    label = f"closure-{n}"

    def inner():
        counter[0] += 1
        return label, counter
    return inner


def generator(n):
    local_list = [n, n * 2]
    local_str = "gen-local-" + str(n)
    shared = {"n": n}

    def uses_shared():
        return shared
    yield local_list
    yield local_str, uses_shared


def never_started(a, b):
    yield a + b


class Handlers:
    """Its method names are program text (W5.2)."""

    def on_start(self):
        return self


def dispatch(handlers):
    return handlers.on_connect      # "on_connect": in this code's co_names


# A module whose function warned: the interpreter gives its globals a
# __warningregistry__ key (3.11: not interned; a dunder, so written, W5.2).
WARNING_SOURCE = """
import warnings

def warn_once():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.warn("a warning", UserWarning)
"""


def warned_module():
    import types
    mod = types.ModuleType("heapcheck_warned")
    exec(WARNING_SOURCE, mod.__dict__)
    mod.warn_once()
    sys.modules[mod.__name__] = mod
    return mod


LOCAL = threading.local()
HEAP = {}


def blocked_thread(event, ready):
    thread_list = ["thread", "local", "value"]
    thread_dict = {"in_thread": thread_list}
    LOCAL.in_thread = ("thread-local", thread_dict)
    ready.set()
    event.wait()
    return thread_list, thread_dict


def build_heap(freeze=False):
    HEAP["frozen_addr"] = 0
    if freeze:
        # Unreachable objects frozen into the permanent generation (with
        # everything else that exists now), as gunicorn's preload does.
        fg = FrozenGarbage()
        fg.self_ref = [fg, "frozen"]
        HEAP["frozen_addr"] = id(fg)
        del fg
        HEAP["frozen_ids"] = [id(o) for o in gc.get_objects()]
        gc.freeze()

    h = HEAP
    h["plain"] = [Plain(i) for i in range(50)]
    r1, r2 = Reordered(), Reordered()
    r1.first, r1.second, r1.third = 1, "two", [3]
    r2.third, r2.first = [33], 11
    r3 = Reordered()
    r3.first, r3.second = 111, "deleted"
    del r3.second
    h["reordered"] = [r1, r2, r3]
    s = Slotted()
    s.x = ["slot-x"]
    sd = SlottedDict()
    sd.x, sd.z = "x-val", {"z": 1}
    sd.extra = "in __dict__"
    h["slotted"] = [s, sd, Slotted()]
    m = Materialized()
    m.visible = ["visible"]
    m.other = 2.5
    vars(m)                 # the instance __dict__ now exists
    h["materialized"] = m
    h["materialized_addr"] = id(m)
    ds = DictSub(a=1, b=[2])
    ds.attr = "on the instance"
    h["dicts"] = [
        {"ok_name": 1, "x-y": 2, 3: "three", (1, 2): "tuple key",
         "a8f5f167f44f4964e6c998dee827110c": 4,
         "sk_live_4eC39HqLyjWDarjtT1zdp7dc": 5, "AuthorizationHeaderValue": 6,
         "MAX2": 7, "é": 8, "__dict__": 9, "": 10},
        ds, {i: str(i) for i in range(20)},
    ]
    # W5.2: keys built at run time. Names of the program's code (a method's
    # name, an attribute name) and dunders are written; the rest is opaque.
    h["events"] = {name: [name] for name in "on_start on_connect on_stop_xyz".split()}
    h["dunders"] = {"".join(["__custom", "_registry__"]): ["dunder value"],
                    "".join(["__", "_"]): ["not a dunder"]}
    # W9.4: a label made from a one-character key that is not the
    # interpreter's shared str for that character (on 3.11 the interned "_"
    # is another object), the shared one held only by garbage: the compiled
    # walker's label table held the shared one as its copy, and ignored it.
    h["one_char_key"] = {"_": ["one-character key"]}
    shared = [chr(0x5f)]
    shared.append(shared)
    del shared
    h["warned"] = warned_module()
    h["lists"] = [ListSub([1, "two", None]), TupleSub((1, 2, "three")), (1,), ()]
    h["sets"] = [{1, 2, "three"}, frozenset({"a", "b"}), set()]
    h["deque"] = collections.deque([1, "deque", [2]], maxlen=10)
    # W10.3: bounds, and what is not one (maxsize=None, a bool, an int too
    # big, a float); W4.5: a deque subclass's items are labeled too.
    for i in range(3):
        bounded_cached(i)
    sb = SlottedBound()
    sb.maxlen, sb.items = 5, []
    ds2 = DequeSub(["sub", "deque", "sub"])
    ds2.attr = "deque attribute"
    h["bounded"] = [bounded_cached, BoundedCache(4096), sb, BoundedCache(True),
                    BoundedCache(2 ** 70), BoundedCache(10.0), BoundedCache(-1), ds2,
                    collections.deque(maxlen=0)]
    h["strs"] = ["ascii", "latin1 \xe9", "ucs2 \u20ac", "ucs4 \U0001f600", "lone \ud800",
                 StrSub("sub"), "x" * 1000]
    h["bytes"] = [b"bytes", bytearray(b"bytearray"), b""]
    h["ints"] = [0, 1, -1, 2 ** 40, -(2 ** 70), 10 ** 30, IntSub(7), True]
    h["floats"] = [1.5, float("inf"), -0.0]
    for i in range(5):
        cached(i)
    cached(1, y=2)
    h["cached"] = cached
    h["closures"] = [make_closure(i) for i in range(3)]
    gens = []
    for i in range(3):
        g = generator(i)
        next(g)
        gens.append(g)
    g2 = generator(10)
    next(g2)
    next(g2)
    gens.append(g2)
    gens.append(never_started(1, 2))
    # Frame objects of suspended generators, with their f_locals already
    # made (PyWalker reads f_locals in a fork child: it must find the same).
    h["frames"] = []
    for g in gens:
        fr = g.gi_frame
        fr.f_locals
        h["frames"].append(fr)
    h["gens"] = gens
    h["pysizeof"] = PySizeof()
    h["static_sizeof"] = StaticSizeof()
    h["meta"] = WithMeta
    h["partial"] = functools.partial(max, 1, key=None)
    h["module_ref"] = collections
    # Var-sized instances with a __dict__ (a negative tp_dictoffset).
    ts, isub = TupleSub((4, 5)), IntSub(8)
    ts.attr, isub.attr = ["on a tuple"], ["on an int"]
    h["varsized"] = [ts, isub]
    # Code objects whose getters cached co_code (3.11+) and the name
    # tuples (3.12+): objects only the compiled walker can reach.
    code = make_closure.__code__
    code.co_code, code.co_varnames, code.co_cellvars, code.co_freevars
    h["nested"] = {"level1": {"level2": {"level3": ["deep"]}}}
    try:
        raise ValueError("kept traceback")
    except ValueError as e:
        h["exc"] = e
    # A reference cycle no root reaches (gc is disabled: it survives).
    cyc = CycleGarbage()
    cyc.me = cyc
    cyc.data = {"cycle": [cyc]}
    h["cycle_addr"] = id(cyc)
    del cyc
    return h


def managed_type_names():
    """Names of the classes whose instances keep their dict before the object
    (3.11+ Py_TPFLAGS_MANAGED_DICT)."""
    if PY < (3, 11):
        return []
    names, stack, seen = set(), [object], set()
    while stack:        # every class (gc.get_objects() misses frozen ones)
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.__flags__ & (1 << 4):
            names.add(type_name(t))
        stack.extend(type.__subclasses__(t))
    return sorted(names)


def start_thread():
    event, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=blocked_thread, args=(event, ready), name="blocked-worker",
                         daemon=True)
    t.start()
    ready.wait()
    LOCAL.in_main = ["main-thread-local"]
    return t, event


# ------------------------------------------------------------------ walking

def walk_into(path, which, capture, strings=True, trace=False, may_materialize=True):
    """Write one snapshot with one walker; the same code runs for both."""
    f = open(os.fsencode(path), "wb")   # a name of its own, not the shared str
    writer = snapfile.Writer(f)
    modules = hook_walk.module_roots()
    ignore = hook_walk.ignore_seeds([capture, writer.__dict__, writer.pending, writer.counts,
                                     modules, f, writer])
    ignore.append(ignore)
    t0 = time.perf_counter()
    if which == "py":
        w = PyWalker(writer, strings=strings, trace=trace, may_materialize=may_materialize)
        ignore.append(w)
        w.run(modules, capture["stack_roots"], capture["thread_roots"], ignore,
              capture["frames"])
        trailer = w.trailer()
        stats = {}
        if os.environ.get("HEAPCHECK_DEBUG"):
            with open(path + ".ignored.json", "w") as dbg:
                json.dump(sorted(w.ignored), dbg)
            with open(os.path.join(os.path.dirname(path), "py.addrs.json"), "w") as dbg:
                json.dump(sorted(w.index), dbg)
    else:
        res = _walker.walk(writer, modules, capture["stack_roots"], capture["thread_roots"],
                           ignore, capture["frames"], strings, trace, may_materialize)
        trailer = res["trailer"]
        trailer["types"] = [type_name(t) for t in res["type_objects"]]
        stats = res["stats"]
        if os.environ.get("HEAPCHECK_DEBUG"):
            pyset = set(json.load(open(os.path.join(os.path.dirname(path), "py.addrs.json"))))
            objs = {id(o): o for o in gc.get_objects()}
            writer.finish(dict(trailer, types=trailer["types"]))
            f.flush()
            r = snapfile.Reader.open(path)
            with open(path + ".debug.txt", "w") as dbg:
                for a in r.column_values(snapfile.COL_ADDR):
                    if a not in pyset and a in objs:
                        o = objs[a]
                        print(type(o), repr(o)[:300], [type(x) for x in gc.get_referrers(o)][:5], file=dbg)
            os._exit(0)
    seconds = time.perf_counter() - t0
    trailer["meta"] = {"walker": which, "seconds": seconds, "stats": stats,
                       "private_dirty": private_dirty()}
    writer.finish(trailer)
    f.close()
    return seconds


def smaps_rollup(pid="self"):
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    out[parts[0][:-1]] = int(parts[1]) * 1024
    except OSError:
        pass
    return out


def private_dirty():
    return smaps_rollup().get("Private_Dirty")


_FORK = []


def prepare_raw_fork():
    import ctypes
    try:
        fork = ctypes.PyDLL(None).fork
    except (AttributeError, OSError):
        return
    fork.restype = ctypes.c_int
    fork.argtypes = []
    # The first foreign call makes ctypes' lazy objects: make them now, with
    # a child that exits at once, so later children all see the same heap.
    pid = fork()
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
    _FORK.append(fork)


def raw_fork():
    """fork(2) with the GIL held and without Python's at-fork handlers, so
    that two children get byte-identical heaps (os.fork runs threading's
    after-fork code and may warn about threads, which changes the heap).
    prepare_raw_fork() must have run first (it makes objects)."""
    if not _FORK:
        return os.fork()
    pid = _FORK[0]()
    if pid < 0:
        raise OSError("fork failed")
    return pid


WALKERS = ("py", "c")


def walk_k(k, paths, capture, options):
    return walk_into(paths[k], WALKERS[k], capture, options["strings"], options["trace"],
                     options["may_materialize"])


def fork_walk(k, paths, capture, options):
    """Child k writes paths[k] with WALKERS[k]. Both children run the same
    code on the same objects (only the small int k differs), so that their
    heaps are the same up to what each walker makes."""
    pid = raw_fork()
    if pid == 0:
        code = 1
        try:
            gc.disable()
            walk_k(k, paths, capture, options)
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit(f"{WALKERS[k]} walker child failed: status {status}")


# -------------------------------------------------------------------- modes

def mode_equiv(outdir, freeze=False, trace=True):
    import tracemalloc
    if trace:
        tracemalloc.start(1)    # more frames: same check, twice the time
    gc.disable()
    prepare_raw_fork()
    # PyWalker reads dict pointers, as when the hook uses it.
    walker_reads.enable_pointer_reads()
    heap = build_heap(freeze)
    # The traceback's frame finished: give it its f_locals dict now (PyWalker
    # makes one in the fork child, 3.10-3.12, where it would be a new object).
    heap["exc"].__traceback__.tb_frame.f_locals
    t, event = start_thread()
    capture = hook_capture.capture()
    info = {
        "python": list(PY),
        "frozen_addr": heap["frozen_addr"],
        "cycle_addr": heap["cycle_addr"],
        "materialized_addr": heap["materialized_addr"],
        "materialized_dict_addr": id(heap["materialized"].__dict__),
        "thread_frames": len(capture["frames"]),
        "thread_roots": len(capture["thread_roots"]),
        "stack_roots": len(capture["stack_roots"]),
        "frozen_ids": heap.pop("frozen_ids", []),
        "permanent_ids": walkertest.load().permanent_generation_ids(),
        "managed_types": managed_type_names(),
        "pointer_reads": walker_reads.pointer_reads(),
        "interned_table": walker._interned_table_id(),
    }
    paths = [os.path.join(outdir, f"{which}.snap") for which in WALKERS]
    options = {"strings": True, "trace": trace, "may_materialize": True}
    # The interpreter's method cache holds the last reference to some
    # interned strs (names looked up once, as enum's '_Flag__in_progress'),
    # and drops it when a lookup takes the entry: PyWalker's and the writer's
    # attribute lookups in a child would free them, and 3.14+ tracks the
    # interned strs' dict, which both walkers then walk as an unreached root.
    # Emptied here, the cache holds only names held elsewhere: both children
    # walk the same heap.
    (getattr(sys, "_clear_internal_caches", None) or sys._clear_type_cache)()
    for k in range(len(WALKERS)):
        fork_walk(k, paths, capture, options)
    event.set()
    t.join()
    print(json.dumps(info))


def memdiag_code_consts():
    """id() of the gc-tracked co_consts tuples of memdiag's own code objects
    (functions and methods of its modules, and the code nested in them)."""
    import types
    codes, seen = [], set()
    for name, mod in list(sys.modules.items()):
        if not (name == "memdiag" or name.startswith("memdiag.")) or mod is None:
            continue
        for v in list(vars(mod).values()):
            members = list(vars(v).values()) if isinstance(v, type) else [v]
            for f in members:
                f = getattr(f, "__func__", f)
                if isinstance(f, types.FunctionType):
                    codes.append(f.__code__)
    out = []
    while codes:
        co = codes.pop()
        if id(co) in seen:
            continue
        seen.add(id(co))
        if gc.is_tracked(co.co_consts):
            out.append(id(co.co_consts))
        codes.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
    return out


def mode_pure(outdir):
    """PyWalker alone, as a target without the compiled walker runs it
    (MEMDIAG_PURE_PYTHON=1: the Python capture, pointer reads on), through the
    hook: one snapshot in a fork child, one in this process (inline mode),
    and what the test needs to check them against WALK.md."""
    os.environ["MEMDIAG_PURE_PYTHON"] = "1"
    gc.disable()
    hook.install(dir=outdir, trace_frames=1)
    heap = build_heap(freeze=True)
    t, event = start_thread()
    objs = {
        "plain": heap["plain"][0], "plain_gamma": heap["plain"][0].gamma,
        "slotted": heap["slotted"][1], "slot_z": heap["slotted"][1].z,
        "slot_extra": heap["slotted"][1].extra, "materialized": heap["materialized"],
        "materialized_dict": heap["materialized"].__dict__, "dicts0": heap["dicts"][0],
        "pysizeof": heap["pysizeof"], "cached": heap["cached"],
        "closure": heap["closures"][0], "code": make_closure.__code__, "plain_type": Plain,
        "gen_frame": heap["frames"][0], "deque": heap["deque"], "str_sub": heap["strs"][5],
        "ints": heap["ints"], "dict_sub": heap["dicts"][1],
        "float_info": sys.float_info, "events": heap["events"], "dunders": heap["dunders"],
        "warned_dict": heap["warned"].__dict__,
        "warning_registry": heap["warned"].__warningregistry__,
    }
    for name, o in zip(("lru64", "cache4096", "slotted5", "cache_bool", "cache_big",
                        "cache_float", "cache_negative", "deque_sub", "deque0"), heap["bounded"]):
        objs[name] = o
    # __slots__ that only an iteration of the program's own can list (W1.2;
    # the pure-Python walker leaves these slots unlabeled, W11.8).
    odd = type("OddSlots", (), {"__slots__": SlotsIterable()})()
    odd.odd = ["odd slot"]
    heap["odd_slots"] = objs["odd_slots"] = odd
    del PROGRAM_CODE_CALLS[:]
    runtime_key = "".join(["runtime", "_made"])     # name-like, not interned
    heap["runtime_keyed"] = objs["runtime_keyed"] = {runtime_key: 1,
                                                     sys.intern("interned_key"): 2}
    samples = {name: id(o) for name, o in objs.items()}
    sizes = {name: sys.getsizeof(objs[name]) for name in (
        "plain", "slotted", "materialized", "materialized_dict", "dicts0", "cached",
        "closure", "code", "plain_type", "deque", "str_sub", "dict_sub")}
    # A __sizeof__ written in Python is not called (W6.1): object.__sizeof__,
    # plus the GC header and the two pointers before a managed-dict object.
    sizes["pysizeof_formula"] = object.__sizeof__(objs["pysizeof"]) + 16 + 16
    referents = {name: [id(r) for r in gc.get_referents(objs[name])] for name in (
        "plain", "slotted", "closure", "cached", "materialized", "deque", "dict_sub")}
    slotted_has_dict = any(type(r) is dict and r is not objs["slot_z"]
                           for r in gc.get_referents(objs["slotted"]))
    del objs
    info = {
        "python": list(PY), "pointer_reads": walker_reads.pointer_reads(),
        "slotted_has_dict": slotted_has_dict,
        "cycle_addr": heap["cycle_addr"], "frozen_addr": heap["frozen_addr"],
        "samples": samples, "sizes": sizes, "referents": referents,
    }
    info["deque_sub_items"] = [id(x) for x in heap["bounded"][7]]
    info["own_consts"] = memdiag_code_consts()
    info["fork"] = hook.dump(os.path.join(outdir, "fork.snap"), strings=True, mode="fork")
    # In this process: no instance __dict__ made, no object left behind.
    plain = heap["plain"]
    dicts_before = sum(any(type(r) is dict for r in gc.get_referents(o)) for o in plain)
    before = {id(o) for o in gc.get_objects()}
    before.add(id(before))
    info["inline"] = hook.dump(os.path.join(outdir, "inline.snap"), strings=True,
                               mode="inline")
    left = []
    for o in gc.get_objects():      # no comprehension: no frame of ours
        if id(o) not in before and o is not left:
            left.append(f"{type(o).__name__}: {repr(o)[:60]}")
    info["objects_left"] = left
    info["program_code_calls"] = PROGRAM_CODE_CALLS
    info["dicts_made"] = sum(any(type(r) is dict for r in gc.get_referents(o))
                             for o in plain) - dicts_before
    event.set()
    t.join()
    print(json.dumps(info))


def mode_noreads(outdir):
    """PyWalker without its reads by address (WALK.md W11.4): a fork-child
    and an in-process snapshot of the heap, walked directly (not through the
    hook, which would enable them)."""
    os.environ["MEMDIAG_PURE_PYTHON"] = "1"
    gc.disable()
    heap = build_heap()
    heap["runtime_keyed"] = {"".join(["runtime", "_made"]): 1}
    info = {"pointer_reads": walker_reads.pointer_reads(),
            "samples": {"plain": id(heap["plain"][0]),
                        "plain_gamma": id(heap["plain"][0].gamma),
                        "runtime_keyed": id(heap["runtime_keyed"]),
                        "code": id(make_closure.__code__)}}
    capture = hook_capture.capture()
    info["fork"] = os.path.join(outdir, "fork.snap")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            walk_into(info["fork"], "py", capture, may_materialize=True)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit(f"PyWalker fork child failed: status {status}")
    info["inline"] = os.path.join(outdir, "inline.snap")
    walk_into(info["inline"], "py", capture, may_materialize=False)
    print(json.dumps(info))


def mode_inplace():
    """The C walk in the live process (may_materialize=False), as the hook's
    inline mode runs it: the heap must be the same afterwards."""
    import ctypes
    import io
    gc.disable()
    heap = build_heap()
    synthetic_heap(400_000, garbage_every=97)   # enough chunks to be kept compressed
    t, event = start_thread()
    holder = Reordered()
    holder.value = "inline"
    sample = [heap, heap["plain"][0], heap["plain"][0].gamma, holder, holder.value,
              heap["dicts"][0], heap["cached"], heap["gens"][0], Plain, sys.modules,
              heap["strs"][1], heap["deque"], "alpha", "ok_name", Reordered.__dict__]
    capture = hook_capture.capture()
    buf = io.BytesIO()
    writer = snapfile.Writer(buf)
    modules = hook_walk.module_roots()
    ignore = hook_walk.ignore_seeds([capture, writer.__dict__, writer.pending, writer.counts,
                                     modules, buf, writer])
    before_refs = [sys.getrefcount(o) for o in sample]
    before_count = len(gc.get_objects())
    res = _walker.walk(writer, modules, capture["stack_roots"], capture["thread_roots"],
                       ignore, capture["frames"], True, False, False)
    trailer = res["trailer"]
    trailer["types"] = [type_name(t) for t in res.pop("type_objects")]
    writer.finish(trailer)
    # (ints only kept: 3.14+ tracks every dict, the stats dict included)
    pending_bytes, peak_bytes = res["stats"]["pending_bytes"], res["stats"]["peak_bytes"]
    compress_threads = res["stats"]["compress_threads"]
    del res, trailer
    after_count = len(gc.get_objects())
    after_refs = [sys.getrefcount(o) for o in sample]
    managed_dict_ptr = None
    if PY >= (3, 11):
        ptr = ctypes.c_void_p.from_address(id(holder) - 3 * 8).value or 0
        if PY == (3, 12) and ptr & 1:
            ptr = 0
        managed_dict_ptr = ptr
    r = snapfile.Reader.from_bytes(buf.getvalue())
    # at the columns' full width (the writer narrows chunks that fit fewer bytes)
    raw_bytes = sum(c.count * snapfile.COLUMN_CODING[c.column][0]
                    for chunks in r.chunks.values() for c in chunks)
    addrs = r.column_values(snapfile.COL_ADDR)
    # Unreached roots come in the order of the generation lists (the walker
    # follows the lists in pieces side by side on a heap this big).
    where = {id(o): k for k, o in enumerate(gc.get_objects())}
    for k, a in enumerate(walkertest.load().permanent_generation_ids()):
        where.setdefault(a, len(where) + k)
    unreached = [addrs[o] for o, kind in zip(r.column_values(snapfile.COL_ROOT_OBJ),
                                             r.column_values(snapfile.COL_ROOT_KIND))
                 if kind == snapfile.ROOT_UNREACHED]
    positions = [where.get(a, -1) for a in unreached]
    unreached_in_order = all(p >= 0 for p in positions) and positions == sorted(positions)
    nedges = r.column_values(snapfile.COL_NEDGES)
    et = r.column_values(snapfile.COL_ETARGET)
    el = r.column_values(snapfile.COL_ELABEL)
    labels = r.trailer["labels"]
    hi = addrs.index(id(holder))
    pos = sum(nedges[:hi])
    holder_labels = []
    for k in range(pos, pos + nedges[hi]):
        code = el[k]
        if code & 7 == snapfile.L_ATTR:
            holder_labels.append([labels[code >> 3], addrs[et[k]] == id(holder.value)])
    # The GC switch and the switch interval come back as they were.
    gc.enable()
    interval = sys.getswitchinterval()
    small = snapfile.Writer(io.BytesIO())
    # (and the walk deflating chunks itself, with no worker thread)
    os.environ["MEMDIAG_COMPRESS_THREADS"] = "0"
    try:
        res = _walker.walk(small, [("json", sys.modules["json"])] if "json" in sys.modules else [],
                           [], [], [small.__dict__], [], False, False, True)
    finally:
        del os.environ["MEMDIAG_COMPRESS_THREADS"]
    small_trailer = res["trailer"]
    small_trailer["types"] = [type_name(t) for t in res.pop("type_objects")]
    small.finish(small_trailer)
    small_objects = snapfile.Reader.from_bytes(small.f.getvalue()).trailer["objects"]
    small_threads = res["stats"]["compress_threads"]
    del res, small_trailer
    gc_enabled_after = gc.isenabled()
    switch_interval_restored = sys.getswitchinterval() == interval
    gc.disable()
    event.set()
    t.join()
    print(json.dumps({
        "before_count": before_count, "after_count": after_count,
        "before_refs": before_refs, "after_refs": after_refs,
        "managed_dict_ptr": managed_dict_ptr, "objects": r.trailer["objects"],
        "holder_in_snapshot": id(holder) in set(addrs), "holder_labels": holder_labels,
        "gc_enabled_after": gc_enabled_after,
        "switch_interval_restored": switch_interval_restored,
        "raw_bytes": raw_bytes, "pending_bytes": pending_bytes,
        "peak_bytes": peak_bytes, "compress_threads": compress_threads,
        "small_objects": small_objects, "small_threads": small_threads,
        "unreached_roots": len(unreached), "unreached_in_order": unreached_in_order,
    }))


def _blocked_in_class_body(event, ready):
    class Body:
        marker = ["class-body-local"]
        ready.set()
        event.wait()
    return Body


def _blocked_in_generator(event, ready):
    def gen():
        gen_local = {"in": "generator"}
        ready.set()
        event.wait()
        yield gen_local
    return list(gen())


def _blocked_with_cells(event, ready, arg="argument"):
    shared = ["cell", "var"]
    unbound_later = None
    del unbound_later

    def use():
        return shared, arg
    ready.set()
    event.wait()
    return use


def mode_capture():
    """The C capture against the hook's Python capture, in the same process
    at the same moment: the same stack roots, in the same order."""
    event = threading.Event()
    threads = []
    for target in (_blocked_in_class_body, _blocked_in_generator, _blocked_with_cells,
                   blocked_thread):
        ready = threading.Event()
        t = threading.Thread(target=target, args=(event, ready), daemon=True)
        t.start()
        ready.wait()
        threads.append(t)
    main_local = ("main", "local")  # noqa: F841
    names = hook_capture.thread_names()
    main_tid = hook_capture.main_thread_id()
    c = _walker.capture(names, main_tid, hook_capture.HERE)
    os.environ["MEMDIAG_PURE_PYTHON"] = "1"
    try:
        p = hook_capture.capture()
    finally:
        del os.environ["MEMDIAG_PURE_PYTHON"]
    def norm(roots):
        return [[d, n, id(v), type(v).__name__] for d, n, v in roots]
    out = {
        "c": norm(c["stack_roots"]), "py": norm(p["stack_roots"]),
        "c_threads": [[d, type(v).__name__] for d, v in c["thread_roots"]],
        "c_frames": len(c["frames"]), "py_frames": len(p["frames"]),
        "c_frames_in_py": all(any(f is g for g in p["frames"]) for f in c["frames"]),
        "nthreads": len(threads) + 1,
    }
    event.set()
    for t in threads:
        t.join()
    print(json.dumps(out))


class Node:
    __slots__ = ("value", "next", "tag")


class Item:
    def __init__(self, i):
        self.ident = i
        self.name = "item-%d" % i
        self.tags = [i, -i]


def synthetic_heap(n, garbage_every=0):
    """About n objects: instances with inline values, dicts, lists, strs, ints;
    with garbage_every, an unreachable cycle every that many instances (and a
    collection half way, so that both young and old generation lists hold
    some)."""
    data = []
    per = 6
    for i in range(n // per):
        it = Item(i)                         # instance, str, list, 2 ints (+ inline values)
        data.append(it)
        if i % 10 == 0:
            data.append({"key%d" % i: it, "k": (i, "x")})
        if garbage_every and i % garbage_every == 0:
            cycle = ["garbage", i]
            cycle.append(cycle)
            if i == (n // per) // 2 // garbage_every * garbage_every:
                gc.collect(1)
    HEAP["synthetic"] = data
    return data


def mode_unshare(n):
    """A fork child walks a heap of about n objects with the C walker, as the
    hook's child does; it reports its smaps_rollup before and after the walk
    (the pages it dirtied are the parent's pages it un-shared plus what it
    still holds), the parent reports its RSS. Before the second reading,
    glibc gives back the memory the walk freed (malloc_trim): it keeps freed
    chunks in its heap otherwise, and how much depends on the allocation
    order (about 7 MiB on 3.14 and 4 MiB on 3.15 at 1M objects): memory the
    child neither holds nor took from the parent. The parent's pages the
    walk un-shared stay counted (a freed copy does not become shared again),
    and the trim drops some pages still shared with the parent (its own free
    chunks), which count as un-shared too: the strict side."""
    gc.disable()
    synthetic_heap(n)
    capture = hook_capture.capture()

    def walk():
        before = smaps_rollup()
        walk_into("/dev/null", "c", capture, strings=False, may_materialize=True)
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
        return {"before": before, "after": smaps_rollup()}

    child = _child_json(walk)
    print(json.dumps({"parent": smaps_rollup(), "child_before": child["before"],
                      "child_after": child["after"], "objects_hint": n}))


def _child_json(fn):
    """Run fn() in a fork child (gc off) and return the dict it returned,
    sent back through a pipe as JSON."""
    r_fd, w_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r_fd)
            gc.disable()
            os.write(w_fd, json.dumps(fn()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w_fd)
    chunks = []
    while True:
        chunk = os.read(r_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r_fd)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def _timed_child(fn):
    """Run fn() in a fork child: its wall and CPU time, peak RSS, and what fn
    returned (a dict, or None)."""
    import resource

    def timed():
        t0, c0 = time.perf_counter(), time.process_time()
        extra = fn()
        out = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
               "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        out.update(extra or {})
        return out
    return _child_json(timed)


def mode_bench(n, guppy=False, python_walker=False, repeat=3):
    """Timings on a synthetic heap of about n objects, each in a fork child of
    the same parent: the C walker as the hook's fork child runs it (streaming
    to a file), the C walker in-process (chunks kept until the end), PyWalker
    (once: it is slow), guppy3's hpy().heap() (if installed)."""
    gc.disable()
    synthetic_heap(n)
    capture = hook_capture.capture()
    out = {"python": sys.version.split()[0], "n": n, "parent": smaps_rollup()}
    path = f"/tmp/memdiag-bench-{os.getpid()}.snap"

    def c_fork():
        rss0 = smaps_rollup()
        walk_into(path, "c", capture, strings=False, may_materialize=True)
        r = snapfile.Reader.open(path)
        t = r.trailer
        r.close()
        return {"objects": t["objects"], "edges": t["edges"], "file_bytes": os.path.getsize(path),
                "stats": t["meta"]["stats"], "rss0": rss0, "rss1": smaps_rollup()}

    def c_inline():
        import io
        buf = io.BytesIO()
        writer = snapfile.Writer(buf)
        modules = hook_walk.module_roots()
        ignore = hook_walk.ignore_seeds([capture, writer.__dict__, writer.pending, writer.counts,
                                         modules, buf, writer])
        res = _walker.walk(writer, modules, capture["stack_roots"], capture["thread_roots"],
                           ignore, capture["frames"], False, False, False)
        return {"stats": res["stats"]}

    def py_fork():
        walk_into(path, "py", capture, strings=False, may_materialize=True)
        return {"private_dirty": private_dirty()}

    def guppy_heap():
        from guppy import hpy
        hpy().heap()

    runs = [("c_fork", c_fork), ("c_inline", c_inline)]
    if guppy:
        try:
            import guppy  # noqa: F401
            runs.append(("guppy", guppy_heap))
        except ImportError:
            out["guppy"] = None
    for name, fn in runs:
        best = None
        for _ in range(repeat):
            r = _timed_child(fn)
            if best is None or r["wall"] < best["wall"]:
                best = r
        out[name] = best
    if python_walker:
        out["py_fork"] = _timed_child(py_fork)
    try:
        os.unlink(path)
    except OSError:
        pass
    print(json.dumps(out))


if __name__ == "__main__":
    mode = sys.argv[1]
    if _walker is None and mode not in ("pure", "noreads"):
        print(json.dumps({"skip": "memdiag._walker is not built for this Python"}))
        sys.exit(0)
    if mode == "pure":
        mode_pure(sys.argv[2])
    elif mode == "noreads":
        mode_noreads(sys.argv[2])
    elif mode == "equiv":
        mode_equiv(sys.argv[2], freeze="freeze" in sys.argv[3:],
                   trace="notrace" not in sys.argv[3:])
    elif mode == "inplace":
        mode_inplace()
    elif mode == "capture":
        mode_capture()
    elif mode == "unshare":
        mode_unshare(int(sys.argv[2]))
    elif mode == "bench":
        mode_bench(int(sys.argv[2]), guppy="guppy" in sys.argv[3:],
                   python_walker="py" in sys.argv[3:])
    else:
        raise SystemExit(f"unknown mode {mode}")
