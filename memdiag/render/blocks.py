"""Neutral output blocks and the two ways to print them (plain and rich)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class Para:
    text: str
    style: str = ""          # "", "bold", "warn", "dim", "good"


@dataclass
class Table:
    title: str
    columns: list            # [(header, "l" | "r")]
    rows: list = field(default_factory=list)
    caption: str = ""


def human_bytes(n, signed=False):
    """1536 -> '1.5 KiB'; with signed, '+1.5 KiB'.

    >>> human_bytes(1536), human_bytes(-3 << 20, signed=True), human_bytes(None)
    ('1.5 KiB', '-3.0 MiB', '?')
    """
    if n is None:
        return "?"
    sign = ""
    if signed:
        sign = "+" if n > 0 else ("-" if n < 0 else "")
    elif n < 0:
        sign = "-"
    v = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            if unit == "B":
                return f"{sign}{int(v)} B"
            return f"{sign}{v:.1f} {unit}"
        v /= 1024


def signed(n):
    """+500, -3, 0, +1,200."""
    return f"+{n:,}" if n > 0 else f"{n:,}"


def print_plain(blocks, out=None):
    out = out or sys.stdout
    first = True
    for b in blocks:
        if not first:
            out.write("\n")
        first = False
        if isinstance(b, Para):
            out.write(b.text + "\n")
            continue
        if b.title:
            out.write(b.title + "\n")
        headers = [c[0] for c in b.columns]
        widths = [len(h) for h in headers]
        for row in b.rows:
            for k, cell in enumerate(row):
                widths[k] = max(widths[k], len(cell))

        def fmt(cells):
            parts = []
            for k, cell in enumerate(cells):
                if b.columns[k][1] == "r":
                    parts.append(cell.rjust(widths[k]))
                else:
                    parts.append(cell.ljust(widths[k]))
            return "  ".join(parts).rstrip()
        out.write(fmt(headers) + "\n")
        for row in b.rows:
            out.write(fmt(row) + "\n")
        if not b.rows:
            out.write("(none)\n")
        if b.caption:
            out.write(b.caption + "\n")


_STYLES = {"bold": "bold", "warn": "bold yellow", "dim": "dim", "good": "green", "": ""}


def print_rich(blocks, console=None, color=True):
    """Print blocks as rich tables on `console` (default: a Console on stdout,
    without colour when color is false)."""
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text
    console = console or Console(no_color=not color)
    for b in blocks:
        if isinstance(b, Para):
            console.print(Text(b.text, style=_STYLES.get(b.style, "")))
            continue
        t = RichTable(title=b.title or None, title_justify="left", caption=b.caption or None,
                      caption_justify="left", show_edge=False, header_style="bold")
        for header, align in b.columns:
            t.add_column(header, justify="right" if align == "r" else "left",
                         overflow="fold")
        for row in b.rows:
            t.add_row(*row)
        console.print(t)
        console.print()

