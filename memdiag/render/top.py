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
    """
    limit, rss = totals.get("memory_limit"), totals.get("rss")
    if not limit or rss is None:
        return ""
    return (f" ({rss * 100 // limit['bytes']}% of the {human_bytes(limit['bytes'])} "
            f"{limit['source']} limit)")


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
