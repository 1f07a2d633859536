"""A program for the attach tests, started without memdiag; commands on stdin.

    python attach_target.py [--own-usr2] [--busy-threads N]

Prints `READY pid=<pid>`, then polls stdin every 20 ms, so its main thread
reaches a safe point often. Commands (one per line):

    state   -> STATE {json}: what the program sees: its SIGUSR2 handler, whether
               a memdiag hook module is loaded, the names in __main__
    grow N  -> GREW: N more LeakedItem objects in LEAKY
    block   -> BLOCKED, then one blocking read of stdin: no safe point until the
               next line arrives, which it answers with RELEASED
    collect -> COLLECTED n OURS m: gc.collect() found n unreachable objects
               (with --no-gc: all garbage cycles made since the last collect),
               m of them memdiag's (a function, class or namespace of a
               module named _memdiag*)
    exit    -> ends the program

--own-usr2 installs the program's own SIGUSR2 handler (it prints GOT-USR2);
--busy-threads N starts N threads that run Python code without pause;
--no-gc turns the cyclic gc off (as some services do).
"""

import gc
import json
import os
import select
import signal
import sys
import threading

LEAKY = []


class LeakedItem:
    def __init__(self, n):
        self.n = n
        self.payload = [n] * 4


def _own_usr2(signum, frame):
    os.write(1, b"GOT-USR2\n")


def _busy():
    x = 0
    while True:
        x = (x + 1) % 1000003


def _memdiag_s(o):
    if isinstance(o, dict):
        return "_attach_main" in o or str(o.get("__name__", "")).startswith("_memdiag")
    return str(getattr(o, "__module__", "")).startswith("_memdiag")


def state():
    handler = signal.getsignal(signal.SIGUSR2)
    if handler == signal.SIG_DFL:
        shown = "default"
    else:
        shown = getattr(handler, "__module__", "?") + "." + getattr(handler, "__qualname__", "?")
    return {"usr2": shown, "hook_loaded": "_memdiag_hook" in sys.modules,
            "memdiag_loaded": "memdiag" in sys.modules,
            "main_names": sorted(vars(sys.modules["__main__"]))}


def main():
    if "--own-usr2" in sys.argv:
        signal.signal(signal.SIGUSR2, _own_usr2)
    if "--busy-threads" in sys.argv:
        for _ in range(int(sys.argv[sys.argv.index("--busy-threads") + 1])):
            threading.Thread(target=_busy, daemon=True).start()
    if "--no-gc" in sys.argv:
        gc.disable()
        gc.collect()
    print(f"READY pid={os.getpid()}", flush=True)
    pending = b""
    while True:
        ready, _, _ = select.select([0], [], [], 0.02)
        if not ready:
            continue
        data = os.read(0, 4096)
        if not data:
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            cmd, *args = line.decode().split() or [""]
            if cmd == "state":
                print("STATE " + json.dumps(state()), flush=True)
            elif cmd == "grow":
                LEAKY.extend(LeakedItem(i) for i in range(int(args[0])))
                print("GREW", flush=True)
            elif cmd == "block":
                print("BLOCKED", flush=True)
                os.read(0, 1)          # blocks in read(2): no safe point
                pending = b""
                print("RELEASED", flush=True)
            elif cmd == "collect":
                gc.set_debug(gc.DEBUG_SAVEALL)
                n = gc.collect()
                ours = sum(1 for o in gc.garbage if _memdiag_s(o))
                gc.garbage.clear()
                gc.set_debug(0)
                print(f"COLLECTED {n} OURS {ours}", flush=True)
            elif cmd == "exit":
                return


if __name__ == "__main__":
    main()
