"""memdiag's benchmark: snapshot cost and analysis speed against guppy3,
objgraph and tracemalloc on the same heap, in one run. `make bench` runs it.

    .venv/bin/python bench/run.py                          # 100k, 1M, 3M objects
    .venv/bin/python bench/run.py --sizes 100000,1000000   # or: make bench SIZES=...

Per heap size, one fresh target process (bench/target.py) builds the heap and
measures memdiag (compiled and pure-Python walker, fork and inline mode), a
bare fork, objgraph and guppy3 on it; a second one, identical but with
tracemalloc started before the heap is built, measures tracemalloc. Then the
`memdiag diff` and `retainers` commands run on the two snapshots (before and
after the leak grew) as subprocesses, with retained sizes (their default) and
with --no-retained, and `top --retained` and the dominator tree alone
(bench/retained.py) on the second. A third process builds the same
heap and takes three snapshots with the leak growing between them, for
`memdiag report A B C`. Then the compiled walker on two
Python versions (3.15 against 3.13 by default, --versions): one process per
version (bench/versions.py) builds the same heap, and they take fork-mode
snapshots in turn; guppy3 plays no part there (--versions-only runs just that,
on any interpreter). Everything runs one after the other;
every process has a time limit and is killed by its pid (process group) when
it runs over. The ratios against the goals are printed, and the raw numbers
saved as JSON under bench/results/ (render them as Markdown with
bench/report.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import select
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import report  # noqa: E402

DEFAULT_SIZES = (100_000, 1_000_000, 3_000_000)
LEAK_TYPE = "shop.AuditEntry"


class BenchError(Exception):
    pass


def say(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# ------------------------------------------------------------ processes

def _kill_group(pid):
    """SIGKILL the process group we created for `pid` (start_new_session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_target(args, timeout, on_event=None, env=None):
    """Run bench/target.py with `args`; return its result event.

    Lines on its stdout are JSON events; `on_event(event, pid)` sees each
    one. The process (and anything it forked) is killed after `timeout`."""
    cmd = [sys.executable, os.path.join(HERE, "target.py"), *map(str, args)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         start_new_session=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + timeout
    result = None
    buf = b""
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"target {' '.join(map(str, args))} ran over {timeout:.0f}s")
            if not sel.select(timeout=min(left, 1.0)):
                continue
            data = os.read(p.stdout.fileno(), 65536)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                event = json.loads(line)
                if event.get("event") == "result":
                    result = event
                elif on_event:
                    on_event(event, p.pid)
        p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except BaseException:
        _kill_group(p.pid)
        p.wait()
        raise
    finally:
        sel.close()
        p.stdout.close()
    if p.returncode != 0 or result is None:
        raise BenchError(f"target {' '.join(map(str, args))} failed (exit {p.returncode})")
    return result


def run_measured(cmd, timeout, env=None):
    """Run cmd through bench/maxrss.py; return (wall seconds, peak RSS bytes, stdout).

    The process group is killed if it runs over `timeout`."""
    fd, result = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    launcher = [sys.executable, os.path.join(HERE, "maxrss.py"), result]
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.Popen(launcher + cmd, stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL, start_new_session=True,
                                 env=env, cwd=ROOT)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(p.pid)
                p.wait()
                raise BenchError(f"{' '.join(cmd[2:5])}... ran over {timeout:.0f}s") from None
            except BaseException:
                _kill_group(p.pid)
                p.wait()
                raise
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode()
        with open(result) as f:
            measured = json.load(f)
    except (OSError, ValueError) as e:
        raise BenchError(f"{' '.join(cmd[2:5])}...: no measurement ({e})") from None
    finally:
        os.unlink(result)
    if measured["exit"] != 0:
        raise BenchError(f"{' '.join(cmd[2:5])}... exit {measured['exit']}: {stderr.strip()[:300]}")
    return measured["seconds"], measured["maxrss_bytes"], stdout


def writer_zlib(path):
    """(seconds, raw bytes): the snapshot writer's zlib work for this file's
    columns, redone here (level 1, as snapfile.Writer): the part of a
    snapshot's time that is compression rather than the walk. One chunk at a
    time, so this process stays small."""
    import zlib

    from memdiag import snapfile
    took = 0.0
    raw_bytes = 0
    with snapfile.Reader.open(path) as r:
        for col in sorted(r.chunks):
            for _, _, _, raw in r.payloads(col):
                t = time.perf_counter()
                zlib.compress(raw, 1)
                took += time.perf_counter() - t
                raw_bytes += len(raw)
    return took, raw_bytes


# ------------------------------------------------------------ machine

def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def warn_if_busy():
    load = loadavg()
    try:
        one = float(load.split()[0])
    except ValueError:
        return
    if one > (os.cpu_count() or 1):
        say(f"bench: warning: load average {load} on {os.cpu_count()} CPUs; "
            f"other work is running and the timings will be noisy")


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = "?"
    load = loadavg()
    import memdiag.hook_walk as hook_walk
    try:
        import guppy
        guppy_version = getattr(guppy, "__version__", "?")
    except ImportError:
        guppy_version = "not installed"
    try:
        import objgraph
        objgraph_version = objgraph.__version__
    except ImportError:
        objgraph_version = "not installed"
    return {
        "cpu": model, "nproc": os.cpu_count(), "ram_bytes": mem,
        "kernel": platform.release(), "python": platform.python_version(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "memdiag_commit": commit, "compiled_walker": hook_walk.cwalker is not None,
        "guppy3": guppy_version, "objgraph": objgraph_version,
        "loadavg": load,
    }


# ------------------------------------------------------------ one size

def snapshot_facts(path):
    from memdiag import snapfile
    with snapfile.Reader.open(path) as r:
        t = r.trailer
        meta = t.get("meta", {})
        return {"objects": t["objects"], "edges": t["edges"], "bytes": os.path.getsize(path),
                "walker": meta.get("walker"), "walk_seconds": meta.get("walk_seconds"),
                "pause_seconds": meta.get("pause_seconds"),
                "capture_seconds": meta.get("capture_seconds")}


def measure_size(n, work, repeat, timeout, python_inline):
    d = os.path.join(work, f"n{n}")
    os.makedirs(d, mode=0o700)
    say(f"== {n:,} objects: memdiag, bare fork, objgraph, guppy3 (one process)")
    warn_if_busy()
    load = loadavg()

    def on_event(event, pid):
        if event.get("event") == "pause-ready":
            time.sleep(0.3)
            os.kill(pid, signal.SIGUSR2)

    res = run_target(["main", n, d, int(python_inline), repeat], timeout, on_event)
    res["snapshot_a"]["file"] = snapshot_facts(res["snapshot_a"]["path"])
    for snap in res["signal_snapshots"]:
        snap["file"] = snapshot_facts(snap["path"])
    res["snapshot_b"] = res["signal_snapshots"][0]
    for runs in res["memdiag"].values():
        for run in runs:
            run["file"] = snapshot_facts(run["path"])
    fork_key = "compiled-fork" if "compiled-fork" in res["memdiag"] else "python-fork"
    res["writer_zlib_seconds"], res["raw_column_bytes"] = writer_zlib(
        res["memdiag"][fork_key][0]["path"])

    say(f"== {n:,} objects: tracemalloc (its own process, started before the heap)")
    res["tracemalloc"] = run_target(["tracemalloc", n], timeout)

    say(f"== {n:,} objects: three snapshots for memdiag report (its own process)")
    three = run_target(["report", n, d], timeout)

    say(f"== {n:,} objects: memdiag diff / retainers / top --retained / report / dominators "
        f"(subprocesses, x{repeat})")
    env = dict(os.environ, MEMDIAG_PLAIN="1")
    a, b = res["snapshot_a"]["path"], res["snapshot_b"]["path"]
    html = os.path.join(d, "report.html")
    memdiag_cli = [sys.executable, "-m", "memdiag.cli.main"]
    commands = {
        # with groups, byte growth and retained sizes (two dominator trees)
        "diff": memdiag_cli + ["diff", a, b, "--json"],
        "diff_no_retained": memdiag_cli + ["diff", a, b, "--json", "--no-retained"],
        "retainers": memdiag_cli + ["retainers", b, "--type", LEAK_TYPE, "--json"],
        "retainers_no_retained": memdiag_cli + ["retainers", b, "--type", LEAK_TYPE, "--json",
                                                "--no-retained"],
        "top_retained": memdiag_cli + ["top", b, "--retained", "--json"],
        # the HTML report of three snapshots (issue 12: <= 5 s and <= 5 MB at 1M)
        "report": memdiag_cli + ["report", three["snapshot_a"], three["snapshot_b"],
                                 three["snapshot_c"], "-o", html, "--force"],
        # the dominator tree alone, peak memory above the imports (in-process)
        "dominators": [sys.executable, os.path.join(HERE, "retained.py"), b],
    }
    analysis = {}
    for name, cmd in commands.items():
        walls, peaks, outs = [], [], []
        for _ in range(repeat):
            wall, peak, out = run_measured(cmd, timeout, env)
            walls.append(wall)
            peaks.append(peak)
            outs.append(out)
        ok = _output_ok(name, out) if name != "report" else _report_ok(html)
        analysis[name] = {"seconds": statistics.median(walls), "runs": walls,
                          "peak_rss_bytes": max(peaks), "output_ok": ok}
        if name == "report":
            analysis[name]["bytes"] = os.path.getsize(html)
        if name == "dominators":
            inner = [json.loads(o) for o in outs]
            analysis[name]["inner_seconds"] = statistics.median(x["seconds"] for x in inner)
            analysis[name]["inner_peak_bytes"] = max(x["peak_bytes_above_imports"] for x in inner)
            analysis[name]["compiled"] = inner[0]["compiled"]
    startup = [run_measured([sys.executable, "-c", STARTUP], timeout, env) for _ in range(repeat)]
    analysis["startup_seconds"] = statistics.median(w for w, _, _ in startup)
    analysis["startup_peak_rss_bytes"] = max(p for _, p, _ in startup)
    res["analysis"] = analysis
    res["loadavg_at_start"] = load
    res["loadavg_at_end"] = loadavg()
    res["derived"] = derive(res)
    return res


# What every CLI run pays before it reads a snapshot: interpreter, numpy, typer, rich.
STARTUP = ("import memdiag.cli.main, memdiag.cli.diff, memdiag.cli.retainers, "
           "memdiag.analysis.diff, memdiag.analysis.retainers")


def _output_ok(name, out):
    """Whether the command found the leak (a benchmark of a wrong answer is worthless)."""
    try:
        data = json.loads(out)
    except ValueError:
        return False
    if name == "top_retained":
        # the order book holds most of the heap at every size (the leak, 1%,
        # ranks below the bigger modules' dicts on small heaps)
        rows = data.get("retained") or [{}]
        return rows[0].get("path") == "shop.ORDERS"
    if name == "dominators":
        return data.get("output_ok") is True
    text = json.dumps(data)
    return "AUDIT_LOG" in text


def _report_ok(path):
    """Whether the report names the leak: the audit log, as the top suspect."""
    try:
        with open(path, encoding="utf-8") as f:
            page = f.read()
    except OSError:
        return False
    return 'Top suspect: <a href="#suspect-1"><code>shop.AUDIT_LOG</code>' in page


def derive(res):
    """The numbers the goals are about, from one size's raw results."""
    runs = res["memdiag"]
    b = res["snapshot_b"]
    signals = res["signal_snapshots"]
    objects = b["file"]["objects"]
    snapshot_seconds, vs_guppy, extra, unshared, child_private, per_obj_file = {}, {}, {}, {}, {}, {}
    cpu_seconds, cpu_vs_guppy = {}, {}
    for key, reps in runs.items():
        # Time: the median run. Memory: the worst run.
        seconds = statistics.median(
            r["seconds"] - (r.get("probe") or {}).get("probe_seconds", 0.0) for r in reps)
        snapshot_seconds[key] = seconds
        vs_guppy[key] = seconds / res["guppy_seconds"]
        per_obj_file[key] = max(r["file"]["bytes"] / r["file"]["objects"] for r in reps)
        cpus = [r["cpu_seconds"] if r["mode"] == "inline" else
                (r.get("probe") or {}).get("child_cpu_seconds") for r in reps]
        if None not in cpus:
            cpu_seconds[key] = statistics.median(cpus)
            cpu_vs_guppy[key] = cpu_seconds[key] / res["guppy_cpu_seconds"]
        if reps[0]["mode"] == "inline":
            extra[key] = max(r["rss_peak_rise_kb"] * 1024 / r["file"]["objects"] for r in reps)
            continue
        probes = [(r["probe"], r["file"]["objects"]) for r in reps if r.get("probe")]
        if probes:
            extra[key] = max((p["child_hwm_kb"] - p["child_rss_start_kb"]) * 1024 / n
                             for p, n in probes)
            unshared[key] = max((p["parent_shared_start_kb"] - p["parent_shared_end_kb"])
                                / p["parent_rss_kb"] for p, _ in probes)
            child_private[key] = max(p["child_private_dirty_kb"] / p["parent_rss_kb"]
                                     for p, _ in probes)
    return {
        "objects": objects,
        "edges": b["file"]["edges"],
        "snapshot_seconds": snapshot_seconds,
        "snapshot_vs_guppy": vs_guppy,
        "snapshot_cpu_seconds": cpu_seconds,
        "snapshot_cpu_vs_guppy_cpu": cpu_vs_guppy,
        "guppy_cpu_seconds": res["guppy_cpu_seconds"],
        "walker_extra_bytes_per_object": extra,
        "unshared_fraction": unshared,
        "child_private_fraction": child_private,
        "file_bytes_per_object": b["file"]["bytes"] / objects,
        "file_bytes_per_object_by_run": per_obj_file,
        "pause_seconds": statistics.median(x["pause_seconds"] for x in signals),
        "pause_meta_seconds": statistics.median(x["file"]["pause_seconds"] for x in signals),
        "pause_runs": [x["pause_seconds"] for x in signals],
        "bare_fork_seconds": statistics.median(
            res["bare_fork_seconds"] + [f for x in signals for f in x["bare_fork_seconds"]]),
        # the pause minus the median bare fork measured just before it
        "pause_over_fork_seconds": statistics.median(
            x["pause_seconds"] - statistics.median(x["bare_fork_seconds"]) for x in signals),
        "ticker_noise_seconds": res["ticker_noise_seconds"],
        "other_stall_max_seconds": max(x["other_stall_max_seconds"] for x in signals),
        "signal_to_file_seconds": statistics.median(x["signal_to_file_seconds"] for x in signals),
        "walk_seconds": {k: statistics.median(r["file"]["walk_seconds"] for r in reps)
                         for k, reps in runs.items()},
        "writer_zlib_seconds": res["writer_zlib_seconds"],
        "guppy_seconds": res["guppy_seconds"],
        "guppy_domisize_seconds": res.get("guppy_domisize_seconds"),
        "guppy_domisize_bytes": res.get("guppy_domisize_bytes"),
        "guppy_rss_added_bytes_per_object": res["guppy_rss_added_kb"] * 1024 / objects,
        "objgraph_seconds": res["objgraph_seconds"],
        "tracemalloc_seconds": (res["tracemalloc"]["take_snapshot_2_seconds"]
                                + res["tracemalloc"]["compare_to_seconds"]),
    }


# ------------------------------------------------------------ versions

def version_python(ver):
    """(interpreter, None) for Python ver, or (None, why not): the checkout's
    .venv-X.Y (`make test` makes it and builds the walker in place), else
    scripts/find-python's, which sees the checkout through PYTHONPATH."""
    venv = os.path.join(ROOT, f".venv-{ver}", "bin", "python")
    if os.path.exists(venv):
        return venv, None
    try:
        r = subprocess.run([os.path.join(ROOT, "scripts", "find-python"), ver],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"no Python {ver} ({e})"
    if r.returncode != 0 or not r.stdout.strip():
        return None, f"no Python {ver} found (make test TEST_PYTHONS={ver} makes .venv-{ver})"
    return r.stdout.strip(), None


class VersionTarget:
    """A bench/versions.py process: commands on its stdin, events on its stdout."""

    def __init__(self, exe, n, directory):
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("MEMDIAG_PURE_PYTHON", None)
        self.p = subprocess.Popen([exe, os.path.join(HERE, "versions.py"), str(n), directory],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  start_new_session=True, env=env, cwd=ROOT)
        self.buf = b""

    def event(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"versions.py (pid {self.p.pid}) ran over {timeout:.0f}s")
            ready, _, _ = select.select([self.p.stdout], [], [], min(left, 1.0))
            if ready:
                data = os.read(self.p.stdout.fileno(), 65536)
                if not data:
                    raise BenchError(f"versions.py (pid {self.p.pid}) exited "
                                     f"(status {self.p.wait()})")
                self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, command):
        self.p.stdin.write(command.encode() + b"\n")
        self.p.stdin.flush()

    def close(self):
        try:
            self.send("quit")
            self.p.stdin.close()
            self.p.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.p.poll() is None:
                _kill_group(self.p.pid)
                self.p.wait()
            self.p.stdout.close()


PER_OBJECT = {"walk_seconds": "walk_seconds_per_object",
              "child_cpu_seconds": "child_cpu_seconds_per_object"}


def measure_versions(versions, n, rounds, timeout, work):
    """The compiled walker on each Python of `versions` (the first is the
    baseline), on heaps of the same shape, `rounds` fork-mode snapshots each,
    taken in turn (ABBA...). Medians per object, and each version's ratio to
    the baseline."""
    say(f"== {n:,} objects: the compiled walker on Python {', '.join(versions)} "
        f"(one process each, {rounds} snapshots each, in turn)")
    warn_if_busy()
    pythons, targets = {}, {}
    try:
        for v in versions:
            exe, why = version_python(v)
            if exe is None:
                pythons[v] = {"skipped": why}
                continue
            d = os.path.join(work, f"versions-{v}")
            os.makedirs(d, mode=0o700)
            targets[v] = VersionTarget(exe, n, d)
        for v in list(targets):
            ev = targets[v].event(timeout)
            if ev["event"] != "ready":
                pythons[v] = {"skipped": ev.get("why", str(ev))}
                targets.pop(v).close()
                continue
            pythons[v] = {"python": ev["python"], "objects_built": ev["objects_built"],
                          "rss_kb": ev["rss_kb"], "runs": []}
        order = list(targets)
        for r in range(rounds):
            for v in (order if r % 2 == 0 else order[::-1]):
                targets[v].send("snap")
                pythons[v]["runs"].append(targets[v].event(timeout))
    finally:
        for t in targets.values():
            t.close()
    for v, p in pythons.items():
        runs = p.get("runs")
        if not runs:
            continue
        p["objects"] = statistics.median(r["objects"] for r in runs)
        for key, name in PER_OBJECT.items():
            values = [r[key] / r["objects"] for r in runs if r.get(key) is not None]
            p[name] = statistics.median(values) if values else None
        extra = [r["extra_bytes_per_object"] for r in runs
                 if r.get("extra_bytes_per_object") is not None]
        p["extra_bytes_per_object"] = statistics.median(extra) if extra else None
    base = pythons.get(versions[0], {})
    ratios = {}
    for v in versions[1:]:
        p = pythons.get(v, {})
        if "runs" not in p or "runs" not in base:
            continue
        ratios[v] = {name: (p[name] / base[name] if p.get(name) and base.get(name) else None)
                     for name in (*PER_OBJECT.values(), "extra_bytes_per_object")}
    for v, p in pythons.items():
        if "skipped" in p:
            say(f"   Python {v}: skipped: {p['skipped']}")
    return {"size": n, "rounds": rounds, "baseline": versions[0], "pythons": pythons,
            "ratios": ratios, "loadavg_at_end": loadavg()}


def parse_versions(text):
    versions = [v for v in text.replace(" ", "").split(",") if v]
    for v in versions:
        if not v.startswith("3.") or not v[2:].isdigit():
            raise argparse.ArgumentTypeError(f"not a Python version: {v!r} (say 3.13,3.15)")
    if len(versions) == 1:
        raise argparse.ArgumentTypeError("two versions or more: the baseline first")
    return versions


# ------------------------------------------------------------ main

def parse_size(text):
    """'3000000', '3M' or '100k' -> int."""
    mult = 1
    if text[-1:] in ("k", "K", "m", "M"):
        mult = 1_000 if text[-1] in "kK" else 1_000_000
        text = text[:-1]
    try:
        return int(float(text) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


def parse_sizes(text):
    sizes = [parse_size(part) for part in text.replace(" ", "").split(",") if part]
    if not sizes or min(sizes) < 1000:
        raise argparse.ArgumentTypeError("sizes are object counts >= 1000, e.g. 100000,1000000")
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES),
                    help="heap sizes in objects, comma-separated (100k and 1M work too)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each analysis command, of compiled-walker snapshots and of "
                         "guppy3 (the median counts)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per process")
    ap.add_argument("--out", default=os.path.join(HERE, "results"),
                    help="directory for the JSON results")
    ap.add_argument("--keep", metavar="DIR", help="keep the snapshot files in DIR")
    ap.add_argument("--python-inline-max", type=parse_size, default=100_000, metavar="N",
                    help="largest heap on which the pure-Python walker also runs in inline "
                         "mode (fork mode runs at every size; 30 s per run at 1M objects)")
    ap.add_argument("--versions", type=parse_versions, default=["3.13", "3.15"],
                    help="Pythons whose compiled walkers are compared on the same heap, the "
                         "baseline first ('' skips it; interpreters: .venv-X.Y, else "
                         "scripts/find-python)")
    ap.add_argument("--versions-size", type=parse_size, default=1_000_000, metavar="N",
                    help="heap size for the version comparison")
    ap.add_argument("--versions-rounds", type=int, default=5, metavar="R",
                    help="snapshots per version in the comparison (the median counts)")
    ap.add_argument("--versions-only", action="store_true",
                    help="run only the version comparison (no guppy3 or objgraph needed)")
    args = ap.parse_args(argv)

    started = time.monotonic()
    results = {"machine": machine(), "sizes": []}
    m = results["machine"]
    say(f"memdiag bench: {m['cpu']}, {m['nproc']} CPUs, {m['ram_bytes'] / 2**30:.1f} GiB, "
        f"Python {m['python']}, compiled walker: {'yes' if m['compiled_walker'] else 'NO'}")
    work = tempfile.mkdtemp(prefix="memdiag-bench-")
    os.chmod(work, 0o700)
    try:
        if not args.versions_only:
            say("== idle cost: the request loop with and without the hook")
            results["idle"] = run_target(["idle", 100_000], args.timeout,
                                         env=dict(os.environ, MEMDIAG_DIR=work))
            for n in sorted(args.sizes):
                results["sizes"].append(measure_size(n, work, args.repeat, args.timeout,
                                                     n <= args.python_inline_max))
        if args.versions:
            results["versions"] = measure_versions(args.versions, args.versions_size,
                                                   args.versions_rounds, args.timeout, work)
    finally:
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            for name in os.listdir(work):
                shutil.move(os.path.join(work, name), os.path.join(args.keep, name))
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = time.monotonic() - started

    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.out, f"bench-{stamp}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.write("\n")
    print(report.text(results))
    print(f"\nraw results: {os.path.relpath(path, ROOT)}  "
          f"(Markdown: .venv/bin/python bench/report.py {os.path.relpath(path, ROOT)})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        say(f"bench: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
