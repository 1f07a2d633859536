/* memdiag/_native/py313.h: the walker's reads of CPython 3.13's internals.
 * Included by compat.h only; what each accessor reads is listed there. */
#ifndef MD_PY313_H
#define MD_PY313_H

/* CPython's internal headers are not -Wextra clean (unused parameters) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "internal/pycore_gc.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_object.h"
#include "internal/pycore_pystate.h"
#include "internal/pycore_moduleobject.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_dict.h"
#include "internal/pycore_code.h"
#include "internal/pycore_ceval.h"
#pragma GCC diagnostic pop

/* ----------------------------------------------------------- strs, ints */

static inline int md_str_ready(PyObject *s)
{
    (void)s;
    return 1;
}

static inline Py_ssize_t md_str_legacy_length(PyObject *s)
{
    (void)s;
    return 0;
}

static inline int md_str_interned(PyObject *s)
{
    return PyUnicode_CHECK_INTERNED(s) != 0;
}

/* str.__sizeof__ of a compact str into *res (1), or 0 for another layout. */
static inline int md_str_sizeof(PyObject *o, Py_ssize_t *res)
{
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
    Py_ssize_t nd = (Py_ssize_t)(((PyLongObject *)o)->long_value.lv_tag >> 3);
    if (nd < 1) {
        nd = 1;
    }
    return (Py_ssize_t)offsetof(PyLongObject, long_value.ob_digit) + nd * (Py_ssize_t)sizeof(digit);
}

/* ------------------------------------------------------- objects, types */

static inline Py_ssize_t md_preheader_size(PyObject *o, PyTypeObject *tp)
{
    if (tp == &PyType_Type && !(((PyTypeObject *)o)->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        return 0;
    }
    return (Py_ssize_t)_PyType_PreHeaderSize(tp);
}

static inline Py_ssize_t md_preheader_of_flags(unsigned long flags)
{
    return ((flags & Py_TPFLAGS_HAVE_GC) ? 16 : 0)
           + ((flags & (Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF)) ? 16 : 0);
}

static inline int md_is_gc(PyObject *o)
{
    return _PyObject_IS_GC(o);
}

static inline PyObject *md_type_dict(PyTypeObject *t)
{
    return (t->tp_flags & Py_TPFLAGS_READY) ? _PyType_GetDict(t) : t->tp_dict;
}

static inline PyObject *md_type_subclasses(PyTypeObject *t)
{
    return (t->tp_flags & _Py_TPFLAGS_STATIC_BUILTIN) ? NULL : (PyObject *)t->tp_subclasses;
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
    _PyCoCached *cc = co->_co_cached;
    out[0] = cc ? cc->_co_code : NULL;
    out[1] = cc ? cc->_co_varnames : NULL;
    out[2] = cc ? cc->_co_cellvars : NULL;
    out[3] = cc ? cc->_co_freevars : NULL;
}

/* ----------------------------------------- managed dicts, inline values */

typedef PyDictValues MdValues;
typedef PyDictKeysObject MdKeys;

/* The managed dict of o (its type has Py_TPFLAGS_MANAGED_DICT), NULL if it
 * has none; *values: its inline values, NULL if none or no longer valid. */
static inline PyObject *md_managed_dict(PyObject *o, PyTypeObject *tp, MdValues **values)
{
    PyObject *d = (PyObject *)_PyObject_ManagedDictPointer(o)->dict;
    *values = NULL;
    if (tp->tp_flags & Py_TPFLAGS_INLINE_VALUES) {
        MdValues *v = _PyObject_InlineValues(o);
        if (v->valid) {
            *values = v;
        }
    }
    return d;
}

/* How many values are set, and the index of the i-th set one in insertion
 * order (the order of the dict the __dict__ getter would make). */
static inline int md_values_count(MdValues *values)
{
    int size = values->size;
    return size > values->capacity ? 0 : size;
}

static inline int md_values_order(MdValues *values, int i)
{
    return get_insertion_order_array(values)[i];
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
    (void)tp;
    return values->capacity;
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

/* Fetch the values of o's attributes: nothing to do, they are in o (3.13). */
static inline void md_prefetch_values(PyObject *o, PyTypeObject *tp)
{
    (void)o;
    (void)tp;
}

/* --------------------------------------------------------------- frames */

typedef _PyInterpreterFrame MdFrame;
#define MD_FRAME_SIZE sizeof(_PyInterpreterFrame)
#define MD_GEN_FRAME_OFFSET offsetof(PyGenObject, gi_iframe)

static inline MdFrame *md_thread_frame(PyThreadState *t)
{
    return t->current_frame;
}

/* What keeps the thread's threading.local data alive (3.13), or NULL. */
static inline PyObject *md_thread_local_sentinel(PyThreadState *t)
{
    return t->threading_local_sentinel;
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
    PyObject *ex = fr->f_executable;
    return (ex != NULL && PyCode_Check(ex)) ? (PyCodeObject *)ex : NULL;
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
    return PyUnstable_InterpreterFrame_GetLine(fr);
}

static inline int md_frame_by_generator(MdFrame *fr)
{
    return fr->owner == FRAME_OWNED_BY_GENERATOR;
}

static inline int md_frame_by_thread(MdFrame *fr)
{
    return fr->owner == FRAME_OWNED_BY_THREAD;
}

/* An entry frame of the C stack: no Python code of its own. */
static inline int md_frame_is_shim(MdFrame *fr)
{
    return fr->owner == FRAME_OWNED_BY_CSTACK;
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

/* The frame's locals in the order f.f_locals (3.13: FrameLocalsProxy) lists
 * them, read without making anything: cb(ctx, name, value) for each bound
 * one (a cell's contents for a cell), then the names set through f_locals
 * that are not the code's (f_extra_locals). */
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
    for (int i = 0; i < n; i++) {
        _PyLocals_Kind kind = _PyLocals_GetKind(kinds, i);
        PyObject *value = fr->localsplus[i];
        if (value == NULL) {
            continue;
        }
        if ((kind == CO_FAST_FREE || (kind & CO_FAST_CELL)) && PyCell_Check(value)) {
            value = PyCell_GET(value);
        }
        if (value != NULL && cb(ctx, PyTuple_GET_ITEM(names, i), value) < 0) {
            return -1;
        }
    }
    if (f != NULL && f->f_extra_locals != NULL && PyDict_Check(f->f_extra_locals)) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(f->f_extra_locals, &pos, &k, &v)) {
            if (cb(ctx, k, v) < 0) {
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
    return PyObject_CallOneArg(tb_func, o);
}

#endif
