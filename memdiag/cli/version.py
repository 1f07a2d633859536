"""memdiag --version: memdiag's version, and for which Pythons its compiled
walker (and the CLI's compiled matcher and dominator tree) are built.

    >>> version_for("_walker.cpython-313-x86_64-linux-gnu.so")
    '3.13'
"""

from __future__ import annotations

import glob
import importlib
import os
import sys

PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THIS = "%d.%d" % sys.version_info[:2]


def dist_version():
    """The installed distribution's version (what pip installed)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("memdiag")
    except PackageNotFoundError:
        return "unknown (not installed: run from a checkout)"


def version_for(filename):
    """The Python version an extension module's file name was built for, or None."""
    parts = os.path.basename(filename).split(".")
    tag = parts[1] if len(parts) > 2 else ""
    digits = tag.split("-")[1] if tag.startswith("cpython-") else ""
    return f"{digits[0]}.{digits[1:]}" if digits.isdigit() and len(digits) > 1 else None


def built_for(module):
    """The Pythons memdiag.<module> is built for, oldest first."""
    found = {version_for(p) for p in glob.glob(os.path.join(PKG_DIR, f"{module}.*.so"))}
    return sorted((v for v in found if v), key=lambda v: tuple(map(int, v.split("."))))


def loads(module):
    """None if memdiag.<module> imports in this Python, else why not."""
    try:
        importlib.import_module(f"memdiag.{module}")
        return None
    except ImportError as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__


def status_line(label, module):
    built = built_for(module)
    have = ", ".join(built)
    if THIS in built:
        error = loads(module)
        if error is None:
            return f"{label}: built for {have}"
        return f"{label}: built for {have}, but it does not load in this Python: {error}"
    missing = (f"not built for this Python {THIS} (reinstall memdiag where a C compiler "
               f"and the Python headers are)")
    return f"{label}: {'built for ' + have + '; ' if built else ''}{missing}"


def version_text():
    """What `memdiag --version` prints."""
    lines = [f"memdiag {dist_version()}",
             f"Python {sys.version.split()[0]} ({sys.executable})",
             status_line("compiled walker", "_walker"),
             status_line("compiled matcher", "_fastmatch"),
             status_line("compiled dominator tree", "_dominators")]
    walker = built_for("_walker")
    if THIS not in walker:
        lines.append("without the compiled walker, hooked processes on this Python use the "
                     "pure-Python one (tens of times slower)")
    lines.append("a target on another Python (memdiag attach, memdiag run with another "
                 "interpreter) gets the walker compiled for it on first use, into your "
                 "cache (memdiag build-walker --python PYTHON does it ahead)")
    return "\n".join(lines)
