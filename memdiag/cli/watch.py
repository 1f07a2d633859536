"""memdiag watch PID... | --children PID: the memory of running processes, live.

Every --interval seconds, for each process: RSS (/proc/<pid>/statm), its
growth per minute (the least-squares slope over the last minute), and
the last minutes as a sparkline; for a hooked process, the snapshots in its
directory and its memory limit; and, when its hook runs its thread
(--watchable or --snapshot-at-rss), pymalloc's blocks in use: the small
Python objects alive, which grow with a Python leak and stay flat when the
growth is native.

Nothing here stops or signals a process. The counters come from the hook's
own thread: each interval the watcher writes its interval on the process's
FIFO (protocol.wake_path), and while it does the thread writes a small JSON
file (protocol.live_path) once per interval; nobody watching, the thread
sleeps. Keys on a terminal: `s` snapshots every hooked process in view
(through `memdiag snapshot`'s checks), `d` diffs each one's last two
snapshots, `q` quits. Not on a terminal (or with --json): one JSON object
per interval on stdout, --count of them.

    >>> per_minute([(0.0, 100), (30.0, 130), (60.0, 160)], now=60.0)
    60.0
"""

from __future__ import annotations

import json
import os
import queue
import select
import stat
import sys
import threading
import time

from .. import protocol
from .errors import EXIT_TARGET, MemdiagError

WINDOW = 600.0        # seconds of history kept (the sparkline's span)
RATE_WINDOW = 60.0    # the growth per minute is the slope over this much
KEYS = "s snapshot now · d diff the last two snapshots · q quit"


def per_minute(points, now, window=RATE_WINDOW):
    """The least-squares slope of (time, value) points over the last window
    seconds, per minute; None with fewer than two points."""
    pts = [(t, v) for t, v in points if now - t <= window and v is not None]
    if len(pts) < 2:
        return None
    mean_t = sum(t for t, _ in pts) / len(pts)
    mean_v = sum(v for _, v in pts) / len(pts)
    var = sum((t - mean_t) ** 2 for t, _ in pts)
    if var <= 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in pts) / var * 60.0


class Sampler:
    """The processes in view and their recent history."""

    def __init__(self, pids, root, interval):
        self.pids = list(pids)
        self.root = root
        self.interval = interval
        self.history = {}          # pid -> [(monotonic, rss, blocks)]
        self.starts = {}           # pid -> start time: a reused pid is another process

    def targets(self):
        """The pids in view now: the ones given, or root and its descendants."""
        if self.root is None:
            return self.pids
        return [self.root, *protocol.descendants(self.root)]

    def prime(self, timeout=1.0):
        """Ask every watchable process for counters, and wait (up to timeout) for
        their first answer, so that the first sample has them."""
        asked = [pid for pid in self.targets() if self._ask(pid, self._uid(pid))]
        deadline = time.monotonic() + timeout
        while asked and time.monotonic() < deadline:
            asked = [pid for pid in asked if self._live(pid, self._uid(pid)) is None]
            time.sleep(0.02)

    def sample(self):
        """One row per process alive in view (dicts, see the README); None
        when none is left."""
        now = time.monotonic()
        rows = []
        for pid in self.targets():
            row = self._row(pid, now)
            if row is not None:
                rows.append(row)
        alive = {r["pid"] for r in rows}
        for pid in list(self.history):
            if pid not in alive:
                del self.history[pid]
        return rows or None

    def _uid(self, pid):
        try:
            return protocol.status_uid(protocol.proc_status(pid))
        except OSError:
            return None

    def _row(self, pid, now):
        try:
            status = protocol.proc_status(pid)
            st = protocol.proc_stat(pid)
        except (OSError, ValueError):
            return None
        rss = protocol.rss_bytes(pid)
        if rss is None or st.state in ("Z", "X"):
            return None
        if self.starts.get(pid) != st.start_time:
            self.starts[pid] = st.start_time
            self.history.pop(pid, None)
        uid = protocol.status_uid(status)
        argv = protocol.proc_cmdline(pid)
        row = {"pid": pid, "ppid": st.ppid,
               "command": " ".join(argv) if argv else status.get("Name", "?"),
               "rss": rss, "hooked": False, "watchable": False, "pymalloc_blocks": None,
               "traced_bytes": None, "memory_limit": None, "next_snapshot_at": None,
               "snapshots": [], "dir": None}
        entry = self._entry(pid, uid)
        if entry is not None:
            row["hooked"] = True
            row["dir"] = entry.get("dir")
            row["memory_limit"] = entry.get("memory_limit")
            row["watchable"] = entry.get("live") is True
            if row["dir"]:
                row["snapshots"] = [os.path.join(row["dir"], n)
                                    for n in protocol.snapshot_files(row["dir"], pid)]
            if row["watchable"] and self._ask(pid, uid):
                live = self._live(pid, uid)
                if live is not None:
                    for key in ("pymalloc_blocks", "traced_bytes", "next_snapshot_at"):
                        row[key] = live.get(key)
        hist = self.history.setdefault(pid, [])
        hist.append((now, rss, row["pymalloc_blocks"]))
        while hist and now - hist[0][0] > WINDOW:
            hist.pop(0)
        row["rss_per_min"] = per_minute([(t, r) for t, r, _ in hist], now)
        row["pymalloc_blocks_per_min"] = per_minute([(t, b) for t, _, b in hist], now)
        row["rss_history"] = [r for _, r, _ in hist]
        return row

    def _entry(self, pid, uid):
        """The hook's registry entry, or None (no hook, or one not to trust)."""
        if uid is None:
            return None
        try:
            return protocol.read_entry(pid, uid)
        except (protocol.RegistryError, OSError):
            return None

    def _ask(self, pid, uid):
        """Write the interval on the process's FIFO; False when nobody reads it."""
        if uid is None:
            return False
        path = protocol.wake_path(pid, uid)
        try:
            st = os.lstat(path)
            if not stat.S_ISFIFO(st.st_mode) or st.st_uid != uid:
                return False
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:             # ENXIO: no reader (the thread does not run)
            return False
        try:
            os.write(fd, f"{self.interval:g}\n".encode())
        except OSError:
            pass                    # full: it has a line to read already
        finally:
            os.close(fd)
        return True

    def _live(self, pid, uid):
        """The hook's counters if they are fresh, else None."""
        path = protocol.live_path(pid, uid)
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            return None
        live = protocol.read_status(path)
        if live is None or live.get("pid") != pid:
            return None
        t = live.get("time")
        if not isinstance(t, (int, float)) or time.time() - t > max(3 * self.interval, 3.0):
            return None
        return live


def json_row(row):
    return {k: v for k, v in row.items() if k != "rss_history"}


def run_json(sampler, interval, count):
    """One JSON object a line: {"time", "processes": [...]}."""
    sampler.prime()
    n = 0
    tick = time.monotonic()
    while True:
        rows = sampler.sample()
        if rows is None:
            _gone(sampler)
            return 0
        sys.stdout.write(json.dumps({"time": round(time.time(), 3),
                                     "processes": [json_row(r) for r in rows]}) + "\n")
        sys.stdout.flush()
        n += 1
        if count and n >= count:
            return 0
        tick = max(tick + interval, time.monotonic())
        time.sleep(max(0.0, tick - time.monotonic()))


def _gone(sampler):
    what = f"pid {sampler.root}" if sampler.root is not None else \
        ", ".join(f"pid {p}" for p in sampler.pids)
    sys.stderr.write(f"memdiag: {what} exited; nothing left to watch\n")


class Jobs:
    """The s and d keys' work, one at a time on a thread of its own, so the
    view keeps moving; what it has to say comes back through a queue."""

    def __init__(self):
        self.out = queue.Queue()
        self.thread = None

    def busy(self):
        return self.thread is not None and self.thread.is_alive()

    def start(self, fn, *args):
        if self.busy():
            self.out.put(("say", "busy: the last key's work is still running"))
            return
        self.thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self.thread.start()

    def _run(self, fn, *args):
        try:
            fn(self.out, *args)
        except Exception as e:         # shown in the view, never a traceback
            self.out.put(("say", f"error: {type(e).__name__}: {e}"))


def snapshot_all(out, rows, timeout):
    from .snapshot import take
    hooked = [r["pid"] for r in rows if r["hooked"]]
    if not hooked:
        out.put(("say", "no hooked process in view: nothing to snapshot"))
    for pid in hooked:
        out.put(("say", f"pid {pid}: taking a snapshot…"))
        try:
            path, waited = take(pid, None, timeout, say_walker=False)
            out.put(("say", f"pid {pid}: {path} ({waited:.1f}s)"))
        except MemdiagError as e:
            out.put(("say", f"pid {pid}: {e}"))


def diff_last_two(out, rows, top=5):
    from ..analysis.diff import diff as analyze_diff
    from ..analysis.retained import compiled as compiled_dominators
    from ..model import Snapshot, SnapshotError
    from ..render.blocks import Para
    from ..render.diff import diff_blocks
    pairs = [(r["pid"], r["snapshots"][-2:]) for r in rows if len(r["snapshots"]) >= 2]
    if not pairs:
        out.put(("say", "no process in view has two snapshots yet (press s, later s again)"))
    for pid, (a, b) in pairs:
        out.put(("say", f"pid {pid}: diffing {os.path.basename(a)} {os.path.basename(b)}…"))
        try:
            snaps = [Snapshot.load(a), Snapshot.load(b)]
        except SnapshotError as e:
            out.put(("say", f"pid {pid}: {e}"))
            continue
        result = analyze_diff(snaps, top_suspects=top, retained=compiled_dominators())
        out.put(("blocks", [Para(f"memdiag diff {a} {b}", "bold"), *diff_blocks(result, top)]))


class Keys:
    """Single keys from a terminal on stdin (cbreak mode: no Enter needed,
    Ctrl-C still interrupts); restores the terminal on exit."""

    def __init__(self):
        self.fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
        self.saved = None

    def __enter__(self):
        if self.fd is not None:
            import termios
            import tty
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout):
        """The keys pressed within timeout seconds ("" if none), each once:
        several can arrive in one read (keys typed fast, or behind a reply
        the terminal sent), and every one counts."""
        if self.fd is None:
            time.sleep(timeout)
            return ""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return ""
        data = os.read(self.fd, 64)
        if not data:
            return "q"                  # end of input: as if q
        return "".join(dict.fromkeys(data.decode("ascii", "replace").lower()))


def run_live(sampler, interval, count, timeout):
    """The live view on a terminal."""
    from rich.console import Console
    from rich.live import Live

    from ..render.blocks import print_rich
    from ..render.watch import table
    from .common import color_wanted
    console = Console(no_color=not color_wanted())
    jobs = Jobs()
    messages = []
    rows = []
    sampler.prime()
    with Keys() as keys, Live(console=console, auto_refresh=False,
                              redirect_stdout=False, redirect_stderr=False) as live:
        n = 0
        tick = time.monotonic()
        while True:
            if time.monotonic() >= tick:
                rows = sampler.sample()
                if rows is None:
                    break
                n += 1
                tick = max(tick + interval, time.monotonic())
            while not jobs.out.empty():
                kind, item = jobs.out.get()
                if kind == "blocks":
                    print_rich(item, console=live.console, color=color_wanted())
                else:
                    messages = (messages + [item])[-4:]
            help_line = KEYS if keys.fd is not None else "q: not available (stdin is not a terminal); Ctrl-C quits"
            if jobs.busy():
                help_line += "   (working…)"
            title = (f"memdiag watch: {len(rows)} process{'es' if len(rows) != 1 else ''}, "
                     f"every {interval:g}s, {time.strftime('%H:%M:%S')}")
            live.update(table(rows, title, messages, help_line), refresh=True)
            if count and n >= count and not jobs.busy():
                return 0
            pressed = keys.read(max(0.0, min(tick - time.monotonic(), 0.25)))
            if "q" in pressed:
                return 0
            if "s" in pressed:
                jobs.start(snapshot_all, rows, timeout)
            elif "d" in pressed:
                jobs.start(diff_last_two, rows)
    _gone(sampler)
    return 0


def command(pids, children=None, interval=2.0, count=0, as_json=False, timeout=60.0):
    if bool(pids) == (children is not None):
        raise MemdiagError("give one or more PIDs, or --children PID (e.g. memdiag watch "
                           "--children <gunicorn master pid>)", 2)
    for pid in ([children] if children is not None else pids):
        if pid <= 0 or not os.path.exists(f"/proc/{pid}"):
            raise MemdiagError(f"no process with pid {pid}", EXIT_TARGET)
    sampler = Sampler(pids, children, interval)
    if as_json or not sys.stdout.isatty():
        return run_json(sampler, interval, count)
    return run_live(sampler, interval, count, timeout)
