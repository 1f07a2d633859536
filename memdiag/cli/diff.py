"""memdiag diff A B [C ...]: what grew, and who holds it."""

from __future__ import annotations

from ..analysis.diff import diff as analyze_diff
from ..analysis.retained import compiled as compiled_dominators
from ..render.diff import diff_blocks, diff_json
from .common import load, print_json, show
from .errors import EXIT_FOUND, EXIT_USAGE, MemdiagError


def command(snapshots, top=10, as_json=False, min_growth=1, exit_code=False, retained=None):
    if len(snapshots) < 2:
        raise MemdiagError("diff needs at least two snapshots (oldest first)", EXIT_USAGE)
    snaps = [load(p) for p in snapshots]
    if retained is None:
        retained = compiled_dominators()
    snaps = _in_time_order(snaps)
    result = analyze_diff(snaps, top_suspects=max(top, 1), min_growth=min_growth,
                          retained=retained)
    if as_json:
        print_json(diff_json(result, top))
    else:
        show(diff_blocks(result, top))
    if exit_code and result.suspects:
        return EXIT_FOUND
    return 0


def _in_time_order(snaps):
    """Snapshots of one process, oldest first, whatever order they were given in."""
    pids = {s.meta.get("pid") for s in snaps}
    times = [s.meta.get("time") for s in snaps]
    if len(pids) == 1 and all(isinstance(t, (int, float)) for t in times):
        return sorted(snaps, key=lambda s: (s.meta["time"], s.meta.get("seq", 0)))
    return snaps
