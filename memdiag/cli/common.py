"""Shared by the commands: loading snapshots with progress, choosing output.

How output looks, from the environment:

- stdout a terminal: rich tables, in colour;
- NO_COLOR set to anything but "" (https://no-color.org): the same tables,
  without colour (bold and dim stay);
- stdout piped, TERM=dumb, or MEMDIAG_PLAIN=1 (any value but "" and "0"):
  plain aligned text, no escape codes at all.
"""

from __future__ import annotations

import json
import os
import sys

from ..model import Snapshot, SnapshotError
from ..render.blocks import print_plain, print_rich
from .errors import EXIT_BAD_FILE, MemdiagError

BIG_FILE = 32 << 20


def rich_wanted():
    """Rich tables when stdout is a terminal, unless MEMDIAG_PLAIN=1 or TERM=dumb."""
    if os.environ.get("MEMDIAG_PLAIN", "") not in ("", "0") or os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty()


def color_wanted():
    """Colour in rich output unless NO_COLOR is set and not empty (no-color.org)."""
    return os.environ.get("NO_COLOR", "") == ""


def show(blocks):
    """Print render blocks as this environment wants them (see the module doc)."""
    if rich_wanted():
        print_rich(blocks, color=color_wanted())
    else:
        print_plain(blocks)


def load(path):
    """Load a snapshot, with a progress bar on stderr for big files."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    progress = None
    bar = None
    if size >= BIG_FILE and sys.stderr.isatty():
        from rich.progress import Progress
        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task(f"loading {os.path.basename(path)}", total=None)
        progress = lambda n: bar.advance(task, n)  # noqa: E731
    try:
        snap = Snapshot.load(path, progress=progress)
        if bar is not None:
            # decode the columns every command needs while the bar is up
            snap.type, snap.size, snap.addr, snap.parent  # noqa: B018
        return snap
    except SnapshotError as e:
        raise MemdiagError(str(e), EXIT_BAD_FILE) from None
    finally:
        if bar is not None:
            bar.stop()


def print_json(data):
    json.dump(data, sys.stdout, indent=2, default=_default)
    sys.stdout.write("\n")


def _default(o):
    try:
        import numpy as np
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def hint(text):
    """A next step for a person, on stderr so stdout stays clean for scripts."""
    if sys.stderr.isatty():
        sys.stderr.write(f"{text}\n")


def in_time_order(snaps):
    """Snapshots of one process, oldest first, whatever order they were given in."""
    pids = {s.meta.get("pid") for s in snaps}
    times = [s.meta.get("time") for s in snaps]
    if len(pids) == 1 and all(isinstance(t, (int, float)) for t in times):
        return sorted(snaps, key=lambda s: (s.meta["time"], s.meta.get("seq", 0)))
    return snaps
