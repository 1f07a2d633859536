/* memdiag._walker: the compiled heap walker.
 *
 * walk() writes the same snapshot as memdiag/walker.py (PyWalker, the
 * specification: same objects in the same breadth-first order, same kinds,
 * sizes, lengths, edges and labels, roots, strings and sites), and capture()
 * reads every thread's stack as the hook's Python capture does.  What it
 * must not do, and how:
 *
 * - Touch the walked objects.  No reference count changes: referents come
 *   from tp_traverse with a visit callback, dict items from PyDict_Next,
 *   attributes from struct reads (__slots__, the instance __dict__ pointer,
 *   3.11+ inline values named from the type's shared keys: no __dict__ is
 *   ever created; the fields of code objects and types, including what
 *   their getters would build, co_localsplusnames, and what they cached),
 *   frame locals from the frame's localsplus (no PyFrame_FastToLocals);
 *   every pointer kept is borrowed.  The label table
 *   holds copies of the label strings (the target's are neither increfed nor
 *   hashed).  What remains is tiny: the type table holds the type objects,
 *   C __sizeof__ methods are called (they return small ints), tracemalloc is
 *   asked for tracebacks in trace mode.
 * - Run code: nothing written in Python is called (no attribute lookup on a
 *   walked object, no Python __len__/__sizeof__/__eq__/__hash__), the garbage
 *   collector is off during capture() and walk(), and no type is readied.
 * - Use memory: an address array (8 bytes per object, index order is
 *   discovery order, so it is also the breadth-first queue) and an
 *   open-addressing table of tagged uint32 indexes into it (6-8 bytes per
 *   object), sized from pymalloc's block count.  ADDR, PARENT and PLABEL are
 *   written when an object is discovered, the other columns when it is
 *   processed: no other per-object array.  Chunk buffers are per column.
 * - Release the GIL: other threads could then free objects the walker
 *   points to.  The walk holds it from start to end.  Full column chunks are
 *   encoded by the walk and deflated (with the process's own libz, as
 *   zlib.compress would, crc32 included) by native worker threads that never
 *   touch a Python object, while the walk goes on.  In-process
 *   (may_materialize=False) the compressed chunks stay in memory until the
 *   walk is over, then go to writer.write_compressed (which may release the
 *   GIL: no object pointer is used any more).  In a throwaway fork child
 *   (may_materialize=True) the walk hands each finished chunk to
 *   writer.write_compressed as it comes, in order.  Without libz, the writer
 *   compresses (writer.write_chunk).
 *
 * Speed comes from discovering edges in batches (prefetching table slots for
 * edges dozens ahead), huge pages for the table, SSE2 byte shuffling, and
 * deflating on other cores (the columns' first chunks staggered so that
 * chunks come one at a time).
 */

#include "walker.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------------ traversal */

static int visit_collect(PyObject *o, void *arg)
{
    return vec_push((PtrVec *)arg, o) < 0 ? -1 : 0;
}

/* Whether the memory [p, p+len) is mapped (a frame of a thread that is gone
 * in a fork child points into a freed data stack). */
static int mapped(W *w, const void *p, size_t len)
{
    uintptr_t start = (uintptr_t)p & ~((uintptr_t)w->pagesize - 1);
    uintptr_t end = (uintptr_t)p + len;
    size_t npages = (end - start + (size_t)w->pagesize - 1) / (size_t)w->pagesize;
    unsigned char vec[8];
    if (npages > sizeof(vec)) {
        return 0;
    }
    return mincore((void *)start, end - start, vec) == 0;
}

/* The interpreter frame of a frame object if reading it is safe, else NULL. */
static MdFrame *frame_data(W *w, PyFrameObject *f)
{
    MdFrame *fr = md_frameobj_frame(f);
    if (fr == NULL) {
        return NULL;
    }
    if (md_frameobj_owns(f, fr)) {
        return fr;      /* owned by the frame object itself */
    }
    if (!mapped(w, fr, MD_FRAME_SIZE)) {
        return NULL;
    }
    if (md_frame_by_generator(fr)) {
        PyObject *gen = md_frame_generator(fr);
        if (!mapped(w, gen, MD_GEN_FRAME_OFFSET)) {
            return NULL;
        }
        PyTypeObject *gt = Py_TYPE(gen);
        if ((gt == &PyGen_Type || gt == &PyCoro_Type || gt == &PyAsyncGen_Type)
                && md_frame_object(fr) == f) {
            return fr;
        }
        return NULL;
    }
    if (md_frame_by_thread(fr) && !w->sink.stream && md_frame_object(fr) == f) {
        return fr;      /* running in a live thread of this process */
    }
    return NULL;
}

/* Referents of o into vec, as gc.get_referents(o). */
static int referents(W *w, PyObject *o, PtrVec *vec)
{
    vec->n = 0;
    PyTypeObject *tp = Py_TYPE(o);
    if (!md_is_gc(o) || tp->tp_traverse == NULL) {
        return 0;
    }
    if (tp == &PyFrame_Type) {
        uint32_t dummy;
        if (map_get(&w->edges.executing, o, &dummy)) {
            return 0;
        }
        if (frame_data(w, (PyFrameObject *)o) == NULL) {
            return 0;
        }
    }
    if (tp->tp_traverse(o, visit_collect, vec) != 0) {
        set_nomem(w);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- edges */

/* Edges wait in a queue, in order, and are discovered in batches spanning
 * many objects: looking an address up costs one or two cache misses, which
 * the batch hides by prefetching table slots and addresses ahead.  The
 * discovery order is exactly the one of discovering each edge when it is
 * made, since making edges never depends on what was discovered. */
static int q_flush(W *w)
{
    QE *q = w->edges.q;
    size_t n = w->edges.qn;
    for (size_t i = 0; i < n; i++) {
        if (i + 32 < n && (q[i + 32].src >> 30) <= Q_OPAQUE) {
            tab_prefetch(&w->index, q[i + 32].obj);
        }
        if (i + 16 < n && (q[i + 16].src >> 30) <= Q_OPAQUE) {
            tab_prefetch_addr(&w->index, q[i + 16].obj);
        }
        uint32_t kind = q[i].src >> 30, src = q[i].src & Q_SRC_MASK;
        PyObject *obj = q[i].obj;
        uint32_t label = q[i].label;
        if (kind == Q_END) {
            push(w, COL_NEDGES, w->edges.cur_edges);
            w->stats.nedges += w->edges.cur_edges;
            w->edges.cur_edges = 0;
            continue;
        }
        if (kind == Q_TYPE) {
            TypeInfo *ti = (TypeInfo *)obj;
            if (ti->type_known) {
                continue;
            }
            ti->type_known = 1;
            obj = (PyObject *)ti->tp;
            if (is_known(&w->index, obj)) {
                continue;
            }
            label = MD_LABEL(L_ATTR, LBL_CLASS);
        }
        else if (kind == Q_OPAQUE) {
            label = MD_LABEL(L_ITEM_OPAQUE, w->edges.q_last >= 0 ? w->edges.q_last : 0);
        }
        int64_t idx = discover(w, obj, src + 1, label);
        if (idx == IDX_ERROR) {
            return -1;
        }
        if (idx >= 0) {
            push(w, COL_ETARGET, (uint64_t)idx);
            push(w, COL_ELABEL, label);
            w->edges.cur_edges++;
        }
        w->edges.q_last = idx;
    }
    w->edges.qn = 0;
    return w->err ? -1 : 0;
}

static inline int q_push(W *w, PyObject *obj, uint32_t label, uint32_t src, uint32_t kind)
{
    if (w->edges.qn == QMAX && q_flush(w) < 0) {
        return -1;
    }
    QE *e = &w->edges.q[w->edges.qn++];
    e->obj = obj;
    e->label = label;
    e->src = src | (kind << 30);
    return 0;
}

static inline int emit(W *w, uint32_t src, PyObject *obj, uint32_t label)
{
    if (label == Q_OPAQUE_PREV) {
        return q_push(w, obj, 0, src, Q_OPAQUE);
    }
    return q_push(w, obj, label, src, Q_EDGE);
}

static inline int emit_labeled(W *w, uint32_t src, PyObject *obj, int kind, int64_t lbl)
{
    if (lbl < 0) {
        return -1;
    }
    if (stamp_add(&w->edges.labeled, obj) < 0) {
        set_nomem(w);
        return -1;
    }
    return emit(w, src, obj, MD_LABEL(kind, lbl));
}

/* A frame local's edge (md_frame_locals' callback). */
typedef struct {
    W *w;
    uint32_t src;
} LocalEdgeCtx;

static int frame_local_edge(void *ctx, PyObject *name, PyObject *value)
{
    W *w = ((LocalEdgeCtx *)ctx)->w;
    uint32_t src = ((LocalEdgeCtx *)ctx)->src;
    if (!PyUnicode_Check(name)) {
        if (stamp_add(&w->edges.labeled, value) < 0) {
            set_nomem(w);
            return -1;
        }
        return emit(w, src, value, L_NONE);
    }
    return emit_labeled(w, src, value, L_LOCAL, label_of(w, name));
}

static int frame_edges(W *w, PyObject *o, uint32_t src)
{
    PyFrameObject *f = (PyFrameObject *)o;
    MdFrame *fr = frame_data(w, f);
    if (fr != NULL) {
        PyCodeObject *co = md_frame_code(fr);
        if (co != NULL && (co->co_flags & CO_OPTIMIZED)) {
            LocalEdgeCtx ctx = {w, src};
            if (md_frame_locals(fr, f, frame_local_edge, &ctx) < 0) {
                return -1;
            }
        }
    }
    PyObject *back = md_frameobj_back(f);
    if (back == NULL && fr != NULL && md_frame_by_thread(fr)) {
        MdFrame *prev = md_frame_previous(fr);
        while (prev != NULL && (md_frame_is_shim(prev) || md_frame_incomplete(prev))) {
            prev = md_frame_previous(prev);
        }
        if (prev != NULL) {
            back = (PyObject *)md_frame_object(prev);  /* never created here */
        }
    }
    if (back != NULL && back != Py_None) {
        return emit_labeled(w, src, back, L_ATTR, LBL_F_BACK);
    }
    return 0;
}

static int instance_edges(W *w, PyObject *o, uint32_t src, TypeInfo *ti, PtrVec *refs)
{
    for (size_t k = 0; k < ti->nslots; k++) {
        PyObject *v = *(PyObject **)((char *)o + ti->slots[k].offset);
        if (v != NULL && emit_labeled(w, src, v, L_ATTR, label_of(w, ti->slots[k].name)) < 0) {
            return -1;
        }
    }
    if (!ti->has_dict_getset) {
        return 0;
    }
    if (ti->managed) {
        MdValues *values;
        PyObject *d = md_managed_dict(o, ti->tp, &values);
        if (d != NULL && Py_IS_TYPE(d, &PyDict_Type) && (refs == NULL || in_vec(refs, d))) {
            return emit_labeled(w, src, d, L_ATTR, LBL_DICT);
        }
        MdKeys *keys = md_shared_keys(ti->tp);
        if (values != NULL && keys != NULL) {
            /* The attribute names of inline values, in insertion order (the
             * order of the dict the __dict__ getter would make), read from
             * the type's shared keys: no dict is created. */
            int size = md_values_count(values);
            for (int i = 0; i < size; i++) {
                int ix = md_values_order(values, i);
                PyObject *name = md_shared_key_name(keys, ix);
                if (name == NULL) {
                    continue;
                }
                PyObject *v = md_values_item(values, ix);
                if (v == NULL) {
                    continue;
                }
                int r = PyUnicode_CheckExact(name)
                        ? emit_labeled(w, src, v, L_ATTR, label_of(w, name))
                        : emit_labeled(w, src, v, L_NONE, 0);
                if (r < 0) {
                    return -1;
                }
            }
        }
        if (d != NULL) {
            /* 3.13: a __dict__ made while the inline values stay valid; the
             * object holds it although tp_traverse shows the values instead. */
            return emit_labeled(w, src, d, L_ATTR, LBL_DICT);
        }
        return 0;
    }
    /* PyWalker reads the slot at a positive tp_dictoffset only (a negative
     * one, var-sized layouts, is left to tp_traverse: unlabeled). */
    PyObject *d = ti->dictoffset > 0 ? *(PyObject **)((char *)o + ti->dictoffset) : NULL;
    if (d != NULL && Py_IS_TYPE(d, &PyDict_Type) && (refs == NULL || in_vec(refs, d))) {
        return emit_labeled(w, src, d, L_ATTR, LBL_DICT);
    }
    return 0;
}

/* A plain instance (TypeInfo.plain): its dict (*d) and the values array
 * (*n entries) that subtype_traverse visits besides the type; *n = -1 when
 * it cannot tell. */
static inline PyObject **plain_refs(PyObject *o, TypeInfo *ti, PyObject **d, Py_ssize_t *n)
{
    MdValues *values;
    *n = 0;
    *d = md_managed_dict(o, ti->tp, &values);
    if (values == NULL) {
        return NULL;
    }
    *n = md_values_visited(values, ti->tp);     /* at least what is visited */
    return md_values_array(values);
}

/* A plain instance's edges without tp_traverse: instance_edges, then the
 * type, exactly as do_edges would emit them when every other object
 * subtype_traverse visits was labeled.  1 if done; 2 if the labeled edges
 * are out and the rest must come from tp_traverse's list; 0 if nothing was
 * done (3.11+: an instance dict); -1 on error. */
static int plain_edges(W *w, PyObject *o, uint32_t src, TypeInfo *ti)
{
    PyObject *d;
    Py_ssize_t n;
    PyObject **vals = plain_refs(o, ti, &d, &n);
    if (d != NULL) {
        return 0;       /* nothing out yet: do_edges does it all */
    }
    if (instance_edges(w, o, src, ti, NULL) < 0 || w->err) {
        return -1;
    }
    int covered = n >= 0 && (d == NULL || stamp_has(&w->edges.labeled, d));
    for (Py_ssize_t i = 0; i < n && covered; i++) {
        if (vals[i] != NULL && !stamp_has(&w->edges.labeled, vals[i])) {
            covered = 0;
        }
    }
    if (!covered) {
        return 2;
    }
    PyObject *tp = (PyObject *)Py_TYPE(o);
    if (!stamp_has(&w->edges.labeled, tp) && emit(w, src, tp, MD_LABEL(L_ATTR, LBL_CLASS)) < 0) {
        return -1;
    }
    return 1;
}

static int do_edges(W *w, PyObject *o, uint32_t src, TypeInfo *ti)
{
    PyTypeObject *tp = Py_TYPE(o);
    int kind = ti->kind;
    int use_labeled = 0;
    int have_refs = 0;
    stamp_reset(&w->edges.labeled);

    switch (kind) {
    case K_DICT: {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        int exact = tp == &PyDict_Type;
        while (PyDict_Next(o, &pos, &k, &v)) {
            if (!exact && (stamp_add(&w->edges.labeled, k) < 0 || stamp_add(&w->edges.labeled, v) < 0)) {
                set_nomem(w);
                return -1;
            }
            if (emit(w, src, k, L_KEY) < 0) {
                return -1;
            }
            uint32_t lbl, cached;
            if (map_get(&w->labels.keys, k, &cached)) {
                lbl = MD_LABEL(L_ITEM, cached);
            }
            else if (PyUnicode_CheckExact(k) && key_written(k)) {
                int64_t l = label_of(w, k);
                if (l < 0 || map_put(&w->labels.keys, k, (uint32_t)l) < 0) {
                    set_nomem(w);
                    return -1;
                }
                lbl = MD_LABEL(L_ITEM, l);
            }
            else {
                lbl = Q_OPAQUE_PREV;    /* the key's index, once discovered */
            }
            if (emit(w, src, v, lbl) < 0) {
                return -1;
            }
        }
        if (exact) {
            return 0;
        }
        use_labeled = 1;
        break;
    }
    case K_LIST:
    case K_TUPLE: {
        int exact = (tp == &PyList_Type || tp == &PyTuple_Type);
        Py_ssize_t n = Py_SIZE(o);
        PyObject **items = kind == K_LIST ? ((PyListObject *)o)->ob_item
                                          : ((PyTupleObject *)o)->ob_item;
        for (Py_ssize_t i = 0; i < n && items != NULL; i++) {
            PyObject *v = items[i];
            if (v == NULL) {
                continue;
            }
            if (!exact && stamp_add(&w->edges.labeled, v) < 0) {
                set_nomem(w);
                return -1;
            }
            if (emit(w, src, v, MD_LABEL(L_INDEX, i)) < 0) {
                return -1;
            }
        }
        if (exact) {
            return 0;
        }
        use_labeled = 1;
        break;
    }
    case K_MODULE: {
        if (referents(w, o, &w->edges.refs) < 0) {
            return -1;
        }
        have_refs = 1;
        PyObject *md = md_module_dict(o);
        if (md != NULL && in_vec(&w->edges.refs, md)) {
            use_labeled = 1;
            if (emit_labeled(w, src, md, L_ATTR, LBL_DICT) < 0) {
                return -1;
            }
        }
        break;
    }
    case K_TYPE: {
        /* Static types too: tp_traverse never shows their dict, mro, bases. */
        PyTypeObject *t = (PyTypeObject *)o;
        use_labeled = 1;
        PyObject *tdict = md_type_dict(t);
        PyObject *fields[3] = {tdict, t->tp_mro, t->tp_bases};
        int lbls[3] = {LBL_DICT, LBL_MRO, LBL_BASES};
        for (int i = 0; i < 3; i++) {
            if (fields[i] != NULL && fields[i] != Py_None
                    && emit_labeled(w, src, fields[i], L_ATTR, lbls[i]) < 0) {
                return -1;
            }
        }
        if (t->tp_flags & TPF_HEAPTYPE) {
            /* A heap type's names are stored objects (a static type's are C
             * strings, made into new str objects on every read). */
            PyHeapTypeObject *ht = (PyHeapTypeObject *)t;
            if (ht->ht_name != NULL && emit_labeled(w, src, ht->ht_name, L_ATTR,
                                                    label_named(w, NL_NAME)) < 0) {
                return -1;
            }
            if (ht->ht_qualname != NULL && emit_labeled(w, src, ht->ht_qualname, L_ATTR,
                                                        label_named(w, NL_QUALNAME)) < 0) {
                return -1;
            }
        }
        /* C only (PyWalker cannot read it without calling __subclasses__(),
         * which makes a list): the dict of weak references to subclasses,
         * else an "unreached" dict.  3.12+ keeps a static builtin type's in
         * the interpreter, and tp_subclasses is an index then. */
        PyObject *subs = md_type_subclasses(t);
        if (subs != NULL && PyDict_CheckExact(subs)
                && emit_labeled(w, src, subs, L_ATTR, label_named(w, NL_SUBCLASSES)) < 0) {
            return -1;
        }
        break;
    }
    case K_CODE: {
        /* Not gc-tracked: tp_traverse shows nothing, yet a code object holds
         * constants, names and tables.  First the fields PyWalker reads (in
         * its order), then the ones only C can read without making objects
         * (3.11+: the locals' names and kinds, and what the co_code,
         * co_varnames, co_cellvars and co_freevars getters cached). */
        PyCodeObject *co = (PyCodeObject *)o;
        PyObject *cached[4];
        md_code_cached(co, cached);
        PyObject *fields[] = {co->co_consts, co->co_names, co->co_filename, co->co_name,
                              co->co_qualname, co->co_linetable, co->co_exceptiontable,
                              co->co_localsplusnames, co->co_localspluskinds,
                              cached[0], cached[1], cached[2], cached[3]};
        int lbls[] = {NL_CO_CONSTS, NL_CO_NAMES, NL_CO_FILENAME, NL_CO_NAME,
                      NL_CO_QUALNAME, NL_CO_LINETABLE, NL_CO_EXCEPTIONTABLE,
                      NL_CO_LOCALSPLUSNAMES, NL_CO_LOCALSPLUSKINDS, NL_CO_CODE,
                      NL_CO_VARNAMES, NL_CO_CELLVARS, NL_CO_FREEVARS};
        use_labeled = 1;
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            if (fields[i] != NULL && fields[i] != Py_None
                    && emit_labeled(w, src, fields[i], L_ATTR, label_named(w, lbls[i])) < 0) {
                return -1;
            }
        }
        break;
    }
    case K_FUNCTION: {
        PyFunctionObject *fn = (PyFunctionObject *)o;
        PyObject *fields[5] = {fn->func_code, fn->func_globals, fn->func_defaults,
                               fn->func_kwdefaults, fn->func_closure};
        int lbls[5] = {LBL_CODE, LBL_GLOBALS, LBL_DEFAULTS, LBL_KWDEFAULTS, LBL_CLOSURE};
        use_labeled = 1;
        for (int i = 0; i < 5; i++) {
            if (fields[i] != NULL && fields[i] != Py_None
                    && emit_labeled(w, src, fields[i], L_ATTR, lbls[i]) < 0) {
                return -1;
            }
        }
        break;
    }
    case K_CELL: {
        use_labeled = 1;
        PyObject *v = PyCell_GET(o);
        if (v != NULL && emit_labeled(w, src, v, L_ATTR, LBL_CELL_CONTENTS) < 0) {
            return -1;
        }
        break;
    }
    case K_FRAME: {
        uint32_t dummy;
        if (map_get(&w->edges.executing, o, &dummy)) {
            return 0;
        }
        use_labeled = 1;
        if (frame_edges(w, o, src) < 0) {
            return -1;
        }
        break;
    }
    case K_LRU: {
        if (referents(w, o, &w->edges.refs) < 0) {
            return -1;
        }
        have_refs = 1;
        /* tp_traverse visits (cached keys and results...), cache, func,
         * kwd_mark (a plain object()), two types, __dict__: the last dict
         * followed two places later by an object() is the cache. */
        for (Py_ssize_t k = (Py_ssize_t)w->edges.refs.n - 3; k >= 0; k--) {
            PyObject *r = w->edges.refs.v[k];
            if (Py_IS_TYPE(r, &PyDict_Type) && Py_IS_TYPE(w->edges.refs.v[k + 2], &PyBaseObject_Type)) {
                use_labeled = 1;
                if (emit_labeled(w, src, r, L_ATTR, LBL_CACHE) < 0) {
                    return -1;
                }
                break;
            }
        }
        break;
    }
    case K_INSTANCE:
        use_labeled = 1;
        if (ti->plain) {
            int r = plain_edges(w, o, src, ti);
            if (r < 0) {
                return -1;
            }
            if (r == 1) {
                return 0;
            }
            if (r == 2) {
                if (referents(w, o, &w->edges.refs) < 0) {
                    return -1;
                }
                have_refs = 1;
                break;
            }
        }
        if (referents(w, o, &w->edges.refs) < 0) {
            return -1;
        }
        have_refs = 1;
        if (instance_edges(w, o, src, ti, &w->edges.refs) < 0) {
            return -1;
        }
        break;
    default:
        break;
    }
    if (w->err) {
        return -1;
    }
    if (!have_refs && referents(w, o, &w->edges.refs) < 0) {
        return -1;
    }
    PtrVec *refs = &w->edges.refs;
    for (size_t i = 0; i < refs->n; i++) {
        PyObject *r = refs->v[i];
        if (use_labeled && stamp_has(&w->edges.labeled, r)) {
            continue;
        }
        uint32_t lbl = (kind == K_INSTANCE && r == (PyObject *)tp) ? MD_LABEL(L_ATTR, LBL_CLASS) : L_NONE;
        if (emit(w, src, r, lbl) < 0) {
            return -1;
        }
    }
    return 0;
}

/* ----------------------------------------------------------- processing */

static void push_utf8(W *w, PyObject *s, uint32_t idx)
{
    /* str.encode(s, "utf-8", "surrogatepass") without making a bytes. */
    if (!md_str_ready(s)) {
        PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
        if (b == NULL) {
            w->err = 1;
            return;
        }
        push(w, COL_STR_OBJ, idx);
        push(w, COL_STR_LEN, (uint64_t)PyBytes_GET_SIZE(b));
        push_bytes(w, COL_STR_DATA, (const uint8_t *)PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
        w->stats.nstrings++;
        w->stats.string_bytes += (uint64_t)PyBytes_GET_SIZE(b);
        Py_DECREF(b);
        return;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    uint64_t total = 0;
    if (PyUnicode_IS_ASCII(s)) {
        total = (uint64_t)n;
    }
    else {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 ch = PyUnicode_READ(kind, data, i);
            total += ch < 0x80 ? 1 : ch < 0x800 ? 2 : ch < 0x10000 ? 3 : 4;
        }
    }
    push(w, COL_STR_OBJ, idx);
    push(w, COL_STR_LEN, total);
    w->stats.nstrings++;
    w->stats.string_bytes += total;
    if (PyUnicode_IS_ASCII(s)) {
        push_bytes(w, COL_STR_DATA, (const uint8_t *)data, (size_t)n);
        return;
    }
    uint8_t buf[256];
    size_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (k > sizeof(buf) - 4) {
            push_bytes(w, COL_STR_DATA, buf, k);
            k = 0;
        }
        if (ch < 0x80) {
            buf[k++] = (uint8_t)ch;
        }
        else if (ch < 0x800) {
            buf[k++] = (uint8_t)(0xc0 | (ch >> 6));
            buf[k++] = (uint8_t)(0x80 | (ch & 0x3f));
        }
        else if (ch < 0x10000) {
            buf[k++] = (uint8_t)(0xe0 | (ch >> 12));
            buf[k++] = (uint8_t)(0x80 | ((ch >> 6) & 0x3f));
            buf[k++] = (uint8_t)(0x80 | (ch & 0x3f));
        }
        else {
            buf[k++] = (uint8_t)(0xf0 | (ch >> 18));
            buf[k++] = (uint8_t)(0x80 | ((ch >> 12) & 0x3f));
            buf[k++] = (uint8_t)(0x80 | ((ch >> 6) & 0x3f));
            buf[k++] = (uint8_t)(0x80 | (ch & 0x3f));
        }
    }
    push_bytes(w, COL_STR_DATA, buf, k);
}

static uint32_t site_of(W *w, PyObject *o)
{
    PyObject *tb = md_object_traceback(w->tb_func, o);
    if (tb == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (tb == Py_None) {
        Py_DECREF(tb);
        return 0;
    }
    uint32_t r = 0;
    PyObject *iv = PyDict_GetItemWithError(w->sites, tb);
    if (iv != NULL) {
        r = (uint32_t)PyLong_AsUnsignedLong(iv);
        Py_DECREF(tb);
        return r;
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();    /* an unhashable traceback: unknown site */
        Py_DECREF(tb);
        return 0;
    }
    r = (uint32_t)PyList_GET_SIZE(w->site_list) + 1;
    PyObject *frames = PySequence_List(tb);
    PyObject *num = PyLong_FromUnsignedLong(r);
    if (frames == NULL || num == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(frames); i++) {
        PyObject *fl = PySequence_List(PyList_GET_ITEM(frames, i));
        if (fl == NULL) {
            goto fail;
        }
        PyList_SetItem(frames, i, fl);
    }
    if (PyDict_SetItem(w->sites, tb, num) < 0 || PyList_Append(w->site_list, frames) < 0) {
        goto fail;
    }
    Py_DECREF(frames);
    Py_DECREF(num);
    Py_DECREF(tb);
    return r;
fail:
    Py_XDECREF(frames);
    Py_XDECREF(num);
    Py_DECREF(tb);
    w->err = 1;
    return 0;
}

static int process_one(W *w, uint32_t i)
{
    PyObject *o = w->index.addrs[i];
    TypeInfo *ti = type_info(w, Py_TYPE(o));
    if (ti == NULL) {
        return -1;
    }
    if (do_edges(w, o, i, ti) < 0 || w->err) {
        return -1;
    }
    /* the first object of a type not yet reached gets an edge to it */
    if (!ti->type_known && q_push(w, (PyObject *)ti, 0, i, Q_TYPE) < 0) {
        return -1;
    }
    if (q_push(w, NULL, 0, i, Q_END) < 0) {
        return -1;
    }
    Py_ssize_t size = size_of(w, o, ti);
    w->stats.heap += (uint64_t)size;
    push(w, COL_TYPE, ti->index);
    push(w, COL_SIZE, (uint64_t)size);
    push(w, COL_LENGTH, length_of(o, ti->kind));
    if (w->trace) {
        push(w, COL_SITE, site_of(w, o));
    }
    if (w->strings && ti->kind == K_STR) {
        push_utf8(w, o, i);
    }
    return w->err ? -1 : 0;
}

/* Once the object has arrived (prefetched PF_OBJ ahead), fetch what its
 * edges are read from: a list's items, a dict's keys, an instance's values. */
static inline void prefetch_payload(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    if (tp == &PyList_Type) {
        __builtin_prefetch(((PyListObject *)o)->ob_item);
    }
    else if (tp == &PyDict_Type) {
        __builtin_prefetch(((PyDictObject *)o)->ma_keys);
    }
    else {
        md_prefetch_values(o, tp);
    }
}

#define PF_OBJ 8
#define PF_PAYLOAD 4

/* Walk to exhaustion: objects in index order, a batch at a time (their
 * edges are discovered together; see q_flush). */
static int process(W *w)
{
    while (w->done < w->index.n) {
        size_t end = w->done + BATCH < w->index.n ? w->done + BATCH : w->index.n;
        for (size_t i = w->done; i < end; i++) {
            /* objects up to w->index.n are discovered: prefetch past the batch */
            if (i + PF_OBJ < w->index.n) {
                __builtin_prefetch(w->index.addrs[i + PF_OBJ]);
            }
            if (i + PF_PAYLOAD < w->index.n) {
                prefetch_payload(w->index.addrs[i + PF_PAYLOAD]);
            }
            if (process_one(w, (uint32_t)i) < 0) {
                goto fail;
            }
        }
        if (q_flush(w) < 0) {
            goto fail;
        }
        w->done = end;
    }
    return 0;
fail:
    if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_RuntimeError, "memdiag walker failed");
    }
    return -1;
}

static int add_root(W *w, PyObject *obj, int kind, PyObject *desc, PyObject *name)
{
    int64_t idx = discover(w, obj, 0, 0);
    if (idx == IDX_ERROR) {
        return -1;
    }
    if (idx == IDX_IGNORED) {
        return 0;
    }
    int64_t d = desc ? label_of(w, desc) : LBL_EMPTY;
    if (d < 0) {
        return -1;
    }
    int64_t n = name ? label_of(w, name) : LBL_EMPTY;
    if (n < 0) {
        return -1;
    }
    w->stats.roots++;
    push(w, COL_ROOT_OBJ, (uint64_t)idx);
    push(w, COL_ROOT_KIND, (uint64_t)kind);
    push(w, COL_ROOT_DESC, (uint64_t)d);
    push(w, COL_ROOT_NAME, (uint64_t)n);
    return w->err ? -1 : 0;
}

/* ------------------------------------------------- unreached candidates */

/* The gc-tracked objects not indexed nor ignored, in the order of the
 * generation lists (as gc.get_objects() lists them), into cand.  Following
 * a linked list is a cache miss per object, one after the other: the lists
 * are cut at "anchors" (tracked objects the walk indexed, spread over the
 * index) and the pieces followed side by side, so that many misses are in
 * flight at once; then the pieces are put back in list order. */
#define GC_CHAINS 48
#define GC_RING 64

static int gc_scan_serial(W *w, PyGC_Head **heads, int nheads, PtrVec *cand)
{
    for (int g = 0; g < nheads; g++) {
        PyGC_Head *head = heads[g];
        PyGC_Head *gc = md_gc_next(head);
        while (gc != NULL && gc != head) {
            PyObject *buf[1024];
            size_t nb = 0;
            while (nb < 1024 && gc != NULL && gc != head) {
                buf[nb++] = md_gc_object(gc);
                gc = md_gc_next(gc);
            }
            for (size_t i = 0; i < nb; i++) {
                if (i + 16 < nb) {
                    tab_prefetch(&w->index, buf[i + 16]);
                }
                if (!is_known(&w->index, buf[i]) && vec_push(cand, buf[i]) < 0) {
                    return -1;
                }
            }
        }
    }
    return 0;
}

typedef struct {
    PyGC_Head *start;       /* the head or anchor the piece starts after */
    PyGC_Head *cur;         /* its next node */
    PyGC_Head *end;         /* the head or anchor it ended at */
    PtrVec cand;
} GcChain;

static inline size_t stop_slot(const void *p)
{
    return md_slot_bits(md_hash_ptr(p), 8);
}

static int gc_candidates(W *w, PyGC_Head **heads, int nheads, PtrVec *cand)
{
    if (w->index.n < 100000 || nheads >= GC_CHAINS / 2) {
        return gc_scan_serial(w, heads, nheads, cand);
    }
    GcChain ch[GC_CHAINS];
    PyGC_Head *stops[256] = {0};   /* open addressing: the heads and anchors */
    int nch = 0;
    for (int g = 0; g < nheads; g++) {
        ch[nch++].start = heads[g];
    }
    size_t step = w->index.n / (GC_CHAINS - nheads) + 1;
    for (size_t k = step / 2; k < w->index.n && nch < GC_CHAINS; k += step) {
        PyObject *o = w->index.addrs[k];
        if (!md_is_gc(o) || !md_gc_tracked(o)) {
            continue;
        }
        ch[nch++].start = md_gc_head(o);
    }
    int nstart = 0;
    for (int c = 0; c < nch; c++) {
        size_t i = stop_slot(ch[c].start);
        while (stops[i] != NULL && stops[i] != ch[c].start) {
            i = (i + 1) & 255;
        }
        if (stops[i] != NULL) {
            continue;           /* the same anchor twice */
        }
        stops[i] = ch[c].start;
        ch[nstart].start = ch[c].start;
        ch[nstart].cur = md_gc_next(ch[c].start);
        ch[nstart].end = NULL;
        ch[nstart].cand = (PtrVec){0};
        nstart++;
    }
    nch = nstart;
    struct { PyObject *o; int c; } ring[GC_RING];
    size_t rn = 0;
    int active = nch, rc = 0;
    while (active && rc == 0) {
        for (int c = 0; c < nch; c++) {
            if (ch[c].end != NULL) {
                continue;
            }
            PyGC_Head *g = ch[c].cur;
            size_t i = stop_slot(g);
            while (stops[i] != NULL && stops[i] != g) {
                i = (i + 1) & 255;
            }
            if (g == NULL || stops[i] == g) {
                ch[c].end = g != NULL ? g : ch[c].start;
                rc = g == NULL ? 1 : 0;     /* a broken list: scan it serially */
                active--;
                continue;
            }
            PyGC_Head *nx = md_gc_next(g);
            __builtin_prefetch(nx);
            ch[c].cur = nx;
            /* is it known? table slot now, address soon, the check later */
            PyObject *o = md_gc_object(g);
            tab_prefetch(&w->index, o);
            size_t k = rn % GC_RING;
            if (rn >= GC_RING) {
                PyObject *old = ring[k].o;
                if (!is_known(&w->index, old) && vec_push(&ch[ring[k].c].cand, old) < 0) {
                    rc = -1;
                    break;
                }
            }
            ring[k].o = o;
            ring[k].c = c;
            rn++;
            if (rn > GC_RING / 2) {
                PyObject *mid = ring[(rn - GC_RING / 2) % GC_RING].o;
                tab_prefetch_addr(&w->index, mid);
            }
        }
    }
    for (size_t j = rn > GC_RING ? rn - GC_RING : 0; j < rn && rc == 0; j++) {
        size_t k = j % GC_RING;
        if (!is_known(&w->index, ring[k].o) && vec_push(&ch[ring[k].c].cand, ring[k].o) < 0) {
            rc = -1;
        }
    }
    /* each list: from its head, piece after piece, back to the head */
    for (int g = 0; g < nheads && rc == 0; g++) {
        int c = g, guard = 0;
        for (;;) {
            for (size_t j = 0; j < ch[c].cand.n && rc == 0; j++) {
                if (vec_push(cand, ch[c].cand.v[j]) < 0) {
                    rc = -1;
                }
            }
            if (rc != 0 || ch[c].end == heads[g]) {
                break;
            }
            int next = -1;
            for (int d = 0; d < nch; d++) {
                if (ch[d].start == ch[c].end) {
                    next = d;
                }
            }
            if (next < 0 || ++guard > nch) {
                rc = 1;
                break;
            }
            c = next;
        }
    }
    for (int c = 0; c < nch; c++) {
        vec_free(&ch[c].cand);
    }
    if (rc == 1) {
        cand->n = 0;
        return gc_scan_serial(w, heads, nheads, cand);
    }
    return rc;
}

/* PyWalker.mark_ignored: everything reachable from the seeds without going
 * through an indexed object is ignored; running frames are never entered. */
static int mark_ignored(W *w, PyObject **seeds, size_t nseeds)
{
    uint32_t dummy;
    /* What PyWalker's own tables hold besides containers: the strings its
     * labels were made from, and the names of its type table that are
     * heap objects (type_name() returns a heap type's __qualname__ when its
     * __module__ is "builtins", its __name__ when it has no __module__). */
    for (size_t i = 0; i < w->labels.origs.n; i++) {
        if (ignore_obj(w, w->labels.origs.v[i]) < 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < w->types.n; i++) {
        PyTypeObject *tp = w->types.info[i]->tp;
        if (!(tp->tp_flags & TPF_HEAPTYPE) || tp->tp_dict == NULL) {
            continue;
        }
        PyHeapTypeObject *ht = (PyHeapTypeObject *)tp;
        PyObject *mod = PyDict_GetItemWithError(tp->tp_dict, w->str_module);
        PyErr_Clear();
        PyObject *name = NULL;
        if (mod == NULL) {
            name = ht->ht_name;
        }
        else if (!PyUnicode_Check(mod) || PyUnicode_CompareWithASCIIString(mod, "builtins") == 0) {
            name = ht->ht_qualname;
        }
        if (name != NULL && PyUnicode_Check(name) && ignore_obj(w, name) < 0) {
            return -1;
        }
    }
    w->stack.n = 0;
    for (size_t i = 0; i < nseeds; i++) {
        if (vec_push(&w->stack, seeds[i]) < 0) {
            set_nomem(w);
            return -1;
        }
    }
    while (w->stack.n) {
        PyObject *o = w->stack.v[--w->stack.n];
        if (map_get(&w->expanded, o, &dummy) || map_get(&w->edges.executing, o, &dummy)) {
            continue;
        }
        if (map_put(&w->expanded, o, 1) < 0) {
            set_nomem(w);
            return -1;
        }
        if (referents(w, o, &w->edges.refs) < 0) {
            return -1;
        }
        for (size_t i = 0; i < w->edges.refs.n; i++) {
            PyObject *r = w->edges.refs.v[i];
            if (is_visited(&w->index, r) || map_get(&w->expanded, r, &dummy)
                    || map_get(&w->edges.executing, r, &dummy)) {
                continue;
            }
            if (ignore_obj(w, r) < 0 || vec_push(&w->stack, r) < 0) {
                set_nomem(w);
                return -1;
            }
        }
    }
    return 0;
}

/* --------------------------------------------------------------- walk() */

static void walker_free(W *w)
{
    sink_free(&w->sink);
    xfree(w->edges.q, QMAX * sizeof(QE));
    index_free(&w->index);
    types_free(w);
    map_free(&w->edges.executing);
    map_free(&w->expanded);
    vec_free(&w->edges.refs);
    vec_free(&w->stack);
    stamp_free(&w->edges.labeled);
    labels_free(w);
    Py_CLEAR(w->keep);
    Py_CLEAR(w->tb_func);
    Py_CLEAR(w->sites);
    Py_CLEAR(w->site_list);
    Py_CLEAR(w->str_module);
}

/* Items of a list/tuple argument as a borrowed array. */
static int seq_items(PyObject *seq, PyObject ***items, Py_ssize_t *n, const char *what)
{
    if (PyList_Check(seq)) {
        *items = ((PyListObject *)seq)->ob_item;
        *n = PyList_GET_SIZE(seq);
        return 0;
    }
    if (PyTuple_Check(seq)) {
        *items = ((PyTupleObject *)seq)->ob_item;
        *n = PyTuple_GET_SIZE(seq);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be a list or a tuple", what);
    return -1;
}

static int tuple_parts(PyObject *t, Py_ssize_t n, PyObject **out, const char *what)
{
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != n) {
        if (PyList_Check(t) && PyList_GET_SIZE(t) == n) {
            for (Py_ssize_t i = 0; i < n; i++) {
                out[i] = PyList_GET_ITEM(t, i);
            }
            return 0;
        }
        PyErr_Format(PyExc_TypeError, "%s entries must be %zd-tuples", what, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = PyTuple_GET_ITEM(t, i);
    }
    return 0;
}

static int init_walker(W *w, PyObject *writer, int stream, int strings, int trace)
{
    memset(w, 0, sizeof(*w));
    sink_init(&w->sink, writer, stream, &w->err);
    w->strings = strings;
    w->trace = trace;
    w->pagesize = sysconf(_SC_PAGESIZE);
    if (w->pagesize <= 0) {
        w->pagesize = 4096;
    }
    for (int c = 1; c < NCOLS; c++) {
        if ((c == COL_SITE && !trace) || ((c == COL_STR_OBJ || c == COL_STR_LEN
                                           || c == COL_STR_DATA) && !strings)) {
            continue;
        }
        if (sink_open(&w->sink, c) < 0) {
            return -1;
        }
    }
    if (map_init(&w->edges.executing, 6) < 0 || stamp_init(&w->edges.labeled) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    /* Size the table for about as many objects as pymalloc has blocks (a
     * close estimate, a little high: most objects are small), at load 0.67.
     * Linear probing with tags stays in one cache line at such loads. */
    size_t est = 0;
    PyObject *f = PySys_GetObject("getallocatedblocks");   /* borrowed */
    if (f != NULL && PyCFunction_Check(f)) {
        PyObject *r = PyObject_CallNoArgs(f);
        if (r != NULL) {
            est = PyLong_AsSize_t(r);
            Py_DECREF(r);
        }
        if (PyErr_Occurred()) {
            PyErr_Clear();
            est = 0;
        }
    }
    if (est < 16384) {
        est = 16384;
    }
    int ok = index_init(&w->index, est) == 0;
    w->edges.q = xcalloc(QMAX * sizeof(QE));
    if (!ok || w->edges.q == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->keep = PyList_New(0);
    w->sites = PyDict_New();
    w->site_list = PyList_New(0);
    w->str_module = PyUnicode_InternFromString("__module__");
    if (map_init(&w->expanded, 10) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    if (!w->str_module || !w->keep || !w->sites || !w->site_list) {
        return -1;
    }
    if (labels_init(w) < 0 || types_init(w) < 0) {
        return -1;
    }
    if (trace) {
        PyObject *mod = PyImport_ImportModule("_tracemalloc");
        if (mod == NULL) {
            return -1;
        }
        w->tb_func = PyObject_GetAttrString(mod, "_get_object_traceback");
        Py_DECREF(mod);
        if (w->tb_func == NULL) {
            return -1;
        }
    }
    return 0;
}

static PyObject *build_result(W *w)
{
    PyObject *trailer = Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:O,s:O,s:O,s:K}",
        "objects", (unsigned long long)w->index.n, "edges", (unsigned long long)w->stats.nedges,
        "roots", (unsigned long long)w->stats.roots, "strings", (unsigned long long)w->stats.nstrings,
        "string_bytes", (unsigned long long)w->stats.string_bytes,
        "type_kinds", w->types.kinds, "labels", w->labels.list, "sites", w->site_list,
        "python_heap", (unsigned long long)w->stats.heap);
    if (trailer == NULL) {
        return NULL;
    }
    PyObject *stats = Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:d,s:d,s:d,s:i,s:s,s:d,s:d}",
        "peak_bytes", (Py_ssize_t)(md_mem_peak + w->index.n * sizeof(PyObject *)),
        "pending_bytes", (Py_ssize_t)w->sink.pending_peak,
        "ignored", (Py_ssize_t)w->index.ignored.n, "table_slots", (Py_ssize_t)w->index.tcap,
        "types", (Py_ssize_t)w->types.n, "labels", PyList_GET_SIZE(w->labels.list),
        "write_seconds", w->sink.write_seconds,
        "compress_seconds", w->sink.pool.compress_seconds,
        "wait_seconds", w->sink.pool.wait_seconds,
        "compress_threads", w->sink.pool.nworkers_started,
        "compressor", sink_compressor(),
        "worker_cpu_seconds", w->sink.pool.worker_cpu_seconds,
        "walk_cpu_seconds", w->stats.walk_cpu_seconds);
    if (stats == NULL) {
        Py_DECREF(trailer);
        return NULL;
    }
    PyObject *res = Py_BuildValue("{s:N,s:s,s:O,s:N}", "trailer", trailer, "walker", "c",
                                  "type_objects", w->types.list, "stats", stats);
    return res;
}

static PyObject *walk_impl(PyObject *args, PyObject *writer, PyObject *module_roots, PyObject *stack_roots,
                           PyObject *thread_roots, PyObject *ignore, PyObject *frames,
                           int strings, int trace, int may_materialize)
{
    W w;
    PyObject *result = NULL;
    PyObject **items;
    Py_ssize_t n;
    PtrVec seeds = {0};
    PtrVec cand = {0};
    md_mem_cur = md_mem_peak = 0;
    int gc_was = PyGC_Disable();
    types_note_writer_class(Py_TYPE(writer));
    double cpu0 = thread_cpu_seconds();

    if (init_walker(&w, writer, may_materialize, strings, trace) < 0) {
        goto done;
    }
    /* Full chunks are deflated by native worker threads while the walk goes
     * on (both modes: they touch no Python object, the walk keeps the GIL). */
    if (sink_start(&w.sink) < 0) {
        goto done;
    }
    /* Ignored up front, as PyWalker does: the writer and its containers
     * (PyWalker.__init__); the walker's own tables and the argument lists
     * (which are memdiag's own objects too) are also expanded in phase 4. */
    {
        static const char *const wattrs[] = {"__dict__", "pending", "counts", NULL};
        if (ignore_obj(&w, writer) < 0) {
            goto done;
        }
        for (int i = 0; wattrs[i] != NULL; i++) {
            PyObject *a = PyObject_GetAttrString(writer, wattrs[i]);
            if (a == NULL) {
                PyErr_Clear();
                continue;
            }
            int r = PyList_Append(w.keep, a);   /* must stay alive */
            PyObject *borrowed = a;
            Py_DECREF(a);
            if (r < 0 || ignore_obj(&w, borrowed) < 0) {
                goto done;
            }
        }
    }
    PyObject *own[] = {w.labels.dict, w.labels.list, w.types.list, w.types.kinds, w.keep,
                       w.sites, w.site_list, module_roots, stack_roots,
                       thread_roots, ignore, frames, args};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        if (ignore_obj(&w, own[i]) < 0 || vec_push(&seeds, own[i]) < 0) {
            set_nomem(&w);
            goto done;
        }
    }
    if (seq_items(ignore, &items, &n, "ignore") < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ignore_obj(&w, items[i]) < 0 || vec_push(&seeds, items[i]) < 0) {
            set_nomem(&w);
            goto done;
        }
    }
    if (seq_items(frames, &items, &n, "frames") < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ignore_obj(&w, items[i]) < 0 || map_put(&w.edges.executing, items[i], 1) < 0) {
            set_nomem(&w);
            goto done;
        }
    }

    /* 1. modules */
    if (seq_items(module_roots, &items, &n, "module_roots") < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p[2];
        if (tuple_parts(items[i], 2, p, "module_roots") < 0
                || add_root(&w, p[1], ROOT_MODULE, p[0], NULL) < 0) {
            goto done;
        }
    }
    if (process(&w) < 0) {
        goto done;
    }
    /* 2. stack locals */
    if (seq_items(stack_roots, &items, &n, "stack_roots") < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p[3];
        if (tuple_parts(items[i], 3, p, "stack_roots") < 0
                || add_root(&w, p[2], ROOT_LOCAL, p[0], p[1]) < 0) {
            goto done;
        }
    }
    if (process(&w) < 0) {
        goto done;
    }
    /* 3. thread state dicts */
    if (seq_items(thread_roots, &items, &n, "thread_roots") < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p[2];
        if (tuple_parts(items[i], 2, p, "thread_roots") < 0
                || add_root(&w, p[1], ROOT_THREAD, p[0], NULL) < 0) {
            goto done;
        }
    }
    if (process(&w) < 0) {
        goto done;
    }
    /* 4. everything only memdiag's own objects reach */
    if (mark_ignored(&w, seeds.v, seeds.n) < 0) {
        goto done;
    }
    /* 5. gc-tracked objects no root reached: collect first (walking may add
     * to the generation lists), then walk each in list order. */
    {
        PyGC_Head *heads[MD_GC_LISTS];
        int nheads = md_gc_lists(heads);
        if (gc_candidates(&w, heads, nheads, &cand) < 0) {
            set_nomem(&w);
            goto done;
        }
    }
    for (size_t i = 0; i < cand.n; i++) {
        PyObject *o = cand.v[i];
        if (is_known(&w.index, o)) {
            continue;
        }
        if (add_root(&w, o, ROOT_UNREACHED, NULL, NULL) < 0 || process(&w) < 0) {
            goto done;
        }
    }
    vec_free(&cand);
    if (sink_finish(&w.sink) < 0) {
        goto done;
    }
    w.stats.walk_cpu_seconds = thread_cpu_seconds() - cpu0;
    /* No raw object pointer is used past this point: the chunks kept in
     * memory may now go to the writer (which may release the GIL). */
    if (sink_write_pending(&w.sink) < 0) {
        goto done;
    }
    result = build_result(&w);

done:
    sink_stop(&w.sink);
    vec_free(&seeds);
    vec_free(&cand);
    walker_free(&w);
    if (gc_was) {
        PyGC_Enable();
    }
    return result;
}

PyDoc_STRVAR(walk_doc,
"walk(writer, module_roots, stack_roots, thread_roots, ignore, frames,\n"
"     strings, trace, may_materialize) -> dict\n\n"
"Walk the heap into writer (a memdiag.snapfile.Writer) as PyWalker.run does.\n"
"Returns {'trailer': {...}, 'walker': 'c', 'type_objects': [types in type\n"
"index order], 'stats': {'peak_bytes', 'pending_bytes', 'compressor', ...}}.\n\n"
"may_materialize=True promises a throwaway fork child: chunks are written as\n"
"they are compressed, during the walk. Otherwise nothing is written until the\n"
"walk is over. Either way the GIL is held throughout the walk; chunks are\n"
"compressed by native threads (MEMDIAG_COMPRESS_THREADS: how many, 0-4).\n"
"The argument lists themselves are ignored like `ignore`'s objects.");

static PyObject *walk(PyObject *self, PyObject *args)
{
    PyObject *writer, *module_roots, *stack_roots, *thread_roots, *ignore, *frames;
    int strings, trace, may_materialize;
    if (!PyArg_ParseTuple(args, "OOOOOOppp:walk", &writer, &module_roots, &stack_roots,
                          &thread_roots, &ignore, &frames, &strings, &trace,
                          &may_materialize)) {
        return NULL;
    }
    return walk_impl(args, writer, module_roots, stack_roots, thread_roots, ignore, frames,
                     strings, trace, may_materialize);
}

/* ------------------------------------------------------------ capture() */

typedef struct {
    PyObject *list;
    PyObject *desc;
} RootCtx;

static int capture_local(void *ctx, PyObject *name, PyObject *value)
{
    RootCtx *rc = ctx;
    PyObject *t = PyTuple_Pack(3, rc->desc, name, value);
    if (t == NULL) {
        return -1;
    }
    int r = PyList_Append(rc->list, t);
    Py_DECREF(t);
    return r;
}

/* os.path.dirname(filename) == hook_dir */
static int is_hook_file(PyObject *filename, PyObject *hook_dir)
{
    if (filename == NULL || !PyUnicode_Check(filename) || hook_dir == NULL) {
        return 0;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(filename);
    Py_ssize_t i = PyUnicode_FindChar(filename, '/', 0, n, -1);
    if (i < 0) {
        return PyUnicode_GET_LENGTH(hook_dir) == 0;
    }
    Py_ssize_t end = i + 1;
    /* rstrip the slashes unless the head is all slashes */
    Py_ssize_t j = end;
    while (j > 0 && PyUnicode_READ_CHAR(filename, j - 1) == '/') {
        j--;
    }
    if (j > 0) {
        end = j;
    }
    PyObject *head = PyUnicode_Substring(filename, 0, end);
    if (head == NULL) {
        PyErr_Clear();
        return 0;
    }
    int eq = PyUnicode_Compare(head, hook_dir) == 0;
    Py_DECREF(head);
    PyErr_Clear();
    return eq;
}

static PyObject *frame_desc(PyObject *tname, PyCodeObject *co, int lineno)
{
    return PyUnicode_FromFormat("%U: %U (%U:%d)", tname, co->co_name, co->co_filename, lineno);
}

typedef struct {
    unsigned long tid;
    PyThreadState *ts;
} TS;

PyDoc_STRVAR(capture_doc,
"capture(names, main_tid, hook_dir) -> dict\n\n"
"Every thread's frames and thread-state dicts, read without running code or\n"
"materializing frames: {'stack_roots': [(desc, name, obj)],\n"
"'thread_roots': [(thread name, dict)], 'frames': [frame objects]}.");

static PyObject *capture(PyObject *self, PyObject *args)
{
    PyObject *names, *hook_dir;
    unsigned long long main_tid;
    if (!PyArg_ParseTuple(args, "OKU:capture", &names, &main_tid, &hook_dir)) {
        return NULL;
    }
    int gc_was = PyGC_Disable();
    PyObject *stack_roots = PyList_New(0), *thread_roots = PyList_New(0),
             *frames = PyList_New(0), *keepalive = PyList_New(0), *result = NULL;
    TS *tss = NULL;
    size_t nts = 0, cap = 0;
    if (!stack_roots || !thread_roots || !frames || !keepalive) {
        goto done;
    }
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    for (PyThreadState *t = PyInterpreterState_ThreadHead(interp); t != NULL;
            t = PyThreadState_Next(t)) {
        if (nts == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            TS *nt = realloc(tss, ncap * sizeof(TS));
            if (nt == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            tss = nt;
            cap = ncap;
        }
        tss[nts].tid = t->thread_id;
        tss[nts].ts = t;
        nts++;
    }
    /* main thread first, then ascending thread id */
    for (size_t i = 1; i < nts; i++) {
        TS cur = tss[i];
        size_t j = i;
        while (j > 0) {
            TS prev = tss[j - 1];
            int cur_main = cur.tid == (unsigned long)main_tid;
            int prev_main = prev.tid == (unsigned long)main_tid;
            int less = cur_main != prev_main ? cur_main : cur.tid < prev.tid;
            if (!less) {
                break;
            }
            tss[j] = prev;
            j--;
        }
        tss[j] = cur;
    }
    for (size_t k = 0; k < nts; k++) {
        PyThreadState *t = tss[k].ts;
        PyObject *tname = NULL;
        if (names != NULL && PyDict_Check(names)) {
            PyObject *key = PyLong_FromUnsignedLong(tss[k].tid);
            if (key == NULL) {
                goto done;
            }
            PyObject *v = PyDict_GetItemWithError(names, key);
            Py_DECREF(key);
            if (v != NULL && PyUnicode_Check(v)) {
                tname = Py_NewRef(v);
            }
            PyErr_Clear();
        }
        if (tname == NULL) {
            tname = PyUnicode_FromFormat("thread-%lu", tss[k].tid);
            if (tname == NULL) {
                goto done;
            }
        }
        for (MdFrame *fr = md_thread_frame(t); fr != NULL; fr = md_frame_previous(fr)) {
            if (md_frame_is_shim(fr)) {
                continue;
            }
            PyCodeObject *co = md_frame_code(fr);
            if (co == NULL || md_frame_incomplete(fr)) {
                continue;
            }
            PyFrameObject *f = md_frame_object(fr);
            if (f != NULL && PyList_Append(frames, (PyObject *)f) < 0) {
                Py_DECREF(tname);
                goto done;
            }
            if (is_hook_file(co->co_filename, hook_dir)) {
                continue;
            }
            int lineno = f != NULL ? md_frameobj_lineno(f) : 0;
            if (lineno == 0) {
                lineno = md_frame_line(fr);
            }
            PyObject *desc = frame_desc(tname, co, lineno);
            if (desc == NULL) {
                Py_DECREF(tname);
                goto done;
            }
            int r = 0;
            PyObject *flocals = md_frame_locals_dict(fr);
            if (co->co_flags & CO_OPTIMIZED) {
                RootCtx rc = {stack_roots, desc};
                r = md_frame_locals(fr, f, capture_local, &rc);
            }
            else if (flocals != NULL && flocals != md_frame_globals(fr)) {
                PyObject *lname = PyUnicode_FromString("<locals>");
                PyObject *tup = lname ? PyTuple_Pack(3, desc, lname, flocals) : NULL;
                Py_XDECREF(lname);
                r = tup ? PyList_Append(stack_roots, tup) : -1;
                Py_XDECREF(tup);
            }
            Py_DECREF(desc);
            if (r < 0) {
                Py_DECREF(tname);
                goto done;
            }
        }
        /* 3.13 keeps threading.local data per sentinel: a fork child clears
         * other threads' sentinels, which drops their data, unless held. */
        PyObject *sentinel = md_thread_local_sentinel(t);
        if (sentinel != NULL && PyList_Append(keepalive, sentinel) < 0) {
            Py_DECREF(tname);
            goto done;
        }
        if (t->dict != NULL) {
            PyObject *tup = PyTuple_Pack(2, tname, t->dict);
            int r = tup ? PyList_Append(thread_roots, tup) : -1;
            Py_XDECREF(tup);
            if (r < 0) {
                Py_DECREF(tname);
                goto done;
            }
        }
        Py_DECREF(tname);
    }
    result = Py_BuildValue("{s:O,s:O,s:O,s:O}", "stack_roots", stack_roots,
                           "thread_roots", thread_roots, "frames", frames,
                           "keepalive", keepalive);
done:
    free(tss);
    Py_XDECREF(stack_roots);
    Py_XDECREF(thread_roots);
    Py_XDECREF(frames);
    Py_XDECREF(keepalive);
    if (gc_was) {
        PyGC_Enable();
    }
    return result;
}

/* --------------------------------------------------------------- module */

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, walk_doc},
    {"capture", capture, METH_VARARGS, capture_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "memdiag._walker",
    "The compiled heap walker of memdiag (see memdiag/walker.py for the semantics).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__walker(void)
{
    sink_load_compressors();
    if (types_init_module() < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "PYTHON", PY_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
