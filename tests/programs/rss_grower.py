"""Grows its RSS by ~4 MiB of Python objects every 50 ms up to --cap-mib, then
idles until --max-seconds; prints READY first. Used to test --snapshot-at-rss."""

import argparse
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--cap-mib", type=int, default=120)
parser.add_argument("--max-seconds", type=float, default=60)
args = parser.parse_args()

hoard = []
print(f"READY port=0 pid={os.getpid()}", flush=True)
deadline = time.monotonic() + args.max_seconds
while time.monotonic() < deadline:
    if len(hoard) * 4 < args.cap_mib:
        hoard.append([str(i) for i in range(60_000)])   # ~4 MiB of str objects
    time.sleep(0.05)
