"""One benchmark target: builds the heap, measures every tool on it, reports.

Started by bench/run.py in a fresh process per heap size; not meant to be run
by hand (it waits for run.py to send SIGUSR2). Four kinds:

    target.py main N DIR I R     memdiag (both walkers, fork and inline), a
                                 bare fork, objgraph and guppy3, on one heap;
                                 I=0: the pure-Python walker in fork mode only;
                                 R: runs of the compiled walker and of guppy3
    target.py tracemalloc N      tracemalloc, started before the heap is built
    target.py report N DIR       three snapshots, the leak growing between them,
                                 for `memdiag report A B C` (nothing else runs
                                 in the process, so RSS moves with the heap)
    target.py idle N             the request loop with and without the hook, and
                                 with its RSS watcher (a limit set)

Protocol: one JSON object per line on stdout. {"event": "pause-ready"} asks
run.py to send SIGUSR2 now; {"event": "result", ...} ends the run. Progress
goes to stderr.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import probe  # noqa: E402
import shop  # noqa: E402

clock = time.perf_counter


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def say(text):
    sys.stderr.write(f"  [{os.getpid()}] {text}\n")
    sys.stderr.flush()


def rss_kb():
    return probe.status()["VmRSS"]


def reset_peak():
    """Make VmHWM start again from the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# ------------------------------------------------------------------ ticker

def ticker(until, limit, threshold=0.0002):
    """Spin on the main thread until until() or `limit` seconds.

    Returns the gaps longer than `threshold` between two consecutive clock
    readings (times the main thread was kept from running), as (start, end)
    in time.time() terms, and the loop's (start, end)."""
    offset = time.time() - clock()
    start = last = clock()
    gaps = []
    n = 0
    while True:
        now = clock()
        if now - last > threshold:
            gaps.append((last + offset, now + offset))
        last = now
        n += 1
        if not n & 1023:
            if now - start > limit or until():
                return gaps, (start + offset, now + offset)


def longest(gaps):
    return max((b - a for a, b in gaps), default=0.0)


def snap_names(directory):
    return {n for n in os.listdir(directory) if n.endswith(".snap")}


# ------------------------------------------------------------- main target

def bare_fork_seconds(repeat=5):
    """Parent-side duration of os.fork() with an immediately exiting child."""
    times = []
    for _ in range(repeat):
        t = clock()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        times.append(clock() - t)
        os.waitpid(pid, 0)
    return times


def signal_snapshot(hook, directory, tail=0.2):
    """Ask run.py for SIGUSR2 and spin on the main thread until the handler
    has forked the snapshot child, then `tail` seconds more; wait (idle) for
    the file. The pause is the gap in the main thread's clock readings that
    holds the moment the snapshot records as its start: the handler ran in
    it. Other gaps (page faults after the fork, scheduling) are reported
    apart. The loop allocates nothing, so the collector never runs in it."""
    from memdiag import snapfile
    gc.collect()
    before = snap_names(directory)
    emit(event="pause-ready")
    from memdiag import hook_fork, hook_state
    children = hook_state.state.children
    gaps, _ = ticker(lambda: bool(children), 600.0)
    more, _ = ticker(lambda: False, tail)
    gaps += more
    deadline = time.monotonic() + 600
    while not snap_names(directory) - before:
        if time.monotonic() > deadline:
            raise SystemExit("no snapshot after SIGUSR2 within 600 s")
        time.sleep(0.002)
    done_at = time.time()
    path = os.path.join(directory, sorted(snap_names(directory) - before)[0])
    with snapfile.Reader.open(path) as r:
        started = r.trailer["meta"]["time"]
    handler = [g for g in gaps if g[0] <= started <= g[1]]
    others = [g for g in gaps if g not in handler]
    while children and time.monotonic() < deadline:  # reap the child
        hook_fork.reap()
        time.sleep(0.01)
    return {"path": path,
            # no gap over the ticker's threshold: the pause was shorter
            "pause_seconds": longest(handler) if handler else 0.0002,
            "other_stall_max_seconds": longest(others),
            "other_stalls_over_1ms": sum(1 for a, b in others if b - a > 0.001),
            "signal_to_file_seconds": done_at - started,
            "probe": probe.read(path)}


def memdiag_dump(hook, path, mode, pure):
    """One memdiag.dump; returns the measurements for it."""
    if pure:
        os.environ["MEMDIAG_PURE_PYTHON"] = "1"
    else:
        os.environ.pop("MEMDIAG_PURE_PYTHON", None)
    gc.collect()
    reset_peak()
    before = rss_kb()
    cpu = time.process_time()
    t = clock()
    final = hook.dump(path, mode=mode)
    seconds = clock() - t
    cpu = time.process_time() - cpu
    st = probe.status()
    os.environ.pop("MEMDIAG_PURE_PYTHON", None)
    out = {"path": final, "mode": mode, "pure": pure, "seconds": seconds,
           "rss_before_kb": before}
    if mode == "inline":
        out["cpu_seconds"] = cpu
        out["rss_peak_rise_kb"] = st["VmHWM"] - before
        out["rss_kept_kb"] = st["VmRSS"] - before
    else:
        out["probe"] = probe.read(final)
    return out


def objgraph_growth(stats):
    import io

    import objgraph
    buf = io.StringIO()
    t = clock()
    objgraph.show_growth(limit=10, peak_stats=stats, file=buf)
    return clock() - t, buf.getvalue()


def main_target(n, directory, python_inline=True, repeat=3):
    import memdiag.hook as hook
    import memdiag.hook_publish
    import memdiag.hook_walk
    res = {"kind": "main", "objects_requested": n, "pid": os.getpid(),
           "compiled_walker": memdiag.hook_walk.cwalker is not None}
    hook.install(dir=directory, mode="fork")
    probe.attach(memdiag.hook_publish)

    t = clock()
    res["objects_built"] = shop.build(n)
    gc.collect()
    res["build_seconds"] = clock() - t
    res["rss_after_build_kb"] = rss_kb()
    say(f"built {res['objects_built']:,} objects in {res['build_seconds']:.1f}s, "
        f"RSS {res['rss_after_build_kb'] / 1024:.0f} MiB")

    res["bare_fork_seconds"] = bare_fork_seconds()
    gaps, _ = ticker(lambda: False, 0.5)
    res["ticker_noise_seconds"] = longest(gaps)

    stats = {}
    res["objgraph_first_seconds"], _ = objgraph_growth(stats)

    # Snapshot A (before the leak grows): memdiag.dump, fork mode, default walker.
    say("snapshot A (fork, default walker)")
    res["snapshot_a"] = memdiag_dump(hook, os.path.join(directory, "a.snap"), "fork", False)

    leak = int(n * shop.LEAK_SHARE)
    res["leak_objects_added"] = shop.grow_leak(leak)

    # Snapshot B: on SIGUSR2 from run.py, as in production, while the main
    # thread spins; `repeat` times for the pause, the first one is B.
    say(f"snapshot B (SIGUSR2 from run.py, ticker on the main thread) x{repeat}")
    res["signal_snapshots"] = []
    for _ in range(repeat):
        # Fork time drifts with the machine's load: measure it next to each pause.
        forks = bare_fork_seconds(3)
        snap = signal_snapshot(hook, directory)
        snap["bare_fork_seconds"] = forks
        res["signal_snapshots"].append(snap)

    res["objgraph_seconds"], growth = objgraph_growth(stats)
    res["objgraph_saw_leak"] = "AuditEntry" in growth

    # Every memdiag configuration on the same heap (the one B saw).
    # The compiled walker `repeat` times (the median counts), the pure-Python
    # one once: it takes about a minute at 3M objects.
    walkers = [("compiled", False), ("python", True)] if res["compiled_walker"] \
        else [("python", True)]
    runs = {}
    for name, pure in walkers:
        for mode in ("fork", "inline"):
            if pure and mode == "inline" and not python_inline:
                continue
            say(f"memdiag {mode} snapshot, {name} walker")
            runs[f"{name}-{mode}"] = [
                memdiag_dump(hook, os.path.join(directory, f"{name}-{mode}-{k}.snap"), mode, pure)
                for k in range(1 if pure else repeat)]
    res["memdiag"] = runs

    # guppy3 last: what heap() allocates stays as long as its result lives.
    # Memory from the first call (with its result alive), time from every call.
    say("guppy3 hpy().heap()")
    from guppy import hpy
    times, cpus = [], []
    for k in range(repeat):
        gc.collect()
        reset_peak()
        before = rss_kb()
        cpu = time.process_time()
        t = clock()
        h = hpy().heap()
        times.append(clock() - t)
        cpus.append(time.process_time() - cpu)
        if k == 0:
            st = probe.status()
            res["guppy_rss_added_kb"] = st["VmRSS"] - before
            res["guppy_rss_peak_rise_kb"] = st["VmHWM"] - before
            res["guppy_objects"] = h.count
        del h
    res["guppy_runs"] = times
    res["guppy_seconds"] = statistics.median(times)
    res["guppy_cpu_seconds"] = statistics.median(cpus)
    # guppy3's retained size of one object (what memdiag computes for every
    # object at once): a point of comparison, once.
    say("guppy3 hpy().iso(AUDIT_LOG).domisize")
    gc.collect()
    t = clock()
    res["guppy_domisize_bytes"] = hpy().iso(shop.AUDIT_LOG).domisize
    res["guppy_domisize_seconds"] = clock() - t
    hook.uninstall()
    emit(event="result", **res)


# ------------------------------------------------------ tracemalloc target

def tracemalloc_target(n):
    import tracemalloc
    tracemalloc.start(1)
    res = {"kind": "tracemalloc", "objects_requested": n}
    t = clock()
    res["objects_built"] = shop.build(n)
    gc.collect()
    res["build_seconds"] = clock() - t
    res["rss_after_build_kb"] = rss_kb()
    res["traced_memory_bytes"] = tracemalloc.get_traced_memory()[0]
    res["tracemalloc_memory_bytes"] = tracemalloc.get_tracemalloc_memory()
    t = clock()
    first = tracemalloc.take_snapshot()
    res["take_snapshot_seconds"] = clock() - t
    shop.grow_leak(int(n * shop.LEAK_SHARE))
    t = clock()
    second = tracemalloc.take_snapshot()
    res["take_snapshot_2_seconds"] = clock() - t
    t = clock()
    stats = second.compare_to(first, "lineno")
    res["compare_to_seconds"] = clock() - t
    res["compare_top"] = str(stats[0]) if stats else ""
    emit(event="result", **res)


# ----------------------------------------------------------- report target

def report_target(n, directory):
    """Snapshots A, B and C of the same heap, the audit log growing by 1% of
    the heap before B and again before C."""
    import memdiag.hook as hook
    res = {"kind": "report", "objects_requested": n}
    shop.build(n)
    leak = int(n * shop.LEAK_SHARE)
    for k, name in enumerate(("a", "b", "c")):
        if k:
            shop.grow_leak(leak)
        gc.collect()
        res[f"snapshot_{name}"] = hook.dump(os.path.join(directory, f"report-{name}.snap"),
                                            mode="fork")
    emit(event="result", **res)


# ------------------------------------------------------------- idle target

def request(i, cache, recent):
    """One request of a small web service: parse, look up, build, respond."""
    query = f"user={i % 997}&item={i % 31}&page={i % 7}"
    params = dict(part.split("=", 1) for part in query.split("&"))
    key = (params["user"], params["item"])
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = {"user": int(params["user"]), "item": int(params["item"]),
                            "tags": [f"t{k}" for k in range(3)]}
    body = ",".join(f"{k}={v}" for k, v in sorted(hit.items()) if k != "tags")
    recent.append((i, len(body)))
    if len(recent) > 256:
        del recent[:128]
    return len(body)


def request_loop(count):
    cache, recent = {}, []
    gc.collect()  # every run starts with the same collector state
    t = clock()
    for i in range(count):
        request(i, cache, recent)
    return clock() - t


def idle_target(n, rounds=31, count=10_000):
    """Runs of the request loop: without the hook, with it installed (tracing
    off), with it installed and an RSS limit set (its watcher thread running,
    memory flat and far from the threshold), and a second "without" arm as a
    control that shows the noise."""
    import memdiag.hook as hook
    from memdiag.hook_state import state
    shop.build(n)
    gc.collect()
    directory = os.environ.get("MEMDIAG_DIR") or None
    request_loop(count)  # warm up
    arms = {"off": [], "on": [], "watch": [], "control": []}
    order = ["off", "on", "watch", "control"]
    wakeups = 0
    for r in range(rounds):
        # Rotate the order so drift (CPU frequency, other load) hits every arm alike.
        for arm in order[r % 4:] + order[:r % 4]:
            if arm == "on":
                hook.install(dir=directory, mode="fork")
                arms[arm].append(request_loop(count))
                hook.uninstall()
            elif arm == "watch":
                # 90% of the memory limit: far above this process's RSS. The
                # loop starts once the thread has read RSS and the limit and
                # gone to sleep, so the arm measures it asleep, not starting.
                hook.install(dir=directory, mode="fork", rss_limit="90%")
                thread = state.watcher
                deadline = time.monotonic() + 10
                while state.wakeups < 1 and time.monotonic() < deadline:
                    time.sleep(0.001)
                time.sleep(0.005)
                before = state.wakeups
                arms[arm].append(request_loop(count))
                wakeups += state.wakeups - before
                hook.uninstall()
                thread.join(10)
            else:
                arms[arm].append(request_loop(count))
    off, on, watch, control = arms["off"], arms["on"], arms["watch"], arms["control"]
    med = statistics.median
    # Headline: the median of per-round ratios (runs of one round are
    # seconds apart, so slow drift in the machine's speed cancels out).
    emit(event="result", kind="idle", objects_requested=n, requests_per_run=count,
         seconds_off=off, seconds_on=on, seconds_watch=watch, seconds_control=control,
         ratio=med(b / a for a, b in zip(off, on)),
         watch_ratio=med(b / a for a, b in zip(off, watch)),
         watch_wakeups=wakeups, watch_seconds=sum(watch),
         control_ratio=med(c / a for a, c in zip(off, control)),
         ratio_of_medians=med(on) / med(off), ratio_of_minimums=min(on) / min(off),
         watch_ratio_of_minimums=min(watch) / min(off),
         control_ratio_of_medians=med(control) / med(off),
         control_ratio_of_minimums=min(control) / min(off))


def run():
    kind, n = sys.argv[1], int(sys.argv[2])
    if kind == "main":
        main_target(n, sys.argv[3], sys.argv[4] != "0", int(sys.argv[5]))
    elif kind == "tracemalloc":
        tracemalloc_target(n)
    elif kind == "idle":
        idle_target(n)
    elif kind == "report":
        report_target(n, sys.argv[3])
    else:
        raise SystemExit(f"unknown target kind {kind!r}")


if __name__ == "__main__":
    run()
