"""Captcha endpoint that leaks one CAP per request (seed 004).

Story: a captcha service froze at 1.36 GB.  Heap snapshots taken with
``kill -USR2 <pid>`` after each batch of 500 requests showed ``CAP`` objects
that were never freed, retained by ``reg_ary``, a module-level array inside
the captcha library.  The application called the library's factory
``ccap(style)`` inside the request handler; the factory registers every CAP
it creates in ``timer.reg_ary`` and nothing unregisters them.

Here: ``GET /captcha`` calls ``ccap.ccap(STYLE)`` once per request (the bug;
the fix is to call it once at import time) and returns the captcha text.

Expected memdiag report: ``CAP`` (type ``ccap.cap.CAP``) grows by exactly one
per /captcha request, retained by ``ccap.timer.timer['reg_ary']``.

Endpoints: /captcha, /stats ({"requests", "leaked"}), /debug/objects.
Run: python sample_leaks/captcha_leak.py [--port 0] [--max-seconds 600]
"""

import os
import sys
import threading

# The library lives beside this script; make that work with any launcher.
_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

import ccap  # noqa: E402  (do not bind the registry to a global here)
from _server import serve  # noqa: E402

STYLE = {"width": 200, "height": 60}

_lock = threading.Lock()
_requests = 0


def get_captcha(query):
    global _requests
    with _lock:
        _requests += 1
    captcha = ccap.ccap(STYLE)  # BUG: a new, registered CAP per request
    text, _image = captcha.get()  # the original sent the image base64-encoded
    return text + "\n"


def stats():
    return {"requests": _requests, "leaked": len(ccap.timer.timer["reg_ary"])}


if __name__ == "__main__":
    sys.exit(serve({"/captcha": get_captcha}, stats, __doc__.splitlines()[0]))
