"""The pure-Python heap walker: what a walk records is specified in
docs/WALK.md (clauses W1-W11, cited below as W4.13 and so on), which the
compiled walker (memdiag/_native/) implements too. Stdlib only. It walks
where the compiled walker is missing (no compiler, a free-threaded build);
in a fork child, with the hook's reads by address (W8), it writes exactly
the compiled walker's snapshot (W11.1), and the tests compare the two.

In short: a breadth-first walk that numbers objects in discovery order (W3),
from roots in phases, each walked to exhaustion before the next (W2):

1. modules in sys.modules, by name;
2. variables of every thread's frames (captured before any fork);
3. every thread's state dict (thread locals);
4. (no output) everything reachable only from memdiag's own objects is marked
   ignored, so the hook never appears in its snapshot (W9);
5. gc-tracked objects no root reached ("unreached": held from C, or leaked).

Edges are tp_traverse's referents (gc.get_referents), plus those read without
it (W4): dict items by key, list, tuple and deque indexes, attributes, fields
of types, functions, code and cells, frame variables, lru_cache's cache.
"""

from __future__ import annotations

import collections
import functools
import gc
import sys
import types

from . import snapfile as sf
from . import walker_reads as reads

PY = sys.version_info[:2]
TPFLAGS_HEAPTYPE = 1 << 9
TPFLAGS_MANAGED_DICT = 1 << 4      # 3.11+
CO_OPTIMIZED = 0x0001

_LRU_TYPE = type(functools.lru_cache(maxsize=None)(lambda: None))
_DEQUE_MAXLEN = collections.deque.__dict__["maxlen"].__get__

# An identifier constant, so interned: the interpreter's table of interned
# strs maps it to itself (_interned_table_id).
_INTERNED_PROBE = "_memdiag_interned_table_probe"


def _interned_table_id():
    """id() of the interpreter's table of interned strs when the collector
    tracks it (3.14+ tracks every dict), else 0 (W2.5: never an unreached
    root): the probe's referrer (this module's dict, the table) that maps it
    to itself; both have only str keys, so the lookup runs no code.

    >>> (_interned_table_id() != 0) == (sys.version_info >= (3, 14))
    True
    """
    for r in gc.get_referrers(_INTERNED_PROBE):
        if type(r) is dict and r.get(_INTERNED_PROBE) is _INTERNED_PROBE:
            return id(r)
    return 0


_MemberDescriptor, _MethodDescriptor = types.MemberDescriptorType, types.MethodDescriptorType
_GetSetDescriptor = types.GetSetDescriptorType


def name_like(s: str) -> bool:
    """Whether a str key is written in full: a short ASCII identifier that
    does not look like a token or a random id.

    >>> [name_like(k) for k in ("reg_ary", "sent_events", "__dict__", "MAX2")]
    [True, True, True, True]
    >>> [name_like(k) for k in ("a8f5f167f44f4964e6c998dee827110c", "x-y", "é")]
    [False, False, False]
    >>> name_like("sk_live_4eC39HqLyjWDarjtT1zdp7dc"), name_like("AuthorizationHeaderValue")
    (False, False)
    """
    n = len(s)
    if n == 0 or n > 64 or not s.isascii() or not s.isidentifier():
        return False
    digits = 0
    for c in s:
        if c.isdigit():
            digits += 1
    if digits > 3:
        return False
    if n >= 20 and "_" not in s and not (s.islower() or s.isupper()):
        return False
    return True


def is_dunder(s: str) -> bool:
    """A dunder name: __x__ with something between the underscores.

    >>> [is_dunder(k) for k in ("__warningregistry__", "__spec__", "_x_", "_____")]
    [True, True, False, False]
    """
    return len(s) >= 5 and s[:2] == "__" and s[-2:] == "__" and s.strip("_") != ""


def key_written(s: str, code_names=frozenset()) -> bool:
    """Whether a str dict key is written in full as a path label (WALK.md
    W5.2): it is name_like and a name of the program's: interned (keys from
    source code: literals, attribute and keyword names, module globals), a
    dunder (names the interpreter makes: a module's __warningregistry__), or
    equal to a name in the program's code objects (code_names: names the
    program builds at run time that its code spells out). Keys made at run
    time from input (session tokens, ids, parsed JSON) are none of these,
    whatever they look like, so they are written only as their type and length.

    >>> reads.enable_pointer_reads()
    True
    >>> import sys; key_written(sys.intern("reg_ary"))
    True
    >>> key_written("".join(["__warning", "registry__"]))   # made at run time
    True
    >>> key_written("".join(["Xk9fQ", "wLpZ"]))             # made at run time
    False
    >>> key_written("".join(["on_", "start"]), {"on_start"})  # a code name
    True

    Interning is read from the str's state field (pointer reads, enabled by the
    hook with _ctypes); without them only name_like decides.
    """
    if not name_like(s):
        return False
    if not reads.ON["intern"]:
        return True
    return reads.is_interned(s) or is_dunder(s) or s in code_names


def code_names(module_roots) -> set:
    """The names of the code objects the program's namespaces hold (WALK.md
    W5.2): from each module's dict, every function (and the functions in its
    closure cells: what a decorator wraps), every heap class (its dict's
    values, recursively), the functions a staticmethod, classmethod, property
    or lru_cache wrapper holds; for each function, the co_names, the local,
    cell and free variable names and co_name of its code and of the code
    objects among that code's constants. Nothing of the program is called.

    >>> import types
    >>> m = types.ModuleType("m")
    >>> m.handler = lambda request: request.session_store
    >>> sorted(code_names([("m", m)]))
    ['<lambda>', 'request', 'session_store']
    """
    function = types.FunctionType
    wrappers = (staticmethod, classmethod, property, _LRU_TYPE)
    stack = []
    for _, m in module_roots:
        if types.ModuleType in _TYPE_ATTR["__mro__"](type(m)):
            d = _module_dict(m)
            if type(d) is dict:
                stack.extend(dict.values(d))
    seen = set()
    codes = []
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        tp = type(v)
        if tp is function:
            codes.append(_FUNC_FIELDS["__code__"](v))
            for cell in _FUNC_FIELDS["__closure__"](v) or ():
                stack.extend(c for c in gc.get_referents(cell) if type(c) is function)
        elif issubclass(tp, type):
            if _TYPE_ATTR["__flags__"](v) & TPFLAGS_HEAPTYPE:
                d = gc.get_referents(_TYPE_ATTR["__dict__"](v))
                if d and type(d[0]) is dict:
                    stack.extend(dict.values(d[0]))
        elif tp in wrappers:
            stack.extend(r for r in gc.get_referents(v) if type(r) is function)
    names = set()
    done = set()
    for co in codes:        # grows with the nested code objects
        if id(co) in done:
            continue
        done.add(id(co))
        names.update(n for n in co.co_names if type(n) is str)
        names.update(n for n in reads.localsplusnames(co) if type(n) is str)
        names.add(co.co_name)
        codes.extend(c for c in co.co_consts if type(c) is types.CodeType)
    return names


def type_kind(tp) -> str:
    """The walker's kind for a type; it decides how edges are labeled."""
    sub = issubclass
    if sub(tp, dict):
        return "dict"
    if sub(tp, list):
        return "list"
    if sub(tp, tuple):
        return "tuple"
    if sub(tp, (set, frozenset)):
        return "set"
    if sub(tp, collections.deque):
        return "deque"
    if sub(tp, str):
        return "str"
    if sub(tp, (bytes, bytearray)):
        return "bytes"
    if sub(tp, int):
        return "int"
    if sub(tp, float):
        return "float"
    if sub(tp, types.ModuleType):
        return "module"
    if sub(tp, type):
        return "type"
    if tp is types.FunctionType:
        return "function"
    if tp is types.CodeType:
        return "code"
    if tp is types.FrameType:
        return "frame"
    if tp is types.CellType:
        return "cell"
    if tp is _LRU_TYPE:
        return "lru_cache"
    if _TYPE_ATTR["__flags__"](tp) & TPFLAGS_HEAPTYPE:
        return "instance"
    return "other"


def type_name(tp) -> str:
    """'ccap.cap.CAP' for classes, 'dict' for builtins."""
    try:
        qual = type.__dict__["__qualname__"].__get__(tp)
        mod = type.__dict__["__module__"].__get__(tp)
    except Exception:
        return getattr(tp, "__name__", "?")
    if not isinstance(mod, str) or mod == "builtins":
        return qual if isinstance(qual, str) else "?"
    return f"{mod}.{qual}"


_LEN = {
    "dict": dict.__len__, "list": list.__len__, "tuple": tuple.__len__,
    "deque": collections.deque.__len__,
}


def _length(o, kind):
    if kind in _LEN:
        return _LEN[kind](o)
    if kind == "set":
        return set.__len__(o) if issubclass(type(o), set) else frozenset.__len__(o)
    if kind == "str":
        return str.__len__(o)
    if kind == "bytes":
        return bytes.__len__(o) if issubclass(type(o), bytes) else bytearray.__len__(o)
    return 0


class TypeInfo:
    __slots__ = ("index", "kind", "sizeof_formula", "slots", "dict_getset",
                 "managed", "dictoffset", "preheader", "is_heap")


class PyWalker:
    """Walk the heap and stream columns into a snapfile.Writer.

    `module_roots` is [(name, module)], `stack_roots` [(frame description,
    variable name, object)], `thread_roots` [(thread description, dict)],
    `ignore` objects that belong to memdiag, `executing_frames` frame objects
    that were running in some thread when the snapshot started (never
    traversed: their locals are in stack_roots). `may_materialize` says that
    this process is a throwaway fork child, where creating an instance
    __dict__ to read attribute names cannot affect the target.
    """

    def __init__(self, writer, *, strings=False, trace=False, may_materialize=False):
        self.w = writer
        self.strings = strings
        self.trace = trace
        self.may_materialize = may_materialize
        self.index = {}
        self.objs = []
        self.parent = []
        self.plabel = []
        self.ignored = set()
        self.type_info = {}
        self.type_names = []
        self.type_kinds = []
        self.labels = {s: i for i, s in enumerate(sf.WELL_KNOWN_LABELS)}
        self.label_list = list(sf.WELL_KNOWN_LABELS)
        self.sites = {}
        self.site_list = []
        self.nedges = 0
        self.heap_bytes = 0
        self.next = 0
        self.roots = 0
        self.strings_count = 0
        self.string_bytes = 0
        self.bounds = []            # W10.3: [object index, bound]
        self.src = -1               # the object whose edges are being read
        if trace:
            import tracemalloc
            self._traceback = tracemalloc._get_object_traceback
        for own in (self, self.__dict__, self.index, self.objs, self.parent,
                    self.plabel, self.ignored, self.type_info, self.type_names,
                    self.type_kinds, self.labels, self.label_list, self.sites,
                    self.site_list, self.bounds, writer, getattr(writer, "__dict__", None),
                    getattr(writer, "pending", None), getattr(writer, "counts", None)):
            if own is not None:
                self.ignored.add(id(own))

    # ------------------------------------------------------------ tables

    def label(self, s):
        i = self.labels.get(s)
        if i is None:
            i = self.labels[s] = len(self.label_list)
            self.label_list.append(s)
        return i

    def info(self, tp):
        ti = self.type_info.get(tp)
        if ti is not None:
            return ti
        ti = TypeInfo()
        ti.index = len(self.type_names)
        ti.kind = type_kind(tp)
        self.type_names.append(type_name(tp))
        self.type_kinds.append(ti.kind)
        flags = _TYPE_ATTR["__flags__"](tp)   # never a metaclass's attribute
        ti.is_heap = bool(flags & TPFLAGS_HEAPTYPE)
        ti.managed = PY >= (3, 11) and bool(flags & TPFLAGS_MANAGED_DICT)
        ti.dictoffset = _TYPE_ATTR["__dictoffset__"](tp)
        # W6.1: __sizeof__ is called only when it is a method written in C
        # (a method descriptor); anything else (a Python function, a
        # staticmethod...) would run the program's code: the formula instead.
        ti.sizeof_formula = False
        for t in _TYPE_ATTR["__mro__"](tp):
            d = _TYPE_ATTR["__dict__"](t)
            if "__sizeof__" in d:
                ti.sizeof_formula = type(d["__sizeof__"]) is not _MethodDescriptor
                break
        # What sys.getsizeof adds to __sizeof__: the GC header, and on 3.11+
        # the managed dict (3.12+: and weakref) pointers before the object.
        gc_flag = 1 << 14
        ti.preheader = 16 if flags & gc_flag else 0
        if (PY >= (3, 11) and flags & TPFLAGS_MANAGED_DICT) or (
                PY >= (3, 12) and flags & (1 << 3)):
            ti.preheader += 16
        ti.slots = []
        ti.dict_getset = None
        if ti.kind == "instance":
            for t in _TYPE_ATTR["__mro__"](tp):
                if not _TYPE_ATTR["__flags__"](t) & TPFLAGS_HEAPTYPE:
                    continue
                slot_names = _slot_names(t)
                for name, member in _TYPE_ATTR["__dict__"](t).items():
                    if (type(member) is _MemberDescriptor and member.__objclass__ is t
                            and name in slot_names):
                        ti.slots.append((name, member))
                    elif (name == "__dict__" and ti.dict_getset is None
                          and type(member) is _GetSetDescriptor):
                        ti.dict_getset = member
        self.type_info[tp] = ti
        return ti

    # ------------------------------------------------------------- walking

    def discover(self, obj, src, label):
        """Index of obj, assigning the next index if new; None if ignored."""
        oid = id(obj)
        if oid in self.ignored:
            return None
        idx = self.index.get(oid)
        if idx is None:
            idx = self.next
            self.next += 1
            self.index[oid] = idx
            self.objs.append(obj)
            self.parent.append(src + 1)
            self.plabel.append(label)
        return idx

    def add_root(self, obj, kind, desc, name=""):
        idx = self.discover(obj, -1, 0)
        if idx is None:
            return
        self.roots += 1
        w = self.w
        w.add(sf.COL_ROOT_OBJ, (idx,))
        w.add(sf.COL_ROOT_KIND, (kind,))
        w.add(sf.COL_ROOT_DESC, (self.label(desc),))
        w.add(sf.COL_ROOT_NAME, (self.label(name),))

    def run(self, module_roots, stack_roots, thread_roots, ignore, executing_frames=()):
        for o in ignore:
            self.ignored.add(id(o))
        # W9.1: the lists given are memdiag's too: ignored from the start, and
        # expanded in phase 4 through self.__dict__ (as the compiled walker
        # does with its arguments). Lists only: never a shared empty tuple.
        self.arg_lists = [a for a in (module_roots, stack_roots, thread_roots, ignore,
                                      executing_frames) if type(a) is list]
        for a in self.arg_lists:
            self.ignored.add(id(a))
        self.executing = {id(f) for f in executing_frames}
        self.ignored.update(self.executing)
        self.ignored.add(id(self.executing))
        # W5.2: the code naming a dict key may come after it in the walk. The
        # set holds the program's strs: ignored, never expanded (W2.4).
        self.code_names = code_names(module_roots) if reads.ON["intern"] else set()
        self.ignored.add(id(self.code_names))
        done = 0
        for name, mod in module_roots:
            self.add_root(mod, sf.ROOT_MODULE, name)
        done = self.process(done)
        for desc, name, obj in stack_roots:
            self.add_root(obj, sf.ROOT_LOCAL, desc, name)
        done = self.process(done)
        for desc, d in thread_roots:
            self.add_root(d, sf.ROOT_THREAD, desc)
        done = self.process(done)
        self.mark_ignored(ignore)
        if self.may_materialize and gc.get_freeze_count():
            # A throwaway fork child: the permanent generation (gc.freeze())
            # joins the end of the oldest one, where get_objects() lists it,
            # in the order the compiled walker reads the lists (W2.6).
            gc.unfreeze()
        interned = _interned_table_id()
        tracked = gc.get_objects()
        self.ignored.add(id(tracked))
        for o in tracked:
            oid = id(o)
            if oid in self.index or oid in self.ignored or oid == interned:
                continue
            self.add_root(o, sf.ROOT_UNREACHED, "")
            done = self.process(done)
        del tracked
        return done

    def mark_ignored(self, seeds):
        """Everything reachable from memdiag's objects and not yet seen.

        Seeds and the walker's own containers were ignored by id up front;
        here what they hold is ignored too. Running frames are never entered.
        """
        index = self.index
        ignored = self.ignored
        expanded = set(self.executing)
        expanded.add(id(self.code_names))   # the program's strs, not memdiag's
        stack = list(seeds) + [self, self.__dict__, self.type_info, self.labels,
                               self.label_list, self.type_names, self.type_kinds,
                               self.sites, self.site_list]
        ignored.add(id(stack))
        ignored.add(id(expanded))
        while stack:
            o = stack.pop()
            oid = id(o)
            if oid in expanded:
                continue
            expanded.add(oid)
            for r in gc.get_referents(o):
                rid = id(r)
                if rid in index or rid in expanded:
                    continue
                ignored.add(rid)
                stack.append(r)

    def process(self, i):
        objs = self.objs
        w = self.w
        while i < self.next:
            o = objs[i]
            tp = type(o)
            ti = self.info(tp)
            targets = []
            labels = []
            self.edges(o, i, tp, ti, targets, labels)
            size = self.sizeof(o, ti)
            self.heap_bytes += size
            w.add(sf.COL_ADDR, (id(o),))
            w.add(sf.COL_TYPE, (ti.index,))
            w.add(sf.COL_SIZE, (size,))
            w.add(sf.COL_LENGTH, (_length(o, ti.kind),))
            w.add(sf.COL_NEDGES, (len(targets),))
            w.add(sf.COL_PARENT, (self.parent[i],))
            w.add(sf.COL_PLABEL, (self.plabel[i],))
            if self.trace:
                w.add(sf.COL_SITE, (self.site(o),))
            if targets:
                w.add(sf.COL_ETARGET, targets)
                w.add(sf.COL_ELABEL, labels)
                self.nedges += len(targets)
            if self.strings and ti.kind == "str":
                data = str.encode(o, "utf-8", "surrogatepass")
                w.add(sf.COL_STR_OBJ, (i,))
                w.add(sf.COL_STR_LEN, (len(data),))
                w.add(sf.COL_STR_DATA, data)
                self.strings_count += 1
                self.string_bytes += len(data)
            i += 1
        return i

    def sizeof(self, o, ti):
        """sys.getsizeof(o), or object.__sizeof__(o) plus the pre-header when
        its __sizeof__ is not written in C or fails (WALK.md W6.1, W6.3)."""
        if not ti.sizeof_formula:
            try:
                return sys.getsizeof(o)
            except Exception:
                pass
        return object.__sizeof__(o) + ti.preheader

    def site(self, o):
        tb = self._traceback(o)
        if tb is None and reads.tracemalloc_lookup is not None:
            # 3.11: _get_object_traceback misses managed-dict objects (W10.2):
            # their block starts before the two dict pointers and GC header.
            if _TYPE_ATTR["__flags__"](type(o)) & TPFLAGS_MANAGED_DICT:
                tb = reads.tracemalloc_lookup(0, id(o) - 4 * reads.WORD)
        if tb is None:
            return 0
        i = self.sites.get(tb)
        if i is None:
            i = self.sites[tb] = len(self.site_list) + 1
            self.site_list.append([list(frame) for frame in tb])
        return i

    def edges(self, o, src, tp, ti, targets, labels):
        kind = ti.kind
        labeled = None
        self.src = src

        def emit(obj, label):
            idx = self.discover(obj, src, label)
            if idx is not None:
                targets.append(idx)
                labels.append(label)
            return idx

        if kind == "dict":
            labeled = set()
            for k, v in list(dict.items(o)):
                labeled.add(id(k))
                labeled.add(id(v))
                kidx = emit(k, sf.L_KEY)
                if type(k) is str and key_written(k, self.code_names):
                    emit(v, sf.L_ITEM | self.label(k) << 3)
                else:
                    emit(v, sf.L_ITEM_OPAQUE | (kidx or 0) << 3)
            if tp is dict:
                return self.type_edge(tp, emit)
        elif kind in ("list", "tuple"):
            items = list(o) if tp is list or tp is tuple else (
                list.copy(o) if kind == "list" else tuple.__getitem__(o, slice(None)))
            labeled = set()
            for n, v in enumerate(items):
                labeled.add(id(v))
                emit(v, sf.L_INDEX | n << 3)
            if tp is list or tp is tuple:
                return self.type_edge(tp, emit)
        elif kind == "deque":
            # W4.5: deque_traverse visits the items last, left to right (3.13+:
            # after the type): the last len() referents are the items.
            refs = gc.get_referents(o)
            n = _LEN["deque"](o)
            if n <= len(refs):
                labeled = set()
                for k, v in enumerate(refs[len(refs) - n:]):
                    labeled.add(id(v))
                    emit(v, sf.L_INDEX | k << 3)
            self.bound(_DEQUE_MAXLEN(o))     # W10.3: the base type's getter
        elif kind == "module":
            md = _module_dict(o)
            for r in gc.get_referents(o):
                if r is md:
                    labeled = {id(r)}
                    emit(r, sf.L_ATTR | 1 << 3)
                    break
        elif kind == "type":
            # Static types too: their dict, mro and bases are real objects that
            # tp_traverse never shows (it only runs for heap types).
            labeled = set()
            refs = gc.get_referents(_TYPE_ATTR["__dict__"](o))
            fields = [(refs[0] if refs else None, "__dict__"),
                      (_TYPE_ATTR["__mro__"](o), "__mro__"),
                      (_TYPE_ATTR["__bases__"](o), "__bases__")]
            if _TYPE_ATTR["__flags__"](o) & TPFLAGS_HEAPTYPE:
                # A heap type stores its names as objects (a static type's are
                # C strings, made into new str objects on every read).
                fields += [(_TYPE_ATTR["__name__"](o), "__name__"),
                           (_TYPE_ATTR["__qualname__"](o), "__qualname__")]
            if reads.ON["type"]:
                # The dict of weak references to subclasses (W4.9), which
                # only __subclasses__() shows, as a new list.
                fields.append((reads.type_subclasses(o), reads.OWN_LABELS["__subclasses__"]))
            for obj, name in fields:
                if obj is not None:
                    labeled.add(id(obj))
                    emit(obj, sf.L_ATTR | self.label(name) << 3)
        elif kind == "code":
            # Code objects are not gc-tracked: tp_traverse shows nothing, yet
            # they hold constants, names and line tables (W4.8). The stored
            # fields that have a getter returning them, then, read by
            # address, the locals tables and what co_code and co_varnames
            # (...) cached: their getters would build new objects.
            labeled = set()
            fields = [(name, getattr(o, name)) for name in _CODE_FIELDS]
            if reads.ON["code"]:
                fields += reads.code_by_address(o)
            for name, obj in fields:
                if obj is not None:
                    labeled.add(id(obj))
                    emit(obj, sf.L_ATTR | self.label(name) << 3)
        elif kind == "function":
            labeled = set()
            for name in ("__code__", "__globals__", "__defaults__", "__kwdefaults__",
                         "__closure__"):
                obj = _FUNC_FIELDS[name](o)
                if obj is not None:
                    labeled.add(id(obj))
                    emit(obj, sf.L_ATTR | self.label(name) << 3)
        elif kind == "cell":
            labeled = set()
            for r in gc.get_referents(o):
                labeled.add(id(r))
                emit(r, sf.L_ATTR | self.label("cell_contents") << 3)
        elif kind == "frame":
            if id(o) in self.executing:
                return
            labeled = set()
            if self.may_materialize and o.f_code.co_flags & CO_OPTIMIZED:
                before = gc.get_referents(o)
                held = reads.frame_locals_field(o) if reads.ON["frame"] and PY < (3, 13) else 0
                loc = o.f_locals
                if type(loc) is dict and not any(loc is r for r in before) and id(loc) != held:
                    # Made by this read (3.10-3.12); a generator's frame object
                    # does not show the dict its generator holds (W4.11).
                    self.ignored.add(id(loc))
                for name, v in list(loc.items()):
                    labeled.add(id(v))
                    emit(v, sf.L_LOCAL | self.label(name) << 3)
            back = o.f_back
            if back is not None:
                labeled.add(id(back))
                emit(back, sf.L_ATTR | self.label("f_back") << 3)
        elif kind == "lru_cache":
            # tp_traverse visits (cached keys and results...), cache, func,
            # kwd_mark (a plain object()), two types, __dict__ (3.10-3.13).
            refs = gc.get_referents(o)
            for k in range(len(refs) - 3, -1, -1):
                if type(refs[k]) is dict and type(refs[k + 2]) is object:
                    labeled = {id(refs[k])}
                    emit(refs[k], sf.L_ATTR | self.label("__cache__") << 3)
                    if reads.ON["lru"]:      # W10.3 (-1: maxsize=None, unbounded)
                        self.bound(reads.lru_maxsize(o, refs[k], refs[k + 1]))
                    break
        elif kind == "instance":
            labeled = set()
            for name, member in ti.slots:
                try:
                    v = member.__get__(o, tp)
                except AttributeError:
                    continue
                labeled.add(id(v))
                emit(v, sf.L_ATTR | self.label(name) << 3)
                self.attr_bound(name, v)
            self.instance_dict(o, tp, ti, labeled, emit)
        # Every other reference, unlabeled, skipping what was labeled above.
        for r in gc.get_referents(o):
            if labeled is not None and id(r) in labeled:
                continue
            if r is tp and kind == "instance":
                emit(r, sf.L_ATTR | 2 << 3)
            else:
                emit(r, sf.L_NONE)
        # An object's type is a reference tp_traverse does not always show
        # (static types, C heap types); the first object of a type not yet
        # seen gets an edge to it, so types are reached and not "unreached".
        self.type_edge(tp, emit)

    def type_edge(self, tp, emit):
        tid = id(tp)
        if tid not in self.index and tid not in self.ignored:
            emit(tp, sf.L_ATTR | 2 << 3)

    def instance_dict(self, o, tp, ti, labeled, emit):
        """Label the instance's attributes without creating a __dict__ that did
        not exist (the __dict__ getter creates one on 3.11+, and for any type
        whose dict is still NULL). With pointer reads enabled (the hook does
        so when this walker is the one in use) the dict pointer itself says
        whether a dict exists, as in the compiled walker."""
        getter = ti.dict_getset
        if getter is None:
            return
        refs = gc.get_referents(o)
        if not reads.ON["dict"]:
            return self._instance_dict_guess(o, tp, ti, labeled, emit, refs)
        if not ti.managed:
            d = reads.dict_at_offset(o, ti.dictoffset)
            if d is not None and type(d) is dict and any(d is r for r in refs):
                labeled.add(id(d))
                emit(d, sf.L_ATTR | 1 << 3)
                self.dict_bound(d)
            return
        d, values_valid = reads.managed_dict(o, tp)
        if d is not None and type(d) is dict and any(d is r for r in refs):
            labeled.add(id(d))
            emit(d, sf.L_ATTR | 1 << 3)
            self.dict_bound(d)
            return
        if values_valid:
            if d is not None:
                items = list(dict.items(d))
            elif self.may_materialize:
                made = getter.__get__(o, tp)   # a throwaway fork child: harmless
                self.ignored.add(id(made))
                items = list(dict.items(made))
            else:
                items = ()
            self._emit_attrs(items, labeled, emit)
        if d is not None:
            # 3.13: a __dict__ made while the inline values stay valid.
            labeled.add(id(d))
            emit(d, sf.L_ATTR | 1 << 3)
            self.dict_bound(d)

    def _emit_attrs(self, items, labeled, emit):
        for name, v in items:
            labeled.add(id(v))
            if type(name) is str:
                emit(v, sf.L_ATTR | self.label(name) << 3)
            else:
                emit(v, sf.L_NONE)
            self.attr_bound(name, v)

    def _instance_dict_guess(self, o, tp, ti, labeled, emit, refs):
        """Without pointer reads: only what can be told without creating a dict."""
        getter = ti.dict_getset
        dicts = [r for r in refs if type(r) is dict]
        if not ti.managed:
            if not dicts:
                return  # no dict exists: reading __dict__ would create one
            d = getter.__get__(o, tp)
            if any(d is r for r in dicts):
                labeled.add(id(d))
                emit(d, sf.L_ATTR | 1 << 3)
                self.dict_bound(d)
            return
        if not self.may_materialize:
            return
        d = getter.__get__(o, tp)
        if any(d is r for r in dicts):
            labeled.add(id(d))
            emit(d, sf.L_ATTR | 1 << 3)
            self.dict_bound(d)
            return
        self.ignored.add(id(d))
        self._emit_attrs(list(dict.items(d)), labeled, emit)

    # -------------------------------------------------------------- bounds

    def bound(self, value):
        """W10.3: record the current object's bound, the first one found: an
        exact int, 0 <= value < 2**63 (None, negative: unbounded)."""
        if type(value) is int and 0 <= value < 1 << 63 and (
                not self.bounds or self.bounds[-1][0] != self.src):
            self.bounds.append([self.src, value])

    def attr_bound(self, name, value):
        if type(name) is str and _bound_name(name):
            self.bound(value)

    def dict_bound(self, d):
        if type(d) is not dict or (self.bounds and self.bounds[-1][0] == self.src):
            return
        for name, value in dict.items(d):
            self.attr_bound(name, value)

    def trailer(self):
        return {
            "objects": self.next, "edges": self.nedges, "roots": self.roots,
            "strings": self.strings_count, "string_bytes": self.string_bytes,
            "types": self.type_names, "type_kinds": self.type_kinds,
            "labels": self.label_list, "sites": self.site_list,
            "python_heap": self.heap_bytes,
        } | ({"bounds": self.bounds} if self.bounds else {})


_TYPE_ATTR = reads.TYPE_ATTR

_CODE_FIELDS = ("co_consts", "co_names", "co_filename", "co_name", "co_qualname",
                "co_linetable", "co_exceptiontable")

_FUNC_FIELDS = {
    "__code__": lambda f: f.__code__,
    "__globals__": lambda f: f.__globals__,
    "__defaults__": lambda f: f.__defaults__,
    "__kwdefaults__": lambda f: f.__kwdefaults__,
    "__closure__": lambda f: f.__closure__,
}


def _slot_names(t):
    """The (mangled) names in a class's __slots__: its object members. Other
    member descriptors of C heap types can be ints or offsets. __slots__ is
    read only when it is a str or a builtin collection: iterating anything
    else could run the program's code (W1.2); such a class's slots stay
    unlabeled."""
    slots = _TYPE_ATTR["__dict__"](t).get("__slots__", ())
    if type(slots) is str:
        slots = (slots,)
    if type(slots) not in (tuple, list, dict, set, frozenset):
        return set()
    names = [n for n in slots if type(n) is str]
    qual = _TYPE_ATTR["__name__"](t).lstrip("_")
    out = set()
    for n in names:
        if n.startswith("__") and not n.endswith("__") and qual:
            n = f"_{qual}{n}"
        out.add(n)
    return out


def _module_dict(m):
    return types.ModuleType.__dict__["__dict__"].__get__(m)


def _bound_name(name):
    """An attribute that holds a bound (WALK.md W10.3): maxsize or maxlen,
    alone, after one underscore, or private to a class (cachetools keeps
    _Cache__maxsize).

    >>> [_bound_name(n) for n in ("maxsize", "_maxlen", "_Cache__maxsize", "max_size", "__maxsize")]
    [True, True, True, False, False]
    """
    if not name.isascii():
        return False
    for suffix in ("maxsize", "maxlen"):
        if name.endswith(suffix):
            p = name[:-len(suffix)]
            return p in ("", "_") or (len(p) >= 4 and p[0] == "_" and p[1] != "_"
                                      and p.endswith("__"))
    return False
