"""`memdiag report`: everything the HTML report shows, computed once from the
snapshots and their diff. memdiag.render.html only lays it out.

    >>> from memdiag.model import Snapshot
    >>> from memdiag.analysis.diff import diff
    >>> snaps = [Snapshot.load(p) for p in ("a.snap", "b.snap")]
    >>> report = build_report(snaps, diff(snaps, top_suspects=10))
    >>> s = report.suspects[0]
    >>> s.path.text(), s.suspect.lengths, s.retained_before, s.retained_after
    ("ccap.timer.timer['reg_ary']", (200, 700), 22288, 77788)
    >>> [(g.step, g.type, g.count, g.new) for g in s.holds.children]
    [('[*]', 'ccap.cap.CAP', 700, 500)]

`build_report` is the one place that reads the diff's result types and the
snapshot internals the page needs (paths, the dominator tree, matching).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from .results import MemorySummary, RetainerPath, Suspect, TypeGrowth
from .holds import HeldGroup, held_tree
from .match import global_type_ids, match
from .paths import retainer_path
from .retained import dominator_tree
from .types import type_table


@dataclass(frozen=True)
class SnapshotFacts:
    """The process facts one snapshot records, as its metadata holds them
    (argv included: whatever the hook wrote, redacted or not)."""
    path: str
    pid: int | None
    seq: int | None
    time: float | None
    python: str | None
    implementation: str | None
    argv: tuple | None
    mode: str | None
    walker: str | None
    objects: int
    edges: int
    rss: int | None
    python_heap: int
    pause_seconds: float | None
    traced: bool        # allocation sites recorded (memdiag run --trace-frames)
    strings: bool       # str contents written (--strings)


@dataclass(frozen=True)
class TypeSeries:
    """A growing type: its growth from first to last snapshot, and its count
    and bytes in every snapshot."""
    growth: TypeGrowth
    counts: tuple
    sizes: tuple


@dataclass(frozen=True)
class SuspectDetail:
    """One suspect of the diff with what the page adds to it: its path hop by
    hop, the bytes it keeps alive in the first and last snapshot, and the
    tree of what it holds. `kind` and `containers` say whether it is one
    container or a group of containers with the same path shape (when diff
    groups suspects; a single container otherwise)."""
    rank: int
    suspect: Suspect
    path: RetainerPath | None
    kind: str = "container"
    containers: int = 1
    retained_before: int | None = None
    retained_after: int | None = None
    holds: HeldGroup | None = None
    weak: bool | None = None
    bound: int | None = None

    @property
    def retained_delta(self):
        if self.retained_before is None or self.retained_after is None:
            return None
        return self.retained_after - self.retained_before


@dataclass(frozen=True)
class Report:
    snapshots: tuple          # [SnapshotFacts], oldest first
    memory: MemorySummary
    verdict: str
    matched: bool             # objects matched between snapshots (one process)
    types: tuple              # [TypeSeries] of the types that grew, most bytes first
    suspects: tuple           # [SuspectDetail], best first
    retained: bool            # retained sizes were computed

    @property
    def groups(self):
        """The suspects that are groups of containers."""
        return tuple(s for s in self.suspects if s.kind == "group")


def snapshot_facts(snap):
    meta = snap.meta

    def num(key, kind=(int, float)):
        v = meta.get(key)
        return v if isinstance(v, kind) and not isinstance(v, bool) else None

    def text(key):
        v = meta.get(key)
        return v if isinstance(v, str) else None

    argv = meta.get("argv")
    return SnapshotFacts(
        snap.path, num("pid", int), num("seq", int), num("time"), text("python"),
        text("implementation"),
        tuple(argv) if isinstance(argv, list) and all(isinstance(a, str) for a in argv) else None,
        text("mode"), text("walker"), snap.n_objects, snap.n_edges, num("rss", int),
        int(snap.python_heap), num("pause_seconds"),
        bool(snap.sites) or meta.get("tracemalloc") is True, meta.get("strings") is True)


def build_report(snaps, result, top=10, depth=2, width=6):
    """The Report of snapshots (oldest first) and their DiffResult: `top`
    types that grew (in count or bytes), the diff's suspects (at most `top`) with paths, retained
    sizes and `depth` levels of what each holds."""
    first, last = snaps[0], snaps[-1]
    suspects = list(result.suspects)[:top]    # under a native verdict, already filtered
    types = _type_series(snaps, [t for t in result.types
                                 if t.count_delta > 0 or t.size_delta > 0][:top])
    singles = [s for s in suspects if s.kind == "container" and s.index >= 0]
    computed = bool(singles) and result.matched
    tree_first = tree_last = new_mask = None
    if computed:
        tree_first, tree_last = _both(dominator_tree, first, last)
        new_mask = _new_objects(first, last)
    details = []
    for rank, s in enumerate(suspects, 1):
        before, after = s.retained_before, s.retained_after    # diff's, when it computed them
        path = holds = None
        if s.kind == "container" and s.index >= 0:
            path = retainer_path(last, s.index)
            if computed and after is None:
                after = int(tree_last.retained[s.index])
                i_first = _index_in(first, last, s.index)
                before = None if i_first is None else int(tree_first.retained[i_first])
            holds = held_tree(last, s.index, depth, width,
                              tree_last.retained if computed else None, new_mask)
        details.append(SuspectDetail(rank, s, path, s.kind, s.containers, before, after, holds,
                                     s.weak, s.bound))
    return Report(tuple(snapshot_facts(s) for s in snaps), result.memory, result.verdict,
                  result.matched, tuple(types), tuple(details), computed)


def _type_series(snaps, growths):
    """Counts and bytes per snapshot: the first and last from the diff, the
    ones between counted here."""
    middle = [type_table(s) for s in snaps[1:-1]]
    out = []
    for g in growths:
        cells = ([(g.count_before, g.size_before)] + [t.get(g.type, (0, 0)) for t in middle]
                 + [(g.count_after, g.size_after)])
        out.append(TypeSeries(g, tuple(c for c, _ in cells), tuple(b for _, b in cells)))
    return out


def _both(fn, a, b):
    """(fn(a), fn(b)), the two in parallel when there are two cores: the
    dominator tree's decoding (zlib, numpy) and its C part release the GIL.
    Each snapshot is touched by one thread only."""
    if (os.cpu_count() or 1) < 2:
        return fn(a), fn(b)
    out = {}

    def work():
        try:
            out["b"] = fn(b)
        except BaseException as e:  # re-raised in the calling thread
            out["error"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        first = fn(a)
    finally:
        t.join()
    if "error" in out:
        raise out["error"]
    return first, out["b"]


def _new_objects(first, last):
    """Per object of `last`, whether it is new since `first` (address and type)."""
    (ga, gb), _ = global_type_ids([first, last])
    _, matched = match(first, last, ga, gb)
    mask = np.ones(last.n_objects, bool)
    mask[matched] = False
    return mask


def _index_in(first, last, i):
    """The index in `first` of object i of `last` (same address and type
    name), or None."""
    same = np.flatnonzero(first.addr == last.addr[i])
    name = last.type_name_of(i)
    for j in same.tolist():
        if first.type_name_of(j) == name:
            return j
    return None
