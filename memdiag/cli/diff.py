"""memdiag diff A B [C ...]: what grew, and who holds it."""

from __future__ import annotations

import sys

from ..analysis.diff import diff as analyze_diff
from ..analysis.retained import compiled as compiled_dominators
from ..render.blocks import human_bytes
from ..render.diff import diff_blocks, diff_json
from .common import in_time_order, load, print_json, show
from .errors import EXIT_FOUND, EXIT_USAGE, MemdiagError
from .diff_workers import command_workers, worker_series
from .report import refuse_existing, write_report


def command(snapshots, top=10, as_json=False, min_growth=1, exit_code=False, retained=None,
            html=None, force=False):
    if len(snapshots) < 2:
        raise MemdiagError("diff needs at least two snapshots (oldest first)", EXIT_USAGE)
    if html is not None:
        refuse_existing(html, force)
    snaps = [load(p) for p in snapshots]
    if retained is None:
        retained = compiled_dominators()
    if worker_series(snaps):
        # workers of one service: each one's own series, then a summary across them
        return command_workers(snaps, top, as_json, min_growth, exit_code, html, retained)
    snaps = in_time_order(snaps)
    result = analyze_diff(snaps, top_suspects=max(top, 1), min_growth=min_growth,
                          retained=retained)
    if as_json:
        print_json(diff_json(result, top))
    else:
        show(diff_blocks(result, top))
    if html is not None:
        # the same page as `memdiag report`; stdout stays the diff (or its JSON)
        path, size = write_report(snaps, result, html, top, force)
        sys.stderr.write(f"wrote {path} ({human_bytes(size)})\n")
    if exit_code and result.suspects:
        return EXIT_FOUND
    return 0
