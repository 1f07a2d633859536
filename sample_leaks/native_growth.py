"""RSS grows while the Python heap stays flat (seed 000).

Story: a poster-rendering service sat at 500 MB RSS, but its JavaScript heap
was small: a native image library held the memory.  Moving the rendering
into a short-lived child process brought the service down to 200 MB.

Here: every ``GET /render`` mallocs 256 KiB through ctypes, fills it (so the
pages are resident) and never frees it.  No Python object refers to the
block; only an int counter changes.  RSS grows ~256 KiB per request while the
Python heap (gc objects, allocated blocks) stays flat.  Safety cap: after
MAX_BLOCKS (4000 blocks, ~1 GiB) requests it keeps serving without
allocating.

Expected memdiag report: no growing Python container; RSS grew while the
Python heap did not (native memory / allocator, not Python objects).

Endpoints: /render, /stats ({"requests", "leaked", "leaked_bytes"}),
/debug/objects.
Run: python sample_leaks/native_growth.py [--port 0] [--max-seconds 600]
"""

import ctypes
import os
import sys
import threading

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from _server import serve  # noqa: E402

BLOCK_BYTES = 256 * 1024
MAX_BLOCKS = 4000  # ~1 GiB, then stop leaking

libc = ctypes.CDLL(None)  # the C library already loaded in this process
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.memset.restype = ctypes.c_void_p
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

_lock = threading.Lock()
_requests = 0
_blocks = 0


def render(query):
    """Pretend to render with a native library that keeps its buffers."""
    global _requests, _blocks
    with _lock:
        _requests += 1
        if _blocks >= MAX_BLOCKS:
            return "rendered (cap reached, nothing allocated)\n"
        _blocks += 1
    p = libc.malloc(BLOCK_BYTES)
    if not p:
        with _lock:
            _blocks -= 1
        return "rendered (malloc failed)\n"
    libc.memset(p, 1, BLOCK_BYTES)  # touch every page; never freed
    return "rendered\n"


def stats():
    return {"requests": _requests, "leaked": _blocks, "leaked_bytes": _blocks * BLOCK_BYTES}


if __name__ == "__main__":
    sys.exit(serve({"/render": render}, stats, __doc__.splitlines()[0]))
