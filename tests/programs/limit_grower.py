"""A worker that grows when told to and retires on SIGTERM the way a gunicorn
worker does: its handler only clears a flag, the main loop finishes what it
is doing and returns, and the process exits 0.

stdin, one command a line:
    grow MIB    add MIB MiB of Python objects (1 MiB bytes objects, touched)
    rss         print "RSS <bytes>"
stdout: "READY pid=<pid>", "GREW <total MiB> rss=<bytes>" after each grow,
"RETIRED" when SIGTERM ended the loop. With --default-sigterm it leaves
SIGTERM at its default action, as a plain script does.
"""

import os
import select
import signal
import sys

alive = True


def on_sigterm(signum, frame):
    global alive
    alive = False


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


if "--default-sigterm" not in sys.argv:
    signal.signal(signal.SIGTERM, on_sigterm)
hoard = []
print(f"READY pid={os.getpid()}", flush=True)
pending = b""
while alive:
    ready, _, _ = select.select([sys.stdin], [], [], 0.05)
    if not ready:
        continue
    data = os.read(sys.stdin.fileno(), 4096)
    if not data:
        break
    pending += data
    while b"\n" in pending:
        line, pending = pending.split(b"\n", 1)
        words = line.decode().split()
        if words[:1] == ["grow"]:
            for _ in range(int(words[1])):
                hoard.append(bytes([len(hoard) % 256]) * (1 << 20))
            print(f"GREW {len(hoard)} rss={rss()}", flush=True)
        elif words[:1] == ["rss"]:
            print(f"RSS {rss()}", flush=True)
if not alive:
    print("RETIRED", flush=True)
sys.exit(0)
