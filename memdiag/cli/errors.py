"""Errors the CLI turns into one line and an exit code (README, "JSON and
exit codes", has the same table; a test keeps them equal).

    0  success (diff --exit-code: no suspect)
    1  diff --exit-code found a suspect
    2  bad command-line usage
    3  a snapshot file cannot be read (missing, not a snapshot, truncated,
       corrupted, written by a newer memdiag)
    4  the target process cannot be snapshotted (no such pid, not Python, no
       hook, another user's process, signal not caught); build-walker: no
       compiled walker can be built for that Python
    5  the target took no snapshot (it reported a failure, or the timeout ran out)
   70  internal error: a bug in memdiag (EX_SOFTWARE in sysexits.h)
  130  interrupted

"Found" is 1, as for `git diff --exit-code`, diff(1) and cmp(1): a script or
CI job that already reads 1 as "there are differences" reads memdiag the same
way. An internal error is a bug, not an answer, so it must never look like
one: it gets 70, sysexits.h's EX_SOFTWARE ("an internal software error").
"""

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_USAGE = 2
EXIT_BAD_FILE = 3
EXIT_TARGET = 4
EXIT_SNAPSHOT_FAILED = 5
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class MemdiagError(Exception):
    """A failure with a one-line message and the exit code it maps to.

    >>> e = MemdiagError("diff needs at least two snapshots (oldest first)", EXIT_USAGE)
    >>> str(e), e.exit_code
    ('diff needs at least two snapshots (oldest first)', 2)
    """

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code
