"""The RSS watcher: with install(rss_limit=...), a daemon thread reads the
process's RSS every rss_interval seconds and, when it crosses the limit,
sends the process the hook's own signal once, so the main thread takes the
snapshot exactly as for `kill -USR2`. It re-arms when RSS falls below 80%
of the limit. It is the hook's only Python thread, and exists only with
rss_limit; it imports threading when it starts.

    >>> start_watcher()           # no install(rss_limit=...) here: no thread starts
    >>> state.watcher is None
    True
"""

from __future__ import annotations

import os
import time

from . import protocol
from .hook_state import say, state

REARM_BELOW = 0.8


def start_watcher():
    """Start the watcher if rss_limit asks for one and it does not run."""
    settings = state.settings
    if settings is None or not settings.rss_limit:
        return
    if state.watcher is not None and state.watcher.is_alive():
        return
    import threading
    t = threading.Thread(target=_watch, name="memdiag-rss-watch", daemon=True)
    state.watcher = t
    t.start()


def _watch():
    import threading
    armed = True
    me = threading.get_ident()
    # Runs until rss_limit is turned off or another watcher replaced this one
    # (install() again, or a fork: threads do not survive it).
    while state.watcher is not None and state.watcher.ident == me:
        settings = state.settings
        if settings is None or not settings.rss_limit:
            break
        try:
            rss = protocol.rss_bytes()
            limit = settings.rss_limit
            if rss is not None:
                if armed and rss >= limit and state.installed and not state.taken_over:
                    armed = False
                    say(f"memdiag: RSS {rss >> 20} MiB crossed {limit >> 20} MiB in pid "
                        f"{os.getpid()}; taking a snapshot")
                    os.kill(os.getpid(), settings.signum)
                elif not armed and rss < REARM_BELOW * limit:
                    armed = True
        except Exception:
            pass
        time.sleep(settings.rss_interval)
