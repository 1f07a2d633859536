"""This process in the registry: the entry `memdiag snapshot` checks before
it signals, and the status it watches while a snapshot is written (the
format is protocol's).

    >>> register()                     # doctest: +SKIP
    '/tmp/memdiag-1000/hooks/4242.json'

(skipped: it registers the process running the example). The entry's place,
for uid 1000 with TMPDIR=/tmp:

    >>> protocol.entry_path(4242, 1000, "/tmp")
    '/tmp/memdiag-1000/hooks/4242.json'
"""

from __future__ import annotations

import os
import sys

from . import hook_walk, protocol
from .hook_state import HOOK_VERSION, state


def register():
    """Write this process's entry (after install(), and in a forked worker)."""
    pid = os.getpid()
    settings = state.settings
    entry = {
        "pid": pid, "start_time": protocol.proc_start_time(pid), "signal": settings.signum,
        "signal_name": protocol.signal_name(settings.signum), "dir": settings.directory,
        "python": sys.version.split()[0], "executable": sys.executable,
        "argv": protocol.command_line(settings.strings), "hook_version": HOOK_VERSION, "mode": settings.mode,
        "compiled_walker": hook_walk.cwalker is not None,
        "walker": "c" if hook_walk.compiled() else "python",
        "walker_reason": hook_walk.pure_reason(),
    }
    state.registry_path = protocol.write_entry(entry)
    state.pid = pid
    return state.registry_path


def unregister():
    """Remove the entry, if this process wrote it (not one inherited by fork)."""
    path = state.registry_path
    state.registry_path = None
    if path and state.pid == os.getpid():
        protocol.remove_entry(path)


def write_status(seq, status, **fields):
    """Tell `memdiag snapshot` how snapshot seq is going (protocol's states)."""
    if state.pid:
        protocol.write_status(state.pid, seq, status, **fields)
