"""Producer-only service whose event library keeps every sent id (seed 003).

Story: services in Kubernetes grew until they were OOM-killed.  Comparing
heap snapshots taken over time showed ever more ``string``s that looked like
ids, retained by an array ``sentEvents`` inside an event library.  The
library records each id it produces so that a consumer in the same process
can skip its own events and trim the array; the service only produced, so
nothing ever trimmed it.

Here: ``GET /event`` sends one event through ``eventbus.producer.send``,
which appends its id (a 32-character str) to ``sent_events``;
``eventbus.producer.consume`` would remove it, but this app never consumes.

Expected memdiag report: ``str`` grows by one per /event request, retained by
``eventbus.producer.sent_events``.

Endpoints: /event, /stats ({"requests", "leaked"}), /debug/objects.
Run: python sample_leaks/event_backlog.py [--port 0] [--max-seconds 600]
"""

import os
import sys
import threading
import time

# The library lives beside this script; make that work with any launcher.
_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from eventbus import producer  # noqa: E402
from _server import serve  # noqa: E402

_lock = threading.Lock()
_requests = 0


def post_event(query):
    global _requests
    with _lock:
        _requests += 1
    event_id = producer.send({"type": "order.created", "ts": time.time()})
    return event_id + "\n"


def stats():
    return {
        "requests": _requests,
        "leaked": len(producer.sent_events),
        "bytes_sent": producer.bytes_sent(),
    }


if __name__ == "__main__":
    sys.exit(serve({"/event": post_event}, stats, __doc__.splitlines()[0]))
