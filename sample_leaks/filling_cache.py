"""A bounded cache still filling up: ``functools.lru_cache(maxsize=4096)``.

Story: right after a deploy, memory grew for an hour and an alert fired;
the growth was an ``lru_cache`` of 4,096 entries filling up, which stops on
its own. Between two snapshots it looks exactly like a leak, unless one
knows its bound.

Here: ``GET /price?sku=<n>`` calls ``price(n)``, cached by
``functools.lru_cache(maxsize=MAXSIZE)``; without ``sku`` the request number
is the key, so every request adds an entry until MAXSIZE.

Expected memdiag report: ``__main__.price.__cache__`` grows by one entry per
request, "bounded: N / 4,096" (the walkers read the wrapper's maxsize).

Endpoints: /price, /stats ({"requests", "cached", "maxsize"}),
/debug/objects.
Run: python sample_leaks/filling_cache.py [--port 0] [--max-seconds 600]
"""

import functools
import os
import sys
import threading
from urllib.parse import parse_qs

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from _server import serve  # noqa: E402

MAXSIZE = 4096

_lock = threading.Lock()
_requests = 0


@functools.lru_cache(maxsize=MAXSIZE)
def price(sku):
    return {"sku": sku, "cents": (sku * 7919) % 10000, "currency": "EUR"}


def get_price(query):
    global _requests
    with _lock:
        _requests += 1
        n = _requests
    skus = parse_qs(query).get("sku")
    sku = int(skus[0]) if skus and skus[0].isdigit() else n
    return f"{price(sku)['cents']}\n"


def stats():
    return {"requests": _requests, "cached": price.cache_info().currsize,
            "maxsize": MAXSIZE}


if __name__ == "__main__":
    sys.exit(serve({"/price": get_price}, stats, __doc__.splitlines()[0]))
