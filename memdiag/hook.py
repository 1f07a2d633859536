"""The in-target hook: stdlib only, nothing happens on import.

    >>> import memdiag
    >>> memdiag.install()                       # doctest: +SKIP
    >>> # kill -USR2 <pid>  ->  /tmp/memdiag-1000/memdiag-<pid>-1.snap

`install()` puts a handler on SIGUSR2 (or another signal). The handler
captures every thread's stack, forks, and returns; the forked child walks the
heap (which the fork froze) and writes the snapshot, so the target pauses only
for the fork. Where fork is unavailable or refused, the walk runs in-process.

Promises to the target:
- no exception from the hook reaches it (failures are one line on stderr);
- a signal that arrives while a snapshot is being taken is coalesced into it;
- the hook takes no lock the target might hold, and calls no method of the
  target's objects (no __getattr__, __eq__, __hash__ or __sizeof__); the
  fork runs the handlers the program registered with os.register_at_fork,
  as any fork does;
- the hook starts threads in two cases only: with rss_limit or watchable,
  one daemon thread (hook_rss) that reads RSS every 1-10 s (rss_limit)
  and otherwise sleeps until `memdiag watch` asks for counters; and for an
  in-process (inline) walk, the compiled walker's native compression
  threads, which block every signal, touch no Python object, and are
  joined before the walk returns;
- a signal the hook sends the process is the hook's own signal (the RSS
  watcher asking for a snapshot), or SIGTERM with exit_after_snapshot;
- files are created 0600 under a temporary name and appear only complete.

This module holds the API and the trigger policy: when a signal becomes a
snapshot, when it is coalesced, fork or in-process. The rest is in
hook_state (settings, state), hook_registry, hook_signal (the signal
guard), hook_rss (the RSS watcher), hook_capture (threads' stacks),
hook_walk (roots, ignore set, walkers), hook_publish (the file),
hook_fork and hook_inline (the two writers), and protocol (what the CLI
reads).
"""

from __future__ import annotations

import os
import signal as _signal
import sys
import time

from . import hook_fork, hook_inline, hook_limits, hook_rss, hook_signal, hook_walk, protocol
from .hook_capture import capture
from .hook_registry import forget_aside, register, unregister, write_status
from .hook_state import Request, Settings, one_line, report, state
from .protocol import HookError

__all__ = ["install", "uninstall", "dump", "is_installed", "describe", "snapshot_dir",
           "HookError"]


def snapshot_dir(dir=None):
    """Where snapshots go: the argument, else $MEMDIAG_DIR, else /tmp/memdiag-<uid>.

    >>> snapshot_dir("/srv/snaps")
    '/srv/snaps'
    """
    return protocol.snapshot_dir(dir)


def is_installed():
    """Whether the hook's handler is on its signal in this process now."""
    return state.installed


def describe():
    """What the hook does in this process (memdiag attach reports it).

    >>> d = describe()
    >>> d["installed"], d["walker"] in ("c", "python")
    (False, True)
    """
    s = state.settings
    return {"installed": state.installed, "signal": s.signum if s else None,
            "dir": s.directory if s else None, "registry": state.registry_path,
            "walker": "c" if hook_walk.compiled() else "python",
            "compiled_walker": hook_walk.cwalker is not None,
            "walker_error": hook_walk.cwalker_error,
            "walker_reason": hook_walk.pure_reason(), "walker_path": hook_walk.cwalker_path}


def install(dir=None, signal="USR2", trace_frames=0, strings=False, mode="auto",
            guard_signal=True, rss_limit=None, rss_step=None, max_snapshots=5,
            exit_after_snapshot=False, watchable=False):
    """Install the snapshot handler in this process.

    dir: where snapshots go (default $MEMDIAG_DIR, else /tmp/memdiag-<uid>).
    signal: "USR2", "SIGUSR2" or a number.
    trace_frames: if > 0, start tracemalloc with that many frames, so each
        object carries its allocation site.
    strings: write the contents of str objects (off: only their lengths).
    mode: "auto" (fork when possible), "fork" or "inline".
    guard_signal: keep the handler when the program later resets the signal to
        its default (gunicorn workers do); a program that installs its own
        handler for it still wins, and the hook steps aside (its registry
        entry goes; <pid>.aside says why).
    rss_limit: bytes, a size like "1.5G", or a percentage of the process's
        memory limit like "80%" (hook_limits: cgroup v2, cgroup v1, physical
        memory): take a snapshot when the process's RSS crosses it (the
        evidence, before a supervisor or the OOM killer ends the process). A
        daemon thread reads RSS every 1 to 10 s, more often as RSS nears
        the threshold (hook_rss); it only exists with this option or
        watchable. It re-arms when RSS falls below 80% of the threshold.
    rss_step: a size or percentage: after the threshold, one more snapshot
        each time RSS grows by this much.
    max_snapshots: automatic snapshots kept (the first, as the baseline,
        and the latest others; older ones are deleted).
    exit_after_snapshot: once an automatic snapshot is written, send this
        process SIGTERM, so it retires the way the program handles SIGTERM.
    watchable: run the hook's thread without rss_limit too, so that
        `memdiag watch` shows the Python heap counters (it sleeps until a
        watcher asks).

    Must be called from the main thread. Calling it again reconfigures.
    Returns the snapshot directory.

        >>> install(dir="/srv/snaps", rss_limit="80%", rss_step="100M")    # doctest: +SKIP
        '/srv/snaps'
    """
    settings = _settings(dir, signal, trace_frames, strings, mode, guard_signal, rss_limit,
                         rss_step, max_snapshots, exit_after_snapshot, watchable)
    hook_walk.prepare()
    protocol.make_private_dir(settings.directory)
    if state.installed and state.settings.signum != settings.signum:
        uninstall()
    state.settings = settings
    state.handler = _on_signal
    if settings.trace_frames > 0:
        import tracemalloc
        if not tracemalloc.is_tracing():
            tracemalloc.start(settings.trace_frames)
    prev = hook_signal.set_handler(settings.signum, _on_signal)
    if not state.installed:
        state.prev_handler = prev
        state.app_handler = prev
    state.installed = True
    state.taken_over = False
    if guard_signal:
        hook_signal.guard()
    if not state.fork_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        state.fork_registered = True
    register()
    hook_rss.start_watcher()     # after register(): its FIFO goes in the registry
    return settings.directory


def _settings(dir, signal, trace_frames, strings, mode, guard_signal, rss_limit, rss_step,
              max_snapshots, exit_after_snapshot, watchable):
    """install()'s arguments, checked (ValueError says which is wrong)."""
    if mode not in protocol.MODES:
        raise ValueError("mode must be 'auto', 'fork' or 'inline'")
    if (rss_step or exit_after_snapshot) and not rss_limit:
        raise ValueError("rss_step and exit_after_snapshot need rss_limit")
    if int(max_snapshots) < 1:
        raise ValueError("max_snapshots must be at least 1")
    least = _seconds("MEMDIAG_RSS_INTERVAL", 1.0)
    return Settings(directory=snapshot_dir(dir), signum=protocol.parse_signal(signal),
                    mode=mode, strings=bool(strings), trace_frames=int(trace_frames or 0),
                    guard_signal=bool(guard_signal),
                    rss_limit=hook_limits.parse_threshold(rss_limit) if rss_limit else None,
                    rss_step=hook_limits.parse_threshold(rss_step) if rss_step else None,
                    max_snapshots=int(max_snapshots),
                    exit_after_snapshot=bool(exit_after_snapshot), watchable=bool(watchable),
                    rss_interval=least,
                    rss_max_interval=max(least, _seconds("MEMDIAG_RSS_MAX_INTERVAL", 10.0)))


def _seconds(name, default):
    """A number of seconds from the environment (at least 0.05), else default."""
    try:
        return max(0.05, float(os.environ.get(name) or default))
    except ValueError:
        return default


def uninstall():
    """Remove the handler, restore what was there before, forget the registry."""
    if not state.installed:
        if state.taken_over:    # stepped aside: the program has the signal already
            forget_aside()
        return
    signum = state.settings.signum
    setter = state.orig_signal or _signal.signal
    hook_signal.unguard()
    hook_rss.stop_watcher()
    try:
        setter(signum, state.prev_handler if state.prev_handler is not None
               else _signal.SIG_DFL)
    except (ValueError, TypeError, OSError):
        pass
    unregister()
    state.installed = False


def dump(path=None, *, strings=None, mode=None):
    """Write a snapshot of this process now and return its path.

    The call returns when the file is complete. `path` defaults to the next
    `memdiag-<pid>-<seq>.snap` in the snapshot directory; an existing file
    is never overwritten (HookError). Works without install().

        >>> dump("/tmp/before.snap")    # doctest: +SKIP
        '/tmp/before.snap'
    """
    hook_walk.prepare()
    if state.settings is None:     # not installed: check the directory now
        protocol.make_private_dir(snapshot_dir())
    if state.busy:
        raise HookError("a snapshot is already being taken")
    state.busy = True
    try:
        state.seq += 1
        return _take(state.seq, wait=True, path=path, strings=strings, mode=mode)
    finally:
        state.busy = False


# ------------------------------------------------------------ trigger policy

def _on_signal(signum, frame):
    """The hook's signal handler: a snapshot, or a coalesced signal."""
    try:
        _snapshot_from_signal()
    except Exception as e:  # never let the hook's failure reach the target
        if hook_signal.raised_by_program_handler(e):
            raise  # the program's, not the hook's: losing it would lose its signal
        try:
            error = one_line(e)
            report("handler", f"snapshot failed: {error}")
            # `memdiag snapshot` is waiting: tell it now, not at its timeout.
            write_status(state.seq, protocol.FAILED, error=error)
        except Exception:
            pass


def _snapshot_from_signal():
    if state.busy:
        return  # a snapshot is being taken right now: coalesce
    hook_fork.reap()
    if state.children:
        # the previous snapshot's writer is still running: coalesce (the
        # status names it, so that the CLI knows whose exit to wait for)
        write_status(state.seq, protocol.COALESCED, writer=min(state.children))
        return
    # The RSS watcher asked (or a signal came while its request was pending).
    auto = state.auto_requested
    state.busy = True
    try:
        state.seq += 1
        path = _take(state.seq, wait=False, trigger="rss" if auto else "signal")
        if auto and path is not None:       # written in-process: complete now
            hook_rss.finished(path)
    finally:
        state.busy = False
        if auto:
            state.auto_requested = False    # taken, or failed and reported


def _take(seq, wait, path=None, strings=None, mode=None, trigger="dump"):
    """Capture the stacks, then write snapshot seq in a forked child or here.
    wait=False (the signal handler): return once the child is forked."""
    started = time.perf_counter()
    settings = state.settings      # None: dump() without install()
    if strings is None:
        strings = settings is not None and settings.strings
    at, rss = time.time(), protocol.rss_bytes()
    captured = capture()
    # Every object the snapshot could see is in its ignore set: `captured` and
    # `request` are passed to the walk; the rest here is atomic (untracked).
    request = Request(pid=os.getpid(), seq=seq, path=path, strings=bool(strings),
                      directory=settings.directory if settings else snapshot_dir(),
                      trace=_tracing(), rss=rss, time=at, started=started,
                      capture_seconds=time.perf_counter() - started, trigger=trigger,
                      limit=state.limit)
    if _choose_mode(mode or (settings.mode if settings else "auto")) == "fork":
        try:
            return hook_fork.take_forked(captured, request, wait)
        except OSError as e:
            if "fork" not in state.reported:   # once: the file's meta says "inline"
                report("fork", f"fork refused ({e.strerror}); walking in-process instead, "
                       f"which pauses the program for the walk (said once)")
    return hook_inline.take_inline(captured, request)


def _choose_mode(mode):
    if mode == "auto":
        return "fork" if hasattr(os, "fork") and sys.platform.startswith("linux") else "inline"
    return mode


def _tracing():
    tm = sys.modules.get("tracemalloc")
    return bool(tm and tm.is_tracing())


def _after_fork_in_child():
    """In a process the program forked (gunicorn, celery workers): a fresh
    hook state of its own, registered under its pid."""
    if state.in_snapshot_fork:
        return
    state.children = {}
    state.busy = False
    state.seq = 0
    hook_rss.forget_after_fork()   # threads do not survive a fork
    if state.installed:
        try:
            register()
            hook_rss.start_watcher()
        except Exception:
            pass
