"""Errors the CLI turns into one line and an exit code (documented in README).

    0  success (diff --exit-code: no suspect)
    1  diff --exit-code found suspects; or an unexpected internal error
    2  bad command-line usage
    3  a snapshot file cannot be read (missing, not a snapshot, truncated,
       corrupted, written by a newer memdiag)
    4  the target process cannot be snapshotted (no such pid, not Python, no
       hook, another user's process, signal not caught)
    5  the target took no snapshot (it reported a failure, or the timeout ran out)
  130  interrupted
"""

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_FILE = 3
EXIT_TARGET = 4
EXIT_SNAPSHOT_FAILED = 5
EXIT_INTERRUPTED = 130


class MemdiagError(Exception):
    """A failure with a one-line message and the exit code it maps to."""

    def __init__(self, message, exit_code=EXIT_INTERNAL):
        super().__init__(message)
        self.exit_code = exit_code
