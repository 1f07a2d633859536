"""Python 3.11-3.13: a debugger queues a pending call that runs the script.

The debugger attaches, stops the process for well under a second and makes
three calls in it on the thread it stopped:

1. `getpid()`: the probe. A debugger that cannot call functions in this
   process here (Debian's gdb 13.1 on an Intel CPU with AMX: "Couldn't write
   extended state status") fails on a call that changes nothing, and the
   next debugger is tried.
2. `mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`
   for the code's text, which the debugger then writes there as plain
   memory. Not malloc: a stopped thread may hold the allocator's lock, and
   mmap is a system call that takes none. The mapping (a few pages) is left
   in place: it cannot be unmapped before the code has run, and the code
   does not know where its text is.
3. `Py_AddPendingCall(PyRun_SimpleString, text)`. The interpreter runs
   pending calls on its main thread, holding the GIL, at its next safe
   point: the debugger never runs Python code itself, and never takes the
   GIL (PyGILState_Ensure from a debugger deadlocks with busy threads).
   Py_AddPendingCall needs neither the GIL nor a thread state.

The debugger is run with `set unwindonsignal on` (gdb): a call that faults
is unwound, and the process goes on as before. An error ends the
debugger's command file and it detaches. Candidates, in order: gdb, lldb,
gdb from the PyPI package gdb-for-pwndbg in memdiag's own environment;
MEMDIAG_DEBUGGER=lldb (or a path, or a comma-separated list) picks others.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

from .target import Target

INSTALL_ADVICE = ("install gdb (apt-get install gdb, dnf install gdb, apk add gdb) or lldb, "
                  "or `pip install gdb-for-pwndbg` into memdiag's own environment")
PROT_READ_WRITE = 3
MAP_PRIVATE_ANONYMOUS = 0x22
_PERMISSION = re.compile(r"Operation not permitted|ptrace: Permission denied|"
                         r"attach failed.*(?:permitted|denied)", re.I)


class DebuggerError(Exception):
    """kind: "missing" (no debugger), "unusable" (none could call functions),
    "permission" (ptrace refused), "other"."""

    def __init__(self, message, kind="other", tried=(), maybe_queued=False):
        super().__init__(message)
        self.kind = kind
        self.tried = list(tried)
        self.maybe_queued = maybe_queued   # the pending call may be queued all the same


class Debugger:
    def __init__(self, kind, path, label):
        self.kind = kind      # "gdb" or "lldb": which command language
        self.path = path
        self.label = label

    def __repr__(self):
        return f"Debugger({self.label!r}, {self.path!r})"


def candidates():
    """The debuggers to try, in order (MEMDIAG_DEBUGGER overrides)."""
    forced = os.environ.get("MEMDIAG_DEBUGGER")
    names = [n.strip() for n in forced.split(",") if n.strip()] if forced else None
    out = []
    if names is None:
        own = os.path.join(os.path.dirname(sys.executable), "gdb")
        for path, kind, label in ((shutil.which("gdb"), "gdb", "gdb"),
                                  (shutil.which("lldb"), "lldb", "lldb"),
                                  (own if os.access(own, os.X_OK) else None, "gdb",
                                   "gdb (memdiag's environment)")):
            if path and all(os.path.realpath(path) != os.path.realpath(d.path) for d in out):
                out.append(Debugger(kind, path, label))
        return out
    for name in names:
        path = name if os.sep in name else shutil.which(name)
        if path and os.access(path, os.X_OK):
            kind = "lldb" if "lldb" in os.path.basename(name) else "gdb"
            out.append(Debugger(kind, path, kind))
    return out


def gdb_commands(stub_file, size):
    return f"""set pagination off
set confirm off
set unwindonsignal on
set $memdiag_probe = (int)getpid()
printf "MEMDIAG-PROBE %d\\n", $memdiag_probe
set $memdiag_page = ((void *(*)(void *, unsigned long, int, int, int, long))mmap)(0, {size}, {PROT_READ_WRITE}, {MAP_PRIVATE_ANONYMOUS}, -1, 0)
printf "MEMDIAG-PAGE %ld\\n", (long)$memdiag_page
if (long)$memdiag_page == -1
  detach
  quit 3
end
restore {stub_file} binary $memdiag_page
printf "MEMDIAG-WRITTEN\\n"
set $memdiag_rc = ((int (*)(void *, void *))Py_AddPendingCall)((void *)PyRun_SimpleString, $memdiag_page)
printf "MEMDIAG-PENDING %d\\n", $memdiag_rc
detach
"""


def lldb_commands(stub_file, size):
    # lldb cannot pass a function's address as a call argument directly
    # ("Couldn't rewrite one of the arguments"): it goes through a variable.
    # A failed mmap (-1) makes `memory write` fail, which ends the file.
    return f"""expr -- int $memdiag_probe = (int)getpid()
expr -- $memdiag_probe
expr -- long $memdiag_page = (long)((void *(*)(void *, unsigned long, int, int, int, long))mmap)(0, {size}, {PROT_READ_WRITE}, {MAP_PRIVATE_ANONYMOUS}, -1, 0)
expr -- $memdiag_page
memory write -i {stub_file} $memdiag_page
expr -- unsigned long $memdiag_run = (unsigned long)&PyRun_SimpleString
expr -- int $memdiag_rc = ((int (*)(unsigned long, long))Py_AddPendingCall)($memdiag_run, $memdiag_page)
expr -- $memdiag_rc
process detach
"""


def _argv(debugger, pid, command_file):
    if debugger.kind == "lldb":
        return [debugger.path, "--no-lldbinit", "--batch", "-p", str(pid), "-s", command_file]
    return [debugger.path, "-nx", "-batch", "-iex", "set debuginfod enabled off",
            "-iex", "set auto-load off", "-p", str(pid), "-x", command_file]


def _parse(debugger, output):
    """{"probe": pid, "page": address, "rc": Py_AddPendingCall's result} as far as it got."""
    found = {}
    if debugger.kind == "gdb":
        for key, pattern in (("probe", r"^MEMDIAG-PROBE (-?\d+)$"), ("page", r"^MEMDIAG-PAGE (-?\d+)$"),
                             ("rc", r"^MEMDIAG-PENDING (-?\d+)$")):
            m = re.search(pattern, output, re.M)
            if m:
                found[key] = int(m.group(1))
    else:
        for key, name in (("probe", "memdiag_probe"), ("page", "memdiag_page"),
                          ("rc", "memdiag_rc")):
            m = re.search(r"^\((?:int|long)\) \$" + name + r" = (-?\d+)$", output, re.M)
            if m:
                found[key] = int(m.group(1))
    return found


def run_one(debugger, target: Target, stub: bytes, timeout):
    """Run one debugger session; returns (parsed markers, output)."""
    page = os.sysconf("SC_PAGE_SIZE")
    size = (len(stub) + page - 1) // page * page
    with tempfile.TemporaryDirectory(prefix="memdiag-attach-dbg-") as tmp:
        stub_file = os.path.join(tmp, "stub")
        with open(stub_file, "wb") as f:
            f.write(stub)
        command_file = os.path.join(tmp, "commands")
        with open(command_file, "w") as f:
            f.write((lldb_commands if debugger.kind == "lldb" else gdb_commands)(stub_file, size))
        # Its own session: a Ctrl-C at memdiag's terminal must not interrupt it
        # between two of its steps; memdiag stops waiting, the debugger finishes
        # (a second) and detaches, and the code it queued finds its token gone.
        proc = subprocess.Popen(_argv(debugger, target.pid, command_file), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", cwd=tmp, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            output = _interrupt(proc, debugger, target)
    return _parse(debugger, output), output


def _interrupt(proc, debugger, target):
    """A debugger stuck past its time: interrupt it (it unwinds the call it
    is in, then detaches). Never SIGKILL it: a debugger killed inside a call
    leaves the target running on the call's frame, and it would crash."""
    proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=20)
        return output + "\n(interrupted: it took too long)"
    except subprocess.TimeoutExpired:
        raise DebuggerError(
            f"{debugger.label} (pid {proc.pid}) did not finish with pid {target.pid}; it is "
            f"left running: do not kill -9 it while pid {target.pid} is stopped "
            f"(see `grep TracerPid /proc/{target.pid}/status`)", maybe_queued=True) from None


def inject(target: Target, stub: bytes, timeout=60.0):
    """Queue the pending call with the first debugger that can; returns how."""
    found = candidates()
    if not found:
        forced = os.environ.get("MEMDIAG_DEBUGGER")
        which = f"MEMDIAG_DEBUGGER={forced} names none that runs" if forced else "none found"
        raise DebuggerError(f"no debugger to attach to Python {target.version_text} with "
                            f"({which}); {INSTALL_ADVICE}", "missing")
    tried = []
    for debugger in found:
        markers, output = run_one(debugger, target, stub, timeout)
        if "rc" in markers:
            if markers["rc"] != 0:
                raise DebuggerError(f"Py_AddPendingCall in pid {target.pid} returned "
                                    f"{markers['rc']} (its queue is full); try again", tried=tried)
            return f"{debugger.label} ({debugger.path})"
        reason = _last_error(output)
        if "probe" not in markers:
            if _PERMISSION.search(output):
                raise DebuggerError(reason, "permission", tried=tried)
            tried.append(f"{debugger.label}: {reason}")
            continue   # could not call the harmless probe: try the next one
        # The probe ran but a later step failed, maybe inside Py_AddPendingCall:
        # another debugger could queue the code twice (harmless: the second
        # finds the token gone), but this is no failure to call functions.
        raise DebuggerError(f"{debugger.label} failed in pid {target.pid} after its probe "
                            f"call: {reason}", tried=tried, maybe_queued=True)
    raise DebuggerError(f"no debugger could call a function in pid {target.pid} "
                        f"({'; '.join(tried)}); {INSTALL_ADVICE}", "unusable", tried=tried)


def _last_error(output):
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        low = ln.lower()
        if "error" in low or "couldn't" in low or "cannot" in low or "not permitted" in low \
                or "ptrace" in low or "failed" in low:
            return ln.removeprefix("error: ")
    return lines[-1] if lines else "no output"
