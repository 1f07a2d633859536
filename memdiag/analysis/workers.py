"""`memdiag diff` over snapshots of several processes of one service (the
workers of a pre-fork server): each process's own series is diffed on its
own (objects can only be matched within one process), then the suspects are
put side by side: the same path growing in several workers is the leak in
the code they share.

    >>> from memdiag.model import Snapshot
    >>> result = diff_workers([Snapshot.load("a.snap"), Snapshot.load("b.snap")])
    >>> [(s.path, s.workers, [(w.pid, w.growth) for w in s.per_worker]) for s in result.summary]
    [("ccap.timer.timer['reg_ary']", 1, [(4242, 500)])]

(with the files of three gunicorn workers, two rounds each, the summary
reads [('leakyapp.LEAK', 3, [(4243, 120), (4244, 95), (4245, 85)])]).

Grouping only needs the snapshots' metadata:

    >>> from types import SimpleNamespace as S
    >>> a1, a2, b1 = (S(path=p, meta=m) for p, m in (
    ...     ("a1", {"pid": 7, "argv": ["w"], "time": 1.0, "seq": 1}),
    ...     ("a2", {"pid": 7, "argv": ["w"], "time": 2.0, "seq": 2}),
    ...     ("b1", {"pid": 8, "argv": ["w"], "time": 1.5, "seq": 1})))
    >>> [[s.path for s in g] for g in by_process([a2, b1, a1])]
    [['a1', 'a2'], ['b1']]
"""

from __future__ import annotations

from dataclasses import dataclass

from .diff import diff


@dataclass(frozen=True, slots=True)
class WorkerDiff:
    """One process's own diff: its snapshots (oldest first) and the DiffResult,
    or None when it has a single snapshot (nothing to compare it with: a
    worker started or replaced between two rounds of snapshots)."""
    pid: int | None
    paths: tuple
    result: object = None


@dataclass(frozen=True, slots=True)
class WorkerGrowth:
    """How one suspect grew in one worker."""
    pid: int | None
    growth: int
    size_delta: int
    lengths: tuple


@dataclass(frozen=True, slots=True)
class SharedSuspect:
    """A suspect path and the workers it grew in (by growth, largest first).

    >>> s = SharedSuspect("app.LEAK", "list", "app.Request",
    ...                   (WorkerGrowth(7, 120, 9000, (10, 130)), WorkerGrowth(8, 95, 7000, (3, 98))))
    >>> s.workers, s.growth, s.size_delta
    (2, 215, 16000)
    """
    path: str
    type: str
    added_type: str | None
    per_worker: tuple          # WorkerGrowth, largest growth first

    @property
    def workers(self):
        return len(self.per_worker)

    @property
    def growth(self):
        return sum(w.growth for w in self.per_worker)

    @property
    def size_delta(self):
        return sum(w.size_delta for w in self.per_worker)

    def sort_key(self):
        """In the most workers first, then most bytes, then most elements."""
        return (-self.workers, -self.size_delta, -self.growth, self.path)


@dataclass(frozen=True, slots=True)
class WorkersResult:
    """diff over several processes: each one's own diff, then the summary."""
    workers: tuple        # WorkerDiff, by pid; compared (result not None) and single ones
    summary: tuple        # SharedSuspect, by SharedSuspect.sort_key

    @property
    def compared(self):
        return tuple(w for w in self.workers if w.result is not None)

    @property
    def single(self):
        return tuple(w for w in self.workers if w.result is None)


def process_key(snap):
    """What tells one process's snapshots apart from another's: pid and argv
    (the same pid reused by a later process is another process)."""
    meta = snap.meta
    return meta.get("pid"), tuple(meta.get("argv") or ())


def several_processes(snaps):
    return len({process_key(s) for s in snaps}) > 1


def by_process(snaps):
    """The snapshots grouped by process, each group oldest first; groups by pid."""
    groups = {}
    for s in snaps:
        groups.setdefault(process_key(s), []).append(s)
    out = []
    for key in sorted(groups, key=lambda k: (k[0] if isinstance(k[0], int) else -1, k[1])):
        out.append(sorted(groups[key], key=_when))
    return out


def _when(snap):
    t, seq = snap.meta.get("time"), snap.meta.get("seq")
    return (t if isinstance(t, (int, float)) else 0.0, seq if isinstance(seq, int) else 0)


def diff_workers(snaps, top_suspects=20, min_growth=1, retained=True):
    """A WorkersResult for snapshots of several processes (any order);
    retained: each worker's suspects get retained sizes (diff's argument)."""
    workers = []
    for group in by_process(snaps):
        pid = group[0].meta.get("pid")
        paths = tuple(s.path for s in group)
        result = None
        if len(group) >= 2:
            result = diff(group, top_suspects=top_suspects, min_growth=min_growth,
                          retained=retained)
        workers.append(WorkerDiff(pid if isinstance(pid, int) else None, paths, result))
    return WorkersResult(tuple(workers), tuple(shared_suspects(workers)))


def shared_suspects(workers):
    """Every suspect path named in any worker's diff, with its growth in each
    worker that named it, ranked by SharedSuspect.sort_key."""
    found = {}
    for w in workers:
        if w.result is None:
            continue
        for s in w.result.suspects:
            entry = found.setdefault(s.path, {"type": s.type, "added": {}, "per": []})
            entry["per"].append(WorkerGrowth(w.pid, s.growth, s.size_delta, tuple(s.lengths)))
            if s.added_type:
                entry["added"][s.added_type] = entry["added"].get(s.added_type, 0) + 1
    out = []
    for path, entry in found.items():
        added = max(entry["added"], key=lambda t: (entry["added"][t], t)) if entry["added"] else None
        per = sorted(entry["per"], key=lambda g: (-g.growth, -g.size_delta, g.pid or 0))
        out.append(SharedSuspect(path, entry["type"], added, tuple(per)))
    return sorted(out, key=SharedSuspect.sort_key)
