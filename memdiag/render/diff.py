"""diff results: blocks for people, dicts for --json. Shows what
analysis.diff decided: the suspects are already the ones worth naming."""

from __future__ import annotations

from .blocks import Para, Table, human_bytes, signed


def memory_line(m):
    """RSS and the Python heap, before and after, in one line.

    >>> from memdiag.analysis.results import MemorySummary
    >>> memory_line(MemorySummary(20 << 20, 21 << 20, 7 << 20, 7 << 20))
    'RSS 20.0 MiB → 21.0 MiB (+1.0 MiB); Python heap 7.0 MiB → 7.0 MiB (0 B)'
    """
    rss = (f"RSS {human_bytes(m.rss_before)} → {human_bytes(m.rss_after)} "
           f"({human_bytes(m.rss_delta, signed=True)})") if m.rss_delta is not None else "RSS unknown"
    heap = (f"Python heap {human_bytes(m.python_heap_before)} → {human_bytes(m.python_heap_after)} "
            f"({human_bytes(m.python_heap_delta, signed=True)})")
    return f"{rss}; {heap}"


VERDICTS = {
    "python": ("Python objects grew: the suspects below hold them.", "bold"),
    "both": ("Python objects grew, but RSS grew more: part of the growth is outside "
             "Python objects (a native library or allocator fragmentation).", "warn"),
    "native": ("RSS grew but the Python heap did not: the growth is outside Python "
               "objects (a native library, C extension buffers, or allocator "
               "fragmentation). No Python container explains it; look at native "
               "allocations (e.g. memray --native) or move the work into a short-lived "
               "child process.", "warn"),
    "flat": ("Neither RSS nor the Python heap grew noticeably.", "dim"),
}


SUSPECTS_TITLE = "Suspects: what grew, alive in every snapshot"
RETAINED_TITLE = "What the suspects keep alive (retained size)"
RETAINED_NOTE = ("retained: bytes freed with it (its own and those only it holds); a group's "
                 "is the sum over its containers.")
GROUP_NOTE = "[*]: a group of containers whose paths differ only there."


def suspect_notes(s):
    """The marks of a suspect: a group's spread, weak, bounded.

    >>> from memdiag.analysis.results import Suspect
    >>> suspect_notes(Suspect("app.history[*]", "list", (3000, 4000), 40000, "dict", 1,
    ...                       kind="group", containers=300, grew=297, max_growth=11))
    '300 lists, 297 grew, most +11'
    >>> suspect_notes(Suspect("app.price.__cache__", "dict", (2000, 3012), 9000, "tuple", 1,
    ...                       bound=4096))
    'bounded: 3,012 / 4,096'
    """
    notes = []
    if s.kind == "group":
        most = (human_bytes(s.largest_growth, signed=True) if s.unit == "bytes"
                else signed(s.largest_growth))
        notes.append(f"{s.containers:,} {_plural(s.type)}, {s.grew:,} grew, most {most}")
    if s.weak:
        notes.append("weak")
    if s.bound is not None:
        notes.append(f"bounded: {s.len_after:,} / {s.bound:,}")
    return "; ".join(notes)


def _plural(type_name):
    short = type_name.rsplit(".", 1)[-1]
    return short + ("es" if short.endswith(("s", "x")) else "s")


def diff_blocks(result, top=10, snap_names=None):
    blocks = []
    m = result.memory
    blocks.append(Para(memory_line(m)))
    text, style = VERDICTS[result.verdict]
    blocks.append(Para(text, style))
    if not result.matched:
        blocks.append(Para("These snapshots come from different processes: objects cannot be "
                           "matched between them, so only type totals are compared (no "
                           "suspects, no new/freed counts).", "warn"))
    suspects = result.suspects[:top]
    several = len(result.paths) > 2
    cols = [("#", "r"), ("path", "l"), ("type", "l")]
    cols += [("lengths", "r")] if several else [("before", "r"), ("after", "r")]
    cols += [("growth", "r"), ("added", "l"), ("bytes", "r")]
    notes = [suspect_notes(s) for s in suspects]
    if any(notes):
        cols.append(("notes", "l"))
    rows = []
    for n, s in enumerate(suspects, 1):
        row = [str(n), s.path, s.type]
        if s.unit == "bytes":
            # Its own size grew: show sizes where a container shows lengths.
            seq = s.sizes or (0, 0)
            if several:
                row.append(" → ".join(human_bytes(x) for x in seq))
            else:
                row += [human_bytes(seq[0]), human_bytes(seq[-1])]
            row.append(human_bytes(seq[-1] - seq[0], signed=True))
        else:
            if several:
                row.append(" → ".join(f"{x:,}" for x in s.lengths))
            else:
                row += [f"{s.len_before:,}", f"{s.len_after:,}"]
            row.append(signed(s.growth))
        added = "(its own size)" if s.unit == "bytes" else s.added_type or ""
        row += [added, human_bytes(s.size_delta, signed=True)]
        if any(notes):
            row.append(notes[n - 1])
        rows.append(row)
    blocks.append(Table(SUSPECTS_TITLE, cols, rows,
                        GROUP_NOTE if any(s.kind == "group" for s in suspects) else ""))
    kept = [(n, s) for n, s in enumerate(suspects, 1) if s.retained_after is not None]
    if kept:
        blocks.append(Table(RETAINED_TITLE, [("#", "r"), ("path", "l"), ("before", "r"),
                                              ("after", "r"), ("delta", "r")],
                            [[str(n), s.path, human_bytes(s.retained_before),
                              human_bytes(s.retained_after),
                              human_bytes(s.retained_delta, signed=True)] for n, s in kept],
                            RETAINED_NOTE))
    trows = []
    for t in result.types[:top]:
        if t.count_delta == 0 and t.size_delta == 0:
            continue
        trows.append([t.type, f"{t.count_before:,}", f"{t.count_after:,}", signed(t.count_delta),
                      "" if t.new is None else f"{t.new:,}",
                      "" if t.freed is None else f"{t.freed:,}",
                      human_bytes(t.size_delta, signed=True)])
    blocks.append(Table("Types by growth", [("type", "l"), ("before", "r"), ("after", "r"),
                                             ("delta", "r"), ("new", "r"), ("freed", "r"),
                                             ("bytes", "r")], trows))
    first = next((s for s in suspects if s.added_type), None)
    if first is not None:
        blocks.append(Para(f"next: memdiag retainers {result.paths[-1]} --since "
                           f"{result.paths[0]} --type {first.added_type}", "dim"))
    return blocks


def diff_json(result, top=None):
    m = result.memory
    return {
        "snapshots": list(result.paths),
        "verdict": result.verdict,
        "matched": result.matched,
        "types": [{"type": t.type, "count_before": t.count_before,
                   "count_after": t.count_after, "count_delta": t.count_delta,
                   "size_before": t.size_before, "size_after": t.size_after,
                   "size_delta": t.size_delta, "new": t.new, "freed": t.freed}
                  for t in result.types[:top]],
        "suspects": [suspect_json(s) for s in result.suspects[:top]],
        "memory": {"rss_before": m.rss_before, "rss_after": m.rss_after,
                   "rss_delta": m.rss_delta, "python_heap_before": m.python_heap_before,
                   "python_heap_after": m.python_heap_after,
                   "python_heap_delta": m.python_heap_delta},
    }


def suspect_json(s):
    """One suspect as --json writes it (README, "JSON and exit codes").

    >>> from memdiag.analysis.results import Suspect
    >>> d = suspect_json(Suspect("app.history[*]", "list", (3000, 4000), 40000, "dict", 1,
    ...                          kind="group", containers=200, grew=197, max_growth=11,
    ...                          retained_before=90000, retained_after=130000))
    >>> d["kind"], d["containers"], d["growth"], d["retained_delta"], d["weak"], d["bound"]
    ('group', 200, 1000, 40000, False, None)
    """
    return {"path": s.path, "type": s.type, "len_before": s.len_before,
            "len_after": s.len_after, "lengths": list(s.lengths),
            "growth": s.growth, "size_delta": s.size_delta,
            "added_type": s.added_type, "intervals_grown": s.intervals_grown,
            "kind": s.kind, "containers": s.containers, "grew": s.grew,
            "max_growth": s.largest_growth, "growth_unit": s.unit,
            "sizes": list(s.sizes) if s.sizes else None,
            "retained_before": s.retained_before, "retained_after": s.retained_after,
            "retained_delta": s.retained_delta, "weak": s.weak, "bound": s.bound,
            "example": s.example or s.path}
