"""Python 3.14+: hand the script to the target with sys.remote_exec (PEP 768).

sys.remote_exec must be called from the same Python version as the target's
(3.15 cannot send to 3.14), and memdiag's CLI may run another one, so it is
called through an interpreter of the target's version: the target's own
executable when it is a Python, else a pythonX.Y on PATH. It runs with -I
(no site, no environment, no user code), only to make that one call; the
target runs the script at its next safe point, on its main thread.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from .target import Target

RUNNER = r"""
import json, sys
try:
    sys.remote_exec(int(sys.argv[1]), sys.argv[2])
    out = {"ok": True}
except BaseException as e:
    out = {"ok": False, "type": type(e).__name__, "errno": getattr(e, "errno", None),
           "message": str(e)}
print(json.dumps(out))
"""
_PYTHON_NAME = re.compile(r"^python3(\.\d+)?t?$")


class RemoteExecError(Exception):
    """sys.remote_exec failed; `kind` is "permission", "disabled", "timeout" (the
    script may have been sent all the same) or "other"."""

    def __init__(self, message, kind="other"):
        super().__init__(message)
        self.kind = kind


def interpreter_for(target: Target):
    """An interpreter of the target's version to call sys.remote_exec from."""
    exe = f"/proc/{target.pid}/exe"
    try:
        exe_name = os.path.basename(os.readlink(exe))
    except OSError:
        exe_name = ""
    if _PYTHON_NAME.match(exe_name.removesuffix(" (deleted)")):
        return exe
    major, minor, _ = target.version
    if sys.version_info[:2] == (major, minor) and target.abiflags == getattr(sys, "abiflags", ""):
        return sys.executable
    found = shutil.which(f"python{major}.{minor}{target.abiflags}")
    if found:
        return found
    raise RemoteExecError(
        f"pid {target.pid} ({target.name}) embeds Python {major}.{minor}, and no "
        f"python{major}.{minor}{target.abiflags} is on PATH to call sys.remote_exec from; "
        f"install one (the same version as the target's)")


def inject(target: Target, script_path, timeout=60.0):
    """Ask the target to run script_path; returns a one-line description of how."""
    python = interpreter_for(target)
    try:
        p = subprocess.run([python, "-I", "-c", RUNNER, str(target.pid), script_path],
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise RemoteExecError(f"sys.remote_exec did not return within {timeout:g}s",
                              "timeout") from None
    except OSError as e:
        raise RemoteExecError(f"cannot run {python}: {e.strerror}") from None
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise RemoteExecError(f"{python} could not call sys.remote_exec: {err}") from None
    if out.get("ok"):
        return f"sys.remote_exec via {_shown(python, target)}"
    message = str(out.get("message") or out.get("type"))
    if out.get("type") == "PermissionError" or out.get("errno") in (1, 13):
        raise RemoteExecError(message, "permission")
    if "not enabled" in message or "disabled" in message:
        raise RemoteExecError(
            f"pid {target.pid} ({target.name}) has remote debugging turned off "
            f"(PYTHON_DISABLE_REMOTE_DEBUG, -X disable_remote_debug, or a build "
            f"--without-remote-debug); start it without that to attach, or use "
            f"`memdiag run` next time", "disabled")
    raise RemoteExecError(f"sys.remote_exec failed: {out.get('type')}: {message}")


def _shown(python, target):
    if python.startswith("/proc/"):
        return "the target's own interpreter"
    return python
