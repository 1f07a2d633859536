"""Write two real snapshots of this process with memdiag.dump, a small leak
between them, for the fuzz and secrets tests to start from.

    python tests/programs/dump_pair.py DIR [--chunk N] [--strings] [--trace FRAMES]
                                           [--mode fork|inline]

Writes DIR/a.snap and DIR/b.snap and prints their paths. --chunk N makes the
writer cut columns into chunks of N values (many blocks in a small file);
--trace records allocation sites (tracemalloc) in a site column.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import memdiag  # noqa: E402
from memdiag import snapfile  # noqa: E402


class Session:
    def __init__(self, i):
        self.id = i
        self.user = f"user-{i}"
        self.tags = ["a", "b"]


REGISTRY = {"sessions": []}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--chunk", type=int, default=0)
    parser.add_argument("--strings", action="store_true")
    parser.add_argument("--trace", type=int, default=0)
    parser.add_argument("--mode", default="auto")
    args = parser.parse_args()
    if args.chunk:
        snapfile.CHUNK = args.chunk
    memdiag.install(dir=args.dir, trace_frames=args.trace)
    a = memdiag.dump(os.path.join(args.dir, "a.snap"), strings=args.strings, mode=args.mode)
    REGISTRY["sessions"].extend(Session(i) for i in range(200))
    b = memdiag.dump(os.path.join(args.dir, "b.snap"), strings=args.strings, mode=args.mode)
    print(a)
    print(b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
