"""Workers of one service: `memdiag snapshot --children PID` and `--all`,
`memdiag ps`, and `memdiag diff` over the files of several processes.

The first half runs on hand-built snapshots and on a small pre-fork program
(tests/programs/prefork_parent.py: its parent takes SIGUSR2 as gunicorn's
arbiter does, its workers reset it); tests/test_servers.py runs real
gunicorn and uvicorn.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest

from conftest import ROOT, memdiag
from hookutil import PROGRAMS, start  # noqa: F401 (fixture)
from snapbuild import leak_heap

from memdiag import protocol
from memdiag.cli import processes

RUN = [sys.executable, "-m", "memdiag.cli.main", "run"]
LEAK = "ccap.timer.timer['reg_ary']"


# ------------------------------------------------ diff over several processes

@pytest.fixture
def worker_snaps(tmp_path):
    """Three workers' files: 4243 grew by 500, 4244 by 50, 4245 not at all,
    and 4246 has one snapshot (started between the two rounds)."""
    mib = 1 << 20
    files = []
    for pid, before, after in ((4243, 200, 700), (4244, 100, 150), (4245, 80, 80)):
        for seq, n in ((1, before), (2, after)):
            path = str(tmp_path / f"memdiag-{pid}-{seq}.snap")
            leak_heap(n, 10, 5).write(path, pid=pid, time=1000.0 + 60 * seq, seq=seq,
                                      rss=40 * mib)
            files.append(path)
    single = str(tmp_path / "memdiag-4246-1.snap")
    leak_heap(10, 10, 5).write(single, pid=4246, time=1100.0, seq=1, rss=40 * mib)
    return files + [single]


def test_diff_of_several_workers_compares_each_and_summarizes(worker_snaps):
    # In any order: files are grouped by pid and put in time order.
    code, out, err = memdiag("diff", "--json", *reversed(worker_snaps))
    assert code == 0, err
    d = json.loads(out)
    by_pid = {w["pid"]: w for w in d["workers"]}
    assert sorted(by_pid) == [4243, 4244, 4245, 4246]
    assert by_pid[4246]["result"] is None and len(by_pid[4246]["files"]) == 1
    for pid, growth in ((4243, 500), (4244, 50)):
        w = by_pid[pid]
        assert [os.path.basename(f) for f in w["files"]] == [f"memdiag-{pid}-1.snap",
                                                             f"memdiag-{pid}-2.snap"]
        first = w["result"]["suspects"][0]     # today's diff keys, per worker
        assert (first["path"], first["growth"]) == (LEAK, growth)
    assert [s["path"] for s in by_pid[4245]["result"]["suspects"]] == []
    top = d["summary"][0]
    assert top["path"] == LEAK and top["workers"] == 2 and top["of"] == 3
    assert [(g["pid"], g["growth"]) for g in top["growth_per_worker"]] == [(4243, 500),
                                                                           (4244, 50)]
    assert top["growth"] == 550 and top["added_type"] == "ccap.cap.CAP"


def test_diff_of_several_workers_as_text(worker_snaps):
    code, out, err = memdiag("diff", *worker_snaps)
    assert code == 0, err
    assert "3 processes compared" in out
    assert "Not compared, one snapshot each" in out and "4246" in out
    row = next(line for line in out.splitlines() if line.startswith("1  " + LEAK))
    assert "2 of 3" in row and "4243 +500, 4244 +50" in row, out
    assert "next, one process in full: memdiag diff" in out


def test_diff_of_several_workers_exit_code_and_html(worker_snaps, tmp_path):
    assert memdiag("diff", "--exit-code", *worker_snaps)[0] == 1
    quiet = [f for f in worker_snaps if "-4245-" in f] + [worker_snaps[-1]]
    assert memdiag("diff", "--exit-code", *quiet)[0] == 0      # 4245 grew nothing
    code, out, err = memdiag("diff", *worker_snaps, "--html", tmp_path / "r.html")
    assert code == 2 and "one report per pid" in err, err
    assert not (tmp_path / "r.html").exists()


def test_one_snapshot_each_of_two_processes_is_compared_as_before(worker_snaps):
    """No process has a series: type totals only, today's single-diff keys."""
    code, out, err = memdiag("diff", "--json", worker_snaps[0], worker_snaps[2])
    assert code == 0, err
    d = json.loads(out)
    assert d["matched"] is False and "workers" not in d and d["types"]


# --------------------------------------------- --children, --all and ps

def start_prefork(start, tmp_path, workers=3, env=None):
    """prefork_parent.py under memdiag run: (program, {ready fields})."""
    d = str(tmp_path / "snaps")
    p = start(argv=[*RUN, "--dir", d, "--", sys.executable,
                    os.path.join(PROGRAMS, "prefork_parent.py"), "--workers", str(workers),
                    "--max-seconds", "300"], env=env)
    ready = p.ready(timeout=60)
    worker_pids = [int(w) for w in ready["workers"].split(",")]
    start.pids.extend(worker_pids + [int(ready["other"])])
    assert int(ready["parent"]) == p.pid
    return p, worker_pids, int(ready["other"]), d


def test_snapshot_children_takes_every_hooked_worker_and_notes_the_rest(start, tmp_path):
    p, workers, other, d = start_prefork(start, tmp_path)
    code, out, err = memdiag("snapshot", "--children", p.pid, "--timeout", 60)
    assert code == 0, (out, err)
    paths = out.split()
    assert sorted(protocol.parse_snapshot_name(os.path.basename(x))[0] for x in paths) == workers
    assert all(os.path.dirname(x) == d and os.path.isfile(x) for x in paths)
    # the `sleep` child is noted, once, on stderr; the parent (it took SIGUSR2) is
    # not a descendant of itself and was never signaled: it is alive
    assert err.splitlines() == [f"memdiag: pid {other} (sleep) has no memdiag hook; skipped"]
    assert p.alive()
    for pid in workers:
        os.kill(pid, signal.SIGUSR1)           # each worker adds 100 items
    listed = json.loads(memdiag("snapshot", p.pid, "--children", "--json")[1])
    assert sorted(x["pid"] for x in listed) == workers
    assert all(x["path"].endswith("-2.snap") and x["bytes"] > 0 for x in listed)
    code, out, err = memdiag("diff", "--json", *paths, *(x["path"] for x in listed))
    assert code == 0, err
    top = json.loads(out)["summary"][0]
    assert top["path"] == "__main__.WORKER_ITEMS" and top["workers"] == 3
    # every worker got its USR1 before its second snapshot (signals to one
    # process arrive in order), so each grew by exactly 100
    assert [g["growth"] for g in top["growth_per_worker"]] == [100, 100, 100]


def test_ps_lists_hooked_workers_with_the_heap_of_their_last_snapshot(start, tmp_path):
    p, workers, other, d = start_prefork(start, tmp_path, workers=2)
    before = {x["pid"]: x for x in json.loads(memdiag("ps", "--json")[1])}
    assert set(workers) <= set(before) and p.pid not in before and other not in before
    for pid in workers:
        row = before[pid]
        assert row["ppid"] == p.pid and row["dir"] == d and row["snapshots"] == 0
        assert row["python_heap"] is None and row["rss"] > 1 << 20
        assert row["command"].startswith("prefork_parent.py --workers 2")
        assert row["signal"] == "SIGUSR2"
    path = json.loads(memdiag("snapshot", workers[0], "--json")[1])["path"]
    after = {x["pid"]: x for x in json.loads(memdiag("ps", "--json")[1])}
    row = after[workers[0]]
    assert row["snapshots"] == 1 and row["last_snapshot"] == path
    from memdiag.model import Snapshot
    assert row["python_heap"] == Snapshot.load(path).python_heap > 0
    assert after[workers[1]]["snapshots"] == 0
    code, out, err = memdiag("ps")
    assert code == 0 and "Processes with the memdiag hook" in out
    line = next(x for x in out.splitlines() if x.lstrip().startswith(str(workers[0])))
    assert str(p.pid) in line and d in line


def test_ps_leaves_out_an_earlier_process_files_under_the_same_pid(start, tmp_path):
    """A file memdiag-<pid>-N.snap older than the process is another process's."""
    p, workers, other, d = start_prefork(start, tmp_path, workers=1)
    stale = os.path.join(d, f"memdiag-{workers[0]}-7.snap")
    leak_heap(5, 1, 1).write(stale, pid=workers[0], time=1.0, seq=7)
    os.utime(stale, (1e9, 1e9))               # 2001: before any process now running
    row = {x["pid"]: x for x in json.loads(memdiag("ps", "--json")[1])}[workers[0]]
    assert row["snapshots"] == 0 and row["last_snapshot"] is None


def test_snapshot_all_takes_every_hooked_process_of_this_user(start, tmp_path):
    p, workers, other, d = start_prefork(start, tmp_path, workers=2)
    hooked = [x.pid for x in processes.hooked_processes()]
    assert set(workers) <= set(hooked)
    code, out, err = memdiag("snapshot", "--all", "--json")
    assert code == 0, err
    taken = {x["pid"]: x["path"] for x in json.loads(out)}
    assert set(workers) <= set(taken)
    assert all(os.path.isfile(x) for x in taken.values())


def test_children_and_all_refusals(start, tmp_path):
    code, out, err = memdiag("snapshot", "--all", "4242")
    assert code == 2 and "--all takes no pid" in err
    code, out, err = memdiag("snapshot", "--children")
    assert code == 2 and "--children needs the parent's pid" in err
    code, out, err = memdiag("snapshot")
    assert code == 2 and "snapshot needs a pid" in err
    # a parent whose children have no hook: nothing is signaled (SIGUSR2 would kill them)
    plain = start(argv=[sys.executable, os.path.join(PROGRAMS, "prefork_parent.py"),
                        "--workers", "2", "--max-seconds", "300"])
    ready = plain.ready(timeout=60)
    kids = [int(w) for w in ready["workers"].split(",")]
    start.pids.extend(kids + [int(ready["other"])])
    code, out, err = memdiag("snapshot", "--children", plain.pid)
    assert code == 4 and "has no descendant with the memdiag hook" in err, err
    assert out == "" and all(protocol.pid_alive(k) for k in kids)
    code, out, err = memdiag("snapshot", "--children", 999999999)
    assert code == 4 and "no process with pid" in err


def test_descendants_follow_the_whole_tree():
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 30: 99}
    assert processes.descendants(10, parents) == [11, 12, 13]
    assert processes.descendants(1, parents) == [10, 11, 12, 13, 20]
    assert processes.descendants(30, parents) == []


def open_gate_on_second_scan(monkeypatch, gate):
    """Scans of /proc (processes.parent_map, the real one) are counted, and
    the FIFO gate (if any) is opened on the second: the first has seen the
    child held. Returns the list the scans are counted in."""
    scans = []
    real_parent_map = processes.parent_map

    def counted_parent_map():
        scans.append(len(scans))
        if gate and len(scans) == 2:
            fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)   # ENXIO: child not held
            os.write(fd, b"x")
            os.close(fd)
        return real_parent_map()

    monkeypatch.setattr(processes, "parent_map", counted_parent_map)
    return scans


def test_children_counts_a_worker_still_registering_as_hooked(start, tmp_path, monkeypatch):
    """A worker forked a moment ago has no registry entry until the hook's
    at-fork handler registers it: --children waits for it rather than call
    it unhooked (with no other worker, that was `has no descendant with the
    memdiag hook`, exit 4, seen with gunicorn's max_requests). Here the
    program's own at-fork handler, which runs before the hook's, holds the
    child on a FIFO until the test has seen a scan miss it."""
    gate = str(tmp_path / "gate")
    os.mkfifo(gate)
    p = start(code=f"""
        import os, time
        def held():                    # runs in the child before the hook's handler
            with open({gate!r}) as f:
                f.read(1)
        os.register_at_fork(after_in_child=held)
        import memdiag
        memdiag.install(dir={str(tmp_path)!r})
        pid = os.fork()
        if pid == 0:
            time.sleep(300)
            os._exit(0)
        print(f"READY child={{pid}}", flush=True)
        time.sleep(300)
    """)
    child = int(p.ready(timeout=60)["child"])
    start.pids.append(child)
    scans = open_gate_on_second_scan(monkeypatch, gate)
    hooked, unhooked = processes.split_descendants(p.pid, settle=120)
    assert (hooked, unhooked) == ([child], []) and len(scans) >= 2


def arbiter_program(gate, renamed=False, install_dir=None):
    """A program in the shape of gunicorn's arbiter: it takes SIGUSR2, forks
    one worker, and prints READY child=<pid>; the worker waits on the FIFO
    gate, then resets SIGUSR2 as gunicorn's workers do. install_dir: the
    program calls memdiag.install() itself (else run it with `memdiag run`).
    renamed: the worker first writes a title over its argv strings, as
    setproctitle does on Linux (for gunicorn's workers, when installed), and
    prints RENAMED."""
    install = (f"import memdiag\nmemdiag.install(dir={install_dir!r})\n"
               if install_dir else "")
    return f"""
import os, signal, time
{install}signal.signal(signal.SIGUSR2, lambda *a: None)     # the arbiter's re-exec signal
pid = os.fork()
if pid == 0:
    if {renamed!r}:        # setproctitle's way on Linux, without the package
        import ctypes
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])       # arg_start, arg_end
        ctypes.memset(start, 0, end - start)
        ctypes.memmove(start, b"arbiter: worker [app]", 21)
        print("RENAMED", flush=True)
    with open({gate!r}) as f:
        f.read(1)
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    time.sleep(300)
    os._exit(0)
print(f"READY child={{pid}}", flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("renamed", [False, True])
def test_children_waits_for_the_worker_of_an_arbiter_that_took_the_signal(start, tmp_path,
                                                                          monkeypatch, renamed):
    """gunicorn's arbiter takes SIGUSR2 for itself, so its hook steps aside;
    each worker registers when it resets that signal, a moment after the
    fork. The arbiter was started with `memdiag run`: --children waits for
    its forks (here the worker waits on a FIFO before its reset, until the
    test has seen a scan miss it). renamed: the worker's command line is no
    longer its parent's (setproctitle); it is still a fork."""
    gate = str(tmp_path / "gate")
    os.mkfifo(gate)
    script = tmp_path / "arbiter.py"
    script.write_text(arbiter_program(gate, renamed=renamed))
    p = start(argv=[*RUN, "--dir", str(tmp_path), "--", sys.executable, str(script)])
    child = int(p.ready(timeout=60)["child"])
    start.pids.append(child)
    assert processes.hook_entry(p.pid) is None          # the arbiter gave up its hook
    assert protocol.stepped_aside(p.pid, os.getuid())   # and the registry says why
    if renamed:
        p.wait_line("RENAMED", 60)
        assert protocol.proc_cmdline(child) == ["arbiter: worker [app]"]
    scans = open_gate_on_second_scan(monkeypatch, gate)
    hooked, unhooked = processes.split_descendants(p.pid, settle=120)
    assert (hooked, unhooked) == ([child], []) and len(scans) >= 2


def test_children_waits_for_the_worker_of_an_arbiter_that_installed_the_hook_itself(
        start, tmp_path, monkeypatch):
    """The same arbiter with memdiag.install() in its code, not `memdiag run`:
    nothing in its environment says memdiag (setproctitle also wipes what
    /proc shows of an environment). Its hook stepped aside when it took the
    signal, and the registry's <pid>.aside says so: its forks are waited
    for. `memdiag snapshot ARBITER` says why it will not signal it."""
    gate = str(tmp_path / "gate")
    os.mkfifo(gate)
    p = start(code=arbiter_program(gate, install_dir=str(tmp_path)))
    child = int(p.ready(timeout=60)["child"])
    start.pids.append(child)
    assert not processes.started_with_memdiag(p.pid)
    assert processes.hook_entry(p.pid) is None and protocol.stepped_aside(p.pid, os.getuid())
    code, out, err = memdiag("snapshot", p.pid, "--timeout", 5)
    assert code == 4 and err.startswith(f"memdiag: error: pid {p.pid} (") and (
        "took its memdiag hook's signal for itself" in err and f"--children {p.pid}" in err), err
    scans = open_gate_on_second_scan(monkeypatch, gate)
    hooked, unhooked = processes.split_descendants(p.pid, settle=120)
    assert (hooked, unhooked) == ([child], []) and len(scans) >= 2


def test_children_lists_a_worker_that_took_the_signal_and_its_fork(start, tmp_path):
    """A worker (registered at its fork) that takes SIGUSR2 for itself, as
    billiard's pool processes do, is unhooked at once, not waited for as a
    fork still registering; a helper it forks, which never resets the
    signal, is unhooked once the wait for it is over (settle: 1 s here), not
    taken for a snapshot writer: a hook that stepped aside writes none."""
    script = tmp_path / "service.py"
    script.write_text("""
import os, signal, time
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGUSR2, lambda *a: None)   # the worker takes it: the hook steps aside
    helper = os.fork()
    if helper == 0:
        time.sleep(300)
        os._exit(0)
    print(f"READY worker={os.getpid()} helper={helper}", flush=True)
    time.sleep(300)
    os._exit(0)
time.sleep(300)
""")
    p = start(argv=[*RUN, "--dir", str(tmp_path), "--", sys.executable, str(script)])
    ready = p.ready(timeout=60)
    worker, helper = int(ready["worker"]), int(ready["helper"])
    start.pids.extend([worker, helper])
    assert processes.hook_entry(p.pid) is not None and protocol.stepped_aside(worker, os.getuid())
    hooked, unhooked = processes.split_descendants(p.pid, settle=1.0)
    assert hooked == [] and sorted(pid for pid, _ in unhooked) == sorted([worker, helper])


@pytest.mark.parametrize("then", ["exec", "uninstall"])
def test_stepped_aside_ends_with_an_exec_or_uninstall(start, tmp_path, then):
    """<pid>.aside (the program took the hook's signal) stops counting when
    the process execs another program (same pid and start time, but its
    handlers are reset) or calls memdiag.uninstall(): `memdiag snapshot`
    then says plainly that it has no hook."""
    gate = str(tmp_path / "gate")
    os.mkfifo(gate)
    after = ("os.execv(sys.executable, [sys.executable, '-c', "
             "'import time; print(\\'DONE\\', flush=True); time.sleep(300)'])"
             if then == "exec" else "memdiag.uninstall(); print('DONE', flush=True); "
             "time.sleep(300)")
    p = start(code=f"""
        import os, signal, sys, time
        import memdiag
        memdiag.install(dir={str(tmp_path)!r})
        signal.signal(signal.SIGUSR2, lambda *a: None)     # the program takes it
        print("READY", flush=True)
        with open({gate!r}) as f:
            f.read(1)
        {after}
    """)
    p.ready(timeout=60)
    uid = os.getuid()
    assert protocol.stepped_aside(p.pid, uid)
    with open(gate, "w") as f:
        f.write("x")
    p.wait_line("DONE", 60)
    assert not protocol.stepped_aside(p.pid, uid)
    assert os.path.exists(protocol.aside_path(p.pid, uid)) == (then == "exec")
    code, out, err = memdiag("snapshot", p.pid, "--timeout", 5)
    assert code == 4 and "has no memdiag hook" in err, err


def test_children_does_not_wait_for_a_child_that_re_executed_the_program(start, tmp_path,
                                                                        monkeypatch):
    """gunicorn's master re-execs itself on SIGUSR2: its child runs the same
    executable with the same command line, but it is a new program, not a
    fork that is still registering. --children lists it as unhooked after
    one scan of /proc, instead of waiting SETTLE_SECONDS for it."""
    if processes.randomization_off(os.getpid()):
        pytest.skip("exec places memory at fixed addresses here (kernel.randomize_va_space=0 "
                    "or setarch -R), so /proc cannot tell an exec from a fork")
    script = tmp_path / "arbiter.py"
    script.write_text("""
import os, signal, sys, time
signal.signal(signal.SIGUSR2, lambda *a: None)     # the arbiter's re-exec signal
if os.environ.get("REEXECUTED"):
    print(f"READY child={os.getpid()}", flush=True)
    time.sleep(300)
    os._exit(0)
pid = os.fork()
if pid == 0:
    os.environ["REEXECUTED"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])
time.sleep(300)
""")
    p = start(argv=[*RUN, "--dir", str(tmp_path), "--", sys.executable, str(script)])
    child = int(p.ready(timeout=60)["child"])
    start.pids.append(child)
    assert protocol.proc_cmdline(child) == protocol.proc_cmdline(p.pid)
    assert processes.hook_entry(child) is None and processes.hook_entry(p.pid) is None
    scans = open_gate_on_second_scan(monkeypatch, None)
    hooked, unhooked = processes.split_descendants(p.pid, settle=120)
    assert hooked == [] and [pid for pid, _ in unhooked] == [child]
    assert len(scans) == 1


def test_snapshot_children_does_not_wait_for_each_timeout_in_turn(start, tmp_path):
    """Concurrent: three workers whose main threads are each blocked for a while
    are snapshotted in about one wait, not three in a row. The workers block
    in time.sleep (interrupted by the signal: PEP 475 runs the handler), so
    instead they are stopped (SIGSTOP) and continued after a readiness
    check: all three signals must be out before any file can come."""
    p, workers, other, d = start_prefork(start, tmp_path)
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    import subprocess
    e = dict(os.environ, MEMDIAG_PLAIN="1")
    proc = subprocess.Popen([sys.executable, "-m", "memdiag.cli.main", "snapshot", "--children",
                             str(p.pid), "--json", "--timeout", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                            cwd=ROOT)
    try:
        # Readiness: every stopped worker has its signal pending (SigPnd/ShdPnd).
        import time
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pending = [_pending(pid, signal.SIGUSR2) for pid in workers]
            if all(pending):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        assert all(_pending(pid, signal.SIGUSR2) for pid in workers)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert sorted(x["pid"] for x in json.loads(out)) == workers


def _pending(pid, signum):
    status = protocol.proc_status(pid)
    mask = int(status.get("ShdPnd", "0"), 16) | int(status.get("SigPnd", "0"), 16)
    return bool(mask >> (signum - 1) & 1)
