"""memdiag build-walker, and the compiled walker of a program whose Python is not
the CLI's: `memdiag run` and `memdiag attach` find it, or build it, before the
hook goes in, and say so when they cannot (memdiag/walker_build.py builds,
memdiag/walker_cache.py keeps and checks).

    $ memdiag build-walker --python python3.13
    memdiag: building the compiled walker for Python 3.13 into /home/me/.cache/memdiag/walkers (once for this Python and this memdiag)
    /home/me/.cache/memdiag/walkers/cpython-313-x86_64-linux-gnu-3f1c0a9e5b7d2c41/_walker.cpython-313-x86_64-linux-gnu.so
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import time

from .. import walker_build, walker_cache
from .common import hint, print_json
from .errors import EXIT_TARGET, EXIT_USAGE, MemdiagError

PURE = ("will use the pure-Python walker (tens of times slower; its forked child copies "
        "more of the program's memory)")
_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?t?)?$")


def say(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def command(python, force=False, as_json=False):
    exe = python if os.sep in python else shutil.which(python)
    if not exe or not os.path.isfile(exe):
        raise MemdiagError(f"--python {python}: no such interpreter", EXIT_USAGE)
    try:
        py = walker_build.probe(exe)
    except walker_build.BuildError as e:
        raise MemdiagError(str(e), EXIT_USAGE) from None
    t0 = time.monotonic()
    path = state = None
    if not force:
        try:
            path, state = walker_build.find(py)
        except walker_cache.Missing:
            pass
        except walker_cache.Unavailable as e:
            raise MemdiagError(f"{e}; remove it, or build again with --force",
                               EXIT_TARGET) from None
    if path is None:
        why = walker_build.refusal(py)
        if why:
            raise MemdiagError(why, EXIT_TARGET)
        try:
            path, state = walker_build.build(py, force=force, say=say), "built"
        except walker_build.BuildError as e:
            raise MemdiagError(str(e), EXIT_TARGET) from None
    if as_json:
        print_json({"python": ".".join(map(str, py.version)), "interpreter": py.path,
                    "state": state, "path": path,
                    "seconds": round(time.monotonic() - t0, 3)})
        return 0
    print(path)
    hint(f"next: memdiag run -- {shlex.quote(python)} app.py   (or memdiag attach PID): "
         f"the program loads this walker")
    return 0


# -------------------------------------------------------------- memdiag run

def interpreter_of(argv, path=None):
    """The Python that `argv` starts, when it can be told without running it:
    argv[0] itself (python3.13, python), or the interpreter on a script's
    #! line (console scripts such as gunicorn); None otherwise.

        >>> interpreter_of(["/usr/bin/python3.13", "app.py"])
        '/usr/bin/python3.13'
    """
    exe = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=path)
    if not exe:
        return None
    if _PYTHON_NAME.match(os.path.basename(exe)):
        return exe
    try:
        with open(exe, "rb") as f:
            first = f.read(512).split(b"\n", 1)[0]
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    try:
        words = shlex.split(first[2:].decode("utf-8", "replace"))
    except ValueError:
        return None
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        name = shutil.which(words[0], path=path) if words else None
    else:
        name = words[0] if words else None
    return name if name and _PYTHON_NAME.match(os.path.basename(name)) else None


def for_run(argv, env):
    """Before `memdiag run` execs argv: the compiled walker for its Python is
    found or built into the cache env names; when there can be none, one
    line says why and what to do, and the program's hook does not repeat it
    (MEMDIAG_WALKER_SAID). A program whose Python cannot be told from argv
    says itself, when it starts, if it walks in pure Python."""
    if env.get("MEMDIAG_PURE_PYTHON"):
        return None
    python = interpreter_of(argv, env.get("PATH"))
    if python is None:
        return None
    if _is_own_interpreter(python):
        return None
    plan = walker_build.plan(python, root=env.get("MEMDIAG_WALKER_CACHE"), say=say)
    if plan.python is None:
        return plan                     # not a Python we can ask: its hook will say
    if plan.reason:
        say(f"memdiag: warning: the program (Python {plan.python.short}, {python}) {PURE}: "
            f"{plan.reason}")
        env["MEMDIAG_WALKER_SAID"] = "1"
    return plan


def _is_own_interpreter(python):
    """python is the CLI's own interpreter, which has its walker next to memdiag."""
    try:
        same = os.path.realpath(python) == os.path.realpath(sys.executable)
    except OSError:
        return False
    import importlib.machinery
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return same and os.path.isfile(os.path.join(walker_cache.PKG_DIR, "_walker" + suffix))


# ----------------------------------------------------------- memdiag attach

def for_attach(target):
    """(cache root to pass to the target, Plan or None) before attach injects:
    the compiled walker for the target's Python is found or built. A target
    of another user looks in its own user's cache (the hook's default), where
    this user must not write: nothing is built for it."""
    if os.geteuid() != target.uid:
        return None, None
    from ..attach.remote import RemoteExecError, interpreter_for
    try:
        python = interpreter_for(target)
    except RemoteExecError:
        major, minor = target.version[:2]
        return None, walker_build.Plan(None, reason=(
            f"no python{major}.{minor} on PATH to build the compiled walker for the "
            f"target's Python with; install one, then run `memdiag build-walker --python "
            f"python{major}.{minor}`"))
    root = walker_cache.cache_root()
    return root, walker_build.plan(python, root=root, say=say)
