"""The code `memdiag attach` runs inside the target (stdlib only).

It is not imported there: the CLI appends one call,
`_attach_main({...request...})`, to this file's text, and the target runs
that on its main thread at a safe point (sys.remote_exec on 3.14+ runs it as
a script file in the CLI's private directory; on 3.11-3.13 a pending call
runs it through exec()), in a fresh namespace, so it leaves no names in the
program's modules. What it does there, in order:

1. Claims the request by renaming the file `token` to `token.claimed`. The
   CLI removes `token` when its timeout runs out; a rename that fails means
   the attach was called off (or this is a duplicate), and nothing happens
   but removing the directory's leftovers.
2. Says "already" if a memdiag hook is installed (memdiag run's, an earlier
   attach's, or the program's own memdiag.install()), and "refused" if the
   program has a handler of its own for the signal. Neither changes a thing.
3. Loads the hook from memdiag's own directory under the private name
   `_memdiag_hook` (the loader `memdiag run` uses), points it at the CLI's
   walker cache (where a compiled walker for this Python may be) and calls
   install().
4. Writes `result.json` for the CLI.

The program's own Python signal handlers are held back while it runs (a
handler that raises, as SIGINT's does, would otherwise raise into this code,
where the exception can go nowhere): a signal that arrives meanwhile is
recorded and the CLI sends it again once this code has returned. No
exception leaves this code: the pending-call route would turn one into a
SystemError in the program.
"""

import json
import os
import signal
import sys
import time


def _attach_main(request):
    directory = request["dir"]
    token = os.path.join(directory, "token")
    try:
        os.rename(token, token + ".claimed")
    except OSError:
        if not os.path.exists(os.path.join(directory, "result.json")):
            _remove_leftovers(directory)   # called off by the CLI's timeout
        return
    started = time.perf_counter()
    deferred = []
    result = _installed_already()   # first: holding handlers back would touch its
    if result is None:
        held = _hold_handlers(request["signal"], deferred)
        try:
            result = _attach(request)
        except BaseException as e:  # noqa: B036 - nothing may reach the program
            result = {"state": "failed", "error": _one_line(e)}
        finally:
            _restore_handlers(held)
    result["deferred_signals"] = sorted(set(deferred))
    result["seconds"] = round(time.perf_counter() - started, 6)
    _write_result(directory, result)


def _installed_already():
    """memdiag run's hook, an earlier attach's, or the program's own install()."""
    for name in ("_memdiag_hook.hook", "memdiag.hook"):
        module = sys.modules.get(name)
        is_installed = getattr(module, "is_installed", None)
        if is_installed is not None and is_installed():
            d = module.describe()
            return {"state": "already", "module": name, "signal": d["signal"],
                    "dir": d["dir"], "registry": d["registry"]}
    return None


def _attach(request):
    signum = request["signal"]
    current = signal.getsignal(signum)
    if current not in (signal.SIG_DFL, signal.SIG_IGN):
        return {"state": "refused", "handler": _describe(current)}
    pkg = request["pkg"]
    loader = sys.modules.get("_memdiag_boot_loader")   # as memdiag run loads it
    if loader is None:
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            "_memdiag_boot_loader", os.path.join(pkg, "_boot", "_memdiag_boot_loader.py"))
        loader = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loader)
        sys.modules["_memdiag_boot_loader"] = loader
    hook = loader.load_hook(pkg)
    use_cache = getattr(getattr(hook, "hook_walk", None), "use_cache", None)
    if request.get("walker_cache") and use_cache:   # the CLI's: a walker for this Python
        use_cache(request["walker_cache"])
    snapshot_dir = hook.install(dir=request["snapshot_dir"], signal=signum,
                                strings=request["strings"])
    pid = os.getpid()
    name = signal.Signals(signum).name
    try:
        os.write(2, (f"memdiag: attached: pid {pid} writes a heap snapshot to "
                     f"{snapshot_dir} on {name} (memdiag snapshot {pid})\n").encode())
    except OSError:
        pass
    d = hook.describe()
    return {"state": "installed", "module": hook.__name__, "signal": signum,
            "dir": snapshot_dir, "registry": d["registry"],
            "compiled_walker": d["compiled_walker"],
            "walker_error": d["walker_error"], "walker_reason": d.get("walker_reason"),
            "pure_python_forced": bool(os.environ.get("MEMDIAG_PURE_PYTHON"))}


def _hold_handlers(our_signum, deferred):
    """Put a recorder in place of every Python-level handler but ours."""
    def record(signum, frame):
        deferred.append(signum)
    held = []
    for signum in signal.valid_signals():
        if signum == our_signum:
            continue
        try:
            handler = signal.getsignal(signum)
            owner = str(getattr(handler, "__module__", None))
            if callable(handler) and not owner.startswith(("_memdiag", "memdiag")):
                signal.signal(signum, record)
                held.append((signum, handler, record))
        except (ValueError, OSError, TypeError):
            pass
    return held


def _restore_handlers(held):
    for signum, handler, record in held:
        try:
            if signal.getsignal(signum) is record:
                signal.signal(signum, handler)
        except (ValueError, OSError, TypeError):
            pass


def _describe(handler):
    if handler is None:
        return "a handler installed outside Python (C code)"
    name = getattr(handler, "__qualname__", None) or type(handler).__name__
    module = getattr(handler, "__module__", None)
    return f"{module}.{name}" if module else name


def _one_line(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _write_result(directory, result):
    try:
        data = json.dumps(result).encode()
    except (TypeError, ValueError):
        data = json.dumps({"state": "failed", "error": "unserializable result"}).encode()
    tmp = os.path.join(directory, "result.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(directory, "result.json"))


def _remove_leftovers(directory):
    for name in ("script.py",):
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass
