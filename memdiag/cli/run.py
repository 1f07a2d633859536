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
from ..hook_limits import parse_threshold
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
             mode="auto", rss_limit=None, rss_step=None, max_snapshots=5,
             exit_after_snapshot=False, watchable=False):
    """The environment that makes a Python program install the hook at startup.

    >>> env = hook_env({}, rss_limit="80%", rss_step="100M", exit_after_snapshot=True)
    >>> env["MEMDIAG_RSS_LIMIT"], env["MEMDIAG_RSS_STEP"], env["MEMDIAG_EXIT_AFTER_SNAPSHOT"]
    ('80%', '104857600', '1')
    """
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
    if not rss_limit and (rss_step or exit_after_snapshot):
        raise MemdiagError("--snapshot-every and --exit-after-snapshot need --snapshot-at-rss "
                           "(e.g. --snapshot-at-rss 80%)", EXIT_USAGE)
    if max_snapshots < 1:
        raise MemdiagError("--max-snapshots must be at least 1", EXIT_USAGE)
    for name, option, value in (("MEMDIAG_RSS_LIMIT", "--snapshot-at-rss", rss_limit),
                                ("MEMDIAG_RSS_STEP", "--snapshot-every", rss_step)):
        if value:
            env[name] = threshold_text(option, value)
        else:
            env.pop(name, None)
    env["MEMDIAG_MAX_SNAPSHOTS"] = str(int(max_snapshots))
    env["MEMDIAG_EXIT_AFTER_SNAPSHOT"] = "1" if exit_after_snapshot else "0"
    env["MEMDIAG_WATCHABLE"] = "1" if watchable else "0"
    return env


def threshold_text(option, value):
    """A size as bytes, a percentage as given (the hook resolves it against the
    process's own memory limit); MemdiagError (exit 2) if it is neither.

    >>> threshold_text("--snapshot-at-rss", "1.5G"), threshold_text("--snapshot-at-rss", " 80% ")
    ('1610612736', '80%')
    """
    try:
        size, fraction = parse_threshold(value)
    except ValueError as e:
        raise MemdiagError(f"{option}: {e}", EXIT_USAGE) from None
    return str(size) if fraction is None else f"{fraction * 100:g}%"


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
            rss_limit=None, rss_step=None, max_snapshots=5, exit_after_snapshot=False,
            watchable=False):
    if not argv:
        raise MemdiagError("nothing to run: memdiag run [options] -- python app.py", EXIT_USAGE)
    env = hook_env(None, directory, signal, trace_frames, strings, mode, rss_limit, rss_step,
                   max_snapshots, exit_after_snapshot, watchable)
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
