/* memdiag/_native/py311.h: the walker's reads of CPython 3.11's internals.
 * Included by compat.h only; what each accessor reads is listed there. */
#ifndef MD_PY311_H
#define MD_PY311_H

#include "internal/pycore_gc.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_object.h"
#include "internal/pycore_pystate.h"
#include "internal/pycore_moduleobject.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_dict.h"
#include "internal/pycore_code.h"
#include "opcode.h"

/* ----------------------------------------------------------- strs, ints */

static inline int md_str_ready(PyObject *s)
{
    return PyUnicode_IS_READY(s);
}

/* The length of a legacy str that is not ready. */
static inline Py_ssize_t md_str_legacy_length(PyObject *s)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    return PyUnicode_WSTR_LENGTH(s);
#pragma GCC diagnostic pop
}

static inline int md_str_interned(PyObject *s)
{
    return PyUnicode_CHECK_INTERNED(s) != 0;
}

/* str.__sizeof__ of a compact str into *res (1), or 0 for another layout. */
static inline int md_str_sizeof(PyObject *o, Py_ssize_t *res)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    if (!PyUnicode_IS_READY(o) || ((PyASCIIObject *)o)->wstr != NULL) {
        return 0;
    }
#pragma GCC diagnostic pop
    if (!PyUnicode_IS_COMPACT(o)) {
        return 0;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(o);
    if (PyUnicode_IS_ASCII(o)) {
        *res = (Py_ssize_t)sizeof(PyASCIIObject) + len + 1;
        return 1;
    }
    PyCompactUnicodeObject *c = (PyCompactUnicodeObject *)o;
    Py_ssize_t size = (Py_ssize_t)sizeof(PyCompactUnicodeObject) + (len + 1) * PyUnicode_KIND(o);
    if (c->utf8 != NULL) {
        size += c->utf8_length + 1;
    }
    *res = size;
    return 1;
}

/* int.__sizeof__ */
static inline Py_ssize_t md_int_sizeof(PyObject *o)
{
    Py_ssize_t nd = Py_SIZE(o) < 0 ? -Py_SIZE(o) : Py_SIZE(o);
    if (nd < 1) {
        nd = 1;
    }
    return (Py_ssize_t)offsetof(PyLongObject, ob_digit) + nd * (Py_ssize_t)sizeof(digit);
}

/* ------------------------------------------------------- objects, types */

static inline Py_ssize_t md_preheader_size(PyObject *o, PyTypeObject *tp)
{
    (void)o;
    return (Py_ssize_t)_PyType_PreHeaderSize(tp);
}

static inline Py_ssize_t md_preheader_of_flags(unsigned long flags)
{
    return ((flags & Py_TPFLAGS_HAVE_GC) ? 16 : 0) + ((flags & Py_TPFLAGS_MANAGED_DICT) ? 16 : 0);
}

static inline int md_is_gc(PyObject *o)
{
    return _PyObject_IS_GC(o);
}

static inline PyObject *md_type_dict(PyTypeObject *t)
{
    return t->tp_dict;
}

static inline PyObject *md_type_subclasses(PyTypeObject *t)
{
    return t->tp_subclasses;
}

static inline PyObject *md_module_dict(PyObject *m)
{
    return ((PyModuleObject *)m)->md_dict;
}

static inline Py_ssize_t md_dict_sizeof(PyObject *d)
{
    return _PyDict_SizeOf((PyDictObject *)d);
}

/* The co_code, co_varnames, co_cellvars, co_freevars the getters cached. */
static inline void md_code_cached(PyCodeObject *co, PyObject *out[4])
{
    out[0] = co->_co_code;
    out[1] = out[2] = out[3] = NULL;
}

/* ----------------------------------------- managed dicts, inline values */

typedef PyDictValues MdValues;
typedef PyDictKeysObject MdKeys;

/* The managed dict of o (its type has Py_TPFLAGS_MANAGED_DICT), NULL if it
 * has none; *values: its inline values, NULL if none or no longer valid. */
static inline PyObject *md_managed_dict(PyObject *o, PyTypeObject *tp, MdValues **values)
{
    (void)tp;
    PyObject *d = *_PyObject_ManagedDictPointer(o);
    *values = d == NULL ? *_PyObject_ValuesPointer(o) : NULL;
    return d;
}

/* How many values are set, and the index of the i-th set one in insertion
 * order (the order of the dict the __dict__ getter would make). */
static inline int md_values_count(MdValues *values)
{
    return ((uint8_t *)values)[-2];
}

static inline int md_values_order(MdValues *values, int i)
{
    return ((uint8_t *)values)[-3 - i];
}

static inline PyObject *md_values_item(MdValues *values, Py_ssize_t ix)
{
    return values->values[ix];
}

/* The values array and how many of its entries subtype_traverse visits
 * (at least), -1 if that cannot be told. */
static inline PyObject **md_values_array(MdValues *values)
{
    return values->values;
}

static inline Py_ssize_t md_values_visited(MdValues *values, PyTypeObject *tp)
{
    (void)values;
    MdKeys *keys = ((PyHeapTypeObject *)tp)->ht_cached_keys;
    return keys != NULL ? keys->dk_nentries : -1;
}

/* The type's shared keys when they are all strs, else NULL. */
static inline MdKeys *md_shared_keys(PyTypeObject *tp)
{
    MdKeys *keys = ((PyHeapTypeObject *)tp)->ht_cached_keys;
    return keys != NULL && DK_IS_UNICODE(keys) ? keys : NULL;
}

/* The name of entry ix of shared keys, NULL if none. */
static inline PyObject *md_shared_key_name(MdKeys *keys, Py_ssize_t ix)
{
    return ix < keys->dk_nentries ? DK_UNICODE_ENTRIES(keys)[ix].me_key : NULL;
}

/* Fetch the values of o's attributes, an array of their own (3.11-3.12). */
static inline void md_prefetch_values(PyObject *o, PyTypeObject *tp)
{
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        MdValues *v = *_PyObject_ValuesPointer(o);
        if (v != NULL) {
            __builtin_prefetch(v);
        }
    }
}

/* --------------------------------------------------------------- frames */

typedef _PyInterpreterFrame MdFrame;
#define MD_FRAME_SIZE sizeof(_PyInterpreterFrame)
#define MD_GEN_FRAME_OFFSET offsetof(PyGenObject, gi_iframe)

static inline MdFrame *md_thread_frame(PyThreadState *t)
{
    return t->cframe ? t->cframe->current_frame : NULL;
}

/* What keeps the thread's threading.local data alive (3.13), or NULL. */
static inline PyObject *md_thread_local_sentinel(PyThreadState *t)
{
    (void)t;
    return NULL;
}

static inline MdFrame *md_frameobj_frame(PyFrameObject *f)
{
    return f->f_frame;
}

static inline int md_frameobj_owns(PyFrameObject *f, MdFrame *fr)
{
    return (void *)fr == (void *)f->_f_frame_data;
}

static inline PyObject *md_frameobj_back(PyFrameObject *f)
{
    return (PyObject *)f->f_back;
}

static inline int md_frameobj_lineno(PyFrameObject *f)
{
    return f->f_lineno;
}

static inline PyCodeObject *md_frame_code(MdFrame *fr)
{
    return fr->f_code;
}

static inline PyFrameObject *md_frame_object(MdFrame *fr)
{
    return fr->frame_obj;
}

static inline MdFrame *md_frame_previous(MdFrame *fr)
{
    return fr->previous;
}

static inline PyObject *md_frame_locals_dict(MdFrame *fr)
{
    return fr->f_locals;
}

static inline PyObject *md_frame_globals(MdFrame *fr)
{
    return fr->f_globals;
}

static inline int md_frame_line(MdFrame *fr)
{
    return PyCode_Addr2Line(fr->f_code, _PyInterpreterFrame_LASTI(fr) * sizeof(_Py_CODEUNIT));
}

static inline int md_frame_by_generator(MdFrame *fr)
{
    return fr->owner == FRAME_OWNED_BY_GENERATOR;
}

static inline int md_frame_by_thread(MdFrame *fr)
{
    return fr->owner == FRAME_OWNED_BY_THREAD;
}

/* An entry frame of the C stack: no Python code of its own (3.12+). */
static inline int md_frame_is_shim(MdFrame *fr)
{
    (void)fr;
    return 0;
}

static inline int md_frame_incomplete(MdFrame *fr)
{
    return _PyFrame_IsIncomplete(fr);
}

/* The generator a frame owned by one is embedded in (read only once the
 * MD_GEN_FRAME_OFFSET bytes there are known to be mapped). */
static inline PyObject *md_frame_generator(MdFrame *fr)
{
    return (PyObject *)((char *)fr - MD_GEN_FRAME_OFFSET);
}

/* Whether the frame ran the MAKE_CELL of local i (before, the local holds
 * the argument itself, not a cell).  MAKE_CELL only appears in the prologue,
 * before the first traceable instruction, where no instruction is
 * specialized or has caches. */
static inline int md_make_cell_ran(MdFrame *fr, PyCodeObject *co, int i)
{
    _Py_CODEUNIT *code = _PyCode_CODE(co);
    _Py_CODEUNIT *end = fr->prev_instr;
    _Py_CODEUNIT *lim = code + co->_co_firsttraceable;
    if (end > lim) {
        end = lim;
    }
    int oparg = 0;
    for (_Py_CODEUNIT *ins = code; ins < end; ins++) {
        int op = _Py_OPCODE(*ins);
        oparg |= _Py_OPARG(*ins);
        int ext = (op == EXTENDED_ARG || op == EXTENDED_ARG_QUICK);
        if (op == MAKE_CELL && oparg == i) {
            return 1;
        }
        oparg = ext ? oparg << 8 : 0;
    }
    return 0;
}

/* The frame's locals in the order f.f_locals lists them (the dict
 * PyFrame_FastToLocals builds from scratch), read without making anything:
 * cb(ctx, name, value) for each bound one (a cell's contents for a cell;
 * a free variable still in the function's closure before COPY_FREE_VARS
 * ran). */
static inline int md_frame_locals(MdFrame *fr, PyFrameObject *f, md_locals_cb cb, void *ctx)
{
    PyCodeObject *co = md_frame_code(fr);
    if (co == NULL) {
        return 0;
    }
    PyObject *names = co->co_localsplusnames;
    PyObject *kinds = co->co_localspluskinds;
    if (names == NULL || kinds == NULL || !PyTuple_Check(names) || !PyBytes_Check(kinds)) {
        return 0;
    }
    int n = co->co_nlocalsplus;
    if (n > PyTuple_GET_SIZE(names) || n > PyBytes_GET_SIZE(kinds)) {
        return 0;
    }
    (void)f;
    if (fr->stacktop == 0) {
        return 0;
    }
    /* Free variables of a frame that has not run COPY_FREE_VARS yet are
     * still in the function's closure. */
    PyObject *closure = NULL;
    int first_free = co->co_nlocalsplus - co->co_nfreevars;
    int lasti = _PyInterpreterFrame_LASTI(fr);
    PyObject *func = (PyObject *)fr->f_func;
    if (lasti < 0 && co->co_nfreevars > 0 && func != NULL && PyFunction_Check(func)) {
        int first_op = _Py_OPCODE(_PyCode_CODE(co)[0]);
        if (first_op == COPY_FREE_VARS) {
            closure = ((PyFunctionObject *)func)->func_closure;
            if (closure != NULL && (!PyTuple_Check(closure)
                                    || PyTuple_GET_SIZE(closure) < co->co_nfreevars)) {
                closure = NULL;
            }
        }
    }
    {
        for (int i = 0; i < n; i++) {
            _PyLocals_Kind kind = _PyLocals_GetKind(kinds, i);
            if ((kind & CO_FAST_FREE) && !(co->co_flags & CO_OPTIMIZED)) {
                continue;
            }
            PyObject *value = fr->localsplus[i];
            if (closure != NULL && i >= first_free) {
                value = PyTuple_GET_ITEM(closure, i - first_free);
            }
            if (kind & CO_FAST_FREE) {
                if (value == NULL || !PyCell_Check(value)) {
                    continue;
                }
                value = PyCell_GET(value);
            }
            else if ((kind & CO_FAST_CELL) && value != NULL) {
                if (PyCell_Check(value) && md_make_cell_ran(fr, co, i)) {
                    value = PyCell_GET(value);
                }
            }
            if (value != NULL && cb(ctx, PyTuple_GET_ITEM(names, i), value) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* --------------------------------------------------------- the gc lists */

/* The interpreter's table of interned strs if the collector tracks it:
 * never here (a dict of strs only is untracked). */
static inline PyObject *md_interned_table(void)
{
    return NULL;
}

#define MD_GC_LISTS (NUM_GENERATIONS + 1)

/* The heads of the gc's lists, in gc.get_objects() order, then the
 * permanent generation's (gc.freeze()). */
static inline int md_gc_lists(PyGC_Head *heads[MD_GC_LISTS])
{
    struct _gc_runtime_state *gcs = &_PyInterpreterState_GET()->gc;
    for (int g = 0; g < NUM_GENERATIONS; g++) {
        heads[g] = &gcs->generations[g].head;
    }
    heads[NUM_GENERATIONS] = &gcs->permanent_generation.head;
    return MD_GC_LISTS;
}

static inline PyGC_Head *md_gc_permanent_list(void)
{
    return &_PyInterpreterState_GET()->gc.permanent_generation.head;
}

static inline PyGC_Head *md_gc_next(PyGC_Head *g)
{
    return _PyGCHead_NEXT(g);
}

static inline int md_gc_tracked(PyObject *o)
{
    return _PyObject_GC_IS_TRACKED(o);
}

static inline PyGC_Head *md_gc_head(PyObject *o)
{
    return ((PyGC_Head *)o) - 1;
}

static inline PyObject *md_gc_object(PyGC_Head *g)
{
    return (PyObject *)(g + 1);
}

/* ---------------------------------------------------------- tracemalloc */

/* The object's allocation traceback (tracemalloc), a new reference: None
 * if it has none, NULL with an exception. */
static inline PyObject *md_object_traceback(PyObject *tb_func, PyObject *o)
{
    /* 3.11's _tracemalloc._get_object_traceback looks an object with a
     * managed dict up at the wrong address (it forgets the dict pointers
     * before the GC header) and finds nothing: look its block up here. */
    (void)tb_func;
    return _PyTraceMalloc_GetTraceback(
        0, (uintptr_t)o - (uintptr_t)_PyType_PreHeaderSize(Py_TYPE(o)));
}

#endif
