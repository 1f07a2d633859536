"""Installs the memdiag hook at interpreter startup (put here by `memdiag run`).

Only memdiag's stdlib-only hook modules are loaded, as the private package
`_memdiag_hook`, so the target never imports memdiag's own dependencies.
Then this file steps aside and imports the program's own sitecustomize, if
it has one.
"""


def _memdiag_boot():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    pkg = os.environ.get("MEMDIAG_PKG_DIR")
    if not pkg:
        return
    try:
        import importlib.util
        # The loader `memdiag attach` uses too; by its path, never from sys.path.
        loader = sys.modules.get("_memdiag_boot_loader")
        if loader is None:
            spec = importlib.util.spec_from_file_location(
                "_memdiag_boot_loader", os.path.join(here, "_memdiag_boot_loader.py"))
            loader = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loader)
            sys.modules["_memdiag_boot_loader"] = loader
        hook = loader.load_hook(pkg)
        directory = hook.install(
            dir=os.environ.get("MEMDIAG_DIR") or None,
            signal=os.environ.get("MEMDIAG_SIGNAL") or "USR2",
            trace_frames=int(os.environ.get("MEMDIAG_TRACE_FRAMES") or 0),
            strings=os.environ.get("MEMDIAG_STRINGS") == "1",
            mode=os.environ.get("MEMDIAG_MODE") or "auto",
            rss_limit=os.environ.get("MEMDIAG_RSS_LIMIT") or None,
            rss_step=os.environ.get("MEMDIAG_RSS_STEP") or None,
            max_snapshots=int(os.environ.get("MEMDIAG_MAX_SNAPSHOTS") or 5),
            exit_after_snapshot=os.environ.get("MEMDIAG_EXIT_AFTER_SNAPSHOT") == "1",
            watchable=os.environ.get("MEMDIAG_WATCHABLE") == "1")
        if not os.environ.get("MEMDIAG_QUIET"):
            pid = os.getpid()
            sig = os.environ.get("MEMDIAG_SIGNAL") or "USR2"
            os.write(2, (f"memdiag: pid {pid} writes a heap snapshot to {directory} on SIG"
                         f"{sig.upper().removeprefix('SIG')} (memdiag snapshot {pid})\n").encode())
        # Children started with exec (multiprocessing spawn, subprocesses) get
        # their own hook from the same environment; say nothing in each one.
        os.environ["MEMDIAG_QUIET"] = "1"
    except Exception as e:  # the program must start even if the hook cannot
        try:
            os.write(2, f"memdiag: hook not installed: {e}\n".encode())
        except OSError:
            pass


_memdiag_boot()
del _memdiag_boot

# Chain to the program's own sitecustomize, if there is one further on the path.
import sys as _sys  # noqa: E402

_self = _sys.modules.pop("sitecustomize", None)
try:
    import sitecustomize  # noqa: F401,E402
except ImportError:
    # None: importlib expects to find this module under its name when done.
    _sys.modules["sitecustomize"] = _self
except Exception as _e:  # pragma: no cover - the program's own file failed
    _sys.modules["sitecustomize"] = _self
    _sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{_e}\n")
del _sys, _self
