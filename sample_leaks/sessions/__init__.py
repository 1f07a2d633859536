"""sessions -- a session store with a weak index and a strong audit trail.

``sessions.store.by_id`` is a ``WeakValueDictionary``: it finds a live
session by id and forgets it when the session goes away. ``sessions.store.
opened`` is a plain list that an audit feature appends every session to,
and never trims: it is what keeps every session alive. Both grow by one
per session; only one of them holds anything.
"""

from . import store

__all__ = ["store"]
