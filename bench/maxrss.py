"""Run a command and write its wall time and peak RSS as JSON (bench only).

    maxrss.py OUT.json CMD [ARG ...]

Why not wait4() in bench/run.py directly: on Linux a process's ru_maxrss
starts from the memory of the process that spawned it (with vfork, from that
process's peak), so a CLI run started by the benchmark would report at least
the benchmark's own peak RSS. This launcher is a small fresh process: it
forks, the child execs CMD, and the RSS carried over is this launcher's
(about 10 MiB, less than any memdiag command's own).
"""

import json
import os
import sys
import time


def main():
    out, cmd = sys.argv[1], sys.argv[2:]
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as f:
        json.dump({"seconds": wall, "maxrss_bytes": usage.ru_maxrss * 1024, "exit": code}, f)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
