"""What memdiag attach learns about a process before touching it: /proc and ELF reads.

Every /proc read attach makes is here, so they can move to one shared place.
Nothing in this module writes to, signals or traces the process:

    >>> import os, sys
    >>> t = describe(os.getpid())     # here: the interpreter running this example
    >>> t.version[:2] == sys.version_info[:2], "Py_AddPendingCall" in t.symbols
    (True, True)
    >>> os.path.basename(t.runtime)   # doctest: +SKIP
    'libpython3.11.so.1.0'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from .. import protocol
from . import elf

PY_SYMBOLS = ("Py_Version", "Py_AddPendingCall", "PyRun_SimpleString", "_PyRuntime")
CAP_SYS_PTRACE = 19
_RUNTIME_NAME = re.compile(r"(?:^|/)(?:lib)?python(\d)\.(\d+)([a-z]*)(?:\.so[.\d]*)?$")


class TargetError(Exception):
    """The process cannot be attached to; the message is one line with advice."""


@dataclass
class Target:
    pid: int
    name: str
    uid: int
    gid: int
    status: Dict[str, str]
    runtime: Optional[str] = None            # the file that holds the interpreter
    version: Optional[Tuple[int, int, int]] = None
    abiflags: str = ""                       # "t": a free-threaded build
    symbols: Dict[str, object] = field(default_factory=dict)

    @property
    def version_text(self):
        if self.version is None:
            return "?"
        major, minor, micro = self.version
        return f"{major}.{minor}" + (f".{micro}" if micro >= 0 else "")


def proc_status(pid):
    """Fields of /proc/<pid>/status; TargetError if there is no such process."""
    try:
        return protocol.proc_status(pid)
    except FileNotFoundError:
        raise TargetError(f"no process with pid {pid}") from None
    except PermissionError:
        raise TargetError(f"cannot read /proc/{pid}/status (permission denied)") from None


def has_capability(status, cap):
    try:
        return bool(int(status.get("CapEff", "0"), 16) >> cap & 1)
    except ValueError:
        return False


def tracer(status):
    """The pid of the process tracing this one (a debugger), or 0."""
    try:
        return int(status.get("TracerPid", "0"))
    except ValueError:
        return 0


def process_name(pid, status):
    name = status.get("Name", "?")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0", 1)[0]
        if argv0:
            name = os.path.basename(argv0.decode(errors="replace")) or name
    except OSError:
        pass
    return name


start_time = protocol.proc_start_time     # tells a pid apart from a reused one


def environ_value(pid, key):
    """A variable of the environment the process started with (None if unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read(1 << 20)
    except OSError:
        return None
    prefix = key.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="surrogateescape")
    return None


def same_mount_namespace(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    except OSError:
        return True   # unreadable: let the attach itself say what fails


def _mapped_runtime_files(pid):
    """Paths of mapped files named like a Python interpreter or libpython."""
    out = []
    try:
        with open(f"/proc/{pid}/maps", "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    if _RUNTIME_NAME.search(path) and path not in out:
                        out.append(path)
    except OSError:
        pass
    return out


def describe(pid) -> Target:
    """The process, its interpreter file and version; TargetError if there is none."""
    if pid <= 0:
        raise TargetError(f"{pid} is not a valid pid")
    status = proc_status(pid)
    ids = status.get("Uid", "0").split() or ["0"]
    gids = status.get("Gid", "0").split() or ["0"]
    target = Target(pid=pid, name=process_name(pid, status), uid=int(ids[0]),
                    gid=int(gids[0]), status=status)
    candidates = [f"/proc/{pid}/exe"] + [f"/proc/{pid}/root{p}"
                                          for p in _mapped_runtime_files(pid)]
    named = None
    for path in candidates:
        match = _RUNTIME_NAME.search(_real_path(path))
        if match and named is None:
            named = match
        try:
            symbols = elf.dynamic_symbols(path, PY_SYMBOLS)
        except elf.ElfError:
            symbols = {}
        if "Py_Version" in symbols:
            target.runtime, target.symbols = _real_path(path), symbols
            hexversion = elf.read_symbol_value(path, symbols["Py_Version"])
            target.version = (hexversion >> 24, hexversion >> 16 & 0xFF, hexversion >> 8 & 0xFF)
            if match:
                target.abiflags = match.group(3)
            return target
        if "_PyRuntime" in symbols and target.runtime is None:
            target.runtime, target.symbols = _real_path(path), symbols
    if named is not None:   # older than 3.11 (no Py_Version): the file's name tells
        target.abiflags = named.group(3)
        target.version = (int(named.group(1)), int(named.group(2)), -1)
        target.runtime = target.runtime or _real_path(candidates[0])
    return target


def _real_path(path):
    try:
        if path.endswith("/exe") and path.startswith("/proc/"):
            return os.readlink(path)
        return os.path.realpath(path)
    except OSError:
        return path


def ptrace_denied_reason(target: Target, me_status=None) -> Optional[str]:
    """Why the kernel will not let this process trace the target, or None if it will.

    Opening /proc/<pid>/mem asks the kernel the same question as ptrace
    attach and process_vm_writev (PTRACE_MODE_ATTACH), without tracing.
    """
    try:
        fd = os.open(f"/proc/{target.pid}/mem", os.O_RDONLY)
        os.close(fd)
    except FileNotFoundError:
        raise TargetError(f"no process with pid {target.pid}") from None
    except PermissionError:
        return explain_ptrace_denied(target, me_status)
    except OSError:
        pass
    holder = tracer(proc_status(target.pid))
    if holder:
        return (f"pid {target.pid} is being traced by pid {holder} "
                f"({process_name(holder, status_or_empty(holder))}): a debugger or profiler "
                f"is attached; detach it and try again")
    return None


def explain_ptrace_denied(target: Target, me_status=None) -> str:
    """The advice for a refused ptrace: which of user, capability, Yama, container."""
    me = me_status or status_or_empty("self")
    my_uid = os.getuid()
    head = f"not allowed to trace pid {target.pid} ({target.name})"
    if my_uid != 0 and my_uid != target.uid:
        return (f"pid {target.pid} ({target.name}) belongs to uid {target.uid}; run memdiag "
                f"attach as that user or as root")
    can_ptrace = has_capability(me, CAP_SYS_PTRACE)
    scope = _read_int("/proc/sys/kernel/yama/ptrace_scope")
    if scope == 3:
        return (f"{head}: kernel.yama.ptrace_scope is 3, which forbids attaching to any "
                f"process until reboot")
    if not can_ptrace:
        where = container_kind()
        if where == "kubernetes":
            return (f"{head}: this container lacks CAP_SYS_PTRACE; add it in the pod's "
                    f"securityContext (capabilities: add: [\"SYS_PTRACE\"]) and run "
                    f"memdiag in the target's container (kubectl exec)")
        if where == "docker":
            return (f"{head}: this container lacks CAP_SYS_PTRACE; start it with "
                    f"`docker run --cap-add=SYS_PTRACE` (and run memdiag inside it)")
        if scope == 2:
            return (f"{head}: kernel.yama.ptrace_scope is 2 (admin only); run as root "
                    f"(sudo memdiag attach {target.pid})")
        if scope == 1:
            return (f"{head}: kernel.yama.ptrace_scope is 1, so only a parent may trace its "
                    f"children; run as root (sudo memdiag attach {target.pid}), or set "
                    f"`sysctl kernel.yama.ptrace_scope=0`")
        if target.uid != my_uid:
            return (f"{head}: it belongs to uid {target.uid} and this process lacks "
                    f"CAP_SYS_PTRACE; run memdiag as uid {target.uid}, or as root with "
                    f"CAP_SYS_PTRACE")
        return (f"{head}: it is not dumpable (it changed its uid, or called "
                f"prctl(PR_SET_DUMPABLE, 0)); run as root with CAP_SYS_PTRACE")
    return (f"{head} although this process has CAP_SYS_PTRACE: a seccomp filter (Docker's "
            f"default profile on an old kernel) or a security module refused it")


def container_kind():
    """"kubernetes", "docker" or None, from what this process can see of itself."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    try:
        with open("/proc/1/cgroup", "r", errors="replace") as f:
            cgroup = f.read()
    except OSError:
        cgroup = ""
    if "kubepods" in cgroup:
        return "kubernetes"
    if os.path.exists("/.dockerenv") or "docker" in cgroup or os.path.exists("/run/.containerenv"):
        return "docker"
    return None


# System calls a blocked main thread is typically in (number -> what it does).
_WAITS = {
    "x86_64": {0: "read", 7: "poll", 23: "select", 34: "pause", 35: "nanosleep",
               43: "accept", 45: "recvfrom", 47: "recvmsg", 61: "wait4", 202: "futex",
               230: "clock_nanosleep", 232: "epoll_wait", 270: "pselect6", 271: "ppoll",
               281: "epoll_pwait", 288: "accept4", 441: "epoll_pwait2"},
    "aarch64": {22: "epoll_pwait", 63: "read", 72: "pselect6", 73: "ppoll", 98: "futex",
                101: "nanosleep", 115: "clock_nanosleep", 202: "accept", 207: "recvfrom",
                212: "recvmsg", 242: "accept4", 260: "wait4", 441: "epoll_pwait2"},
}


def main_thread_wait(pid):
    """The system call the main thread is blocked in ("epoll_wait"), "running"
    when it runs, or None when unknown. /proc/<pid>/syscall needs the right to
    trace the process."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            first = f.read().split()[0]
    except (OSError, IndexError):
        return None
    if first == "running":
        return "running"
    try:
        number = int(first)
    except ValueError:
        return None
    return _WAITS.get(os.uname().machine, {}).get(number, f"system call {number}")


def status_or_empty(pid):
    try:
        return proc_status(pid)
    except TargetError:
        return {}


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
