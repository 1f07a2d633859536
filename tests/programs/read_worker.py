"""Run memdiag CLI commands in-process under an address-space limit.

    python tests/programs/read_worker.py CASES.json LIMIT_MB SECONDS

CASES.json is a list of argv lists (e.g. ["top", "x.snap"]). After importing
everything, the worker caps its address space at (what it uses now +
LIMIT_MB), then runs each command through memdiag.cli.main.main with
MEMDIAG_DEBUG=1 (so an unexpected exception propagates instead of becoming
"internal error") and an alarm of SECONDS. One JSON line per case:
{"argv", "rc", "stderr", "error" (exception type or null), "seconds"}.
"""

import contextlib
import io
import json
import os
import resource
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ["MEMDIAG_DEBUG"] = "1"
os.environ["MEMDIAG_PLAIN"] = "1"

import memdiag.analysis.diff  # noqa: E402,F401
import memdiag.analysis.retainers  # noqa: E402,F401
import memdiag.analysis.top  # noqa: E402,F401
import memdiag.cli.diff  # noqa: E402,F401
import memdiag.cli.retainers  # noqa: E402,F401
import memdiag.cli.top  # noqa: E402,F401
from memdiag.cli.main import main  # noqa: E402


class CaseTimeout(BaseException):
    pass


def _alarm(signum, frame):
    raise CaseTimeout()


def vm_size():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def run(argv, seconds):
    out, err = io.StringIO(), io.StringIO()
    error = None
    rc = None
    t0 = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    except CaseTimeout:
        error = "timeout"
    except BaseException as e:  # noqa: BLE001 - reported, not hidden
        error = f"{type(e).__name__}: {e}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {"argv": argv, "rc": rc, "stderr": err.getvalue(), "error": error,
            "seconds": round(time.perf_counter() - t0, 3)}


def main_worker():
    cases_path, limit_mb, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    with open(cases_path) as f:
        cases = json.load(f)
    signal.signal(signal.SIGALRM, _alarm)
    run(["top", "/nonexistent"], seconds)      # warm up lazy imports before the cap
    cap = vm_size() + (limit_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    for argv in cases:
        print(json.dumps(run(argv, seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main_worker())
