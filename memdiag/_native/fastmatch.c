/* memdiag._fastmatch: match two snapshots' objects by address, in O(n).
 *
 * match(a, b) takes two C-contiguous buffers of uint64 addresses (numpy
 * arrays) and returns (ia, ib): two bytes objects of uint32 indexes such that
 * a[ia[k]] == b[ib[k]], in the order of b. An address repeated in a (only a
 * damaged file has that) matches its first occurrence.
 *
 * It is an open-addressing hash join: build a table of a's indexes, probe it
 * with b. About 10x faster than sorting both arrays with numpy, and the table
 * (4 bytes a slot, half full) is the only extra memory. The analyses
 * fall back to numpy when this extension is not built.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define BATCH 32

/* An address's slot: the address hash of the walker's tables (hash.h). */
static inline size_t slot_of(uint64_t addr, size_t cap)
{
    return md_slot_of(md_hash_addr(addr), cap);
}

static PyObject *match(PyObject *self, PyObject *args)
{
    Py_buffer A, B;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*:match", &A, &B)) {
        return NULL;
    }
    PyObject *ia = NULL, *ib = NULL, *result = NULL;
    uint32_t *table = NULL;
    if (A.len % 8 || B.len % 8) {
        PyErr_SetString(PyExc_ValueError, "buffers must hold uint64 values");
        goto done;
    }
    Py_ssize_t n = A.len / 8, m = B.len / 8;
    if (n >= (Py_ssize_t)UINT32_MAX || m >= (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many objects for 32-bit indexes");
        goto done;
    }
    /* Exactly twice as many slots as addresses (not the next power of two,
     * which can double the table): a hash maps to a slot by multiply-shift. */
    size_t cap = (size_t)n * 2 < 16 ? 16 : (size_t)n * 2;
    Py_ssize_t most = m;    /* each b[j] matches at most once (b may repeat an address) */
    ia = PyBytes_FromStringAndSize(NULL, most * 4);
    ib = PyBytes_FromStringAndSize(NULL, most * 4);
    table = calloc(cap, sizeof(uint32_t));
    if (ia == NULL || ib == NULL) {
        goto done;
    }
    if (table == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const uint64_t *a = A.buf, *b = B.buf;
    uint32_t *oa = (uint32_t *)PyBytes_AS_STRING(ia);
    uint32_t *ob = (uint32_t *)PyBytes_AS_STRING(ib);
    Py_ssize_t found = 0;
    Py_BEGIN_ALLOW_THREADS
    /* Both loops go in batches: hash a batch and prefetch its table slots
     * (when probing, then also the addresses those slots point to) before
     * using them, so that the cache misses of a batch overlap. */
    size_t hs[BATCH];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += BATCH) {
        Py_ssize_t i1 = i0 + BATCH < n ? i0 + BATCH : n;
        for (Py_ssize_t i = i0; i < i1; i++) {
            hs[i - i0] = slot_of(a[i], cap);
            __builtin_prefetch(&table[hs[i - i0]], 1);
        }
        for (Py_ssize_t i = i0; i < i1; i++) {
            size_t h = hs[i - i0];
            for (;;) {
                uint32_t slot = table[h];
                if (slot == 0) {
                    table[h] = (uint32_t)i + 1;
                    break;
                }
                if (a[slot - 1] == a[i]) {
                    break;          /* a repeated address: keep the first */
                }
                h = h + 1 == cap ? 0 : h + 1;
            }
        }
    }
    for (Py_ssize_t j0 = 0; j0 < m; j0 += BATCH) {
        Py_ssize_t j1 = j0 + BATCH < m ? j0 + BATCH : m;
        for (Py_ssize_t j = j0; j < j1; j++) {
            hs[j - j0] = slot_of(b[j], cap);
            __builtin_prefetch(&table[hs[j - j0]], 0);
        }
        for (Py_ssize_t j = j0; j < j1; j++) {
            uint32_t slot = table[hs[j - j0]];
            if (slot) {
                __builtin_prefetch(&a[slot - 1], 0);
            }
        }
        for (Py_ssize_t j = j0; j < j1; j++) {
            uint64_t key = b[j];
            size_t h = hs[j - j0];
            for (;;) {
                uint32_t slot = table[h];
                if (slot == 0) {
                    break;
                }
                if (a[slot - 1] == key) {
                    oa[found] = slot - 1;
                    ob[found] = (uint32_t)j;
                    found++;
                    break;
                }
                h = h + 1 == cap ? 0 : h + 1;
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (_PyBytes_Resize(&ia, found * 4) < 0 || _PyBytes_Resize(&ib, found * 4) < 0) {
        goto done;
    }
    result = PyTuple_Pack(2, ia, ib);
done:
    free(table);
    Py_XDECREF(ia);
    Py_XDECREF(ib);
    PyBuffer_Release(&A);
    PyBuffer_Release(&B);
    return result;
}

static PyMethodDef methods[] = {
    {"match", match, METH_VARARGS,
     "match(a, b) -> (ia, ib): uint32 index bytes with a[ia[k]] == b[ib[k]], in b's order"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "memdiag._fastmatch",
    .m_doc = "Match two snapshots' objects by address (a hash join).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fastmatch(void)
{
    return PyModule_Create(&module);
}
