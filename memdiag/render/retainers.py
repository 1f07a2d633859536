"""retainers results: blocks and --json."""

from __future__ import annotations

from .blocks import Para, Table, human_bytes


CAPTION = ("bytes: the objects' own; retained: what they keep alive, their own bytes "
           "included (each object once; one held from elsewhere too counts for none). "
           "(.next ×N): a step repeated N times.")


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
    blocks.append(Table("Retainer paths, merged by shape ([*] = any index or key)", cols, rows,
                        CAPTION if kept and rows else ""))
    if chains:
        blocks.append(Para(f"example: {chains[0].example}", "dim"))
    return blocks


def retainers_json(type_name, chains, total):
    return {"type": type_name, "objects": total,
            "chains": [{"path": c.path, "count": c.count, "size": c.size,
                        "example": c.example, "site": c.site or None, "retained": c.retained}
                       for c in chains]}
