"""Hooked processes of this user, and the descendants of a process: what
`memdiag ps` lists and `memdiag snapshot --children/--all` signals.

Everything comes from files that exist already: the hook's registry entry
(<tmp>/memdiag-<uid>/hooks/<pid>.json, checked as `memdiag snapshot` checks
it), /proc, and the metadata of the process's last snapshot file. Nothing
here asks the hook for anything.

    >>> procs = hooked_processes()                    # doctest: +SKIP
    >>> [(p.pid, p.ppid, p.snapshots) for p in procs]  # doctest: +SKIP
    [(4243, 4242, 2), (4244, 4242, 0)]

The command column is what ps(1) shows (/proc/<pid>/cmdline), cut short:

    >>> short_command(["/srv/venv/bin/gunicorn", "app:wsgi", "-w", "3"])
    'gunicorn app:wsgi -w 3'
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

from .. import protocol, snapfile
from ..attach.target import environ_value

COMMAND_WIDTH = 60


@dataclass(frozen=True, slots=True)
class HookedProcess:
    """One process with the memdiag hook, as `memdiag ps` shows it.

    python_heap and heap_time come from the metadata of the process's last
    snapshot (None before its first); snapshots counts its snapshot files
    in its directory written since it started.
    """
    pid: int
    ppid: int | None
    command: str
    rss: int | None
    python_heap: int | None
    heap_time: float | None
    snapshots: int
    last_snapshot: str | None
    dir: str | None
    signal_name: str
    python: str

    def sort_key(self):
        return (self.pid,)


def short_command(argv, width=COMMAND_WIDTH):
    """argv as one line: the program's base name, then its arguments, at most
    width chars. A script run by its #! line shows as the script (the kernel
    puts the interpreter first):

    >>> short_command(["/srv/venv/bin/python", "/srv/venv/bin/gunicorn", "-w", "3"])
    'gunicorn -w 3'
    """
    if not argv:
        return "?"
    if (len(argv) > 1 and os.path.basename(argv[0]).startswith("python")
            and argv[1].startswith("/")):
        argv = argv[1:]
    text = " ".join([os.path.basename(argv[0]) or argv[0], *argv[1:]])
    return text if len(text) <= width else text[:width - 1] + "…"


def registered_pids(uid=None):
    """Pids that have a registry entry file (not yet checked), ascending."""
    try:
        names = os.listdir(protocol.registry_dir(uid))
    except OSError:
        return []
    pids = []
    for name in names:
        stem, _, ext = name.partition(".")
        if ext == "json" and stem.isdigit():
            pids.append(int(stem))
    return sorted(pids)


def hook_entry(pid, uid=None):
    """pid's registry entry if it is a live, hooked process of uid that catches
    its signal right now (the checks `memdiag snapshot` makes), else None."""
    uid = os.getuid() if uid is None else uid
    try:
        status = protocol.proc_status(pid)
        if protocol.status_uid(status) != uid:
            return None
        entry = protocol.read_entry(pid, uid)
    except (OSError, protocol.RegistryError):
        return None
    if entry is None or not protocol.catches_signal(status, entry["signal"]):
        return None
    return entry


def hooked_processes(uid=None):
    """Every hooked process of uid (default: this user) but this one, by pid."""
    me = os.getpid()
    out = []
    for pid in registered_pids(uid):
        entry = hook_entry(pid, uid) if pid != me else None
        if entry is not None:
            out.append(describe(pid, entry))
    return sorted(out, key=HookedProcess.sort_key)


def describe(pid, entry):
    """A HookedProcess from a checked registry entry and /proc."""
    try:
        ppid = protocol.proc_stat(pid).ppid
    except (OSError, ValueError):
        ppid = None
    directory = entry.get("dir") if isinstance(entry.get("dir"), str) else None
    files = snapshots_since_start(directory, pid) if directory else []
    last = os.path.join(directory, files[-1]) if files else None
    heap, at = last_heap(last) if last else (None, None)
    return HookedProcess(pid=pid, ppid=ppid, command=short_command(protocol.proc_cmdline(pid)),
                         rss=protocol.rss_bytes(pid), python_heap=heap, heap_time=at,
                         snapshots=len(files), last_snapshot=last, dir=directory,
                         signal_name=protocol.signal_name(entry["signal"]),
                         python=str(entry.get("python") or "?"))


def snapshots_since_start(directory, pid):
    """pid's snapshot files in directory, oldest first, leaving out those of an
    earlier process that had the same pid (written before this one started)."""
    names = protocol.snapshot_files(directory, pid)
    started = start_epoch(pid)
    if started is None:
        return names
    out = []
    for name in names:
        try:
            if os.stat(os.path.join(directory, name)).st_mtime >= started - 1:
                out.append(name)
        except OSError:
            pass
    return out


def start_epoch(pid):
    """When pid started, in seconds since the epoch (None if unknown)."""
    ticks = protocol.proc_start_time(pid)
    if ticks is None:
        return None
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return int(line.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    return None


def last_heap(path):
    """(python_heap, time) from a snapshot's metadata, or (None, None)."""
    try:
        with snapfile.Reader.open(path) as r:
            meta = r.trailer.get("meta") or {}
    except (OSError, snapfile.SnapshotFormatError):
        return None, None
    heap, at = meta.get("python_heap"), meta.get("time")
    heap = heap if isinstance(heap, int) and not isinstance(heap, bool) else None
    at = at if isinstance(at, (int, float)) and not isinstance(at, bool) else None
    return heap, at


# ------------------------------------------------------------ descendants

def parent_map():
    """{pid: ppid} of every process in /proc now, zombies left out (a snapshot
    writer that ended stays one until its parent's next snapshot reaps it)."""
    out = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            try:
                st = protocol.proc_stat(int(name))
            except (OSError, ValueError):
                continue
            if st.state not in ("Z", "X"):
                out[int(name)] = st.ppid
    return out


def descendants(pid, parents=None):
    """Every descendant of pid now (children, their children, ...), by pid."""
    parents = parent_map() if parents is None else parents
    children = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found and child != pid:
                found.append(child)
                todo.append(child)
    return sorted(found)


# A process the hook is in registers each fork in os.register_at_fork's
# after_in_child, before the fork runs code of its own (or, where the program
# took the hook's signal, when the fork resets it); a snapshot writer names
# itself in its parent's status file as it starts. For that moment a fork is
# neither: split_descendants waits up to this long for it to become
# one (or to exec, or to exit) rather than call a worker its server forked a
# moment ago unhooked.
SETTLE_SECONDS = 5.0


def same_program(pid, parent):
    """Whether pid runs its parent's program still: a fork that did not exec.

    The same executable, and the heap and the environment where the
    parent's are (exec_layout): a fork keeps them, an exec places them anew.
    So a fork that renamed itself (a gunicorn worker, when setproctitle is
    installed) is one, and a re-exec with the same command line (gunicorn's
    master on SIGUSR2) is not. Where the layout cannot tell, the command
    lines decide.

    >>> same_program(os.getpid(), os.getpid())
    True
    """
    if parent is None:
        return False
    try:
        if os.readlink(f"/proc/{pid}/exe") != os.readlink(f"/proc/{parent}/exe"):
            return False
    except OSError:
        return False
    mine, theirs = exec_layout(pid), exec_layout(parent)
    if mine and theirs:
        return mine == theirs
    return protocol.proc_cmdline(pid) == protocol.proc_cmdline(parent)


def exec_layout(pid):
    """(start_brk, env_start) of pid, from /proc/<pid>/stat (fields 47 and
    50): where exec put the heap and the environment strings. None where
    they cannot tell an exec from a fork: unreadable, hidden (shown as 0
    without ptrace access to pid), or address randomization off (for all:
    kernel.randomize_va_space=0; for pid: setarch -R, or a debugger's
    ADDR_NO_RANDOMIZE), where every exec of a program puts them in the same
    place.

    >>> exec_layout(os.getpid()) == exec_layout(os.getpid())
    True
    """
    if randomization_off(pid):
        return None
    try:
        stat = protocol.proc_stat(pid)
    except (OSError, ValueError):
        return None
    layout = (stat.heap_start, stat.env_start)
    return layout if all(layout) else None


ADDR_NO_RANDOMIZE = 0x0040000     # linux/personality.h


def randomization_off(pid):
    """Whether exec places pid's memory at fixed addresses: for every process
    (kernel.randomize_va_space=0) or for pid (its personality; unreadable
    without ptrace access to pid, then taken as on)."""
    if _randomization_off_for_all():
        return True
    try:
        with open(f"/proc/{pid}/personality") as f:
            return bool(int(f.read().strip(), 16) & ADDR_NO_RANDOMIZE)
    except (OSError, ValueError):
        return False


@functools.cache
def _randomization_off_for_all():
    """kernel.randomize_va_space=0 (read once: a scan asks for every pid)."""
    try:
        with open("/proc/sys/kernel/randomize_va_space") as f:
            return f.read().strip() == "0"
    except OSError:
        return False


def started_with_memdiag(pid):
    """Whether pid's environment turned the hook on as it started (`memdiag
    run` sets MEMDIAG_PKG_DIR; or MEMDIAG_ENABLE=1): its forks have the hook
    too, even when pid itself gave up its signal to the program. gunicorn's
    arbiter takes SIGUSR2, so its hook steps aside, and each worker registers
    when it resets that signal, a moment after the fork. (A hook of this
    memdiag also says so in the registry: protocol.stepped_aside. This
    covers a program whose environment /proc still shows.)"""
    return (environ_value(pid, "MEMDIAG_PKG_DIR") is not None
            or environ_value(pid, "MEMDIAG_ENABLE") not in (None, "", "0"))


def snapshot_writer_of(pid, parent):
    """Whether pid is the snapshot writer the hook in `parent` forked (the
    parent's status file names it: the writer writes it as it starts)."""
    status = protocol.read_status(protocol.status_path(parent))
    return bool(status) and status.get("writer") == pid


def split_descendants(pid, uid=None, settle=SETTLE_SECONDS):
    """(hooked, unhooked): pids of pid's descendants that have the hook (and
    catch its signal now), and [(pid, name)] of those that do not. The
    hook's own snapshot writers are in neither. One whose hook stepped aside
    (the program took its signal) is unhooked at once.

    A fork of a hooked process (pid itself included, or pid started with
    memdiag, or one whose hook stepped aside: protocol.stepped_aside) that
    is neither registered nor a named writer yet is waited for, up to
    `settle` seconds (SETTLE_SECONDS). One still unnamed then counts as its
    parent's writer if the parent is a hooked descendant (one that stepped
    aside writes no snapshots), else as unhooked."""
    uid = os.getuid() if uid is None else uid
    deadline = time.monotonic() + settle
    root_hooked = (hook_entry(pid, uid) is not None or protocol.stepped_aside(pid, uid)
                   or started_with_memdiag(pid))
    while True:
        parents = parent_map()
        found = [p for p in descendants(pid, parents) if p != os.getpid()]
        hooked = [p for p in found if hook_entry(p, uid) is not None]
        aside = {p for p in found if p not in hooked and protocol.stepped_aside(p, uid)}
        forked_by_hook = set(hooked) | aside | ({pid} if root_hooked else set())
        unhooked, unsettled = [], []
        for child in found:
            parent = parents.get(child)
            if child in hooked:
                continue
            if child in aside:      # registered, then the program took the signal
                unhooked.append((child, process_name(child)))
                continue
            if parent in forked_by_hook and same_program(child, parent):
                if snapshot_writer_of(child, parent):
                    continue
                unsettled.append(child)
                if parent != pid and parent in hooked:
                    continue
            unhooked.append((child, process_name(child)))
        if not unsettled or time.monotonic() >= deadline:
            return hooked, unhooked
        time.sleep(0.02)


def process_name(pid):
    argv = protocol.proc_cmdline(pid)
    if argv and argv[0]:
        return os.path.basename(argv[0])
    try:
        return protocol.proc_status(pid).get("Name", "?")
    except OSError:
        return "?"
