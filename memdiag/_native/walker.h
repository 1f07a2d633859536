/* memdiag/_native/walker.h: the walk's state and what its units share.
 *
 * W is one walk: its object index (index.h), its sink (sink.h: columns,
 * compression pool, writer), its label and type tables (labels.c,
 * types.c), its edge queue (edges.c) and its counts; the rest is the walk's
 * own (walk.c, unreached.c).  The functions the walk calls for every object
 * or edge are inline here; the rest are declared by unit below.
 */
#ifndef MD_WALKER_H
#define MD_WALKER_H

#include "compat.h"

#include <stdint.h>
#include <string.h>

#include "format.h"
#include "index.h"
#include "sink.h"
#include "tables.h"

#pragma GCC visibility push(hidden)

#ifndef CO_OPTIMIZED
#define CO_OPTIMIZED 0x0001
#endif
#define MD_T_OBJECT 6           /* structmember.h's T_OBJECT, T_OBJECT_EX */
#define MD_T_OBJECT_EX 16
#define TPF_HEAPTYPE Py_TPFLAGS_HEAPTYPE
#define TPF_HAVE_GC Py_TPFLAGS_HAVE_GC
#if defined(__GNUC__) && __GNUC__ >= 7
#  define MD_FALLTHROUGH __attribute__((fallthrough))
#else
#  define MD_FALLTHROUGH ((void)0)
#endif

/* ----------------------------------------------------- kinds and labels */

enum {
    K_DICT, K_LIST, K_TUPLE, K_SET, K_DEQUE, K_STR, K_BYTES, K_INT, K_FLOAT,
    K_MODULE, K_TYPE, K_FUNCTION, K_CODE, K_FRAME, K_CELL, K_LRU, K_INSTANCE,
    K_OTHER, NKINDS
};

/* Labels made on first use (not well-known), by name.  PyWalker makes the
 * ones it uses from its own constants: interned strs that exist already
 * (descriptor names of the code and type types); the C-only ones are plain
 * strs of the walker's own (never interned: 3.12+ would make them immortal
 * in the target). */
enum {
    NL_NAME, NL_QUALNAME, NL_SUBCLASSES,
    NL_CO_CONSTS, NL_CO_NAMES, NL_CO_FILENAME, NL_CO_NAME, NL_CO_QUALNAME,
    NL_CO_LINETABLE, NL_CO_EXCEPTIONTABLE, NL_CO_CODE, NL_CO_VARNAMES,
    NL_CO_CELLVARS, NL_CO_FREEVARS, NL_CO_LOCALSPLUSNAMES, NL_CO_LOCALSPLUSKINDS,
    NNAMED
};

/* ------------------------------------------------------------ type info */

typedef enum { SZ_OBJECT, SZ_LIST, SZ_STR, SZ_INT, SZ_DICT, SZ_CMETH, SZ_PYFUNC } SizeMode;

typedef struct {
    Py_ssize_t offset;
    PyObject *name;         /* str, the key in the type's dict */
} Slot;

typedef struct {
    PyTypeObject *tp;
    uint32_t index;
    int kind;
    SizeMode size_mode;
    PyObject *sizeof_descr; /* borrowed from the type's MRO dicts */
    Py_ssize_t py_preheader;
    int managed;
    int has_dict_getset;    /* a heap type in the MRO has a __dict__ getset */
    int plain;              /* tp_traverse shows the type and the attributes only */
    int type_known;         /* the type object is indexed or ignored */
    Py_ssize_t dictoffset;
    Slot *slots;
    size_t nslots;
} TypeInfo;

/* ------------------------------------------------------- the edge queue */

/* An edge waiting to be discovered (see q_flush), or an object's end. */
typedef struct {
    PyObject *obj;
    uint32_t label;
    uint32_t src;           /* index of the source object | kind << 30 */
} QE;
#define Q_EDGE 0u
#define Q_OPAQUE 1u         /* L_ITEM_OPAQUE with the previous edge's index */
#define Q_TYPE 2u           /* obj is a TypeInfo: __class__ edge if needed */
#define Q_END 3u            /* the source's edges are all out: NEDGES */
#define Q_SRC_MASK 0x3FFFFFFFu
#define Q_OPAQUE_PREV 0xFFFFFFFFu
#define QMAX 8192
#define BATCH 256

/* The names of the program's code objects (WALK.md W5.2): the ASCII strs of
 * their co_names, co_localsplusnames and co_name, borrowed from the code
 * objects, each text once (open addressing on a hash of the bytes: the
 * program's strs are read, never hashed by Python nor increfed). */
typedef struct {
    PyObject *s;
    uint64_t h;             /* the hash of its bytes */
} NameEntry;

typedef struct {
    NameEntry *e;
    size_t cap, n;
    int bits;
} NameSet;

/* The label table (the trailer's "labels"): Python objects, ignored by the
 * walk. */
typedef struct {
    PyObject *dict;         /* str -> label index */
    PyObject *list;         /* the labels, by index */
    PtrMap cache;           /* str pointer -> label index */
    PtrMap keys;            /* name-like dict key pointer -> label index */
    PtrVec origs;           /* the str each label was first made from */
    int64_t named[NNAMED];  /* NAMED_LABELS' label indexes, -1 until used */
    NameSet code_names;     /* names in the program's code objects */
} LabelTable;

/* The trailer's "bounds" (WALK.md W10.3): [object index, bound] pairs, in
 * index order, interleaved. */
typedef struct {
    uint64_t *v;
    size_t n, cap;          /* in values: 2 per pair */
    int64_t last;           /* the index of the last pair's object, -1 */
} BoundList;

/* The type table (the trailer's "types" and "type_kinds"). */
typedef struct {
    PtrMap map;             /* type pointer -> TypeInfo index */
    TypeInfo **info;        /* by type index */
    size_t n, cap;
    TypeInfo *last;         /* the last one looked up */
    PyObject *list;         /* the type objects, by index */
    PyObject *kinds;        /* their kinds' names, by index */
    PyTypeObject *deque_type;
    PyTypeObject *lru_type;
    PyObject *str_sizeof;
    PyObject *str_dict;
} TypeTable;

/* Edges on their way to the columns: the queue of edges waiting to be
 * discovered, and what reading the current object's edges needs. */
typedef struct {
    QE *q;
    size_t qn;
    int64_t q_last;         /* index of the last edge's target (IDX_* if none) */
    uint32_t cur_edges;     /* edges of the object whose Q_END is next */
    PtrVec refs;            /* referents of the current object */
    StampSet labeled;       /* objects its labeled edges went to */
    PtrMap executing;       /* running frames: never traversed */
    long pagesize;
} EdgeQueue;

typedef struct {
    uint64_t nedges, roots, nstrings, string_bytes, heap;
    double walk_cpu_seconds;
    double code_names_seconds;  /* collecting the code objects' names */
} WalkStats;

/* The walker's state, one for each walk() call. */
typedef struct {
    ObjIndex index;
    Sink sink;              /* columns, the compression pool, the writer */
    LabelTable labels;
    TypeTable types;
    EdgeQueue edges;
    WalkStats stats;
    BoundList bounds;
    PyObject *deque_maxlen; /* deque's maxlen getset descriptor (borrowed) */

    size_t done;            /* objects processed: the queue's head */
    int strings, trace;
    PyObject *keep;         /* strs the walker made or must keep alive */
    PyObject *tb_func;      /* trace: tracemalloc's _get_object_traceback */
    PyObject *sites;        /* dict traceback tuple -> site index + 1 */
    PyObject *site_list;
    PtrVec stack;           /* mark-ignored work list */
    PtrMap expanded;        /* mark-ignored: objects already expanded */
    PyObject *str_module;
    int err;                /* the walk failed: its exception is set */
} W;

#define IDX_IGNORED (-1)
#define IDX_ERROR (-2)

/* ------------------------------------------------------- inline helpers */

static inline void set_nomem(W *w)
{
    if (!w->err) {
        w->err = 1;
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
    }
}

static inline void push(W *w, int column, uint64_t v)
{
    sink_push(&w->sink, column, v);
}

static inline void push_bytes(W *w, int column, const uint8_t *p, size_t len)
{
    sink_push_bytes(&w->sink, column, p, len);
}

/* Mark an unvisited object ignored; 1 if it was not ignored yet. */
static inline int ignore_obj(W *w, PyObject *p)
{
    if (is_visited(&w->index, p) || is_ignored(&w->index, p)) {
        return 0;
    }
    if (map_put(&w->index.ignored, p, 1) < 0) {
        set_nomem(w);
        return -1;
    }
    return 1;
}

/* The index of obj, assigning the next one if new (and writing its ADDR,
 * PARENT and PLABEL); IDX_IGNORED, or IDX_ERROR with w->err set. */
static inline int64_t discover(W *w, PyObject *obj, uint32_t parent, uint32_t label)
{
    ObjIndex *ix = &w->index;
    uint64_t h = md_hash_ptr(obj);
    size_t slot;
    uint32_t v = tab_lookup(ix, obj, h, &slot);
    if (v) {
        return (int64_t)(v - 1);
    }
    if (is_ignored(ix, obj)) {
        return IDX_IGNORED;
    }
    if (ix->n >= MAX_OBJECTS) {
        if (!w->err) {
            w->err = 1;
            PyErr_SetString(PyExc_OverflowError, "memdiag walker: too many objects");
        }
        return IDX_ERROR;
    }
    if (ix->n == ix->cap && index_grow(ix) < 0) {
        set_nomem(w);
        return IDX_ERROR;
    }
    if ((ix->n + 1) * 4 > ix->tcap * 3) {         /* load > 0.75: grow to 0.5 */
        size_t ncap = (ix->n + 1) * 2;
        if (ncap < ix->tcap * 3 / 2) {
            ncap = ix->tcap * 3 / 2;
        }
        if (index_rebuild(ix, ncap) < 0) {
            set_nomem(w);
            return IDX_ERROR;
        }
        tab_lookup(ix, obj, h, &slot);
    }
    size_t idx = ix->n++;
    ix->addrs[idx] = obj;
    ix->tab[slot] = tag_of(h) | (uint32_t)(idx + 1);
    push(w, COL_ADDR, (uint64_t)(uintptr_t)obj);
    push(w, COL_PARENT, parent);
    push(w, COL_PLABEL, label);
    return (int64_t)idx;
}

/* ------------------------------------------------------------- labels.c */

int labels_init(W *w);
void labels_free(W *w);
/* The label of a str not in the cache (LBL_EMPTY for another object); -1
 * with w->err set. */
int64_t label_new(W *w, PyObject *s);
/* The label of a str of the walker's own making. */
int64_t label_cstr(W *w, const char *s);
/* The label of NAMED_LABELS[i], made on first use. */
int64_t label_named(W *w, int i);
/* memdiag.walker.key_written: whether an exact str dict key is written as
 * a name (W5.2): name-like, and interned, a dunder or a code name. */
int key_written(W *w, PyObject *s);
/* Collect the names of the code objects the modules' namespaces hold
 * (W5.2); -1 with w->err set. */
int code_names_collect(W *w, PyObject *module_roots);

/* The label of a str: its index in the label table, made if new. */
static inline int64_t label_of(W *w, PyObject *s)
{
    uint32_t v;
    if (map_get(&w->labels.cache, s, &v)) {
        return v;
    }
    return label_new(w, s);
}

/* -------------------------------------------------------------- types.c */

int types_init_module(void);
void types_note_writer_class(PyTypeObject *wt);
int types_init(W *w);
void types_free(W *w);
/* A type's info, made and added to the table; NULL with w->err set. */
TypeInfo *new_type_info(W *w, PyTypeObject *tp);
/* sys.getsizeof(o), without calling Python code. */
Py_ssize_t size_of(PyObject *o, TypeInfo *ti);
/* len(o) for containers, str and bytes (of that kind); 0 otherwise. */
uint64_t length_of(PyObject *o, int kind);

/* The info of an object's type, made on first use. */
static inline TypeInfo *type_info(W *w, PyTypeObject *tp)
{
    if (w->types.last != NULL && w->types.last->tp == tp) {
        return w->types.last;
    }
    uint32_t v;
    TypeInfo *ti;
    if (map_get(&w->types.map, tp, &v)) {
        ti = w->types.info[v];
    }
    else {
        ti = new_type_info(w, tp);
        if (ti == NULL) {
            return NULL;
        }
    }
    w->types.last = ti;
    return ti;
}

/* -------------------------------------------------------------- edges.c */

int edges_init(W *w);
void edges_free(W *w);
/* Referents of o into vec, as gc.get_referents(o) (none for a running
 * frame, or a frame whose data cannot be read safely). */
int referents(W *w, PyObject *o, PtrVec *vec);
/* o's edges into the queue, src its index. */
int do_edges(W *w, PyObject *o, uint32_t src, TypeInfo *ti);
/* Discover the queued edges' targets, in order, and write the edge columns. */
int q_flush(W *w);

/* Queue an edge of object src (kind: Q_EDGE, Q_OPAQUE, Q_TYPE, or Q_END for
 * the end of src's edges); the queue is flushed when full. */
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

/* ---------------------------------------------------------- unreached.c */

/* The gc-tracked objects neither indexed nor ignored, in the order of the
 * gc's lists (heads: md_gc_lists), into cand. */
int gc_candidates(W *w, PyGC_Head **heads, int nheads, PtrVec *cand);
/* PyWalker.mark_ignored: what the seeds reach without going through an
 * indexed object is ignored. */
int mark_ignored(W *w, PyObject **seeds, size_t nseeds);

/* ----------------------------------------------- the module's functions */

/* walk.c: walk(writer, module_roots, stack_roots, thread_roots, ignore,
 * frames, strings, trace, may_materialize) -> dict */
PyObject *walk(PyObject *self, PyObject *args);
extern const char walk_doc[];
/* capture.c: capture(names, main_tid, hook_dir) -> dict */
PyObject *capture(PyObject *self, PyObject *args);
extern const char capture_doc[];

#pragma GCC visibility pop

#endif
