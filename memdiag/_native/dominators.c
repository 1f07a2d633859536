/* memdiag._dominators: the dominator tree of a snapshot's object graph, and
 * the retained size of every object, in O(m log n).
 *
 * dominators(nedges, etarget, size, roots, unreached) -> (idom, retained, count)
 *
 *   nedges     per object, how many edges it has (unsigned, 1/2/4/8 bytes)
 *   etarget    per edge, its target object index (uint32), grouped by source
 *   size       per object, its size in bytes (unsigned, 1/2/4/8 bytes)
 *   roots      object indexes held by a root (module, frame local, thread
 *              dict): children of the virtual root, always (uint32)
 *   unreached  the "<unreached>" root entries, in the order the walk met
 *              them (uint32)
 *
 * It returns three bytes objects, indexed by object: idom (uint32, the
 * immediate dominator's index, or n for the virtual root), retained
 * (uint64, the object's size plus the sizes of all it dominates) and count
 * (uint32, how many objects that is, itself included).
 *
 * The graph has one virtual root above all objects. Its children: every
 * object in `roots`; then every unreached entry no edge points to (nothing
 * in the snapshot holds it, so something outside does); then, in walk order,
 * each other unreached entry that nothing before reached (a cycle held from
 * outside: one entry stands for it); then, in index order, any object still
 * not reached (only a damaged file has one). See docs/RETAINED.md.
 *
 * The algorithm is Lengauer-Tarjan with simple path compression (the
 * O(m log n) version), iterative everywhere: no recursion, so a chain of
 * millions of objects needs no deep C stack. Memory, besides the inputs and
 * outputs: 4 bytes per edge and at most 44 bytes per object, all freed before
 * return. The GIL is released while it runs.
 *
 * Nodes are numbered in DFS preorder from 1: 1 is the virtual root, objects
 * get 2..N; 0 means "none". The reference implementation in Python is
 * memdiag/analysis/retained.py (reference_dominators); tests compare them.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const void *buf;
    int width;              /* bytes per value: 1, 2, 4 or 8 */
    Py_ssize_t count;
} UArray;

static inline uint64_t uget(const UArray *a, size_t i)
{
    switch (a->width) {
    case 1: return ((const uint8_t *)a->buf)[i];
    case 2: return ((const uint16_t *)a->buf)[i];
    case 4: return ((const uint32_t *)a->buf)[i];
    default: return ((const uint64_t *)a->buf)[i];
    }
}

/* Gets an unsigned-integer buffer; `want` 0 accepts any width. */
static int get_uarray(PyObject *obj, Py_buffer *view, UArray *out, int want, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    while (*f == '<' || *f == '=' || *f == '@') {
        f++;
    }
    int ok = f[0] && !f[1] && strchr("BHILQ", f[0]) != NULL
             && (view->itemsize == 1 || view->itemsize == 2 || view->itemsize == 4
                 || view->itemsize == 8)
             && (want == 0 || view->itemsize == want);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s: expected an array of unsigned integers%s", what,
                     want == 4 ? " (uint32)" : "");
        PyBuffer_Release(view);
        return -1;
    }
    out->buf = view->buf;
    out->width = (int)view->itemsize;
    out->count = view->len / view->itemsize;
    return 0;
}

typedef struct {
    /* inputs */
    UArray nedges, etarget, size, roots, unreached;
    size_t n;               /* objects */
    size_t nn;              /* nodes numbered: N, the virtual root included */
    /* object-indexed */
    uint32_t *off;          /* n + 1: first edge of each object */
    uint32_t *indeg;        /* n: edges pointing at each object */
    uint32_t *dfn;          /* n: preorder number, 0 = not reached yet */
    /* node-indexed (1..N) */
    uint32_t *vertex;       /* node -> object (vertex[1] unused: the virtual root) */
    uint32_t *parent;       /* DFS tree parent */
    uint32_t *semi;         /* edge cursor during the DFS, then semidominator */
    uint32_t *stack;        /* the DFS stack, then path compression's */
    uint32_t *rstart;       /* N + 2: first predecessor of each node */
    uint32_t *preds;        /* predecessors, grouped by node */
    uint32_t *label, *ancestor, *idom, *bucket;
    const char *error;      /* set on bad input (the GIL is not held) */
} Dom;

#define NONE 0u
#define VROOT 1u

static void dom_free(Dom *d)
{
    free(d->off);
    free(d->indeg);
    free(d->dfn);
    free(d->vertex);
    free(d->parent);
    free(d->semi);
    free(d->stack);
    free(d->rstart);
    free(d->preds);
    free(d->label);
    free(d->ancestor);
    free(d->idom);
    free(d->bucket);
}

/* Edge offsets and in-degrees; checks every count and target. */
static int build_offsets(Dom *d)
{
    size_t n = d->n;
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        d->off[i] = (uint32_t)pos;
        pos += uget(&d->nedges, i);
        if (pos > (uint64_t)d->etarget.count) {
            d->error = "edge counts do not add up";
            return -1;
        }
    }
    d->off[n] = (uint32_t)pos;
    if (pos != (uint64_t)d->etarget.count) {
        d->error = "edge counts do not add up";
        return -1;
    }
    const uint32_t *t = d->etarget.buf;
    for (size_t e = 0; e < (size_t)pos; e++) {
        if (t[e] >= n) {
            d->error = "edge target out of range";
            return -1;
        }
        d->indeg[t[e]]++;
    }
    return 0;
}

/* Depth-first search from object r, as a new child of the virtual root.
 * The cursor of the edges of the node numbered k is semi[k]. */
static void dfs_from(Dom *d, uint32_t r)
{
    const uint32_t *t = d->etarget.buf;
    uint32_t k = (uint32_t)++d->nn;
    d->dfn[r] = k;
    d->vertex[k] = r;
    d->parent[k] = VROOT;
    d->semi[k] = d->off[r];
    size_t sp = 0;
    d->stack[sp++] = r;
    while (sp) {
        uint32_t v = d->stack[sp - 1];
        uint32_t kv = d->dfn[v];
        uint32_t e = d->semi[kv];
        uint32_t end = d->off[v + 1];
        while (e < end && d->dfn[t[e]] != NONE) {
            e++;
        }
        if (e == end) {
            d->semi[kv] = end;
            sp--;
            continue;
        }
        uint32_t w = t[e];
        d->semi[kv] = e + 1;
        k = (uint32_t)++d->nn;
        d->dfn[w] = k;
        d->vertex[k] = w;
        d->parent[k] = kv;
        d->semi[k] = d->off[w];
        d->stack[sp++] = w;
    }
}

static int search(Dom *d)
{
    const UArray *roots = &d->roots, *unr = &d->unreached;
    d->nn = VROOT;
    for (Py_ssize_t i = 0; i < roots->count; i++) {
        uint64_t r = uget(roots, i);
        if (r >= d->n) {
            d->error = "root object out of range";
            return -1;
        }
        if (d->dfn[r] == NONE) {
            dfs_from(d, (uint32_t)r);
        }
    }
    for (Py_ssize_t i = 0; i < unr->count; i++) {
        uint64_t r = uget(unr, i);
        if (r >= d->n) {
            d->error = "root object out of range";
            return -1;
        }
        if (d->indeg[r] == 0 && d->dfn[r] == NONE) {
            dfs_from(d, (uint32_t)r);
        }
    }
    for (Py_ssize_t i = 0; i < unr->count; i++) {
        uint32_t r = (uint32_t)uget(unr, i);
        if (d->dfn[r] == NONE) {
            dfs_from(d, r);
        }
    }
    for (size_t r = 0; r < d->n; r++) {
        if (d->dfn[r] == NONE) {
            dfs_from(d, (uint32_t)r);
        }
    }
    return 0;
}

/* Predecessors of every node, by node number: the snapshot's edges, plus an
 * edge from the virtual root to each of its children (the objects in
 * `roots`, and every node the search started from it). */
static int build_preds(Dom *d)
{
    size_t nn = d->nn, n = d->n;
    /* Node k's count goes to rs[k + 2]; after the prefix sum, rs[k + 1] is
     * the start of k's predecessors, and serves as the fill cursor; once
     * filled, it is the end of k's, so rs[k] is the start of k's. */
    uint32_t *rs = d->rstart;           /* nn + 3 slots, zeroed */
    for (size_t v = 0; v < n; v++) {
        rs[d->dfn[v] + 2] += d->indeg[v];
    }
    free(d->indeg);
    d->indeg = NULL;
    for (Py_ssize_t i = 0; i < d->roots.count; i++) {
        rs[d->dfn[uget(&d->roots, i)] + 2]++;
    }
    for (size_t k = 2; k <= nn; k++) {
        if (d->parent[k] == VROOT) {
            rs[k + 2]++;
        }
    }
    uint64_t total = 0;
    for (size_t k = 0; k <= nn + 2; k++) {
        total += rs[k];
        if (total > UINT32_MAX) {
            d->error = "too many edges for 32-bit positions";
            return -1;
        }
        rs[k] = (uint32_t)total;
    }
    d->preds = malloc((total ? total : 1) * sizeof(uint32_t));
    if (d->preds == NULL) {
        return -2;
    }
    const uint32_t *t = d->etarget.buf;
    for (size_t v = 0; v < n; v++) {
        uint32_t kv = d->dfn[v];
        for (uint32_t e = d->off[v]; e < d->off[v + 1]; e++) {
            d->preds[rs[d->dfn[t[e]] + 1]++] = kv;
        }
    }
    for (Py_ssize_t i = 0; i < d->roots.count; i++) {
        d->preds[rs[d->dfn[uget(&d->roots, i)] + 1]++] = VROOT;
    }
    for (size_t k = 2; k <= nn; k++) {
        if (d->parent[k] == VROOT) {
            d->preds[rs[k + 1]++] = VROOT;
        }
    }
    free(d->off);
    d->off = NULL;
    return 0;
}

/* eval(v) of Lengauer-Tarjan with path compression, without recursion. */
static inline uint32_t eval(Dom *d, uint32_t v)
{
    uint32_t *anc = d->ancestor, *label = d->label, *semi = d->semi;
    if (anc[v] == NONE) {
        return v;
    }
    if (anc[anc[v]] != NONE) {
        size_t sp = 0;
        uint32_t u = v;
        while (anc[anc[u]] != NONE) {
            d->stack[sp++] = u;
            u = anc[u];
        }
        while (sp) {
            uint32_t x = d->stack[--sp];
            uint32_t a = anc[x];
            if (semi[label[a]] < semi[label[x]]) {
                label[x] = label[a];
            }
            anc[x] = anc[a];
        }
    }
    return label[v];
}

static void lengauer_tarjan(Dom *d)
{
    size_t nn = d->nn;
    uint32_t *semi = d->semi, *label = d->label, *parent = d->parent;
    uint32_t *idom = d->idom, *bucket = d->bucket, *rs = d->rstart;
    for (uint32_t k = 1; k <= nn; k++) {
        semi[k] = k;
        label[k] = k;
    }
    /* idom[] doubles as the "next" link of the bucket lists: a node's idom
     * is set only when it leaves its bucket. */
    for (uint32_t w = (uint32_t)nn; w >= 2; w--) {
        uint32_t sw = w;
        for (uint32_t p = rs[w]; p < rs[w + 1]; p++) {
            uint32_t v = d->preds[p];
            if (v < w) {
                /* Not processed yet, so not linked: eval(v) is v, whose
                 * semi is still v. Most predecessors (the DFS parent among
                 * them) are such; this skips three random reads. */
                if (v < sw) {
                    sw = v;
                }
                continue;
            }
            uint32_t u = eval(d, v);
            if (semi[u] < sw) {
                sw = semi[u];
            }
        }
        semi[w] = sw;
        idom[w] = bucket[sw];
        bucket[sw] = w;
        uint32_t pw = parent[w];
        d->ancestor[w] = pw;
        uint32_t v = bucket[pw];
        bucket[pw] = NONE;
        while (v != NONE) {
            uint32_t next = idom[v];
            uint32_t u = eval(d, v);
            idom[v] = semi[u] < semi[v] ? u : pw;
            v = next;
        }
    }
    idom[1] = NONE;
    for (uint32_t w = 2; w <= nn; w++) {
        if (idom[w] != semi[w]) {
            idom[w] = idom[idom[w]];
        }
    }
}

static PyObject *dominators(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_nedges, *o_etarget, *o_size, *o_roots, *o_unreached;
    if (!PyArg_ParseTuple(args, "OOOOO:dominators", &o_nedges, &o_etarget, &o_size,
                          &o_roots, &o_unreached)) {
        return NULL;
    }
    Py_buffer views[5];
    int got = 0;
    Dom d;
    memset(&d, 0, sizeof d);
    PyObject *b_idom = NULL, *b_ret = NULL, *b_count = NULL, *result = NULL;
    if (get_uarray(o_nedges, &views[got], &d.nedges, 0, "nedges") < 0) goto done;
    got++;
    if (get_uarray(o_etarget, &views[got], &d.etarget, 4, "etarget") < 0) goto done;
    got++;
    if (get_uarray(o_size, &views[got], &d.size, 0, "size") < 0) goto done;
    got++;
    if (get_uarray(o_roots, &views[got], &d.roots, 0, "roots") < 0) goto done;
    got++;
    if (get_uarray(o_unreached, &views[got], &d.unreached, 0, "unreached") < 0) goto done;
    got++;
    size_t n = (size_t)d.nedges.count;
    d.n = n;
    if ((size_t)d.size.count != n) {
        PyErr_SetString(PyExc_ValueError, "nedges and size differ in length");
        goto done;
    }
    if (n >= UINT32_MAX - 2 || (uint64_t)d.etarget.count >= UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many objects or edges for 32-bit indexes");
        goto done;
    }
    b_idom = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 4));
    b_ret = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 8));
    b_count = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 4));
    if (b_idom == NULL || b_ret == NULL || b_count == NULL) {
        goto done;
    }
    uint32_t *out_idom = (uint32_t *)PyBytes_AS_STRING(b_idom);
    uint64_t *out_ret = (uint64_t *)PyBytes_AS_STRING(b_ret);
    uint32_t *out_count = (uint32_t *)PyBytes_AS_STRING(b_count);
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS
    size_t slots = n + 2;               /* nodes 0 (none), 1 (virtual root), 2..n+1 */
    d.off = malloc((n + 1) * sizeof(uint32_t));
    d.indeg = calloc(n ? n : 1, sizeof(uint32_t));
    d.dfn = calloc(n ? n : 1, sizeof(uint32_t));
    d.vertex = malloc(slots * sizeof(uint32_t));
    d.parent = malloc(slots * sizeof(uint32_t));
    d.semi = malloc(slots * sizeof(uint32_t));
    d.stack = malloc(slots * sizeof(uint32_t));
    if (!d.off || !d.indeg || !d.dfn || !d.vertex || !d.parent || !d.semi || !d.stack) {
        rc = -2;
    }
    if (rc == 0) {
        rc = build_offsets(&d);
    }
    if (rc == 0) {
        rc = search(&d);
    }
    if (rc == 0) {
        d.rstart = calloc(d.nn + 3, sizeof(uint32_t));
        rc = d.rstart ? build_preds(&d) : -2;
    }
    if (rc == 0) {
        d.label = malloc(slots * sizeof(uint32_t));
        d.ancestor = calloc(slots, sizeof(uint32_t));
        d.idom = malloc(slots * sizeof(uint32_t));
        d.bucket = calloc(slots, sizeof(uint32_t));
        rc = (d.label && d.ancestor && d.idom && d.bucket) ? 0 : -2;
    }
    if (rc == 0) {
        lengauer_tarjan(&d);
        free(d.preds);
        free(d.rstart);
        free(d.label);
        free(d.ancestor);
        free(d.bucket);
        free(d.semi);
        free(d.stack);
        d.preds = d.rstart = d.label = d.ancestor = d.bucket = d.semi = d.stack = NULL;
        /* Retained sizes and counts: children come after their immediate
         * dominator in preorder, so one backward sweep adds them up. */
        memset(out_ret, 0, n * 8);
        memset(out_count, 0, n * 4);
        for (size_t k = d.nn; k >= 2; k--) {
            uint32_t v = d.vertex[k];
            uint32_t p = d.idom[k];
            out_ret[v] += uget(&d.size, v);
            out_count[v] += 1;
            if (p == VROOT) {
                out_idom[v] = (uint32_t)n;
            } else {
                uint32_t pv = d.vertex[p];
                out_idom[v] = pv;
                out_ret[pv] += out_ret[v];
                out_count[pv] += out_count[v];
            }
        }
    }
    dom_free(&d);
    Py_END_ALLOW_THREADS
    if (rc == -2) {
        PyErr_NoMemory();
        goto done;
    }
    if (rc < 0) {
        PyErr_Format(PyExc_ValueError, "bad graph: %s", d.error ? d.error : "?");
        goto done;
    }
    result = PyTuple_Pack(3, b_idom, b_ret, b_count);
done:
    Py_XDECREF(b_idom);
    Py_XDECREF(b_ret);
    Py_XDECREF(b_count);
    while (got > 0) {
        PyBuffer_Release(&views[--got]);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"dominators", dominators, METH_VARARGS,
     "dominators(nedges, etarget, size, roots, unreached) -> (idom, retained, count):\n"
     "bytes of uint32, uint64 and uint32 per object; idom is n for the virtual root."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "memdiag._dominators",
    .m_doc = "Dominator tree and retained sizes of a snapshot's object graph (Lengauer-Tarjan).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__dominators(void)
{
    return PyModule_Create(&module);
}
