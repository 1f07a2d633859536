"""`memdiag diff`: what grew between snapshots, and who holds it.

    >>> result = diff([Snapshot.load("a.snap"), Snapshot.load("b.snap")])  # doctest: +SKIP
    >>> result.suspects[0].path, result.suspects[0].growth               # doctest: +SKIP
    ("ccap.timer.timer['reg_ary']", 500)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import snapfile as sf
from ..model import MemorySummary, decode_side_by_side
from .match import global_type_ids, match
from .suspects import find_suspects, matched_containers
from .types import type_growth, type_table


@dataclass(frozen=True)
class DiffResult:
    paths: tuple
    types: list          # [TypeGrowth], most grown first
    suspects: list       # [Suspect], best first
    memory: MemorySummary
    matched: bool        # whether new/freed counts could be computed

    @property
    def verdict(self):
        return self.memory.verdict()


def same_process(snaps):
    """Whether all snapshots come from one process (objects can be matched)."""
    keys = {(s.meta.get("pid"), tuple(s.meta.get("argv") or ())) for s in snaps}
    return len(keys) == 1


def diff(snaps, top_suspects=20, min_growth=1):
    if len(snaps) < 2:
        raise ValueError("diff needs at least two snapshots")
    first, last = snaps[0], snaps[-1]
    gids, names = global_type_ids(snaps)
    memory = MemorySummary(first.rss, last.rss, first.python_heap, last.python_heap)
    if not same_process(snaps):
        # Addresses mean nothing across processes: compare type totals only.
        return DiffResult(tuple(s.path for s in snaps), type_growth(first, last), [],
                          memory, False)
    decode_side_by_side(snaps, (sf.COL_ADDR, sf.COL_TYPE, sf.COL_SIZE, sf.COL_LENGTH))
    ia, ib = match(first, last, gids[0], gids[-1])
    new_mask = np.ones(last.n_objects, bool)
    new_mask[ib] = False
    freed_mask = np.ones(first.n_objects, bool)
    freed_mask[ia] = False
    pairs = matched_containers(first, last, ia, ib) if len(snaps) == 2 else None
    del ia, ib
    new_counts = {n: c for n, (c, _) in type_table(last, new_mask).items()}
    freed_counts = {n: c for n, (c, _) in type_table(first, freed_mask).items()}
    del freed_mask
    types = type_growth(first, last, new_counts, freed_counts)
    suspects = find_suspects(snaps, gids, new_mask, top=top_suspects, min_growth=min_growth,
                             matched=pairs)
    return DiffResult(tuple(s.path for s in snaps), types, suspects, memory, True)


