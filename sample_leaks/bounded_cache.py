"""Control sample: bounded caches under churn, no leak.

Every ``GET /item[?id=<n>]`` (without id, the request counter is the id, so
keys are always new) goes through three bounded structures and some
temporaries:

* ``price(item_id)``  -- ``functools.lru_cache(maxsize=256)``;
* ``_items``          -- a hand-written dict cache capped at 512 entries that
                         evicts the oldest entry;
* ``_recent``         -- ``collections.deque(maxlen=100)`` of recent ids;
* a throw-away list of dicts serialized to JSON and dropped.

After a warm-up of a few hundred requests every structure is full and only
churns.  Expected memdiag report: no growing container (heap flat; any
differences between two snapshots taken after warm-up are noise).

Endpoints: /item, /stats ({"requests", "lru_size", "dict_cache_size",
"recent_size"}), /debug/objects.
Run: python sample_leaks/bounded_cache.py [--port 0] [--max-seconds 600]
"""

import collections
import functools
import json
import os
import sys
import threading
from urllib.parse import parse_qs

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from _server import serve  # noqa: E402

LRU_SIZE = 256
DICT_CACHE_SIZE = 512
RECENT_SIZE = 100


class Item:
    def __init__(self, item_id):
        self.id = item_id
        self.name = f"item-{item_id}"
        self.tags = ["sample", f"bucket-{item_id % 16}"]


@functools.lru_cache(maxsize=LRU_SIZE)
def price(item_id):
    return {"id": item_id, "cents": (item_id * 7919) % 10000}


_lock = threading.Lock()
_requests = 0
_items = {}  # item_id -> Item, insertion order = age
_recent = collections.deque(maxlen=RECENT_SIZE)


def get_item(item_id):
    with _lock:
        item = _items.get(item_id)
        if item is None:
            if len(_items) >= DICT_CACHE_SIZE:
                del _items[next(iter(_items))]  # evict the oldest
            item = _items[item_id] = Item(item_id)
        return item


def handle_item(query):
    global _requests
    with _lock:
        _requests += 1
        n = _requests
    ids = parse_qs(query).get("id")
    item_id = int(ids[0]) if ids and ids[0].isdigit() else n
    item = get_item(item_id)
    _recent.append(item_id)
    # Per-request temporaries, freed when the function returns.
    rows = [{"id": item.id, "name": item.name, "tag": t} for t in item.tags]
    return json.dumps({"rows": rows, "price": price(item_id)}) + "\n"


def stats():
    return {
        "requests": _requests,
        "lru_size": price.cache_info().currsize,
        "dict_cache_size": len(_items),
        "recent_size": len(_recent),
    }


if __name__ == "__main__":
    sys.exit(serve({"/item": handle_item}, stats, __doc__.splitlines()[0]))
