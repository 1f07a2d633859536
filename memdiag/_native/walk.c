/* memdiag/_native/walk.c: walk(), the heap walk in its phases (see
 * walk_impl): the objects reached from the module, stack and thread roots
 * breadth-first, then the unreached ones (unreached.c); each object's type,
 * size, length, allocation site and string contents (process_one) and its
 * edges (edges.c) out to the sink.
 */

#include "walker.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- each object */

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
    Py_ssize_t size = size_of(o, ti);
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

/* --------------------------------------------------------------- walk() */

static void walker_free(W *w)
{
    sink_free(&w->sink);
    index_free(&w->index);
    types_free(w);
    map_free(&w->expanded);
    vec_free(&w->stack);
    edges_free(w);
    labels_free(w);
    Py_CLEAR(w->keep);
    Py_CLEAR(w->tb_func);
    Py_CLEAR(w->sites);
    Py_CLEAR(w->site_list);
    Py_CLEAR(w->str_module);
    xfree(w->bounds.v, w->bounds.cap * sizeof(uint64_t));
    w->bounds = (BoundList){0};
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
    for (int c = 1; c < NCOLS; c++) {
        if ((c == COL_SITE && !trace) || ((c == COL_STR_OBJ || c == COL_STR_LEN
                                           || c == COL_STR_DATA) && !strings)) {
            continue;
        }
        if (sink_open(&w->sink, c) < 0) {
            return -1;
        }
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
    if (index_init(&w->index, est) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    if (edges_init(w) < 0) {
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
    /* W10.3: deque's maxlen getter (borrowed from the type's dict, which
     * keeps it). */
    w->bounds.last = -1;
    if (w->types.deque_type != NULL) {
        PyObject *d = md_type_dict(w->types.deque_type);
        PyObject *descr = d != NULL && PyDict_Check(d) ? PyDict_GetItemString(d, "maxlen") : NULL;
        if (descr != NULL && Py_TYPE(descr)->tp_descr_get != NULL) {
            w->deque_maxlen = descr;
        }
        PyErr_Clear();
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
    if (w->bounds.n > 0) {
        /* W10.3: [object index, bound] pairs, only when there is one */
        PyObject *bounds = PyList_New((Py_ssize_t)(w->bounds.n / 2));
        for (size_t i = 0; bounds != NULL && i < w->bounds.n / 2; i++) {
            PyObject *pair = Py_BuildValue("[KK]", (unsigned long long)w->bounds.v[2 * i],
                                           (unsigned long long)w->bounds.v[2 * i + 1]);
            if (pair == NULL) {
                Py_CLEAR(bounds);
                break;
            }
            PyList_SET_ITEM(bounds, (Py_ssize_t)i, pair);
        }
        if (bounds == NULL || PyDict_SetItemString(trailer, "bounds", bounds) < 0) {
            Py_XDECREF(bounds);
            Py_DECREF(trailer);
            return NULL;
        }
        Py_DECREF(bounds);
    }
    PyObject *stats = Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:d,s:d,s:d,s:i,s:s,s:d,s:d,s:n,s:d}",
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
        "walk_cpu_seconds", w->stats.walk_cpu_seconds,
        "code_names", (Py_ssize_t)w->labels.code_names.n,
        "code_names_seconds", w->stats.code_names_seconds);
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

    /* The names of the program's code objects, before the first dict key is
     * looked at (W5.2): the code naming a key may come after it in the walk. */
    {
        double t0 = thread_cpu_seconds();
        if (code_names_collect(&w, module_roots) < 0) {
            goto done;
        }
        w.stats.code_names_seconds = thread_cpu_seconds() - t0;
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
     * to the generation lists), then walk each in list order; not the
     * interpreter's table of interned strs (3.14+ tracks it): its strs are
     * walked where something else holds them, as on 3.11-3.13. */
    {
        PyGC_Head *heads[MD_GC_LISTS];
        int nheads = md_gc_lists(heads);
        if (gc_candidates(&w, heads, nheads, &cand) < 0) {
            set_nomem(&w);
            goto done;
        }
    }
    PyObject *interned = md_interned_table();
    for (size_t i = 0; i < cand.n; i++) {
        PyObject *o = cand.v[i];
        if (o == interned || is_known(&w.index, o)) {
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

const char walk_doc[] = PyDoc_STR(
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

PyObject *walk(PyObject *self, PyObject *args)
{
    (void)self;
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
