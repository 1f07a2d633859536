"""One leaking web app for pre-fork servers: a WSGI app (`app`) for gunicorn
and an ASGI app (`asgi`) for uvicorn, stdlib only (the server is the only
dependency). Also a celery-free shape of the same leak: `record(path)`.

Routes (GET):

* `/leak`  -- records an `AuditEntry` (the path, a timestamp, 64 bytes of
  request data) in the module-level list `audit_log` and never drops it:
  an audit trail meant to be flushed to a database by a job nobody wrote.
  So every request that reaches /leak leaves one AuditEntry behind in the
  worker that served it.
* `/ok`    -- the same work without keeping anything.
* `/stats` -- JSON {"pid", "served", "leaked"}.

Every response carries `X-Worker-Pid: <pid>`, so a load generator can count
which worker served what (sample_leaks/load.py --count-header).

    gunicorn -w 3 -b 127.0.0.1:8000 --chdir sample_leaks prefork_app:app
    uvicorn --workers 2 --port 8000 --app-dir sample_leaks prefork_app:asgi

Expected report, per worker that served /leak: **`prefork_app.audit_log`**
grows by one `prefork_app.AuditEntry` per request it served.
"""

import json
import os
import time

audit_log = []
served = 0


class AuditEntry:
    __slots__ = ("path", "at", "data")

    def __init__(self, path):
        self.path = path
        self.at = time.time()
        self.data = os.urandom(64)


def record(path, keep=True):
    """Handle one request; with keep, the entry stays in audit_log (the leak)."""
    global served
    served += 1
    entry = AuditEntry(path)
    if keep:
        audit_log.append(entry)
    return entry


def respond(path):
    """(status, content type, body) for a path."""
    if path == "/leak":
        record(path)
        return 200, "text/plain", b"recorded\n"
    if path == "/ok":
        record(path, keep=False)
        return 200, "text/plain", b"ok\n"
    if path == "/stats":
        body = json.dumps({"pid": os.getpid(), "served": served, "leaked": len(audit_log)})
        return 200, "application/json", body.encode()
    return 404, "text/plain", b"not found\n"


def app(environ, start_response):
    """WSGI."""
    status, ctype, body = respond(environ.get("PATH_INFO", "/"))
    start_response(f"{status} {'OK' if status == 200 else 'Not Found'}",
                   [("Content-Type", ctype), ("Content-Length", str(len(body))),
                    ("X-Worker-Pid", str(os.getpid()))])
    return [body]


async def asgi(scope, receive, send):
    """ASGI (HTTP only; lifespan events are acknowledged)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    status, ctype, body = respond(scope.get("path", "/"))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype.encode()),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-worker-pid", str(os.getpid()).encode())]})
    await send({"type": "http.response.body", "body": body})
