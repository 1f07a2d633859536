"""Memory readings from inside memdiag's forked snapshot child (bench only).

    >>> import memdiag.hook, memdiag.hook_publish, probe
    >>> probe.attach(memdiag.hook_publish)          # doctest: +SKIP
    >>> memdiag.hook.dump("/tmp/a.snap", mode="fork")   # doctest: +SKIP
    >>> probe.read("/tmp/a.snap")["child_hwm_kb"]        # doctest: +SKIP

`attach` wraps `hook_publish.write_snapshot`, the function the forked child
runs. Before the walk the wrapper reads the child's RSS (all of it shared with
the parent at that moment) and the parent's /proc/<pid>/smaps_rollup; after the
file is complete it reads the child's peak RSS (VmHWM) and smaps_rollup and the
parent's smaps_rollup again, and writes them next to the snapshot as
`<snapshot>.probe.json`, with the CPU time the walk and write took. Its own
reading time is recorded, so the benchmark can subtract it from the snapshot
time. Inline snapshots pass straight through.
"""

from __future__ import annotations

import json
import os
import time

__all__ = ["attach", "read", "status", "rollup"]


def _kb_fields(text):
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[key.strip()] = int(parts[0])
    return out


def status(pid="self"):
    """VmRSS, VmHWM, ... of /proc/<pid>/status in kB."""
    with open(f"/proc/{pid}/status") as f:
        return _kb_fields(f.read())


def rollup(pid="self"):
    """Rss, Shared_Clean, Shared_Dirty, Private_Dirty, ... of smaps_rollup in kB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return _kb_fields(f.read())


def shared_kb(r):
    return r.get("Shared_Clean", 0) + r.get("Shared_Dirty", 0)


def attach(hook_publish):
    """Wrap hook_publish.write_snapshot so forked children record their memory."""
    original = hook_publish.write_snapshot
    if getattr(original, "_bench_probe", False):
        return

    def probed(capture, request, mode, may_materialize, pause_fd=None):
        if mode != "fork":
            return original(capture, request, mode, may_materialize, pause_fd)
        spent = time.perf_counter()
        parent = request.pid
        before = {"child": status(), "parent": rollup(parent)}
        cpu, thread_cpu = os.times(), time.thread_time()
        spent = time.perf_counter() - spent
        final = original(capture, request, mode, may_materialize, pause_fd)
        cpu_end, thread_cpu_end = os.times(), time.thread_time()
        t = time.perf_counter()
        after = {"child": status(), "child_rollup": rollup(), "parent": rollup(parent)}
        data = {
            "child_rss_start_kb": before["child"]["VmRSS"],
            "child_hwm_kb": after["child"]["VmHWM"],
            "child_private_dirty_kb": after["child_rollup"].get("Private_Dirty", 0),
            "parent_rss_kb": before["parent"].get("Rss", 0),
            "parent_shared_start_kb": shared_kb(before["parent"]),
            "parent_shared_end_kb": shared_kb(after["parent"]),
            # CPU time of the whole child (walker and writer threads) and of
            # the walking thread alone: unlike wall time, not stretched when
            # other processes compete with the child (it runs at nice 10)
            "child_cpu_seconds": round(cpu_end.user + cpu_end.system
                                       - cpu.user - cpu.system, 6),
            "child_main_thread_cpu_seconds": round(thread_cpu_end - thread_cpu, 6),
        }
        data["probe_seconds"] = round(spent + time.perf_counter() - t, 6)
        with open(final + ".probe.json", "w") as f:
            json.dump(data, f)
        return final

    probed._bench_probe = True
    hook_publish.write_snapshot = probed


def read(snapshot_path):
    """The readings the child left next to `snapshot_path`, or None."""
    try:
        with open(snapshot_path + ".probe.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
