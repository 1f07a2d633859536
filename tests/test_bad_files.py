"""Regression tests for damaged files the fuzzer (tests/test_fuzz.py) found
mishandled: each one a real snapshot, damaged one precise way, run through
the CLI's main() (in-process, time-bounded; a subprocess where the file could
block the process). Each must end in exit code 3 with one line on stderr,
without a traceback."""

import json
import os
import time
import zlib

import pytest

import snapcraft
from conftest import memdiag
from safety_helpers import one_line, real_seed, run_cli

from memdiag import snapfile as sf


@pytest.fixture(scope="module")
def real():
    """(a.snap, b.snap, parsed b) of a real, traced process, cut into chunks."""
    a, b = real_seed("traced")
    with open(b, "rb") as f:
        return a, b, snapcraft.parse(f.read())


def argvs(path, a, commands):
    table = {"top": ["top", path], "diff": ["diff", a, path],
             "retainers": ["retainers", path, "--since", a, "--type", "Session"]}
    return [table[c] for c in commands]


def rejected(path, a, commands=("top", "diff", "retainers")):
    """Every command refuses the file with exit code 3 and one line."""
    for argv in argvs(path, a, commands):
        code, err = run_cli(argv)
        assert code == 3, (argv, code, err)
        line = one_line(err)
        assert line.startswith("memdiag: error: ") and "internal error" not in line, line
    return line


def rejected_by_the_command(path, a, commands=("top", "diff", "retainers")):
    """The same through the real command in a subprocess (for files that could
    block the process that opens them)."""
    for argv in argvs(path, a, commands):
        t0 = time.monotonic()
        code, out, err = memdiag(*argv, timeout=60)
        assert code == 3, (argv, code, err)
        line = one_line(err)
        assert line.startswith("memdiag: error: ") and "internal error" not in line, line
        assert time.monotonic() - t0 < 30
    return line


def save(tmp_path, p, name="bad.snap"):
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(p.build() if hasattr(p, "build") else p)
    return path


def test_damaged_column_found_after_loading_is_exit_3(real, tmp_path):
    """Columns are decoded lazily, after Snapshot.load: a value found wrong then
    is still a bad file (exit 3), not an internal error (exit 70)."""
    a, b, parsed = real
    p = parsed.copy()
    blk = p.column_blocks(sf.COL_PARENT)[-1]
    vals = blk.values()
    vals[-1] = p.trailer["objects"] + 5
    blk.set_values(vals)
    # retainers of a common type reads every parent; top, diff and retainers
    # of a few objects read the parents along the paths they print, chunk by
    # chunk, and may never meet this one.
    code, err = run_cli(["retainers", save(tmp_path, p), "--type", "str"])
    assert code == 3, (code, err)
    assert "parent index out of order" in one_line(err), err
    for argv in argvs(save(tmp_path, p), a, ("top", "diff", "retainers")):
        code, err = run_cli(argv)
        assert code in (0, 3), (argv, code, err)
        if code == 3:
            assert "parent index out of order" in one_line(err)


def test_deeply_nested_trailer(real, tmp_path):
    """json.loads raises RecursionError, not ValueError, on deep nesting."""
    a, b, parsed = real
    p = parsed.copy()
    p.set_trailer_raw(b"[" * 100_000)
    assert "unreadable trailer" in rejected(save(tmp_path, p), a)


def test_a_fifo_is_refused_not_waited_on(real, tmp_path):
    """Opening a FIFO for reading blocks until a writer comes: never open one."""
    a, b, parsed = real
    path = str(tmp_path / "pipe.snap")
    os.mkfifo(path)
    line = rejected_by_the_command(path, a)
    assert "not a regular file" in line, line
    assert "not a regular file" in rejected_by_the_command("/dev/zero", a, commands=("top",))


BAD_META = [("python_heap", ""), ("python_heap", 1e309), ("python_heap", []),
            ("python_heap", 10 ** 400), ("rss", []), ("rss", "12"), ("time", "x"),
            ("time", 1e300), ("argv", [[1]]), ("argv", "app.py"), ("pid", {}),
            ("seq", [1]), ("python", 3.11)]


@pytest.mark.parametrize("key,value", BAD_META, ids=[f"{k}={v!r}"[:30] for k, v in BAD_META])
def test_metadata_of_the_wrong_type(real, tmp_path, key, value):
    """The analyses compute with these fields; a wrong type is a bad file."""
    a, b, parsed = real
    p = parsed.copy()
    t = p.trailer
    t["meta"][key] = value
    p.set_trailer_raw(json.dumps(t).replace("Infinity", "1e999").encode())
    line = rejected(save(tmp_path, p), a)
    assert f"'{key}'" in line, line


def test_sites_table_of_the_wrong_type(real, tmp_path):
    a, b, parsed = real
    p = parsed.copy()
    t = p.trailer
    assert t["sites"], "the real snapshot was traced"
    t["sites"] = {"1": "x"}
    p.set_trailer(t)
    assert "'sites'" in rejected(save(tmp_path, p), a)


def test_site_index_past_the_sites_table(real, tmp_path):
    """retainers counts sites with np.bincount, which allocates by the largest
    value: 2^32-1 would be a 32 GiB array. Site indexes are checked first."""
    a, b, parsed = real
    p = parsed.copy()
    for blk in p.column_blocks(sf.COL_SITE):
        blk.set_values([2 ** 32 - 1] * blk.count)
    line = rejected(save(tmp_path, p), a, commands=("retainers",))
    assert "site index out of range" in line, line


def test_chunk_claiming_more_than_it_stores(real, tmp_path):
    """zlib inflates at most 1032 bytes per stored byte: a chunk header claiming
    64 MiB from 11 bytes (counts in the trailer made to agree) is refused at
    load by every command, also by those that never decode that column."""
    a, b, parsed = real
    p = parsed.copy()
    t = p.trailer
    tiny = zlib.compress(b"\0" * 8)
    kept = [blk for blk in p.blocks if blk.column != sf.COL_ETARGET]
    per = sf.MAX_CHUNK_BYTES // 4
    for _ in range(4):
        blk = snapcraft.Block(sf.KIND_COLUMN, sf.COL_ETARGET, 4, sf.T_SHUFFLE, per, b"")
        blk.stored = tiny
        kept.append(blk)
    p.blocks = kept
    t["edges"] = 4 * per
    p.blocks = [blk for blk in p.blocks if blk.column != sf.COL_ELABEL]
    for _ in range(4):
        blk = snapcraft.Block(sf.KIND_COLUMN, sf.COL_ELABEL, 4, sf.T_SHUFFLE, per, b"")
        blk.stored = tiny
        p.blocks.append(blk)
    p.set_trailer(t)
    line = rejected(save(tmp_path, p), a)
    assert "more data than it stores" in line, line


def test_trailer_claiming_more_than_it_stores(real, tmp_path):
    a, b, parsed = real
    p = parsed.copy()
    p.trailer_block.count = sf.MAX_TRAILER_BYTES
    assert "more data than it stores" in rejected(save(tmp_path, p), a, commands=("top",))


def test_empty_argv_in_the_metadata(real, tmp_path):
    """An empty argv is well-typed (an embedded interpreter may have none):
    diff must compare it, not crash on it."""
    a, b, parsed = real
    p = parsed.copy()
    t = p.trailer
    t["meta"]["argv"] = []
    p.set_trailer(t)
    path = save(tmp_path, p)
    code, out, err = memdiag("diff", "--json", a, path)
    assert code == 0 and err == "", (code, err)
    result = json.loads(out)
    assert result["matched"] is False      # another argv: not matched as one process
    assert result["types"]
