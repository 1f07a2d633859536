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
 *   encoded by the walk and deflated (with libdeflate, or the process's own
 *   libz, as zlib.compress would, crc32 included) by native worker threads
 *   that never touch a Python object, while the walk goes on.  In-process
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
 *
 * The sources, in memdiag/_native/ (not memdiag/_walker/, which would
 * shadow this module), one job each; setup.py builds the .c files but
 * fastmatch.c (memdiag._fastmatch) into memdiag._walker:
 *
 *   module.c      this file: the module's functions, its import
 *   walk.c        walk(): the phases, each object's columns, the roots
 *   unreached.c   phases 4-5: the ignored set, the gc lists' leftovers
 *   edges.c       an object's edges and labels, the discovery queue
 *   labels.c      the label table
 *   types.c       the type table: kinds, sizes, lengths, __slots__
 *   capture.c     capture(): every thread's stack roots
 *   index.[ch]    the object index: addresses, their table, the ignored set
 *   sink.[ch]     columns -> encoding -> deflate pool -> writer
 *   encode.[ch]   the column transforms (delta, zig-zag, shuffle, narrowing)
 *   tables.[ch]   memory accounting; pointer vector, set and map
 *   walker.h      the walk's state W (a sub-struct per unit), shared inlines
 *   compat.h      every read of CPython internals, listed; it picks
 *   py3NN.h       the accessors of one Python version
 *   format.h      snapfile.py's constants (scripts/gen-format-h writes it)
 *   hash.h        the address hash (fastmatch.c's too)
 *
 * Test-only entry points are in tests/native/walkertest.c (not shipped).
 */

#include "walker.h"

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, walk_doc},
    {"capture", capture, METH_VARARGS, capture_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "memdiag._walker",
    .m_doc = "The compiled heap walker of memdiag (see memdiag/walker.py for the semantics).",
    .m_size = -1,
    .m_methods = methods,
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
