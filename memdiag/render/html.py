"""The HTML report: one self-contained page from a memdiag.analysis.report.Report.

    >>> page = html_page(report, generator="memdiag 0.1.0", generated=1765000000)  # doctest: +SKIP
    >>> page.startswith("<!DOCTYPE html>")                                         # doctest: +SKIP
    True

Self-contained: the style sheet and the one script are inline and allowed by
their SHA-256 in the page's Content-Security-Policy (`default-src 'none'`),
charts are inline SVG, fonts are the system's. Opening the file makes no
request at all, and nothing a snapshot holds can add one: every name goes
through `markup.esc`, the JSON block through `markup.json_island`. The page
works without the script (trees are <details> elements); the script only
adds "expand all" and "collapse all".

The page shows what the snapshots hold and nothing more: type names,
attribute names and name-like dict keys, lengths and sizes, argv as the
hook wrote it. String contents appear only if the snapshots were taken
with --strings, and the header says so.
"""

from __future__ import annotations

import os
import time

from . import charts
from .blocks import human_bytes, signed
from .diff import VERDICTS, memory_line
from ..analysis.results import fold_runs
from .markup import csp_hash, esc, json_island

STYLE = """
:root { --fg: #1d2330; --muted: #5b6576; --line: #d8dde6; --bg: #fff; --panel: #f5f7fa;
  --heap: #2f6fdf; --native: #e07b24; --count: #15948a; --bytes: #7552cc; --neg: #9aa3b2;
  --warn: #b45309; --good: #1f7a3a; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e3e7ee; --muted: #9aa5b5; --line: #39414f; --bg: #161a21; --panel: #1e232c;
    --heap: #5b93f5; --native: #f39a4d; --count: #35b8ac; --bytes: #9b82e8; --neg: #6b7482; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 20px 24px 40px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 0 0 4px; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13.5px; }
.muted { color: var(--muted); }
.verdict { font-size: 16px; font-weight: 600; padding: 8px 12px; border-radius: 6px;
  background: var(--panel); border-left: 4px solid var(--heap); }
.verdict.v-native, .verdict.v-both { border-left-color: var(--native); }
.verdict.v-flat { border-left-color: var(--neg); font-weight: 400; }
.warn { color: var(--warn); }
.headline { margin: 10px 0 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 14px 0 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
nav { margin: 14px 0 0; }
nav a { margin-right: 14px; }
a { color: var(--heap); }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; }
figcaption { font-size: 13px; color: var(--muted); max-width: 460px; }
svg.chart { max-width: 100%; height: auto; background: var(--panel); border-radius: 6px; }
svg text { fill: var(--fg); font: 11px system-ui, sans-serif; }
svg text.label { font: 12px ui-monospace, Menlo, Consolas, monospace; }
svg text.tick, svg text.value { fill: var(--muted); }
svg text.value-in { fill: #fff; font-weight: 600; }
svg text.axis-title { font-weight: 600; }
svg line.grid { stroke: var(--line); stroke-width: 1; }
svg line.axis { stroke: var(--muted); stroke-width: 1; }
svg .line { stroke-width: 2.5; fill: none; }
rect.c-heap, circle.c-heap { fill: var(--heap); } polyline.c-heap { stroke: var(--heap); }
rect.c-native, circle.c-native, rect.c-rss, circle.c-rss { fill: var(--native); }
polyline.c-rss, polyline.c-native { stroke: var(--native); }
rect.c-count, circle.c-count { fill: var(--count); } polyline.c-count { stroke: var(--count); }
rect.c-bytes { fill: var(--bytes); } rect.c-neg { fill: var(--neg); }
svg.spark { vertical-align: middle; }
table { border-collapse: collapse; margin: 10px 0; font-size: 13px; }
code.wrap { overflow-wrap: anywhere; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.n { white-space: nowrap; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
.scroll { overflow-x: auto; }
article.suspect { background: var(--panel); border-radius: 8px; padding: 12px 16px; margin: 14px 0; }
article.suspect .path { font-size: 15px; overflow-wrap: anywhere; }
.rank { color: var(--muted); margin-right: 6px; }
.facts-line { margin: 2px 0 8px; }
ul.tree, ul.tree ul { list-style: none; margin: 0; padding-left: 18px; }
ul.tree { padding-left: 0; }
ul.tree li { margin: 2px 0; }
ul.tree summary { cursor: pointer; }
ul.tree .leaf { padding-left: 16px; display: inline-block; }
.step { font-weight: 600; }
.type { color: var(--muted); }
.container > summary .step { color: var(--heap); }
.badge { display: inline-block; font-size: 12px; padding: 0 6px; border-radius: 9px;
  border: 1px solid var(--line); margin-left: 6px; color: var(--muted); }
.grew { color: var(--good); font-weight: 600; }
.more { color: var(--muted); font-style: italic; padding-left: 16px; }
.tools { margin: 6px 0; }
button { font: inherit; font-size: 13px; padding: 2px 10px; margin-right: 6px; cursor: pointer; }
.note { font-size: 13px; color: var(--muted); margin: 0 0 10px; }
footer { margin-top: 36px; font-size: 13px; color: var(--muted); }
"""

SCRIPT = """
(function () {
  var tools = document.getElementById("tree-tools");
  if (!tools) { return; }
  tools.hidden = false;
  tools.addEventListener("click", function (event) {
    var want = event.target.getAttribute("data-open");
    if (want === null) { return; }
    var all = document.querySelectorAll("#suspects details");
    for (var i = 0; i < all.length; i++) { all[i].open = want === "1"; }
  });
})();
"""

CSP = ("default-src 'none'; style-src {style}; script-src {script}; img-src 'none'; "
       "base-uri 'none'; form-action 'none'")


def html_page(report, generator="memdiag", generated=None):
    """The whole report as one HTML document (a str)."""
    generated = time.time() if generated is None else generated
    body = [_header(report, generator, generated), _memory_section(report),
            _suspects_section(report), _groups_section(report), _types_section(report),
            _numbers_section(report), _footer(report, generator, generated)]
    data = json_island(report_json(report))
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f'<meta http-equiv="Content-Security-Policy" content="'
        f'{esc(CSP.format(style=csp_hash(STYLE), script=csp_hash(SCRIPT)))}">\n',
        '<meta name="referrer" content="no-referrer">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{esc(_title(report))}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        *body,
        "</main>\n",
        f'<script type="application/json" id="memdiag-data">{data}</script>\n',
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n",
    ])


# ------------------------------------------------------------------ header

def _title(report):
    pids = _pids(report)
    who = f"pid {pids[0]}" if len(pids) == 1 else "several processes"
    return f"memdiag report: {who}, {len(report.snapshots)} snapshots"


def _pids(report):
    return sorted({s.pid for s in report.snapshots if s.pid is not None}) or ["?"]


def utc(t):
    """A snapshot time for a page read anywhere: UTC.

    >>> utc(0)
    '1970-01-01 00:00:00 UTC'
    """
    if t is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def duration(seconds):
    """A time span, as the page shows it.

    >>> duration(0.42), duration(4), duration(70), duration(3 * 3600 + 60)
    ('0.4 s', '4 s', '1 min 10 s', '3 h 1 min')
    """
    if seconds < 10:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + " s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _header(report, generator, generated):
    snaps = report.snapshots
    first, last = snaps[0], snaps[-1]
    text, _ = VERDICTS[report.verdict]
    out = ["<header>\n<h1>", esc(_title(report)), "</h1>\n",
           f'<p class="verdict v-{esc(report.verdict)}">{esc(text)}</p>\n',
           f'<p class="mono">{esc(memory_line(report.memory))}</p>\n']
    if not report.matched:
        out.append('<p class="warn">These snapshots come from different processes: objects '
                   'cannot be matched between them, so only type totals are compared (no '
                   'suspects, no new/freed counts).</p>\n')
    if report.suspects:
        s = report.suspects[0]
        out.append(f'<p class="headline">Top suspect: <a href="#suspect-1"><code>'
                   f'{esc(s.suspect.path)}</code></a>: {_grew_phrase(s)}</p>\n')
    pids = _pids(report)
    python = last.python or "?"
    if last.implementation:
        python += f" ({last.implementation})"
    facts = [("process", esc("pid " + ", ".join(map(str, pids)))),
             ("command", _argv(last.argv)),
             ("Python", esc(python)),
             ("snapshots", _span(snaps)),
             ("snapshot mode", _distinct([f"{s.mode or '?'}, {s.walker or '?'} walker"
                                          for s in snaps])),
             ("allocation sites", _traced(snaps)),
             ("string contents", _strings(snaps))]
    out.append('<dl class="facts">\n')
    for key, value in facts:
        out.append(f"<dt>{esc(key)}</dt><dd>{value}</dd>\n")
    out.append("</dl>\n<nav>")
    for anchor, name in (("memory", "Memory"), ("suspects", "Suspects"),
                         *((("groups", "Grouped suspects"),) if report.groups else ()),
                         ("types", "Types"), ("numbers", "The numbers")):
        out.append(f'<a href="#{anchor}">{name}</a>')
    out.append("</nav>\n</header>\n")
    return "".join(out)


def _grew_phrase(d):
    """'list grew by +600 ccap.cap.CAP (+314.4 KiB); keeps 419.3 KiB alive
    (+314.5 KiB since the first snapshot)', escaped."""
    s = d.suspect
    what = f"{esc(s.type)} grew by {esc(signed(s.growth))}"
    if s.added_type:
        what += f" <code>{esc(s.added_type)}</code>"
    what += f" ({esc(human_bytes(s.size_delta, signed=True))})"
    if d.retained_after is not None:
        what += f"; keeps {esc(human_bytes(d.retained_after))} alive"
        if d.retained_delta is not None:
            what += (f" ({esc(human_bytes(d.retained_delta, signed=True))} since the first "
                     "snapshot)")
    return what


def _argv(argv):
    if argv is None:
        return '<span class="muted">not recorded</span>'
    return f"<code>{esc(' '.join(argv))}</code>"


def _span(snaps):
    times = [s.time for s in snaps]
    n = f"{len(snaps)}"
    if all(t is not None for t in times):
        return (f"{n}, {esc(utc(times[0]))} to {esc(utc(times[-1]))} "
                f"({esc(duration(times[-1] - times[0]))})")
    return n


def _distinct(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return esc("; ".join(seen))


def _traced(snaps):
    if all(s.traced for s in snaps):
        return "recorded (tracemalloc): the trees say where objects were allocated"
    if any(s.traced for s in snaps):
        return "recorded in some snapshots (tracemalloc)"
    return ('not recorded <span class="muted">(memdiag run --trace-frames 1 records '
            'where each object was allocated)</span>')


def _strings(snaps):
    if any(s.strings for s in snaps):
        return ('<span class="warn">written (--strings): names in paths may be data; read '
                'the report before you share it</span>')
    return "not in the snapshots (sizes and lengths only)"


# ------------------------------------------------------------------ memory

def _memory_section(report):
    snaps = report.snapshots
    labels = [f"#{k}" for k in range(1, len(snaps) + 1)]
    heap = [s.python_heap for s in snaps]
    rss = [s.rss for s in snaps]
    times = [s.time for s in snaps]
    if all(t is not None for t in times) and times[-1] > times[0]:
        xs = [t - times[0] for t in times]
        xlabels = [f"{lab} +{duration(x)}" if x else lab for lab, x in zip(labels, xs)]
    else:
        xs, xlabels = list(range(len(snaps))), labels
    series = [("c-heap", "Python heap", [h - heap[0] for h in heap])]
    if all(r is not None for r in rss):
        series.insert(0, ("c-rss", "RSS", [r - rss[0] for r in rss]))
    out = ['<section id="memory">\n<h2>Memory</h2>\n<div class="charts">\n',
           "<figure>", charts.memory_columns(labels, heap, rss),
           "<figcaption>Each snapshot's RSS: the Python heap (the sizes of all Python "
           "objects) and the rest (C libraries, allocator overhead, the interpreter)."
           "</figcaption></figure>\n",
           "<figure>", charts.growth_lines(xs, xlabels, series),
           "<figcaption>Growth since the first snapshot. A Python leak moves both lines "
           "together; native growth moves RSS alone.</figcaption></figure>\n</div>\n"
           '<p class="muted">The numbers: <a href="#numbers-memory">memory per snapshot</a>.'
           "</p>\n</section>\n"]
    return "".join(out)


def _memory_table(report):
    snaps = report.snapshots
    labels = [f"#{k}" for k in range(1, len(snaps) + 1)]
    heap = [s.python_heap for s in snaps]
    rss = [s.rss for s in snaps]
    rows = []
    for k, s in enumerate(snaps):
        rest = None if s.rss is None else s.rss - s.python_heap
        rows.append([labels[k], esc(os.path.basename(s.path)), esc(utc(s.time)),
                     _n(human_bytes(s.rss)), _n(human_bytes(s.python_heap)),
                     _n(human_bytes(rest)),
                     _n("" if s.rss is None or rss[0] is None else
                        human_bytes(s.rss - rss[0], signed=True)),
                     _n(human_bytes(s.python_heap - heap[0], signed=True)),
                     _n(f"{s.objects:,}")])
    return _table("Memory per snapshot", ["#", "file", "time", "RSS", "Python heap",
                                          "rest of RSS", "RSS growth", "heap growth", "objects"],
                  rows, numeric=range(3, 9), anchor="numbers-memory")


# ---------------------------------------------------------------- suspects

def _suspects_section(report):
    out = ['<section id="suspects">\n<h2>Suspects</h2>\n']
    if not report.suspects:
        why = ("No container alive in every snapshot grew." if report.matched else
               "Snapshots of different processes cannot name containers.")
        if report.verdict == "native":
            why = "No Python container explains the growth: it is outside Python objects."
        out.append(f"<p>{esc(why)}</p>\n</section>\n")
        return "".join(out)
    out.append("<p>Containers alive in every snapshot that grew, best first. Each tree "
               "runs from a root down to the container and what it holds; click a row to "
               "open what is below it.</p>\n")
    out.append('<p class="tools" id="tree-tools" hidden><button type="button" '
               'data-open="1">Expand all</button><button type="button" data-open="0">'
               "Collapse all</button></p>\n")
    several = len(report.snapshots) > 2
    for d in report.suspects:
        out.append(_suspect_card(d, several))
    out.append('<p class="muted">The numbers: <a href="#numbers-suspects">suspects</a>.</p>\n'
               "</section>\n")
    return "".join(out)


def _suspects_table(report):
    if not report.suspects:
        return ""
    rows = []
    headers = ["#", "path", "type", "containers", "lengths", "growth", "added", "bytes",
               "retained first", "retained last", "retained growth"]
    numeric = [0, 3, 4, 5, 7, 8, 9, 10]
    for d in report.suspects:
        s = d.suspect
        row = [_n(str(d.rank)), f'<code class="wrap">{esc(s.path)}</code>', esc(s.type),
               _n(esc(" → ".join(f"{x:,}" for x in s.lengths))),
               _n(esc(signed(s.growth))), esc(s.added_type or ""),
               _n(esc(human_bytes(s.size_delta, signed=True))),
               _n(_maybe_bytes(d.retained_before)), _n(_maybe_bytes(d.retained_after)),
               _n(_maybe_bytes(d.retained_delta, signed=True))]
        row.insert(3, _n(f"{d.containers:,}"))
        rows.append(row)
    return _table("Suspects", headers, rows, numeric=numeric, anchor="numbers-suspects",
                  note="retained: its own bytes and those of every object only it keeps alive "
                       "(freed with it), in the first and the last snapshot.")


def _suspect_card(d, several):
    s = d.suspect
    facts = [f"{esc(s.type)}", f"length {esc(' → '.join(f'{x:,}' for x in s.lengths))}",
             f'<span class="grew">{esc(signed(s.growth))}</span>'
             + (f" <code>{esc(s.added_type)}</code>" if s.added_type else ""),
             f"{esc(human_bytes(s.size_delta, signed=True))} in new objects"]
    if d.retained_after is not None:
        keep = f"keeps {esc(human_bytes(d.retained_after))} alive"
        if d.retained_before is not None:
            keep += (f" (was {esc(human_bytes(d.retained_before))}, "
                     f"{esc(human_bytes(d.retained_delta, signed=True))})")
        facts.append(keep)
    if d.kind == "group":
        facts.insert(0, f"{d.containers:,} containers with this path shape")
    badges = ""
    if d.weak:
        badges += '<span class="badge">held weakly</span>'
    if d.bound is not None:
        badges += f'<span class="badge">bounded: {d.suspect.len_after:,} / {d.bound:,}</span>'
    spark = charts.sparkline(list(s.lengths)) if several else ""
    out = [f'<article class="suspect" id="suspect-{d.rank}">\n<h3><span class="rank">'
           f'#{d.rank}</span><code class="path">{esc(s.path)}</code>{badges}</h3>\n'
           f'<p class="facts-line">{spark} {"; ".join(facts)}</p>\n']
    if d.path is not None:
        out.append(_path_tree(d))
    out.append("</article>\n")
    return "".join(out)


def _path_tree(d):
    """Root, hops, the container (open), what it holds (closed below the first level)."""
    p = d.path
    hops = [(p.root, p.root_kind, p.root)]
    runs = []          # [text, type, hops]: a run of one step (a linked list) is one node
    for step in p.steps:
        if runs and runs[-1][0] == step.text:
            runs[-1][2] += step.count
        else:
            runs.append([step.text, step.type, step.count])
    text = p.root
    for step_text, kind, count in runs:
        piece = fold_runs([(step_text, count)])
        text += piece
        hops.append((piece, kind, text))
    container = hops[-1]
    head = "".join(
        f'<li><details open><summary title="{esc(full)}"><code class="step">{esc(step)}'
        f'</code> <span class="type">{esc(kind)}</span></summary><ul>'
        for step, kind, full in hops[:-1])
    tail = "</ul></details></li>" * (len(hops) - 1)
    s = d.suspect
    meta = [f"length {' → '.join(f'{x:,}' for x in s.lengths)}"]
    if d.retained_after is not None:
        meta.append(f"keeps {human_bytes(d.retained_after)}")
    children = _held_children(d.holds) if d.holds is not None else ""
    node = (f'<li><details open class="container"><summary title="{esc(container[2])}">'
            f'<code class="step">{esc(container[0])}</code> <span class="type">'
            f'{esc(container[1])}</span> <span class="muted">{esc(", ".join(meta))}</span>'
            f"</summary><ul>{children}</ul></details></li>")
    return f'<ul class="tree">{head}{node}{tail}</ul>\n'


def _held_children(group):
    out = []
    for g in group.children:
        line = (f'<code class="step">{esc(g.step)}</code> <span class="type">{esc(g.type)}'
                f"</span> {_held_meta(g)}")
        if g.children or any(g.others):
            out.append(f"<li><details><summary>{line}</summary><ul>{_held_children(g)}"
                       f"</ul></details></li>")
        else:
            out.append(f'<li><span class="leaf">{line}</span></li>')
    groups, objects, size = group.others
    if groups:
        out.append(f'<li class="more">… {groups:,} more group{"s" if groups > 1 else ""}: '
                   f"{objects:,} objects, {esc(human_bytes(size))}</li>")
    return "".join(out)


def _held_meta(g):
    parts = [f"×{g.count:,}"]
    if g.new:
        parts.append(f"{g.new:,} new")
    parts.append(f"own {human_bytes(g.size)}")
    if g.retained is not None and g.retained != g.size:
        parts.append(f"keeps {human_bytes(g.retained)}")
    text = esc(", ".join(parts))
    if g.site:
        text += f', allocated at <code>{esc(g.site)}</code>'
    return f'<span class="muted">{text}</span>'


# ------------------------------------------------------------------ groups

def _groups_section(report):
    """Suspects that are groups of containers with one path shape (`kind`
    'group'); no section when there is none."""
    if not report.groups:
        return ""
    out = ['<section id="groups">\n<h2>Grouped suspects</h2>\n',
           "<p>Many containers with the same path shape ([*] = any index or key) that "
           "grew together, counted as one suspect.</p>\n"]
    rows = [[_n(str(d.rank)), f"<code>{esc(d.suspect.path)}</code>", esc(d.suspect.type),
             _n(f"{d.containers:,}"), _n(esc(signed(d.suspect.growth))),
             esc(d.suspect.added_type or ""),
             _n(esc(human_bytes(d.suspect.size_delta, signed=True)))]
            for d in report.groups]
    if rows:
        out.append(_table("Grouped suspects", ["#", "path shape", "type", "containers",
                                               "growth", "added", "bytes"], rows,
                          numeric=(0, 3, 4, 6)))
    else:
        out.append("<p>None: no group of containers grew together.</p>\n")
    out.append("</section>\n")
    return "".join(out)


# ------------------------------------------------------------------- types

def _types_section(report):
    out = ['<section id="types">\n<h2>Types by growth</h2>\n']
    if not report.types:
        out.append("<p>No type grew, in count or in bytes.</p>\n</section>\n")
        return "".join(out)
    bars = [(t.growth.type, t.growth.count_delta, t.growth.size_delta) for t in report.types]
    out.append(f'<figure class="scroll">{charts.type_bars(bars)}<figcaption>From the first '
               "to the last snapshot, most bytes first. The numbers: "
               '<a href="#numbers-types">types by growth</a>.</figcaption></figure>\n'
               "</section>\n")
    return "".join(out)


def _types_table(report):
    if not report.types:
        return ""
    rows = []
    for t in report.types:
        g = t.growth
        rows.append([f"<code>{esc(g.type)}</code>",
                     _n(esc(" → ".join(f"{c:,}" for c in t.counts))),
                     _n(esc(signed(g.count_delta))),
                     _n("" if g.new is None else f"{g.new:,}"),
                     _n("" if g.freed is None else f"{g.freed:,}"),
                     _n(esc(" → ".join(human_bytes(b) for b in t.sizes))),
                     _n(esc(human_bytes(g.size_delta, signed=True)))])
    return _table("Types by growth", ["type", "count", "delta", "new", "freed", "bytes",
                                      "bytes delta"], rows, numeric=range(1, 7),
                  anchor="numbers-types")


# --------------------------------------------------------------- snapshots

def _snapshots_table(report):
    rows = []
    for k, s in enumerate(report.snapshots, 1):
        rows.append([_n(str(k)), esc(os.path.basename(s.path)), _n(esc(str(s.seq or ""))),
                     esc(utc(s.time)), _n(f"{s.objects:,}"), _n(f"{s.edges:,}"),
                     esc(s.mode or "?"), esc(s.walker or "?"),
                     _n("" if s.pause_seconds is None else f"{s.pause_seconds * 1000:.1f} ms"),
                     esc(s.python or "?")])
    return _table("Snapshots, oldest first", ["#", "file", "seq", "time", "objects", "edges",
                                              "mode", "walker", "pause", "Python"], rows,
                  numeric=(0, 2, 4, 5, 8), anchor="numbers-snapshots")


def _numbers_section(report):
    """Every number the charts and trees show, as plain tables."""
    return ('<section id="numbers">\n<h2>The numbers</h2>\n' + _memory_table(report)
            + _suspects_table(report) + _types_table(report) + _snapshots_table(report)
            + "</section>\n")


def _footer(report, generator, generated):
    return (f'<footer>Generated by {esc(generator)} on {esc(utc(generated))}. This page '
            "holds what the snapshots hold: type names, attribute names and name-like dict "
            "keys, lengths and sizes, and the process facts above; string contents only if "
            "the snapshots were taken with --strings. The numbers are also in the "
            '<code>memdiag-data</code> JSON block of this file.</footer>\n')


# ------------------------------------------------------------------ tables

def _n(cell):
    """A right-aligned numeric cell (already escaped or plain digits)."""
    return ("n", cell)


def _table(caption, headers, rows, numeric=(), anchor=None, note=""):
    numeric = set(numeric)
    ident = f' id="{esc(anchor)}"' if anchor else ""
    out = [f'<div class="scroll"{ident}><table><caption>{esc(caption)}</caption><thead><tr>']
    for k, h in enumerate(headers):
        cls = ' class="n"' if k in numeric else ""
        out.append(f"<th{cls}>{esc(h)}</th>")
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for cell in row:
            if isinstance(cell, tuple):
                out.append(f'<td class="n">{cell[1]}</td>')
            else:
                out.append(f"<td>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    if note:
        out.append(f'<p class="note">{esc(note)}</p>')
    out.append("</div>\n")
    return "".join(out)


def _maybe_bytes(n, signed=False):
    return "" if n is None else esc(human_bytes(n, signed=signed))


# -------------------------------------------------------------------- JSON

def report_json(report):
    """The numbers the page shows, for scripts (the page's memdiag-data block)."""
    m = report.memory
    return {
        "verdict": report.verdict, "matched": report.matched,
        "snapshots": [{"file": os.path.basename(s.path), "pid": s.pid, "seq": s.seq,
                       "time": s.time, "python": s.python, "argv": list(s.argv or ()),
                       "mode": s.mode, "walker": s.walker, "objects": s.objects,
                       "rss": s.rss, "python_heap": s.python_heap} for s in report.snapshots],
        "memory": {"rss_before": m.rss_before, "rss_after": m.rss_after,
                   "rss_delta": m.rss_delta, "python_heap_before": m.python_heap_before,
                   "python_heap_after": m.python_heap_after,
                   "python_heap_delta": m.python_heap_delta},
        "types": [{"type": t.growth.type, "counts": list(t.counts), "sizes": list(t.sizes),
                   "count_delta": t.growth.count_delta, "size_delta": t.growth.size_delta,
                   "new": t.growth.new, "freed": t.growth.freed} for t in report.types],
        "suspects": [{"path": d.suspect.path, "type": d.suspect.type, "kind": d.kind,
                      "containers": d.containers, "lengths": list(d.suspect.lengths),
                      "growth": d.suspect.growth, "size_delta": d.suspect.size_delta,
                      "added_type": d.suspect.added_type,
                      "retained_before": d.retained_before, "retained_after": d.retained_after,
                      "retained_delta": d.retained_delta,
                      "holds": _holds_json(d.holds) if d.holds is not None else None}
                     for d in report.suspects],
    }


def _holds_json(g):
    return {"step": g.step, "type": g.type, "count": g.count, "size": g.size,
            "retained": g.retained, "new": g.new, "site": g.site or None,
            "children": [_holds_json(c) for c in g.children]}
