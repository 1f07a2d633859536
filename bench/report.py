"""Tables from a benchmark results file: text for the terminal, Markdown for
docs/BENCHMARKS.md.

    .venv/bin/python bench/report.py bench/results/bench-20250101-120000.json
"""

from __future__ import annotations

import json
import sys

from goals import evaluate, fmt

WALKERS = ("compiled", "python")
MODES = ("fork", "inline")


def _size_name(n):
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


def _count(n):
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.0f}k"


def _mib(b):
    return f"{b / 2**20:.0f} MiB"


def rows(results):
    """(label, [cell per heap size]) for the measurement table."""
    sizes = results["sizes"]

    def per(fn):
        out = []
        for s in sizes:
            try:
                v = fn(s)
            except (KeyError, TypeError, ZeroDivisionError):
                v = None
            out.append("–" if v is None else v)
        return out

    def d(s):
        return s["derived"]

    table = [
        ("objects in snapshot (edges)", per(lambda s: f"{_count(d(s)['objects'])} "
                                                   f"({_count(d(s)['edges'])})")),
        ("target RSS after build", per(lambda s: _mib(s["rss_after_build_kb"] * 1024))),
        ("load average (1 min) at start / end", per(lambda s: f"{s['loadavg_at_start'].split()[0]}"
                                                           f" / {s['loadavg_at_end'].split()[0]}")),
    ]
    for w in WALKERS:
        for m in MODES:
            key = f"{w}-{m}"
            if not any(key in s["memdiag"] for s in sizes):
                continue
            table.append((f"memdiag snapshot, {w} walker, {m}",
                          per(lambda s, k=key: f"{fmt(d(s)['snapshot_seconds'][k], 's')} "
                                               f"({d(s)['snapshot_vs_guppy'][k]:.2f}x guppy)")))
    for w in WALKERS:
        for m in MODES:
            key = f"{w}-{m}"
            if not any(key in d(s).get("snapshot_cpu_seconds", {}) for s in sizes):
                continue
            table.append((f"  CPU time, {w} walker, {m}",
                          per(lambda s, k=key: f"{fmt(d(s)['snapshot_cpu_seconds'][k], 's')} "
                                               f"({d(s)['snapshot_cpu_vs_guppy_cpu'][k]:.2f}x "
                                               f"guppy's CPU)")))
    key = "compiled-fork" if any("compiled-fork" in s["memdiag"] for s in sizes) else "python-fork"
    table.append((f"{key} snapshot: walk+write; zlib alone on its columns",
                  per(lambda s: f"{fmt(d(s)['walk_seconds'][key], 's')}; "
                                f"{fmt(d(s)['writer_zlib_seconds'], 's')}")))
    table += [
        ("guppy3 hpy().heap() (CPU time)", per(lambda s: f"{fmt(s['guppy_seconds'], 's')} "
                                                         f"({fmt(s['guppy_cpu_seconds'], 's')})")),
        ("objgraph show_growth()", per(lambda s: fmt(s["objgraph_seconds"], "s"))),
        ("tracemalloc take_snapshot()+compare_to()",
         per(lambda s: fmt(d(s)["tracemalloc_seconds"], "s"))),
        ("pause, fork mode (main-thread ticker, median)",
         per(lambda s: fmt(d(s)["pause_seconds"], "s"))),
        ("pause, as the snapshot records it", per(lambda s: fmt(d(s)["pause_meta_seconds"], "s"))),
        ("longest other main-thread stall, 200 ms after the fork",
         per(lambda s: fmt(d(s)["other_stall_max_seconds"], "s"))),
        ("longest stall with no snapshot (noise)",
         per(lambda s: fmt(d(s)["ticker_noise_seconds"], "s"))),
        ("bare os.fork() in the same heap (median)",
         per(lambda s: fmt(d(s)["bare_fork_seconds"], "s"))),
        ("pause minus the bare fork just before it (median)",
         per(lambda s: fmt(d(s)["pause_over_fork_seconds"], "s"))),
        ("signal to complete file (fork)", per(lambda s: fmt(d(s)["signal_to_file_seconds"], "s"))),
    ]
    for w in WALKERS:
        for m in MODES:
            key = f"{w}-{m}"
            if not any(key in s["memdiag"] for s in sizes):
                continue
            table.append((f"walker extra memory, {w}, {m}",
                          per(lambda s, k=key: fmt(d(s)["walker_extra_bytes_per_object"][k],
                                                   "B/obj"))))
        key = f"{w}-fork"
        if any(key in s["memdiag"] for s in sizes):
            table.append((f"un-shared by the fork child, {w}",
                          per(lambda s, k=key: f"{fmt(d(s)['unshared_fraction'][k], '%')} of RSS "
                                               f"(child private {fmt(d(s)['child_private_fraction'][k], '%')})")))
    table += [
        ("guppy3 memory added (stays)",
         per(lambda s: fmt(d(s)["guppy_rss_added_bytes_per_object"], "B/obj"))),
        ("snapshot file size", per(lambda s: f"{fmt(d(s)['file_bytes_per_object'], 'B/obj')} "
                                             f"({_mib(s['snapshot_b']['file']['bytes'])})")),
        ("memdiag diff A B --json", per(lambda s: _analysis(s, "diff"))),
        ("  --no-retained", per(lambda s: _analysis(s, "diff_no_retained"))),
        ("memdiag retainers B --type AuditEntry --json", per(lambda s: _analysis(s, "retainers"))),
        ("  --no-retained", per(lambda s: _analysis(s, "retainers_no_retained"))),
        ("memdiag top B --retained --json", per(lambda s: _analysis(s, "top_retained"))),
        ("memdiag report A B C -o report.html",
         per(lambda s: f"{_analysis(s, 'report')}, file "
                       f"{fmt(s['analysis']['report']['bytes'], 'B')}")),
        ("dominators + retained sizes (in-process, above imports)",
         per(lambda s: f"{fmt(s['analysis']['dominators']['inner_seconds'], 's')}, peak "
                       f"{s['analysis']['dominators']['inner_peak_bytes'] / d(s)['objects']:.0f}"
                       f" B/obj")),
        ("guppy3 domisize of one object (AUDIT_LOG)",
         per(lambda s: fmt(d(s)["guppy_domisize_seconds"], "s"))),
        ("of which CLI startup (imports only)",
         per(lambda s: f"{fmt(s['analysis']['startup_seconds'], 's')}, peak "
                       f"{_mib(s['analysis']['startup_peak_rss_bytes'])}")),
    ]
    return [_size_name(s["objects_requested"]) for s in sizes], table


def _analysis(s, name):
    a = s["analysis"].get(name)
    if a is None:               # a run from before this command was measured
        return "–"
    per_obj = a["peak_rss_bytes"] / s["derived"]["objects"]
    ok = "" if a.get("output_ok") else " (leak NOT found)"
    return f"{fmt(a['seconds'], 's')}, peak {_mib(a['peak_rss_bytes'])} = {per_obj:.0f} B/obj{ok}"


def idle_sentence(idle):
    watch = ""
    if "watch_ratio" in idle:
        watch = (f"; with the hook and an RSS limit set (its watcher thread asleep, memory "
                 f"flat): {idle['watch_ratio']:.3f} ({idle['watch_ratio_of_minimums']:.3f}), "
                 f"{idle['watch_wakeups']} wakeups in {idle['watch_seconds']:.1f} s")
    return (f"request loop time with the hook installed / without = {idle['ratio']:.3f} "
            f"(median of {len(idle['seconds_on'])} rounds of {idle['requests_per_run']:,} "
            f"requests each way; ratio of minimums {idle['ratio_of_minimums']:.3f}){watch}; a "
            f"second arm without the hook, as a control: {idle['control_ratio']:.3f} "
            f"({idle['control_ratio_of_minimums']:.3f})")


def machine_line(m):
    return (f"{m['cpu']}, {m['nproc']} CPUs, {m['ram_bytes'] / 2**30:.1f} GiB RAM, "
            f"Linux {m['kernel']}, Python {m['python']}, {m['date']}, memdiag {m['memdiag_commit']}, "
            f"compiled walker: {'yes' if m['compiled_walker'] else 'no'}, "
            f"guppy3 {m['guppy3']}, objgraph {m['objgraph']}, "
            f"load average at start {m.get('loadavg', '?')}")


def version_lines(v):
    """The cross-version comparison (run.py --versions), one line per Python."""
    out = [f"compiled walker by Python version, {_size_name(v['size'])} objects, "
           f"median of {v['rounds']} fork snapshots each, taken in turn:"]
    for ver, p in v["pythons"].items():
        if "skipped" in p:
            out.append(f"  {ver}: skipped: {p['skipped']}")
            continue
        if not p.get("runs"):
            continue
        out.append(f"  {p['python']}: {_count(p['objects'])} objects, walk+write "
                   f"{p['walk_seconds_per_object'] * 1e6:.3f} us/obj "
                   f"({fmt(p['walk_seconds_per_object'] * p['objects'], 's')}), child CPU "
                   f"{p['child_cpu_seconds_per_object'] * 1e6:.3f} us/obj, walker memory "
                   f"{fmt(p['extra_bytes_per_object'], 'B/obj')}")
    return out


def text(results):
    heads, table = rows(results)
    lines = [machine_line(results["machine"])]
    if results["sizes"]:
        lines.append("")
        width = max(len(label) for label, _ in table)
        cols = [max([len(h)] + [len(str(r[1][k])) for r in table]) for k, h in enumerate(heads)]
        lines.append(" " * width + "  " + "  ".join(h.rjust(c) for h, c in zip(heads, cols)))
        for label, cells in table:
            lines.append(label.ljust(width) + "  " + "  ".join(str(v).rjust(c)
                                                            for v, c in zip(cells, cols)))
    if results.get("versions"):
        lines += [""] + version_lines(results["versions"])
    idle = results.get("idle")
    if idle:
        lines.append("")
        lines.append(f"idle cost: {idle_sentence(idle)}")
    lines += ["", "Goals (all measured in this run; a goal about production heaps is checked "
                  "at 1M objects and up, diff/retainers time at the largest heap):"]
    for c in evaluate(results):
        if not c.applies:
            continue
        verdict = c.verdict()
        note = f"  [{c.note}]" if c.note else ""
        lines.append(f"  {c.goal:<48} {_size_name(c.size):>5}  {fmt(c.value, c.unit):>12}  "
                     f"{verdict}{note}")
    return "\n".join(lines)


def markdown(results):
    heads, table = rows(results)
    out = [f"Machine: {machine_line(results['machine'])}."]
    if results["sizes"]:
        out.append("")
        out.append("| | " + " | ".join(heads) + " |")
        out.append("|---|" + "---|" * len(heads))
        for label, cells in table:
            out.append(f"| {label} | " + " | ".join(str(c) for c in cells) + " |")
    if results.get("versions"):
        out += [""] + [line.strip() if k == 0 else "- " + line.strip()
                       for k, line in enumerate(version_lines(results["versions"]))]
    idle = results.get("idle")
    if idle:
        out += ["", f"Idle cost: {idle_sentence(idle)}."]
    out += ["", "| goal | heap | measured | limit | verdict |", "|---|---|---|---|---|"]
    for c in evaluate(results):
        if not c.applies:
            continue
        limit = fmt(c.limit, c.unit) if c.unit != "ratio~1" else f"1.00 ± {c.limit:.2f}"
        verdict = c.verdict()
        note = f" ({c.note})" if c.note else ""
        out.append(f"| {c.goal} | {_size_name(c.size)} | {fmt(c.value, c.unit)} | {limit} | "
                   f"{verdict}{note} |")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS.json")
    with open(sys.argv[1]) as f:
        print(markdown(json.load(f)))
