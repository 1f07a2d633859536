/* memdiag/_native/edges.c: an object's edges, in the order and with the
 * labels PyWalker gives them, read from the object's fields (dict items,
 * list items, __slots__, inline values, frame locals, code and type fields)
 * or from tp_traverse; then discovered in batches (q_flush).
 */

#include "walker.h"

#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------- referents, frame data */

static int visit_collect(PyObject *o, void *arg)
{
    return vec_push((PtrVec *)arg, o) < 0 ? -1 : 0;
}

/* Whether the memory [p, p+len) is mapped (a frame of a thread that is gone
 * in a fork child points into a freed data stack). */
static int mapped(W *w, const void *p, size_t len)
{
    uintptr_t start = (uintptr_t)p & ~((uintptr_t)w->edges.pagesize - 1);
    uintptr_t end = (uintptr_t)p + len;
    size_t npages = (end - start + (size_t)w->edges.pagesize - 1) / (size_t)w->edges.pagesize;
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
int referents(W *w, PyObject *o, PtrVec *vec)
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
int q_flush(W *w)
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

/* ---------------------------------------------------------- bounds */

/* W10.3: record src's bound (the first one found for an object). */
static int bound_add(W *w, uint32_t src, long long bound)
{
    BoundList *b = &w->bounds;
    if (b->last == (int64_t)src) {
        return 0;
    }
    if (b->n + 2 > b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 64;
        uint64_t *nv = xrealloc(b->v, b->cap * sizeof(uint64_t), ncap * sizeof(uint64_t));
        if (nv == NULL) {
            set_nomem(w);
            return -1;
        }
        b->v = nv;
        b->cap = ncap;
    }
    b->v[b->n++] = src;
    b->v[b->n++] = (uint64_t)bound;
    b->last = src;
    return 0;
}

/* An exact int's value when it is a bound (0 <= v < 2^63), else -1.  Reading
 * an int runs no code of the program. */
static long long bound_value(PyObject *v)
{
    if (v == NULL || !PyLong_CheckExact(v)) {
        return -1;
    }
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (n == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return overflow || n < 0 ? -1 : n;
}

/* An attribute that holds a bound (W10.3): maxsize or maxlen, alone, after
 * one underscore, or private to a class (_Cache__maxsize, as cachetools
 * stores it). */
static int bound_name(PyObject *name)
{
    if (!PyUnicode_CheckExact(name) || !md_str_ready(name) || !PyUnicode_IS_ASCII(name)) {
        return 0;
    }
    static const char *const suffixes[] = {"maxsize", "maxlen"};
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    const char *c = (const char *)PyUnicode_1BYTE_DATA(name);
    for (int k = 0; k < 2; k++) {
        Py_ssize_t sl = (Py_ssize_t)strlen(suffixes[k]);
        if (n < sl || memcmp(c + n - sl, suffixes[k], (size_t)sl) != 0) {
            continue;
        }
        Py_ssize_t p = n - sl;
        return p == 0 || (p == 1 && c[0] == '_')
               || (p >= 4 && c[0] == '_' && c[1] != '_' && c[p - 1] == '_' && c[p - 2] == '_');
    }
    return 0;
}

/* An attribute's bound, if it is one. */
static inline int attr_bound(W *w, uint32_t src, PyObject *name, PyObject *v)
{
    if (w->bounds.last == (int64_t)src || !bound_name(name)) {
        return 0;
    }
    long long b = bound_value(v);
    return b < 0 ? 0 : bound_add(w, src, b);
}

/* The bound among an instance dict's items. */
static int dict_bound(W *w, uint32_t src, PyObject *d)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (w->bounds.last != (int64_t)src && PyDict_Next(d, &pos, &k, &v)) {
        if (attr_bound(w, src, k, v) < 0) {
            return -1;
        }
    }
    return 0;
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
        if (v != NULL && (emit_labeled(w, src, v, L_ATTR, label_of(w, ti->slots[k].name)) < 0
                          || attr_bound(w, src, ti->slots[k].name, v) < 0)) {
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
            if (emit_labeled(w, src, d, L_ATTR, LBL_DICT) < 0) {
                return -1;
            }
            return dict_bound(w, src, d);
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
                if (r < 0 || attr_bound(w, src, name, v) < 0) {
                    return -1;
                }
            }
        }
        if (d != NULL) {
            /* 3.13: a __dict__ made while the inline values stay valid; the
             * object holds it although tp_traverse shows the values instead. */
            if (emit_labeled(w, src, d, L_ATTR, LBL_DICT) < 0) {
                return -1;
            }
            return Py_IS_TYPE(d, &PyDict_Type) ? dict_bound(w, src, d) : 0;
        }
        return 0;
    }
    /* PyWalker reads the slot at a positive tp_dictoffset only (a negative
     * one, var-sized layouts, is left to tp_traverse: unlabeled). */
    PyObject *d = ti->dictoffset > 0 ? *(PyObject **)((char *)o + ti->dictoffset) : NULL;
    if (d != NULL && Py_IS_TYPE(d, &PyDict_Type) && (refs == NULL || in_vec(refs, d))) {
        if (emit_labeled(w, src, d, L_ATTR, LBL_DICT) < 0) {
            return -1;
        }
        return dict_bound(w, src, d);
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

int do_edges(W *w, PyObject *o, uint32_t src, TypeInfo *ti)
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
            else if (PyUnicode_CheckExact(k) && key_written(w, k)) {
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
    case K_DEQUE: {
        /* W4.5: deque_traverse visits the items last, left to right (3.13+:
         * after the type): the last len() referents are the items. */
        if (referents(w, o, &w->edges.refs) < 0) {
            return -1;
        }
        have_refs = 1;
        size_t nr = w->edges.refs.n, n = (size_t)Py_SIZE(o);
        if (n <= nr) {
            use_labeled = 1;
            for (size_t i = 0; i < n; i++) {
                if (emit_labeled(w, src, w->edges.refs.v[nr - n + i], L_INDEX, (int64_t)i) < 0) {
                    return -1;
                }
            }
        }
        /* W10.3: maxlen, from the base type's getter (C: no code of the
         * program, also for a subclass). */
        PyObject *descr = w->deque_maxlen;
        if (descr != NULL) {
            PyObject *m = Py_TYPE(descr)->tp_descr_get(descr, o, (PyObject *)w->types.deque_type);
            long long b = bound_value(m);
            Py_XDECREF(m);
            PyErr_Clear();
            if (b >= 0 && bound_add(w, src, b) < 0) {
                return -1;
            }
        }
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
                /* W10.3: maxsize, read where the wrapper keeps it once its
                 * cache and function are found where they should be (-1:
                 * maxsize=None, unbounded). */
                Py_ssize_t maxsize;
                if (md_lru_maxsize(o, r, w->edges.refs.v[k + 1], &maxsize) && maxsize >= 0
                        && bound_add(w, src, maxsize) < 0) {
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

int edges_init(W *w)
{
    w->edges.pagesize = sysconf(_SC_PAGESIZE);
    if (w->edges.pagesize <= 0) {
        w->edges.pagesize = 4096;
    }
    w->edges.q = xcalloc(QMAX * sizeof(QE));
    if (w->edges.q == NULL || map_init(&w->edges.executing, 6) < 0
            || stamp_init(&w->edges.labeled) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

void edges_free(W *w)
{
    xfree(w->edges.q, QMAX * sizeof(QE));
    w->edges.q = NULL;
    map_free(&w->edges.executing);
    vec_free(&w->edges.refs);
    stamp_free(&w->edges.labeled);
}
