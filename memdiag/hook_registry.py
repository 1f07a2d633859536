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

from . import hook_limits, hook_walk, protocol
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
        **_limits_fields(settings),
    }
    state.registry_path = protocol.write_entry(entry)
    state.pid = pid
    forget_aside()      # if the hook had stepped aside, it has its signal back
    return state.registry_path


def _limits_fields(settings):
    """The memory limit (value, source, file), what the RSS watcher does, and
    whether `memdiag watch` can read heap counters (the hook's thread runs)."""
    limit = state.limit or hook_limits.memory_limit()
    rss = None
    if settings.rss_limit:
        rss = {"at": _threshold(settings.rss_limit), "every": _threshold(settings.rss_step),
               "max_snapshots": settings.max_snapshots,
               "exit_after_snapshot": settings.exit_after_snapshot,
               "snapshots": list(state.auto_paths)}
    return {"memory_limit": hook_limits.as_dict(limit), "rss_trigger": rss,
            "live": bool(settings.rss_limit or settings.watchable)}


def _threshold(threshold):
    """A parse_threshold() value as the entry holds it: {"bytes": N} or {"percent": P}."""
    if threshold is None:
        return None
    size, fraction = threshold
    return {"bytes": size} if fraction is None else {"percent": round(fraction * 100, 3)}


def unregister():
    """Remove the entry, if this process wrote it (not one inherited by fork)."""
    path = state.registry_path
    state.registry_path = None
    if path and state.pid == os.getpid():
        protocol.remove_entry(path)


def step_aside():
    """The program took the hook's signal: the entry goes, and <pid>.aside
    says so, so that `memdiag snapshot --children` waits for this process's
    forks, which register when they reset the signal (gunicorn's workers)."""
    unregister()
    try:
        protocol.write_aside(os.getpid(), state.settings.signum)
    except Exception:
        pass


def forget_aside():
    """Remove what step_aside() wrote for this process, if anything."""
    protocol.remove_entry(protocol.aside_path(os.getpid()))


def write_status(seq, status, **fields):
    """Tell `memdiag snapshot` how snapshot seq is going (protocol's states)."""
    if state.pid:
        protocol.write_status(state.pid, seq, status, **fields)
