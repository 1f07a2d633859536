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
    except Exception as e:  # the program must start even if the hook cannot
        try:
            os.write(2, f"memdiag: hook not installed: {e}\n".encode())
        except OSError:
            pass
        return
    # The options come in the environment; children started with exec
    # (multiprocessing spawn, subprocesses) get their own hook from it too.
    loader.install_from_env(pkg)


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
