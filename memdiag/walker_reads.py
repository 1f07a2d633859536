"""Reads by address for the pure-Python walker (memdiag/walker.py, WALK.md W8).

Some fields can be read without creating objects only by reading the
object's memory (WALK.md W8): whether an instance __dict__ exists (the dict
pointer), a str's interning bits, the fields of code objects and types that
have no getter or whose getter builds a new object, whether a generator
frame's f_locals dict existed. The hook enables these reads (importing
_ctypes once, at install) when this walker is the one in use; the compiled
walker reads the same fields directly. Each group is used only if a probe at
enable time finds the layout written here (from the version's headers); on a
free-threaded or debug build, or a layout not listed, the walker does what
it can without that group.

    >>> enable_pointer_reads(), pointer_reads()["intern"]
    (True, True)
"""

from __future__ import annotations

import functools
import gc
import sys

PY = sys.version_info[:2]
# Getters of type's own fields: they run no code of a metaclass (W1.2).
TYPE_ATTR = {name: type.__dict__[name].__get__
             for name in ("__flags__", "__dict__", "__mro__", "__bases__", "__name__",
                          "__qualname__", "__basicsize__", "__dictoffset__", "__base__")}

# Labels of fields read by address, which name no attribute: made from strs
# of memdiag's own, never interned nor constants (the compiled walker's are
# its own copies too), so that they are ignored with the label table and
# nothing else.
OWN_LABELS = {name: "".join(list(name)) for name in (
    "co_localsplusnames", "co_localspluskinds", "__subclasses__")}

_read_word = None
_read_byte = None
_object_at = None
tracemalloc_lookup = None
INLINE_VALUES = 1 << 2      # 3.13+ Py_TPFLAGS_INLINE_VALUES
STATIC_BUILTIN = 1 << 1     # 3.12+ _Py_TPFLAGS_STATIC_BUILTIN
WORD = 8 if sys.maxsize > 2 ** 32 else 4

# Which groups of reads passed their probe (see pointer_reads()).
ON = {"intern": False, "dict": False, "code": False, "type": False, "frame": False,
       "lru": False}
# The versions whose headers the layouts below were read from. The probes
# dereference a pointer only after the fields around it held the objects
# they should; on another version those groups stay off.
_LAYOUT_KNOWN = (3, 11) <= PY <= (3, 15)

# PyASCIIObject: ob_refcnt, ob_type, length, hash, then the state bit field,
# whose two lowest bits say "interned" (3.11-3.15, cpython/unicodeobject.h).
_STR_STATE_OFFSET = 4 * WORD
# PyCodeObject (cpython/code.h), word indexes after PyObject_VAR_HEAD (3
# words); the same in 3.11-3.15 from co_consts to co_linetable.
_CODE_WORDS = {"co_consts": 3, "co_names": 4, "co_exceptiontable": 5,
               "co_localsplusnames": 12, "co_localspluskinds": 13, "co_filename": 14,
               "co_name": 15, "co_qualname": 16, "co_linetable": 17}
# 3.11: PyObject *_co_code; 3.12: _PyCoCached *_co_cached (_co_code,
# _co_varnames, _co_cellvars, _co_freevars); 3.13+: co_executors comes first.
_CODE_CACHED = 19 if PY <= (3, 12) else 20
_CACHED_NAMES = ("co_code",) if PY == (3, 11) else (
    "co_code", "co_varnames", "co_cellvars", "co_freevars")
# PyTypeObject (cpython/object.h), word indexes; the same in 3.11-3.15.
_TYPE_WORDS = {"tp_basicsize": 4, "tp_flags": 21, "tp_base": 32, "tp_bases": 42,
               "tp_mro": 43, "tp_subclasses": 45}
# PyFrameObject.f_frame (after ob_refcnt, ob_type, f_back), and in the
# _PyInterpreterFrame it points to: f_code, f_locals, frame_obj (3.11, 3.12;
# internal/pycore_frame.h).
# functools._lru_cache_wrapper (Modules/_functoolsmodule.c, lru_cache_object),
# word indexes: the root link (PyObject_HEAD, prev, next, hash, key, result),
# wrapper, typed, then these; the same in 3.11-3.15.
_LRU_WORDS = {"cache": 9, "func": 11, "maxsize": 12}
_FRAME_F_FRAME = 3
_IFRAME_WORDS = {(3, 11): (4, 3, 5), (3, 12): (0, 5, 6)}.get(PY)


def enable_pointer_reads():
    """Turn on the reads by address; True if _ctypes is there (each group of
    reads also needs its probe to pass: pointer_reads() says which did).

    The reads use the _ctypes extension, not the ctypes package: on 3.14
    ctypes imports sysconfig, which imports threading, and a program that
    never imported threading must not find it in sys.modules because of the
    hook.

    >>> enable_pointer_reads()
    True
    """
    global _read_word, _read_byte, _object_at
    if _read_word is not None:
        return True
    try:
        import _ctypes
    except Exception:  # pragma: no cover - no _ctypes: the guessing path
        return False
    if "t" in getattr(sys, "abiflags", ""):
        return False    # free-threaded: another object header (not probed)
    word, byte, pyobj = _simple_types(_ctypes)
    _read_word = lambda addr: word.from_address(addr).value  # noqa: E731
    _read_byte = lambda addr: byte.from_address(addr).value  # noqa: E731
    # The object whose address is addr: a word holding addr, read as a
    # PyObject* (from_buffer keeps the word alive while it is read).
    _object_at = lambda addr: pyobj.from_buffer(word(addr)).value  # noqa: E731
    for name, probe in (("intern", _probe_intern), ("dict", _probe_dict),
                        ("code", _probe_code), ("type", _probe_type),
                        ("frame", _probe_frame), ("lru", _probe_lru)):
        try:
            ON[name] = bool(probe(_ctypes))
        except Exception:
            ON[name] = False
    _enable_site_lookup()
    return True


def _simple_types(_ctypes):
    """(word, byte, pyobj): the ctypes package's c_size_t, c_uint8 and
    py_object, made from _ctypes the way that package makes them.

    >>> word, byte, pyobj = _simple_types(__import__("_ctypes"))
    >>> word(7).value, pyobj.from_buffer(word(id(len))).value is len
    (7, True)
    """
    class pyobj(_ctypes._SimpleCData):
        _type_ = "O"

    class byte(_ctypes._SimpleCData):
        _type_ = "B"

    for code in "LQ":   # unsigned long, else unsigned long long: size_t's size
        class word(_ctypes._SimpleCData):
            _type_ = code
        if _ctypes.sizeof(word) == WORD:
            break
    return word, byte, pyobj


def pointer_reads():
    """Which groups of reads by address are on: {"intern", "dict", "code",
    "type", "frame", "lru"} -> bool (all False until enable_pointer_reads())."""
    return dict(ON)


def _probe_intern(_ctypes):
    """The state bits tell an interned str from a fresh one."""
    fresh = "".join(["memdiag_", "intern_probe"])
    known = sys.intern("__dict__")
    state = lambda s: _read_byte(id(s) + _STR_STATE_OFFSET) & 3  # noqa: E731
    return state(known) != 0 and state(fresh) == 0


def _probe_dict(_ctypes):
    """The managed dict pointer of an instance whose __dict__ was made."""
    if not _LAYOUT_KNOWN:
        return False
    probe = _Probe()
    d = probe.__dict__
    return _read_word(id(probe) - 3 * WORD) == id(d)   # no cycle: both go now


class _Probe:
    pass


def _probe_code_source(a):
    b = [a]

    def inner():
        return b
    return inner


def _probe_code(_ctypes):
    """The stored fields of a code object are where _CODE_WORDS says, its
    locals tables are a tuple of its variable names and a bytes as long, and
    the cached co_code is the object the getter returns. (It makes no
    gc-tracked object that would stay: the co_varnames getter would cache a
    new tuple on memdiag's code, to be walked as unreached.)"""
    if not _LAYOUT_KNOWN:
        return False
    for co in (_probe_code_source.__code__, _probe_code_source(0).__code__):
        base = id(co)
        for name in ("co_consts", "co_names", "co_exceptiontable", "co_filename",
                     "co_name", "co_qualname", "co_linetable"):
            if _read_word(base + _CODE_WORDS[name] * WORD) != id(getattr(co, name)):
                return False
        names = _read_word(base + _CODE_WORDS["co_localsplusnames"] * WORD)
        kinds = _read_word(base + _CODE_WORDS["co_localspluskinds"] * WORD)
        if not names or _read_word(names + WORD) != id(tuple):
            return False
        if not kinds or _read_word(kinds + WORD) != id(bytes):
            return False
        names, kinds = _object_at(names), _object_at(kinds)
        if len(names) != len(kinds) or not names:
            return False
        for i, n in enumerate(names):
            if co._varname_from_oparg(i) is not n:
                return False
        try:
            co._varname_from_oparg(len(names))
            return False
        except IndexError:
            pass
        code = co.co_code
        cached = _code_cached(co)
        if not cached or cached[0] != ("co_code", code):
            return False
        if cached[0][1] is not code:
            return False
    return True


def _probe_type(_ctypes):
    """The fields of a type that has subclasses are where _TYPE_WORDS says,
    and tp_subclasses is a dict keyed by the subclasses' addresses."""
    if not _LAYOUT_KNOWN:
        return False
    t = _ctypes._SimpleCData
    base = id(t)
    w = {name: _read_word(base + i * WORD) for name, i in _TYPE_WORDS.items()}
    if (w["tp_basicsize"] != TYPE_ATTR["__basicsize__"](t)
            or w["tp_flags"] != TYPE_ATTR["__flags__"](t)
            or w["tp_base"] != id(TYPE_ATTR["__base__"](t)) or w["tp_bases"] != id(TYPE_ATTR["__bases__"](t))
            or w["tp_mro"] != id(TYPE_ATTR["__mro__"](t))):
        return False
    subs = type_subclasses(t)
    return type(subs) is dict and all(id(s) in subs for s in type.__subclasses__(t))


def _probe_frame(_ctypes):
    """3.11-3.12: a generator frame's _PyInterpreterFrame holds its code,
    its f_locals dict and its frame object where _IFRAME_WORDS says."""
    if _IFRAME_WORDS is None:
        return _LAYOUT_KNOWN    # 3.13+: f_locals is a proxy, nothing to tell

    def gen():
        x = [1]
        yield x
    g = gen()
    next(g)
    f = g.gi_frame
    loc = f.f_locals
    fr = _read_word(id(f) + _FRAME_F_FRAME * WORD)
    code_i, locals_i, obj_i = _IFRAME_WORDS
    ok = bool(fr) and (_read_word(fr + code_i * WORD) == id(f.f_code)
                       and _read_word(fr + obj_i * WORD) == id(f)
                       and _read_word(fr + locals_i * WORD) == id(loc))
    # Let go of the frame object before the generator ends: a frame object
    # still held then would get an f_back (this function's frame, which
    # holds it): a cycle left to the collector.
    del f, loc
    g.close()
    return ok


def _probe_lru_function(x):
    return x


def _probe_lru(_ctypes):
    """An lru_cache wrapper's cache, function and maxsize are where
    _LRU_WORDS says (maxsize None is -1)."""
    if not _LAYOUT_KNOWN:
        return False
    for maxsize, want in ((77, 77), (None, -1), (0, 0)):
        wrapper = functools.lru_cache(maxsize=maxsize)(_probe_lru_function)
        refs = gc.get_referents(wrapper)
        for k in range(len(refs) - 3, -1, -1):
            if type(refs[k]) is dict and type(refs[k + 2]) is object:
                break
        else:
            return False
        if refs[k + 1] is not _probe_lru_function or lru_maxsize(
                wrapper, refs[k], refs[k + 1]) != want:
            return False
    return True


def lru_maxsize(o, cache, func):
    """An lru_cache wrapper's maxsize (-1: None), None if its fields are not
    the cache and function given."""
    base = id(o)
    if (_read_word(base + _LRU_WORDS["cache"] * WORD) != id(cache)
            or _read_word(base + _LRU_WORDS["func"] * WORD) != id(func)):
        return None
    v = _read_word(base + _LRU_WORDS["maxsize"] * WORD)
    return v - (1 << (8 * WORD)) if v >> (8 * WORD - 1) else v


def _enable_site_lookup():
    """3.11: tracemalloc._get_object_traceback misses objects with a managed
    dict (it forgets the two pointers before their GC header); look their
    block up with the C function it calls, through the ctypes package (which
    on 3.11 imports neither sysconfig nor threading)."""
    global tracemalloc_lookup
    if PY != (3, 11):
        return
    try:
        import ctypes
        f = ctypes.pythonapi._PyTraceMalloc_GetTraceback
    except Exception:   # no ctypes, or no such symbol: sites of those objects go
        return
    f.restype = ctypes.py_object
    f.argtypes = (ctypes.c_uint, ctypes.c_size_t)
    tracemalloc_lookup = f


def is_interned(s):
    return bool(_read_byte(id(s) + _STR_STATE_OFFSET) & 3)


def _code_cached(co):
    """[(label, object)]: what co's getters cached (3.11: co_code; 3.12+ also
    co_varnames, co_cellvars, co_freevars), in that order."""
    p = _read_word(id(co) + _CODE_CACHED * WORD)
    if not p:
        return []
    if PY == (3, 11):
        return [("co_code", _object_at(p))]
    out = []
    for k, name in enumerate(_CACHED_NAMES):
        q = _read_word(p + k * WORD)
        if q:
            out.append((name, _object_at(q)))
    return out


def code_by_address(co):
    """[(label, object)]: the fields of a code object only a read by address
    gives without making objects (WALK.md W4.8): its locals' names and kinds,
    then what its getters cached."""
    out = []
    for name in ("co_localsplusnames", "co_localspluskinds"):
        p = _read_word(id(co) + _CODE_WORDS[name] * WORD)
        if p:
            out.append((OWN_LABELS[name], _object_at(p)))
    return out + _code_cached(co)


def localsplusnames(co):
    """The names of a code object's local, cell and free variables
    (co_localsplusnames), without the getters, which cache new tuples on the
    code object (3.12+)."""
    if ON["code"]:
        p = _read_word(id(co) + _CODE_WORDS["co_localsplusnames"] * WORD)
        return _object_at(p) if p else ()
    out = []
    while True:
        try:
            out.append(co._varname_from_oparg(len(out)))
        except IndexError:
            return out


def type_subclasses(t):
    """A type's tp_subclasses dict (WALK.md W4.9), None if it has none: a
    static builtin type's (3.12+) is an index into the interpreter's table."""
    if PY >= (3, 12) and TYPE_ATTR["__flags__"](t) & STATIC_BUILTIN:
        return None
    p = _read_word(id(t) + _TYPE_WORDS["tp_subclasses"] * WORD)
    if p and _read_word(p + WORD) == id(dict):
        return _object_at(p)
    return None


def frame_locals_field(f):
    """3.11-3.12: the address in the f_locals field of frame object f's
    interpreter frame (0: none yet; reading f.f_locals would make one)."""
    fr = _read_word(id(f) + _FRAME_F_FRAME * WORD)
    return _read_word(fr + _IFRAME_WORDS[1] * WORD) if fr else 0


def dict_at_offset(o, dictoffset):
    """The dict in a non-managed instance's dict slot, None if there is none."""
    if dictoffset <= 0:
        return None   # no slot, or a var-sized layout: left to tp_traverse
    p = _read_word(id(o) + dictoffset)
    return _object_at(p) if p else None


def managed_dict(o, tp):
    """(dict or None, whether inline values hold the attributes) on 3.11+.
    The dict pointer is 3 words before the object (MANAGED_DICT_OFFSET,
    internal/pycore_object.h, 3.11-3.15 GIL builds)."""
    base = id(o)
    if PY == (3, 11):
        p = _read_word(base - 3 * WORD)
        if p:
            return _object_at(p), False
        return None, bool(_read_word(base - 4 * WORD))
    if PY == (3, 12):
        p = _read_word(base - 3 * WORD)
        if p & 1:
            return None, True
        return (_object_at(p) if p else None), False
    # 3.13+: PyDictValues after the object (tp_basicsize); byte 3 is "valid".
    p = _read_word(base - 3 * WORD)
    valid = False
    if TYPE_ATTR["__flags__"](tp) & INLINE_VALUES:
        valid = bool(_read_byte(base + TYPE_ATTR["__basicsize__"](tp) + 3))
    return (_object_at(p) if p else None), valid
