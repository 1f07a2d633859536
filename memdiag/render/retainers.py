"""retainers results: blocks and --json."""

from __future__ import annotations

from .blocks import Para, Table, human_bytes


CAPTION = "retained: bytes freed with them (their own and those only they hold)."
FOLD_NOTE = "(.next ×N): the same step N times in a row."


def retainers_blocks(snap_path, type_name, chains, total, since=None):
    scope = f"new since {since}" if since else "all"
    blocks = [Para(f"{total:,} objects of type {type_name} ({scope}) in {snap_path}", "bold")]
    traced = any(c.site for c in chains)
    kept = any(c.retained is not None for c in chains)
    cols = [("#", "r"), ("path", "l"), ("objects", "r"), ("bytes", "r")]
    if kept:
        cols.append(("retained", "r"))
    if traced:
        cols.append(("allocated at", "l"))
    rows = []
    for n, c in enumerate(chains, 1):
        row = [str(n), c.path, f"{c.count:,}", human_bytes(c.size)]
        if kept:
            row.append(human_bytes(c.retained))
        if traced:
            row.append(c.site)
        rows.append(row)
    notes = [CAPTION] if kept and rows else []
    notes += [FOLD_NOTE] if any(" ×" in c.path for c in chains) else []
    blocks.append(Table("Retainer paths, merged by shape ([*] = any index or key)", cols, rows,
                        " ".join(notes)))
    if chains:
        blocks.append(Para(f"example: {chains[0].example}", "dim"))
    return blocks


def retainers_json(type_name, chains, total):
    return {"type": type_name, "objects": total,
            "chains": [{"path": c.path, "count": c.count, "size": c.size,
                        "example": c.example, "site": c.site or None, "retained": c.retained}
                       for c in chains]}
