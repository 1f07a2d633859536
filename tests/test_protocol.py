"""memdiag.protocol: what the hook and the CLI agree on (names, registry,
status, /proc), on real files and real processes."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from memdiag import protocol


def test_snapshot_and_temp_names_round_trip_and_foreign_names_do_not_parse():
    assert protocol.parse_snapshot_name(protocol.snapshot_name(17, 230)) == (17, 230)
    assert protocol.parse_temp_name(protocol.temp_name(17, 230, 99)) == (17, 230, 99)
    for name in ("memdiag-17-x.snap", "memdiag-17.snap", "memdiag-17-2.snap.probe.json",
                 "other-17-2.snap", ".memdiag-17-2.snap"):
        assert protocol.parse_snapshot_name(name) is None, name
    for name in (".memdiag-17-2.tmp", ".memdiag-17-2.x.tmp", "memdiag-17-2.5.tmp"):
        assert protocol.parse_temp_name(name) is None, name


def test_snapshot_files_are_one_pids_in_sequence_order(tmp_path):
    for name in ("memdiag-5-10.snap", "memdiag-5-9.snap", "memdiag-55-1.snap",
                 ".memdiag-5-11.77.tmp", "memdiag-5-2.snap.probe.json"):
        (tmp_path / name).write_bytes(b"")
    assert protocol.snapshot_files(tmp_path, 5) == ["memdiag-5-9.snap", "memdiag-5-10.snap"]
    assert protocol.snapshot_files(tmp_path / "missing", 5) == []


def test_signal_and_size_parsing_refuse_with_one_line():
    assert protocol.parse_signal("usr1") == protocol.parse_signal(int(signal.SIGUSR1))
    with pytest.raises(ValueError, match="unknown signal 'USR9'"):
        protocol.parse_signal("USR9")
    with pytest.raises(ValueError, match="unknown signal 99"):
        protocol.parse_signal(99)
    assert protocol.parse_size("800k") == 800 << 10
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(ValueError, match="not a size"):
            protocol.parse_size(bad)


def test_proc_stat_of_a_zombie_has_its_wait_status():
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    try:
        deadline = time.monotonic() + 30
        st = protocol.proc_stat(pid)
        while st.state != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
            st = protocol.proc_stat(pid)
        assert st.state == "Z" and st.ppid == os.getpid()
        assert os.WIFEXITED(st.exit_code) and os.WEXITSTATUS(st.exit_code) == 3
        assert st.start_time == protocol.proc_start_time(pid) > 0
    finally:
        os.waitpid(pid, 0)
    with pytest.raises(FileNotFoundError):
        protocol.proc_stat(pid)
    assert protocol.proc_start_time(pid) is None


def test_proc_readers_on_this_process():
    me = os.getpid()
    status = protocol.proc_status(me)
    assert protocol.status_uid(status) == os.getuid()
    assert protocol.proc_is_python(me, status)
    assert protocol.proc_cmdline(me)[0]
    assert protocol.rss_bytes() > 1 << 20
    old = signal.signal(signal.SIGUSR1, lambda *a: None)
    try:
        assert protocol.catches_signal(protocol.proc_status(me), signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert not protocol.catches_signal(protocol.proc_status(me), signal.SIGUSR1)


@pytest.fixture
def own_entry():
    """A registry entry for this test process, removed afterwards."""
    me = os.getpid()
    entry = {"pid": me, "start_time": protocol.proc_start_time(me), "signal": 12,
             "dir": "/nowhere"}
    path = protocol.write_entry(entry)
    yield me, entry, path
    protocol.remove_entry(path)


def rewrite(path, **changes):
    with open(path) as f:
        entry = json.load(f)
    entry.update(changes)
    protocol.write_small(path, json.dumps(entry).encode())


def test_read_entry_returns_a_checked_entry(own_entry):
    me, entry, path = own_entry
    assert path == protocol.entry_path(me)
    assert protocol.read_entry(me, os.getuid()) == {**entry, "registry": path}
    assert os.stat(path).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("change", [{"pid": 1}, {"start_time": 1}])
def test_entry_of_another_or_an_earlier_process_is_none(own_entry, change):
    me, _, path = own_entry
    rewrite(path, **change)
    assert protocol.read_entry(me, os.getuid()) is None


@pytest.mark.parametrize("change", [{"signal": 0}, {"signal": "12"}, {"signal": True},
                                    {"dir": 7}])
def test_entry_without_a_usable_signal_or_dir_is_bad(own_entry, change):
    me, _, path = own_entry
    rewrite(path, **change)
    with pytest.raises(protocol.BadEntry, match="unreadable hook registry entry"):
        protocol.read_entry(me, os.getuid())


def test_entry_others_may_write_is_untrusted(own_entry):
    me, _, path = own_entry
    os.chmod(path, 0o622)
    with pytest.raises(protocol.UntrustedEntry):
        protocol.read_entry(me, os.getuid())


def test_garbage_entry_and_status_read_as_none(own_entry):
    me, _, path = own_entry
    protocol.write_small(path, b"[1, 2")
    assert protocol.read_entry(me, os.getuid()) is None
    status = protocol.status_path(me)
    try:
        protocol.write_small(status, b"[]")
        assert protocol.read_status(status) is None
        protocol.write_status(me, 4, protocol.COALESCED)
        st = protocol.read_status(status)
        assert (st["seq"], st["state"]) == (4, "coalesced") and st["time"] <= time.time()
    finally:
        protocol.remove_entry(status)


def test_make_private_dir_creates_every_level_0700_and_refuses_a_symlink(tmp_path):
    old = os.umask(0)
    try:
        protocol.make_private_dir(str(tmp_path / "a" / "b"))
    finally:
        os.umask(old)
    for p in (tmp_path / "a", tmp_path / "a" / "b"):
        assert os.stat(p).st_mode & 0o777 == 0o700
    os.symlink(tmp_path / "a", tmp_path / "link")
    with pytest.raises(protocol.HookError, match="not a plain directory"):
        protocol.make_private_dir(str(tmp_path / "link"))
