"""A sample server (same interface as sample_leaks/) holding a big heap, so a
snapshot takes long enough to be interrupted mid-write.

    python tests/programs/big_heap_server.py [--objects 400000] [--port 0] [--max-seconds 600]

GET /ping answers "pong"; /stats gives {"objects"}.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "sample_leaks"))

from _server import serve  # noqa: E402


def main():
    n = 400_000
    if "--objects" in sys.argv:
        k = sys.argv.index("--objects")
        n = int(sys.argv[k + 1])
        del sys.argv[k:k + 2]
    global HEAP
    HEAP = [(i, f"item-{i}") for i in range(n)]
    return serve({"/ping": lambda q: "pong\n"}, lambda: {"objects": len(HEAP)},
                 "big heap server")


if __name__ == "__main__":
    sys.exit(main())
