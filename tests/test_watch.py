"""memdiag watch: JSON lines when stdout is not a terminal, and the live view
in a real terminal (tmux: start it, send keys, read the pane).

The targets are real programs run with the hook (tests/programs/limit_grower.py
grows when told to); every wait is for something to appear, bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, kill_pid, memdiag
from hookutil import PROGRAMS, start  # noqa: F401
from needs import tool_missing
from test_limits import MIB, grow, run_grower, snapshots, wait_for

from memdiag import protocol

WATCH = [sys.executable, "-m", "memdiag.cli.main", "watch"]


class Lines:
    """`memdiag watch ... --json` as a subprocess whose lines are read one by one."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([*WATCH, *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.seen = []

    def next(self):
        line = self.proc.stdout.readline()
        assert line, (self.proc.wait(timeout=30), self.proc.stderr.read())
        self.seen.append(json.loads(line))
        return self.seen[-1]

    def close(self):
        kill_pid(self.proc.pid)
        self.proc.stdout.close()
        self.proc.stderr.close()


def row(line, pid):
    [r] = [r for r in line["processes"] if r["pid"] == pid]
    return r


def test_json_lines_show_rss_growth_heap_counters_and_snapshots(start, tmp_path):
    p = run_grower(start, tmp_path, "--watchable")
    w = Lines(p.pid, "--interval", "0.2", "--count", 200)
    try:
        first = row(w.next(), p.pid)
        assert first["hooked"] and first["watchable"] and first["rss"] > 0
        assert first["command"].endswith("limit_grower.py")
        assert first["memory_limit"]["source"] in ("cgroup v2", "cgroup v1", "physical memory")
        grow(p, 40)
        # Bounded by --count: a line with the growth, once the watcher saw it.
        while True:
            r = row(w.next(), p.pid)
            if r["rss"] >= first["rss"] + 40 * MIB and r["rss_per_min"]:
                break
        assert r["rss_per_min"] > 0
        assert isinstance(r["pymalloc_blocks"], int) and r["pymalloc_blocks"] > 10_000
        code, out, err = memdiag("snapshot", p.pid, "--timeout", 60)
        assert code == 0, err
        while not row(w.next(), p.pid)["snapshots"]:
            pass
        assert row(w.seen[-1], p.pid)["snapshots"] == [out.strip()]
    finally:
        w.close()


def test_json_count_ends_it_and_an_unhooked_process_shows_rss_only(start, tmp_path):
    plain = start(code="""
        import time
        print("READY", flush=True)
        time.sleep(300)
        """)
    plain.ready()
    hooked = run_grower(start, tmp_path)           # the hook, but no thread: no counters
    out = subprocess.run([*WATCH, str(plain.pid), str(hooked.pid), "--interval", "0.1",
                          "--count", "3"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 3
    a, b = row(lines[-1], plain.pid), row(lines[-1], hooked.pid)
    assert not a["hooked"] and a["rss"] > 0 and a["pymalloc_blocks"] is None
    assert b["hooked"] and not b["watchable"] and b["pymalloc_blocks"] is None


def test_children_follows_the_tree_and_watch_ends_with_it(start, tmp_path):
    parent = start(argv=[sys.executable, "-m", "memdiag.cli.main", "run", "--watchable",
                         "--dir", str(tmp_path / "snaps"), "--", sys.executable, "-c", """
import subprocess, sys, time
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        for _ in range(2)]
print("READY " + " ".join(f"kid={k.pid}" for k in kids), flush=True)
sys.stdin.readline()
"""])
    kids = [int(v) for v in re.findall(r"kid=(\d+)", parent.wait_line("READY"))]
    start.pids.extend(kids)
    w = Lines("--children", parent.pid, "--interval", "0.2", "--count", 100)
    try:
        line = wait_for("every process of the tree with its counters", lambda: (
            lambda ln: ln if len(ln["processes"]) == 3 and all(
                r["pymalloc_blocks"] for r in ln["processes"]) else None)(w.next()))
        assert [r["pid"] for r in line["processes"]] == [parent.pid, *sorted(kids)]
        assert {r["ppid"] for r in line["processes"][1:]} == {parent.pid}
        kill_pid(kids[0])
        while [r["pid"] for r in w.next()["processes"]] != [parent.pid, kids[1]]:
            pass
        parent.send("")                            # the parent ends; the watch with it
        kill_pid(kids[1])
        assert w.proc.wait(timeout=60) == 0
        assert "exited; nothing left to watch" in w.proc.stderr.read()
    finally:
        w.close()


def test_nobody_watching_costs_the_hook_no_wakeups(start, tmp_path):
    """The thread of a watchable process sleeps on its FIFO: after a watcher
    leaves (closing its end) it does not spin."""
    p = run_grower(start, tmp_path, "--watchable")
    live = protocol.live_path(p.pid)

    def watch_once():
        out = subprocess.run([*WATCH, str(p.pid), "--interval", "0.1", "--count", "3"],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return protocol.read_status(live)["wakeups"]

    first = watch_once()
    # An observation window, not a wait for something: a thread that spins
    # on a FIFO nobody writes to wakes thousands of times in it.
    time.sleep(1.0)
    second = watch_once()
    # The first session's three intervals of grace (at 0.1 s) and the second's
    # few readings: a few tens of wakeups at most.
    assert second - first < 60, (first, second)


def test_watch_refuses_bad_targets():
    code, out, err = memdiag("watch", "999999999")
    assert code == 4 and "no process with pid 999999999" in err
    code, out, err = memdiag("watch", os.getpid(), "--children", os.getpid())
    assert code == 2 and "one or more PIDs, or --children PID" in err


# ------------------------------------------------------------------ tmux

class Tmux:
    """A tmux server of the test's own (its socket in tmp_path)."""

    def __init__(self, tmp_path):
        self.exe = shutil.which("tmux")
        if self.exe is None:
            tool_missing("tmux is not installed (apt-get install tmux): the live view's "
                         "terminal test needs it")
        self.sock = str(tmp_path / "tmux.sock")

    def __call__(self, *args):
        out = subprocess.run([self.exe, "-S", self.sock, "-f", "/dev/null", *args],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, (args, out.stderr)
        return out.stdout

    def pane(self):
        return self("capture-pane", "-p", "-J", "-S", "-500", "-t", "w")

    def wait_pane(self, what, pattern, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.pane(), re.M)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"the pane did not show {what} within {timeout}s:\n{self.pane()}")

    def where(self):
        """What the pane's processes are doing (each thread's state and kernel
        wait channel) and its terminal's mode: shown when watch does not exit."""
        pid, tty = self("list-panes", "-t", "w", "-F", "#{pane_pid} #{pane_tty}").split()
        out = [subprocess.run(["stty", "-a", "-F", tty], capture_output=True,
                              text=True).stdout]
        pids = [int(pid), *protocol.descendants(int(pid))]
        for p in pids:
            for task in sorted(os.listdir(f"/proc/{p}/task")):
                base = f"/proc/{p}/task/{task}"
                try:
                    with open(f"{base}/stat") as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                    with open(f"{base}/wchan") as f:
                        wchan = f.read()
                    with open(f"{base}/comm") as f:
                        comm = f.read().strip()
                except OSError:
                    continue
                out.append(f"pid {p} thread {task} {comm}: state {state}, wchan {wchan}")
        return "\n".join(out)

    def kill(self):
        subprocess.run([self.exe, "-S", self.sock, "kill-server"], capture_output=True,
                       timeout=30)


def test_watch_in_a_real_terminal_keys_s_d_q(start, tmp_path):
    tmux = Tmux(tmp_path)
    p = run_grower(start, tmp_path, "--watchable")
    command = " ".join([f"TMPDIR={os.environ.get('TMPDIR', '/tmp')}", *WATCH, str(p.pid),
                        "--interval", "0.3"])
    # watch's exit status, written by the pane's shell once watch exits: the
    # shell reaps it. tmux's own pane_dead_status is not reliable here: tmux
    # 3.3a sometimes closes the pane when the terminal closes but never reaps
    # the process (a zombie, pane_dead 1 with no status, for minutes).
    status = tmp_path / "watch-status"
    try:
        # COLUMNS and LINES, if the test runner has them, would override the pane's size.
        tmux("new-session", "-d", "-s", "w", "-x", "200", "-y", "50",
             f"env -u COLUMNS -u LINES {command}; echo $? > {status}",
             ";", "set-option", "-t", "w", "remain-on-exit", "on")
        # The row: pid, command, RSS, and the heap counters the hook's thread sent.
        tmux.wait_pane("the process's row",
                       rf"^\s*{p.pid} │ python limit_grower\.py\s*│.*MiB.*│\s+[\d.]+k\s")
        tmux("send-keys", "-t", "w", "s")
        first = wait_for("the first snapshot", lambda: snapshots(p))[0]
        tmux.wait_pane("its path", re.escape(os.path.join(p.dir, first)))
        grow(p, 20)
        tmux("send-keys", "-t", "w", "s")
        wait_for("the second snapshot", lambda: len(snapshots(p)) == 2)
        tmux.wait_pane("the snapshot count", rf"│ 2: memdiag-{p.pid}-2\.snap")
        tmux.wait_pane("the growth in the sparkline", rf"^\s*{p.pid} │.*│ ▁+[▂-█]*█+ │")
        tmux("send-keys", "-t", "w", "d")
        tmux.wait_pane("the diff", rf"memdiag diff \S*memdiag-{p.pid}-1\.snap\s+\S*memdiag-"
                                   rf"{p.pid}-2\.snap")
        tmux.wait_pane("the growing list as the suspect", r"__main__\.hoard .*list .*bytes")
        tmux("send-keys", "-t", "w", "q")
        try:
            wait_for("watch to exit", lambda: status.read_text().endswith("\n")
                     if status.exists() else False)
        except AssertionError as e:
            raise AssertionError(f"{e}; pane:\n{tmux.pane()}\n{tmux.where()}") from None
        assert status.read_text() == "0\n", tmux.pane()
        assert "Traceback" not in tmux.pane()
    finally:
        tmux.kill()
