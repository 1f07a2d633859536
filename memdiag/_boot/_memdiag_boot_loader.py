"""Loads memdiag's stdlib-only hook into a target under a private name.

Shared by `memdiag run` (sitecustomize.py, at interpreter startup),
MEMDIAG_ENABLE=1 (enable.py, from the .pth file installed with memdiag) and
`memdiag attach` (the code it injects into a running process). The package
directory is loaded as `_memdiag_hook`, so only the hook's own modules
(stdlib only) are imported, never memdiag's dependencies, and never a copy
of memdiag that the program itself has installed:

    >>> import memdiag, os
    >>> hook = load_hook(os.path.dirname(memdiag.__file__))   # importing it installs nothing
    >>> hook.__name__, hook.is_installed()
    ('_memdiag_hook.hook', False)

A process that has loaded it already (an earlier `run` or `attach`) gets the
same module back: one hook state, one signal handler. This module itself is
loaded by path, and kept in sys.modules under
its own private name, by its callers (sitecustomize.py, attach's payload):
the hook leaves modules named `_memdiag*` out of snapshots, where a module
dropped after use would linger as an unreachable cycle.
"""

import importlib
import importlib.util
import os
import sys

PRIVATE_NAME = "_memdiag_hook"
LOADER_NAME = "_memdiag_boot_loader"   # what callers load this file as


def load_hook(pkg_dir):
    """The hook module of the memdiag package in pkg_dir, loaded as _memdiag_hook.hook."""
    loaded = sys.modules.get(PRIVATE_NAME + ".hook")
    if loaded is not None:
        return loaded
    if PRIVATE_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PRIVATE_NAME, os.path.join(pkg_dir, "__init__.py"),
            submodule_search_locations=[pkg_dir])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PRIVATE_NAME] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[PRIVATE_NAME]
            raise
    return importlib.import_module(PRIVATE_NAME + ".hook")


def install_from_env(pkg_dir, environ=None):
    """Install the hook with the options the environment carries, for `memdiag
    run` and MEMDIAG_ENABLE=1 alike: MEMDIAG_DIR, MEMDIAG_SIGNAL (USR2),
    MEMDIAG_TRACE_FRAMES, MEMDIAG_STRINGS=1, MEMDIAG_MODE, MEMDIAG_RSS_LIMIT,
    MEMDIAG_RSS_STEP, MEMDIAG_MAX_SNAPSHOTS, MEMDIAG_EXIT_AFTER_SNAPSHOT=1, MEMDIAG_WATCHABLE=1.
    Says so in one line on stderr unless MEMDIAG_QUIET is set (and in a
    second one when the pure-Python walker walks, and why, unless `memdiag
    run` said so already: MEMDIAG_WALKER_SAID), then sets MEMDIAG_QUIET, so
    that the Python processes this one starts (which get their own hook
    from the same environment) say nothing. Never raises: the program must
    start even if the hook cannot be installed (that is one line on stderr)."""
    env = os.environ if environ is None else environ
    try:
        hook = load_hook(pkg_dir)
        directory = hook.install(
            dir=env.get("MEMDIAG_DIR") or None,
            signal=env.get("MEMDIAG_SIGNAL") or "USR2",
            trace_frames=int(env.get("MEMDIAG_TRACE_FRAMES") or 0),
            strings=env.get("MEMDIAG_STRINGS") == "1",
            mode=env.get("MEMDIAG_MODE") or "auto",
            rss_limit=env.get("MEMDIAG_RSS_LIMIT") or None,
            rss_step=env.get("MEMDIAG_RSS_STEP") or None,
            max_snapshots=int(env.get("MEMDIAG_MAX_SNAPSHOTS") or 5),
            exit_after_snapshot=env.get("MEMDIAG_EXIT_AFTER_SNAPSHOT") == "1",
            watchable=env.get("MEMDIAG_WATCHABLE") == "1")
        if not env.get("MEMDIAG_QUIET"):
            pid = os.getpid()
            sig = env.get("MEMDIAG_SIGNAL") or "USR2"
            os.write(2, (f"memdiag: pid {pid} writes a heap snapshot to {directory} on SIG"
                         f"{sig.upper().removeprefix('SIG')} (memdiag snapshot {pid})\n").encode())
            reason = hook.describe().get("walker_reason")
            # Never silently: the pure-Python walker, and why (unless `memdiag
            # run` said so before it started the program).
            if reason and not env.get("MEMDIAG_WALKER_SAID"):
                os.write(2, (f"memdiag: pid {pid} uses the pure-Python walker (tens of times "
                             f"slower; its forked child copies more of the program's "
                             f"memory): {reason}\n").encode())
        env["MEMDIAG_QUIET"] = "1"
    except Exception as e:
        try:
            os.write(2, f"memdiag: hook not installed: {e}\n".encode())
        except OSError:
            pass
