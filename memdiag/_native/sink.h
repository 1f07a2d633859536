/* memdiag/_native/sink.h: where the walk's columns go.
 *
 * The walk pushes values into columns (sink_push); a full column chunk is
 * encoded (encode.h) and deflated by the compression pool, native worker
 * threads that never touch a Python object (so they run while the walk holds
 * the GIL), into the zlib stream format of zlib.compress(payload,
 * writer.level), crc32 included.  Finished chunks go to the writer
 * (snapfile.Writer.write_compressed) in submission order: during the walk in
 * a throwaway fork child (stream), else kept in memory until the walk is
 * over (sink_write_pending), when no object pointer is used any more.
 * Deflate is libdeflate's when the system has libdeflate.so.0 (unless
 * MEMDIAG_NO_LIBDEFLATE is set), else the process's libz; without libz the
 * writer compresses (writer.write_chunk).  MEMDIAG_COMPRESS_THREADS: how
 * many workers (0-4; default one per CPU up to 4; 0: the walk deflates).
 *
 * The sink knows nothing of the heap: tests/native/sinktest.c drives it
 * with plain values.
 */
#ifndef MD_SINK_H
#define MD_SINK_H

#include "compat.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "encode.h"
#include "format.h"

#pragma GCC visibility push(hidden)

#define MAX_WORKERS 4
#define MAX_JOBS (MAX_WORKERS + 2)

/* A chunk kept in memory until the walk is over (live target): compressed
 * (crc of the stored bytes), or raw when there is no libz to compress it. */
typedef struct {
    int column, width;
    uint32_t count;
    size_t raw_len;
    uint8_t *data;
    size_t stored_len;
    uint32_t crc;
    int compressed;
} Pending;

/* A full column chunk on its way through the compression workers: the walk
 * encodes it into raw, a worker deflates raw into out (no GIL, no Python
 * object), the walk takes finished jobs in submission order. */
typedef struct {
    int state;              /* J_FREE, J_QUEUED, J_BUSY, J_DONE */
    int column, width;      /* width: as encoded (see encode_into) */
    uint32_t count;
    uint64_t seq;
    uint8_t *raw;           /* CHUNK * 8 bytes */
    size_t raw_len;
    uint8_t *out;           /* compressBound(CHUNK * 8): pages touched as used */
    size_t out_cap, out_len;
    uint32_t crc;
    int zerr;
} Job;
enum { J_FREE, J_QUEUED, J_BUSY, J_DONE };

/* The compression pool: its workers, their jobs, and what they cost. */
typedef struct {
    int level;              /* writer.level */
    int nworkers, nworkers_started;
    pthread_t workers[MAX_WORKERS];
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    Job jobs[MAX_JOBS];
    int njobs;              /* 0: no libz, the writer compresses */
    uint64_t next_seq, next_take;
    int stop, mu_ok;
    void *zs;               /* Deflater of the walk's own deflate (no workers, or helping) */
    double compress_seconds;    /* time in deflate, summed over threads */
    double worker_cpu_seconds;
    double wait_seconds;        /* the walk waiting for a worker */
} Pool;

typedef struct {
    Col cols[NCOLS];        /* vals NULL: a column not written */
    uint8_t *raw;           /* one encoded chunk (no libz) */
    Pending *pending;
    size_t npending, pendcap;
    size_t pending_bytes, pending_peak;
    PyObject *writer;
    int stream;             /* fork child: write chunks as they fill */
    int *failed;            /* the walk's error flag: set on a failed write;
                             * once set, nothing more is written */
    double write_seconds;   /* in the writer's methods */
    Pool pool;
} Sink;

/* At import: find libdeflate and libz in the process (dlopen). */
void sink_load_compressors(void);
/* "libdeflate", "zlib" or "none" (the writer compresses). */
const char *sink_compressor(void);

/* A sink writing to writer (a new reference is kept); *failed is the walk's
 * error flag.  Then sink_open for each column written, sink_start. */
void sink_init(Sink *s, PyObject *writer, int stream, int *failed);
int sink_open(Sink *s, int column);
/* The pool: writer.level, job buffers, workers. */
int sink_start(Sink *s);

int sink_flush(Sink *s, int column);
void sink_push_bytes(Sink *s, int column, const uint8_t *p, size_t len);

static inline void sink_push(Sink *s, int column, uint64_t v)
{
    Col *c = &s->cols[column];
    if (CODING[column].width == 8) {
        ((uint64_t *)c->vals)[c->n++] = v;
    }
    else {
        ((uint32_t *)c->vals)[c->n++] = (uint32_t)v;
    }
    if (c->n == c->limit && sink_flush(s, column) < 0) {
        *s->failed = 1;
    }
}

/* Every column's last chunk out, every job taken, the workers stopped. */
int sink_finish(Sink *s);
/* The chunks kept in memory, to the writer (no object pointer is used any
 * more: the writer may release the GIL). */
int sink_write_pending(Sink *s);
/* Stop and join the workers (idempotent). */
void sink_stop(Sink *s);
void sink_free(Sink *s);

static inline double thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#pragma GCC visibility pop

#endif
