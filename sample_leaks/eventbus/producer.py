"""Producer side of the event bus.  ``sent_events`` is the leaking list."""

import json
import threading
import uuid

# Ids of events this process sent, so that its own consumer can skip them.
# Only consume() removes entries; a producer-only process never calls it.
sent_events = []

_lock = threading.Lock()
_bytes_sent = 0


def _transport(payload):
    """Stand-in for the network: count the bytes, keep nothing."""
    global _bytes_sent
    with _lock:
        _bytes_sent += len(payload)


def send(event):
    """Serialize and "send" one event; return its id (a 32-char str)."""
    event_id = uuid.uuid4().hex
    payload = json.dumps({"id": event_id, **event}).encode("utf-8")
    _transport(payload)
    sent_events.append(event_id)  # trimmed only by consume()
    return event_id


def consume(event_id):
    """Handle an incoming event; return False if it was our own (skipped)."""
    try:
        sent_events.remove(event_id)
    except ValueError:
        return True  # someone else's event: would be processed here
    return False


def bytes_sent():
    return _bytes_sent
