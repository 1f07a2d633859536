"""memdiag ps: the hooked processes of this user, as a table or --json."""

from __future__ import annotations

from ..render.ps import ps_blocks, ps_json
from .common import print_json, show
from .processes import hooked_processes


def command(as_json=False):
    procs = hooked_processes()
    if as_json:
        print_json(ps_json(procs))
    else:
        show(ps_blocks(procs))
    return 0
