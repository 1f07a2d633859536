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

/* An exact copy of the ready str s that is a new object, the walker's own
 * (W9.4). PyUnicode_FromKindAndData returns the interpreter's shared str for
 * one Latin-1 character: held by the table, phase 4 would ignore it, and a
 * str the program holds only from unreached objects would be missing
 * (PyWalker's table holds the str it was given, not the shared one). On 3.11
 * the interned "_" of a dict key is not the shared "_", which the running
 * script's parser arena list holds, for one.  The empty str stays the shared
 * one: PyUnicode_New(0, ...) returns it, and both tables hold it as a
 * well-known label. */
static PyObject *own_copy(PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n == 1) {
        Py_UCS4 c = PyUnicode_READ_CHAR(s, 0);
        if (c < 256) {
            PyObject *copy = PyUnicode_New(1, c);   /* size 1: always a new object */
            if (copy != NULL) {
                PyUnicode_1BYTE_DATA(copy)[0] = (Py_UCS1)c;
            }
            return copy;
        }
    }
    return PyUnicode_FromKindAndData(PyUnicode_KIND(s), PyUnicode_DATA(s), n);
}

int64_t label_new(W *w, PyObject *s)
{
    uint32_t v;
    if (!PyUnicode_Check(s)) {
        return LBL_EMPTY;
    }
    /* The table holds an exact copy: the target's string is neither
     * increfed nor hashed (no write to its page), and a str subclass never
     * runs a __hash__ or __eq__ of its own. */
    PyObject *copy = !md_str_ready(s) ? PyUnicode_FromObject(s) : own_copy(s);
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

/* ------------------------------------------------------- names (W5.2) */

/* memdiag.walker.name_like: a short ASCII identifier that does not look like
 * a token or a random id. */
static int name_like(PyObject *s)
{
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

/* A dunder name (of a name-like str): __x__, something between the
 * underscores that is not one. */
static int is_dunder(PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    const unsigned char *c = PyUnicode_1BYTE_DATA(s);
    if (n < 5 || c[0] != '_' || c[1] != '_' || c[n - 1] != '_' || c[n - 2] != '_') {
        return 0;
    }
    for (Py_ssize_t i = 2; i < n - 2; i++) {
        if (c[i] != '_') {
            return 1;
        }
    }
    return 0;
}

/* A hash of a name's bytes (FNV-1a, then spread over the high bits). */
static inline uint64_t name_hash(const unsigned char *c, Py_ssize_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        h = (h ^ c[i]) * 0x100000001b3ULL;
    }
    return (h ^ (h >> 29)) * 0x9E3779B97F4A7C15ULL;
}

/* The slot of name (c, n) with hash h: where it is, or the empty slot it
 * would go to.  A str in the set is read only when its hash is h. */
static inline size_t names_slot(NameSet *ns, const unsigned char *c, Py_ssize_t n, uint64_t h)
{
    size_t mask = ns->cap - 1, i = md_slot_bits(h, ns->bits);
    for (;;) {
        PyObject *e = ns->e[i].s;
        if (e == NULL || (ns->e[i].h == h && PyUnicode_GET_LENGTH(e) == n
                          && memcmp(PyUnicode_1BYTE_DATA(e), c, (size_t)n) == 0)) {
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int names_grow(NameSet *ns)
{
    int bits = ns->bits ? ns->bits + 1 : 12;
    size_t cap = (size_t)1 << bits;
    NameEntry *old = ns->e;
    size_t ocap = ns->cap;
    ns->e = xcalloc(cap * sizeof(NameEntry));
    if (ns->e == NULL) {
        ns->e = old;
        return -1;
    }
    ns->cap = cap;
    ns->bits = bits;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].s != NULL) {
            size_t mask = cap - 1, j = md_slot_bits(old[i].h, bits);
            while (ns->e[j].s != NULL) {
                j = (j + 1) & mask;
            }
            ns->e[j] = old[i];
        }
    }
    xfree(old, ocap * sizeof(NameEntry));
    return 0;
}

/* Add a code object's name: the ASCII strs that a name-like key can equal.
 * seen: the strs looked at already (most names are shared interned strs:
 * each is read once). */
static int names_add(NameSet *ns, PtrMap *seen, PyObject *s)
{
    uint32_t dummy;
    if (map_get(seen, s, &dummy)) {
        return 0;
    }
    if (map_put(seen, s, 1) < 0) {
        return -1;
    }
    if (!PyUnicode_CheckExact(s) || !md_str_ready(s) || !PyUnicode_IS_ASCII(s)) {
        return 0;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n == 0 || n > 64) {
        return 0;
    }
    if ((ns->n + 1) * 2 > ns->cap && names_grow(ns) < 0) {
        return -1;
    }
    const unsigned char *c = PyUnicode_1BYTE_DATA(s);
    uint64_t h = name_hash(c, n);
    size_t i = names_slot(ns, c, n, h);
    if (ns->e[i].s == NULL) {
        ns->e[i].s = s;
        ns->e[i].h = h;
        ns->n++;
    }
    return 0;
}

static int names_has(NameSet *ns, PyObject *s)
{
    if (ns->n == 0) {
        return 0;
    }
    const unsigned char *c = PyUnicode_1BYTE_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    return ns->e[names_slot(ns, c, n, name_hash(c, n))].s != NULL;
}

static int names_add_tuple(NameSet *ns, PtrMap *seen, PyObject *t)
{
    if (t == NULL || !PyTuple_Check(t)) {
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + 8 < n) {
            __builtin_prefetch(PyTuple_GET_ITEM(t, i + 8));
        }
        if (names_add(ns, seen, PyTuple_GET_ITEM(t, i)) < 0) {
            return -1;
        }
    }
    return 0;
}

static inline void prefetch_tuple(PyObject *t)
{
    if (t != NULL) {
        __builtin_prefetch(t);
        __builtin_prefetch((char *)t + 64);
    }
}

/* The names of the code objects in codes (a queue: the code objects among
 * their constants are appended), each code object and name read once (seen).
 * Reading them is a cache miss after another: the queue is prefetched ahead,
 * the objects first, then the tuples they point to. */
static int names_of_codes(W *w, PtrVec *codes, PtrMap *seen)
{
    NameSet *ns = &w->labels.code_names;
    uint32_t dummy;
    for (size_t j = 0; j < codes->n; j++) {
        if (j + 8 < codes->n) {
            __builtin_prefetch(codes->v[j + 8]);
            __builtin_prefetch((char *)codes->v[j + 8] + 64);
            __builtin_prefetch((char *)codes->v[j + 8] + 128);
        }
        if (j + 4 < codes->n) {
            PyCodeObject *a = (PyCodeObject *)codes->v[j + 4];
            prefetch_tuple(a->co_names);
            prefetch_tuple(a->co_localsplusnames);
            prefetch_tuple(a->co_consts);
        }
        PyCodeObject *c = (PyCodeObject *)codes->v[j];
        if (map_get(seen, c, &dummy)) {
            continue;
        }
        if (map_put(seen, c, 1) < 0 || names_add_tuple(ns, seen, c->co_names) < 0
                || names_add_tuple(ns, seen, c->co_localsplusnames) < 0
                || (c->co_name != NULL && names_add(ns, seen, c->co_name) < 0)) {
            return -1;
        }
        PyObject *consts = c->co_consts;
        if (consts == NULL || !PyTuple_Check(consts)) {
            continue;
        }
        Py_ssize_t nk = PyTuple_GET_SIZE(consts);
        for (Py_ssize_t i = 0; i < nk; i++) {
            if (i + 8 < nk) {
                __builtin_prefetch(PyTuple_GET_ITEM(consts, i + 8));
            }
            PyObject *k = PyTuple_GET_ITEM(consts, i);
            if (PyCode_Check(k) && vec_push(codes, k) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Push the values of dict d (a namespace) on the stack. */
static int push_values(PtrVec *stack, PyObject *d)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    if (d == NULL || !PyDict_CheckExact(d)) {
        return 0;
    }
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (vec_push(stack, v) < 0) {
            return -1;
        }
    }
    return 0;
}

/* W5.2: the names of the code objects the program's namespaces hold.  From
 * the modules' dicts: every function (and the functions in its closure
 * cells: a decorator's wrapped function), every heap class (the values of
 * its dict, recursively), the functions a staticmethod, classmethod,
 * property or lru_cache wrapper holds; for each function, its code and the
 * code objects among that code's constants (inner functions, lambdas,
 * comprehensions).  No object is made, no reference taken. */
int code_names_collect(W *w, PyObject *module_roots)
{
    PtrMap seen, read;    /* seen: namespace values; read: code objects and names */
    PtrVec stack = {0}, codes = {0};
    int rc = 0;
    if (map_init(&seen, 15) < 0 || map_init(&read, 16) < 0) {
        map_free(&seen);
        set_nomem(w);
        return -1;
    }
    PyObject **roots = PyList_Check(module_roots) ? ((PyListObject *)module_roots)->ob_item
                       : PyTuple_Check(module_roots) ? ((PyTupleObject *)module_roots)->ob_item : NULL;
    Py_ssize_t nroots = roots == NULL ? 0 : Py_SIZE(module_roots);
    for (Py_ssize_t i = 0; i < nroots && rc == 0; i++) {
        PyObject *pair = roots[i];
        PyObject *m = PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2 ? PyTuple_GET_ITEM(pair, 1)
                      : PyList_Check(pair) && PyList_GET_SIZE(pair) == 2 ? PyList_GET_ITEM(pair, 1) : NULL;
        if (m != NULL && PyModule_Check(m) && push_values(&stack, md_module_dict(m)) < 0) {
            rc = -1;
        }
    }
    PyTypeObject *lru = w->types.lru_type;
    uint32_t dummy;
    while (stack.n && rc == 0) {
        if (stack.n > 8) {
            __builtin_prefetch(stack.v[stack.n - 8]);
        }
        PyObject *v = stack.v[--stack.n];
        if (map_get(&seen, v, &dummy)) {
            continue;
        }
        if (map_put(&seen, v, 1) < 0) {
            rc = -1;
            break;
        }
        PyTypeObject *tp = Py_TYPE(v);
        if (tp == &PyFunction_Type) {
            PyFunctionObject *f = (PyFunctionObject *)v;
            if (f->func_code != NULL && PyCode_Check(f->func_code)
                    && vec_push(&codes, f->func_code) < 0) {
                rc = -1;
                break;
            }
            PyObject *cl = f->func_closure;
            for (Py_ssize_t i = 0; cl != NULL && PyTuple_Check(cl) && i < PyTuple_GET_SIZE(cl); i++) {
                PyObject *cell = PyTuple_GET_ITEM(cl, i);
                PyObject *c = PyCell_Check(cell) ? PyCell_GET(cell) : NULL;
                if (c != NULL && Py_IS_TYPE(c, &PyFunction_Type) && vec_push(&stack, c) < 0) {
                    rc = -1;
                }
            }
        }
        else if (PyType_Check(v)) {
            PyTypeObject *t = (PyTypeObject *)v;
            if ((t->tp_flags & TPF_HEAPTYPE) && push_values(&stack, md_type_dict(t)) < 0) {
                rc = -1;
            }
        }
        else if (tp == &PyStaticMethod_Type || tp == &PyClassMethod_Type
                 || tp == &PyProperty_Type || (lru != NULL && tp == lru)) {
            if (referents(w, v, &w->edges.refs) < 0) {
                rc = -1;
                break;
            }
            for (size_t i = 0; i < w->edges.refs.n; i++) {
                PyObject *r = w->edges.refs.v[i];
                if (Py_IS_TYPE(r, &PyFunction_Type) && vec_push(&stack, r) < 0) {
                    rc = -1;
                    break;
                }
            }
        }
    }
    if (rc == 0 && names_of_codes(w, &codes, &read) < 0) {
        rc = -1;
    }
    map_free(&seen);
    map_free(&read);
    vec_free(&stack);
    vec_free(&codes);
    if (rc < 0 && !w->err) {
        set_nomem(w);
    }
    return rc;
}

/* memdiag.walker.key_written for an exact str: name-like, and a name of the
 * program's: interned (keys from source code: literals, attribute and
 * keyword names), a dunder (names the interpreter makes, __warningregistry__),
 * or equal to a name in a loaded code object.  Keys read from input (tokens,
 * ids, JSON) are none of these, whatever they look like. */
int key_written(W *w, PyObject *s)
{
    if (!md_str_ready(s) || !name_like(s)) {
        return 0;
    }
    return md_str_interned(s) || is_dunder(s) || names_has(&w->labels.code_names, s);
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
    xfree(w->labels.code_names.e, w->labels.code_names.cap * sizeof(NameEntry));
    w->labels.code_names = (NameSet){0};
    Py_CLEAR(w->labels.dict);
    Py_CLEAR(w->labels.list);
}
