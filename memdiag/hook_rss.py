"""The hook's thread: the RSS watcher, and the answer to `memdiag watch`.

It runs only with install(rss_limit=...) or install(watchable=True), as one
daemon thread, and it imports threading when it starts.

**The RSS watcher.** The thread reads the process's RSS (/proc/self/statm,
about 20 us) and, when it crosses the threshold (a size, or a fraction of
the memory limit: hook_limits), sends the process the hook's own signal, so
the main thread takes the snapshot exactly as for `kill -USR2`:

- with rss_step, one more snapshot each time RSS grows by rss_step past the
  RSS of the last one; without, one; either way the watcher re-arms when
  RSS falls below 80% of the threshold;
- at most max_snapshots automatic snapshots are kept: the first (the
  baseline for `memdiag diff`) and the latest others. Before it asks for
  one more, the watcher deletes the oldest of the others, by the exact
  name its writer reported, in the hook's snapshot directory;
- with exit_after_snapshot, once the snapshot is complete (the forked
  writer published the file and exited) it sends the process SIGTERM, so
  the program shuts down its own way (a gunicorn worker finishes its
  request, and the arbiter starts another);
- it reads the memory limit when it starts and every LIMIT_REREAD seconds.

It sleeps as long as it safely can: half the time RSS would need to reach
the threshold at the faster of its recent growth and FAST_GROWTH, between
rss_interval (1 s) and rss_max_interval (10 s). While memory is flat and
far from the threshold it wakes every 10 s; near it, every second.

**memdiag watch.** The thread waits on a FIFO in the registry
(protocol.wake_path). A watcher writes its interval there (a line, in
seconds) and again each interval; while it does, and for three intervals
after, the thread writes protocol.live_path(pid): RSS and
sys.getallocatedblocks() (pymalloc blocks in use, about 0.15-0.3 ms on a
heap of 2M objects, holding the GIL), once per interval. Nobody watching,
nothing is written and the FIFO costs no wakeup.

    >>> start_watcher()           # no rss_limit, not watchable here: no thread starts
    >>> state.watcher is None
    True
    >>> next_interval(rss=100 << 20, target=1 << 30, growth=0, least=1.0, most=10.0)
    7.21875
    >>> next_interval(rss=1000 << 20, target=1 << 30, growth=0, least=1.0, most=10.0)
    1.0
"""

from __future__ import annotations

import json
import os
import select
import signal as _signal
import sys
import time

from . import hook_limits, protocol
from .hook_state import report, say, state

REARM_BELOW = 0.8
FAST_GROWTH = 64 << 20   # bytes/s: the growth planned for when RSS grew slower recently
POLL = 0.1               # seconds between looks while a request waits for the handler
RESEND_AFTER = 1.0       # a request the handler coalesced is sent again after this
LIVE_MIN, LIVE_MAX = 0.1, 60.0   # the interval a watcher may ask for


class Loop:
    """The thread's own values, held by `state` so the walk ignores them."""

    __slots__ = ("history", "base", "step", "last_rss", "requested_at", "buffer",
                 "watched_until", "live_interval", "live_next", "next_at", "limit_at")

    def __init__(self):
        self.history = []          # [(monotonic, rss)] of the last readings
        self.base = None           # the threshold in bytes (rss_limit, resolved)
        self.step = None           # rss_step in bytes
        self.last_rss = None       # RSS at the last automatic snapshot; None: armed
        self.requested_at = None   # when the pending request was sent
        self.buffer = b""          # what the automatic snapshot's writer said so far
        self.watched_until = 0.0   # a watcher asked for live counters until then
        self.live_interval = 1.0
        self.live_next = 0.0
        self.next_at = None        # the next threshold, bytes; None: none
        self.limit_at = None       # when the limit was read last (monotonic); None: now


def next_interval(rss, target, growth, least, most):
    """Seconds until the next reading: half the time RSS needs to reach
    target at the faster of `growth` (bytes/s) and FAST_GROWTH, within
    [least, most]; `most` when there is no target."""
    if target is None or rss is None:
        return most
    distance = target - rss
    if distance <= 0:
        return least
    return min(most, max(least, distance / max(growth, FAST_GROWTH) / 2))


def start_watcher():
    """Start the thread if the settings ask for it and it does not run."""
    settings = state.settings
    if settings is None or not (settings.rss_limit or settings.watchable):
        if state.watcher is not None:      # install() again, without them
            stop_watcher()
        return
    if state.watcher is not None and state.watcher.is_alive():
        # install() again: new thresholds, resolved against the limit now.
        if state.loop is not None:
            state.loop.limit_at = None
            state.loop.last_rss = None
        _wake()
        return
    import threading
    if state.wake_lock is None:
        state.wake_lock = threading.Lock()
    state.loop = Loop()
    t = threading.Thread(target=_run, name="memdiag-rss-watch", daemon=True)
    state.watcher = t
    t.start()


def stop_watcher():
    """Ask the thread to end (uninstall()); it removes its FIFO and live file."""
    state.watcher = None
    _wake()


def forget_after_fork():
    """In a forked child of the program: the parent's thread, its FIFO and
    its writer are the parent's. Close this copy of the fds, never write."""
    for fd in (state.wake_fd, state.auto_writer and state.auto_writer[1]):
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    state.wake_fd = state.auto_writer = state.loop = state.watcher = None
    state.wake_lock = None      # a lock held at the fork stays held in the child
    state.auto_requested = state.retiring = False
    state.auto_paths = []
    state.limit = None
    state.wakeups = 0


def _wake():
    """Wake the thread (an empty line on its FIFO). Never waits for the lock:
    the snapshot signal's handler calls this (writer_started) on the main
    thread, which may hold the lock already (install() again, uninstall());
    a wake-up skipped while the lock is held costs at most one interval of
    the thread's sleep, whose loop looks at the writer's pipe again."""
    lock = state.wake_lock
    if lock is None or state.wake_fd is None:
        return
    if not lock.acquire(blocking=False):
        return
    try:
        if state.wake_fd is not None:
            try:
                os.write(state.wake_fd, b"\n")
            except OSError:
                pass
    finally:
        lock.release()


def _current(me):
    """Whether this thread is still the one the settings ask for."""
    w, settings = state.watcher, state.settings
    return (w is not None and w.ident == me and settings is not None
            and bool(settings.rss_limit or settings.watchable))


def _run():
    import threading
    me = threading.get_ident()
    loop = state.loop
    try:
        fd = _open_wake()
    except OSError as e:
        fd = None
        report("watch", f"memdiag watch cannot reach pid {os.getpid()} "
                        f"({e.strerror}); it shows RSS only")
        if not state.settings.rss_limit:
            return
    try:
        while _current(me):
            state.wakeups += 1
            now = time.monotonic()
            settings = state.settings
            try:
                if settings.rss_limit and (loop.limit_at is None
                                           or now - loop.limit_at >= hook_limits.LIMIT_REREAD):
                    loop.limit_at = now
                    _read_limit(settings, loop)
                rss = protocol.rss_bytes()
                if rss is not None:
                    loop.history = (loop.history + [(now, rss)])[-4:]
                if settings.rss_limit and rss is not None:
                    _check(settings, loop, rss, now)
                if now < loop.watched_until and now >= loop.live_next:
                    loop.live_next = now + loop.live_interval
                    _write_live(rss, loop)
            except Exception as e:   # never let the thread die on one bad reading
                if "watch-loop" not in state.reported:
                    report("watch-loop", f"RSS watcher: {type(e).__name__}: {e} (said once)")
            _wait(settings, loop, _timeout(settings, loop, now))
    finally:
        _close_wake(fd, loop)


def _read_limit(settings, loop):
    """Read the memory limit again; the thresholds follow it."""
    limit = hook_limits.memory_limit()
    changed = limit != state.limit
    state.limit = limit
    known = limit.bytes > 0          # else a percentage means nothing
    loop.base = (hook_limits.threshold_bytes(settings.rss_limit, limit)
                 if known or settings.rss_limit[1] is None else None)
    loop.step = (hook_limits.threshold_bytes(settings.rss_step, limit)
                 if settings.rss_step and (known or settings.rss_step[1] is None) else None)
    if changed:
        _update_entry()


def _check(settings, loop, rss, now):
    """Ask for an automatic snapshot when RSS crossed the next threshold."""
    if loop.base is None:
        return
    if loop.last_rss is not None and rss < REARM_BELOW * loop.base:
        loop.last_rss = None                  # fell well below: armed again
    if loop.last_rss is None:
        loop.next_at = loop.base
    elif loop.step:
        loop.next_at = loop.last_rss + loop.step
    else:
        loop.next_at = None
    if state.auto_requested:
        # The handler has not taken it yet (the main thread is in C code, or
        # a snapshot was being written and the signal was coalesced into it).
        if state.auto_writer is None and now - loop.requested_at >= RESEND_AFTER \
                and not _writer_running():
            loop.requested_at = now
            os.kill(os.getpid(), settings.signum)
        return
    if state.auto_writer is not None or loop.next_at is None or rss < loop.next_at:
        return
    if not state.installed or state.taken_over or state.retiring:
        return
    limit = state.limit
    if loop.last_rss is not None:
        why = f" ({loop.step >> 20} MiB above the last automatic snapshot)"
    elif settings.rss_limit[1] and limit:
        why = (f" ({settings.rss_limit[1] * 100:g}% of the {limit.bytes >> 20} MiB "
               f"{limit.source} limit)")
    else:
        why = ""
    loop.last_rss = rss
    if not _make_room(settings):
        return
    say(f"memdiag: RSS {rss >> 20} MiB crossed {loop.next_at >> 20} MiB{why} in pid "
        f"{os.getpid()}; taking a snapshot")
    state.auto_requested = True
    loop.requested_at = now
    os.kill(os.getpid(), settings.signum)


def _make_room(settings):
    """Delete the oldest automatic snapshot but the first when max_snapshots
    are kept; False when there is no room (max_snapshots 1)."""
    paths = state.auto_paths
    if len(paths) < settings.max_snapshots:
        return True
    if settings.max_snapshots < 2:
        if "max-snapshots" not in state.reported:
            report("max-snapshots", f"{settings.max_snapshots} automatic snapshot kept; "
                                    f"no more are taken (said once)")
        return False
    oldest = paths.pop(1)
    if _is_own_snapshot(oldest, settings.directory):
        try:
            os.unlink(oldest)
        except OSError:
            pass
    return True


def _is_own_snapshot(path, directory):
    """Whether path is memdiag-<this pid>-<seq>.snap directly in directory."""
    parsed = protocol.parse_snapshot_name(os.path.basename(path))
    return (parsed is not None and parsed[0] == os.getpid()
            and os.path.dirname(path) == directory)


def _writer_running():
    """Whether a snapshot writer of this process still runs (not a zombie)."""
    for pid in list(state.children):
        try:
            if protocol.proc_stat(pid).state not in ("Z", "X"):
                return True
        except (OSError, ValueError):
            pass
    return False


def writer_started(pid, fd):
    """hook_fork: the automatic snapshot's writer is pid; it writes its path on
    fd and exits. The thread waits on fd."""
    state.auto_requested = False
    state.auto_writer = (pid, fd)
    if state.loop is not None:
        state.loop.buffer = b""
    _wake()


def finished(path):
    """An automatic snapshot is complete: keep its name, and with
    exit_after_snapshot retire the process (its own SIGTERM)."""
    state.auto_requested = False
    state.auto_paths.append(path)
    settings = state.settings
    _update_entry()
    if settings is not None and settings.exit_after_snapshot and not state.retiring:
        state.retiring = True
        default = ("; SIGTERM is at its default action here: the process ends now, "
                   "without its cleanup" if _signal.getsignal(_signal.SIGTERM)
                   in (_signal.SIG_DFL, None) else "")
        say(f"memdiag: {path} written; pid {os.getpid()} sends itself SIGTERM "
            f"(--exit-after-snapshot){default}")
        os.kill(os.getpid(), _signal.SIGTERM)


def _writer_said(loop):
    """Read what the automatic snapshot's writer wrote; at its end (EOF: it
    exited), its path when it published the file, and finish."""
    pid, fd = state.auto_writer
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if data:
        loop.buffer += data
        return
    os.close(fd)
    state.auto_writer = None
    status = 0
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            seq = state.children.pop(pid, None)
            if os.WIFSIGNALED(status):      # as hook_fork.reap says it
                report("writer", f"snapshot {seq} was not written: its writer (pid {pid}) "
                       f"was killed by signal {os.WTERMSIG(status)}")
    except ChildProcessError:
        state.children.pop(pid, None)
    said, loop.buffer = loop.buffer, b""
    if said[:1] not in (b"", b"\0"):
        finished(said.decode("utf-8", "surrogateescape"))


def _timeout(settings, loop, now):
    """How long the thread may sleep now; None: until woken."""
    waits = []
    if settings.rss_limit:
        growth = 0.0
        h = loop.history
        if len(h) >= 2:
            growth = max((b[1] - a[1]) / max(b[0] - a[0], 1e-3) for a, b in zip(h, h[1:]))
        rss = h[-1][1] if h else None
        waits.append(next_interval(rss, loop.next_at, growth, settings.rss_interval,
                                   settings.rss_max_interval))
    if state.auto_requested and state.auto_writer is None:
        waits.append(POLL)
    if now < loop.watched_until:
        waits.append(max(0.0, loop.live_next - now))
    return min(waits) if waits else None


def _wait(settings, loop, timeout):
    """Sleep up to timeout, or until the FIFO or the writer's pipe has news."""
    fds = [fd for fd in (state.wake_fd, state.auto_writer and state.auto_writer[1])
           if fd is not None]
    if not fds:
        time.sleep(settings.rss_max_interval if timeout is None else timeout)
        return
    try:
        ready, _, _ = select.select(fds, [], [], timeout)
    except (OSError, ValueError):
        time.sleep(POLL)
        return
    if state.auto_writer is not None and state.auto_writer[1] in ready:
        _writer_said(loop)
    if state.wake_fd is not None and state.wake_fd in ready:
        _watcher_said(loop)


def _watcher_said(loop):
    """A watcher wrote its interval on the FIFO: serve it for three intervals."""
    try:
        data = os.read(state.wake_fd, 4096)
    except OSError:
        return
    interval = None
    for line in data.split(b"\n"):
        try:
            interval = min(LIVE_MAX, max(LIVE_MIN, float(line)))
        except ValueError:
            continue            # a wake-up from the hook itself, or garbage
    if interval is not None:
        now = time.monotonic()
        if now >= loop.watched_until:
            loop.live_next = now
        loop.live_interval = interval
        loop.watched_until = now + 3 * interval + 1.0


def _write_live(rss, loop):
    """The counters a watcher reads (see the module doc)."""
    tracemalloc = sys.modules.get("tracemalloc")
    traced = (tracemalloc.get_traced_memory()[0]
              if tracemalloc is not None and tracemalloc.is_tracing() else None)
    live = {"pid": os.getpid(), "time": time.time(), "rss": rss,
            "pymalloc_blocks": sys.getallocatedblocks(), "traced_bytes": traced,
            "next_snapshot_at": loop.next_at, "limit": hook_limits.as_dict(state.limit),
            "auto_snapshots": list(state.auto_paths), "wakeups": state.wakeups}
    try:
        protocol.write_small(protocol.live_path(os.getpid()), json.dumps(live).encode())
    except OSError:
        pass


def _open_wake():
    """Create this process's FIFO and open it read-write (returns the fd):
    with the thread itself a writer, it never reads as closed (no busy
    wakeups when a watcher leaves), and the hook can wake the thread
    through it."""
    path = protocol.wake_path(os.getpid())
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    with state.wake_lock:
        state.wake_fd = fd
    return fd


def _close_wake(fd, loop):
    """The thread ends: close its FIFO, and remove its files unless a newer
    thread (install() again) has taken them over."""
    lock = state.wake_lock
    if lock is None or fd is None:
        return
    with lock:
        if state.wake_fd == fd:
            state.wake_fd = None
        try:
            os.close(fd)
        except OSError:
            pass
    if state.loop is loop:
        for path in (protocol.wake_path(os.getpid()), protocol.live_path(os.getpid())):
            protocol.remove_entry(path)


def _update_entry():
    """Rewrite the registry entry (the limit or the snapshots changed)."""
    from .hook_registry import register
    if state.installed and state.pid == os.getpid():
        try:
            register()
        except Exception:
            pass
