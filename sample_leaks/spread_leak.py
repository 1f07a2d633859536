"""A leak spread over a few hundred lists: per-user event histories.

Story: a service's memory grew steadily, yet no container in it grew much.
Each request appended one event to ``history[user_id]``, a list per user; a
few hundred users each gained a few events between two snapshots, so the
biggest single growth was a handful of elements while the process leaked
one event per request. The leak is the shape ``history[*]``, not any one
list.

Here: ``GET /event?user=<n>`` appends one event (a small dict) to
``activity.feed.history[n % USERS]``; the USERS lists exist once every user
has been seen (a warm-up of USERS requests with user=0..USERS-1).

Expected memdiag report: one group suspect, ``activity.feed.history[*]``,
USERS lists, growth equal to the requests (added type ``dict``). Safety cap:
after a million events nothing more is kept.

Endpoints: /event, /stats ({"requests", "users", "events"}), /debug/objects.
Run: python sample_leaks/spread_leak.py [--port 0] [--max-seconds 600]
"""

import os
import sys
import threading
from urllib.parse import parse_qs

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from activity import feed  # noqa: E402
from _server import serve  # noqa: E402

USERS = 300

_lock = threading.Lock()
_requests = 0


def post_event(query):
    global _requests
    with _lock:
        _requests += 1
        n = _requests
    users = parse_qs(query).get("user")
    user = int(users[0]) if users and users[0].isdigit() else n
    feed.record(user % USERS, "view")
    return "ok\n"


def stats():
    return {"requests": _requests, "users": len(feed.history), "events": feed.events()}


if __name__ == "__main__":
    sys.exit(serve({"/event": post_event}, stats, __doc__.splitlines()[0]))
