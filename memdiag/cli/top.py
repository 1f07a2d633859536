"""memdiag top SNAP [--retained]: the heap at a glance; with --retained, also
the objects that keep the most memory alive (through the dominator tree)."""

from __future__ import annotations

from ..analysis.retained import biggest_retainers
from ..analysis.top import top as analyze_top
from ..render.retained import retained_blocks, retained_json
from ..render.top import top_blocks, top_json
from .common import load, print_json, show


def command(snapshot, top=10, as_json=False, retained=False):
    snap = load(snapshot)
    result = analyze_top(snap, top)
    rows = biggest_retainers(snap, top) if retained else None
    if as_json:
        data = top_json(result)
        if rows is not None:
            data["retained"] = retained_json(rows)
        print_json(data)
    else:
        blocks = top_blocks(result)
        if rows is not None:
            blocks[2:2] = retained_blocks(rows, result.totals["python_heap"])
        show(blocks)
    return 0
