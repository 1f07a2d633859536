"""Retained sizes (`top --retained`): blocks and --json."""

from __future__ import annotations

from .blocks import Table, human_bytes

TITLE = "Keeps the most memory alive (retained size)"
CAPTION = ("retained: its own bytes and those of every object only it keeps alive "
           "(freed with it). A row may include rows below it.")


def retained_blocks(rows, heap_bytes):
    """One table: path, type, objects retained, own and retained bytes, share of the heap."""
    out = []
    for r in rows:
        share = f"{100 * r.retained / heap_bytes:.1f}%" if heap_bytes else "?"
        out.append([r.path, r.type, f"{r.objects:,}", human_bytes(r.size),
                    human_bytes(r.retained), share])
    return [Table(TITLE, [("path", "l"), ("type", "l"), ("objects", "r"), ("own", "r"),
                          ("retained", "r"), ("heap", "r")], out, CAPTION)]


def retained_json(rows):
    """[{path, type, size, retained, objects}], most retained first."""
    return [{"path": r.path, "type": r.type, "size": r.size, "retained": r.retained,
             "objects": r.objects} for r in rows]
