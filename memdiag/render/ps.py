"""`memdiag ps`: hooked processes as a table, or as dicts for --json.

Takes any objects with HookedProcess's fields (memdiag.cli.processes builds
them from the registry and /proc).

    >>> from types import SimpleNamespace as P
    >>> p = P(pid=4243, ppid=4242, command="gunicorn app:wsgi -w 3", rss=31 << 20,
    ...       python_heap=9 << 20, heap_time=0.0, snapshots=2, dir="/tmp/memdiag-0",
    ...       last_snapshot="/tmp/memdiag-0/memdiag-4243-2.snap", signal_name="SIGUSR2",
    ...       python="3.11.7")
    >>> ps_blocks([p])[0].rows
    [['4243', '4242', 'gunicorn app:wsgi -w 3', '31.0 MiB', '9.0 MiB', '2', '/tmp/memdiag-0']]
"""

from __future__ import annotations

from .blocks import Para, Table, human_bytes

COLUMNS = [("pid", "r"), ("parent", "r"), ("command", "l"), ("RSS", "r"),
           ("Python heap", "r"), ("snapshots", "r"), ("directory", "l")]


def ps_blocks(procs):
    rows = [[str(p.pid), "" if p.ppid is None else str(p.ppid), p.command, human_bytes(p.rss),
             "" if p.python_heap is None else human_bytes(p.python_heap), str(p.snapshots),
             p.dir or ""] for p in procs]
    caption = ("Python heap: at the process's last snapshot (blank before its first); "
               "RSS: now." if rows else "")
    blocks = [Table("Processes with the memdiag hook", COLUMNS, rows, caption)]
    if not rows:
        blocks.append(Para("Start one with `memdiag run -- <command>`, MEMDIAG_ENABLE=1, or "
                           "`memdiag attach PID`.", "dim"))
    return blocks


def ps_json(procs):
    return [{"pid": p.pid, "ppid": p.ppid, "command": p.command, "rss": p.rss,
             "python_heap": p.python_heap, "python_heap_time": p.heap_time,
             "snapshots": p.snapshots, "last_snapshot": p.last_snapshot, "dir": p.dir,
             "signal": p.signal_name, "python": p.python} for p in procs]
