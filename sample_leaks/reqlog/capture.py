"""An in-memory request capture: ``buffer`` only grows."""

import io
import sys
import threading

buffer = io.BytesIO()
MAX_BYTES = 256 << 20      # safety cap: then records are dropped

_lock = threading.Lock()


def record(line, body):
    """Write one record (its line and body) into the buffer."""
    with _lock:
        if buffer.tell() >= MAX_BYTES:
            return
        buffer.write(line + b"\n")
        buffer.write(body)


def drain():
    """What a debug endpoint would do: hand the records over and start again."""
    global buffer
    with _lock:
        data, buffer = buffer.getvalue(), io.BytesIO()
    return data


def written():
    with _lock:
        return buffer.tell()


def allocated():
    """The buffer's own size as Python counts it (its allocation included)."""
    with _lock:
        return sys.getsizeof(buffer)
