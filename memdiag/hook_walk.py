"""What the walk starts from, what it skips, and running it.

The roots are the modules in sys.modules, by name, and the threads' stacks
(hook_capture). The seeds of the ignore set are the hook's state, memdiag's
own modules with their namespaces, functions and classes, and what the
caller adds (the capture, the writer, the file); the walker ignores
everything only they reach, so the hook never shows in its own snapshot.

The compiled walker (memdiag._walker) walks when one built for this
interpreter loads, and MEMDIAG_PURE_PYTHON=1 does not refuse it; memdiag.walker,
pure Python, otherwise. It is looked for next to this module (built with the
install), then in the walker cache (walker_cache: built by `memdiag
build-walker` for a Python other than the CLI's; `memdiag run` names the
cache in $MEMDIAG_WALKER_CACHE, `memdiag attach` calls use_cache()).
pure_reason() says in one line why the pure-Python walker walks, and what to do.

Nothing here runs code of the target's objects: a sys.modules key counts
only when it is an exact str, and namespaces and owners are read through
the descriptors of `module` and `type` themselves, never through a
__getattribute__, property or dict subclass of the target's.

    >>> [name for name, _ in module_roots() if name == "sys"]
    ['sys']
"""

from __future__ import annotations

import os
import sys
import types

from . import walker as pywalker
from . import walker_cache, walker_reads
from .hook_state import state

cwalker = None           # the compiled walker's module, when one loaded
cwalker_path = None      # the file it was loaded from
cwalker_error = None     # why a compiled walker that was found did not load
cwalker_missing = None   # why none was found (it was not built for this Python)


def _import_compiled():
    """The compiled walker next to this module, else the cached one."""
    global cwalker, cwalker_path, cwalker_error, cwalker_missing
    try:
        from . import _walker
    except Exception as e:  # pragma: no cover - exercised by the fallback tests
        import importlib.machinery
        here = os.path.dirname(os.path.abspath(__file__))
        if any(os.path.exists(os.path.join(here, "_walker" + suffix))
               for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            cwalker_error = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return
        use_cache(None)
        return
    cwalker, cwalker_path = _walker, getattr(_walker, "__file__", None)


def use_cache(root):
    """Load the compiled walker from the walker cache at root (None: the
    default, walker_cache.cache_root()) unless one is loaded already."""
    global cwalker, cwalker_path, cwalker_error, cwalker_missing
    if cwalker is not None:
        return
    root = root or walker_cache.cache_root()
    try:
        cwalker = walker_cache.load(__package__, root)
    except walker_cache.Missing:
        cwalker_missing = (f"no compiled walker for Python {sys.version_info[0]}."
                           f"{sys.version_info[1]} next to the hook or in {root}; build it: "
                           f"memdiag build-walker --python {sys.executable or 'PYTHON'}")
        return
    except walker_cache.Unavailable as e:
        cwalker_error = f"{e}; remove it and run `memdiag build-walker --force --python " \
                        f"{sys.executable or 'PYTHON'}`"
        return
    except Exception as e:  # never keep the program from starting
        cwalker_error = f"the walker cache {root} failed: {type(e).__name__}: {e}"
        return
    cwalker_path, cwalker_error, cwalker_missing = cwalker.__file__, None, None


_import_compiled()

_MODULE_DICT = types.ModuleType.__dict__["__dict__"]
_TYPE_DICT = type.__dict__["__dict__"]
_TYPE_MODULE = type.__dict__["__module__"]
_TYPE_MRO = type.__dict__["__mro__"]


def compiled():
    """Whether the compiled walker walks (and captures): built, and not
    refused with MEMDIAG_PURE_PYTHON=1, which forces the pure-Python capture
    and walk both, the path a target takes where it is not built."""
    return cwalker is not None and not os.environ.get("MEMDIAG_PURE_PYTHON")


def pure_reason():
    """Why the pure-Python walker walks in this process, in one line with the
    fix; None when the compiled one does."""
    if compiled():
        return None
    if cwalker is not None:
        return "MEMDIAG_PURE_PYTHON is set in the program's environment"
    return cwalker_error or cwalker_missing or "the compiled walker did not load"


def prepare():
    """Import now what a snapshot needs, so that the forked child imports
    nothing: a module imported there would appear in its snapshot."""
    if not compiled():
        # The pure-Python walker tells an existing instance __dict__ from
        # inline values by reading the dict pointer (_ctypes, imported once now).
        walker_reads.enable_pointer_reads()


# --------------------------------------------- reading without running code

def module_dict(mod):
    """A module's namespace, also of a module subclass that overrides
    __getattribute__; mod must be a module."""
    return _MODULE_DICT.__get__(mod)


def dict_descriptor(cls):
    """The __dict__ descriptor that instances of cls get their dict from, found
    in the namespaces of cls and its bases (no code of cls runs), or None."""
    for klass in _TYPE_MRO.__get__(cls):
        d = _TYPE_DICT.__get__(klass).get("__dict__")
        if type(d) is types.GetSetDescriptorType:
            return d
    return None


def plain_attr(obj, descriptor, name):
    """What obj.__dict__[name] holds, read without running code of obj's
    class (no __getattribute__, property or dict subclass) and without
    making obj's __dict__ (3.11+ keeps attributes inline until something asks
    for __dict__: asking would add a dict to the program); None when obj is
    not an instance of the class that has `descriptor` (from
    dict_descriptor), when a class of obj defines `name` itself, or when obj
    lacks the attribute.

    >>> class T: pass
    >>> t = T(); t._name = "x"
    >>> plain_attr(t, dict_descriptor(T), "_name"), plain_attr(t, dict_descriptor(T), "ident")
    ('x', None)
    """
    mro = _TYPE_MRO.__get__(type(obj))
    if getattr(descriptor, "__objclass__", None) not in mro:
        return None
    for klass in mro:
        if name in _TYPE_DICT.__get__(klass):
            return None
    try:
        # the generic lookup: with no class attribute of that name, it reads
        # the instance alone (inline values, or its dict if it has one)
        return object.__getattribute__(obj, name)
    except AttributeError:
        return None


def is_module(obj):
    return issubclass(type(obj), types.ModuleType)


# ------------------------------------------------------------ roots, ignores

def is_own_name(name):
    """Whether name is one of memdiag's modules: memdiag, memdiag.*, or the
    private name `memdiag run` loads the hook under (_memdiag_hook)."""
    return type(name) is str and (name == "memdiag" or name.startswith(("memdiag.", "_memdiag")))


def own_modules():
    """[(name, module)] of memdiag's modules in sys.modules."""
    return [(name, mod) for name, mod in list(sys.modules.items())
            if is_own_name(name) and is_module(mod)]


def ignore_seeds(extra):
    """The hook's objects the walk must not show, plus `extra` (a new list)."""
    seeds = [state]
    if state.watcher is not None:
        # threading's registry of threads reaches it; ignore it up front.
        seeds += [state.watcher, state.watcher.__dict__]
    for _, mod in own_modules():
        seeds.append(mod)
        namespace = module_dict(mod)
        if type(namespace) is not dict:
            continue
        seeds.append(namespace)
        for v in list(namespace.values()):
            if type(v) is types.FunctionType:
                owner = v.__module__
            elif issubclass(type(v), type):
                try:
                    owner = _TYPE_MODULE.__get__(v)
                except AttributeError:
                    continue
            else:
                continue
            if is_own_name(owner):
                seeds.append(v)
    seeds.extend(extra)
    return seeds


def module_roots():
    """[(name, module)] of sys.modules by name: exact str keys, values other
    than None, memdiag's own left out, each object once (under its first name)."""
    own = {id(m) for _, m in own_modules()}
    named = [(name, mod) for name, mod in list(sys.modules.items())
             if type(name) is str and mod is not None and id(mod) not in own]
    named.sort(key=_by_name)
    seen = set()
    roots = []
    for name, mod in named:
        if id(mod) not in seen:
            seen.add(id(mod))
            roots.append((name, mod))
    return roots


def _by_name(item):
    return item[0]


# ------------------------------------------------------------------ walking

def walk(writer, capture, strings, trace, may_materialize, extra_ignore):
    """Walk the heap into a snapfile.Writer; returns {"trailer", "walker", ...}.

    may_materialize: this process is a throwaway fork child, where the pure
    walker may create an instance __dict__ to read attribute names.
    """
    modules = module_roots()
    ignore = ignore_seeds([capture, writer.__dict__, writer.pending, writer.counts,
                           modules, *extra_ignore])
    ignore.append(ignore)  # the list is the hook's too: not an unreached object
    try:
        if compiled():
            result = cwalker.walk(writer, modules, capture["stack_roots"],
                                  capture["thread_roots"], ignore, capture["frames"],
                                  strings, trace, may_materialize)
            trailer = result["trailer"]
            trailer["types"] = [pywalker.type_name(t) for t in result.pop("type_objects")]
            return result
        w = pywalker.PyWalker(writer, strings=strings, trace=trace,
                              may_materialize=may_materialize)
        # Not `ignore + [w]`: that new list, seen as unreached, would land in
        # w.objs and make w (which holds every object) part of a cycle. w
        # ignores itself.
        w.run(modules, capture["stack_roots"], capture["thread_roots"], ignore,
              capture["frames"])
        return {"trailer": w.trailer(), "walker": "python"}
    finally:
        ignore.clear()     # no self-reference left behind
