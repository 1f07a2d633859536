"""Test helper for tests/test_sink.py: the walker's sink on its own.

    python sinkcheck.py OUTDIR

Writes the same columns (known values of every column, 150,000 objects)
through the sink (_walkertest.sink_write) with 0, 1 and 4 compression
workers, streaming (fork child) and kept in memory until the end (live
target): OUTDIR/t<threads>-<stream|pending>.snap. The compressor is what
the environment asks for (MEMDIAG_NO_LIBDEFLATE). Prints one JSON line:
{"compressor": ..., "runs": [{"file", "threads", "stream", "stats"}]}.
"""

import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import walkertest  # noqa: E402
from memdiag import snapfile as sf  # noqa: E402

OBJECTS, EDGES, ROOTS, STRINGS = 150_000, 320_000, 700, 3_000


def columns(seed=1):
    """Values for every column, shaped like a walk's: rising addresses with
    jumps back (negative deltas), small type indexes (narrowed to 2 bytes),
    sizes that need 8 bytes in some chunks, all-zero lengths (1 byte), ..."""
    rng = random.Random(seed)
    addr, a = [], 0x7F00_0000_0000
    for i in range(OBJECTS):
        a += 16 * rng.randrange(1, 6) if i % 9 else -16 * rng.randrange(1, 1000)
        addr.append(a)
    data = bytes(rng.randrange(32, 127) for _ in range(STRINGS * 7))
    return {
        sf.COL_ADDR: addr,
        sf.COL_TYPE: [rng.randrange(300) for _ in range(OBJECTS)],
        sf.COL_SIZE: [16 if i % 3 else 1 << 33 if i < 40_000 else 56 for i in range(OBJECTS)],
        sf.COL_LENGTH: [0] * OBJECTS,
        sf.COL_NEDGES: [2 + (i % 2) * (i % 5 > 0) for i in range(OBJECTS)],
        sf.COL_PARENT: [i // 2 for i in range(OBJECTS)],
        sf.COL_PLABEL: [(i % 50) << 3 | 5 for i in range(OBJECTS)],
        sf.COL_SITE: [i % 7 for i in range(OBJECTS)],
        sf.COL_ETARGET: [rng.randrange(OBJECTS) for _ in range(EDGES)],
        sf.COL_ELABEL: [rng.randrange(1 << 20) for _ in range(EDGES)],
        sf.COL_ROOT_OBJ: list(range(0, ROOTS * 7, 7)),
        sf.COL_ROOT_KIND: [1 + i % 4 for i in range(ROOTS)],
        sf.COL_ROOT_DESC: [i for i in range(ROOTS)],
        sf.COL_ROOT_NAME: [0] * ROOTS,
        sf.COL_STR_OBJ: list(range(STRINGS)),
        sf.COL_STR_LEN: [7] * STRINGS,
        sf.COL_STR_DATA: data,
    }


def trailer(cols):
    return {"objects": len(cols[sf.COL_ADDR]), "edges": len(cols[sf.COL_ETARGET]),
            "roots": len(cols[sf.COL_ROOT_OBJ]), "strings": len(cols[sf.COL_STR_OBJ]),
            "string_bytes": len(cols[sf.COL_STR_DATA])}


def main(outdir):
    mod = walkertest.load()
    cols = columns()
    runs = []
    for threads in (0, 1, 4):
        for stream in (True, False):
            path = os.path.join(outdir, f"t{threads}-{'stream' if stream else 'pending'}.snap")
            os.environ["MEMDIAG_COMPRESS_THREADS"] = str(threads)
            with open(path, "wb") as f:
                writer = sf.Writer(f)
                stats = mod.sink_write(writer, cols, stream)
                writer.finish(trailer(cols))
            runs.append({"file": path, "threads": threads, "stream": stream, "stats": stats})
    print(json.dumps({"compressor": mod.compressor(), "runs": runs}))


if __name__ == "__main__":
    main(sys.argv[1])
