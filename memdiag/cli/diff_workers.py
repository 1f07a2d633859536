"""memdiag diff on snapshots of several processes (the workers of one
service): each process's own series is diffed, then summarized across them."""

from __future__ import annotations

from ..analysis.workers import by_process, diff_workers
from ..render.workers import workers_blocks, workers_json
from .common import print_json, show
from .errors import EXIT_FOUND, EXIT_USAGE, MemdiagError


def worker_series(snaps):
    """Whether these are snapshots of several processes, at least one of them
    with two or more: diff then compares each process's own. (One snapshot
    each of two processes is compared as before: type totals only.)"""
    groups = by_process(snaps)
    return len(groups) > 1 and any(len(g) > 1 for g in groups)


def command_workers(snaps, top=10, as_json=False, min_growth=1, exit_code=False, html=None,
                    retained=False):
    if html is not None:
        raise MemdiagError("--html takes the snapshots of one process; these come from "
                           "several (write one report per pid)", EXIT_USAGE)
    result = diff_workers(snaps, top_suspects=max(top, 1), min_growth=min_growth,
                          retained=retained)
    if as_json:
        print_json(workers_json(result, top))
    else:
        show(workers_blocks(result, top))
    if exit_code and result.summary:
        return EXIT_FOUND
    return 0
