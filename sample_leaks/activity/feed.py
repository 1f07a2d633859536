"""Per-user event history. ``history[user_id]`` only grows."""

import threading
import time

history = {}          # user id (an int) -> [event, ...]

_lock = threading.Lock()


def record(user_id, kind):
    """Append one event to the user's history (the leak: nothing trims it)."""
    event = {"kind": kind, "ts": time.time()}
    with _lock:
        history.setdefault(user_id, []).append(event)


def events():
    with _lock:
        return sum(len(v) for v in history.values())
