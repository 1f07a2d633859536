"""Runs a sample server the way an embedding host does that did not let
Python ignore SIGXFSZ (Py_InitializeEx(0), as mod_wsgi and others do): the
signal keeps its default action, which kills the process that writes past
RLIMIT_FSIZE.

    python tests/programs/sigxfsz_default_host.py [server args] captcha_leak.py [server args]
"""

import os
import runpy
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
args = sys.argv[1:]
name = next(a for a in args if a.endswith(".py"))
args.remove(name)
script = os.path.join(ROOT, "sample_leaks", name)
sys.argv = [script] + args
runpy.run_path(script, run_name="__main__")
