"""A program for the `memdiag run` tests; it knows nothing about memdiag.

Prints `READY pid=... hook=... own_site=...`, then reads commands on stdin:
  grow N    append N new LeakedItem objects to the module-level LEAKY list,
            then print `GREW <total>`;
  imports   print `IMPORTS {json}`: which of memdiag's dependencies import here.
"""

import builtins
import json
import os
import sys

CANARY = "canary-memdiag-strings-" + str(7 * 6)   # made at run time, not a constant
LEAKY = []


class LeakedItem:
    def __init__(self, n):
        self.n = n


def try_import(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def main():
    info = {
        "pid": os.getpid(),
        "hook": "_memdiag_hook.hook" in sys.modules,
        "memdiag": "memdiag" in sys.modules,
        "own_site": getattr(builtins, "OWN_SITECUSTOMIZE_RAN", False),
        "python": "%d.%d" % sys.version_info[:2],
    }
    print("READY " + " ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "grow":
            for i in range(int(arg)):
                LEAKY.append(LeakedItem(i))
            print(f"GREW {len(LEAKY)}", flush=True)
        elif cmd == "imports":
            names = ("numpy", "rich", "typer", "memdiag")
            print("IMPORTS " + json.dumps({n: try_import(n) for n in names}), flush=True)


if __name__ == "__main__":
    main()
