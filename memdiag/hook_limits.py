"""The process's memory limit, for `--snapshot-at-rss 80%`: the smallest
cgroup v2 `memory.max` of the process's own cgroup and its ancestors, else
the smallest cgroup v1 `memory.limit_in_bytes` of its memory cgroup and its
ancestors, else physical memory. A cgroup limit at or above physical memory
(cgroup v1 says "no limit" with 2^63 rounded down to a page) counts as none.

The cgroups come from /proc/self/cgroup, their directories from
/proc/self/mountinfo (so a container's own cgroup namespace, where its
cgroup is "/", works as well as a host's /sys/fs/cgroup/...). Reading the
limit costs a few small file reads (about 0.1 ms); the RSS watcher does it
when it starts and then every LIMIT_REREAD seconds, since a limit can change
(`kubectl set resources`, `systemctl set-property`).

MEMDIAG_CGROUP_ROOT=DIR is for tests only: DIR stands for the process's own
cgroup directory (its memory.max and memory.limit_in_bytes are read there,
no ancestor), so a test can give a process any limit, and change it,
without a real cgroup.

    >>> limit = memory_limit()
    >>> limit.bytes > 0, limit.source in ("cgroup v2", "cgroup v1", "physical memory")
    (True, True)
    >>> parse_threshold("80%"), parse_threshold("1.5G"), parse_threshold(4096)
    ((None, 0.8), (1610612736, None), (4096, None))
    >>> threshold_bytes((None, 0.8), Limit(1 << 30, "cgroup v2", "/sys/fs/cgroup/memory.max"))
    858993459
"""

from __future__ import annotations

import collections
import os

from . import protocol

LIMIT_REREAD = 60.0     # seconds between two readings of the limit by the watcher

Limit = collections.namedtuple("Limit", "bytes source file")
Limit.__doc__ = """A memory limit: bytes; source, one of "cgroup v2", "cgroup v1",
"physical memory"; file, the cgroup file it was read from (None for
physical memory)."""


def parse_threshold(text):
    """(bytes, None) for a size, (None, fraction) for a percentage of the
    memory limit; ValueError says what is wrong."""
    if isinstance(text, str) and text.strip().endswith("%"):
        try:
            percent = float(text.strip()[:-1])
        except ValueError:
            raise ValueError(f"not a percentage: {text!r} (e.g. 80%)") from None
        if not 0 < percent <= 100:
            raise ValueError(f"{text!r}: a percentage of the memory limit is above 0% "
                             f"and at most 100%")
        return None, percent / 100
    return protocol.parse_size(text), None


def threshold_bytes(threshold, limit):
    """The bytes a parse_threshold() result stands for, given the Limit."""
    size, fraction = threshold
    return size if fraction is None else int(limit.bytes * fraction)


def as_dict(limit):
    """A Limit as the snapshot's metadata and the registry entry hold it."""
    return None if limit is None else {"bytes": limit.bytes, "source": limit.source,
                                       "file": limit.file}


def physical_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def memory_limit():
    """The Limit of this process now (see the module doc)."""
    physical = physical_memory()
    root = os.environ.get("MEMDIAG_CGROUP_ROOT")
    if root:
        v2, v1 = [root], [root]
    else:
        v2, v1 = _cgroup_dirs()
    for source, dirs, name in (("cgroup v2", v2, "memory.max"),
                               ("cgroup v1", v1, "memory.limit_in_bytes")):
        best = None
        for d in dirs:
            path = os.path.join(d, name)
            value = _read_limit(path)
            if value is not None and (physical is None or value < physical) \
                    and (best is None or value < best[0]):
                best = (value, path)
        if best is not None:
            return Limit(best[0], source, best[1])
    return Limit(physical or 0, "physical memory", None)


def _read_limit(path):
    """A memory.max or memory.limit_in_bytes value in bytes; None for "max",
    a missing file or anything unreadable."""
    try:
        with open(path, "rb") as f:
            text = f.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _cgroup_dirs():
    """([cgroup v2 dirs], [cgroup v1 memory dirs]) of this process, each from
    its own cgroup up to the top of what is mounted."""
    v2_path = v1_path = None
    try:
        with open("/proc/self/cgroup", "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controllers == "" and v2_path is None:
                    v2_path = path
                elif "memory" in controllers.split(","):
                    v1_path = path
    except (OSError, ValueError):
        return [], []
    v2_mount = v1_mount = None
    try:
        with open("/proc/self/mountinfo", "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if " - " not in line or len(fields) < 5:
                    continue
                after = line.split(" - ", 1)[1].split()
                fstype, options = after[0], (after[2] if len(after) > 2 else "")
                root, point = _unescape(fields[3]), _unescape(fields[4])
                if fstype == "cgroup2" and v2_mount is None:
                    v2_mount = (root, point)
                elif fstype == "cgroup" and "memory" in options.split(",") and v1_mount is None:
                    v1_mount = (root, point)
    except OSError:
        return [], []
    return _ancestors(v2_path, v2_mount), _ancestors(v1_path, v1_mount)


def _ancestors(path, mount):
    """The directories of cgroup `path` and its ancestors, as far up as the
    mount (root in the hierarchy, mount point) shows them.

    >>> _ancestors("/kubepods/pod1/c1", ("/kubepods", "/sys/fs/cgroup"))
    ['/sys/fs/cgroup/pod1/c1', '/sys/fs/cgroup/pod1', '/sys/fs/cgroup']
    """
    if path is None or mount is None:
        return []
    root, point = mount
    root = root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return []
    parts = [p for p in path[len(root):].split("/") if p]
    return [os.path.join(point, *parts[:n]) for n in range(len(parts), -1, -1)]


def _unescape(field):
    r"""mountinfo's octal escapes (\040 for a space) decoded."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
