"""top results: blocks and --json."""

from __future__ import annotations

import time

from .blocks import Para, Table, human_bytes


def top_blocks(result):
    t = result.totals
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t["time"])) if t.get("time") else "?"
    by = ", taken by the RSS watcher" if t.get("trigger") == "rss" else ""
    head = (f"{result.path}: pid {t.get('pid')}, Python {t.get('python')}, {when}, "
            f"{t.get('mode')} snapshot ({t.get('walker')} walker){by}")
    if t.get("argv"):
        head += f"\ncommand: {command_text(t['argv'])}"
    blocks = [Para(head, "dim"), Para(f"{t['objects']:,} objects, Python heap {human_bytes(t['python_heap'])}, "
                   f"RSS {human_bytes(t.get('rss'))}{of_limit(t)}", "bold")]
    blocks.append(Table("Types by bytes", [("type", "l"), ("count", "r"), ("bytes", "r")],
                        [[s.type, f"{s.count:,}", human_bytes(s.size)] for s in result.by_size]))
    blocks.append(Table("Types by count", [("type", "l"), ("count", "r"), ("bytes", "r")],
                        [[s.type, f"{s.count:,}", human_bytes(s.size)] for s in result.by_count]))
    blocks.append(Table("Largest containers", [("path", "l"), ("type", "l"), ("length", "r"),
                                                ("bytes", "r")],
                        [[c.path, c.type, f"{c.length:,}", human_bytes(c.size)]
                         for c in result.containers]))
    return blocks


def command_text(argv):
    """A snapshot's command line on one line, as written (redacted by default:
    docs/FORMAT.md "meta"); an argument that is not printable is shown as
    its repr.

    >>> command_text(["python", "app.py", "--password=<arg len 7>"])
    'python app.py --password=<arg len 7>'
    """
    return " ".join(a if a.isprintable() else repr(a) for a in argv)


def of_limit(totals):
    """' (61% of the 256.0 MiB cgroup v1 limit)' when the snapshot has the limit.

    >>> of_limit({"rss": 157 << 20, "memory_limit": {"bytes": 256 << 20, "source": "cgroup v1"}})
    ' (61% of the 256.0 MiB cgroup v1 limit)'
    >>> of_limit({"rss": 22 << 20, "memory_limit": {"bytes": 24 << 30, "source": "physical memory"}})
    ' (<1% of the 24.0 GiB of physical memory, no cgroup limit)'
    """
    limit, rss = totals.get("memory_limit"), totals.get("rss")
    if not limit or rss is None or not limit.get("bytes"):
        return ""
    percent = rss * 100 // limit["bytes"]
    share = f"{percent}%" if percent >= 1 else "<1%"
    what = ("of physical memory, no cgroup limit" if limit["source"] == "physical memory"
            else f"{limit['source']} limit")
    return f" ({share} of the {human_bytes(limit['bytes'])} {what})"


def top_json(result):
    return {
        "totals": result.totals,
        "types": {"by_size": [vars_of(s) for s in result.by_size],
                  "by_count": [vars_of(s) for s in result.by_count]},
        "containers": [{"path": c.path, "type": c.type, "length": c.length, "size": c.size}
                       for c in result.containers],
    }


def vars_of(stat):
    return {"type": stat.type, "count": stat.count, "size": stat.size}
