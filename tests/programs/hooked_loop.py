"""A program that installs the hook and then counts, forever.

    hooked_loop.py DIR MODE [OBJECTS]

Prints `READY pid=... walker=...`, then `COUNT n` about every 20 ms. Any
exception that reaches the loop (one the hook let escape) is printed as
`EXC ...` and ends the program with status 3. OBJECTS adds that many small
objects to the heap, to make a snapshot take a while.
"""

import os
import sys
import time

import memdiag
from memdiag import hook_walk

directory, mode = sys.argv[1], sys.argv[2]
objects = int(sys.argv[3]) if len(sys.argv) > 3 else 0

memdiag.install(dir=directory, mode=mode)
BALLAST = [(i, str(i)) for i in range(objects // 3)]
walker = "c" if hook_walk.cwalker is not None and not os.environ.get("MEMDIAG_PURE_PYTHON") else "python"
print(f"READY pid={os.getpid()} walker={walker}", flush=True)

n = 0
try:
    while True:
        n += 1
        print(f"COUNT {n}", flush=True)
        time.sleep(0.02)
except BaseException as e:  # the hook must never get here
    print(f"EXC {type(e).__name__}: {e}", flush=True)
    sys.exit(3)
