"""Real pre-fork servers under `memdiag run`, on 127.0.0.1, under bounded
load (sample_leaks/load.py) against sample_leaks/prefork_app.py, whose /leak
route keeps one AuditEntry per request in `prefork_app.audit_log`:

- gunicorn, sync and gthread workers: `snapshot --children MASTER` twice,
  then `diff` on all the files names the list in every worker that served
  /leak, with exactly the requests each served (X-Worker-Pid counts them),
  and the summary says in how many workers it grew;
- gunicorn with max_requests: workers replaced during the load, while
  snapshots are taken; no request lost, the new workers have the hook;
- the gunicorn master's SIGUSR2 still re-execs it (memdiag takes no snapshot
  there and does not stand in the way);
- uvicorn --workers 2 (spawned, not forked: the hook comes with the
  environment);
- celery's prefork pool with kombu's filesystem transport (no broker
  server), with --signal URG: billiard's pool processes take SIGUSR2 and
  SIGUSR1 for themselves.

Readiness comes from the servers' own log lines and the hook's registry;
every server and each process it started is killed by pid at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SAMPLES, memdiag, run_load
from hookutil import kill_other
from needs import tool_missing

from memdiag import protocol
from memdiag.cli import processes

RUN = [sys.executable, "-m", "memdiag.cli.main", "run"]
LEAK = "prefork_app.audit_log"
WAIT = 90.0      # seconds for a server to get ready on a busy 2-core machine


def tool(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        tool_missing(f"{name} is not installed next to {sys.executable} (the test extras "
                     f"install it: pip install -e '.[test]')")
    return path


class Server:
    """A server started under memdiag run; stdout and stderr go to files."""

    def __init__(self, proc, log_path, snapdir):
        self.proc = proc
        self.pid = proc.pid
        self.log_path = log_path
        self.dir = snapdir
        self.seen = {self.pid}      # every process of the server's tree we saw

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, count=1, timeout=WAIT):
        """The first `count` matches of pattern in the log, once there are that many."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.findall(pattern, self.log())
            if len(found) >= count:
                return found[:count]
            assert self.proc.poll() is None, f"server exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {count} x {pattern!r}:\n{self.log()}"
            time.sleep(0.05)

    def hooked_children(self, parent=None):
        parent = self.pid if parent is None else parent
        return sorted(p.pid for p in processes.hooked_processes() if p.ppid == parent)

    def wait_hooked(self, n, parent=None, timeout=WAIT):
        """The pids of parent's hooked children, once there are n."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.hooked_children(parent)
            self.seen.update(processes.descendants(self.pid))
            if len(pids) >= n:
                return pids
            assert self.proc.poll() is None, f"server exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"{len(pids)} hooked, not {n}:\n{self.log()}"
            time.sleep(0.05)

    def alive(self):
        return self.proc.poll() is None


@pytest.fixture
def server(tmp_path):
    started = []

    def _start(argv, pass_fds=(), cwd=ROOT, env=None, options=()):
        snapdir = str(tmp_path / "snaps")
        log_path = str(tmp_path / f"server-{len(started)}.log")
        env = dict(os.environ if env is None else env, MEMDIAG_PLAIN="1")
        env.pop("MEMDIAG_QUIET", None)
        with open(log_path, "w") as log:
            proc = subprocess.Popen([*RUN, "--dir", snapdir, *options, "--", *argv], stdout=log,
                                    stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    pass_fds=pass_fds)
        s = Server(proc, log_path, snapdir)
        started.append(s)
        return s

    yield _start
    for s in started:
        s.seen.update(processes.descendants(s.pid))
        try:
            os.kill(s.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            s.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait(timeout=30)
        for pid in sorted(s.seen - {s.pid}):
            kill_other(pid)
    for s in started:
        log = s.log()
        assert "Traceback" not in log, log


def gunicorn_argv(tmp_path, *options):
    exe = tool("gunicorn")
    extra = []
    helptext = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60).stdout
    if "--control-socket " in helptext:        # gunicorn 25+: keep it out of $HOME
        extra = ["--control-socket", str(tmp_path / "gunicorn.ctl")]
    return [exe, "-b", "127.0.0.1:0", "--chdir", SAMPLES, "--graceful-timeout", "5",
            *extra, *options, "prefork_app:app"]


def start_gunicorn(server, tmp_path, workers, *options):
    s = server(gunicorn_argv(tmp_path, "-w", str(workers), *options))
    port = int(s.wait_log(r"Listening at: http://127\.0\.0\.1:(\d+)")[0])
    pids = s.wait_hooked(workers)
    assert len(pids) == workers, (pids, s.log())
    # setproctitle is in the test extras, so gunicorn renames its processes
    # as it does where it is installed in production: their command lines
    # are no longer each other's, and /proc no longer shows the master's
    # environment (memdiag tells forks and a stepped-aside hook apart without).
    assert importlib.util.find_spec("setproctitle"), (
        "setproctitle is not installed next to this Python: pip install -e '.[test]'")
    titles = [protocol.proc_cmdline(p)[:1] for p in (s.pid, *pids)]
    assert all(t and t[0].startswith("gunicorn: ") for t in titles), titles
    assert not processes.started_with_memdiag(s.pid)
    return s, port, pids


def children_snapshot(master):
    """`memdiag snapshot --children master --json`: {pid: path}, and stderr."""
    code, out, err = memdiag("snapshot", "--children", master, "--json", "--timeout", 120)
    assert code == 0, (code, out, err)
    listed = json.loads(out)
    return {x["pid"]: x["path"] for x in listed if x["path"]}, listed, err


def served_counts(result):
    return {int(pid): n for pid, n in result["by_header"].items()}


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_gunicorn_workers_snapshot_children_and_diff_name_the_leak(server, tmp_path,
                                                                   worker_class):
    # gthread: at most 2 connections per worker (its 2 threads), so that one
    # worker does not take every connection of the load
    options = ["-k", worker_class] + (["--threads", "2", "--worker-connections", "2"]
                                      if worker_class == "gthread" else [])
    s, port, workers = start_gunicorn(server, tmp_path, 3, *options)
    warm = run_load(port, "/ok", 60, concurrency=6, max_seconds=120)
    assert warm["failed"] == 0 and warm["ok"] == 60, warm
    first, _, err = children_snapshot(s.pid)
    assert sorted(first) == workers, (first, err, s.log())
    assert err == "", err                 # every child of the master has the hook
    code, out, err = memdiag("ps", "--json")
    commands = {x["pid"]: x["command"] for x in json.loads(out)}
    assert [commands.get(w) for w in workers] == ["gunicorn: worker [prefork_app:app]"] * 3
    # The kernel decides which worker accepts: load in rounds (at most 5)
    # until at least two workers served the route.
    served, sent = {}, 0
    for _ in range(5):
        r = run_load(port, "/leak", 300, concurrency=6, max_seconds=120,
                     count_header="X-Worker-Pid")
        assert r["failed"] == 0 and r["ok"] == 300, r
        sent += 300
        for pid, n in served_counts(r).items():
            served[pid] = served.get(pid, 0) + n
        if len(served) >= 2:
            break
    assert set(served) <= set(workers) and sum(served.values()) == sent
    assert len(served) >= 2, served       # the load was spread over workers
    second, _, err = children_snapshot(s.pid)
    assert sorted(second) == workers, (second, err)
    code, out, err = memdiag("diff", "--json", *first.values(), *second.values())
    assert code == 0, err
    d = json.loads(out)
    by_pid = {w["pid"]: w for w in d["workers"]}
    assert sorted(by_pid) == workers
    for pid in workers:
        suspects = {x["path"]: x for x in by_pid[pid]["result"]["suspects"]}
        if served.get(pid):
            # named in every worker that served the route, with what it served
            assert LEAK in suspects, (pid, list(suspects)[:5])
            assert suspects[LEAK]["growth"] == served[pid]
            assert suspects[LEAK]["added_type"] == "prefork_app.AuditEntry"
        else:
            assert LEAK not in suspects
    top = d["summary"][0]
    assert top["path"] == LEAK and top["of"] == 3
    assert top["workers"] == len(served)          # in how many workers it appears
    assert {g["pid"]: g["growth"] for g in top["growth_per_worker"]} == served
    code, out, err = memdiag("diff", *first.values(), *second.values())
    row = next(line for line in out.splitlines() if line.startswith(f"1  {LEAK}"))
    assert f"{len(served)} of 3" in row, out


def test_gunicorn_max_requests_restarts_workers_while_snapshots_are_taken(server, tmp_path):
    """Workers replaced by max_requests during the load, while `snapshot
    --children` runs: no request is lost, a worker that exits meanwhile is
    skipped with a note (exit 0), and every new worker has the hook."""
    import threading
    s, port, workers = start_gunicorn(server, tmp_path, 2, "--max-requests", "40",
                                      "--max-requests-jitter", "0")
    first, _, _ = children_snapshot(s.pid)
    assert sorted(first) == workers
    result = {}
    load = threading.Thread(target=lambda: result.update(run_load(
        port, "/leak", 200, concurrency=4, max_seconds=120)))
    load.start()
    try:
        code, out, err = memdiag("snapshot", "--children", s.pid, "--json", "--timeout", 120)
    finally:
        load.join()
    assert code == 0, (out, err)
    during = json.loads(out)
    for x in during:
        assert x["path"] or x["exited"], x
    for line in err.splitlines():
        assert re.fullmatch(r"memdiag: pid \d+ (exited before its snapshot was written "
                            r"\(a worker its server replaced\?\); skipped|\(\S+\) has no "
                            r"memdiag hook; skipped)", line), err
    # 200 requests, at most 40 per worker: at least 5 worker lifetimes
    assert result["failed"] == 0 and result["ok"] == 200, result
    booted = s.wait_log(r"Booting worker with pid: (\d+)", count=5)
    now = s.wait_hooked(2)
    assert set(now) - set(workers), (now, workers)       # replaced
    assert len(booted) >= 5
    third, listed, err = children_snapshot(s.pid)
    assert sorted(third) == now, (listed, err)
    assert all(os.path.isfile(p) for p in third.values())
    files = [*first.values(), *(x["path"] for x in during if x["path"]), *third.values()]
    count = {}
    for f in files:
        pid = protocol.parse_snapshot_name(os.path.basename(f))[0]
        count[pid] = count.get(pid, 0) + 1
    code, out, err = memdiag("diff", "--json", *files)
    assert code == 0, err
    d = json.loads(out)
    if max(count.values()) >= 2:       # a worker lived through two rounds: compared
        assert {w["pid"]: len(w["files"]) for w in d["workers"]} == count
        assert all((w["result"] is None) == (count[w["pid"]] == 1) for w in d["workers"])
    else:                              # every worker was replaced between rounds
        assert d["matched"] is False and "workers" not in d


def test_gunicorn_master_sigusr2_still_reexecs(server, tmp_path):
    """gunicorn re-execs itself on SIGUSR2 (a new master with new workers,
    for a binary upgrade). Under memdiag run that still happens: the hook
    stepped aside in the master (it said so), no snapshot is written for the
    master, `memdiag snapshot MASTER` refuses it, and the new generation's
    workers have the hook."""
    s, port, workers = start_gunicorn(server, tmp_path, 2)
    assert re.search(rf"memdiag: SIGUSR2 was taken over by the program; snapshots are off "
                     rf"in pid {s.pid}", s.log()), s.log()
    code, out, err = memdiag("snapshot", s.pid, "--timeout", 5)
    assert code == 4 and f"pid {s.pid} (" in err and "took its memdiag hook's signal" in err, err
    assert f"--children {s.pid}" in err, err
    os.kill(s.pid, signal.SIGUSR2)
    s.wait_log(r"Handling signal: usr2")
    masters = s.wait_log(r"\[(\d+)\] \[INFO\] Starting gunicorn", count=2)
    new_master = int(masters[1])
    assert new_master != s.pid and protocol.proc_stat(new_master).ppid == s.pid
    s.seen.add(new_master)
    new_workers = s.wait_hooked(2, parent=new_master)
    s.seen.update(new_workers)
    assert set(new_workers).isdisjoint(workers)
    assert s.alive() and s.hooked_children() == workers       # the old generation runs on
    assert protocol.snapshot_files(s.dir, s.pid) == []
    assert protocol.snapshot_files(s.dir, new_master) == []
    r = run_load(port, "/ok", 40, concurrency=4, max_seconds=120)
    assert r["failed"] == 0 and r["ok"] == 40, r
    both, listed, err = children_snapshot(s.pid)       # descendants: both generations
    assert sorted(both) == sorted(workers + new_workers), (listed, err)
    assert f"pid {new_master} " in err and "has no memdiag hook" in err


def test_uvicorn_two_workers(server, tmp_path):
    """uvicorn --workers 2 spawns its workers (a fresh interpreter each, not a
    fork): they get the hook from the environment memdiag run set."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        s = server([tool("uvicorn"), "--workers", "2", "--fd", str(sock.fileno()),
                    "--app-dir", SAMPLES, "--no-access-log", "prefork_app:asgi"],
                   pass_fds=(sock.fileno(),))
    finally:
        sock.close()
    workers = sorted(int(p) for p in s.wait_log(r"Started server process \[(\d+)\]", count=2))
    s.wait_log(r"Application startup complete", count=2)
    s.seen.update(workers)
    hooked = s.wait_hooked(2)
    assert set(workers) <= set(hooked), (workers, hooked, s.log())
    r = run_load(port, "/ok", 40, concurrency=4, max_seconds=120)
    assert r["failed"] == 0, r
    first, listed, err = children_snapshot(s.pid)
    assert set(workers) <= set(first), (listed, err)
    r = run_load(port, "/leak", 200, concurrency=4, max_seconds=120,
                 count_header="X-Worker-Pid")
    assert r["failed"] == 0 and r["ok"] == 200, r
    served = served_counts(r)
    second, listed, err = children_snapshot(s.pid)
    files = [first[p] for p in workers] + [second[p] for p in workers]
    code, out, err = memdiag("diff", "--json", *files)
    assert code == 0, err
    d = json.loads(out)
    top = d["summary"][0]
    assert top["path"] == LEAK and top["workers"] == len(served), (d["summary"][:3], served)
    assert {g["pid"]: g["growth"] for g in top["growth_per_worker"]} == served


def test_celery_prefork_pool_with_the_filesystem_broker(server, tmp_path):
    """celery -P prefork -c 2, messages as files (kombu's filesystem
    transport): the pool processes are forked, so they register under their
    own pids; each Job kept by the task shows in the process that ran it."""
    celery = tool("celery")
    queue = tmp_path / "queue"
    (queue / "processed").mkdir(parents=True)
    env = dict(os.environ, CELERY_FS_DIR=str(queue))
    s = server([celery, "-A", "celery_leak", "worker", "-P", "prefork", "-c", "2",
                "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "info"],
               cwd=SAMPLES, env=env, options=("--signal", "URG"))
    s.wait_log(r"celery@\S+ ready")
    pool = s.wait_hooked(2)
    assert "taken over" not in s.log(), s.log()
    first, _, err = children_snapshot(s.pid)
    assert sorted(first) == pool and err == "", err
    p = subprocess.run([sys.executable, os.path.join(SAMPLES, "celery_leak.py"), "send", "200"],
                       env=env, cwd=SAMPLES, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    jobs = s.wait_log(r"JOB \d+ pid=(\d+)", count=200, timeout=300)
    ran = {}
    for pid in jobs:
        ran[int(pid)] = ran.get(int(pid), 0) + 1
    assert set(ran) <= set(pool)
    second, _, err = children_snapshot(s.pid)
    assert sorted(second) == pool, err
    code, out, err = memdiag("diff", "--json", *first.values(), *second.values())
    assert code == 0, err
    top = json.loads(out)["summary"][0]
    assert top["path"] == "celery_leak.finished_jobs" and top["workers"] == len(ran), top
    assert {g["pid"]: g["growth"] for g in top["growth_per_worker"]} == ran
    assert top["added_type"] == "celery_leak.Job"
