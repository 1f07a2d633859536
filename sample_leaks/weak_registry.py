"""A weak index and a strong list that gain the same objects.

Story: a session's identity map kept growing, and was blamed; it holds its
sessions through weak references, though, and "fixing" it freed nothing.
The sessions were kept alive by an audit list that nobody trimmed.

Here: ``GET /login`` opens a ``sessions.store.Session`` (with a 256-byte
bytearray), indexes it in ``sessions.store.by_id`` (a
``WeakValueDictionary``) and appends it to ``sessions.store.opened`` (a
list).

Expected memdiag report: ``sessions.store.opened`` first (it retains the
sessions); ``sessions.store.by_id.data`` below it, marked weak (it retains
only its own table and weak references). Safety cap: the audit list stops
at 500,000 sessions.

Endpoints: /login, /stats ({"requests", "indexed", "opened"}),
/debug/objects.
Run: python sample_leaks/weak_registry.py [--port 0] [--max-seconds 600]
"""

import os
import sys
import threading

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from sessions import store  # noqa: E402
from _server import serve  # noqa: E402

_lock = threading.Lock()
_requests = 0


def login(query):
    global _requests
    with _lock:
        _requests += 1
        n = _requests
    store.open_session(n, f"user{n % 50}")
    return "ok\n"


def stats():
    indexed, opened = store.counts()
    return {"requests": _requests, "indexed": indexed, "opened": opened}


if __name__ == "__main__":
    sys.exit(serve({"/login": login}, stats, __doc__.splitlines()[0]))
