"""memdiag demo: the whole loop on a sample leak, end to end.

Starts sample_leaks/captcha_leak.py with the hook, sends a warm-up load,
takes a snapshot, sends more requests, takes another, and runs `diff` and
`retainers` on the two files, and `top --retained` on the second. Everything
it starts, it stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from . import diff as diff_cmd
from . import retainers as retainers_cmd
from . import top as top_cmd
from .errors import EXIT_USAGE, MemdiagError
from .run import hook_env
from .snapshot import take

SAMPLES = {
    "captcha": ("captcha_leak.py", "/captcha", "ccap.cap.CAP"),
    "events": ("event_backlog.py", "/event", "str"),
    "control": ("bounded_cache.py", "/item", None),
    "native": ("native_growth.py", "/render", None),
    "spread": ("spread_leak.py", "/event?user={i}", "dict"),
    "buffer": ("buffer_leak.py", "/upload", None),
    "weak": ("weak_registry.py", "/login", "sessions.store.Session"),
}


def samples_dir():
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for d in (os.environ.get("MEMDIAG_SAMPLES"), os.path.join(here, "sample_leaks"),
              os.path.join(os.getcwd(), "sample_leaks")):
        if d and os.path.isfile(os.path.join(d, "load.py")):
            return d
    raise MemdiagError("the demo needs the sample_leaks/ directory of a memdiag checkout "
                       "(or MEMDIAG_SAMPLES=path)", EXIT_USAGE)


def _load_generator(sdir):
    """sample_leaks/load.py (the load generator, stdlib only), loaded from its
    file without putting the samples directory on sys.path."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_memdiag_sample_load",
                                                  os.path.join(sdir, "load.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _say(text):
    sys.stderr.write(f"\n$ {text}\n" if text.startswith("memdiag") else f"{text}\n")
    sys.stderr.flush()


def command(sample="captcha", requests=500, warmup=200, out_dir="demo-out"):
    if sample not in SAMPLES:
        raise MemdiagError(f"unknown sample {sample!r}; choose from {', '.join(SAMPLES)}",
                           EXIT_USAGE)
    script, path, type_name = SAMPLES[sample]
    sdir = samples_dir()
    out_dir = os.path.abspath(out_dir)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, mode=0o700)
    env = hook_env(directory=out_dir)
    env["MEMDIAG_QUIET"] = "1"
    run_load = _load_generator(sdir).run_load
    _say(f"starting {script} with the memdiag hook (snapshots go to {out_dir})")
    proc = subprocess.Popen([sys.executable, os.path.join(sdir, script), "--max-seconds", "300"],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        port = _ready(proc)
        _say(f"pid {proc.pid} serves 127.0.0.1:{port}; warm-up: {warmup} requests to {path}")
        _check(run_load(port, path, warmup))
        _say(f"memdiag snapshot {proc.pid}")
        a, secs = take(proc.pid, out_dir, timeout=120)
        _say(f"{a}  ({secs:.2f}s)")
        _say(f"sending {requests} more requests to {path}")
        _check(run_load(port, path, requests))
        _say(f"memdiag snapshot {proc.pid}")
        b, secs = take(proc.pid, out_dir, timeout=120)
        _say(f"{b}  ({secs:.2f}s)")
    finally:
        _stop(proc)
    rel_a, rel_b = _short(a), _short(b)
    _say(f"memdiag diff {rel_a} {rel_b}")
    diff_cmd.command([rel_a, rel_b])
    if type_name:
        _say(f"memdiag retainers {rel_b} --since {rel_a} --type {type_name}")
        retainers_cmd.command(rel_b, type_name, since=rel_a, top=5)
        _say(f"memdiag top {rel_b} --retained --top 5")
        top_cmd.command(rel_b, top=5, retained=True)
    return 0


def _short(path):
    """The path relative to the current directory when it is below it.

    >>> here = os.getcwd()
    >>> _short(os.path.join(here, "demo-out", "memdiag-1-1.snap"))
    'demo-out/memdiag-1-1.snap'
    >>> outside = os.path.join(os.path.dirname(here), "memdiag-1-1.snap")
    >>> _short(outside) == outside
    True
    """
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _ready(proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise MemdiagError("the sample exited before it was ready", EXIT_USAGE)
        if line.startswith("READY"):
            fields = dict(part.split("=", 1) for part in line.split()[1:])
            return int(fields["port"])
    raise MemdiagError("the sample did not start in time", EXIT_USAGE)


def _check(result):
    if result.get("failed"):
        raise MemdiagError(f"{result['failed']} requests failed", EXIT_USAGE)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()
