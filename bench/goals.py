"""The goals of issues 3, 9 and 10 and how one benchmark run measures up to them.

    >>> checks = evaluate(results)        # doctest: +SKIP  (a results dict from run.py)
    >>> checks[0].goal, checks[0].size, checks[0].verdict()          # doctest: +SKIP
    ('snapshot (fork) <= 0.25x guppy3 heap()', 1000000, 'met')

`evaluate` returns one Check per goal and heap size; `Check.verdict()` says
"met" or "MISSED" and by how much. Nothing here measures or prints.
"""

from __future__ import annotations

from dataclasses import dataclass

SNAPSHOT_VS_GUPPY = 0.25
PAUSE_OVER_FORK = 0.005
WALKER_BYTES_PER_OBJECT = 32
UNSHARE_FRACTION = 0.10
ANALYSIS_SECONDS = 1.0
ANALYSIS_BYTES_PER_OBJECT = 100
FILE_BYTES_PER_OBJECT = 16
IDLE_TOLERANCE = 0.03
# Retained sizes (issue 10). No peer computes them for every object of a 3M
# heap (guppy3's domisize answers for one object per heap traversal; the
# report shows its time for one object beside ours for all), so these are
# absolute, like the analysis times above.
RETAINED_SECONDS = 3.0
RETAINED_BYTES_PER_OBJECT = 120
TOP_RETAINED_SECONDS = 3.0
# The HTML report of three snapshots (issue 12), at 1M objects: absolute too
# (no peer writes such a page from a heap snapshot).
REPORT_SECONDS = 5.0
REPORT_BYTES = 5_000_000
REPORT_SIZE = 1_000_000
# diff with groups, byte growth and retained sizes before and after (issue 10:
# 2 s, against 0.92 s for diff without them). Its memory, and retainers with
# retained bytes per chain: the analysis' own goal plus one dominator tree
# per snapshot it computes retained sizes for, each at its goal; retainers'
# time like top --retained's (both add one tree). Without retained sizes
# (--no-retained) both keep issue 3's goals.
DIFF_SECONDS = 2.0
DIFF_BYTES_PER_OBJECT = ANALYSIS_BYTES_PER_OBJECT + 2 * RETAINED_BYTES_PER_OBJECT
RETAINERS_SECONDS = TOP_RETAINED_SECONDS
RETAINERS_BYTES_PER_OBJECT = ANALYSIS_BYTES_PER_OBJECT + RETAINED_BYTES_PER_OBJECT


# (results key, goal label, time limit, peak limit per object)
ANALYSES = (
    ("diff", "diff", DIFF_SECONDS, DIFF_BYTES_PER_OBJECT),
    ("diff_no_retained", "diff --no-retained", ANALYSIS_SECONDS, ANALYSIS_BYTES_PER_OBJECT),
    ("retainers", "retainers", RETAINERS_SECONDS, RETAINERS_BYTES_PER_OBJECT),
    ("retainers_no_retained", "retainers --no-retained", ANALYSIS_SECONDS,
     ANALYSIS_BYTES_PER_OBJECT),
)

# The compiled walker on a newer Python (issue 9): per object, against the
# oldest version compared (3.13), same heap shape, same run.
VERSION_RATIO = 1.15


@dataclass(frozen=True)
class Check:
    goal: str
    size: int            # objects requested for the heap
    value: float
    limit: float
    unit: str
    applies: bool        # the goal is stated for this heap size
    note: str = ""

    @property
    def met(self):
        if self.unit == "ratio~1":
            return abs(self.value - 1.0) <= self.limit
        return self.value <= self.limit

    def verdict(self):
        if self.met:
            return "met"
        if self.unit == "ratio~1":
            return f"MISSED: {abs(self.value - 1.0) * 100:.1f}% slower/faster (allowed {self.limit * 100:.0f}%)"
        r = self.value / self.limit
        by = f"{(r - 1) * 100:.0f}%" if r < 2 else f"{r:.1f}x"
        return f"MISSED by {by} ({fmt(self.value, self.unit)}, goal {fmt(self.limit, self.unit)})"


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "s":
        if abs(v) < 0.01:
            return f"{v * 1000:.1f} ms"
        return f"{v * 1000:.0f} ms" if abs(v) < 1 else f"{v:.2f} s"
    if unit == "x":
        return f"{v:.2f}x"
    if unit == "B/obj":
        return f"{v:.1f} B/obj"
    if unit == "%":
        return f"{v * 100:.1f}%"
    if unit == "ratio~1":
        return f"{v:.3f}"
    if unit == "B":
        return f"{v / 1e6:.2f} MB" if v >= 1e6 else f"{v / 1e3:.1f} kB"
    return f"{v}"


def preferred_walker(size_result):
    """'compiled' when the run had the compiled walker, else 'python'."""
    return "compiled" if size_result.get("compiled_walker") else "python"


def evaluate(results):
    checks = []
    for s in results["sizes"]:
        n = s["objects_requested"]
        big = n >= 1_000_000
        d = s.get("derived")
        if not d:
            continue
        w = preferred_walker(s)
        note = "" if w == "compiled" else "compiled walker not built: pure-Python walker"
        for mode in ("fork", "inline"):
            v = d["snapshot_vs_guppy"].get(f"{w}-{mode}")
            if v is not None:
                checks.append(Check(f"snapshot ({mode}) <= 0.25x guppy3 heap()", n, v,
                                    SNAPSHOT_VS_GUPPY, "x", big, note))
        checks.append(Check("pause - bare fork <= 5 ms", n, d["pause_over_fork_seconds"],
                            PAUSE_OVER_FORK, "s", True,
                            f"pause {fmt(d['pause_seconds'], 's')}, bare fork "
                            f"{fmt(d['bare_fork_seconds'], 's')}"))
        v = d["walker_extra_bytes_per_object"].get(f"{w}-fork")
        if v is not None:
            checks.append(Check("walker extra memory (fork child) <= 32 B/obj", n, v,
                                WALKER_BYTES_PER_OBJECT, "B/obj", big, note))
        v = d["walker_extra_bytes_per_object"].get(f"{w}-inline")
        if v is not None:
            checks.append(Check("walker extra memory (inline) <= 32 B/obj", n, v,
                                WALKER_BYTES_PER_OBJECT, "B/obj", big, note))
        v = d["unshared_fraction"].get(f"{w}-fork")
        if v is not None:
            checks.append(Check("fork child un-shares <= 10% of RSS", n, v,
                                UNSHARE_FRACTION, "%", big, note))
        largest = n >= 3_000_000 or n == max_size(results)
        startup = f"CLI startup {fmt(s.get('analysis', {}).get('startup_seconds'), 's')}"
        for name, label, seconds, per_obj in ANALYSES:
            a = s.get("analysis", {}).get(name)
            if a:
                checks.append(Check(f"{label} time <= {seconds:g} s", n, a["seconds"],
                                    seconds, "s", largest, startup))
                checks.append(Check(f"{label} peak RSS <= {per_obj} B/obj", n,
                                    a["peak_rss_bytes"] / d["objects"], per_obj, "B/obj", big))
        checks += retained_checks(s, n, d, n >= 3_000_000 or n == max_size(results))
        checks += report_checks(s, n)
        checks.append(Check("file size <= 16 B/obj", n, d["file_bytes_per_object"],
                            FILE_BYTES_PER_OBJECT, "B/obj", True))
    checks += version_checks(results.get("versions"))
    idle = results.get("idle")
    if idle:
        control = idle["control_ratio"]
        note = f"control, no hook both ways: {control:.3f}"
        if abs(control - 1.0) > IDLE_TOLERANCE:
            note += " (machine too noisy to tell)"
        checks.append(Check("idle cost: same speed with the hook", idle["objects_requested"],
                            idle["ratio"], IDLE_TOLERANCE, "ratio~1", True, note))
        if "watch_ratio" in idle:
            woke = (f"; it woke {idle['watch_wakeups']} times in "
                    f"{idle['watch_seconds']:.1f} s of runs")
            checks.append(Check("idle cost: same speed with the RSS watcher",
                                idle["objects_requested"], idle["watch_ratio"], IDLE_TOLERANCE,
                                "ratio~1", True, note + woke))
    return checks


def retained_checks(s, n, d, applies):
    """Dominators and retained sizes: time and peak memory in-process
    (bench/retained.py), and `top --retained` as a CLI command."""
    out = []
    a = s.get("analysis", {})
    dom = a.get("dominators")
    if dom:
        note = "" if dom.get("compiled") else "compiled _dominators not built: pure Python"
        g = d.get("guppy_domisize_seconds")
        if g is not None:
            note = (note + "; " if note else "") + f"guppy3 domisize of one object {fmt(g, 's')}"
        out.append(Check("dominators + retained sizes <= 3 s", n, dom["inner_seconds"],
                         RETAINED_SECONDS, "s", applies, note))
        out.append(Check("dominators + retained sizes peak <= 120 B/obj", n,
                         dom["inner_peak_bytes"] / d["objects"], RETAINED_BYTES_PER_OBJECT,
                         "B/obj", applies, "above the imports, whole process"))
    top = a.get("top_retained")
    if top:
        out.append(Check("top --retained time <= 3 s", n, top["seconds"], TOP_RETAINED_SECONDS,
                         "s", applies, f"CLI startup {fmt(a.get('startup_seconds'), 's')}"))
    return out


def report_checks(s, n):
    """`memdiag report A B C -o report.html`: wall time (CLI startup included)
    and the file's size; the goal is stated for three 1M-object snapshots."""
    a = s.get("analysis", {}).get("report")
    if not a:
        return []
    applies = n == REPORT_SIZE
    note = f"CLI startup {fmt(s['analysis'].get('startup_seconds'), 's')}"
    if not a.get("output_ok"):
        note += "; the report does NOT name the leak"
    return [Check("report of 3 snapshots <= 5 s", n, a["seconds"], REPORT_SECONDS, "s",
                  applies, note),
            Check("report of 3 snapshots <= 5 MB", n, a["bytes"], REPORT_BYTES, "B", applies)]


def version_checks(v):
    """Each newer Python's compiled walker against the baseline's (run.py
    --versions): time (wall and CPU of the fork child) and memory per object."""
    if not v:
        return []
    out = []
    base = v["baseline"]
    for ver, ratio in v["ratios"].items():
        for name, what in (("walk_seconds_per_object", "time"),
                           ("child_cpu_seconds_per_object", "CPU time"),
                           ("extra_bytes_per_object", "memory")):
            value = ratio.get(name)
            if value is None:
                continue
            p, b = v["pythons"][ver], v["pythons"][base]
            unit = "B/obj" if name == "extra_bytes_per_object" else "s"
            scale = 1 if unit == "B/obj" else 1e6
            note = (f"{p['python']}: {p[name] * scale:.3g}, {b['python']}: {b[name] * scale:.3g}"
                    f" {'B' if unit == 'B/obj' else 'us'}/obj")
            out.append(Check(f"{ver} walk vs {base} walk: {what} <= 1.15x", v["size"], value,
                             VERSION_RATIO, "x", True, note))
    return out


def max_size(results):
    return max((s["objects_requested"] for s in results["sizes"]), default=0)
