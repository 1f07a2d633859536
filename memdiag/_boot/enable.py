"""MEMDIAG_ENABLE=1: the hook in every Python process of an environment
where memdiag is installed, without changing the command that starts it.

    $ MEMDIAG_ENABLE=1 MEMDIAG_DIR=/var/tmp/snaps gunicorn app:wsgi -w 4
    memdiag: pid 4242 writes a heap snapshot to /var/tmp/snaps on SIGUSR2 (memdiag snapshot 4242)

memdiag's wheel puts memdiag-enable.pth at the top of site-packages (as
coverage does for its subprocess measurement), and Python runs its one line
at startup in every process of that environment:

    import os; os.environ.get("MEMDIAG_ENABLE", "") not in ("", "0") and __import__("memdiag._boot.enable")

A process without the variable pays one dictionary lookup and imports
nothing of memdiag's. With it, importing this module loads the hook as
`memdiag run` does (stdlib only, under a private name, options from the
environment: MEMDIAG_DIR, MEMDIAG_SIGNAL, MEMDIAG_MODE, MEMDIAG_STRINGS,
MEMDIAG_TRACE_FRAMES, MEMDIAG_RSS_LIMIT and the other limit options,
MEMDIAG_QUIET: _memdiag_boot_loader.install_from_env) and installs it.

The memdiag command itself is left alone: in a pod whose spec sets
MEMDIAG_ENABLE, `kubectl exec POD -- memdiag snapshot 1` must not hook the
CLI (which would then list and signal itself).
"""

import os
import sys


def memdiag_command(argv):
    """Whether argv (sys.orig_argv: the interpreter first) runs the memdiag CLI:
    the `memdiag` console script, or `python -m memdiag...`."""
    k = 1
    while k < len(argv):
        arg = argv[k]
        if arg == "-m":
            return k + 1 < len(argv) and argv[k + 1].split(".")[0] == "memdiag"
        if arg in ("-X", "-W"):           # an option and its value
            k += 2
            continue
        if arg == "-c" or arg == "-" or not arg.startswith("-"):
            return os.path.basename(arg) == "memdiag"     # the console script
        k += 1
    return False


def _enable():
    if memdiag_command(getattr(sys, "orig_argv", None) or []):
        return
    here = os.path.dirname(os.path.abspath(__file__))
    loader = sys.modules.get("_memdiag_boot_loader")
    if loader is None:
        try:
            import importlib.util
            # by its path, as sitecustomize.py and `memdiag attach` load it
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
    loader.install_from_env(os.path.dirname(here))


_enable()
