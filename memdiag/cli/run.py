"""memdiag run [options] -- COMMAND ...: start any Python program with the hook.

The hook goes in through a sitecustomize on PYTHONPATH, so it works for
`python app.py`, `python -m pkg` and console scripts (gunicorn, uvicorn,
celery), also when memdiag lives in another environment than the app: only
memdiag's stdlib-only hook modules are loaded into the target, under a
private name, never memdiag's dependencies.
"""

from __future__ import annotations

import os
import shutil
import signal as _signal

from .. import protocol, walker_cache
from .errors import EXIT_USAGE, MemdiagError

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOT_DIR = os.path.join(_PKG_DIR, "_boot")


def parse_signal_option(value):
    """The signal number for --signal (USR2, SIGUSR2, 12); MemdiagError (exit 2) if
    it is unknown or cannot be caught.

    >>> parse_signal_option("usr1") == _signal.SIGUSR1
    True
    """
    try:
        signum = protocol.parse_signal(value)
    except ValueError as e:
        raise MemdiagError(f"--signal: {e}", EXIT_USAGE) from None
    if signum in (_signal.SIGKILL, _signal.SIGSTOP):
        raise MemdiagError(f"--signal {value}: {protocol.signal_name(signum)} cannot be "
                           f"caught, so it cannot trigger a snapshot (use USR2, the default, "
                           f"or USR1)", EXIT_USAGE)
    return signum


def hook_env(base=None, directory=None, signal="USR2", trace_frames=0, strings=False,
             mode="auto", rss_limit=None):
    """The environment that makes a Python program install the hook at startup."""
    env = dict(os.environ if base is None else base)
    parse_signal_option(signal)
    if mode not in protocol.MODES:
        raise MemdiagError("--mode must be auto, fork or inline", EXIT_USAGE)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOT_DIR + (os.pathsep + old if old else "")
    env["MEMDIAG_PKG_DIR"] = _PKG_DIR
    env["MEMDIAG_SIGNAL"] = str(signal)
    env["MEMDIAG_TRACE_FRAMES"] = str(int(trace_frames or 0))
    env["MEMDIAG_STRINGS"] = "1" if strings else "0"
    env["MEMDIAG_MODE"] = mode
    # Where the hook finds a compiled walker built for the program's Python
    # when memdiag was installed with another (memdiag build-walker).
    env["MEMDIAG_WALKER_CACHE"] = walker_cache.cache_root(env)
    if directory:
        env["MEMDIAG_DIR"] = os.path.abspath(directory)
    if rss_limit:
        try:
            env["MEMDIAG_RSS_LIMIT"] = str(protocol.parse_size(rss_limit))
        except ValueError as e:
            raise MemdiagError(f"--snapshot-at-rss: {e}", EXIT_USAGE) from None
    return env


def ignored_environment_flag(argv):
    """The interpreter option in argv that keeps the hook out (-E, -I, -S), if any.

    >>> ignored_environment_flag(["python3", "-I", "app.py"]), ignored_environment_flag(["python", "app.py", "-S"])
    ('-I', None)
    """
    if not os.path.basename(argv[0]).startswith("python"):
        return None
    for arg in argv[1:]:
        if arg == "--" or not arg.startswith("-") or arg in ("-m", "-c"):
            return None
        if arg.startswith("-") and not arg.startswith("--"):
            for letter in "EIS":
                if letter in arg[1:]:
                    return f"-{letter}"
    return None


def command(argv, directory=None, signal="USR2", trace_frames=0, strings=False, mode="auto",
            rss_limit=None):
    if not argv:
        raise MemdiagError("nothing to run: memdiag run [options] -- python app.py", EXIT_USAGE)
    env = hook_env(None, directory, signal, trace_frames, strings, mode, rss_limit)
    exe = argv[0]
    if os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None:
        raise MemdiagError(f"command not found: {exe}", EXIT_USAGE)
    flag = ignored_environment_flag(argv)
    if flag:
        import sys
        sys.stderr.write(f"memdiag: warning: python {flag} ignores PYTHONPATH or skips site, so "
                         f"the hook will not be installed; call memdiag.install() in the "
                         f"program instead\n")
    from . import walkers
    walkers.for_run(argv, env)     # the program's Python: its compiled walker, or why not
    try:
        os.execvpe(exe, argv, env)
    except OSError as e:
        raise MemdiagError(f"cannot run {exe}: {e.strerror}", EXIT_USAGE) from None
