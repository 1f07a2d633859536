"""memdiag top SNAP: the heap at a glance."""

from __future__ import annotations

from ..analysis.top import top as analyze_top
from ..render.top import top_blocks, top_json
from .common import load, print_json, show


def command(snapshot, top=10, as_json=False):
    snap = load(snapshot)
    result = analyze_top(snap, top)
    if as_json:
        print_json(top_json(result))
    else:
        show(top_blocks(result))
    return 0
