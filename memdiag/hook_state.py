"""The hook's settings, its one mutable state, and its stderr lines.

Settings hold what install() was asked for, checked; a Request is one
snapshot, fixed before any fork. Both are frozen. State is the one object
of the hook's that changes: the walk ignores it and everything it holds,
so none of it shows in a snapshot.

    >>> s = Settings(directory="/tmp/snaps", signum=12, rss_limit=(None, 0.8))
    >>> s.mode, s.strings, s.rss_limit, s.max_snapshots
    ('auto', False, (None, 0.8), 5)
"""

from __future__ import annotations

import os

HOOK_VERSION = "0.1.0"


class Frozen:
    """A record whose fields are set once, by keyword, in __init__: Settings and
    Request. Written out instead of a frozen dataclass, because `dataclasses`
    imports inspect, ast, dis and tokenize: about 20 modules and 5,000 objects
    added to a target that had none of them.

    >>> r = Settings(directory="/tmp/snaps")
    >>> r.directory = "/elsewhere"
    Traceback (most recent call last):
    ...
    AttributeError: Settings is frozen
    """

    __slots__ = ()
    DEFAULTS = {}

    def __init__(self, **fields):
        for name in self.__slots__:
            if name in fields:
                value = fields.pop(name)
            elif name in self.DEFAULTS:
                value = self.DEFAULTS[name]
            else:
                raise TypeError(f"{type(self).__name__}: {name} is required")
            object.__setattr__(self, name, value)
        if fields:
            raise TypeError(f"{type(self).__name__}: unknown field {sorted(fields)[0]}")

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} is frozen")


class Settings(Frozen):
    """What install() was asked for, checked (see hook.install).

    directory     where snapshots go
    signum        the signal that asks for one; None: dump() only
    mode          one of protocol.MODES
    strings       write the contents of str objects
    trace_frames  tracemalloc frames per allocation site (0: off)
    guard_signal  keep the handler when the program resets the signal
    rss_limit     a snapshot when RSS crosses it: hook_limits.parse_threshold's
                  (bytes, None) or (None, fraction of the memory limit); None: off
    rss_step      the same form: one more snapshot at each further growth of it
    max_snapshots automatic snapshots kept: the first, and the latest others
    exit_after_snapshot  SIGTERM to this process once an automatic snapshot is written
    watchable     run the hook's thread (hook_rss) even without rss_limit, so
                  `memdiag watch` can read the Python heap counters
    rss_interval  the shortest time between two RSS readings (seconds)
    rss_max_interval  the longest (memory far from the next threshold)
    """

    __slots__ = ("directory", "signum", "mode", "strings", "trace_frames", "guard_signal",
                 "rss_limit", "rss_step", "max_snapshots", "exit_after_snapshot", "watchable",
                 "rss_interval", "rss_max_interval")
    DEFAULTS = {"signum": None, "mode": "auto", "strings": False, "trace_frames": 0,
                "guard_signal": True, "rss_limit": None, "rss_step": None, "max_snapshots": 5,
                "exit_after_snapshot": False, "watchable": False, "rss_interval": 1.0,
                "rss_max_interval": 10.0}


class Request(Frozen):
    """One snapshot, as the signal handler (or dump()) fixed it before any fork.

    pid              the target process
    seq              its number in that process: memdiag-<pid>-<seq>.snap
    directory        where it goes
    path             dump(path): exactly this file, never overwritten
    strings          write the contents of str objects
    trace            tracemalloc traces: record allocation sites
    rss              the target's RSS when the snapshot started
    time             time.time() then
    started          time.perf_counter() then
    capture_seconds  how long capturing the threads' stacks took
    trigger          "signal", "rss" (the RSS watcher's) or "dump"
    limit            the memory limit the RSS watcher read last (a hook_limits.Limit),
                     None when it did not read one
    """

    __slots__ = ("pid", "seq", "directory", "path", "strings", "trace", "rss", "time",
                 "started", "capture_seconds", "trigger", "limit")
    DEFAULTS = {"trigger": "signal", "limit": None}


class State:
    """Everything of the hook's that changes; there is one, `state`."""

    __slots__ = ("settings", "installed", "handler", "seq", "pid", "registry_path",
                 "children", "busy", "reported", "prev_handler", "app_handler",
                 "orig_signal", "taken_over", "fork_registered", "in_snapshot_fork",
                 "watcher", "wake_fd", "wake_lock", "wakeups", "limit", "auto_requested",
                 "auto_writer", "auto_paths", "retiring", "loop")

    def __init__(self):
        self.settings = None        # Settings of the last install(); None before
        self.installed = False      # the hook's handler is on the signal, and registered
        self.handler = None         # that handler (hook's signal handler function)
        self.seq = 0                # the last snapshot's number in this process
        self.pid = None             # the pid registered (a forked worker has its own)
        self.registry_path = None   # this process's registry entry
        self.children = {}          # pid -> seq of snapshot writers still running
        self.busy = False           # a snapshot is being taken in this process now
        self.reported = set()       # kinds of failure already said on stderr
        self.prev_handler = None    # the handler before install(); uninstall() restores it
        self.app_handler = None     # the handler the program believes it set
        self.orig_signal = None     # signal.signal before the guard wrapped it
        self.taken_over = False     # the program set a handler of its own: it won
        self.fork_registered = False
        self.in_snapshot_fork = False   # set around the fork of a snapshot writer
        self.watcher = None         # the hook's thread (hook_rss: rss_limit or watchable)
        self.wake_fd = None         # its FIFO (protocol.wake_path), open read-write
        self.wake_lock = None       # held to write to or close wake_fd
        self.wakeups = 0            # how often the thread woke up (bench, tests)
        self.limit = None           # the memory limit it read last (hook_limits.Limit)
        self.auto_requested = False # it sent the signal for an automatic snapshot
        self.auto_writer = None     # (pid, fd) of that snapshot's forked writer: its path
        self.auto_paths = []        # the automatic snapshots written and kept, oldest first
        self.retiring = False       # --exit-after-snapshot sent SIGTERM
        self.loop = None            # the thread's own values (hook_rss.Loop): here, so
                                    # that the walk ignores them as the hook's


state = State()


def say(line):
    """One line on stderr (fd 2: no Python file object, no lock of sys.stderr)."""
    try:
        os.write(2, (line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def report(kind, message):
    """Say a failure on stderr and remember its kind."""
    say(f"memdiag: {message}")
    state.reported.add(kind)


def one_line(e):
    """An exception as one line for a human.

    >>> one_line(FileNotFoundError(2, "No such file or directory", "/x"))
    'No such file or directory (/x)'
    """
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        return f"{e.strerror}{where}"
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
