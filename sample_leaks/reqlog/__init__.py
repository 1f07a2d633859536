"""reqlog -- request capture for debugging, kept in memory.

``reqlog.capture.buffer`` is an ``io.BytesIO`` that every request writes a
record into. It was meant to be drained by a debug endpoint nobody calls,
so it only grows: in bytes, not in elements.
"""

from . import capture

__all__ = ["capture"]
