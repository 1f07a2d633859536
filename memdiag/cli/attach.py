"""memdiag attach PID: install the hook into a running Python process.

Parses, calls memdiag.attach and prints. The work, and what it promises the
target, is described in memdiag/attach/__init__.py.
"""

from __future__ import annotations

import os
import signal as _signal
import sys

from ..attach import AttachError, AttachResult, attach, walker_reason
from . import snapshot as snapshot_cmd
from . import walkers
from .common import hint, print_json
from .errors import EXIT_TARGET, EXIT_USAGE, MemdiagError
from .run import parse_signal_option as parse_signal
from .targets import find_hook


def _registry_entry(pid):
    """The hook's registry entry for pid (what `memdiag snapshot` reads), or None."""
    try:
        return find_hook(pid)
    except MemdiagError:
        return None


def command(pid, directory=None, signal="USR2", strings=False, take_snapshot=False,
            timeout=30.0, as_json=False):
    signum = parse_signal(signal)
    entry = _registry_entry(pid) if pid > 0 else None
    result = None
    if entry is not None:
        result = AttachResult(pid=pid, state="already", python=str(entry.get("python")),
                              method="", signal=entry.get("signal"), dir=entry.get("dir"),
                              registry=entry.get("registry"), seconds=0.0)
    plans = []

    def walker_cache(target):
        """The compiled walker for the target's Python: found or built first."""
        root, plan = walkers.for_attach(target)
        plans.append(plan)
        return root

    if entry is None:
        try:
            result = attach(pid, signum=signum, snapshot_dir=directory, strings=strings,
                            timeout=timeout, walker_cache=walker_cache)
        except AttachError as e:
            raise MemdiagError(str(e), EXIT_TARGET) from None
        entry = _registry_entry(pid)
    compiled = _walks_compiled(entry, result)
    reason = None
    if compiled is False:
        # Why a build failed says what to do; else the target's own reason.
        plan = plans[0] if plans else None
        reason = (plan.reason if plan and plan.reason else None) or \
            (entry or {}).get("walker_reason") or result.walker_reason
        version = tuple(int(x) for x in result.python.split(".")[:2] if x.isdigit())
        if not reason and len(version) == 2:
            reason = walker_reason(version, result)
    warning = None
    if entry is None and result.registry:
        # .../memdiag-<uid>/hooks/<pid>.json under the target's temp directory
        base = os.path.dirname(os.path.dirname(os.path.dirname(result.registry)))
        warning = (f"the target keeps its hook registry under {base} (its TMPDIR), where "
                   f"this memdiag does not look: use `TMPDIR={base} memdiag snapshot {pid}`, "
                   f"or `kill -{_signal_name(result.signal)[3:]} {pid}`")
    snap_path = snap_seconds = None
    if take_snapshot:
        snap_path, snap_seconds = snapshot_cmd.take(pid, None, max(timeout, 60.0),
                                                    say_walker=False)
    if as_json:
        print_json({
            "pid": pid, "state": result.state, "python": result.python,
            "method": result.method or None, "signal": _signal_name(result.signal),
            "dir": result.dir, "registry": result.registry, "hook_module": result.module,
            "target_seconds": result.target_seconds,
            "walker": None if compiled is None else ("compiled" if compiled else "python"),
            "walker_reason": reason, "seconds": result.seconds,
            "resent_signals": [_signal_name(s) for s in result.resent_signals],
            "warning": warning, "snapshot": snap_path,
            "snapshot_seconds": None if snap_seconds is None else round(snap_seconds, 3)})
        return 0
    sig = _signal_name(result.signal)
    if result.state == "already":
        print(f"pid {pid} has the memdiag hook already ({sig}); nothing changed")
    else:
        print(f"attached to pid {pid} (Python {result.python}) with {result.method} "
              f"in {result.seconds:.2f}s")
    print(f"pid {pid} writes a heap snapshot to {result.dir} on {sig} "
          f"(memdiag snapshot {pid})")
    if compiled is True:
        print("walker: compiled")
    elif compiled is False:
        print(f"walker: pure-Python (slower; its forked child copies more of the target's "
              f"memory): {reason}")
    if warning:
        sys.stderr.write(f"memdiag: warning: {warning}\n")
    if snap_path:
        print(snap_path)
        hint(f"next: memdiag top {snap_path}   (take another later, then: memdiag diff A B)")
    else:
        hint(f"next: memdiag snapshot {pid}   (now, and again once memory has grown)")
    return 0


def _walks_compiled(entry, result):
    """Whether the target walks with the compiled walker (None: unknown)."""
    if entry and entry.get("walker") in ("c", "python"):
        return entry["walker"] == "c"
    if entry and "compiled_walker" in entry:
        return entry["compiled_walker"]
    if result.compiled_walker is None:
        return None
    return bool(result.compiled_walker) and not result.pure_python_forced


def _signal_name(signum):
    try:
        return _signal.Signals(signum).name
    except (ValueError, TypeError):
        return str(signum)
