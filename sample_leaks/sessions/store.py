"""Sessions, indexed weakly by id and kept strongly by the audit list."""

import threading
import weakref

by_id = weakref.WeakValueDictionary()   # id -> Session, does not keep them alive
opened = []                             # every Session ever opened: the leak
MAX_OPENED = 500_000                    # safety cap (about 250 MiB): then not kept

_lock = threading.Lock()


class Session:
    def __init__(self, session_id, user):
        self.id = session_id
        self.user = user
        self.scratch = bytearray(256)     # per-session working space


def open_session(session_id, user):
    s = Session(session_id, user)
    with _lock:
        by_id[session_id] = s
        if len(opened) < MAX_OPENED:
            opened.append(s)              # BUG: audit keeps every session forever
    return s


def counts():
    with _lock:
        return len(by_id), len(opened)
