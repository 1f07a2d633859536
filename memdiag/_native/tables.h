/* memdiag/_native/tables.h: the walker's memory accounting and its small
 * tables of pointers: a growable vector, a set emptied in O(1), a map to
 * uint32 values (open addressing, hash.h's address hash).
 *
 * The lookups are inline (they run for every edge); growing and freeing are
 * in tables.c.  Every byte allocated through xcalloc/xrealloc/md_mem_count
 * is counted, so that the walk can report its peak (stats "peak_bytes").
 */
#ifndef MD_TABLES_H
#define MD_TABLES_H

#include "compat.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hash.h"

#pragma GCC visibility push(hidden)

/* ---------------------------------------------------- memory accounting */

extern size_t md_mem_cur, md_mem_peak;

void *xrealloc(void *p, size_t old, size_t new_size);
void *xcalloc(size_t n);
void xfree(void *p, size_t size);

/* Count n bytes allocated some other way (uncount with md_mem_uncount). */
static inline void md_mem_count(size_t n)
{
    md_mem_cur += n;
    if (md_mem_cur > md_mem_peak) {
        md_mem_peak = md_mem_cur;
    }
}

static inline void md_mem_uncount(size_t n)
{
    md_mem_cur -= n;
}

/* --------------------------------------------------------------- PtrVec */

/* A growable vector of borrowed object pointers. */
typedef struct {
    PyObject **v;
    size_t n, cap;
} PtrVec;

int vec_grow(PtrVec *vec);
void vec_free(PtrVec *vec);

static inline int vec_push(PtrVec *vec, PyObject *o)
{
    if (vec->n == vec->cap && vec_grow(vec) < 0) {
        return -1;
    }
    vec->v[vec->n++] = o;
    return 0;
}

static inline int in_vec(PtrVec *vec, PyObject *p)
{
    for (size_t i = 0; i < vec->n; i++) {
        if (vec->v[i] == p) {
            return 1;
        }
    }
    return 0;
}

static inline size_t hash_ptr(const void *p, int bits)
{
    return md_slot_bits(md_hash_ptr(p), bits);
}

/* ------------------------------------------------------------- StampSet */

/* A set of pointers that is emptied in O(1) by bumping a stamp: the set of
 * objects labeled by the current object's edges. */
typedef struct {
    struct { PyObject *p; uint32_t stamp; } *e;
    size_t cap, n;
    int bits;
    uint32_t stamp;
} StampSet;

int stamp_init(StampSet *s);
void stamp_free(StampSet *s);
int stamp_grow(StampSet *s);

static inline void stamp_reset(StampSet *s)
{
    s->n = 0;
    if (++s->stamp == 0) {
        memset(s->e, 0, s->cap * sizeof(*s->e));
        s->stamp = 1;
    }
}

static inline int stamp_has(StampSet *s, PyObject *p)
{
    size_t mask = s->cap - 1, i = hash_ptr(p, s->bits);
    for (;;) {
        if (s->e[i].stamp != s->stamp) {
            return 0;
        }
        if (s->e[i].p == p) {
            return 1;
        }
        i = (i + 1) & mask;
    }
}

static inline int stamp_add(StampSet *s, PyObject *p)
{
    if ((s->n + 1) * 2 > s->cap && stamp_grow(s) < 0) {
        return -1;
    }
    size_t mask = s->cap - 1, i = hash_ptr(p, s->bits);
    for (;;) {
        if (s->e[i].stamp != s->stamp) {
            s->e[i].p = p;
            s->e[i].stamp = s->stamp;
            s->n++;
            return 0;
        }
        if (s->e[i].p == p) {
            return 0;
        }
        i = (i + 1) & mask;
    }
}

/* --------------------------------------------------------------- PtrMap */

/* A map from pointers to uint32 values (types, label strings). */
typedef struct {
    struct { const void *p; uint32_t v; } *e;
    size_t cap, n;
    int bits;
} PtrMap;

int map_init(PtrMap *m, int bits);
void map_free(PtrMap *m);
int map_grow(PtrMap *m);

static inline int map_get(PtrMap *m, const void *p, uint32_t *v)
{
    size_t mask = m->cap - 1, i = hash_ptr(p, m->bits);
    for (;;) {
        if (m->e[i].p == NULL) {
            return 0;
        }
        if (m->e[i].p == p) {
            *v = m->e[i].v;
            return 1;
        }
        i = (i + 1) & mask;
    }
}

static inline int map_put(PtrMap *m, const void *p, uint32_t v)
{
    if ((m->n + 1) * 2 > m->cap && map_grow(m) < 0) {
        return -1;
    }
    size_t mask = m->cap - 1, i = hash_ptr(p, m->bits);
    while (m->e[i].p != NULL && m->e[i].p != p) {
        i = (i + 1) & mask;
    }
    if (m->e[i].p == NULL) {
        m->n++;
    }
    m->e[i].p = p;
    m->e[i].v = v;
    return 0;
}

#pragma GCC visibility pop

#endif
