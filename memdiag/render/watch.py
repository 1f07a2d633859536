"""memdiag watch's view: one row per process, from the samples cli/watch.py
takes. Plain values in, text and a rich table out.

    >>> sparkline([10, 10, 11, 12, 14, 18], width=6, flat=0)
    '▁▁▂▃▅█'
    >>> sparkline([5 << 20] * 4, width=4)          # flat: the bottom line
    '▁▁▁▁'
    >>> rate(-3 << 20, human_bytes), rate(1500, count)
    ('-3.0 MiB/min', '+1.5k/min')
"""

from __future__ import annotations

from .blocks import human_bytes

BARS = "▁▂▃▄▅▆▇█"
FLAT = 64 << 10      # a line that moves less than this (bytes) is drawn flat


def sparkline(values, width=30, flat=FLAT):
    """The last values as a line of block characters, `width` at most (the
    largest value of each bucket when there are more values than columns)."""
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [max(values[int(k * step):max(int((k + 1) * step), int(k * step) + 1)])
                  for k in range(width)]
    low, high = min(values), max(values)
    if high - low <= flat:
        return BARS[0] * len(values)
    scale = (len(BARS) - 1) / (high - low)
    return "".join(BARS[round((v - low) * scale)] for v in values)


def count(n):
    """A count the short way: 950, 12.3k, 1.23M.

    >>> count(950), count(12_345), count(1_234_567), count(None)
    ('950', '12.3k', '1.23M', '—')
    """
    if n is None:
        return "—"
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n >= 1_000_000:
        return f"{sign}{n / 1e6:.2f}M"
    if n >= 1000:
        return f"{sign}{n / 1e3:.1f}k"
    return f"{sign}{n:.0f}"


def rate(per_minute, fmt):
    """A growth per minute, signed; '—' when unknown."""
    if per_minute is None:
        return "—"
    text = fmt(per_minute) if fmt is count else fmt(int(per_minute), signed=True)
    if fmt is count and per_minute > 0:
        text = "+" + text
    return f"{text}/min"


def limit_cell(p):
    """'61% of 256.0 MiB' from a process row's rss and memory_limit (its source,
    cgroup or physical memory, is in --json).

    >>> limit_cell({"rss": 150 << 20, "memory_limit": {"bytes": 256 << 20, "source": "cgroup v1"}})
    '58% of 256.0 MiB'
    """
    limit = p.get("memory_limit")
    if not limit or not limit.get("bytes") or p.get("rss") is None:
        return "—"
    return f"{p['rss'] * 100 // limit['bytes']}% of {human_bytes(limit['bytes'])}"


def snapshots_cell(p):
    """How many snapshots the process has in its directory, and the last one's name.

    >>> snapshots_cell({"hooked": True, "snapshots": ["/s/memdiag-42-1.snap", "/s/memdiag-42-2.snap"]})
    '2: memdiag-42-2.snap'
    """
    snaps = p.get("snapshots")
    if not p.get("hooked"):
        return "no hook"
    if not snaps:
        return "0"
    return f"{len(snaps)}: {snaps[-1].rsplit('/', 1)[-1]}"


def short_command(command, width=24):
    """The command without its directories, cut to width.

    >>> short_command("/srv/venv/bin/python /srv/app/worker.py --queue mail")
    'python worker.py --queu…'
    """
    words = [w.rsplit("/", 1)[-1] if "/" in w and not w.startswith("-") else w
             for w in (command or "?").split()]
    text = " ".join(words)
    return text if len(text) <= width else text[:width - 1] + "…"


def rows(processes, spark_width=20):
    """Each process as the table's cells (strings)."""
    out = []
    for p in processes:
        blocks = count(p.get("pymalloc_blocks")) if p.get("pymalloc_blocks") is not None \
            else ("…" if p.get("watchable") else "—")
        out.append([str(p["pid"]), short_command(p.get("command")), human_bytes(p.get("rss")),
                    rate(p.get("rss_per_min"), human_bytes),
                    sparkline(p.get("rss_history") or [], spark_width),
                    blocks, rate(p.get("pymalloc_blocks_per_min"), count),
                    limit_cell(p), snapshots_cell(p)])
    return out


COLUMNS = [("pid", "right"), ("command", "left"), ("RSS", "right"), ("RSS/min", "right"),
           ("RSS, 10 min", "left"), ("py blocks", "right"), ("blocks/min", "right"),
           ("of limit", "left"), ("snapshots", "left")]

NOTE = ("py blocks: pymalloc blocks in use (small Python objects), from processes run "
        "with --watchable or --snapshot-at-rss")


def table(processes, title, messages, keys):
    """The live view: a rich Table of the processes, the last messages, the keys."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    t = Table(title=title, title_justify="left", show_edge=False, header_style="bold",
              caption=NOTE, caption_justify="left")
    for name, justify in COLUMNS:
        t.add_column(name, justify=justify, no_wrap=True)
    for cells in rows(processes):
        t.add_row(*cells)
    if not processes:
        t.add_row("—", "(no process)", *[""] * (len(COLUMNS) - 2))
    parts = [t]
    parts += [Text(m) for m in messages]
    parts.append(Text(keys, style="bold"))
    return Group(*parts)
