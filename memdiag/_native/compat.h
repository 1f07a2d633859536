/* memdiag/_native/compat.h: what the walker reads of CPython's internals,
 * one file per Python version.
 *
 * Every difference between Python versions, every name CPython keeps private
 * (_Py...) and every field of an internal structure (frames, dict keys and
 * values, the gc's lists, code object caches) is read here, through the
 * accessors below; the rest of memdiag/_native/ has no version conditional
 * and no _Py name (tests/test_native.py checks both).  This header picks
 * py3NN.h for the Python being built against; each defines every accessor
 * for its version (py314.h: 3.14 and 3.15, whose few differences it holds).
 * Supporting a new version: check each read below against that version's
 * Include/internal/ headers, then either widen the newest header's range
 * here (a few differences, as conditionals inside it) or start a new
 * py3NN.h from the newest one, with its line in the #if chain.
 *
 * The version-specific reads, by accessor (all in py311.h, py312.h,
 * py313.h, py314.h):
 *
 * Strings and ints
 *   md_str_ready            3.11: PyUnicode_IS_READY (legacy strs); 3.12+: always
 *   md_str_legacy_length    3.11: PyUnicode_WSTR_LENGTH of a str not ready
 *   md_str_interned         PyUnicode_CHECK_INTERNED (the interned state)
 *   md_str_sizeof           str.__sizeof__ of a compact str: PyASCIIObject /
 *                           PyCompactUnicodeObject sizes, the utf8 cache
 *                           (utf8, utf8_length); 3.11: the wstr cache
 *   md_int_sizeof           int.__sizeof__: 3.11 ob_size and ob_digit;
 *                           3.12+ long_value.lv_tag and long_value.ob_digit
 * Objects and types
 *   md_preheader_size       what sys.getsizeof adds: _PyType_PreHeaderSize;
 *                           3.13: nothing for a static type object
 *   md_preheader_of_flags   the same from type flags (a __sizeof__ in Python):
 *                           3.11 managed dict; 3.12+ managed dict or weakref
 *   md_is_gc                _PyObject_IS_GC
 *   md_type_dict            3.11 tp_dict; 3.12+ _PyType_GetDict (static
 *                           builtin types keep theirs in the interpreter)
 *   md_type_subclasses      3.11 tp_subclasses; 3.12+ not for static builtin
 *                           types (_Py_TPFLAGS_STATIC_BUILTIN: an index)
 *   md_module_dict          PyModuleObject.md_dict (pycore_moduleobject.h)
 *   md_dict_sizeof          _PyDict_SizeOf
 *   md_code_cached          what code object getters cached: 3.11 _co_code;
 *                           3.12+ _co_cached (co_code, varnames, cellvars,
 *                           freevars)
 *   md_lru_maxsize          functools._lru_cache_wrapper's maxsize
 *                           (_functoolsmodule.c lru_cache_object: after the
 *                           root link, wrapper, typed, cache, hits, func);
 *                           the same in every version: defined below, here
 * Instance attributes (3.11+ managed dicts and inline values; PyDictValues
 * is MdValues, PyDictKeysObject MdKeys)
 *   md_managed_dict         the managed dict and the inline values: 3.11
 *                           _PyObject_ManagedDictPointer/_PyObject_ValuesPointer;
 *                           3.12 _PyObject_DictOrValuesPointer; 3.13
 *                           PyManagedDictPointer.dict, _PyObject_InlineValues
 *                           and PyDictValues.valid (Py_TPFLAGS_INLINE_VALUES)
 *   md_values_count         values in insertion order: 3.11-3.12 the size
 *   md_values_order           byte and order bytes before the values; 3.13
 *                           PyDictValues.size/capacity, the order array
 *   md_values_item          PyDictValues.values[i]
 *   md_values_array, md_values_visited
 *                           the values array, and how many of its entries
 *                           subtype_traverse visits: 3.11-3.12 the shared
 *                           keys' dk_nentries; 3.13 capacity
 *   md_shared_keys          PyHeapTypeObject.ht_cached_keys when DK_IS_UNICODE
 *   md_shared_key_name      DK_UNICODE_ENTRIES(keys)[i].me_key, dk_nentries
 *   md_prefetch_values      where the values are (3.11-3.12; 3.13 inline)
 * Frames (_PyInterpreterFrame is MdFrame)
 *   md_thread_frame         3.11-3.12 tstate->cframe->current_frame;
 *                           3.13 tstate->current_frame
 *   md_thread_local_sentinel 3.13 tstate->threading_local_sentinel
 *   md_frameobj_frame       PyFrameObject.f_frame
 *   md_frameobj_owns        the frame data inside the frame object (_f_frame_data)
 *   md_frameobj_back        PyFrameObject.f_back
 *   md_frameobj_lineno      PyFrameObject.f_lineno
 *   md_frame_code           3.11-3.12 f_code; 3.13 f_executable (if code);
 *                           3.14+ a _PyStackRef (md_stackref_object: its
 *                           bits, no PyStackRef helper that increfs)
 *   md_frame_object         frame_obj
 *   md_frame_previous       previous
 *   md_frame_locals_dict    f_locals
 *   md_frame_globals        f_globals
 *   md_frame_line           3.11 PyCode_Addr2Line of the last instruction;
 *                           3.12+ PyUnstable_InterpreterFrame_GetLine
 *   md_frame_by_generator   owner == FRAME_OWNED_BY_GENERATOR
 *   md_frame_by_thread      owner == FRAME_OWNED_BY_THREAD
 *   md_frame_is_shim        3.12-3.13 owner == FRAME_OWNED_BY_CSTACK; 3.14+
 *                           owner >= FRAME_OWNED_BY_INTERPRETER
 *   md_frame_incomplete     _PyFrame_IsIncomplete
 *   md_frame_generator      the generator holding the frame (gi_iframe)
 *   MD_FRAME_SIZE, MD_GEN_FRAME_OFFSET  sizeof(_PyInterpreterFrame),
 *                           offsetof(PyGenObject, gi_iframe) (3.14+:
 *                           pycore_interpframe_structs.h)
 *   md_frame_locals         the locals in f_locals' order, without making
 *                           it: co_localsplusnames/kinds, localsplus, cells;
 *                           3.11-3.12 (PyFrame_FastToLocals): stacktop, the
 *                           closure before COPY_FREE_VARS (f_func/f_funcobj,
 *                           the first opcode), whether MAKE_CELL ran
 *                           (prev_instr, _co_firsttraceable, opcodes and
 *                           EXTENDED_ARG), 3.12 CO_FAST_HIDDEN last; 3.13+
 *                           (FrameLocalsProxy): f_extra_locals; 3.14+
 *                           localsplus of _PyStackRefs, kinds with
 *                           CO_FAST_ARG_* bits
 * The garbage collector
 *   md_interned_table       3.14+ interp->cached_objects.interned_strings, a
 *                           dict the collector tracks there (never a root)
 *   md_gc_lists, MD_GC_LISTS
 *                           the generation lists and the permanent one:
 *                           interp->gc.generations[], permanent_generation;
 *                           3.14 with the incremental collector: young,
 *                           old[2] in gc.get_objects() order (visited_space)
 *   md_gc_permanent_list    interp->gc.permanent_generation
 *   md_gc_next, md_gc_tracked, md_gc_head, md_gc_object
 *                           _PyGCHead_NEXT (3.14+: _gc_next without its
 *                           flag bits), _PyObject_GC_IS_TRACKED, the
 *                           PyGC_Head before a gc object
 * tracemalloc
 *   md_object_traceback     3.11: _PyTraceMalloc_GetTraceback at the block
 *                           start (its _get_object_traceback forgets the
 *                           managed dict pointers); 3.12+ the module function
 */
#ifndef MD_COMPAT_H
#define MD_COMPAT_H

#define PY_SSIZE_T_CLEAN
#define Py_BUILD_CORE_MODULE 1
#include <Python.h>
#include <structmember.h>
#include <stddef.h>
#include <stdint.h>

/* md_frame_locals' callback: 0 to go on, -1 to stop with an error. */
typedef int (*md_locals_cb)(void *ctx, PyObject *name, PyObject *value);

/* One refusal, and nothing else compiled after it: a free-threaded build
 * (python3.14t) changes the object header, the gc and the frames. */
#if defined(Py_GIL_DISABLED)
#  error "memdiag._walker needs CPython's default (GIL) build, not a free-threaded one (3.13t, 3.14t, ...): memdiag uses its pure-Python walker there"
#elif defined(Py_LIMITED_API)
#  error "memdiag._walker reads CPython's internals: it cannot be built for the limited API"
#elif PY_VERSION_HEX < 0x030B0000
#  error "memdiag._walker supports CPython 3.11 to 3.15 (the pure-Python walker serves older ones)"
#elif PY_VERSION_HEX < 0x030C0000
#  include "py311.h"
#elif PY_VERSION_HEX < 0x030D0000
#  include "py312.h"
#elif PY_VERSION_HEX < 0x030E0000
#  include "py313.h"
#elif PY_VERSION_HEX < 0x03100000
#  include "py314.h"
#else
#  error "memdiag._walker supports CPython 3.11 to 3.15: no memdiag/_native/py3NN.h for this Python yet"
#endif

/* ---------------------------------------------------- functools.lru_cache */

/* functools._lru_cache_wrapper (Modules/_functoolsmodule.c,
 * lru_cache_object), the same in 3.11 to 3.15 up to maxsize: the embedded
 * root link (PyObject_HEAD, prev, next, hash, key, result), wrapper, typed,
 * cache, hits, func, maxsize. A version that changes it gets its own copy
 * in its py3NN.h. */
typedef struct {
    PyObject_HEAD
    void *prev, *next;
    Py_hash_t hash;
    PyObject *key, *result;
    void *wrapper;
    int typed;
    PyObject *cache;
    Py_ssize_t hits;
    PyObject *func;
    Py_ssize_t maxsize;
} MdLruCache;

/* The wrapper's maxsize (-1: None) into *maxsize: 1 when its cache and func
 * fields hold the cache dict and function tp_traverse showed, else 0. */
static inline int md_lru_maxsize(PyObject *o, PyObject *cache, PyObject *func, Py_ssize_t *maxsize)
{
    MdLruCache *c = (MdLruCache *)o;
    if (c->cache != cache || c->func != func) {
        return 0;
    }
    *maxsize = c->maxsize;
    return 1;
}

#endif
