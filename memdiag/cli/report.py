"""memdiag report A B [C ...] -o report.html: one self-contained HTML page of
what grew and who holds it, to open offline or attach to a bug report.
`memdiag diff --html report.html` writes the same page.

The file is written whole or not at all (a hidden temporary file in the
same directory, fsynced, then linked into place), mode 0644 less the umask:
a report is meant to be shared, and it holds no string contents unless the
snapshots do. An existing file is never replaced without --force.
"""

from __future__ import annotations

import errno
import os
import pathlib
import tempfile

from ..analysis.diff import diff as analyze_diff
from ..analysis.retained import compiled as compiled_dominators
from ..analysis.report import build_report
from ..render.blocks import human_bytes
from ..render.html import html_page
from .common import in_time_order, load
from .errors import EXIT_USAGE, MemdiagError


def command(snapshots, output=None, top=10, force=False, min_growth=1):
    if len(snapshots) < 2:
        raise MemdiagError("report needs at least two snapshots (oldest first)", EXIT_USAGE)
    if output is not None:
        refuse_existing(output, force)     # before the work, not after it
    snaps = in_time_order([load(p) for p in snapshots])
    if output is None:
        output = default_output(snaps)
        refuse_existing(output, force)
    result = analyze_diff(snaps, top_suspects=max(top, 1), min_growth=min_growth,
                          retained=compiled_dominators())
    path, size = write_report(snaps, result, output, top, force)
    print(f"wrote {path} ({human_bytes(size)})")
    print(f"next: open {pathlib.Path(path).as_uri()} in a browser (it loads nothing from "
          "the network), or attach it to the bug report")
    return 0


def write_report(snaps, result, output, top=10, force=False):
    """Build the report of a diff's snapshots and result, write it to
    `output`; return (absolute path, bytes written)."""
    page = html_page(build_report(snaps, result, top), generator=f"memdiag {_version()}")
    data = page.encode("utf-8")
    path = os.path.abspath(output)
    write_atomically(path, data, force)
    return path, len(data)


def _version():
    """The installed memdiag's version (for the page's footer)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("memdiag")
    except PackageNotFoundError:
        return "(not installed)"


def default_output(snaps):
    """memdiag-<pid>-report.html in the current directory.

    >>> default_output([])
    'memdiag-report.html'
    """
    pid = snaps[-1].meta.get("pid") if snaps else None
    return f"memdiag-{pid}-report.html" if isinstance(pid, int) else "memdiag-report.html"


def refuse_existing(path, force):
    if os.path.isdir(path):
        raise MemdiagError(f"{path} is a directory; give a file name with -o", EXIT_USAGE)
    if not force and os.path.lexists(path):
        raise MemdiagError(f"{path} exists; will not overwrite it without --force", EXIT_USAGE)


def write_atomically(path, data, force=False):
    """Write `data` to `path` complete or not at all: a hidden temporary file
    beside it, fsynced, then linked into place (renamed over it with force)."""
    directory = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".memdiag-report-", suffix=".tmp", dir=directory)
    except OSError as e:
        raise MemdiagError(f"cannot write {path}: {e.strerror or e}", EXIT_USAGE) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        if force:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except OSError as e:
        raise MemdiagError(f"cannot write {path}: {e.strerror or e}", EXIT_USAGE) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _link_new(tmp, path):
    """Put tmp at path only if nothing is there: a hard link fails if the
    name exists (no window in which another file could be replaced)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise MemdiagError(f"{path} exists; will not overwrite it without --force",
                           EXIT_USAGE) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # A file system without hard links: check, then rename.
        if os.path.lexists(path):
            raise MemdiagError(f"{path} exists; will not overwrite it without --force",
                               EXIT_USAGE) from None
        os.rename(tmp, path)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
