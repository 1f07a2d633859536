"""diff over several processes (analysis.workers): the summary across
workers first, then each worker's own diff as `memdiag diff` shows it."""

from __future__ import annotations

from .blocks import Para, Table, human_bytes, signed
from .diff import diff_json


def growth_text(shared, limit=6):
    """'4243 +120, 4244 +95' (the first `limit` workers, then how many more).

    >>> from memdiag.analysis.workers import SharedSuspect, WorkerGrowth
    >>> growth_text(SharedSuspect("app.LEAK", "list", None,
    ...             (WorkerGrowth(7, 120, 0, ()), WorkerGrowth(8, 95, 0, ()))))
    '7 +120, 8 +95'
    """
    parts = [f"{g.pid} {signed(g.growth)}" for g in shared.per_worker[:limit]]
    if shared.workers > limit:
        parts.append(f"… {shared.workers - limit} more")
    return ", ".join(parts)


def workers_blocks(result, top=10):
    compared, single = result.compared, result.single
    blocks = [Para(f"{len(compared)} process{'es' if len(compared) != 1 else ''} compared, "
                   f"each with its own snapshots: "
                   + (", ".join(f"{w.pid} ({len(w.paths)} snapshots)" for w in compared)
                      or "none"), "bold")]
    if single:
        blocks.append(Para("Not compared, one snapshot each (a process started or replaced "
                           "between two rounds of snapshots): "
                           + ", ".join(str(w.pid) for w in single), "dim"))
    n = len(compared)
    rows = [[str(k), s.path, s.type, f"{s.workers} of {n}", growth_text(s), s.added_type or "",
             human_bytes(s.size_delta, signed=True)]
            for k, s in enumerate(result.summary[:top], 1)]
    blocks.append(Table("Suspects across processes (the same path in several is code they share)",
                        [("#", "r"), ("path", "l"), ("type", "l"), ("workers", "r"),
                         ("growth per worker", "l"), ("added", "l"), ("bytes", "r")], rows))
    per = []
    for w in compared:
        m, first = w.result.memory, (w.result.suspects[:1] or [None])[0]
        per.append([str(w.pid), str(len(w.paths)), human_bytes(m.rss_delta, signed=True),
                    human_bytes(m.python_heap_delta, signed=True), w.result.verdict,
                    f"{first.path} {signed(first.growth)}" if first else ""])
    blocks.append(Table("Each process's own diff", [
        ("pid", "r"), ("snapshots", "r"), ("RSS", "r"), ("Python heap", "r"),
        ("verdict", "l"), ("top suspect", "l")], per))
    if compared:
        w = compared[0]
        blocks.append(Para(f"next, one process in full: memdiag diff {' '.join(w.paths)}", "dim"))
    return blocks


def workers_json(result, top=None):
    n = len(result.compared)
    return {
        "snapshots": [p for w in result.workers for p in w.paths],
        "workers": [{"pid": w.pid, "files": list(w.paths),
                     "result": None if w.result is None else diff_json(w.result, top)}
                    for w in result.workers],
        "summary": [{"path": s.path, "type": s.type, "added_type": s.added_type,
                     "workers": s.workers, "of": n, "growth": s.growth,
                     "size_delta": s.size_delta,
                     "growth_per_worker": [{"pid": g.pid, "growth": g.growth,
                                            "size_delta": g.size_delta,
                                            "lengths": list(g.lengths)}
                                           for g in s.per_worker]}
                    for s in result.summary[:top]],
    }
