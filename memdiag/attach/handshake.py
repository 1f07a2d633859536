"""The private directory through which the CLI and the injected code talk.

One directory per attach, 0700 and owned by the target's user, in the
target's temp directory: `memdiag-attach-<pid>-<start time>-<random>`. It
holds `token` (the request is still wanted), the script (for
sys.remote_exec) and, once the target has run the code, `result.json`.

The injected code claims the request by renaming `token`; the CLI calls it
off by removing `token`. Exactly one of the two succeeds, so a target that
reaches a safe point only after the CLI gave up installs nothing:

    >>> import os
    >>> from memdiag.attach.target import describe
    >>> h = Handshake.create(describe(os.getpid()), {"signal": "USR2"})
    >>> sorted(os.listdir(h.path)), h.claimed()
    (['script.py', 'token'], False)
    >>> h.cancel()         # the CLI gives up: a late target finds no token
    True
    >>> h.remove(); os.path.exists(h.path)
    False
"""

from __future__ import annotations

import os
import secrets
import stat
import time

from .. import protocol
from . import payload as _payload_module
from .target import Target, environ_value, start_time

PREFIX = "memdiag-attach-"
RESULT_LIMIT = 1 << 16


class HandshakeTimeout(Exception):
    """The target did not run the injected code in time (claimed=False: and now
    never will), or ran it but did not finish (claimed=True)."""

    def __init__(self, claimed):
        super().__init__("claimed" if claimed else "not claimed")
        self.claimed = claimed


class TargetGone(Exception):
    """The target exited while memdiag waited for it."""


def temp_base(target: Target):
    """The target's temp directory (where its hook registry goes too)."""
    for key in ("TMPDIR", "TEMP", "TMP"):
        value = environ_value(target.pid, key)
        if value and os.path.isabs(value) and os.path.isdir(value):
            return value
    return "/tmp"


def payload_source():
    with open(_payload_module.__file__, "r", encoding="utf-8") as f:
        return f.read()


def script_text(request):
    """The payload with its one call: what the target runs. Then it empties its
    namespace: the functions and that dict refer to each other, and a cycle
    left for the gc would show in a snapshot taken before the gc runs."""
    return (payload_source() + "\n\ntry:\n    _attach_main(" + repr(request) + ")\n"
            "except BaseException:\n    pass\nglobals().clear()\n")


def stub_text(request):
    """What a pending call runs (PyRun_SimpleString, in __main__'s namespace):
    the script, exec'd in a fresh namespace; binds no name in __main__, and
    lets no exception out (that would become a SystemError in the program)."""
    return ("try:\n    __import__('builtins').exec(" + repr(script_text(request)) +
            ", {'__name__': '_memdiag_attach', '__builtins__': __import__('builtins')})\n"
            "except BaseException:\n    pass\n")


class Handshake:
    def __init__(self, path, target):
        self.path = path
        self.target = target

    @classmethod
    def create(cls, target: Target, request: dict):
        base = temp_base(target)
        sweep(base)
        start = start_time(target.pid)
        path = os.path.join(base, f"{PREFIX}{target.pid}-{start}-{secrets.token_hex(4)}")
        os.mkdir(path, 0o700)
        h = cls(path, target)
        try:
            request = dict(request, dir=path)
            h._write("token", b"")
            h._write("script.py", script_text(request).encode("utf-8"))
            if os.getuid() != target.uid:
                os.chown(path, target.uid, target.gid)   # root attaching to another user
        except BaseException:
            h.remove()
            raise
        h.request = request
        return h

    def file(self, name):
        return os.path.join(self.path, name)

    def _write(self, name, data):
        fd = os.open(self.file(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def claimed(self):
        return os.path.lexists(self.file("token.claimed"))

    def result(self):
        """result.json as a dict, or None while there is none. The target's user
        owns the directory, so the file is read as untrusted data."""
        try:
            return protocol.read_json_object(self.file("result.json"), RESULT_LIMIT)
        except FileNotFoundError:
            return None
        except ValueError as e:
            return {"state": "failed", "error": f"unreadable result.json ({e})"}

    def wait(self, timeout, alive, claimed_grace=60.0):
        """The target's result. HandshakeTimeout(claimed=False) if it did not
        claim the request within `timeout` seconds (it is called off then, so
        nothing happens later); claimed=True if it claimed it but wrote no
        result within `claimed_grace` more seconds. TargetGone if it exited."""
        deadline = time.monotonic() + timeout
        called_off_tried = False
        delay = 0.005
        while True:
            value = self.result()
            if value is not None:
                return value
            if not alive():
                raise TargetGone()
            if time.monotonic() > deadline:
                if called_off_tried:
                    raise HandshakeTimeout(claimed=True)
                if self.cancel():
                    raise HandshakeTimeout(claimed=False)
                # Claimed just now: the hook is being installed; wait for it.
                called_off_tried = True
                deadline = time.monotonic() + claimed_grace
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    def cancel(self):
        """Call the request off; False if the target claimed it first. The
        script stays: a target that runs it later removes it and the directory."""
        try:
            os.unlink(self.file("token"))
            return True
        except FileNotFoundError:
            return False

    def remove(self):
        """Remove the directory and what the CLI or the target put in it."""
        remove_dir(self.path)


def remove_dir(path):
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        for name in ("token", "token.claimed", "script.py", "result.json", "result.json.tmp"):
            try:
                os.unlink(name, dir_fd=dfd)
            except OSError:
                pass
    finally:
        os.close(dfd)
    try:
        os.rmdir(path)
    except OSError:
        pass


def sweep(base):
    """Remove the directories of earlier attaches whose target is gone (one
    that was called off and never reached a safe point leaves its own)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(PREFIX):
            continue
        try:
            pid, start, _ = name[len(PREFIX):].split("-")
            pid = int(pid)
        except ValueError:
            continue
        if str(start_time(pid)) != start:
            path = os.path.join(base, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and (st.st_uid == os.getuid() or os.getuid() == 0):
                remove_dir(path)
