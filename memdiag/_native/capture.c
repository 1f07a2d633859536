/* memdiag/_native/capture.c: capture(), every thread's stack roots and
 * thread-state dicts, read without running code or making frame objects
 * (the hook's Python capture, sys._current_frames() and f_locals, makes
 * both).
 */

#include "walker.h"

/* ------------------------------------------------------------ capture() */

typedef struct {
    PyObject *list;
    PyObject *desc;
} RootCtx;

static int capture_local(void *ctx, PyObject *name, PyObject *value)
{
    RootCtx *rc = ctx;
    PyObject *t = PyTuple_Pack(3, rc->desc, name, value);
    if (t == NULL) {
        return -1;
    }
    int r = PyList_Append(rc->list, t);
    Py_DECREF(t);
    return r;
}

/* os.path.dirname(filename) == hook_dir */
static int is_hook_file(PyObject *filename, PyObject *hook_dir)
{
    if (filename == NULL || !PyUnicode_Check(filename) || hook_dir == NULL) {
        return 0;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(filename);
    Py_ssize_t i = PyUnicode_FindChar(filename, '/', 0, n, -1);
    if (i < 0) {
        return PyUnicode_GET_LENGTH(hook_dir) == 0;
    }
    Py_ssize_t end = i + 1;
    /* rstrip the slashes unless the head is all slashes */
    Py_ssize_t j = end;
    while (j > 0 && PyUnicode_READ_CHAR(filename, j - 1) == '/') {
        j--;
    }
    if (j > 0) {
        end = j;
    }
    PyObject *head = PyUnicode_Substring(filename, 0, end);
    if (head == NULL) {
        PyErr_Clear();
        return 0;
    }
    int eq = PyUnicode_Compare(head, hook_dir) == 0;
    Py_DECREF(head);
    PyErr_Clear();
    return eq;
}

static PyObject *frame_desc(PyObject *tname, PyCodeObject *co, int lineno)
{
    return PyUnicode_FromFormat("%U: %U (%U:%d)", tname, co->co_name, co->co_filename, lineno);
}

typedef struct {
    unsigned long tid;
    PyThreadState *ts;
} TS;

const char capture_doc[] = PyDoc_STR(
"capture(names, main_tid, hook_dir) -> dict\n\n"
"Every thread's frames and thread-state dicts, read without running code or\n"
"materializing frames: {'stack_roots': [(desc, name, obj)],\n"
"'thread_roots': [(thread name, dict)], 'frames': [frame objects]}.");

PyObject *capture(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *names, *hook_dir;
    unsigned long long main_tid;
    if (!PyArg_ParseTuple(args, "OKU:capture", &names, &main_tid, &hook_dir)) {
        return NULL;
    }
    int gc_was = PyGC_Disable();
    PyObject *stack_roots = PyList_New(0), *thread_roots = PyList_New(0),
             *frames = PyList_New(0), *keepalive = PyList_New(0), *result = NULL;
    TS *tss = NULL;
    size_t nts = 0, cap = 0;
    if (!stack_roots || !thread_roots || !frames || !keepalive) {
        goto done;
    }
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    for (PyThreadState *t = PyInterpreterState_ThreadHead(interp); t != NULL;
            t = PyThreadState_Next(t)) {
        if (nts == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            TS *nt = realloc(tss, ncap * sizeof(TS));
            if (nt == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            tss = nt;
            cap = ncap;
        }
        tss[nts].tid = t->thread_id;
        tss[nts].ts = t;
        nts++;
    }
    /* main thread first, then ascending thread id */
    for (size_t i = 1; i < nts; i++) {
        TS cur = tss[i];
        size_t j = i;
        while (j > 0) {
            TS prev = tss[j - 1];
            int cur_main = cur.tid == (unsigned long)main_tid;
            int prev_main = prev.tid == (unsigned long)main_tid;
            int less = cur_main != prev_main ? cur_main : cur.tid < prev.tid;
            if (!less) {
                break;
            }
            tss[j] = prev;
            j--;
        }
        tss[j] = cur;
    }
    for (size_t k = 0; k < nts; k++) {
        PyThreadState *t = tss[k].ts;
        PyObject *tname = NULL;
        if (names != NULL && PyDict_Check(names)) {
            PyObject *key = PyLong_FromUnsignedLong(tss[k].tid);
            if (key == NULL) {
                goto done;
            }
            PyObject *v = PyDict_GetItemWithError(names, key);
            Py_DECREF(key);
            if (v != NULL && PyUnicode_Check(v)) {
                tname = Py_NewRef(v);
            }
            PyErr_Clear();
        }
        if (tname == NULL) {
            tname = PyUnicode_FromFormat("thread-%lu", tss[k].tid);
            if (tname == NULL) {
                goto done;
            }
        }
        for (MdFrame *fr = md_thread_frame(t); fr != NULL; fr = md_frame_previous(fr)) {
            if (md_frame_is_shim(fr)) {
                continue;
            }
            PyCodeObject *co = md_frame_code(fr);
            if (co == NULL || md_frame_incomplete(fr)) {
                continue;
            }
            PyFrameObject *f = md_frame_object(fr);
            if (f != NULL && PyList_Append(frames, (PyObject *)f) < 0) {
                Py_DECREF(tname);
                goto done;
            }
            if (is_hook_file(co->co_filename, hook_dir)) {
                continue;
            }
            int lineno = f != NULL ? md_frameobj_lineno(f) : 0;
            if (lineno == 0) {
                lineno = md_frame_line(fr);
            }
            PyObject *desc = frame_desc(tname, co, lineno);
            if (desc == NULL) {
                Py_DECREF(tname);
                goto done;
            }
            int r = 0;
            PyObject *flocals = md_frame_locals_dict(fr);
            if (co->co_flags & CO_OPTIMIZED) {
                RootCtx rc = {stack_roots, desc};
                r = md_frame_locals(fr, f, capture_local, &rc);
            }
            else if (flocals != NULL && flocals != md_frame_globals(fr)) {
                PyObject *lname = PyUnicode_FromString("<locals>");
                PyObject *tup = lname ? PyTuple_Pack(3, desc, lname, flocals) : NULL;
                Py_XDECREF(lname);
                r = tup ? PyList_Append(stack_roots, tup) : -1;
                Py_XDECREF(tup);
            }
            Py_DECREF(desc);
            if (r < 0) {
                Py_DECREF(tname);
                goto done;
            }
        }
        /* 3.13 keeps threading.local data per sentinel: a fork child clears
         * other threads' sentinels, which drops their data, unless held. */
        PyObject *sentinel = md_thread_local_sentinel(t);
        if (sentinel != NULL && PyList_Append(keepalive, sentinel) < 0) {
            Py_DECREF(tname);
            goto done;
        }
        if (t->dict != NULL) {
            PyObject *tup = PyTuple_Pack(2, tname, t->dict);
            int r = tup ? PyList_Append(thread_roots, tup) : -1;
            Py_XDECREF(tup);
            if (r < 0) {
                Py_DECREF(tname);
                goto done;
            }
        }
        Py_DECREF(tname);
    }
    result = Py_BuildValue("{s:O,s:O,s:O,s:O}", "stack_roots", stack_roots,
                           "thread_roots", thread_roots, "frames", frames,
                           "keepalive", keepalive);
done:
    free(tss);
    Py_XDECREF(stack_roots);
    Py_XDECREF(thread_roots);
    Py_XDECREF(frames);
    Py_XDECREF(keepalive);
    if (gc_was) {
        PyGC_Enable();
    }
    return result;
}
