"""memdiag attach: install the hook into a running Python process started without memdiag.

    >>> from memdiag.attach import attach
    >>> r = attach(4242, signum=12)                      # doctest: +SKIP
    >>> r.state, r.method                                # doctest: +SKIP
    ('installed', 'sys.remote_exec via the target's own interpreter')

Afterwards `kill -USR2 4242` and `memdiag snapshot 4242` work as for a
process started with `memdiag run`. Python 3.14+ gets the script through
sys.remote_exec (remote.py); 3.11-3.13 through a pending call that a
debugger queues (debugger.py). Either way the target runs payload.py on its
main thread at a safe point, which loads the hook from memdiag's own
directory under a private name and installs it; handshake.py is how the CLI
waits for that, and calls it off when its timeout runs out. Everything is
checked first from /proc and the interpreter's ELF file (target.py), and
nothing is injected into a process that is not a supported Python, that
catches the signal itself, or that this user may not trace.
"""

from __future__ import annotations

import glob
import os
import signal as _signal
import time
from dataclasses import dataclass, field
from typing import List, Optional

from .. import protocol
from . import debugger, remote
from .handshake import Handshake, HandshakeTimeout, TargetGone, stub_text, temp_base
from .target import (Target, TargetError, status_or_empty, describe, main_thread_wait,
                     process_name, proc_status, ptrace_denied_reason,
                     same_mount_namespace, start_time, tracer)

OLDEST = (3, 11)
NEWEST = (3, 15)
REMOTE_EXEC_SINCE = (3, 14)
CLAIMED_GRACE = 60.0    # seconds for the hook's install() once the target has begun it
PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class AttachError(Exception):
    """The hook was not installed; the message is one line with what to do."""


@dataclass
class AttachResult:
    pid: int
    state: str                       # "installed" or "already"
    python: str                      # the target's version, e.g. "3.15.2"
    method: str                      # how the code got in ("" when already installed)
    signal: Optional[int]
    dir: Optional[str]
    registry: Optional[str]
    seconds: float
    compiled_walker: Optional[bool] = None
    walker_error: Optional[str] = None
    walker_reason: Optional[str] = None     # the target's: why the pure-Python walker
    pure_python_forced: bool = False
    module: Optional[str] = None     # the hook module that is installed in the target
    target_seconds: Optional[float] = None  # how long the target's main thread ran the code
    resent_signals: List[int] = field(default_factory=list)


def check_target(pid, signum) -> Target:
    """Everything that can be known without touching the process; AttachError if it
    cannot be attached to."""
    try:
        target = describe(pid)
    except TargetError as e:
        raise AttachError(str(e)) from None
    who = f"pid {pid} ({target.name})"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise AttachError(f"no process with pid {pid}") from None
    except PermissionError:
        raise AttachError(f"{who} belongs to uid {target.uid}; run memdiag attach as that "
                          f"user or as root") from None
    # Before anything read from its files: without the right to trace it, its
    # executable and maps are unreadable too.
    denied = ptrace_denied_reason(target)
    if denied:
        raise AttachError(denied)
    if target.version is None:
        raise AttachError(f"{who} is not a Python process (no Python interpreter in its "
                          f"executable or libraries); memdiag attaches to CPython "
                          f"{_range()} only")
    if not OLDEST <= target.version[:2] <= NEWEST:
        newer = target.version[:2] > NEWEST
        raise AttachError(f"{who} runs Python {target.version_text}; this memdiag attaches to "
                          f"CPython {_range()}{' (a newer memdiag may support it)' if newer else ''}")
    if not same_mount_namespace(pid):
        raise AttachError(f"{who} is in another mount namespace (a container); run memdiag "
                          f"inside that container (docker exec, kubectl exec), where the "
                          f"target can read memdiag's files")
    if protocol.catches_signal(target.status, signum) and not _registered_in_target_tmp(target):
        name = _signal.Signals(signum).name
        free = "USR1" if signum != _signal.SIGUSR1 else "USR2"
        raise AttachError(f"{who} has its own handler for {name}; memdiag will not replace "
                          f"it: attach with another signal, e.g. --signal {free}")
    if target.version[:2] < REMOTE_EXEC_SINCE:
        missing = [s for s in ("Py_AddPendingCall", "PyRun_SimpleString")
                   if s not in target.symbols]
        if missing:
            raise AttachError(f"{who}: its Python {target.version_text} ({target.runtime}) "
                              f"does not export {' or '.join(missing)}, which attach calls; "
                              f"start the program with `memdiag run` instead")
    return target


def _registered_in_target_tmp(target):
    """Whether a hook registry entry for the target is in its own temp directory
    (where a hook of memdiag run's writes it when the target's TMPDIR is not
    this process's): then the handler may be the hook's, and the injected
    code tells the two apart."""
    return os.path.isfile(protocol.entry_path(target.pid, target.uid, temp_base(target)))


def attach(pid, *, signum, snapshot_dir=None, strings=False, timeout=30.0,
           inject_timeout=60.0, walker_cache=None) -> AttachResult:
    """Install the hook into pid; AttachError says why not. Never leaves a
    debugger attached, and never installs a hook after its timeout ran out.
    walker_cache(target), called once the target is checked, returns the
    walker cache in which the hook looks for a compiled walker built for
    the target's Python (or None: the hook's default)."""
    t0 = time.monotonic()
    target = check_target(pid, signum)
    start = start_time(pid)
    request = {"pkg": PKG_DIR, "signal": int(signum), "strings": bool(strings),
               "snapshot_dir": os.path.abspath(snapshot_dir) if snapshot_dir else None,
               "walker_cache": walker_cache(target) if walker_cache else None}
    try:
        h = Handshake.create(target, request)
    except OSError as e:
        raise AttachError(f"cannot create the attach directory: {e.strerror} "
                          f"({e.filename})") from None
    # Once the code may be queued in the target, the directory stays until the
    # target has run it: a script read later must be there (remote_exec prints
    # a traceback into the program's stderr otherwise), and the code, finding
    # its token gone, removes the directory itself.
    keep_dir = True
    try:
        try:
            if target.version[:2] >= REMOTE_EXEC_SINCE:
                method = remote.inject(target, h.file("script.py"), inject_timeout)
            else:
                stub = stub_text(h.request).encode("utf-8") + b"\0"
                method = debugger.inject(target, stub, inject_timeout)
        except remote.RemoteExecError as e:
            keep_dir = e.kind == "timeout"   # otherwise it raised: nothing was sent
            raise AttachError(_permission(target, e) if e.kind == "permission" else str(e)) from None
        except debugger.DebuggerError as e:
            keep_dir = e.maybe_queued
            raise AttachError(_permission(target, e) if e.kind == "permission" else str(e)) from None
        finally:
            _check_detached(target)
        try:
            result = h.wait(timeout, alive=lambda: start_time(pid) == start,
                            claimed_grace=CLAIMED_GRACE)
        except HandshakeTimeout as e:
            if e.claimed:
                keep_dir = False
                raise AttachError(f"pid {pid} started installing the hook but did not finish "
                                  f"within {CLAIMED_GRACE:g}s; see its stderr") from None
            raise AttachError(_never_safe(target, timeout)) from None
        except TargetGone:
            keep_dir = False
            raise AttachError(f"pid {pid} exited while memdiag attached to it") from None
        keep_dir = False
    finally:
        h.cancel()     # a no-op once the target has claimed the request
        if not keep_dir:
            h.remove()
    resent = _resend(pid, start, result.get("deferred_signals"))
    return _outcome(target, signum, result, method, time.monotonic() - t0, resent)


def _outcome(target, signum, result, method, seconds, resent):
    pid = target.pid
    state = result.get("state")
    if state == "refused":
        name = _signal.Signals(signum).name
        free = "USR1" if signum != _signal.SIGUSR1 else "USR2"
        raise AttachError(f"pid {pid} ({target.name}) has its own handler for {name} "
                          f"({result.get('handler')}); memdiag will not replace it: attach "
                          f"with another signal, e.g. --signal {free}")
    if state == "failed":
        error = str(result.get("error") or "unknown error")
        advice = ""
        if "PermissionError" in error:
            advice = (f" (the target runs as uid {target.uid}: install memdiag where that "
                      f"user can read it)")
        raise AttachError(f"pid {pid} could not install the hook: {error}{advice}")
    if state not in ("installed", "already"):
        raise AttachError(f"pid {pid} gave an unexpected answer ({state!r})")
    return AttachResult(
        pid=pid, state=state, python=target.version_text, method=method,
        signal=_int_or_none(result.get("signal")), dir=_str_or_none(result.get("dir")),
        registry=_str_or_none(result.get("registry")), seconds=round(seconds, 3),
        compiled_walker=result.get("compiled_walker") if state == "installed" else None,
        walker_error=_str_or_none(result.get("walker_error")),
        walker_reason=_str_or_none(result.get("walker_reason")),
        pure_python_forced=bool(result.get("pure_python_forced")),
        module=_str_or_none(result.get("module")), resent_signals=resent,
        target_seconds=result.get("seconds") if isinstance(result.get("seconds"), float) else None)


def walker_reason(version, result: AttachResult):
    """Why the target uses the pure-Python walker, in one phrase with the fix."""
    if result.pure_python_forced:
        return "MEMDIAG_PURE_PYTHON is set in the target's environment"
    if result.walker_error:
        return f"the compiled walker for its Python did not load: {result.walker_error}"
    tag = f"cpython-{version[0]}{version[1]}"
    built = sorted({os.path.basename(p).split(".")[1] for p in
                    glob.glob(os.path.join(PKG_DIR, "_walker.*.so"))})
    if not any(b.startswith(tag) for b in built):
        have = ", ".join(_tag_version(b) for b in built) or "no Python"
        v = f"{version[0]}.{version[1]}"
        return (f"memdiag's compiled walker is built for Python {have} only, and the target "
                f"runs {v}; build one for it: memdiag build-walker --python python{v}")
    return "the compiled walker did not load in the target"


def _tag_version(tag):
    digits = tag.split("-")[1] if "-" in tag else tag
    return f"{digits[0]}.{digits[1:]}" if digits.isdigit() else tag


def _resend(pid, start, signums):
    """Send again the signals that arrived while the injected code held the
    program's handlers back (the program's handlers run on them now)."""
    sent = []
    for signum in signums or ():
        if isinstance(signum, int) and 0 < signum < 65 and start_time(pid) == start:
            try:
                os.kill(pid, signum)
                sent.append(signum)
            except OSError:
                pass
    return sent


def _check_detached(target):
    """A debugger that ended leaves no tracer behind: say so if one did."""
    try:
        holder = tracer(proc_status(target.pid))
    except TargetError:
        return
    if holder:
        raise AttachError(f"pid {target.pid} is still traced by pid {holder} "
                          f"({process_name(holder, {})}) after the debugger ended")


def _permission(target, error):
    reason = ptrace_denied_reason(target)
    if reason:
        return reason
    from .target import explain_ptrace_denied
    return f"{explain_ptrace_denied(target)} ({error})"


def _never_safe(target, timeout):
    where = main_thread_wait(target.pid)
    state = status_or_empty(target.pid).get("State", "")
    if state.startswith(("T", "t")):
        why = f"it is stopped ({state})"
    elif where == "running":
        why = "its main thread runs C code that does not return to Python (a long computation?)"
    elif where in ("epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select",
                   "pselect6", "accept", "accept4"):
        why = (f"its main thread waits in {where} without a timeout (an idle event loop or "
               f"server: send it a request while attach waits)")
    elif where in ("read", "recvfrom", "recvmsg"):
        why = f"its main thread waits for input ({where})"
    elif where == "futex":
        why = "its main thread waits for a lock or another thread (futex)"
    elif where in ("nanosleep", "clock_nanosleep", "pause"):
        why = f"its main thread sleeps ({where})"
    elif where:
        why = f"its main thread is blocked ({where})"
    else:
        why = "its main thread is blocked in a long call outside Python"
    return (f"pid {target.pid} ({target.name}) did not reach a safe point within {timeout:g}s: "
            f"{why}; nothing was installed, and nothing will be later. Try again, or with a "
            f"longer --timeout")


def _range():
    return f"{OLDEST[0]}.{OLDEST[1]} to {NEWEST[0]}.{NEWEST[1]}"


def _int_or_none(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value):
    return value if isinstance(value, str) else None
