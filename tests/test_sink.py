"""The compiled walker's sink (memdiag/_native/sink.c) on its own: columns in,
chunks out through the compression pool, to a real snapfile.Writer and back
through snapfile.Reader.

The sink is driven by the test-only module _walkertest (tests/native/,
built on first use; memdiag does not ship it). tests/native/sinkcheck.py
writes the same columns with 0, 1 and 4 worker threads, streaming and kept
in memory, in a process of its own per compressor (libdeflate, zlib).
"""

from __future__ import annotations

import ctypes.util
import io
import json
import os
import pickle
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE_TESTS = os.path.join(ROOT, "tests", "native")
sys.path.insert(0, ROOT)
sys.path.insert(0, NATIVE_TESTS)

import sinkcheck  # noqa: E402
import walkertest  # noqa: E402
from memdiag import snapfile as sf  # noqa: E402

try:
    from memdiag import _walker  # noqa: F401
except ImportError:
    _walker = None

pytestmark = pytest.mark.skipif(
    _walker is None, reason="memdiag._walker is not built for this Python "
    "(python setup.py build_ext --inplace): no compiler for the sink's tests either")


@pytest.fixture(scope="module")
def walkertest_module():
    return walkertest.load()


def chunk_table(path):
    r = sf.Reader.open(path)
    try:
        return {c: [(k.width, k.count) for k in chunks] for c, chunks in r.chunks.items()}
    finally:
        r.close()


@pytest.mark.parametrize("no_libdeflate", ["", "1"])
def test_every_column_comes_back(tmp_path, no_libdeflate):
    """Whatever the compressor, the number of workers (0: the walk deflates
    each chunk itself) and the mode, the file holds the values pushed, in
    order, and the very same bytes: chunks reach the writer in the order they
    were submitted, and deflate is deterministic."""
    env = dict(os.environ, MEMDIAG_NO_LIBDEFLATE=no_libdeflate, PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, os.path.join(NATIVE_TESTS, "sinkcheck.py"),
                        str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.splitlines()[-1])
    if no_libdeflate or ctypes.util.find_library("deflate") is None:
        assert out["compressor"] == "zlib"
    else:
        assert out["compressor"] == "libdeflate"
    cols = sinkcheck.columns()
    files = set()
    for run in out["runs"]:
        assert run["stats"]["compress_threads"] == run["threads"], run
        if run["stream"]:
            assert run["stats"]["pending_peak"] == 0, run
        else:
            assert run["stats"]["pending_peak"] > 0, run
        rd = sf.Reader.open(run["file"])
        try:
            for column, values in cols.items():
                got = rd.column_values(column)
                assert got == list(values), (run, sf.COLUMN_NAMES[column])
        finally:
            rd.close()
        with open(run["file"], "rb") as f:
            files.add(f.read())
    assert len(files) == 1, "the runs wrote different files"

    table = chunk_table(out["runs"][0]["file"])
    for column, chunks in table.items():
        counts = [n for _, n in chunks]
        # full chunks but the first (cut short to stagger the columns) and the last
        assert all(n == sf.CHUNK for n in counts[1:-1]), (column, counts)
        assert counts[0] <= sf.CHUNK and sum(counts) == len(cols[column])
    # A shuffled column without delta coding is narrowed to its values' bytes.
    assert {w for w, _ in table[sf.COL_LENGTH]} == {1}
    assert {w for w, _ in table[sf.COL_TYPE]} == {2}
    assert {w for w, _ in table[sf.COL_SIZE]} == {8, 1}
    assert {w for w, _ in table[sf.COL_ADDR]} == {8}     # delta-coded: full width


class FailingWriter(sf.Writer):
    """A writer whose third chunk write fails (a full disk, say)."""

    def __init__(self, f):
        super().__init__(f)
        self.calls = 0

    def write_compressed(self, *args):
        self.calls += 1
        if self.calls == 3:
            raise OSError(28, "No space left on device")
        return super().write_compressed(*args)


@pytest.mark.parametrize("stream", [True, False])
def test_a_failed_write_stops_the_sink(walkertest_module, stream):
    """The writer's exception comes out, and nothing more is written after
    it (a walk that failed writes no further chunk)."""
    cols = sinkcheck.columns()
    writer = FailingWriter(io.BytesIO())
    with pytest.raises(OSError, match="No space left"):
        walkertest_module.sink_write(writer, cols, stream)
    assert writer.calls == 3


class KeepingWriter(sf.Writer):
    """A writer that keeps a buffer export of every chunk it is given (a
    PickleBuffer over the memoryview), as a writer that queued the chunks for
    later could."""

    def __init__(self, f):
        super().__init__(f)
        self.kept = []

    def write_compressed(self, column, width, transform, count, stored, crc=None):
        self.kept.append((pickle.PickleBuffer(stored), bytes(stored)))
        return super().write_compressed(column, width, transform, count, stored, crc)


@pytest.mark.parametrize("threads", ["0", "2"])
def test_a_buffer_still_in_use_is_never_written_again(walkertest_module, monkeypatch,
                                                      threads):
    """A chunk buffer the writer still exports when its call returns is not
    reused: every export still holds the bytes it was given. (Only an export
    of the memoryview itself is seen: memoryview(stored), a slice of it, or
    numpy.frombuffer(stored) keep the memory without one, and would see it
    reused. snapfile.Writer keeps nothing.)"""
    monkeypatch.setenv("MEMDIAG_COMPRESS_THREADS", threads)
    cols = sinkcheck.columns()
    writer = KeepingWriter(io.BytesIO())
    walkertest_module.sink_write(writer, cols, True)
    assert len(writer.kept) > 10
    for buf, copy in writer.kept:
        assert bytes(buf.raw()) == copy
