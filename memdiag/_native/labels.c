/* memdiag/_native/labels.c: the label table (the trailer's "labels"): the
 * names of attributes, locals, dict keys, roots, each stored once, as copies.
 *
 * A label is made from a str of the target without touching it: the table
 * holds an exact copy (the target's str is neither increfed nor hashed, no
 * __hash__ or __eq__ of a str subclass runs).  The well-known labels come
 * first, at the indexes snapfile gives them; the NAMED_LABELS the edges use
 * (type and code object fields) are made on first use.
 */

#include "walker.h"

static const struct { const char *name; int interned; } NAMED_LABELS[NNAMED] = {
    {"__name__", 1}, {"__qualname__", 1}, {"__subclasses__", 0},
    {"co_consts", 1}, {"co_names", 1}, {"co_filename", 1}, {"co_name", 1},
    {"co_qualname", 1}, {"co_linetable", 1}, {"co_exceptiontable", 1},
    {"co_code", 1}, {"co_varnames", 1}, {"co_cellvars", 1}, {"co_freevars", 1},
    {"co_localsplusnames", 0}, {"co_localspluskinds", 0},
};

int64_t label_new(W *w, PyObject *s)
{
    uint32_t v;
    if (!PyUnicode_Check(s)) {
        return LBL_EMPTY;
    }
    /* The table holds an exact copy: the target's string is neither
     * increfed nor hashed (no write to its page), and a str subclass never
     * runs a __hash__ or __eq__ of its own. */
    PyObject *copy = !md_str_ready(s) ? PyUnicode_FromObject(s)
                     : PyUnicode_FromKindAndData(PyUnicode_KIND(s), PyUnicode_DATA(s),
                                                 PyUnicode_GET_LENGTH(s));
    if (copy == NULL) {
        w->err = 1;
        return -1;
    }
    PyObject *iv = PyDict_GetItemWithError(w->labels.dict, copy);
    if (iv != NULL) {
        v = (uint32_t)PyLong_AsUnsignedLong(iv);
        Py_DECREF(copy);
    }
    else {
        if (PyErr_Occurred()) {
            Py_DECREF(copy);
            w->err = 1;
            return -1;
        }
        v = (uint32_t)PyList_GET_SIZE(w->labels.list);
        PyObject *num = PyLong_FromUnsignedLong(v);
        if (num == NULL || PyDict_SetItem(w->labels.dict, copy, num) < 0
                || PyList_Append(w->labels.list, copy) < 0) {
            Py_XDECREF(num);
            Py_DECREF(copy);
            w->err = 1;
            return -1;
        }
        Py_DECREF(num);
        Py_DECREF(copy);
        /* PyWalker's label list holds this very object: it ignores it in
         * phase 4 if no root reached it; so will we. */
        if (vec_push(&w->labels.origs, s) < 0) {
            set_nomem(w);
            return -1;
        }
    }
    if (map_put(&w->labels.cache, s, v) < 0) {
        set_nomem(w);
        return -1;
    }
    return v;
}

int64_t label_cstr(W *w, const char *s)
{
    PyObject *o = PyUnicode_FromString(s);
    if (o == NULL || PyList_Append(w->keep, o) < 0) {
        Py_XDECREF(o);
        w->err = 1;
        return -1;
    }
    Py_DECREF(o);
    return label_of(w, o);
}

/* The label of NAMED_LABELS[i], made on first use. */
int64_t label_named(W *w, int i)
{
    if (w->labels.named[i] >= 0) {
        return w->labels.named[i];
    }
    int64_t v;
    if (NAMED_LABELS[i].interned) {
        PyObject *o = PyUnicode_InternFromString(NAMED_LABELS[i].name);
        if (o == NULL || PyList_Append(w->keep, o) < 0) {
            Py_XDECREF(o);
            w->err = 1;
            return -1;
        }
        Py_DECREF(o);
        v = label_of(w, o);
    }
    else {
        v = label_cstr(w, NAMED_LABELS[i].name);
    }
    w->labels.named[i] = v;
    return v;
}

/* memdiag.walker.key_written for an exact str: name_like, and interned.
 * Keys that come from source code (literals, attribute and keyword names) are
 * interned; keys read from input (tokens, ids, JSON) are not, whatever they
 * look like. */
int key_written(PyObject *s)
{
    if (!md_str_ready(s) || !md_str_interned(s)) {
        return 0;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n == 0 || n > 64 || !PyUnicode_IS_ASCII(s)) {
        return 0;
    }
    const unsigned char *c = PyUnicode_1BYTE_DATA(s);
    unsigned char c0 = c[0];
    if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || c0 == '_')) {
        return 0;
    }
    int digits = 0, under = 0, lower = 0, upper = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = c[i];
        if (ch >= '0' && ch <= '9') {
            digits++;
        }
        else if (ch >= 'a' && ch <= 'z') {
            lower = 1;
        }
        else if (ch >= 'A' && ch <= 'Z') {
            upper = 1;
        }
        else if (ch == '_') {
            under = 1;
        }
        else {
            return 0;
        }
    }
    if (digits > 3) {
        return 0;
    }
    int islower = lower && !upper, isupper = upper && !lower;
    if (n >= 20 && !under && !(islower || isupper)) {
        return 0;
    }
    return 1;
}

/* The table, with the well-known labels, from snapfile when it is loaded
 * (same indexes). */
int labels_init(W *w)
{
    for (int i = 0; i < NNAMED; i++) {
        w->labels.named[i] = -1;
    }
    if (map_init(&w->labels.cache, 10) < 0 || map_init(&w->labels.keys, 10) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    w->labels.dict = PyDict_New();
    w->labels.list = PyList_New(0);
    if (w->labels.dict == NULL || w->labels.list == NULL) {
        return -1;
    }
    PyObject *wk = NULL;
    {
        PyObject *name = PyUnicode_FromString("memdiag.snapfile");
        PyObject *mod = name ? PyImport_GetModule(name) : NULL;
        Py_XDECREF(name);
        if (mod != NULL && PyModule_Check(mod)) {
            PyObject *d = PyModule_GetDict(mod);
            wk = d ? PyDict_GetItemString(d, "WELL_KNOWN_LABELS") : NULL;
            Py_XINCREF(wk);
        }
        Py_XDECREF(mod);
        PyErr_Clear();
    }
    int nwk = NWELL_KNOWN;
    if (wk != NULL && PyTuple_Check(wk) && PyTuple_GET_SIZE(wk) >= nwk) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(wk); i++) {
            PyObject *s = PyTuple_GET_ITEM(wk, i);
            if (!PyUnicode_Check(s) || (i < nwk && PyUnicode_CompareWithASCIIString(
                    s, WELL_KNOWN_LABELS[i]) != 0)) {
                Py_DECREF(wk);
                PyErr_SetString(PyExc_RuntimeError,
                                "memdiag._walker: WELL_KNOWN_LABELS changed; rebuild the extension");
                return -1;
            }
            if (PyList_Append(w->keep, s) < 0 || label_of(w, s) < 0) {
                Py_DECREF(wk);
                return -1;
            }
        }
    }
    else {
        for (int i = 0; i < nwk; i++) {
            if (label_cstr(w, WELL_KNOWN_LABELS[i]) < 0) {
                Py_XDECREF(wk);
                return -1;
            }
        }
    }
    Py_XDECREF(wk);
    return 0;
}

void labels_free(W *w)
{
    map_free(&w->labels.cache);
    map_free(&w->labels.keys);
    vec_free(&w->labels.origs);
    Py_CLEAR(w->labels.dict);
    Py_CLEAR(w->labels.list);
}
