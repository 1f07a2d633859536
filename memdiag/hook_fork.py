"""The fork writer: a forked child walks the heap the fork froze and writes
the snapshot, so the target pauses only for the fork.

The protocol between the two:

- parent -> child, a pipe: {"pause": seconds} as JSON, written right after
  the fork (how long the target paused: capture and fork; recorded in the
  snapshot's metadata);
- child -> parent, a pipe: the final path, or NUL and a one-line error
  (read by dump(), which waits, and for an automatic snapshot by the RSS
  watcher's thread, which learns there that the file is complete; the
  signal handler does not read it);
- the child writes the WRITING status with its pid first, so `memdiag
  snapshot` sees it if it is killed, then WRITTEN or FAILED;
- the child closes the target's files and sockets, ignores or defaults its
  signals, runs at nice 10, and ends with os._exit, never returning into
  the program;
- the parent reaps the child later (reap(), at the next signal); a child
  killed by a signal is reported then, since it could not say so itself.

    >>> take_forked(captured, request, wait=True)    # doctest: +SKIP
    '/tmp/memdiag-1000/memdiag-4242-1.snap'

(skipped: it forks the process running the example). How a writer ended,
as the parent reports it:

    >>> describe_status(9), describe_status(1 << 8)
    ('killed by signal 9', 'exit status 1')
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import time

from . import hook_publish, hook_rss, protocol
from .hook_capture import release
from .hook_registry import write_status
from .hook_signal import quiet_snapshot_child
from .hook_state import one_line, report, state
from .protocol import HookError


# 3.12+ warns (DeprecationWarning) about fork() in a process with threads; the
# snapshot child runs no thread of the program's and never returns into it.
# The filter matches that warning from this module only.
_QUIET_FORK = ("ignore", None, DeprecationWarning, re.compile(re.escape(__name__) + r"\Z"), 0)


def _fork_quietly():
    """os.fork() without 3.12+'s warning about threads, through a filter that
    is in warnings.filters for this call only. Not warnings.catch_warnings():
    it bumps the filters' version, which empties every module's
    __warningregistry__, so the program would show warnings it had shown
    already. A program run with -W error would otherwise get the warning as
    an exception in the parent after the child was forked."""
    warnings = sys.modules.get("warnings")
    filters = getattr(warnings, "filters", None)
    if type(filters) is not list:
        return os.fork()
    filters.insert(0, _QUIET_FORK)
    try:
        return os.fork()
    finally:
        try:
            filters.remove(_QUIET_FORK)
        except ValueError:
            pass


def take_forked(capture, request, wait):
    """Fork a writer for request. wait: return its path when the file is
    complete (dump()); else return None at once, the child reaped later."""
    pause_r, pause_w = os.pipe()
    back_r, back_w = os.pipe()
    state.in_snapshot_fork = True
    try:
        pid = _fork_quietly()
    except BaseException:
        state.in_snapshot_fork = False
        for fd in (pause_r, pause_w, back_r, back_w):
            os.close(fd)
        raise
    if pid == 0:
        os.close(pause_w)
        os.close(back_r)
        _child(capture, request, pause_r, back_w)   # never returns
    state.in_snapshot_fork = False
    os.close(pause_r)
    os.close(back_w)
    pause = time.perf_counter() - request.started
    try:
        os.write(pause_w, json.dumps({"pause": pause}).encode())
    except OSError:
        pass
    os.close(pause_w)
    release(capture)
    if not wait:
        state.children[pid] = request.seq
        if request.trigger == "rss":
            # The RSS watcher waits for this writer's path (exit_after_snapshot,
            # max_snapshots): the pipe is its now.
            os.set_blocking(back_r, False)
            hook_rss.writer_started(pid, back_r)
        else:
            os.close(back_r)
        return None
    chunks = []
    try:
        while True:
            data = os.read(back_r, 65536)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(back_r)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and data[:1] not in (b"", b"\0"):
        return data.decode("utf-8", "surrogateescape")
    if data[:1] == b"\0":
        raise HookError(data[1:].decode("utf-8", "replace"))
    raise HookError(f"snapshot child failed ({describe_status(status)}); see stderr")


def _child(capture, request, pause_r, back_w):
    code = 1
    try:
        close_inherited_fds(keep=(pause_r, back_w))
        gc.disable()
        quiet_snapshot_child(state.settings.signum if state.settings else None)
        try:
            os.nice(10)
        except OSError:
            pass
        # `memdiag snapshot` watches this pid, in case the writer is killed.
        write_status(request.seq, protocol.WRITING, writer=os.getpid())
        final = hook_publish.write_snapshot(capture, request, "fork", may_materialize=True,
                                            pause_fd=pause_r)
        try:
            os.write(back_w, final.encode("utf-8", "surrogateescape"))
        except OSError:
            pass
        code = 0
    except BaseException as e:
        try:
            error = one_line(e)
            report("write", f"snapshot {request.seq} failed: {error}")
            write_status(request.seq, protocol.FAILED, error=error)
            # dump() waits on this pipe: give it the reason (no path starts with NUL)
            os.write(back_w, b"\0" + error.encode("utf-8", "replace"))
        except BaseException:
            pass
    finally:
        os._exit(code)


def reap():
    """Collect the writers that ended; report one killed by a signal."""
    for pid in list(state.children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0      # someone else reaped it
        except OSError:
            continue
        if done:
            seq = state.children.pop(pid, None)
            if os.WIFSIGNALED(status):  # it could not say so itself (the OOM killer?)
                report("writer", f"snapshot {seq} was not written: its writer (pid {pid}) "
                       f"was {describe_status(status)}")


def describe_status(status):
    """A wait status in words: "killed by signal 9", "exit status 1"."""
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def close_inherited_fds(keep):
    """Close the target's files and sockets in the snapshot child (0-2 and
    `keep` stay): a copy held here would keep a connection or pipe that the
    target closes open for its peer until the snapshot is written."""
    keep = set(keep) | {0, 1, 2}
    try:
        # The fds that are open, not every number up to the limit: without
        # close_range(2) closerange() tries each one, and a container's
        # nofile limit can be 2^30.
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except (OSError, ValueError):
        try:
            top = min(os.sysconf("SC_OPEN_MAX"), 1 << 16)
        except (ValueError, OSError):
            top = 1 << 16
        fds = range(3, max(top, 256))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass       # the listing's own fd, gone already
