"""Writing one snapshot file: walk into it, add the metadata, publish it whole.

The file is written under a hidden temp name (O_CREAT|O_EXCL|O_NOFOLLOW,
0600) that names the writer's pid, fsynced, then hard-linked to its final
name, which never overwrites a file, and the directory is fsynced: a
snapshot appears complete or not at all. A temp file whose writer died is
removed by the next snapshot of the same process.

    >>> import os, time
    >>> from memdiag.hook_capture import capture
    >>> from memdiag.hook_state import Request
    >>> request = Request(pid=os.getpid(), seq=1, directory=os.getcwd(), path=None,
    ...                   strings=False, trace=False, rss=None, time=time.time(),
    ...                   started=time.perf_counter(), capture_seconds=0.0)
    >>> meta = metadata(request, "inline", "c", python_heap=1 << 20, walk_seconds=0.25,
    ...                 pause_seconds=None)
    >>> meta["pid"] == os.getpid(), meta["mode"], meta["walk_seconds"], meta["pause_seconds"]
    (True, 'inline', 0.25, None)

write_snapshot(capture, request, "inline", may_materialize=False) writes the
file and returns its path (hook_inline's example runs it).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time

from . import hook_limits, hook_walk, protocol, snapfile
from .hook_registry import write_status
from .hook_state import HOOK_VERSION
from .protocol import HookError


class SnapFile:
    """A snapshot file being written; visible under its final name only once
    publish() returns."""

    def __init__(self, directory, pid, seq, path=None):
        self.directory = directory
        self.pid = pid
        self.seq = seq
        self.path = path            # dump(path): exactly this name
        self.tmp = os.path.join(directory, protocol.temp_name(pid, seq, os.getpid()))
        flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_NOFOLLOW", 0))
        self.fd = os.open(self.tmp, flags, 0o600)
        os.fchmod(self.fd, 0o600)

    def publish(self):
        """Link the complete file to its final name (the next free sequence
        number unless a path was given) and return that name."""
        os.fsync(self.fd)
        seq = self.seq
        for _ in range(1000):
            final = self.path or os.path.join(self.directory,
                                              protocol.snapshot_name(self.pid, seq))
            try:
                os.link(self.tmp, final, follow_symlinks=False)
                break
            except FileExistsError:
                if self.path:
                    raise HookError(f"{final} exists; will not overwrite it") from None
                seq += 1
        else:
            raise HookError("no free snapshot file name")
        os.unlink(self.tmp)
        self.tmp = None
        try:
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
        return final

    def discard(self):
        """Close the file, and remove it unless it was published."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        if self.tmp:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


def write_snapshot(capture, request, mode, may_materialize, pause_fd=None):
    """Walk the heap into a new snapshot file for `request` and publish it;
    returns its path. mode ("fork" or "inline") is recorded in the metadata;
    pause_fd is the pipe on which a fork writer's parent says how long it
    paused (hook_fork)."""
    directory = request.directory
    if request.path:
        directory = os.path.dirname(os.path.abspath(request.path))
    if not os.path.isdir(directory):
        protocol.make_private_dir(directory)
    clean_stale_temps(directory, request.pid)
    t_walk = time.perf_counter()
    snap = SnapFile(directory, request.pid, request.seq, request.path)
    f = None
    try:
        f = os.fdopen(snap.fd, "wb", buffering=1 << 20, closefd=False)
        writer = snapfile.Writer(f)
        result = hook_walk.walk(writer, capture, request.strings, request.trace,
                                may_materialize, extra_ignore=[request, snap, f, writer])
        trailer = dict(result["trailer"])
        trailer["meta"] = metadata(request, mode, result.get("walker", "python"),
                                   result["trailer"].get("python_heap"),
                                   time.perf_counter() - t_walk, _read_pause(pause_fd))
        writer.finish(trailer)
        f.flush()
        final = snap.publish()
    except OSError as e:
        _close_buffer(f)
        snap.discard()
        if e.errno == errno.ENOSPC:
            raise HookError(f"no space left on device writing to {directory}") from None
        if e.errno == errno.EFBIG:
            raise HookError(f"file size limit reached writing to {directory}") from None
        raise
    except BaseException:
        _close_buffer(f)
        snap.discard()
        raise
    snap.discard()
    # "writer": `memdiag snapshot` waits for it to exit before its next signal,
    # which would otherwise be coalesced into this finished snapshot.
    write_status(request.seq, protocol.WRITTEN, path=final, bytes=writer.bytes_written,
                 writer=os.getpid())
    return final


def metadata(request, mode, walker, python_heap, walk_seconds, pause_seconds):
    """The snapshot's "meta" (docs/FORMAT.md). No string contents by default:
    the command line keeps the interpreter, its options, the program and the
    names of the program's options, and writes every other argument as
    <arg len N> (protocol.redacted_command); in full with strings. The
    executable is the interpreter's path."""
    return {
        "pid": request.pid, "argv": protocol.command_line(request.strings),
        "executable": sys.executable,
        "python": sys.version.split()[0], "implementation": sys.implementation.name,
        "platform": sys.platform, "time": request.time, "seq": request.seq,
        "mode": mode, "walker": walker,
        "walker_reason": hook_walk.pure_reason() if walker == "python" else None,
        "rss": request.rss, "python_heap": python_heap,
        "walk_seconds": round(walk_seconds, 6),
        "capture_seconds": round(request.capture_seconds, 6),
        "pause_seconds": None if pause_seconds is None else round(pause_seconds, 6),
        "tracemalloc": request.trace, "strings": request.strings,
        "hook_version": HOOK_VERSION,
        # what asked for it ("signal", "rss", "dump"), and the memory limit
        "trigger": request.trigger,
        "memory_limit": hook_limits.as_dict(request.limit or hook_limits.memory_limit()),
    }


def _read_pause(fd):
    """The pause a fork writer's parent sent ({"pause": seconds}, written just
    after the fork, so read without waiting by now); closes fd."""
    if fd is None:
        return None
    try:
        data = os.read(fd, 4096)
        return json.loads(data).get("pause") if data else None
    except (OSError, ValueError, AttributeError):
        return None
    finally:
        os.close(fd)


def clean_stale_temps(directory, pid):
    """Remove the temp files of earlier snapshot writers of pid that died."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        parsed = protocol.parse_temp_name(name)
        if parsed is None or parsed[0] != pid:
            continue
        writer = parsed[2]
        if writer != os.getpid() and not protocol.pid_alive(writer):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _close_buffer(f):
    """Close the buffered file of a failed snapshot before its fd is closed. Left
    to the garbage collector, it would flush what it still holds into a closed
    fd (an "Exception ignored" traceback on the target's stderr) or into
    whatever file has reused that fd number by then. close() marks it closed
    even when its flush fails."""
    if f is not None:
        try:
            f.close()
        except (OSError, ValueError):
            pass
