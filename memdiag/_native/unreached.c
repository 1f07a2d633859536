/* memdiag/_native/unreached.c: the walk's phases 4 and 5, what the roots
 * did not reach: everything only memdiag's own objects reach is ignored
 * (mark_ignored), then the gc-tracked objects left are found in the order of
 * the gc's lists (gc_candidates) and walked as "unreached" roots.
 */

#include "walker.h"

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

int gc_candidates(W *w, PyGC_Head **heads, int nheads, PtrVec *cand)
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
int mark_ignored(W *w, PyObject **seeds, size_t nseeds)
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
