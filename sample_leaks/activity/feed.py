"""Per-user event history. ``history[user_id]`` only grows."""

import threading
import time

history = {}          # user id (an int) -> [event, ...]
MAX_EVENTS = 1_000_000   # safety cap (about 200 MiB): then nothing more is kept
_events = 0

_lock = threading.Lock()


def record(user_id, kind):
    """Append one event to the user's history (the leak: nothing trims it)."""
    global _events
    event = {"kind": kind, "ts": time.time()}
    with _lock:
        if _events >= MAX_EVENTS:
            return
        _events += 1
        history.setdefault(user_id, []).append(event)


def events():
    with _lock:
        return sum(len(v) for v in history.values())
