"""The in-target hook: stdlib only, nothing happens on import.

    >>> import memdiag
    >>> memdiag.install()                       # doctest: +SKIP
    >>> # kill -USR2 <pid>  ->  /tmp/memdiag-1000/memdiag-<pid>-1.snap

`install()` puts a handler on SIGUSR2 (or another signal). The handler
captures every thread's stack, forks, and returns; the forked child walks the
heap (which the fork froze) and writes the snapshot, so the target pauses only
for the fork. Where fork is unavailable or refused, the walk runs in-process.

Promises to the target:
- no exception from the hook reaches it (failures are one line on stderr);
- a signal that arrives while a snapshot is being taken is coalesced into it;
- the hook takes no lock the target might hold, and starts no thread;
- files are created 0600 under a temporary name and appear only complete.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import signal as _signal
import sys
import time
import types

from . import protocol, snapfile
from .protocol import HookError

__all__ = ["install", "uninstall", "dump", "is_installed", "snapshot_dir"]

HOOK_VERSION = "0.1.0"
CO_OPTIMIZED = 0x0001
_MODULE_DICT = types.ModuleType.__dict__["__dict__"]
_TYPE_MODULE = type.__dict__["__module__"]
_TYPE_MRO = type.__dict__["__mro__"]
_TYPE_DICT = type.__dict__["__dict__"]
_HERE = os.path.dirname(os.path.abspath(__file__))

try:  # the compiled walker, when it was built for this interpreter
    from . import _walker as _cwalker
except Exception:  # pragma: no cover - exercised by the fallback tests
    _cwalker = None


class _State:
    """Everything the hook keeps; one instance, excluded from snapshots."""

    def __init__(self):
        self.installed = False
        self.signum = None
        self.dir = None
        self.mode = "auto"
        self.strings = False
        self.trace_frames = 0
        self.seq = 0
        self.pid = None
        self.children = {}          # pid -> seq of snapshot children still running
        self.busy = False
        self.reported = set()
        self.prev_handler = None
        self.orig_signal = None     # signal.signal before we wrapped it
        self.app_handler = None     # what the program believes it installed
        self.taken_over = False
        self.registry_path = None
        self.fork_registered = False
        self.in_snapshot_fork = False
        self.stderr_fd = 2
        self.rss_limit = None       # bytes: snapshot once when RSS crosses it
        self.rss_interval = 1.0
        self.watcher = None         # the thread that watches RSS (only with rss_limit)


_state = _State()


# ------------------------------------------------------------------ paths

def snapshot_dir(dir=None):
    """Where snapshots go: the argument, else $MEMDIAG_DIR, else a per-user temp dir."""
    return protocol.snapshot_dir(dir)


# --------------------------------------------------------------- registry

def _register():
    pid = os.getpid()
    info = {
        "pid": pid, "start_time": protocol.proc_start_time(pid), "signal": _state.signum,
        "signal_name": protocol.signal_name(_state.signum), "dir": _state.dir,
        "python": sys.version.split()[0], "executable": sys.executable,
        "argv": list(sys.argv), "hook_version": HOOK_VERSION, "mode": _state.mode,
        "compiled_walker": _cwalker is not None,
    }
    _state.registry_path = protocol.write_entry(info)
    _state.pid = pid


def _unregister():
    path = _state.registry_path
    _state.registry_path = None
    if path and _state.pid == os.getpid():
        protocol.remove_entry(path)


def _write_status(seq, state, **fields):
    if _state.pid:
        protocol.write_status(_state.pid, seq, state, **fields)


# ---------------------------------------------------------------- install

def is_installed():
    return _state.installed


def install(dir=None, signal="USR2", trace_frames=0, strings=False, mode="auto",
            guard_signal=True, rss_limit=None):
    """Install the snapshot handler in this process.

    dir: where snapshots go (default $MEMDIAG_DIR, else /tmp/memdiag-<uid>).
    signal: "USR2", "SIGUSR2" or a number.
    trace_frames: if > 0, start tracemalloc with that many frames, so each
        object carries its allocation site.
    strings: write the contents of str objects (off: only their lengths).
    mode: "auto" (fork when possible), "fork" or "inline".
    guard_signal: keep the handler when the program later resets the signal to
        its default (gunicorn workers do); a program that installs its own
        handler for it still wins, and the hook unregisters itself.
    rss_limit: bytes, or a size like "1.5G": take one snapshot when the
        process's RSS crosses it (the evidence, before a supervisor recycles
        the process). A daemon thread checks RSS every second; it is the
        hook's only thread and only exists with this option. It re-arms when
        RSS falls below 80% of the limit.

    Must be called from the main thread. Calling it again reconfigures.
    Returns the snapshot directory.
    """
    signum = protocol.parse_signal(signal)
    _prepare()
    if mode not in protocol.MODES:
        raise ValueError("mode must be 'auto', 'fork' or 'inline'")
    directory = snapshot_dir(dir)
    protocol.make_private_dir(directory)
    if _state.installed and _state.signum != signum:
        uninstall()
    _state.signum = signum
    _state.dir = directory
    _state.mode = mode
    _state.strings = bool(strings)
    _state.trace_frames = int(trace_frames or 0)
    if _state.trace_frames > 0:
        import tracemalloc
        if not tracemalloc.is_tracing():
            tracemalloc.start(_state.trace_frames)
    setter = _state.orig_signal or _signal.signal
    prev = setter(signum, _on_signal)
    if not _state.installed:
        _state.prev_handler = prev
        _state.app_handler = prev
    _state.installed = True
    _state.taken_over = False
    if guard_signal and _state.orig_signal is None:
        _state.orig_signal = _signal.signal
        _signal.signal = _guarded_signal
    _state.rss_limit = protocol.parse_size(rss_limit) if rss_limit else None
    try:
        _state.rss_interval = max(0.05, float(os.environ.get("MEMDIAG_RSS_INTERVAL") or 1.0))
    except ValueError:
        _state.rss_interval = 1.0
    _start_watcher()
    if not _state.fork_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _state.fork_registered = True
    _register()
    return directory


def _prepare():
    """Import now what a snapshot needs, so the forked child imports nothing:
    a module imported in the child would appear in its snapshot."""
    global _walker_mod
    if _walker_mod is None:
        from . import walker
        _walker_mod = walker
    if not _compiled():
        # The pure-Python walker tells an existing instance __dict__ from
        # inline values by reading the dict pointer (ctypes, imported once now).
        _walker_mod.enable_pointer_reads()


_walker_mod = None


def uninstall():
    """Remove the handler, restore what was there before, forget the registry."""
    if not _state.installed:
        return
    setter = _state.orig_signal or _signal.signal
    if _state.orig_signal is not None:
        _signal.signal = _state.orig_signal
        _state.orig_signal = None
    try:
        setter(_state.signum, _state.prev_handler if _state.prev_handler is not None
               else _signal.SIG_DFL)
    except (ValueError, TypeError, OSError):
        pass
    _unregister()
    _state.installed = False


def _guarded_signal(signalnum, handler):
    """signal.signal as the program sees it while the hook is installed."""
    orig = _state.orig_signal
    if (_state.taken_over and signalnum == _state.signum
            and handler in (_signal.SIG_DFL, _signal.SIG_IGN)):
        # The program lets go of the signal it took: a gunicorn worker resets
        # what its arbiter took before forking it. The hook takes it back.
        result = orig(signalnum, _on_signal)
        _state.taken_over = False
        _state.installed = True
        _state.app_handler = _state.prev_handler = handler
        try:
            _register()
        except Exception:
            pass
        return result
    if not _state.installed or signalnum != _state.signum or _state.taken_over:
        return orig(signalnum, handler)
    previous = _state.app_handler
    if handler in (_signal.SIG_DFL, _signal.SIG_IGN):
        # A reset (as in gunicorn's workers): keep snapshots working.
        _state.app_handler = handler
        _state.prev_handler = handler
        return previous if previous is not None else _signal.SIG_DFL
    # The program wants this signal for itself: it wins.
    result = orig(signalnum, handler)
    _state.taken_over = True
    _state.installed = False
    _unregister()
    _say(f"memdiag: {_signal.Signals(signalnum).name} was taken over by the program; "
         f"snapshots are off in pid {os.getpid()} (use another signal: --signal)")
    return previous if previous is not None else result


def _after_fork_in_child():
    if _state.in_snapshot_fork:
        return
    # A worker forked by the program (gunicorn, celery): register it.
    _state.children = {}
    _state.busy = False
    _state.seq = 0
    _state.watcher = None   # threads do not survive a fork
    if _state.installed:
        try:
            _register()
            _start_watcher()
        except Exception:
            pass


def _start_watcher():
    if not _state.rss_limit or (_state.watcher is not None and _state.watcher.is_alive()):
        return
    import threading
    t = threading.Thread(target=_watch_rss, name="memdiag-rss-watch", daemon=True)
    _state.watcher = t
    t.start()


def _watch_rss():
    """Send the hook's own signal once when RSS crosses the limit; the main
    thread then takes the snapshot exactly as for `kill -USR2`."""
    armed = True
    me = threading_ident()
    while _state.rss_limit and _state.watcher is not None and _state.watcher.ident == me:
        try:
            rss = protocol.rss_bytes()
            limit = _state.rss_limit
            if rss is not None and limit:
                if armed and rss >= limit and _state.installed and not _state.taken_over:
                    armed = False
                    _say(f"memdiag: RSS {rss >> 20} MiB crossed {limit >> 20} MiB in pid "
                         f"{os.getpid()}; taking a snapshot")
                    os.kill(os.getpid(), _state.signum)
                elif not armed and rss < 0.8 * limit:
                    armed = True
        except Exception:
            pass
        time.sleep(_state.rss_interval)


def threading_ident():
    import _thread
    return _thread.get_ident()


def _say(line):
    try:
        os.write(_state.stderr_fd, (line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def _report(kind, message):
    _say(f"memdiag: {message}")
    _state.reported.add(kind)


# ---------------------------------------------------------------- trigger

def _on_signal(signum, frame):
    try:
        _snapshot_from_signal()
    except Exception as e:  # never let the hook's failure reach the target
        if _raised_by_program_handler(e):
            raise  # the program's, not the hook's: losing it would lose its signal
        try:
            error = _one_line(e)
            _report("handler", f"snapshot failed: {error}")
            # `memdiag snapshot` is waiting: tell it now, not at its timeout.
            _write_status(_state.seq, protocol.FAILED, error=error)
        except Exception:
            pass


def _raised_by_program_handler(e):
    """Whether e went through one of the program's Python signal handlers. Python
    runs a handler between two bytecodes of whatever the main thread runs, so
    a signal that arrives during a snapshot (an inline walk lasts seconds) has
    its handler run inside ours; what it raises (a server's SIGTERM handler
    raising its stop exception) is the program's and must reach the program."""
    codes = set()
    for sig in getattr(_signal, "valid_signals", lambda: ())():
        try:
            handler = _signal.getsignal(sig)
        except (ValueError, OSError):
            continue
        code = getattr(handler, "__code__", None)
        if code is not None and handler is not _on_signal:
            codes.add(code)
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False


def _one_line(e):
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        return f"{e.strerror}{where}"
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _reap():
    for pid in list(_state.children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0      # someone else reaped it
        except OSError:
            continue
        if done:
            seq = _state.children.pop(pid, None)
            if os.WIFSIGNALED(status):  # it could not say so itself (the OOM killer?)
                _report("writer", f"snapshot {seq} was not written: its writer (pid {pid}) "
                        f"was {_describe_status(status)}")


def _snapshot_from_signal():
    if _state.busy:
        return  # a snapshot is being taken right now: coalesce
    _reap()
    if _state.children:
        _write_status(_state.seq, protocol.COALESCED)
        return  # the previous snapshot's child is still writing: coalesce
    _state.busy = True
    try:
        _state.seq += 1
        _take(_state.seq, wait=False)
    finally:
        _state.busy = False


def dump(path=None, *, strings=None, mode=None):
    """Write a snapshot of this process now and return its path.

    The call returns when the file is complete. `path` defaults to the next
    `memdiag-<pid>-<seq>.snap` in the snapshot directory.
    """
    _prepare()
    if _state.dir is None:
        _state.dir = snapshot_dir()
        protocol.make_private_dir(_state.dir)
    if _state.busy:
        raise HookError("a snapshot is already being taken")
    _state.busy = True
    try:
        _state.seq += 1
        return _take(_state.seq, wait=True, path=path, strings=strings, mode=mode)
    finally:
        _state.busy = False


def _choose_mode(mode):
    mode = mode or _state.mode
    if mode == "auto":
        return "fork" if hasattr(os, "fork") and sys.platform.startswith("linux") else "inline"
    return mode


def _take(seq, wait, path=None, strings=None, mode=None):
    t0 = time.perf_counter()
    opts = {
        "seq": seq, "dir": _state.dir, "path": path, "pid": os.getpid(),
        "strings": _state.strings if strings is None else bool(strings),
        "trace": _tracing(), "rss": protocol.rss_bytes(), "time": time.time(),
        "t0": t0,
    }
    capture = _capture()
    opts["capture_seconds"] = time.perf_counter() - t0
    mode = _choose_mode(mode)
    if mode == "fork":
        try:
            return _take_forked(capture, opts, wait)
        except OSError as e:
            if "fork" not in _state.reported:   # once: the file's meta says "inline"
                _report("fork", f"fork refused ({e.strerror}); walking in-process instead, "
                        f"which pauses the program for the walk (said once)")
    return _take_inline(capture, opts)


def _tracing():
    tm = sys.modules.get("tracemalloc")
    return bool(tm and tm.is_tracing())


def _take_forked(capture, opts, wait):
    import warnings
    r, w = os.pipe()          # parent -> child: how long the parent paused
    back_r, back_w = os.pipe()  # child -> parent: the final path (for dump)
    _state.in_snapshot_fork = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except BaseException:
        _state.in_snapshot_fork = False
        for fd in (r, w, back_r, back_w):
            os.close(fd)
        raise
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(w)
            os.close(back_r)
            _close_inherited_fds(keep=(r, back_w, _state.stderr_fd))
            _child_setup()
            # `memdiag snapshot` watches this pid, in case the writer is killed.
            _write_status(opts["seq"], protocol.WRITING, writer=os.getpid())
            opts["mode"] = "fork"
            opts["pause_fd"] = r
            final = _write_snapshot(capture, opts, may_materialize=True)
            try:
                os.write(back_w, final.encode("utf-8", "surrogateescape"))
            except OSError:
                pass
            code = 0
        except BaseException as e:
            try:
                _report("write", f"snapshot {opts['seq']} failed: {_one_line(e)}")
                _write_status(opts["seq"], protocol.FAILED, error=_one_line(e))
                # dump() waits on this pipe: give it the reason (no path starts with NUL)
                os.write(back_w, b"\0" + _one_line(e).encode("utf-8", "replace"))
            except BaseException:
                pass
        finally:
            os._exit(code)
    _state.in_snapshot_fork = False
    os.close(r)
    os.close(back_w)
    pause = time.perf_counter() - opts["t0"]
    try:
        os.write(w, json.dumps({"pause": pause}).encode())
    except OSError:
        pass
    os.close(w)
    _release(capture)
    if wait:
        chunks = []
        try:
            while True:
                data = os.read(back_r, 65536)
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(back_r)
        _, status = os.waitpid(pid, 0)
        data = b"".join(chunks)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and data[:1] not in (b"", b"\0"):
            return data.decode("utf-8", "surrogateescape")
        if data[:1] == b"\0":
            raise HookError(data[1:].decode("utf-8", "replace"))
        raise HookError(f"snapshot child failed ({_describe_status(status)}); see stderr")
    os.close(back_r)
    _state.children[pid] = opts["seq"]
    return None


def _describe_status(status):
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _close_inherited_fds(keep):
    """Close the target's files and sockets in the snapshot child (0-2 and
    `keep` stay): a copy held here would keep a connection or pipe that the
    target closes open for its peer until the snapshot is written."""
    keep = set(keep) | {0, 1, 2}
    try:
        # The fds that are open, not every number up to the limit: without
        # close_range(2) closerange() tries each one, and a container's
        # nofile limit can be 2^30.
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except (OSError, ValueError):
        try:
            top = min(os.sysconf("SC_OPEN_MAX"), 1 << 16)
        except (ValueError, OSError):
            top = 1 << 16
        fds = range(3, max(top, 256))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass       # the listing's own fd, gone already


def _child_setup():
    gc.disable()
    # SIGXFSZ ignored: past RLIMIT_FSIZE the write fails with EFBIG (reported)
    # instead of killing the writer, also where the host left it at its default.
    quiet = (_state.signum, _signal.SIGPIPE, getattr(_signal, "SIGXFSZ", None))
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
                 "SIGCHLD", "SIGALRM", "SIGPIPE", "SIGXFSZ"):
        sig = getattr(_signal, name, None)
        if sig is None:
            continue
        try:
            (_state.orig_signal or _signal.signal)(
                sig, _signal.SIG_IGN if sig in quiet else _signal.SIG_DFL)
        except (ValueError, OSError):
            pass
    try:
        os.nice(10)
    except OSError:
        pass


def _take_inline(capture, opts):
    setter = _state.orig_signal or _signal.signal
    signum = _state.signum
    old = None
    if signum is not None:
        try:
            old = setter(signum, _signal.SIG_IGN)  # coalesce signals during the walk
        except (ValueError, OSError):
            old = None
    # A host that embeds Python without its signal setup (Py_InitializeEx(0))
    # leaves SIGXFSZ at its default action, which would kill the target when
    # the file reaches RLIMIT_FSIZE; ignored, the write fails with EFBIG.
    xfsz = getattr(_signal, "SIGXFSZ", None)
    old_xfsz = None
    try:
        if xfsz is not None and _signal.getsignal(xfsz) == _signal.SIG_DFL:
            old_xfsz = setter(xfsz, _signal.SIG_IGN)
    except (ValueError, OSError):
        old_xfsz = None
    was_enabled = gc.isenabled()
    gc.disable()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        opts["mode"] = "inline"
        opts["pause_fd"] = None
        return _write_snapshot(capture, opts, may_materialize=False)
    finally:
        sys.setswitchinterval(interval)
        if was_enabled:
            gc.enable()
        for sig, prev in ((signum, old), (xfsz, old_xfsz)):
            if prev is not None:
                try:
                    setter(sig, prev)
                except (ValueError, OSError):
                    pass
        _release(capture)


def _release(capture):
    """Let go of what the capture holds. Its frame list holds the frames of the
    hook's own calls, whose locals hold the list: a cycle that, in a target
    running with gc disabled, would keep those frames and the target's locals
    of that moment alive for good."""
    for v in list(capture.values()):
        if isinstance(v, list):
            v.clear()
    capture.clear()


# ---------------------------------------------------------------- capture

def _plain_attr(obj, dict_descriptor, name):
    """obj.__dict__[name], read through `dict_descriptor` (the __dict__ of a
    class obj is expected to be an instance of) so that no code of obj's
    class runs: no __getattribute__, property or dict subclass. None when
    obj is not such an instance or has no such attribute."""
    try:
        d = dict_descriptor.__get__(obj)
    except (TypeError, AttributeError):
        return None
    return dict.get(d, name) if isinstance(d, dict) else None


def _dict_descriptor(cls):
    """The __dict__ descriptor the instances of class cls get their dict from,
    found in the classes' own namespaces (no code of cls runs), or None."""
    for klass in _TYPE_MRO.__get__(cls):
        d = _TYPE_DICT.__get__(klass).get("__dict__")
        if type(d) is types.GetSetDescriptorType:
            return d
    return None


def _module_dict(mod):
    """A module's __dict__ without running code of a module subclass."""
    return _MODULE_DICT.__get__(mod)


def _thread_names():
    """{thread id: name} of the threads the threading module knows, and the
    main thread's: "MainThread" also in a program that never imported
    threading. No threading.enumerate(): it takes a lock the interrupted
    code may hold. Only exact str names and int ids are taken; a thread
    whose name is anything else shows as thread-<id>."""
    names = {}
    threading = sys.modules.get("threading")
    if issubclass(type(threading), types.ModuleType):
        namespace = _module_dict(threading)
        thread_cls = dict.get(namespace, "Thread")
        table = dict.get(namespace, "_active")
        if issubclass(type(thread_cls), type) and type(table) is dict:
            descriptor = _dict_descriptor(thread_cls)
            if descriptor is not None:
                for tid, t in list(table.items()):
                    name = _plain_attr(t, descriptor, "_name")
                    if type(tid) is int and type(name) is str:
                        names[tid] = name
    names.setdefault(_main_thread_id(), "MainThread")
    return names


def _is_hook_code(code):
    return os.path.dirname(code.co_filename) == _HERE


def _capture():
    """Every thread's frames, their locals and thread dicts, before any fork.

    Returns {"stack_roots": [(desc, name, obj)], "thread_roots": [(desc, dict)],
    "frames": [frame objects running now]}.
    """
    names = _thread_names()
    main_tid = _main_thread_id()
    if _compiled():
        return _cwalker.capture(names, main_tid, _HERE)
    stack_roots = []
    running = []
    frames = sys._current_frames()
    order = sorted(frames, key=lambda tid: (tid != main_tid, tid))
    for tid in order:
        f = frames[tid]
        tname = names.get(tid, f"thread-{tid}")
        while f is not None:
            code = f.f_code
            running.append(f)
            if not _is_hook_code(code):
                desc = f"{tname}: {code.co_name} ({code.co_filename}:{f.f_lineno})"
                if code.co_flags & CO_OPTIMIZED:
                    for name, value in list(f.f_locals.items()):
                        stack_roots.append((desc, name, value))
                elif f.f_locals is not f.f_globals:
                    stack_roots.append((desc, "<locals>", f.f_locals))
            f = f.f_back
    del frames
    return {"stack_roots": stack_roots, "thread_roots": [], "frames": running}


def _compiled():
    """Whether to use the compiled walker: built, and not refused with
    MEMDIAG_PURE_PYTHON=1, which forces the Python capture and walk both, the
    path a target takes where the compiled walker is not built."""
    return _cwalker is not None and not os.environ.get("MEMDIAG_PURE_PYTHON")


def _main_thread_id():
    """The main thread's id, read without calling into the threading module."""
    import _thread
    get_main = getattr(_thread, "_get_main_thread_ident", None)   # 3.13+
    if get_main is not None:
        return get_main()
    threading = sys.modules.get("threading")
    if issubclass(type(threading), types.ModuleType):
        namespace = _module_dict(threading)
        main, thread_cls = dict.get(namespace, "_main_thread"), dict.get(namespace, "Thread")
        if issubclass(type(thread_cls), type):
            descriptor = _dict_descriptor(thread_cls)
            ident = _plain_attr(main, descriptor, "_ident") if descriptor else None
            if type(ident) is int:
                return ident
    # Python runs signal handlers in the main thread, and without threading
    # there is no other name for it.
    return _thread.get_ident()


# ------------------------------------------------------------------ write

def _is_own_name(name):
    """Whether a sys.modules key names one of memdiag's modules (exact str
    keys only: a str subclass could run code in startswith)."""
    return type(name) is str and (name == "memdiag" or name.startswith(("memdiag.", "_memdiag")))


def _own_modules():
    """memdiag's modules in sys.modules (also when loaded as _memdiag_hook)."""
    return [(name, mod) for name, mod in list(sys.modules.items())
            if _is_own_name(name) and issubclass(type(mod), types.ModuleType)]


def _ignore_seeds(extra):
    """What the walk must not show: the state, memdiag's modules, their
    namespaces and the functions and classes defined in them, and `extra`.
    Everything only these reach is ignored too (the walker's mark phase)."""
    seeds = [_state, _state.__dict__]
    if _state.watcher is not None:
        seeds += [_state.watcher, _state.watcher.__dict__]
    for name, mod in _own_modules():
        seeds.append(mod)
        namespace = _module_dict(mod)
        if type(namespace) is not dict:
            continue
        seeds.append(namespace)
        for v in list(namespace.values()):
            if type(v) is types.FunctionType:
                owner = v.__module__
            elif issubclass(type(v), type):
                try:
                    owner = _TYPE_MODULE.__get__(v)
                except AttributeError:
                    continue
            else:
                continue
            if _is_own_name(owner):
                seeds.append(v)
    seeds.extend(extra)
    return seeds


def _module_roots():
    """[(name, module)] of sys.modules, by name: entries with exact str keys
    and a value other than None, memdiag's own left out, each object once."""
    own = {id(m) for _, m in _own_modules()}
    named = [(name, mod) for name, mod in list(sys.modules.items())
             if type(name) is str and mod is not None and id(mod) not in own]
    named.sort(key=_by_name)
    seen = set()
    roots = []
    for name, mod in named:
        if id(mod) not in seen:
            seen.add(id(mod))
            roots.append((name, mod))
    return roots


def _by_name(item):
    return item[0]


class _SnapFile:
    """A file that becomes visible under its final name only when complete.

    It is written under a hidden temp name (O_CREAT|O_EXCL|O_NOFOLLOW, 0600)
    that names the writer's pid, then hard-linked to the final name, which
    never overwrites an existing file. A temp file whose writer died is
    removed by the next snapshot.
    """

    def __init__(self, directory, pid, seq, path=None):
        self.directory = directory
        self.pid = pid
        self.seq = seq
        self.path = path
        self.tmp = os.path.join(directory, protocol.temp_name(pid, seq, os.getpid()))
        flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_NOFOLLOW", 0))
        self.fd = os.open(self.tmp, flags, 0o600)
        os.fchmod(self.fd, 0o600)

    def publish(self):
        os.fsync(self.fd)
        seq = self.seq
        for _ in range(1000):
            final = self.path or os.path.join(self.directory, protocol.snapshot_name(self.pid, seq))
            try:
                os.link(self.tmp, final, follow_symlinks=False)
                break
            except FileExistsError:
                if self.path:
                    raise HookError(f"{final} exists; will not overwrite it") from None
                seq += 1
        else:
            raise HookError("no free snapshot file name")
        os.unlink(self.tmp)
        self.tmp = None
        try:
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
        return final

    def discard(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        if self.tmp:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


def _clean_stale_temps(directory, pid):
    """Remove temp files of earlier snapshot writers of this pid that died."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        parsed = protocol.parse_temp_name(name)
        if parsed is None or parsed[0] != pid:
            continue
        writer = parsed[2]
        if writer != os.getpid() and not protocol.pid_alive(writer):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _write_snapshot(capture, opts, may_materialize):
    directory = opts["dir"]
    if opts.get("path"):
        directory = os.path.dirname(os.path.abspath(opts["path"]))
    if not os.path.isdir(directory):
        protocol.make_private_dir(directory)
    _clean_stale_temps(directory, opts["pid"])
    t_walk = time.perf_counter()
    snap = _SnapFile(directory, opts["pid"], opts["seq"], opts.get("path"))
    f = None
    try:
        f = os.fdopen(snap.fd, "wb", buffering=1 << 20, closefd=False)
        writer = snapfile.Writer(f)
        result = _walk(writer, capture, opts, may_materialize, extra_ignore=[snap, f, writer])
        meta = _meta(opts, result, time.perf_counter() - t_walk)
        trailer = dict(result["trailer"])
        trailer["meta"] = meta
        writer.finish(trailer)
        f.flush()
        final = snap.publish()
    except OSError as e:
        _close_buffer(f)
        snap.discard()
        if e.errno == errno.ENOSPC:
            raise HookError(f"no space left on device writing to {directory}") from None
        if e.errno == errno.EFBIG:
            raise HookError(f"file size limit reached writing to {directory}") from None
        raise
    except BaseException:
        _close_buffer(f)
        snap.discard()
        raise
    snap.discard()
    # "writer": `memdiag snapshot` waits for it to exit before its next signal,
    # which would otherwise be coalesced into this finished snapshot.
    _write_status(opts["seq"], protocol.WRITTEN, path=final, bytes=writer.bytes_written,
                  writer=os.getpid())
    return final


def _close_buffer(f):
    """Close the buffered file of a failed snapshot before its fd is closed. Left
    to the garbage collector, it would flush what it still holds into a closed
    fd (an "Exception ignored" traceback on the target's stderr) or into
    whatever file has reused that fd number by then. close() marks it closed
    even when its flush fails."""
    if f is not None:
        try:
            f.close()
        except (OSError, ValueError):
            pass


def _walk(writer, capture, opts, may_materialize, extra_ignore):
    modules = _module_roots()
    ignore = _ignore_seeds([capture, writer.__dict__, writer.pending, writer.counts,
                            modules] + list(extra_ignore))
    ignore.append(ignore)  # the list is the hook's too: not an unreached object
    try:
        return _walk_with(writer, capture, opts, may_materialize, modules, ignore)
    finally:
        ignore.clear()     # no self-reference left behind


def _walk_with(writer, capture, opts, may_materialize, modules, ignore):
    _prepare()
    if _compiled():
        type_name = _walker_mod.type_name
        result = _cwalker.walk(writer, modules, capture["stack_roots"],
                               capture["thread_roots"], ignore, capture["frames"],
                               opts["strings"], opts["trace"], may_materialize)
        trailer = result["trailer"]
        trailer["types"] = [type_name(t) for t in result.pop("type_objects")]
        return result
    w = _walker_mod.PyWalker(writer, strings=opts["strings"], trace=opts["trace"],
                 may_materialize=may_materialize)
    # Not `ignore + [w]`: that new list, seen as unreached, would land in w.objs
    # and make w (which holds every object) part of a cycle. w ignores itself.
    w.run(modules, capture["stack_roots"], capture["thread_roots"], ignore,
          capture["frames"])
    return {"trailer": w.trailer(), "walker": "python"}


def _meta(opts, result, walk_seconds):
    pause = None
    fd = opts.get("pause_fd")
    if fd is not None:
        try:
            data = os.read(fd, 4096)
            pause = json.loads(data).get("pause") if data else None
        except (OSError, ValueError):
            pause = None
        finally:
            os.close(fd)
    return {
        "pid": opts["pid"], "argv": list(sys.argv), "executable": sys.executable,
        "python": sys.version.split()[0], "implementation": sys.implementation.name,
        "platform": sys.platform, "time": opts["time"], "seq": opts["seq"],
        "mode": opts["mode"], "walker": result.get("walker", "python"),
        "rss": opts["rss"], "python_heap": result["trailer"].get("python_heap"),
        "walk_seconds": round(walk_seconds, 6),
        "capture_seconds": round(opts["capture_seconds"], 6),
        "pause_seconds": None if pause is None else round(pause, 6),
        "tracemalloc": opts["trace"], "strings": opts["strings"],
        "hook_version": HOOK_VERSION,
    }
