"""HTTP plumbing shared by the sample servers (stdlib only, no memdiag).

Every sample is started as ``python sample_leaks/<name>.py [--port 0]
[--max-seconds 600]``.  It serves on 127.0.0.1 only, prints one line
``READY port=<port> pid=<pid>`` when it accepts connections, and then runs
``serve_forever`` in the MAIN thread (signals such as the memdiag SIGUSR2
hook are delivered there) until SIGTERM/SIGINT or until --max-seconds have
passed; both end with exit status 0.

Endpoints every sample gets for free:

* ``GET /stats``          -- JSON with the sample's own counters.
* ``GET /debug/objects``  -- JSON {"gc_objects", "allocated_blocks", "rss_kib"}
  measured after a full ``gc.collect()``; used to check the samples.

This module keeps no per-request state, so it adds nothing that grows.
"""

import argparse
import gc
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Stop(Exception):
    """Raised in the main thread by the SIGTERM/SIGINT handler."""


def _raise_stop(signum, frame):
    raise _Stop(signum)


def rss_kib():
    """Resident set size of this process in KiB (Linux /proc), or -1."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def debug_objects():
    gc.collect()
    return {
        "gc_objects": len(gc.get_objects()),
        "allocated_blocks": sys.getallocatedblocks(),
        "rss_kib": rss_kib(),
    }


def make_handler(routes, stats):
    """routes: {path: fn(query_string) -> str}; stats: fn() -> dict."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive; every reply has Content-Length
        timeout = 60  # an idle keep-alive connection is closed after this
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle +
        # delayed ACK add ~40 ms to every keep-alive request.
        disable_nagle_algorithm = True

        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path == "/stats":
                self._reply(200, json.dumps(stats()), "application/json")
            elif path == "/debug/objects":
                self._reply(200, json.dumps(debug_objects()), "application/json")
            elif path in routes:
                self._reply(200, routes[path](query))
            else:
                self._reply(404, "not found\n")

        def _reply(self, status, text, content_type="text/plain; charset=utf-8"):
            body = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass  # no per-request logging

    return Handler


def serve(routes, stats, description, argv=None):
    """Parse the common command line, serve until stopped, return 0."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="0 = ephemeral")
    parser.add_argument("--max-seconds", type=float, default=600,
                        help="exit by itself after this long (safety net)")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(routes, stats))
    server.daemon_threads = True
    deadline = threading.Timer(args.max_seconds, server.shutdown)
    deadline.daemon = True
    try:
        deadline.start()
        print(f"READY port={server.server_address[1]} pid={os.getpid()}", flush=True)
        server.serve_forever(poll_interval=0.5)
    except _Stop:
        pass
    finally:
        deadline.cancel()
        server.server_close()
    return 0
