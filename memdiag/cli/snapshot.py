"""memdiag snapshot PID: signal a hooked process and wait for its snapshot file.

`--children PID` does it for every hooked descendant of PID (the workers of
a gunicorn master), `--all` for every hooked process of this user: all at
once, each with the checks a single snapshot makes.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from .. import protocol, snapfile
from . import processes
from .common import hint, print_json
from .errors import EXIT_SNAPSHOT_FAILED, EXIT_TARGET, EXIT_USAGE, MemdiagError
from .targets import find_hook, proc_status


def take(pid, directory=None, timeout=60.0, say_walker=True):
    """Signal pid and return (path, seconds waited) of the snapshot it wrote.
    say_walker: say on stderr first if the target walks in pure Python, and why."""
    info = find_hook(pid)
    if say_walker:
        _say_walker(pid, info)
    directory = directory or info.get("dir")
    if not directory:
        raise MemdiagError(f"pid {pid}: the hook registry names no snapshot directory",
                           EXIT_TARGET)
    status_path = info["registry"][:-len(".json")] + ".status"
    t0 = time.monotonic()
    _wait_for_writer(pid, protocol.read_status(status_path), timeout)
    before = set(protocol.snapshot_files(directory, pid))
    old_status = protocol.read_status(status_path)
    sent_at = time.time()
    try:
        os.kill(pid, info["signal"])
    except ProcessLookupError:
        raise MemdiagError(f"pid {pid} exited", EXIT_TARGET) from None
    except PermissionError:
        raise MemdiagError(f"not allowed to signal pid {pid}; run as its user or root",
                           EXIT_TARGET) from None
    delay = 0.01
    while True:
        new = [n for n in protocol.snapshot_files(directory, pid) if n not in before]
        if new:
            return os.path.join(directory, new[-1]), time.monotonic() - t0
        st = protocol.read_status(status_path)
        fresh = st and st != old_status and _number(st.get("time")) >= sent_at - 1
        if fresh and st.get("state") == protocol.WRITING:
            death = _writer_death(pid, st.get("writer"))
            # It may have finished or failed just now: it says so before exiting.
            if death and not (set(protocol.snapshot_files(directory, pid)) - before):
                st = protocol.read_status(status_path)
                if st and st.get("state") == protocol.WRITING:
                    raise MemdiagError(
                        f"pid {pid}: its snapshot writer (pid {st.get('writer')}) {death} "
                        f"before the file was complete; nothing was written"
                        f"{' (SIGKILL: the OOM killer? see dmesg)' if 'signal 9' in death else ''}",
                        EXIT_SNAPSHOT_FAILED)
        if fresh and st.get("state") == protocol.FAILED:
            raise MemdiagError(f"pid {pid} could not write the snapshot: {st.get('error')}",
                               EXIT_SNAPSHOT_FAILED)
        if not os.path.exists(f"/proc/{pid}"):
            raise MemdiagError(f"pid {pid} exited before the snapshot was written",
                               EXIT_SNAPSHOT_FAILED)
        if time.monotonic() - t0 > timeout:
            raise MemdiagError(
                f"no snapshot from pid {pid} within {timeout:g}s (Python runs signal "
                f"handlers between bytecodes: a main thread stuck in C code delays it; "
                f"see the process's stderr)", EXIT_SNAPSHOT_FAILED)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _say_walker(pid, info):
    """One line on stderr when the target's hook walks in pure Python (its
    registry entry says so, and why)."""
    reason = pure_reason(info)
    if reason is not None:
        sys.stderr.write(f"memdiag: pid {pid} uses the pure-Python walker (tens of times "
                         f"slower; its forked child copies more of the program's memory): "
                         f"{reason}\n")


def pure_reason(info):
    """Why the hook whose registry entry is info walks in pure Python, or None
    when it uses the compiled walker.

    >>> pure_reason({"walker": "python", "walker_reason": "no C compiler"})
    'no C compiler'
    >>> pure_reason({"walker": "c"}) is None
    True
    """
    walker = info.get("walker")
    if walker is None and info.get("compiled_walker") is False:
        walker = "python"          # a hook from before entries said why
    if walker != "python":
        return None
    reason = info.get("walker_reason")
    return reason if isinstance(reason, str) and reason else "its hook does not say why"


def _say_walkers(pids):
    """take_many's version of _say_walker: one line per reason, with its pids."""
    by_reason = {}
    for pid in pids:
        try:
            reason = pure_reason(find_hook(pid))
        except MemdiagError:
            continue                # take() reports it
        if reason is not None:
            by_reason.setdefault(reason, []).append(str(pid))
    for reason, some in by_reason.items():
        one = len(some) == 1
        sys.stderr.write(f"memdiag: pid{'' if one else 's'} {', '.join(some)} use{'s' if one else ''} "
                         f"the pure-Python walker (tens of times slower; its forked child "
                         f"copies more of the program's memory): {reason}\n")


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _wait_for_writer(target, status, timeout):
    """Wait (up to timeout) for the last snapshot's writer to exit. The hook
    coalesces a signal that arrives while a writer runs into that writer's
    snapshot, but the writer publishes its file before it fsyncs the
    directory, reports and exits: a signal sent in between would wait for a
    new file that never comes."""
    writer = status.get("writer") if isinstance(status, dict) else None
    deadline = time.monotonic() + timeout
    while _writer_death(target, writer) is None and _is_child(target, writer):
        if time.monotonic() > deadline:
            return
        time.sleep(0.005)


def _is_child(target, pid):
    try:
        return protocol.proc_stat(pid).ppid == target
    except (OSError, ValueError):
        return False


def _writer_death(target, writer):
    """How the snapshot writer (a forked child of target) ended, or None while it
    runs. Until the target reaps it, a dead child is a zombie whose
    /proc/<pid>/stat ends with its wait status (field 52, Linux 3.5+)."""
    if not isinstance(writer, int) or isinstance(writer, bool) or writer <= 0:
        return None
    try:
        st = protocol.proc_stat(writer)
    except FileNotFoundError:
        return "exited"                # reaped already
    except (OSError, ValueError):
        return None
    if st.ppid != target:
        return "exited"                # reaped, and the pid reused
    if st.state not in ("Z", "X") or st.exit_code is None:
        return None
    if os.WIFSIGNALED(st.exit_code):
        return f"was killed by signal {os.WTERMSIG(st.exit_code)}"
    return f"exited with status {os.WEXITSTATUS(st.exit_code)}"


def _timings(path):
    """walk_seconds, pause_seconds, walker and walker_reason from the snapshot's
    metadata (None if absent)."""
    try:
        with snapfile.Reader.open(path) as r:
            meta = r.meta
    except (OSError, snapfile.SnapshotFormatError):
        meta = {}
    return {key: meta.get(key) for key in ("walk_seconds", "pause_seconds", "walker",
                                           "walker_reason")}


def _described(path, pid, waited):
    return {"path": path, "pid": pid, "bytes": os.path.getsize(path), **_timings(path),
            "wait_seconds": round(waited, 3)}


def command(pid, directory=None, timeout=60.0, as_json=False, children=False, every=False):
    if every or children:
        return command_many(pid, directory, timeout, as_json, children, every)
    if pid is None:
        raise MemdiagError("snapshot needs a pid (or --all): memdiag snapshot PID", EXIT_USAGE)
    path, waited = take(pid, directory, timeout)
    if as_json:
        print_json(_described(path, pid, waited))
    else:
        print(path)
        hint(f"next: memdiag top {path}   (take another later, then: memdiag diff A B)")
    return 0


# ------------------------------------------------- --children PID and --all

def targets_of(pid, children, every):
    """The pids to snapshot, and [(pid, name)] of descendants without the hook."""
    if every:
        if pid is not None:
            raise MemdiagError("--all takes no pid (it snapshots every hooked process of "
                               "this user)", EXIT_USAGE)
        pids = [p.pid for p in processes.hooked_processes()]
        if not pids:
            raise MemdiagError(f"no process of uid {os.getuid()} has the memdiag hook "
                               f"(registry: {protocol.registry_dir()}); start one with "
                               f"`memdiag run -- <command>` or MEMDIAG_ENABLE=1", EXIT_TARGET)
        return pids, []
    if pid is None:
        raise MemdiagError("--children needs the parent's pid: memdiag snapshot --children PID",
                           EXIT_USAGE)
    proc_status(pid)                      # "no process with pid N", exit 4
    pids, unhooked = processes.split_descendants(pid)
    if not pids:
        without = ", ".join(f"{p} ({name})" for p, name in unhooked[:5]) or "none"
        raise MemdiagError(f"pid {pid} has no descendant with the memdiag hook (descendants "
                           f"without it: {without}); start it with `memdiag run -- <command>` "
                           f"or MEMDIAG_ENABLE=1", EXIT_TARGET)
    return pids, unhooked


def take_many(pids, directory=None, timeout=60.0):
    """Snapshot every pid at once (each wait in its own thread, so N slow
    targets cost one timeout, not N), with the checks of take() for each.
    Returns {pid: (path, seconds waited) or MemdiagError}."""
    starts = {pid: protocol.proc_start_time(pid) for pid in pids}
    _say_walkers(pids)
    out = {}
    with ThreadPoolExecutor(max_workers=min(16, len(pids)) or 1) as pool:
        futures = {pid: pool.submit(take, pid, directory, timeout, False) for pid in pids}
    for pid, future in futures.items():
        try:
            out[pid] = future.result()
        except MemdiagError as e:
            if protocol.proc_start_time(pid) != starts[pid] or _zombie(pid):
                e = Exited(f"pid {pid} exited before its snapshot was written (a worker its "
                           f"server replaced?); skipped", e.exit_code)
            out[pid] = e
    return out


class Exited(MemdiagError):
    """The target ended while memdiag waited: a pre-fork server replaces workers."""


def _zombie(pid):
    try:
        return protocol.proc_stat(pid).state in ("Z", "X")
    except (OSError, ValueError):
        return True


def command_many(pid, directory, timeout, as_json, children, every):
    pids, unhooked = targets_of(pid, children, every)
    for child, name in unhooked:
        note(f"pid {child} ({name}) has no memdiag hook; skipped")
    results = take_many(pids, directory, timeout)
    code, listed, paths = 0, [], []
    for target in pids:
        got = results[target]
        if isinstance(got, Exited):
            note(str(got))
            listed.append({"pid": target, "path": None, "error": str(got), "exited": True})
            continue
        if isinstance(got, MemdiagError):
            sys.stderr.write(f"memdiag: error: {got}\n")
            listed.append({"pid": target, "path": None, "error": str(got), "exited": False})
            code = code or got.exit_code
            continue
        path, waited = got
        paths.append(path)
        listed.append(_described(path, target, waited))
    if as_json:
        print_json(listed)
    else:
        for path in paths:
            print(path)
        if paths:
            hint("next: later, the same again; then memdiag diff on all the files (diff "
                 "compares each process's own snapshots, then summarizes across them)")
    return code


def note(text):
    """A line about a process that was left out (stderr: stdout holds paths)."""
    sys.stderr.write(f"memdiag: {text}\n")
