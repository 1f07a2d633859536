"""One real example per command, shown at the end of its --help (click's
`\\b` keeps the lines as they are instead of rewrapping them).

    >>> print(EPILOGS["ps"])
    \b
    Example:
      $ memdiag ps                  # hooked processes: pid, parent, RSS, Python heap, snapshots
"""

from __future__ import annotations

EXAMPLES = {
    "run": ["memdiag run --dir /var/tmp/snaps -- gunicorn app:wsgi -w 4",
            "memdiag run --snapshot-at-rss 1.5G -- python worker.py"],
    "snapshot": ["memdiag snapshot 4242",
                 "memdiag snapshot --children 4240     # every worker of a gunicorn master",
                 "memdiag snapshot --all --json"],
    "ps": ["memdiag ps                  # hooked processes: pid, parent, RSS, Python heap, snapshots"],
    "watch": ["memdiag watch --children 4242 --interval 5   # a gunicorn master and its workers"],
    "attach": ["memdiag attach 4242 --snapshot"],
    "build-walker": ["memdiag build-walker --python python3.13   # before attaching to 3.13 programs"],
    "top": ["memdiag top /tmp/memdiag-1000/memdiag-4242-2.snap --retained"],
    "diff": ["memdiag diff memdiag-4242-1.snap memdiag-4242-2.snap",
             "memdiag diff /tmp/memdiag-1000/memdiag-*.snap   # several workers: each, then across"],
    "report": ["memdiag report memdiag-4242-1.snap memdiag-4242-2.snap -o incident.html"],
    "retainers": ["memdiag retainers memdiag-4242-2.snap --since memdiag-4242-1.snap --type CAP"],
    "demo": ["memdiag demo --sample events"],
}


def epilog(lines):
    label = "Example:" if len(lines) == 1 else "Examples:"
    return "\b\n" + label + "\n" + "\n".join(f"  $ {line}" for line in lines)


EPILOGS = {name: epilog(lines) for name, lines in EXAMPLES.items()}
