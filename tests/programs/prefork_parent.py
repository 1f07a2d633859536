"""A pre-fork server's shape, without the server: the parent takes SIGUSR2
for itself (as gunicorn's arbiter does), forks --workers children that reset
it to its default (as gunicorn's workers do) and then grow a list on each
line of their stdin... simply: each worker appends --grow items to
`WORKER_ITEMS` every time it gets SIGUSR1 (from the test), and the parent also
starts one child that is not Python (`sleep`).

Prints `READY parent=<pid> workers=<pid>,<pid>,... other=<pid>` once every
worker is forked and has reset its signals, then waits until SIGTERM (which
it passes on to the children) or --max-seconds.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

WORKER_ITEMS = []


class Item:
    pass


def worker(ready_w, grow):
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)      # gunicorn's workers do this
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    signal.signal(signal.SIGUSR1, lambda *a: WORKER_ITEMS.extend(Item() for _ in range(grow)))
    os.write(ready_w, b"x")
    os.close(ready_w)
    while True:
        time.sleep(3600)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--grow", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=300)
    args = parser.parse_args()
    signal.signal(signal.SIGUSR2, lambda *a: None)       # the arbiter's re-exec signal
    pids = []
    ready_r, ready_w = os.pipe()
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            worker(ready_w, args.grow)
        pids.append(pid)
    os.close(ready_w)
    for _ in pids:
        os.read(ready_r, 1)
    other = subprocess.Popen(["sleep", str(int(args.max_seconds))])

    def stop(*_):
        for pid in pids + [other.pid]:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for pid in pids + [other.pid]:
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"READY parent={os.getpid()} workers={','.join(map(str, pids))} other={other.pid}",
          flush=True)
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
    stop()


if __name__ == "__main__":
    main()
