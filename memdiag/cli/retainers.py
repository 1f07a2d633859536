"""memdiag retainers SNAP --type T [--since A]: who holds objects of type T."""

from __future__ import annotations

from ..analysis.retained import compiled as compiled_dominators
from ..analysis.retainers import UnknownType, retainer_chains
from ..render.retainers import retainers_blocks, retainers_json
from .common import load, print_json, show
from .errors import EXIT_USAGE, MemdiagError


def command(snapshot, type_name, since=None, top=10, as_json=False, retained=None):
    snap = load(snapshot)
    old = load(since) if since else None
    if retained is None:
        retained = compiled_dominators()
    try:
        chains, total = retainer_chains(snap, type_name, since=old, top=top, retained=retained)
    except UnknownType:
        close = _similar(snap, type_name)
        more = f"; did you mean {', '.join(close)}?" if close else ""
        raise MemdiagError(f"no objects of type {type_name!r} in {snapshot}{more}",
                           EXIT_USAGE) from None
    shown = ", ".join(snap.matching_type_names(type_name))
    if as_json:
        print_json(retainers_json(shown, chains, total))
    else:
        show(retainers_blocks(snapshot, shown, chains, total, since))
    return 0


def _similar(snap, name):
    import difflib
    names = sorted(set(snap.type_names))
    low = name.lower()
    hits = [n for n in names if low in n.lower()][:3]
    return hits or difflib.get_close_matches(name, names, n=3)
