/* memdiag/_native/index.c: allocating and growing the object index (see
 * index.h). */

#include "index.h"

#include <stdlib.h>
#include <sys/mman.h>

/* The table is touched at random: huge pages spare most TLB misses. */
static uint32_t *table_alloc(size_t cap)
{
    size_t bytes = cap * sizeof(uint32_t);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (bytes >= (4u << 20)) {
        madvise(p, bytes, MADV_HUGEPAGE);
    }
#endif
    md_mem_count(bytes);
    return p;
}

static void table_free(uint32_t *tab, size_t cap)
{
    if (tab != NULL) {
        munmap(tab, cap * sizeof(uint32_t));
        md_mem_uncount(cap * sizeof(uint32_t));
    }
}

int index_init(ObjIndex *ix, size_t est)
{
    ix->tcap = est * 3 / 2;
    ix->tab = table_alloc(ix->tcap);
    ix->cap = est;
    ix->addrs = malloc(ix->cap * sizeof(PyObject *));   /* resident as it fills */
    if (ix->tab == NULL || ix->addrs == NULL || map_init(&ix->ignored, 10) < 0) {
        return -1;
    }
    return 0;
}

void index_free(ObjIndex *ix)
{
    free(ix->addrs);
    ix->addrs = NULL;
    table_free(ix->tab, ix->tcap);
    ix->tab = NULL;
    map_free(&ix->ignored);
}

int index_grow(ObjIndex *ix)
{
    size_t ncap = ix->cap + ix->cap / 2 + 1024;
    /* not counted in md_mem_peak: only the pages written become resident */
    PyObject **na = realloc(ix->addrs, ncap * sizeof(PyObject *));
    if (na == NULL) {
        return -1;
    }
    ix->addrs = na;
    ix->cap = ncap;
    return 0;
}

int index_rebuild(ObjIndex *ix, size_t cap)
{
    table_free(ix->tab, ix->tcap);
    ix->tab = NULL;
    ix->tcap = 0;
    uint32_t *tab = table_alloc(cap);
    if (tab == NULL) {
        return -1;
    }
    for (size_t i = 0; i < ix->n; i++) {
        uint64_t h = md_hash_ptr(ix->addrs[i]);
        size_t s = md_slot_of(h, cap);
        while (tab[s]) {
            if (++s == cap) {
                s = 0;
            }
        }
        tab[s] = tag_of(h) | (uint32_t)(i + 1);
    }
    ix->tab = tab;
    ix->tcap = cap;
    return 0;
}
