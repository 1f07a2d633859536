"""Looking at a target process before signaling it.

SIGUSR2's default action kills a process, so memdiag sends it only to a
process whose hook registered itself (same pid and start time) and whose
signal mask shows the signal is caught right now.
"""

from __future__ import annotations

import os

from .. import protocol
from .errors import EXIT_TARGET, MemdiagError


def proc_status(pid):
    """Fields of /proc/<pid>/status, or raise MemdiagError if there is no such process."""
    try:
        return protocol.proc_status(pid)
    except FileNotFoundError:
        raise MemdiagError(f"no process with pid {pid}", EXIT_TARGET) from None
    except PermissionError:
        raise MemdiagError(f"cannot read /proc/{pid}/status (permission denied)",
                           EXIT_TARGET) from None


def process_name(pid, status):
    argv = protocol.proc_cmdline(pid)
    if argv and argv[0]:
        return os.path.basename(argv[0]) or status.get("Name", "?")
    return status.get("Name", "?")


def find_hook(pid):
    """The hook's registry entry for pid, checked; MemdiagError says why not."""
    if pid <= 0:
        raise MemdiagError(f"{pid} is not a valid pid", EXIT_TARGET)
    status = proc_status(pid)
    uid = protocol.status_uid(status)
    name = process_name(pid, status)
    me = os.getuid()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise MemdiagError(f"no process with pid {pid}", EXIT_TARGET) from None
    except PermissionError:
        raise MemdiagError(f"pid {pid} ({name}) belongs to uid {uid}; run memdiag as that "
                           f"user or as root", EXIT_TARGET) from None
    try:
        info = protocol.read_entry(pid, uid)
    except protocol.UntrustedEntry as e:
        raise MemdiagError(f"pid {pid} ({name}): its hook registry entry {e.path} or "
                           f"its directory is not uid {uid}'s alone; not trusting it "
                           f"(another user may have planted it)", EXIT_TARGET) from None
    except protocol.BadEntry as e:
        raise MemdiagError(f"pid {pid}: {e}", EXIT_TARGET) from None
    except PermissionError:
        raise MemdiagError(f"pid {pid} ({name}) belongs to uid {uid} and its hook registry is "
                           f"not readable by uid {me}; run memdiag as that user",
                           EXIT_TARGET) from None
    if info is None:
        if protocol.stepped_aside(pid, uid):
            raise MemdiagError(f"pid {pid} ({name}) took its memdiag hook's signal for itself "
                               f"(a gunicorn master does), so the hook stepped aside; snapshot "
                               f"its workers with --children {pid}, or start it with another "
                               f"signal (memdiag run --signal USR1)", EXIT_TARGET)
        if not protocol.proc_is_python(pid, status):
            raise MemdiagError(f"pid {pid} ({name}) is not a Python process; memdiag will "
                               f"not signal it", EXIT_TARGET)
        raise MemdiagError(f"pid {pid} ({name}) has no memdiag hook; start it with "
                           f"`memdiag run -- <command>` or call memdiag.install() in it",
                           EXIT_TARGET)
    signum = info["signal"]
    if not protocol.catches_signal(status, signum):
        sig = protocol.signal_name(signum)
        raise MemdiagError(f"pid {pid} ({name}) registered a memdiag hook but does not catch "
                           f"{sig} now (the program replaced the handler); not sending it, "
                           f"it could kill the process", EXIT_TARGET)
    info["uid"] = uid
    info["name"] = name
    return info
