/* _walkertest: entry points of the compiled walker's code that only tests
 * use, in a module of their own that memdiag does not ship (setup.py does
 * not build it; tests/native/walkertest.py does, for the tests).
 *
 * permanent_generation_ids()  id() of every object in the gc's permanent
 *                             generation (gc.freeze()), which gc.get_objects()
 *                             does not list and walk() walks
 * compressor()                what the sink deflates with in this process
 * sink_write(writer, columns, stream)
 *                             the walker's sink (memdiag/_native/sink.c) on
 *                             its own: columns {column id: list of ints, or
 *                             bytes for COL_STR_DATA} are pushed as the walk
 *                             pushes them (the columns interleaved, a value at
 *                             a time), then finished and written; returns
 *                             {"compress_threads", "pending_peak"}
 */

#include "compat.h"
#include "sink.h"
#include "tables.h"

static PyObject *permanent_generation_ids(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    PyGC_Head *head = md_gc_permanent_list();
    for (PyGC_Head *gc = md_gc_next(head); gc != NULL && gc != head; gc = md_gc_next(gc)) {
        PyObject *v = PyLong_FromVoidPtr(md_gc_object(gc));
        if (v == NULL || PyList_Append(out, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(v);
    }
    return out;
}

static PyObject *compressor(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(sink_compressor());
}

static PyObject *sink_write(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *writer, *columns;
    int stream;
    if (!PyArg_ParseTuple(args, "OO!p:sink_write", &writer, &PyDict_Type, &columns, &stream)) {
        return NULL;
    }
    PyObject *values[NCOLS] = {NULL};
    Py_ssize_t len[NCOLS] = {0}, most = 0;
    Py_ssize_t pos = 0;
    PyObject *key, *val;
    while (PyDict_Next(columns, &pos, &key, &val)) {
        long c = PyLong_AsLong(key);
        if (c < 1 || c >= NCOLS) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_ValueError, "no column %ld", c);
            }
            return NULL;
        }
        if (c == COL_STR_DATA ? !PyBytes_Check(val) : !PyList_Check(val)) {
            PyErr_SetString(PyExc_TypeError, "a list of ints, or bytes for COL_STR_DATA");
            return NULL;
        }
        values[c] = val;
        len[c] = c == COL_STR_DATA ? PyBytes_GET_SIZE(val) : PyList_GET_SIZE(val);
        most = len[c] > most ? len[c] : most;
    }
    int failed = 0;
    Sink s;
    PyObject *result = NULL;
    md_mem_cur = md_mem_peak = 0;
    sink_init(&s, writer, stream, &failed);
    for (int c = 1; c < NCOLS; c++) {
        if (values[c] != NULL && sink_open(&s, c) < 0) {
            goto done;
        }
    }
    if (sink_start(&s) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < most && !failed; i++) {
        for (int c = 1; c < NCOLS && !failed; c++) {
            if (i >= len[c]) {
                continue;
            }
            if (c == COL_STR_DATA) {
                sink_push_bytes(&s, c, (const uint8_t *)PyBytes_AS_STRING(values[c]) + i, 1);
                continue;
            }
            unsigned long long v = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(values[c], i));
            if (v == (unsigned long long)-1 && PyErr_Occurred()) {
                goto done;
            }
            sink_push(&s, c, v);
        }
    }
    if (failed || sink_finish(&s) < 0 || sink_write_pending(&s) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "the sink failed without an exception");
        }
        goto done;
    }
    result = Py_BuildValue("{s:i,s:n}", "compress_threads", s.pool.nworkers_started,
                           "pending_peak", (Py_ssize_t)s.pending_peak);
done:
    sink_free(&s);
    return result;
}

static PyMethodDef methods[] = {
    {"permanent_generation_ids", permanent_generation_ids, METH_NOARGS,
     "permanent_generation_ids() -> ids of the objects in the gc's permanent generation"},
    {"compressor", compressor, METH_NOARGS,
     "compressor() -> 'libdeflate', 'zlib' or 'none' (the writer compresses)"},
    {"sink_write", sink_write, METH_VARARGS,
     "sink_write(writer, {column: values}, stream) -> stats: the sink on its own"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_walkertest",
    .m_doc = "Test-only entry points of memdiag's compiled walker (tests/native/walkertest.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__walkertest(void)
{
    sink_load_compressors();
    return PyModule_Create(&moduledef);
}
