"""A buffer that grows in bytes, not in elements: an in-memory request capture.

Story: a service kept a copy of every request in an ``io.BytesIO`` for a
debug endpoint that was never called. The process grew by the size of its
traffic; no list or dict grew at all, so a tool that counts elements saw
nothing.

Here: ``GET /upload`` writes a record of RECORD_BYTES bytes (the request line
and a body) into ``reqlog.capture.buffer``.

Expected memdiag report: ``reqlog.capture.buffer`` (type ``_io.BytesIO``)
grows by about RECORD_BYTES per request (its allocation, as
``sys.getsizeof`` counts it, may run up to an eighth ahead of what was
written). Safety cap: records stop at 256 MiB.

Endpoints: /upload, /stats ({"requests", "written", "allocated"}),
/debug/objects.
Run: python sample_leaks/buffer_leak.py [--port 0] [--max-seconds 600]
"""

import os
import sys
import threading

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from reqlog import capture  # noqa: E402
from _server import serve  # noqa: E402

RECORD_BYTES = 1024
_BODY = b"x" * (RECORD_BYTES - 32)

_lock = threading.Lock()
_requests = 0


def upload(query):
    global _requests
    with _lock:
        _requests += 1
        n = _requests
    line = b"GET /upload #%-19d" % n          # 31 bytes and a newline
    capture.record(line[:31], _BODY)
    return "ok\n"


def stats():
    return {"requests": _requests, "written": capture.written(),
            "allocated": capture.allocated()}


if __name__ == "__main__":
    sys.exit(serve({"/upload": upload}, stats, __doc__.splitlines()[0]))
