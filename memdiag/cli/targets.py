"""Looking at a target process before signaling it.

SIGUSR2's default action kills a process, so memdiag sends it only to a
process whose hook registered itself (same pid and start time) and whose
signal mask shows the signal is caught right now.
"""

from __future__ import annotations

import json
import os
import signal
import stat

from .. import hook
from .errors import EXIT_TARGET, MemdiagError


def proc_status(pid):
    """Fields of /proc/<pid>/status, or raise MemdiagError if there is no such process."""
    try:
        with open(f"/proc/{pid}/status", "r", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise MemdiagError(f"no process with pid {pid}", EXIT_TARGET) from None
    except PermissionError:
        raise MemdiagError(f"cannot read /proc/{pid}/status (permission denied)",
                           EXIT_TARGET) from None
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def caught(status, signum):
    """Whether the SigCgt mask says the process catches `signum`."""
    try:
        mask = int(status.get("SigCgt", "0"), 16)
    except ValueError:
        return False
    return bool(mask >> (signum - 1) & 1)


def process_name(pid, status):
    name = status.get("Name", "?")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        if argv and argv[0]:
            name = os.path.basename(argv[0].decode(errors="replace")) or name
    except OSError:
        pass
    return name


def looks_like_python(pid, status):
    name = status.get("Name", "")
    if name.startswith("python"):
        return True
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        if os.path.basename(exe).startswith("python"):
            return True
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/maps", "r", errors="replace") as f:
            for line in f:
                if "libpython" in line:
                    return True
    except OSError:
        pass
    return False


def _owned_by(path, uid):
    """Whether the registry directory, the one above it and the entry are
    uid's, not symlinks, and writable by nobody else: anyone can create
    /tmp/memdiag-<uid> for a user who has none yet, and write entries there
    that name any pid and any signal."""
    base = os.path.dirname(os.path.dirname(path))
    for p in (base, os.path.dirname(path), path):
        st = os.lstat(p)
        if st.st_uid != uid or st.st_mode & 0o022 or stat.S_ISLNK(st.st_mode):
            return False
    return stat.S_ISREG(st.st_mode)


def find_hook(pid):
    """The hook's registry entry for pid, checked; MemdiagError says why not."""
    if pid <= 0:
        raise MemdiagError(f"{pid} is not a valid pid", EXIT_TARGET)
    status = proc_status(pid)
    uid = int((status.get("Uid", "0").split() or ["0"])[0])
    name = process_name(pid, status)
    me = os.getuid()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise MemdiagError(f"no process with pid {pid}", EXIT_TARGET) from None
    except PermissionError:
        raise MemdiagError(f"pid {pid} ({name}) belongs to uid {uid}; run memdiag as that "
                           f"user or as root", EXIT_TARGET) from None
    path = os.path.join(hook.registry_dir(uid), f"{pid}.json")
    info = None
    try:
        if not _owned_by(path, uid):   # before open(): a planted FIFO would block it
            raise MemdiagError(f"pid {pid} ({name}): its hook registry entry {path} or "
                               f"its directory is not uid {uid}'s alone; not trusting it "
                               f"(another user may have planted it)", EXIT_TARGET)
        with open(path, "rb") as f:
            info = json.loads(f.read(1 << 20))
    except FileNotFoundError:
        info = None
    except PermissionError:
        raise MemdiagError(f"pid {pid} ({name}) belongs to uid {uid} and its hook registry is "
                           f"not readable by uid {me}; run memdiag as that user",
                           EXIT_TARGET) from None
    except ValueError:
        info = None
    if not isinstance(info, dict) or info.get("pid") != pid:
        info = None
    if info is not None:
        start = hook._proc_start_time(pid)
        if info.get("start_time") is not None and start is not None and info["start_time"] != start:
            info = None  # a stale entry of an earlier process with the same pid
    if info is None:
        if not looks_like_python(pid, status):
            raise MemdiagError(f"pid {pid} ({name}) is not a Python process; memdiag will "
                               f"not signal it", EXIT_TARGET)
        raise MemdiagError(f"pid {pid} ({name}) has no memdiag hook; start it with "
                           f"`memdiag run -- <command>` or call memdiag.install() in it",
                           EXIT_TARGET)
    signum = info.get("signal")
    if not isinstance(signum, int) or not 0 < signum < 65:
        raise MemdiagError(f"pid {pid}: unreadable hook registry entry {path}", EXIT_TARGET)
    if not caught(status, signum):
        sig = signal.Signals(signum).name
        raise MemdiagError(f"pid {pid} ({name}) registered a memdiag hook but does not catch "
                           f"{sig} now (the program replaced the handler); not sending it, "
                           f"it could kill the process", EXIT_TARGET)
    info["uid"] = uid
    info["name"] = name
    info["registry"] = path
    return info
