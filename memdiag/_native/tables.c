/* memdiag/_native/tables.c: memory accounting, and growing and freeing the
 * pointer tables of tables.h. */

#include "tables.h"

#include <stdlib.h>

size_t md_mem_cur, md_mem_peak;

void *xrealloc(void *p, size_t old, size_t new_size)
{
    void *q = realloc(p, new_size ? new_size : 1);
    if (q == NULL) {
        return NULL;
    }
    md_mem_cur = md_mem_cur - old + new_size;
    if (md_mem_cur > md_mem_peak) {
        md_mem_peak = md_mem_cur;
    }
    return q;
}

void *xcalloc(size_t n)
{
    void *q = calloc(1, n ? n : 1);
    if (q == NULL) {
        return NULL;
    }
    md_mem_count(n);
    return q;
}

void xfree(void *p, size_t size)
{
    if (p != NULL) {
        free(p);
        md_mem_cur -= size;
    }
}

int vec_grow(PtrVec *vec)
{
    size_t ncap = vec->cap ? vec->cap * 2 : 64;
    PyObject **nv = xrealloc(vec->v, vec->cap * sizeof(PyObject *), ncap * sizeof(PyObject *));
    if (nv == NULL) {
        return -1;
    }
    vec->v = nv;
    vec->cap = ncap;
    return 0;
}

void vec_free(PtrVec *vec)
{
    xfree(vec->v, vec->cap * sizeof(PyObject *));
    vec->v = NULL;
    vec->n = vec->cap = 0;
}

int stamp_init(StampSet *s)
{
    s->bits = 6;
    s->cap = (size_t)1 << s->bits;
    s->n = 0;
    s->stamp = 1;
    s->e = xcalloc(s->cap * sizeof(*s->e));
    return s->e ? 0 : -1;
}

void stamp_free(StampSet *s)
{
    xfree(s->e, s->cap * sizeof(*s->e));
    s->e = NULL;
}

int stamp_grow(StampSet *s)
{
    StampSet old = *s;
    s->bits += 1;
    s->cap = (size_t)1 << s->bits;
    s->e = xcalloc(s->cap * sizeof(*s->e));
    if (s->e == NULL) {
        *s = old;
        return -1;
    }
    s->n = 0;
    s->stamp = 1;
    for (size_t i = 0; i < old.cap; i++) {
        if (old.e[i].stamp == old.stamp) {
            stamp_add(s, old.e[i].p);
        }
    }
    xfree(old.e, old.cap * sizeof(*old.e));
    return 0;
}

int map_init(PtrMap *m, int bits)
{
    m->bits = bits;
    m->cap = (size_t)1 << bits;
    m->n = 0;
    m->e = xcalloc(m->cap * sizeof(*m->e));
    return m->e ? 0 : -1;
}

void map_free(PtrMap *m)
{
    xfree(m->e, m->cap * sizeof(*m->e));
    m->e = NULL;
}

int map_grow(PtrMap *m)
{
    PtrMap old = *m;
    if (map_init(m, old.bits + 1) < 0) {
        *m = old;
        return -1;
    }
    for (size_t i = 0; i < old.cap; i++) {
        if (old.e[i].p != NULL) {
            map_put(m, old.e[i].p, old.e[i].v);
        }
    }
    map_free(&old);
    return 0;
}
