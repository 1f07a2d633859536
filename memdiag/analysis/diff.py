"""`memdiag diff`: what grew between snapshots, and who holds it.

    >>> from memdiag.model import Snapshot
    >>> result = diff([Snapshot.load("a.snap"), Snapshot.load("b.snap")])
    >>> s = result.suspects[0]
    >>> s.path, s.len_before, s.len_after, s.added_type
    ("ccap.timer.timer['reg_ary']", 200, 700, 'ccap.cap.CAP')
"""

from __future__ import annotations

import numpy as np

from ..model import decode_side_by_side
from .match import global_type_ids, match
from .results import NATIVE_SUSPECT_SHARE, DiffResult, MemorySummary
from .suspects import find_suspects, matched_containers
from .types import type_growth, type_table


def same_process(snaps):
    """Whether all snapshots come from one process (objects can be matched)."""
    keys = {(s.meta.get("pid"), tuple(s.meta.get("argv") or ())) for s in snaps}
    return len(keys) == 1


def diff(snaps, top_suspects=20, min_growth=1, retained=True):
    """A DiffResult for snapshots of one process, oldest first. With
    `retained`, each suspect has its retained sizes (a dominator tree of the
    first and of the last snapshot, computed side by side)."""
    if len(snaps) < 2:
        raise ValueError("diff needs at least two snapshots")
    first, last = snaps[0], snaps[-1]
    gids, names = global_type_ids(snaps)
    memory = MemorySummary(first.rss, last.rss, first.python_heap, last.python_heap)
    paths = tuple(s.path for s in snaps)
    if not same_process(snaps):
        # Addresses mean nothing across processes: compare type totals only.
        return DiffResult(paths, tuple(type_growth(first, last)), (), memory, False)
    decode_side_by_side(snaps, ("addr", "type", "size", "length"))
    ia, ib = match(first, last, gids[0], gids[-1])
    new_mask = np.ones(last.n_objects, bool)
    new_mask[ib] = False
    freed_mask = np.ones(first.n_objects, bool)
    freed_mask[ia] = False
    pairs = matched_containers(first, last, ia, ib) if len(snaps) == 2 else None
    new_counts = {n: c for n, (c, _) in type_table(last, new_mask).items()}
    freed_counts = {n: c for n, (c, _) in type_table(first, freed_mask).items()}
    types = type_growth(first, last, new_counts, freed_counts)
    suspects = find_suspects(snaps, gids, new_mask, top=top_suspects, min_growth=min_growth,
                             matched=pairs, byte_pairs=(ia, ib, freed_mask),
                             retained=retained)
    del ia, ib, freed_mask
    return DiffResult(paths, tuple(types), tuple(suspects_to_name(suspects, memory)), memory,
                      True)


def suspects_to_name(suspects, memory):
    """The suspects worth naming under this memory verdict.

    When the growth is native (RSS grew, the Python heap hardly did), a
    container whose bytes grew by less than a tenth of RSS growth
    (NATIVE_SUSPECT_SHARE) explains none of it: naming it would send the
    reader after the wrong thing. Every output (text, --json, --exit-code)
    gets the same list.

    >>> from memdiag.analysis.results import Suspect
    >>> mib = 1 << 20
    >>> small = Suspect("app.log_lines", "list", (10, 30), 4096, "str", 1)
    >>> native = MemorySummary(100 * mib, 300 * mib, 8 * mib, 8 * mib)
    >>> native.verdict(), suspects_to_name([small], native)
    ('native', [])
    >>> flat = MemorySummary(100 * mib, 100 * mib, 8 * mib, 8 * mib)
    >>> [s.path for s in suspects_to_name([small], flat)]
    ['app.log_lines']
    """
    if memory.verdict() != "native":
        return list(suspects)
    floor = NATIVE_SUSPECT_SHARE * (memory.rss_delta or 0)
    return [s for s in suspects if s.size_delta >= floor]
