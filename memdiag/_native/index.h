/* memdiag/_native/index.h: the object index.
 *
 * Objects get indexes in the order they are discovered, which is also the
 * breadth-first queue: addrs[i] is object i.  An open-addressing table of
 * uint32 entries (tag << 28 | (index + 1); the tag, 4 more bits of the
 * address hash, spares most reads of addrs) maps an address to its index;
 * it is sized from pymalloc's block count and kept at most 3/4 full, so
 * linear probing stays in a cache line.  The ignored set (memdiag's own
 * objects, and what only they reach) is a PtrMap beside it.
 *
 * Lookups are inline; allocating and growing are in index.c.
 */
#ifndef MD_INDEX_H
#define MD_INDEX_H

#include "compat.h"

#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "tables.h"

#pragma GCC visibility push(hidden)

#define TAG_SHIFT 28
#define IDX_MASK 0x0FFFFFFFu
#define MAX_OBJECTS 0x0FFFFFF0u

typedef struct {
    PyObject **addrs;       /* index -> object */
    size_t n, cap;
    uint32_t *tab;          /* 0 empty, else tag << 28 | (index + 1) */
    size_t tcap;
    PtrMap ignored;
} ObjIndex;

/* Room for about est objects; -1 without memory (no exception set). */
int index_init(ObjIndex *ix, size_t est);
void index_free(ObjIndex *ix);
/* Room for one more address; -1 without memory. */
int index_grow(ObjIndex *ix);
/* The table rebuilt with cap slots; -1 without memory. */
int index_rebuild(ObjIndex *ix, size_t cap);

static inline uint32_t tag_of(uint64_t h)
{
    return ((uint32_t)(h >> 20) & 0xF) << TAG_SHIFT;
}

/* index+1 of p, or 0 with *slot where it would go. */
static inline uint32_t tab_lookup(ObjIndex *ix, PyObject *p, uint64_t h, size_t *slot)
{
    size_t cap = ix->tcap, s = md_slot_of(h, cap);
    uint32_t tag = tag_of(h);
    uint32_t *tab = ix->tab;
    for (;;) {
        uint32_t e = tab[s];
        if (e == 0) {
            *slot = s;
            return 0;
        }
        if ((e & ~IDX_MASK) == tag && ix->addrs[(e & IDX_MASK) - 1] == p) {
            *slot = s;
            return e & IDX_MASK;
        }
        if (++s == cap) {
            s = 0;
        }
    }
}

/* Fetch p's table slot, soon to be looked up. */
static inline void tab_prefetch(ObjIndex *ix, PyObject *p)
{
    __builtin_prefetch(&ix->tab[md_slot_of(md_hash_ptr(p), ix->tcap)]);
}

/* Fetch the address p's slot points to (the slot itself fetched earlier). */
static inline void tab_prefetch_addr(ObjIndex *ix, PyObject *p)
{
    uint32_t e = ix->tab[md_slot_of(md_hash_ptr(p), ix->tcap)];
    if (e) {
        __builtin_prefetch(&ix->addrs[(e & IDX_MASK) - 1]);
    }
}

static inline int is_ignored(ObjIndex *ix, PyObject *p)
{
    uint32_t dummy;
    return ix->ignored.n != 0 && map_get(&ix->ignored, p, &dummy);
}

static inline int is_visited(ObjIndex *ix, PyObject *p)
{
    size_t slot;
    return tab_lookup(ix, p, md_hash_ptr(p), &slot) != 0;
}

static inline int is_known(ObjIndex *ix, PyObject *p)
{
    return is_visited(ix, p) || is_ignored(ix, p);
}

#pragma GCC visibility pop

#endif
