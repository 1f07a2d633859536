"""Charts as inline SVG strings: no script draws them, nothing is fetched.
Colours come from CSS classes in the page's style sheet (`c-heap`,
`c-native`, `c-rss`, `c-count`, `c-bytes`, `c-neg`), so the page's
Content-Security-Policy needs no inline style attributes. Every text passes
through `esc`; a label cut to fit keeps its full text in a <title>.

    >>> svg = memory_columns(["#1", "#2"], [8 << 20, 9 << 20], [25 << 20, 27 << 20])
    >>> svg.startswith("<svg") and svg.count("<rect") >= 4
    True
"""

from __future__ import annotations

import math

from .blocks import human_bytes, signed
from .markup import esc

BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def byte_unit(largest):
    """(divisor, name) of the binary unit that shows `largest` as 1 to 1023.

    >>> byte_unit(300 << 20)
    (1048576, 'MiB')
    """
    k = 0
    while k + 1 < len(BINARY_UNITS) and abs(largest) >= 1024 ** (k + 1):
        k += 1
    return 1024 ** k, BINARY_UNITS[k]


def nice_ticks(lo, hi, count=4):
    """Round tick values covering lo..hi (0 included), about `count` of them.

    >>> nice_ticks(0, 27.3)
    [0, 10, 20, 30]
    >>> nice_ticks(-2, 7)
    [-2.5, 0, 2.5, 5, 7.5]
    """
    lo, hi = min(lo, 0), max(hi, 0)
    if hi == lo:
        hi = lo + 1
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step)
    last = math.ceil(hi / step)
    return [_tidy(k * step) for k in range(first, last + 1)]


def _tidy(v):
    r = round(v, 6)
    return int(r) if r == int(r) else r


def _fmt_tick(v, unit):
    return f"{v:g} {unit}" if unit else f"{v:,g}"


def _text(x, y, text, cls="", anchor="start", full=None):
    title = f"<title>{esc(full)}</title>" if full and full != text else ""
    c = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{c}>{title}'
            f'{esc(text)}</text>')


def _cut(text, limit):
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _svg(width, height, label, body, cls="chart"):
    return (f'<svg class="{cls}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{esc(label)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{esc(label)}</title>{body}</svg>')


def memory_columns(labels, heap, rss, width=460, height=240):
    """One column per snapshot: its RSS, split into the Python heap and the
    rest (native memory: C libraries, allocator overhead, the interpreter).
    An unknown RSS (None) shows the Python heap alone."""
    left, right, top, bottom = 64, 12, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    largest = max([h for h in heap] + [r for r in rss if r is not None] + [1])
    div, unit = byte_unit(largest)
    ticks = nice_ticks(0, largest / div)
    ymax = ticks[-1] * div

    def y(v):
        return top + plot_h - plot_h * v / ymax

    parts = _axis_y(ticks, unit, div, y, left, width - right)
    slot = plot_w / max(len(labels), 1)
    bar = min(56.0, slot * 0.6)
    for k, label in enumerate(labels):
        x = left + slot * k + (slot - bar) / 2
        h = heap[k]
        r = rss[k]
        rest = max(r - h, 0) if r is not None else 0
        parts.append(f'<rect class="c-heap" x="{x:.1f}" y="{y(h):.1f}" width="{bar:.1f}" '
                     f'height="{y(0) - y(h):.1f}"><title>{esc(label)}: Python heap '
                     f'{esc(_bytes(h))}</title></rect>')
        if rest:
            parts.append(f'<rect class="c-native" x="{x:.1f}" y="{y(h + rest):.1f}" '
                         f'width="{bar:.1f}" height="{y(h) - y(h + rest):.1f}"><title>'
                         f'{esc(label)}: RSS {esc(_bytes(r))}, of which outside the Python '
                         f'heap {esc(_bytes(rest))}</title></rect>')
        parts.append(_text(x + bar / 2, height - bottom + 16, label, "tick", "middle"))
    parts.append(_legend([("c-heap", "Python heap"), ("c-native", "rest of RSS (native)")],
                         left, height - 8))
    return _svg(width, height, "RSS and Python heap per snapshot", "".join(parts))


def growth_lines(xs, xlabels, series, width=460, height=240):
    """Lines of growth since the first snapshot, one per (css class, name,
    values) series (values in bytes; None where unknown). `xs` place the
    snapshots (seconds since the first, or their rank)."""
    left, right, top, bottom = 64, 16, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, _, vals in series for v in vals if v is not None] or [0]
    div, unit = byte_unit(max(abs(v) for v in values) or 1)
    ticks = nice_ticks(min(values) / div, max(values) / div)
    lo, hi = ticks[0] * div, ticks[-1] * div
    span = (xs[-1] - xs[0]) or 1

    def x(v):
        return left + plot_w * (v - xs[0]) / span

    def y(v):
        return top + plot_h - plot_h * (v - lo) / (hi - lo)

    parts = _axis_y(ticks, unit, div, y, left, width - right)
    for k, label in enumerate(xlabels):
        parts.append(_text(x(xs[k]), height - bottom + 16, label, "tick",
                           "start" if k == 0 and len(xs) > 1 else
                           "end" if k == len(xs) - 1 and len(xs) > 1 else "middle"))
    for cls, name, vals in series:
        pts = [(x(xs[k]), y(v), v, xlabels[k]) for k, v in enumerate(vals) if v is not None]
        if len(pts) > 1:
            d = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in pts)
            parts.append(f'<polyline class="{cls} line" points="{d}" fill="none"/>')
        for px, py, v, label in pts:
            parts.append(f'<circle class="{cls}" cx="{px:.1f}" cy="{py:.1f}" r="3.5"><title>'
                         f'{esc(label)}: {esc(name)} {esc(_bytes(v, signed=True))}'
                         f'</title></circle>')
    parts.append(_legend([(cls, name) for cls, name, _ in series], left, height - 8))
    return _svg(width, height, "Growth since the first snapshot", "".join(parts))


def type_bars(rows, width=920, row_h=22):
    """Two bar panels side by side, count growth and bytes growth, one row
    per (type name, count delta, bytes delta). Negative deltas point left
    from the zero line, in the `c-neg` colour."""
    label_w, gap, top = 250, 24, 22
    panel_w = (width - label_w - 2 * gap) / 2
    height = top + row_h * max(len(rows), 1) + 8
    parts = [_text(label_w + gap, 14, "objects (count)", "axis-title"),
             _text(label_w + 2 * gap + panel_w, 14, "bytes", "axis-title")]
    panels = [(label_w + gap, [r[1] for r in rows], False),
              (label_w + 2 * gap + panel_w, [r[2] for r in rows], True)]
    for x0, vals, is_bytes in panels:
        lo = min(vals + [0])
        hi = max(vals + [0]) or 1
        span = (hi - lo) or 1
        zero = x0 + panel_w * (-lo) / span
        parts.append(f'<line class="axis" x1="{zero:.1f}" y1="{top - 4}" x2="{zero:.1f}" '
                     f'y2="{height - 6}"/>')
        for k, v in enumerate(vals):
            y = top + row_h * k + 3
            w = panel_w * abs(v) / span
            x = zero if v >= 0 else zero - w
            cls = "c-neg" if v < 0 else ("c-bytes" if is_bytes else "c-count")
            text = _bytes(v, signed=True) if is_bytes else signed(v)
            parts.append(f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{max(w, 1):.1f}"'
                         f' height="{row_h - 7}"><title>{esc(rows[k][0])}: {esc(text)}'
                         f'</title></rect>')
            # the value beside the bar, or inside its end when the bar is long
            inside = w > panel_w - 64
            if v >= 0:
                tx, anchor = (zero + w - 4, "end") if inside else (zero + w + 4, "start")
            else:
                tx, anchor = (zero - w + 4, "start") if inside else (zero - w - 4, "end")
            parts.append(_text(tx, y + row_h - 11, text, "value-in" if inside else "value",
                               anchor))
    for k, row in enumerate(rows):
        y = top + row_h * k + row_h - 8
        parts.append(_text(label_w - 6, y, _cut(row[0], 32), "label", "end", row[0]))
    return _svg(width, height, "Types by growth: count and bytes", "".join(parts))


def sparkline(values, width=120, height=28, label="lengths per snapshot"):
    """A small line of a container's length in each snapshot."""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1
    step = (width - 8) / max(len(values) - 1, 1)
    pts = [(4 + step * k, height - 4 - (height - 8) * (v - lo) / span)
           for k, v in enumerate(values)]
    d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    dots = "".join(f'<circle class="c-count" cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>'
                   for x, y in pts)
    text = " → ".join(f"{v:,}" for v in values)
    return _svg(width, height, f"{label}: {text}",
                f'<polyline class="c-count line" points="{d}" fill="none"/>{dots}', "spark")


def _axis_y(ticks, unit, div, y, x0, x1):
    out = []
    for t in ticks:
        yy = y(t * div)
        cls = "axis" if t == 0 else "grid"
        out.append(f'<line class="{cls}" x1="{x0}" y1="{yy:.1f}" x2="{x1}" y2="{yy:.1f}"/>')
        out.append(_text(x0 - 6, yy + 4, _fmt_tick(t, unit), "tick", "end"))
    return out


def _legend(items, x, y):
    out = []
    for cls, name in items:
        out.append(f'<rect class="key {cls}" x="{x}" y="{y - 9}" width="10" height="10"/>')
        out.append(_text(x + 14, y, name, "legend"))
        x += 24 + 7 * len(name)
    return "".join(out)


def _bytes(n, signed=False):
    return human_bytes(n, signed=signed)
