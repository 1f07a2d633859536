/* memdiag/_native/types.c: the type table (the trailer's "types" and
 * "type_kinds"), and what a type tells about its objects: their kind, how
 * their size is measured (sys.getsizeof's answer without calling Python),
 * their length, their __slots__, whether tp_traverse can be skipped.
 */

#include "walker.h"

static const char *const KIND_NAMES[NKINDS] = {
    "dict", "list", "tuple", "set", "deque", "str", "bytes", "int", "float",
    "module", "type", "function", "code", "frame", "cell", "lru_cache",
    "instance", "other"
};

/* The tp_traverse of classes defined in Python (typeobject.c's static
 * subtype_traverse), read from the writer's class (snapfile.Writer) when a
 * walk starts; NULL (no plain fast path) if that is not such a class.  Not
 * from a class made for the purpose: that would be garbage left to collect,
 * or an object of memdiag's own in every heap. */
static traverseproc subtype_traverse_fn;

static PyCFunction object_sizeof_meth, list_sizeof_meth, str_sizeof_meth, int_sizeof_meth,
                   dict_sizeof_meth;

/* ---------------------------------------------------------------- sizes */

static Py_ssize_t object_formula(PyObject *o, PyTypeObject *tp)
{
    Py_ssize_t res = 0;
    if (tp->tp_itemsize > 0) {
        res = ((PyVarObject *)o)->ob_size * tp->tp_itemsize;
    }
    return res + tp->tp_basicsize;
}

Py_ssize_t size_of(PyObject *o, TypeInfo *ti)
{
    PyTypeObject *tp = ti->tp;
    Py_ssize_t res;
    switch (ti->size_mode) {
    case SZ_PYFUNC:
        return object_formula(o, tp) + ti->py_preheader;
    case SZ_OBJECT:
        res = object_formula(o, tp);
        break;
    case SZ_LIST:
        res = tp->tp_basicsize + ((PyListObject *)o)->allocated * (Py_ssize_t)sizeof(void *);
        break;
    case SZ_INT:
        res = md_int_sizeof(o);
        break;
    case SZ_DICT:
        res = md_dict_sizeof(o);
        break;
    case SZ_STR:
        if (md_str_sizeof(o, &res)) {
            break;
        }
        MD_FALLTHROUGH;     /* to the str.__sizeof__ method itself */
    default: {
        PyObject *r = PyObject_Vectorcall(ti->sizeof_descr, &o, 1, NULL);
        res = -1;
        if (r != NULL) {
            res = PyLong_AsSsize_t(r);
            Py_DECREF(r);
        }
        if (res < 0) {
            /* sys.getsizeof would raise; keep walking with the base size */
            PyErr_Clear();
            res = object_formula(o, tp);
        }
    }
    }
    return res + md_preheader_size(o, tp);
}

uint64_t length_of(PyObject *o, int kind)
{
    switch (kind) {
    case K_DICT:
        return (uint64_t)((PyDictObject *)o)->ma_used;
    case K_LIST:
    case K_TUPLE:
    case K_DEQUE:
    case K_BYTES:
        return (uint64_t)Py_SIZE(o);
    case K_SET:
        return (uint64_t)((PySetObject *)o)->used;
    case K_STR:
        if (!md_str_ready(o)) {
            return (uint64_t)md_str_legacy_length(o);
        }
        return (uint64_t)PyUnicode_GET_LENGTH(o);
    default:
        return 0;
    }
}

/* ------------------------------------------------------------ type info */

/* name's value in the dicts of tp's mro (a borrowed reference), or NULL:
 * what _PyType_Lookup finds, without what it writes.  _PyType_Lookup stores
 * the name in the interpreter's method cache, which drops its reference to
 * the name it replaces (a str only the cache held is freed, in the fork
 * child, during the walk), and may give tp a version tag. */
static PyObject *type_lookup(PyTypeObject *tp, PyObject *name)
{
    PyObject *mro = tp->tp_mro;
    if (mro == NULL || !PyTuple_Check(mro)) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyObject *base = PyTuple_GET_ITEM(mro, i);
        PyObject *dict = PyType_Check(base) ? md_type_dict((PyTypeObject *)base) : NULL;
        if (dict == NULL || !PyDict_Check(dict)) {
            continue;
        }
        PyObject *v = PyDict_GetItemWithError(dict, name);
        if (v != NULL) {
            return v;
        }
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return NULL;
        }
    }
    return NULL;
}

static int compute_kind(W *w, PyTypeObject *tp)
{
    if (PyType_IsSubtype(tp, &PyDict_Type)) return K_DICT;
    if (PyType_IsSubtype(tp, &PyList_Type)) return K_LIST;
    if (PyType_IsSubtype(tp, &PyTuple_Type)) return K_TUPLE;
    if (PyType_IsSubtype(tp, &PySet_Type) || PyType_IsSubtype(tp, &PyFrozenSet_Type))
        return K_SET;
    if (w->types.deque_type && PyType_IsSubtype(tp, w->types.deque_type)) return K_DEQUE;
    if (PyType_IsSubtype(tp, &PyUnicode_Type)) return K_STR;
    if (PyType_IsSubtype(tp, &PyBytes_Type) || PyType_IsSubtype(tp, &PyByteArray_Type))
        return K_BYTES;
    if (PyType_IsSubtype(tp, &PyLong_Type)) return K_INT;
    if (PyType_IsSubtype(tp, &PyFloat_Type)) return K_FLOAT;
    if (PyType_IsSubtype(tp, &PyModule_Type)) return K_MODULE;
    if (PyType_IsSubtype(tp, &PyType_Type)) return K_TYPE;
    if (tp == &PyFunction_Type) return K_FUNCTION;
    if (tp == &PyCode_Type) return K_CODE;
    if (tp == &PyFrame_Type) return K_FRAME;
    if (tp == &PyCell_Type) return K_CELL;
    if (w->types.lru_type && tp == w->types.lru_type) return K_LRU;
    if (tp->tp_flags & TPF_HEAPTYPE) return K_INSTANCE;
    return K_OTHER;
}

TypeInfo *new_type_info(W *w, PyTypeObject *tp)
{
    TypeInfo *ti = xcalloc(sizeof(TypeInfo));
    if (ti == NULL) {
        set_nomem(w);
        return NULL;
    }
    if (w->types.n == w->types.cap) {
        size_t ncap = w->types.cap ? w->types.cap * 2 : 256;
        TypeInfo **nt = xrealloc(w->types.info, w->types.cap * sizeof(TypeInfo *),
                                 ncap * sizeof(TypeInfo *));
        if (nt == NULL) {
            xfree(ti, sizeof(TypeInfo));
            set_nomem(w);
            return NULL;
        }
        w->types.info = nt;
        w->types.cap = ncap;
    }
    w->types.info[w->types.n] = ti;
    ti->tp = tp;
    ti->index = (uint32_t)w->types.n++;
    ti->kind = compute_kind(w, tp);
    if (map_put(&w->types.map, tp, ti->index) < 0) {
        set_nomem(w);
        return NULL;
    }
    /* Interned: the same objects as walker.py's constants, which PyWalker's
     * type_kinds list holds (and so ignores when it expands that list). */
    PyObject *kname = PyUnicode_InternFromString(KIND_NAMES[ti->kind]);
    if (kname == NULL || PyList_Append(w->types.list, (PyObject *)tp) < 0
            || PyList_Append(w->types.kinds, kname) < 0) {
        Py_XDECREF(kname);
        w->err = 1;
        return NULL;
    }
    Py_DECREF(kname);

    unsigned long flags = tp->tp_flags;
    ti->managed = (flags & Py_TPFLAGS_MANAGED_DICT) != 0;
    ti->dictoffset = tp->tp_dictoffset;

    /* __sizeof__: a Python function -> object.__sizeof__ + the pre-header as
     * PyWalker computes it; a C method -> call it (fast paths for the
     * common ones) and add what sys.getsizeof adds. */
    /* A type that was never readied has no mro: it gets object.__sizeof__'s
     * formula. */
    PyObject *descr = (flags & Py_TPFLAGS_READY) ? type_lookup(tp, w->types.str_sizeof) : NULL;
    ti->size_mode = SZ_OBJECT;
    if (descr != NULL && PyFunction_Check(descr)) {
        ti->size_mode = SZ_PYFUNC;
        /* PyWalker.info: the GC header, and the managed dict (3.11+) and
         * weakref (3.12+) pointers sys.getsizeof counts. */
        ti->py_preheader = md_preheader_of_flags(flags);
    }
    else if (descr != NULL && Py_IS_TYPE(descr, &PyMethodDescr_Type)) {
        PyCFunction meth = ((PyMethodDescrObject *)descr)->d_method->ml_meth;
        if (meth == object_sizeof_meth) {
            ti->size_mode = SZ_OBJECT;
        }
        else if (meth == list_sizeof_meth && tp == &PyList_Type) {
            ti->size_mode = SZ_LIST;
        }
        else if (meth == str_sizeof_meth) {
            ti->size_mode = SZ_STR;
            ti->sizeof_descr = descr;
        }
        else if (meth == int_sizeof_meth) {
            ti->size_mode = SZ_INT;
        }
        else if (meth == dict_sizeof_meth) {
            ti->size_mode = SZ_DICT;
        }
        else {
            ti->size_mode = SZ_CMETH;
            ti->sizeof_descr = descr;
        }
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }

    if (ti->kind == K_INSTANCE) {
        PyObject *mro = tp->tp_mro;
        size_t cap = 0;
        /* PyWalker.info: the first heap type in the MRO whose own dict has a
         * "__dict__" getset descriptor. */
        if (mro != NULL && PyTuple_Check(mro)) {
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro) && !ti->has_dict_getset; i++) {
                PyObject *t = PyTuple_GET_ITEM(mro, i);
                if (t == NULL || !PyType_Check(t)
                        || !(((PyTypeObject *)t)->tp_flags & TPF_HEAPTYPE)) {
                    continue;
                }
                PyObject *td = ((PyTypeObject *)t)->tp_dict;
                PyObject *g = td != NULL && PyDict_Check(td)
                              ? PyDict_GetItemWithError(td, w->types.str_dict) : NULL;
                if (g != NULL && Py_IS_TYPE(g, &PyGetSetDescr_Type)) {
                    ti->has_dict_getset = 1;
                }
                PyErr_Clear();
            }
        }
        /* __slots__: PyWalker.info takes the member descriptors each heap
         * type of the MRO has in its own dict, in dict order, labeled by
         * their key, when the key is one of the type's (mangled) __slots__
         * names: ht_slots, which a class statement sets and a C heap type
         * does not have (its members may be ints or offsets).  Only object
         * members can hold a reference. */
        if (mro != NULL && PyTuple_Check(mro)) {
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
                PyObject *t = PyTuple_GET_ITEM(mro, i);
                if (t == NULL || !PyType_Check(t)
                        || !(((PyTypeObject *)t)->tp_flags & TPF_HEAPTYPE)) {
                    continue;
                }
                PyObject *td = ((PyTypeObject *)t)->tp_dict;
                PyObject *names = ((PyHeapTypeObject *)t)->ht_slots;
                if (td == NULL || !PyDict_Check(td) || names == NULL || !PyTuple_Check(names)) {
                    continue;
                }
                Py_ssize_t pos = 0;
                PyObject *key, *val;
                while (PyDict_Next(td, &pos, &key, &val)) {
                    if (!Py_IS_TYPE(val, &PyMemberDescr_Type)
                            || PyDescr_TYPE(val) != (PyTypeObject *)t) {
                        continue;
                    }
                    PyMemberDef *m = ((PyMemberDescrObject *)val)->d_member;
                    if (m == NULL || (m->type != MD_T_OBJECT_EX && m->type != MD_T_OBJECT)
                            || !PyUnicode_Check(key)) {
                        continue;
                    }
                    int listed = 0;
                    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(names) && !listed; k++) {
                        PyObject *nm = PyTuple_GET_ITEM(names, k);
                        listed = PyUnicode_Check(nm) && PyUnicode_Compare(nm, key) == 0;
                    }
                    PyErr_Clear();
                    if (!listed) {
                        continue;
                    }
                    if (ti->nslots == cap) {
                        size_t ncap = cap ? cap * 2 : 4;
                        Slot *ns = xrealloc(ti->slots, cap * sizeof(Slot), ncap * sizeof(Slot));
                        if (ns == NULL) {
                            set_nomem(w);
                            return NULL;
                        }
                        ti->slots = ns;
                        cap = ncap;
                    }
                    /* the key is kept alive by the type's dict */
                    ti->slots[ti->nslots].offset = m->offset;
                    ti->slots[ti->nslots].name = key;
                    ti->nslots++;
                }
            }
        }
        /* Plain: a class (and its bases up to object) defined in Python
         * without __slots__, its attributes managed (a managed dict or
         * inline values).  subtype_traverse then visits the dict or the
         * attribute values, and the type: nothing else. */
        if (ti->nslots == 0 && subtype_traverse_fn != NULL && ti->has_dict_getset
                && (flags & TPF_HEAPTYPE) && (flags & TPF_HAVE_GC) && tp->tp_is_gc == NULL) {
            PyTypeObject *b = tp;
            int ok = 1;
            while (b != NULL && b->tp_traverse == subtype_traverse_fn) {
                ok = ok && Py_SIZE(b) == 0;
                b = b->tp_base;
            }
            ti->plain = ok && b == &PyBaseObject_Type && ti->managed;
        }
    }
    return ti;
}

static PyTypeObject *type_from_module(const char *module, const char *attr)
{
    PyObject *name = PyUnicode_FromString(module);
    if (name == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *mod = PyImport_GetModule(name);   /* sys.modules only: no import */
    Py_DECREF(name);
    if (mod == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyTypeObject *res = NULL;
    if (PyModule_Check(mod)) {
        PyObject *d = PyModule_GetDict(mod);
        PyObject *t = d ? PyDict_GetItemString(d, attr) : NULL;
        if (t != NULL && PyType_Check(t)) {
            res = (PyTypeObject *)t;   /* kept alive by its module */
        }
    }
    Py_DECREF(mod);
    PyErr_Clear();
    return res;
}

static PyCFunction sizeof_meth_of(PyTypeObject *tp)
{
    PyObject *name = PyUnicode_InternFromString("__sizeof__");
    if (name == NULL) {
        return NULL;
    }
    PyObject *d = type_lookup(tp, name);
    Py_DECREF(name);
    if (d != NULL && Py_IS_TYPE(d, &PyMethodDescr_Type)) {
        return ((PyMethodDescrObject *)d)->d_method->ml_meth;
    }
    return NULL;
}

/* At import: the C __sizeof__ methods size_of knows. */
int types_init_module(void)
{
    object_sizeof_meth = sizeof_meth_of(&PyBaseObject_Type);
    list_sizeof_meth = sizeof_meth_of(&PyList_Type);
    str_sizeof_meth = sizeof_meth_of(&PyUnicode_Type);
    int_sizeof_meth = sizeof_meth_of(&PyLong_Type);
    dict_sizeof_meth = sizeof_meth_of(&PyDict_Type);
    return PyErr_Occurred() ? -1 : 0;
}

/* subtype_traverse_fn, from the writer's class when it is a class defined
 * in Python (snapfile.Writer). */
void types_note_writer_class(PyTypeObject *wt)
{
    if (subtype_traverse_fn == NULL && (wt->tp_flags & TPF_HEAPTYPE)
            && (wt->tp_flags & TPF_HAVE_GC) && wt->tp_base == &PyBaseObject_Type
            && wt->tp_dictoffset != 0 && wt->tp_traverse != NULL) {
        subtype_traverse_fn = wt->tp_traverse;
    }
}

int types_init(W *w)
{
    if (map_init(&w->types.map, 10) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    w->types.list = PyList_New(0);
    w->types.kinds = PyList_New(0);
    w->types.str_sizeof = PyUnicode_InternFromString("__sizeof__");
    w->types.str_dict = PyUnicode_InternFromString("__dict__");
    if (!w->types.list || !w->types.kinds || !w->types.str_sizeof || !w->types.str_dict) {
        return -1;
    }
    w->types.deque_type = type_from_module("collections", "deque");
    if (w->types.deque_type == NULL) {
        w->types.deque_type = type_from_module("_collections", "deque");
    }
    w->types.lru_type = type_from_module("functools", "_lru_cache_wrapper");
    if (w->types.lru_type == NULL) {
        w->types.lru_type = type_from_module("_functools", "_lru_cache_wrapper");
    }
    return 0;
}

void types_free(W *w)
{
    for (size_t i = 0; i < w->types.n; i++) {
        if (w->types.info[i] != NULL) {
            size_t ns = w->types.info[i]->nslots;
            size_t cap = 4;
            while (cap < ns) cap *= 2;
            xfree(w->types.info[i]->slots, ns ? cap * sizeof(Slot) : 0);
            xfree(w->types.info[i], sizeof(TypeInfo));
        }
    }
    xfree(w->types.info, w->types.cap * sizeof(TypeInfo *));
    w->types.info = NULL;
    w->types.n = w->types.cap = 0;
    map_free(&w->types.map);
    Py_CLEAR(w->types.list);
    Py_CLEAR(w->types.kinds);
    Py_CLEAR(w->types.str_sizeof);
    Py_CLEAR(w->types.str_dict);
}
