"""What the hook (inside the target) and the CLI (outside it) agree on. Stdlib only.

The files, per user (`<tmp>` is tempfile.gettempdir())::

    <tmp>/memdiag-<uid>/                    0700; the default snapshot directory
        hooks/                              0700; the registry
            <pid>.json                      a hooked process (read_entry)
            <pid>.status                    its last snapshot's progress (write_status)
            <pid>.wake                      a FIFO the hook's thread waits on (`memdiag
                                            watch` writes its interval there)
            <pid>.live                      RSS and heap counters, refreshed while
                                            watched (read_status reads it too)
            <pid>.aside                     the program took the hook's signal: no
                                            entry, and its forks register when they
                                            reset that signal (stepped_aside)
        memdiag-<pid>-<seq>.snap            a complete snapshot, 0600
        .memdiag-<pid>-<seq>.<writer>.tmp   one being written by process <writer>

A registry entry is a JSON object: pid, start_time (field 22 of
/proc/<pid>/stat, which tells the process apart from a later one with the
same pid), signal (its number), signal_name, dir (where its snapshots go),
python, executable, argv (command_line(): redacted unless the hook writes
strings), hook_version, mode, compiled_walker (one was loaded), walker ("c"
or "python": the one that walks), walker_reason (why the pure-Python one
walks, with the fix; null for "c"), memory_limit ({bytes, source, file} or
null), rss_trigger (the RSS watcher's settings and automatic snapshots, or
null) and live (whether `memdiag watch` can read heap counters).

A status file is a JSON object {seq, state, time, ...}, state one of
WRITING (a forked writer runs: "writer" is its pid), WRITTEN ("path",
"bytes", "writer"), FAILED ("error") or COALESCED (the signal arrived while
a writer ran, and that writer's snapshot answers it: "writer" is its pid).

    >>> snapshot_name(4242, 3), parse_snapshot_name("memdiag-4242-3.snap")
    ('memdiag-4242-3.snap', (4242, 3))
    >>> parse_temp_name(temp_name(4242, 3, 4250))
    (4242, 3, 4250)
"""

from __future__ import annotations

import collections
import json
import os
import signal as _signal
import stat
import sys
import time

WRITING, WRITTEN, FAILED, COALESCED = "writing", "written", "failed", "coalesced"
MODES = ("auto", "fork", "inline")      # where the walk runs; auto: fork where possible

MAX_ENTRY_BYTES = 1 << 20
REGISTRY_FILES = ("json", "status", "wake", "live", "aside")   # <pid>.<ext> in the registry


class HookError(Exception):
    """A snapshot cannot be taken or written; the message is one line for a human."""


class RegistryError(Exception):
    """A registry entry exists but cannot be used; `path` is the entry."""

    def __init__(self, message, path):
        super().__init__(message)
        self.path = path


class UntrustedEntry(RegistryError):
    """The entry, or a directory above it, is not its user's alone."""


class BadEntry(RegistryError):
    """The entry names the process but no usable signal."""


# ---------------------------------------------------------------- directories

def base_dir(uid=None, tmp=None):
    """The per-user directory: <tmp>/memdiag-<uid> (tmp: this process's temp dir,
    unless another process's is given)."""
    if tmp is None:
        import tempfile
        tmp = tempfile.gettempdir()
    return os.path.join(tmp, f"memdiag-{os.getuid() if uid is None else uid}")


def registry_dir(uid=None, tmp=None):
    return os.path.join(base_dir(uid, tmp), "hooks")


def snapshot_dir(dir=None):
    """Where snapshots go: the argument, else $MEMDIAG_DIR, else base_dir()."""
    return os.path.abspath(dir or os.environ.get("MEMDIAG_DIR") or base_dir())


def _makedirs_private(path):
    """os.makedirs(path, exist_ok=True), but every directory it creates is 0700:
    makedirs gives the mode to the last one only, its parents get 0777 minus
    the umask (world-writable under umask 0)."""
    parent = os.path.dirname(path)
    if parent and parent != path and not os.path.exists(parent):
        _makedirs_private(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def make_private_dir(path, strict=None):
    """Create `path` 0700 if missing; refuse a symlink or a non-directory.

    strict (default: whether path is this user's base_dir()): also refuse a
    directory of another user, and take group and other access away.
    Raises HookError.
    """
    if strict is None:
        strict = path == base_dir()
    try:
        _makedirs_private(path)
    except OSError as e:
        raise HookError(f"cannot create {path}: {e.strerror}") from None
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise HookError(f"refusing to use {path}: not a plain directory")
    if strict and st.st_uid != os.getuid():
        raise HookError(f"refusing to use {path}: owned by uid {st.st_uid}")
    if strict and st.st_mode & 0o077:
        os.chmod(path, 0o700)


def owned_privately(path, uid):
    """Whether path is a regular file and it and the two directories above it
    are uid's, not symlinks, and writable by nobody else: anyone can create
    /tmp/memdiag-<uid> for a user who has none yet, and put entries there
    that name any pid and any signal."""
    base = os.path.dirname(os.path.dirname(path))
    for p in (base, os.path.dirname(path), path):
        st = os.lstat(p)
        if st.st_uid != uid or st.st_mode & 0o022 or stat.S_ISLNK(st.st_mode):
            return False
    return stat.S_ISREG(st.st_mode)


def read_json_object(path, limit):
    """The JSON object in the regular file at path, read as untrusted data:
    never through a symlink, at most `limit` bytes. ValueError when it is
    not a regular file or not a JSON object; OSError (FileNotFoundError
    among them) when it cannot be opened.

    >>> read_json_object("/proc/self/status", 4096)
    Traceback (most recent call last):
    ...
    ValueError: not a JSON object
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                 | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = os.read(fd, limit)
    finally:
        os.close(fd)
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def write_small(path, data):
    """Replace path with data (bytes) atomically: 0600, never through a symlink.
    The temporary name holds the thread too: the hook's RSS thread and its
    main thread may both rewrite the registry entry."""
    import _thread
    tmp = f"{path}.{os.getpid()}.{_thread.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# ------------------------------------------------------------------ registry

def entry_path(pid, uid=None, tmp=None):
    return os.path.join(registry_dir(uid, tmp), f"{pid}.json")


def status_path(pid, uid=None):
    return os.path.join(registry_dir(uid), f"{pid}.status")


def wake_path(pid, uid=None):
    return os.path.join(registry_dir(uid), f"{pid}.wake")


def live_path(pid, uid=None):
    return os.path.join(registry_dir(uid), f"{pid}.live")


def aside_path(pid, uid=None):
    return os.path.join(registry_dir(uid), f"{pid}.aside")


def write_entry(entry):
    """Register this process (entry["pid"]): creates the registry privately,
    removes the entries of processes that are gone, returns the entry's path."""
    reg = registry_dir()
    make_private_dir(os.path.dirname(reg), strict=True)
    make_private_dir(reg, strict=True)
    sweep_registry(reg)
    path = os.path.join(reg, f"{entry['pid']}.json")
    write_small(path, json.dumps(entry).encode())
    return path


def write_aside(pid, signum):
    """Say that the program took the hook's signal in this process (pid): its
    hook stepped aside, and the processes it forks register when they reset
    that signal (gunicorn's arbiter and workers)."""
    write_small(aside_path(pid), json.dumps(
        {"pid": pid, "start_time": proc_start_time(pid), "signal": signum}).encode())


def stepped_aside(pid, uid):
    """Whether pid, a process of uid, wrote write_aside()'s file (checked as
    read_entry checks an entry: uid's alone, this pid, this process) and
    still catches the signal the program took (an exec since then resets it).

    >>> stepped_aside(os.getpid(), os.getuid())
    False
    """
    path = aside_path(pid, uid)
    try:
        if not owned_privately(path, uid):
            return False
        said = read_json_object(path, 4096)
        status = proc_status(pid)
    except (OSError, ValueError):
        return False
    start = proc_start_time(pid)
    return (said.get("pid") == pid and start is not None and said.get("start_time") == start
            and valid_signal(said.get("signal")) and catches_signal(status, said["signal"]))


def remove_entry(path):
    """Remove a registry entry or status file, if it is there."""
    try:
        os.unlink(path)
    except OSError:
        pass


def sweep_registry(reg):
    """Remove the entries of processes that are gone (killed, or ended without
    uninstall()); every hooked process would otherwise leave its files."""
    try:
        names = os.listdir(reg)
    except OSError:
        return
    for name in names:
        stem, _, ext = name.partition(".")
        if ext in REGISTRY_FILES and stem.isdigit() and not pid_alive(int(stem)):
            remove_entry(os.path.join(reg, name))


def read_entry(pid, uid):
    """The registry entry of pid, a process of uid, checked; None if it has none.

    None also for an entry that does not parse, names another pid, or was
    left by an earlier process with the same pid. Raises UntrustedEntry when
    the entry or its directories are not uid's alone (checked before the
    open: a planted FIFO would block it), BadEntry when it names no valid
    signal, PermissionError when it is not readable. The entry returned has
    "registry" (its path) added.
    """
    path = entry_path(pid, uid)
    try:
        if not owned_privately(path, uid):
            raise UntrustedEntry(f"registry entry {path} or its directory is not uid "
                                 f"{uid}'s alone", path)
        with open(path, "rb") as f:
            entry = json.loads(f.read(MAX_ENTRY_BYTES))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("pid") != pid:
        return None
    recorded, start = entry.get("start_time"), proc_start_time(pid)
    if recorded is not None and start is not None and recorded != start:
        return None
    if not valid_signal(entry.get("signal")):
        raise BadEntry(f"unreadable hook registry entry {path}", path)
    directory = entry.get("dir")
    if directory is not None and not isinstance(directory, str):
        raise BadEntry(f"unreadable hook registry entry {path}", path)
    entry["registry"] = path
    return entry


def write_status(pid, seq, state, **fields):
    """Tell the CLI how snapshot `seq` of pid is going; never raises OSError."""
    try:
        write_small(status_path(pid), json.dumps(
            {"seq": seq, "state": state, "time": time.time(), **fields}).encode())
    except OSError:
        pass


def read_status(path):
    """A status file's JSON object, or None (missing, partial, or not an object)."""
    try:
        with open(path, "rb") as f:
            status = json.loads(f.read(MAX_ENTRY_BYTES))
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


# ------------------------------------------------------- the command line

# CPython's options (Python/getopt.c, Modules/main.c): flags, and those that
# take a value (in the same argument or the next one).
_PY_FLAGS = set("bBdEhiIOPqRsStuvVx?")
_PY_VALUED = set("cmWX")
_PY_LONG_FLAGS = {"--help", "--help-env", "--help-xoptions", "--help-all", "--version"}
_PY_HASH_PYCS = ("always", "never", "default")


def arg_placeholder(text):
    """What a snapshot writes for an argument whose contents it keeps out.

    >>> arg_placeholder("sk_live_51H")
    '<arg len 11>'
    """
    return f"<arg len {len(text)}>"


def option_name_like(name):
    """Whether an option's name (after its dashes) is written: ASCII letters,
    digits, '-' and '_', a letter first, at most 40 characters and 3 digits
    (a token passed where an option name goes is not one).

    >>> [option_name_like(n) for n in ("password", "max-requests", "http2", "Xk9f2Lq8Zt4")]
    [True, True, True, False]
    """
    if not 0 < len(name) <= 40 or not name.isascii() or not name[0].isalpha():
        return False
    if sum(c.isdigit() for c in name) > 3:
        return False
    return all(c.isalnum() or c in "-_" for c in name)


def _program_arg(arg, positional):
    """One argument after the program: an option's dashes and name are kept,
    its value and every other argument become <arg len N>."""
    if positional:
        return arg_placeholder(arg)
    if arg in ("-", "--"):
        return arg
    if arg.startswith("--"):
        name, eq, value = arg[2:].partition("=")
        if option_name_like(name):
            return f"--{name}={arg_placeholder(value)}" if eq else arg
        return arg_placeholder(arg)
    if len(arg) >= 2 and arg[0] == "-" and arg[1].isascii() and arg[1].isalpha():
        return arg if len(arg) == 2 else arg[:2] + arg_placeholder(arg[2:])
    return arg_placeholder(arg)


def _interpreter_value(option, value):
    """The value of -m (the program: written), -X (its name written), -c, -W."""
    if option == "m":
        return value
    if option == "X":
        name, eq, rest = value.partition("=")
        if option_name_like(name):
            return f"{name}={arg_placeholder(rest)}" if eq else name
    return arg_placeholder(value)


def _interpreter_part(argv):
    """(argv[0], the interpreter's options and the program as written, the
    index of the program's first argument), read as CPython reads them."""
    out, i = [argv[0]], 1
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("-", "--") or not arg.startswith("-"):
            out.append(arg)                         # the script, or - for stdin
            if arg == "--" and i < len(argv):       # -- then the script
                out.append(argv[i])
                i += 1
            return out, i
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if arg in _PY_LONG_FLAGS:
                out.append(arg)
                continue
            if name != "--check-hash-based-pycs":   # not CPython's: no more options
                out.append(arg_placeholder(arg))
                return out, i
            if not eq and i < len(argv):
                value = argv[i]
                i += 1
            shown = value if value in _PY_HASH_PYCS else arg_placeholder(value)
            out += [f"{name}={shown}"] if eq else [name, shown]
            continue
        for k in range(1, len(arg)):
            c = arg[k]
            if c in _PY_FLAGS:
                continue
            if c not in _PY_VALUED:                 # not CPython's: no more options
                out.append(arg[:k] + arg_placeholder(arg[k:]))
                return out, i
            if k + 1 < len(arg):                    # -Xdev, -mmodule
                out.append(arg[:k + 1] + _interpreter_value(c, arg[k + 1:]))
            else:                                   # -X dev
                out.append(arg)
                if i < len(argv):
                    out.append(_interpreter_value(c, argv[i]))
                    i += 1
            if c in "cm":                           # the program's arguments follow
                return out, i
            break
        else:
            out.append(arg)                         # flags only: -OO, -u
    return out, i


def command_line(strings=False):
    """This process's command line as snapshots write it: redacted_command of
    sys.orig_argv (sys.argv where that is empty: an embedded interpreter)."""
    return redacted_command(list(getattr(sys, "orig_argv", None) or sys.argv), strings)


def redacted_command(argv, strings=False):
    """The command line as snapshots and the registry write it (docs/FORMAT.md,
    "meta"): the interpreter, its options and the program in full; of the
    program's arguments, only the names of options (`--name`, `-n`); every
    value and every other argument is <arg len N> (its length in
    characters). With strings=True (`--strings`), argv as it is.

    argv is sys.orig_argv, the interpreter's command line. When argv[0] is
    not a python (a program embedding Python), argv[0] is the program and
    everything after it the program's arguments.

    >>> redacted_command(["python3", "-X", "dev", "-W", "ignore", "app.py",
    ...                   "--password=hunter2", "--verbose", "-pS3cret", "-v", "db.internal"])
    ['python3', '-X', 'dev', '-W', '<arg len 6>', 'app.py', '--password=<arg len 7>', '--verbose', '-p<arg len 6>', '-v', '<arg len 11>']
    >>> redacted_command(["python", "-um", "gunicorn", "app:wsgi", "--", "--token"])
    ['python', '-um', 'gunicorn', '<arg len 8>', '--', '<arg len 7>']
    >>> redacted_command(["python", "-c", "import app; app.run('s3cret')", "x"])
    ['python', '-c', '<arg len 29>', '<arg len 1>']
    """
    argv = [a for a in argv if type(a) is str]
    if strings or not argv:
        return argv
    if os.path.basename(argv[0]).startswith("python"):
        out, i = _interpreter_part(argv)
    else:
        out, i = [argv[0]], 1
    positional = False
    for arg in argv[i:]:
        out.append(_program_arg(arg, positional))
        positional = positional or arg == "--"
    return out


# -------------------------------------------------------------- file names

def snapshot_name(pid, seq):
    return f"memdiag-{pid}-{seq}.snap"


def parse_snapshot_name(name):
    """(pid, seq) of a snapshot file name, or None."""
    if not (name.startswith("memdiag-") and name.endswith(".snap")):
        return None
    pid, _, seq = name[len("memdiag-"):-len(".snap")].partition("-")
    if not (pid.isdigit() and seq.isdigit()):
        return None
    return int(pid), int(seq)


def snapshot_files(directory, pid):
    """Names of pid's snapshots in directory, by sequence number."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = [(parse_snapshot_name(n), n) for n in names]
    return [n for key, n in sorted(f for f in found if f[0]) if key[0] == pid]


def temp_name(pid, seq, writer):
    """The hidden name a snapshot has while process `writer` writes it."""
    return f".memdiag-{pid}-{seq}.{writer}.tmp"


def parse_temp_name(name):
    """(pid, seq, writer) of a temp file name, or None."""
    if not (name.startswith(".memdiag-") and name.endswith(".tmp")):
        return None
    head, _, writer = name[len(".memdiag-"):-len(".tmp")].rpartition(".")
    pid, _, seq = head.partition("-")
    if not (pid.isdigit() and seq.isdigit() and writer.isdigit()):
        return None
    return int(pid), int(seq), int(writer)


# ------------------------------------------------------- signals and sizes

def parse_signal(sig):
    """A signal number from 12, "12", "USR2" or "SIGUSR2"; ValueError if unknown.

    >>> parse_signal("usr2") == parse_signal("SIGUSR2") == parse_signal(int(_signal.SIGUSR2))
    True
    """
    try:
        if isinstance(sig, int):
            return _signal.Signals(sig).value
        name = str(sig).upper()
        if name.isdigit():
            return _signal.Signals(int(name)).value
        if not name.startswith("SIG"):
            name = "SIG" + name
        return _signal.Signals[name].value
    except (KeyError, ValueError):
        raise ValueError(f"unknown signal {sig!r}") from None


def signal_name(signum):
    """The name of a signal number.

    >>> signal_name(2), signal_name(99)
    ('SIGINT', 'signal 99')
    """
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def valid_signal(signum):
    return type(signum) is int and 0 < signum < 65


def parse_size(text):
    """Bytes from 1073741824, "1G", "1.5GiB", "512M", "800k".

    >>> parse_size("1.5G"), parse_size("512M"), parse_size(4096)
    (1610612736, 536870912, 4096)
    """
    if isinstance(text, int):
        value = text
    else:
        t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
        if scale > 1:
            t = t[:-1]
        try:
            value = int(float(t) * scale)
        except ValueError:
            raise ValueError(f"not a size: {text!r} (e.g. 1.5G, 800M)") from None
    if value <= 0:
        raise ValueError(f"not a size: {text!r} (e.g. 1.5G, 800M)")
    return value


# --------------------------------------------------------------------- /proc

ProcStat = collections.namedtuple("ProcStat",
                                  "state ppid start_time exit_code heap_start env_start")
ProcStat.__doc__ = """/proc/<pid>/stat: state (fields 3), ppid (4), start_time (22),
exit_code (52, Linux 3.5+: the wait status of a zombie; None when absent),
heap_start and env_start (47 and 50, start_brk and env_start: where exec put
the heap and the environment; 0 when hidden, without ptrace access to pid)."""


def proc_stat(pid):
    """ProcStat of pid; OSError (FileNotFoundError: no such process) or ValueError."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    try:
        # The command name (field 2) is in parentheses and may hold any byte.
        fields = data[data.rindex(b")") + 2:].split()
        exit_code = int(fields[49]) if len(fields) > 49 else None
        heap_start, env_start = (int(fields[44]), int(fields[47])) if len(fields) > 47 else (0, 0)
        return ProcStat(fields[0].decode("ascii", "replace"), int(fields[1]),
                        int(fields[19]), exit_code, heap_start, env_start)
    except (ValueError, IndexError):
        raise ValueError(f"unreadable /proc/{pid}/stat") from None


def proc_start_time(pid):
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), or None."""
    try:
        return proc_stat(pid).start_time
    except (OSError, ValueError):
        return None


def proc_status(pid):
    """The fields of /proc/<pid>/status as strings; OSError if unreadable."""
    with open(f"/proc/{pid}/status", "r", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def status_uid(status):
    """The real uid in a proc_status()."""
    try:
        return int((status.get("Uid", "0").split() or ["0"])[0])
    except ValueError:
        return 0


def catches_signal(status, signum):
    """Whether the SigCgt mask in a proc_status() says the process catches signum."""
    try:
        mask = int(status.get("SigCgt", "0"), 16)
    except ValueError:
        return False
    return bool(mask >> (signum - 1) & 1)


def proc_cmdline(pid):
    """The argv of pid ([] if unreadable; a kernel thread has none)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return []
    if not data:
        return []
    # A program that wrote a title over its argv (setproctitle) may leave no
    # final NUL, or pad the rest of the space it took with NULs.
    return [a.decode("utf-8", "replace") for a in data.rstrip(b"\0").split(b"\0")]


def proc_is_python(pid, status):
    """Whether pid looks like a Python: its name, its executable, or libpython mapped."""
    if status.get("Name", "").startswith("python"):
        return True
    try:
        if os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("python"):
            return True
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/maps", "r", errors="replace") as f:
            return any("libpython" in line for line in f)
    except OSError:
        return False


def descendants(pid):
    """The pids of pid's children, their children and so on, parents before
    their children (from the ppid in every /proc/<pid>/stat: one scan of
    /proc, about 1 ms per 100 processes). [] for a pid without children.

    >>> import subprocess, sys
    >>> child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    >>> child.pid in descendants(os.getpid())
    True
    >>> child.kill(); child.wait()
    -9
    """
    children = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            ppid = proc_stat(int(name)).ppid
        except (OSError, ValueError):
            continue            # gone since the listing
        children.setdefault(ppid, []).append(int(name))
    found, queue, seen = [], [pid], {pid}
    while queue:
        for child in sorted(children.get(queue.pop(0), ())):
            if child not in seen:
                seen.add(child)
                found.append(child)
                queue.append(child)
    return found


def rss_bytes(pid="self"):
    """Resident set size from /proc/<pid>/statm, or None."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid):
    """Whether a process pid exists (also one of another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
