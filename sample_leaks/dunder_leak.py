"""A leak held through a name the interpreter made: ``__warningregistry__``.

Story: a service called a deprecated function with a per-request id in the
warning message, and routed warnings to its logs. Python records each
warning it has shown in the ``__warningregistry__`` dict of the module the
warning comes from, keyed by (message, category, line), so that it is shown
once. Every message was new, so the registry grew by one entry per request,
forever. No code in the service mentions that dict.

Here: ``GET /item?id=<n>`` calls ``legacyapi.compat.fetch(n)``, which warns
with ``n`` in the message; warnings go to a counter (as
``logging.captureWarnings`` would send them to a log), not to stderr.

Expected memdiag report: ``legacyapi.compat.__warningregistry__`` (a dict)
grows by one entry per request (added type ``tuple``, the registry's keys).
Safety cap: after a million warnings, fetch() stops warning.

Endpoints: /item, /stats ({"requests", "warnings", "registry"}),
/debug/objects.
Run: python sample_leaks/dunder_leak.py [--port 0] [--max-seconds 600]
"""

import os
import sys
import threading
import warnings
from urllib.parse import parse_qs

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from legacyapi import compat  # noqa: E402
from _server import serve  # noqa: E402

_lock = threading.Lock()
_requests = 0
_warnings = 0


def _count_warning(message, category, filename, lineno, file=None, line=None):
    """Where the service's logging handler would take the warning."""
    global _warnings
    with _lock:
        _warnings += 1


warnings.showwarning = _count_warning


def get_item(query):
    global _requests
    with _lock:
        _requests += 1
        n = _requests
    ids = parse_qs(query).get("id")
    item_id = int(ids[0]) if ids and ids[0].isdigit() else n
    compat.fetch(item_id)
    return "ok\n"


def stats():
    return {"requests": _requests, "warnings": _warnings,
            "registry": compat.registry_size()}


if __name__ == "__main__":
    sys.exit(serve({"/item": get_item}, stats, __doc__.splitlines()[0]))
