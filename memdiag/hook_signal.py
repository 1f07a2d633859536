"""The signal guard, and the hook's other dealings with signals.

With guard_signal (install()'s default) signal.signal is wrapped while the
hook is installed, so that what the program later does with the hook's
signal is seen:

- a reset to SIG_DFL or SIG_IGN (gunicorn's workers reset what the arbiter
  took) keeps the hook's handler, and the program gets back what it set;
- a handler of the program's own wins: the hook steps aside (its registry
  entry goes, <pid>.aside says why) and says so;
- a reset after that (in the worker of an arbiter that took the signal)
  gives the signal back to the hook.

    >>> import signal
    >>> previous = set_handler(signal.SIGUSR1, signal.SIG_IGN)
    >>> set_handler(signal.SIGUSR1, previous) == signal.SIG_IGN
    True
"""

from __future__ import annotations

import os
import signal as _signal

from . import hook_rss
from .hook_registry import register, step_aside
from .hook_state import say, state

_RESETS = (_signal.SIG_DFL, _signal.SIG_IGN)


def set_handler(signum, handler):
    """signal.signal itself (not the guard); returns the previous handler."""
    return (state.orig_signal or _signal.signal)(signum, handler)


def guard():
    """Wrap signal.signal (once)."""
    if state.orig_signal is None:
        state.orig_signal = _signal.signal
        _signal.signal = guarded_signal


def unguard():
    """Put the program's signal.signal back."""
    if state.orig_signal is not None:
        _signal.signal = state.orig_signal
        state.orig_signal = None


def guarded_signal(signalnum, handler):
    """signal.signal as the program sees it while the hook is installed."""
    orig = state.orig_signal
    signum = state.settings.signum if state.settings is not None else None
    if state.taken_over and signalnum == signum and handler in _RESETS:
        # The program lets go of the signal it took: a gunicorn worker resets
        # what its arbiter took before forking it. The hook takes it back.
        result = orig(signalnum, state.handler)
        state.taken_over = False
        state.installed = True
        state.app_handler = state.prev_handler = handler
        try:
            register()
            # A forked worker: its fork happened while the arbiter held the
            # signal, so no RSS watcher was started for it then.
            hook_rss.start_watcher()
        except Exception:
            pass
        return result
    if not state.installed or signalnum != signum or state.taken_over:
        return orig(signalnum, handler)
    previous = state.app_handler
    if handler in _RESETS:
        # A reset (as in gunicorn's workers): keep snapshots working.
        state.app_handler = handler
        state.prev_handler = handler
        return previous if previous is not None else _signal.SIG_DFL
    # The program wants this signal for itself: it wins.
    result = orig(signalnum, handler)
    state.taken_over = True
    state.installed = False
    step_aside()
    say(f"memdiag: {_signal.Signals(signalnum).name} was taken over by the program; "
        f"snapshots are off in pid {os.getpid()} (use another signal: --signal)")
    return previous if previous is not None else result


def raised_by_program_handler(e):
    """Whether e went through one of the program's Python signal handlers. Python
    runs a handler between two bytecodes of whatever the main thread runs, so
    a signal that arrives during a snapshot (an inline walk lasts seconds) has
    its handler run inside ours; what it raises (a server's SIGTERM handler
    raising its stop exception) is the program's and must reach the program."""
    codes = set()
    for sig in _signal.valid_signals():
        try:
            handler = _signal.getsignal(sig)
        except (ValueError, OSError):
            continue
        code = getattr(handler, "__code__", None)
        if code is not None and handler is not state.handler:
            codes.add(code)
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False


def ignore_for_walk(signum):
    """Ignore the hook's signal (coalesced into the snapshot being taken) and,
    where the host left it at its default, SIGXFSZ: a host that embeds Python
    without its signal setup (Py_InitializeEx(0)) would be killed when the
    file reaches RLIMIT_FSIZE; ignored, the write fails with EFBIG. Returns
    what restore() puts back."""
    xfsz = getattr(_signal, "SIGXFSZ", None)
    signals = [] if signum is None else [signum]
    if xfsz is not None and xfsz != signum and _signal.getsignal(xfsz) == _signal.SIG_DFL:
        signals.append(xfsz)
    saved = []
    for sig in signals:
        try:
            saved.append((sig, set_handler(sig, _signal.SIG_IGN)))
        except (ValueError, OSError):
            pass
    return saved


def restore(saved):
    for sig, previous in saved:
        try:
            set_handler(sig, previous)
        except (ValueError, OSError, TypeError):
            pass


def quiet_snapshot_child(signum):
    """In a forked snapshot writer: the program's handlers do not run there.
    Interrupting signals get their default action (the writer dies as a
    process would); the hook's signal, SIGPIPE and SIGXFSZ are ignored (past
    RLIMIT_FSIZE the write fails with EFBIG, reported, instead of killing
    the writer, also where the host left SIGXFSZ at its default)."""
    quiet = (signum, _signal.SIGPIPE, getattr(_signal, "SIGXFSZ", None))
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
                 "SIGCHLD", "SIGALRM", "SIGPIPE", "SIGXFSZ"):
        sig = getattr(_signal, name, None)
        if sig is None:
            continue
        try:
            set_handler(sig, _signal.SIG_IGN if sig in quiet else _signal.SIG_DFL)
        except (ValueError, OSError):
            pass
