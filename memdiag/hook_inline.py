"""The in-process writer: where fork is unavailable, refused, or not wanted
(mode="inline"), the walk runs in the target, and the whole walk is the pause.

For that time the hook's signal is ignored (coalesced into this snapshot),
the collector is off (a collection would run finalizers and free objects as
they are read), and the interpreter switches threads as rarely as it can
(sys.setswitchinterval), so the program's other threads change the heap
little while it is read; the compiled walker holds the GIL for its whole
walk. It compresses the file's chunks on native threads it starts for the
walk and joins before it returns.

    >>> import os, time
    >>> from memdiag.hook_capture import capture
    >>> from memdiag.hook_state import Request
    >>> request = Request(pid=os.getpid(), seq=1, directory=os.getcwd(), path=None,
    ...                   strings=False, trace=False, rss=None, time=time.time(),
    ...                   started=time.perf_counter(), capture_seconds=0.0)
    >>> path = take_inline(capture(), request)     # a snapshot of this process, now
    >>> os.path.basename(path) == f"memdiag-{os.getpid()}-1.snap", oct(os.stat(path).st_mode & 0o777)
    (True, '0o600')
"""

from __future__ import annotations

import gc
import sys

from . import hook_publish
from .hook_capture import release
from .hook_signal import ignore_for_walk, restore
from .hook_state import state


def take_inline(capture, request):
    """Walk and write the snapshot now, in this process; returns its path."""
    signum = state.settings.signum if state.settings is not None else None
    saved = ignore_for_walk(signum)
    was_enabled = gc.isenabled()
    gc.disable()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        return hook_publish.write_snapshot(capture, request, "inline", may_materialize=False)
    finally:
        sys.setswitchinterval(interval)
        if was_enabled:
            gc.enable()
        restore(saved)
        release(capture)
