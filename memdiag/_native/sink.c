/* memdiag/_native/sink.c: the walk's columns to the writer, through the
 * compression pool (see sink.h). */

#include "sink.h"

#include <dlfcn.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tables.h"

/* ----------------------------------------------------- libdeflate, zlib */

/* zlib, found at import in the process (Python's zlib module loads it).
 * Chunks are deflated with it in native threads, as zlib.compress(payload,
 * writer.level) would (same format: zlib header, default window and memory
 * level), and their crc32 computed there too. */
#if defined(__has_include)
#  if __has_include(<zlib.h>)
#    include <zlib.h>
#    define HAVE_ZLIB_H 1
#  endif
#endif
#ifndef HAVE_ZLIB_H
/* zlib's z_stream, unchanged since zlib 1.0 (deflateInit2_ checks its size) */
typedef struct {
    const unsigned char *next_in;
    unsigned int avail_in;
    unsigned long total_in;
    unsigned char *next_out;
    unsigned int avail_out;
    unsigned long total_out;
    const char *msg;
    void *state;
    void *zalloc, *zfree, *opaque;
    int data_type;
    unsigned long adler, reserved;
} z_stream;
#define Z_OK 0
#define Z_STREAM_END 1
#define Z_FINISH 4
#define Z_DEFLATED 8
#define Z_DEFAULT_STRATEGY 0
#define Z_RLE 3
#endif
typedef int (*deflate_init2_fn)(z_stream *, int, int, int, int, int, const char *, int);
typedef int (*deflate_fn)(z_stream *, int);
typedef unsigned long (*bound_fn)(unsigned long);
typedef unsigned long (*crc32_fn)(unsigned long, const unsigned char *, unsigned int);
typedef const char *(*version_fn)(void);
static deflate_init2_fn z_deflate_init2;
static deflate_fn z_deflate;
static int (*z_deflate_reset)(z_stream *);
static int (*z_deflate_end)(z_stream *);
static bound_fn z_bound;
static crc32_fn z_crc32;
static version_fn z_version;

/* libdeflate (libdeflate.so.0), when the system has it: the same zlib
 * stream format, and at level 1 faster than zlib's and smaller on these
 * columns, also the two zlib deflates with Z_RLE.  Optional: without it, or
 * with MEMDIAG_NO_LIBDEFLATE set, zlib. */
typedef void *(*ld_alloc_fn)(int);
typedef size_t (*ld_compress_fn)(void *, const void *, size_t, void *, size_t);
typedef void (*ld_free_fn)(void *);
static ld_alloc_fn ld_alloc;
static ld_compress_fn ld_zlib_compress;
static ld_free_fn ld_free;

static void load_libdeflate(void)
{
    const char *env = getenv("MEMDIAG_NO_LIBDEFLATE");
    if (env != NULL && *env) {
        return;
    }
    void *h = dlopen("libdeflate.so.0", RTLD_LAZY | RTLD_LOCAL);
    if (h == NULL) {
        return;
    }
    ld_alloc = (ld_alloc_fn)dlsym(h, "libdeflate_alloc_compressor");
    ld_zlib_compress = (ld_compress_fn)dlsym(h, "libdeflate_zlib_compress");
    ld_free = (ld_free_fn)dlsym(h, "libdeflate_free_compressor");
    if (!ld_alloc || !ld_zlib_compress || !ld_free) {
        ld_alloc = NULL;
    }
}

void sink_load_compressors(void)
{
    load_libdeflate();
    const char *names[] = {"libz.so.1", "libz.so", NULL};
    for (int i = 0; names[i] != NULL && z_deflate == NULL; i++) {
        void *h = dlopen(names[i], RTLD_LAZY | RTLD_LOCAL | RTLD_NOLOAD);
        if (h == NULL) {
            h = dlopen(names[i], RTLD_LAZY | RTLD_LOCAL);
        }
        if (h == NULL) {
            continue;
        }
        z_deflate_init2 = (deflate_init2_fn)dlsym(h, "deflateInit2_");
        z_deflate = (deflate_fn)dlsym(h, "deflate");
        z_deflate_reset = (int (*)(z_stream *))dlsym(h, "deflateReset");
        z_deflate_end = (int (*)(z_stream *))dlsym(h, "deflateEnd");
        z_bound = (bound_fn)dlsym(h, "compressBound");
        z_crc32 = (crc32_fn)dlsym(h, "crc32");
        z_version = (version_fn)dlsym(h, "zlibVersion");
        if (!z_deflate_init2 || !z_deflate || !z_deflate_reset || !z_deflate_end || !z_bound
                || !z_crc32 || !z_version) {
            z_deflate = NULL;
        }
    }
}

/* --------------------------------------------------------- writer calls */

/* The first chunk of each column is cut short by a different amount (the
 * format lets chunks hold any count), so that columns filling at the same
 * pace (the object columns; the two edge columns) hand their chunks to the
 * compression workers one after the other rather than all at once. */
static const uint8_t STAGGER[NCOLS] = {
    8, 1, 2, 3, 4, 5, 6, 7, 8, 4, 8, 8, 8, 8, 8, 8, 8, 8,
};

/* writer.write_compressed(column, width, transform, count, stored, crc), or
 * with compressed=0 writer.write_chunk(column, width, transform, count,
 * payload): data is a memoryview of the walker's buffer, released after the
 * call.  0, or 1 when the buffer is still exported (never reuse it), or -1
 * with an exception. */
static int write_block(Sink *s, int column, int width, uint32_t count, uint8_t *data,
                       size_t len, int compressed, uint32_t crc)
{
    PyObject *mv = PyMemoryView_FromMemory((char *)data, (Py_ssize_t)len, PyBUF_READ);
    if (mv == NULL) {
        return -1;
    }
    double t0 = now_seconds();
    PyObject *r = compressed
        ? PyObject_CallMethod(s->writer, "write_compressed", "iiiIOk", column,
                              width, (int)CODING[column].transform,
                              (unsigned int)count, mv, (unsigned long)crc)
        : PyObject_CallMethod(s->writer, "write_chunk", "iiiIO", column,
                              width, (int)CODING[column].transform,
                              (unsigned int)count, mv);
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyObject *rel = PyObject_CallMethod(mv, "release", NULL);
    int kept = rel == NULL;     /* someone kept an export of the buffer */
    Py_XDECREF(rel);
    PyErr_Clear();
    PyErr_Restore(t, v, tb);
    Py_DECREF(mv);
    s->write_seconds += now_seconds() - t0;
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return kept;
}

/* ------------------------------------------------- the compression pool */

/* Columns zlib deflates with Z_RLE: their byte planes are either nearly random
 * (the low bytes of address and edge target deltas), where the default
 * strategy's string matching finds little and costs most of the time, or
 * runs of zeros, which RLE codes as well. Same stream format. */
static inline int rle_column(int column)
{
    return column == COL_ADDR || column == COL_ETARGET;
}

/* What deflate_job compresses with: libdeflate's compressor when the system
 * has libdeflate, else zs[0], a default-strategy zlib stream, and zs[1], an
 * RLE one. */
typedef struct {
    z_stream zs[2];
    void *ldc;
} Deflater;

/* Deflate and crc one job's raw bytes into its out buffer. */
static void deflate_job(Deflater *d, Job *j)
{
    j->zerr = 1;
    if (d->ldc != NULL) {
        size_t n = ld_zlib_compress(d->ldc, j->raw, j->raw_len, j->out, j->out_cap);
        if (n == 0) {
            return;
        }
        j->out_len = n;
    }
    else {
        z_stream *zs = &d->zs[rle_column(j->column)];
        if (z_deflate_reset(zs) != Z_OK) {
            return;
        }
        zs->next_in = j->raw;
        zs->avail_in = (unsigned int)j->raw_len;
        zs->next_out = j->out;
        zs->avail_out = (unsigned int)j->out_cap;
        if (z_deflate(zs, Z_FINISH) != Z_STREAM_END) {
            return;
        }
        j->out_len = j->out_cap - zs->avail_out;
    }
    j->crc = (uint32_t)z_crc32(0, j->out, (unsigned int)j->out_len);
    j->zerr = 0;
}

static int zs_init(Pool *p, Deflater *d)
{
    memset(d, 0, sizeof(*d));
    if (ld_alloc != NULL) {
        /* zlib's levels: -1 is its default, 6 */
        d->ldc = ld_alloc(p->level < 0 ? 6 : p->level);
        if (d->ldc != NULL) {
            return 0;
        }
    }
    z_stream *zs = d->zs;
    if (z_deflate_init2(&zs[0], p->level, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY,
                        z_version(), (int)sizeof(z_stream)) != Z_OK) {
        return -1;
    }
    if (z_deflate_init2(&zs[1], p->level, Z_DEFLATED, 15, 8, Z_RLE,
                        z_version(), (int)sizeof(z_stream)) != Z_OK) {
        z_deflate_end(&zs[0]);
        return -1;
    }
    return 0;
}

static void zs_end(Deflater *d)
{
    if (d->ldc != NULL) {
        ld_free(d->ldc);
        d->ldc = NULL;
        return;
    }
    z_deflate_end(&d->zs[0]);
    z_deflate_end(&d->zs[1]);
}

static void *zw_main(void *arg)
{
    Pool *w = arg;
    Deflater zs;
    int ok = zs_init(w, &zs) == 0;
    double busy = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        /* the queued job submitted first */
        Job *j = NULL;
        for (int k = 0; k < w->njobs; k++) {
            if (w->jobs[k].state == J_QUEUED && (j == NULL || w->jobs[k].seq < j->seq)) {
                j = &w->jobs[k];
            }
        }
        if (j == NULL) {
            if (w->stop) {
                break;
            }
            pthread_cond_wait(&w->cv_work, &w->mu);
            continue;
        }
        j->state = J_BUSY;
        pthread_mutex_unlock(&w->mu);
        double t0 = now_seconds();
        if (ok) {
            deflate_job(&zs, j);
        }
        else {
            j->zerr = 1;
        }
        busy += now_seconds() - t0;
        pthread_mutex_lock(&w->mu);
        j->state = J_DONE;
        pthread_cond_broadcast(&w->cv_done);
    }
    w->compress_seconds += busy;
    w->worker_cpu_seconds += thread_cpu_seconds();
    pthread_mutex_unlock(&w->mu);
    if (ok) {
        zs_end(&zs);
    }
    return NULL;
}

/* How many workers: one per CPU this process may run on, up to 4. */
static int cpu_count(void)
{
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) {
        return CPU_COUNT(&set);
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Job buffers, and the workers (none if threads cannot be made: the walk
 * then deflates each chunk itself).  Without libz, nothing: the writer
 * compresses.  Workers run with every signal blocked, so a signal to the
 * target never lands on one. */
static int zw_start(Pool *w)
{
    if (z_deflate == NULL) {
        return 0;
    }
    int want = cpu_count();
    if (want > MAX_WORKERS) {
        want = MAX_WORKERS;
    }
    const char *env = getenv("MEMDIAG_COMPRESS_THREADS");
    if (env != NULL && *env) {
        want = atoi(env);
        want = want < 0 ? 0 : want > MAX_WORKERS ? MAX_WORKERS : want;
    }
    size_t cap = (size_t)z_bound((unsigned long)CHUNK * 8);
    if (ld_alloc != NULL) {
        /* libdeflate's bound: 5 bytes per block of at least 5000 bytes more */
        cap += 8192;
    }
    w->njobs = want + 2 > MAX_JOBS ? MAX_JOBS : want + 2;
    for (int k = 0; k < w->njobs; k++) {
        Job *j = &w->jobs[k];
        j->state = J_FREE;
        j->raw = xcalloc((size_t)CHUNK * 8);
        j->out = xcalloc(cap);
        j->out_cap = cap;
        if (j->raw == NULL || j->out == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (pthread_mutex_init(&w->mu, NULL) != 0 || pthread_cond_init(&w->cv_work, NULL) != 0
            || pthread_cond_init(&w->cv_done, NULL) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "memdiag walker: no mutex");
        return -1;
    }
    w->mu_ok = 1;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int k = 0; k < want; k++) {
        if (pthread_create(&w->workers[w->nworkers], NULL, zw_main, w) != 0) {
            break;
        }
        w->nworkers++;
    }
    w->nworkers_started = w->nworkers;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

/* Stop and join the workers (they finish the jobs queued first). */
void sink_stop(Sink *s)
{
    Pool *w = &s->pool;
    if (w->zs != NULL) {
        zs_end(w->zs);
        xfree(w->zs, sizeof(Deflater));
        w->zs = NULL;
    }
    if (w->njobs == 0 || w->mu_ok == 0) {
        return;
    }
    if (w->nworkers) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_broadcast(&w->cv_work);
        pthread_mutex_unlock(&w->mu);
        for (int k = 0; k < w->nworkers; k++) {
            pthread_join(w->workers[k], NULL);
        }
        w->nworkers = 0;
    }
    pthread_cond_destroy(&w->cv_work);
    pthread_cond_destroy(&w->cv_done);
    pthread_mutex_destroy(&w->mu);
    w->mu_ok = 0;
}

static int keep_pending(Sink *w, int column, int width, uint32_t count, const uint8_t *data,
                        size_t len, size_t raw_len, int compressed, uint32_t crc)
{
    if (w->npending == w->pendcap) {
        size_t ncap = w->pendcap ? w->pendcap * 2 : 64;
        Pending *np = xrealloc(w->pending, w->pendcap * sizeof(Pending),
                               ncap * sizeof(Pending));
        if (np == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->pending = np;
        w->pendcap = ncap;
    }
    uint8_t *copy = xcalloc(len);
    if (copy == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(copy, data, len);
    Pending *pd = &w->pending[w->npending++];
    pd->column = column;
    pd->width = width;
    pd->count = count;
    pd->raw_len = raw_len;
    pd->data = copy;
    pd->stored_len = len;
    pd->crc = crc;
    pd->compressed = compressed;
    w->pending_bytes += len;
    if (w->pending_bytes > w->pending_peak) {
        w->pending_peak = w->pending_bytes;
    }
    return 0;
}

/* A deflated job to its place: the file (fork child), or memory until the
 * walk is over (live target). */
static int job_out(Sink *w, Job *j)
{
    if (j->zerr) {
        PyErr_SetString(PyExc_RuntimeError, "memdiag walker: deflate failed");
        return -1;
    }
    if (w->stream) {
        int r = write_block(w, j->column, j->width, j->count, j->out, j->out_len, 1,
                            j->crc);
        if (r == 1) {   /* still exported: never written into again */
            j->out = xcalloc(j->out_cap);
            if (j->out == NULL) {
                /* the walk fails (*failed): sink_flush submits no more
                 * jobs, so this job's missing buffer is never written into */
                *w->failed = 1;
                PyErr_NoMemory();
                return -1;
            }
            r = 0;
        }
        return r;
    }
    return keep_pending(w, j->column, j->width, j->count, j->out, j->out_len, j->raw_len, 1,
                        j->crc);
}

/* The walk's own z_streams (deflate_job's pair), made when first needed;
 * NULL if they cannot be. */
static Deflater *own_zs(Pool *w)
{
    if (w->zs == NULL) {
        w->zs = xcalloc(sizeof(Deflater));
        if (w->zs != NULL && zs_init(w, w->zs) < 0) {
            xfree(w->zs, sizeof(Deflater));
            w->zs = NULL;
        }
    }
    return w->zs;
}

/* Called with w->mu held, while the walk would wait for a worker: deflate
 * the oldest queued job here instead (the walk's thread would sleep
 * otherwise); 1 if there was one. */
static int zw_help(Pool *w)
{
    Job *j = NULL;
    for (int k = 0; k < w->njobs; k++) {
        if (w->jobs[k].state == J_QUEUED && (j == NULL || w->jobs[k].seq < j->seq)) {
            j = &w->jobs[k];
        }
    }
    if (j == NULL) {
        return 0;
    }
    j->state = J_BUSY;
    pthread_mutex_unlock(&w->mu);
    double t0 = now_seconds();
    Deflater *zs = own_zs(w);
    if (zs != NULL) {
        deflate_job(zs, j);
    }
    else {
        j->zerr = 1;
    }
    double spent = now_seconds() - t0;
    pthread_mutex_lock(&w->mu);
    w->compress_seconds += spent;
    j->state = J_DONE;
    pthread_cond_broadcast(&w->cv_done);
    return 1;
}

/* Take finished jobs in submission order; with wait, until all are taken.
 * The walk holds the GIL throughout (nothing else runs Python meanwhile). */
static int zw_take(Sink *s, int wait)
{
    Pool *w = &s->pool;
    for (;;) {
        Job *j = NULL;
        if (w->next_take == w->next_seq) {
            return 0;
        }
        int done = 0;
        pthread_mutex_lock(&w->mu);
        for (;;) {
            for (int k = 0; k < w->njobs; k++) {
                if (w->jobs[k].state != J_FREE && w->jobs[k].seq == w->next_take) {
                    j = &w->jobs[k];
                }
            }
            done = j != NULL && j->state == J_DONE;
            if (j == NULL || done || !wait) {
                break;
            }
            if (zw_help(w)) {
                j = NULL;
                continue;
            }
            double t0 = now_seconds();
            pthread_cond_wait(&w->cv_done, &w->mu);
            w->wait_seconds += now_seconds() - t0;
            j = NULL;
        }
        pthread_mutex_unlock(&w->mu);
        if (!done) {
            return 0;
        }
        int r = job_out(s, j);
        pthread_mutex_lock(&w->mu);
        j->state = J_FREE;
        w->next_take++;
        pthread_mutex_unlock(&w->mu);
        if (r < 0) {
            return -1;
        }
    }
}

/* Encode a full column into a free job and queue it for the workers (or
 * deflate it here when there are none). */
static int zw_submit(Sink *s, Col *c, int column)
{
    Pool *w = &s->pool;
    Job *j = NULL;
    for (;;) {
        if (zw_take(s, 0) < 0) {
            return -1;
        }
        pthread_mutex_lock(&w->mu);
        for (int k = 0; k < w->njobs && j == NULL; k++) {
            if (w->jobs[k].state == J_FREE) {
                j = &w->jobs[k];
            }
        }
        pthread_mutex_unlock(&w->mu);
        if (j != NULL) {
            break;
        }
        /* all busy: wait for the oldest (the one to take next) */
        if (zw_take(s, 1) < 0) {
            return -1;
        }
    }
    j->column = column;
    j->count = c->n;
    j->raw_len = encode_into(c, column, j->raw, &j->width);
    c->n = 0;
    j->seq = w->next_seq++;
    if (w->nworkers == 0) {
        double t0 = now_seconds();
        if (own_zs(w) != NULL) {
            deflate_job(w->zs, j);
        }
        else {
            j->zerr = 1;
        }
        w->compress_seconds += now_seconds() - t0;
        j->state = J_DONE;
        return zw_take(s, 1);
    }
    pthread_mutex_lock(&w->mu);
    j->state = J_QUEUED;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static int ensure_raw(Sink *w)
{
    if (w->raw == NULL) {
        w->raw = xcalloc((size_t)CHUNK * 8);
        if (w->raw == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

int sink_flush(Sink *w, int column)
{
    Col *c = &w->cols[column];
    c->limit = CHUNK;
    if (*w->failed) {
        /* the walk has failed already (its exception is set): write nothing
         * more, which would lose that exception; drop the values so that
         * later pushes stay in bounds until the walk stops */
        c->n = 0;
        return -1;
    }
    if (c->n == 0) {
        return 0;
    }
    if (w->pool.njobs) {
        return zw_submit(w, c, column);
    }
    /* no libz: the writer compresses (in the fork child as the chunk fills;
     * in the live target once the walk is over) */
    if (ensure_raw(w) < 0) {
        return -1;
    }
    uint32_t count = c->n;
    int width;
    size_t len = encode_into(c, column, w->raw, &width);
    c->n = 0;
    if (w->stream) {
        int r = write_block(w, column, width, count, w->raw, len, 0, 0);
        if (r == 1) {
            w->raw = NULL;      /* still exported: never written into again */
            r = 0;
        }
        return r;
    }
    return keep_pending(w, column, width, count, w->raw, len, len, 0, 0);
}

int sink_write_pending(Sink *w)
{
    for (size_t i = 0; i < w->npending; i++) {
        Pending *pd = &w->pending[i];
        int r = write_block(w, pd->column, pd->width, pd->count, pd->data, pd->stored_len,
                            pd->compressed, pd->crc);
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            xfree(pd->data, pd->stored_len);    /* else: leaked on purpose */
        }
        pd->data = NULL;
        w->pending_bytes -= pd->stored_len;
    }
    w->npending = 0;
    return 0;
}

void sink_push_bytes(Sink *w, int column, const uint8_t *p, size_t len)
{
    Col *c = &w->cols[column];
    uint8_t *buf = (uint8_t *)c->vals;
    while (len) {
        size_t room = c->limit - c->n;
        size_t k = len < room ? len : room;
        memcpy(buf + c->n, p, k);
        c->n += (uint32_t)k;
        p += k;
        len -= k;
        if (c->n == c->limit && sink_flush(w, column) < 0) {
            *w->failed = 1;
            return;
        }
    }
}

/* ------------------------------------------------------------- the sink */

const char *sink_compressor(void)
{
    return ld_alloc != NULL ? "libdeflate" : z_deflate != NULL ? "zlib" : "none";
}

void sink_init(Sink *s, PyObject *writer, int stream, int *failed)
{
    memset(s, 0, sizeof(*s));
    s->writer = Py_NewRef(writer);
    s->stream = stream;
    s->failed = failed;
}

int sink_open(Sink *s, int column)
{
    Col *c = &s->cols[column];
    c->vals = xcalloc(col_bytes(column));
    if (c->vals == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    c->limit = CHUNK * STAGGER[column] / 8;
    return 0;
}

int sink_start(Sink *s)
{
    PyObject *lv = PyObject_GetAttrString(s->writer, "level");
    long v = lv != NULL ? PyLong_AsLong(lv) : 1;
    Py_XDECREF(lv);
    PyErr_Clear();
    s->pool.level = (v >= -1 && v <= 9) ? (int)v : 1;
    return zw_start(&s->pool);
}

int sink_finish(Sink *s)
{
    for (int c = 1; c < NCOLS; c++) {
        if (sink_flush(s, c) < 0) {
            return -1;
        }
    }
    if (s->pool.njobs && zw_take(s, 1) < 0) {
        return -1;
    }
    sink_stop(s);
    return 0;
}

void sink_free(Sink *s)
{
    sink_stop(s);
    for (int c = 1; c < NCOLS; c++) {
        if (s->cols[c].vals != NULL) {
            xfree(s->cols[c].vals, col_bytes(c));
        }
        s->cols[c].vals = NULL;
    }
    for (size_t i = 0; i < s->npending; i++) {
        xfree(s->pending[i].data, s->pending[i].stored_len);
    }
    xfree(s->pending, s->pendcap * sizeof(Pending));
    s->pending = NULL;
    s->npending = s->pendcap = 0;
    xfree(s->raw, (size_t)CHUNK * 8);
    s->raw = NULL;
    for (int k = 0; k < s->pool.njobs; k++) {
        xfree(s->pool.jobs[k].raw, (size_t)CHUNK * 8);
        xfree(s->pool.jobs[k].out, s->pool.jobs[k].out_cap);
    }
    s->pool.njobs = 0;
    Py_CLEAR(s->writer);
}
