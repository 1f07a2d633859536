"""Never trust the file: damaged and hostile snapshot files through the whole
pipeline the CLI uses (Snapshot.load, then top / diff / retainers / report
and their rendering), starting from REAL snapshots written once per test session by a
real dump in a subprocess (safety_helpers.real_seed).

Every case must end with exit code 0 (the damage was inert) or 3 (one line:
"memdiag: error: ..."), never a traceback, never an internal error, within a
time bound, and under an address-space cap, so nothing may allocate by a
header the file cannot back.

Case counts: MEMDIAG_FUZZ_EXAMPLES (default 300) hypothesis cases in total,
split evenly over the hypothesis tests below; `make fuzz` runs 10000+.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import gzip
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import note as _hnote
from hypothesis.errors import InvalidArgument
from hypothesis import strategies as st

import snapcraft
from conftest import ROOT, memdiag
from safety_helpers import SEEDS, one_line, real_seed, run_cli

from memdiag import snapfile as sf

PROGRAMS = os.path.join(ROOT, "tests", "programs")
HYPOTHESIS_TESTS = 6
TOTAL = int(os.environ.get("MEMDIAG_FUZZ_EXAMPLES", "300"))
PER_TEST = max(10, -(-TOTAL // HYPOTHESIS_TESTS))
CASE_SECONDS = 20.0          # per CLI command; a normal one takes ~20 ms here (run_cli's)
HEADROOM = 1536 << 20        # address space a case may add to the test process
CASES = collections.Counter()

FUZZ = settings(max_examples=PER_TEST, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture,
                                       HealthCheck.filter_too_much])


# ------------------------------------------------------------------ seeds

class Seed:
    def __init__(self, name, a, b):
        self.name = name
        self.a = a
        self.b = b
        with open(b, "rb") as f:
            self.data = f.read()
        self.parsed = snapcraft.parse(self.data)


@pytest.fixture(scope="module")
def seeds():
    """Real snapshots: plain, cut into many small chunks, with strings, traced."""
    out = {name: Seed(name, *real_seed(name)) for name in SEEDS}
    for seed in out.values():
        assert len(seed.parsed.blocks) >= 13
    assert len(out["chunked"].parsed.blocks) > 3 * len(out["plain"].parsed.blocks)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module", autouse=True)
def address_space_cap(request):
    """Cap this process's address space while the cases run, so an allocation
    sized by a lying header fails here instead of passing unnoticed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        if CASES:
            summary = ", ".join(f"{k}: {v}" for k, v in sorted(CASES.items()))
            total = sum(CASES.values())
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            capman = request.config.pluginmanager.get_plugin("capturemanager")
            if reporter is not None and capman is not None:
                with capman.global_and_fixture_disabled():
                    reporter.write_line(f"\nfuzz cases run: {total} ({summary})")
            out = os.environ.get("MEMDIAG_RESULTS")
            if out:
                with open(out, "a") as f:
                    f.write(json.dumps({"fuzz_cases": dict(CASES), "total": total}) + "\n")


def _vm_size():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


# --------------------------------------------------------------- the pipeline

@pytest.fixture(scope="module", autouse=True)
def debug_env():
    saved = {k: os.environ.get(k) for k in ("MEMDIAG_DEBUG", "MEMDIAG_PLAIN")}
    os.environ["MEMDIAG_DEBUG"] = "1"
    os.environ["MEMDIAG_PLAIN"] = "1"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def check(path, seed, kind, must_fail=False):
    """Run top (with retained sizes), diff, retainers and report (the HTML
    page) with the damaged file; every outcome is a clean success or one
    line with exit code 3."""
    CASES[kind] += 1
    codes = []
    html = os.path.join(os.path.dirname(path), "case.html")
    for argv in (["top", path, "--retained"],
                 ["diff", seed.a, path],
                 ["retainers", path, "--since", seed.a, "--type", "Session"],
                 ["report", seed.a, path, "-o", html, "--force"]):
        rc, err = run_cli(argv)
        note(f"{argv[0]} -> {rc}: {err.strip()}")
        if rc == 0:
            assert err == "", (argv, err)
        elif rc == 2 and argv[0] == "retainers":
            assert "no objects of type" in one_line(err), err   # the type table was hit
        else:
            assert rc == 3, (argv, rc, err)
            line = one_line(err)
            assert line.startswith("memdiag: error: "), line
            assert "internal error" not in line, line
        codes.append(rc)
    if must_fail:
        assert codes[0] == 3 and codes[1] == 3, codes
    return codes


def note(text):
    """hypothesis.note inside a hypothesis test, nothing elsewhere."""
    with contextlib.suppress(InvalidArgument):
        _hnote(text)


def write(work, data, name="case.snap"):
    path = os.path.join(str(work), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


seed_names = st.sampled_from(sorted(SEEDS))


# ------------------------------------------------------------ byte mutations

@FUZZ
@given(st.data())
def test_truncated_anywhere(seeds, work, data):
    seed = seeds[data.draw(seed_names)]
    cut = data.draw(st.integers(0, len(seed.data) - 1), label="cut")
    check(write(work, seed.data[:cut]), seed, "truncation", must_fail=True)


@FUZZ
@given(st.data())
def test_bytes_flipped_spliced(seeds, work, data):
    seed = seeds[data.draw(seed_names)]
    buf = bytearray(seed.data)
    for _ in range(data.draw(st.integers(1, 6), label="edits")):
        op = data.draw(st.sampled_from(["flip", "flip", "overwrite", "insert", "delete"]))
        at = data.draw(st.integers(0, len(buf) - 1), label="at")
        if op == "flip":
            buf[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "overwrite":
            new = data.draw(st.binary(min_size=1, max_size=32))
            buf[at:at + len(new)] = new
        elif op == "insert":
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=32))
        else:
            del buf[at:at + data.draw(st.integers(1, 64))]
    check(write(work, bytes(buf)), seed, "bytes")


# ----------------------------------------------------------- header fields

def interesting_ints(bits, near=()):
    top = (1 << bits) - 1
    fixed = {0, 1, 2, 3, 7, 8, 255, 256, 0xFFFF, 0x10000, 2 ** 31 - 1, 2 ** 31, top, top - 1}
    for n in near:
        fixed.update({n - 1, n, n + 1})
    return st.one_of(st.sampled_from(sorted(v & top for v in fixed if v >= 0)),
                     st.integers(0, top))


BLOCK_FIELDS = {"kind": (0, 8), "column": (1, 8), "width": (2, 8), "transform": (3, 8),
                "count": (4, 32), "stored_len": (5, 32), "crc": (6, 32)}


@FUZZ
@given(st.data())
def test_header_fields_lie(seeds, work, data):
    """Any field of any block header, or the file's version, set to any value,
    huge counts and lengths included (the checksum does not cover headers)."""
    seed = seeds[data.draw(seed_names)]
    buf = bytearray(seed.data)
    blocks = snapcraft.block_offsets(seed.data)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        which = data.draw(st.integers(-1, len(blocks) - 1), label="block")
        if which < 0:
            field = data.draw(st.sampled_from(["major", "minor"]))
            value = data.draw(interesting_ints(16, near=(sf.VERSION[0], sf.VERSION[1])))
            struct.pack_into("<H", buf, 8 if field == "major" else 10, value)
        else:
            off = blocks[which][0]
            fields = list(snapcraft.BLOCK.unpack_from(buf, off))
            field = data.draw(st.sampled_from(sorted(BLOCK_FIELDS)))
            idx, bits = BLOCK_FIELDS[field]
            fields[idx] = data.draw(interesting_ints(bits, near=(fields[idx], len(buf))))
            snapcraft.BLOCK.pack_into(buf, off, *fields)
        note(f"{field} of block {which}")
    check(write(work, bytes(buf)), seed, "headers")


# ---------------------------------------------------- values behind the crc

@FUZZ
@given(st.data())
def test_column_values_corrupted(seeds, work, data):
    """Values that decode fine but are wrong: indexes out of range, parents out
    of order, label and type indexes beyond their tables, edge counts that do
    not add up, roots pointing anywhere; checksums recomputed."""
    seed = seeds[data.draw(seed_names)]
    p = seed.parsed.copy()
    t = p.trailer
    n = t["objects"]
    near = (n, t["edges"], t["roots"], len(t["types"]), len(t["labels"]))
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        blk = data.draw(st.sampled_from(p.blocks), label="block")
        vals = blk.values()
        if not vals:
            continue
        i = data.draw(st.integers(0, len(vals) - 1), label="index")
        v = data.draw(interesting_ints(8 * blk.width, near=near + (vals[i], i)), label="value")
        note(f"column {sf.COLUMN_NAMES[blk.column]}[{i}]: {vals[i]} -> {v}")
        vals[i] = v
        blk.set_values(vals)
    check(write(work, p.build()), seed, "values")


@FUZZ
@given(st.data())
def test_columns_reshaped(seeds, work, data):
    """Whole chunks dropped, duplicated, swapped between columns or recoded
    with another width or transform, with the trailer's counts kept
    consistent or not."""
    seed = seeds[data.draw(seed_names)]
    p = seed.parsed.copy()
    op = data.draw(st.sampled_from(["drop", "dup", "swap", "recode", "shorten"]))
    i = data.draw(st.integers(0, len(p.blocks) - 1), label="block")
    blk = p.blocks[i]
    if op == "drop":
        del p.blocks[i]
    elif op == "dup":
        p.blocks.insert(i, copy.deepcopy(blk))
    elif op == "swap":
        j = data.draw(st.integers(0, len(p.blocks) - 1))
        blk.column, p.blocks[j].column = p.blocks[j].column, blk.column
    elif op == "recode":
        vals = blk.values()
        blk.width = data.draw(st.sampled_from([1, 2, 4, 8]))
        blk.transform = data.draw(st.integers(0, 7))
        blk.set_values(vals)
    else:
        vals = blk.values()
        blk.set_values(vals[:data.draw(st.integers(0, max(0, len(vals) - 1)))])
    if data.draw(st.booleans(), label="fix counts"):
        t = p.trailer                # make the counts agree with some column again
        for key in ("objects", "edges", "roots"):
            totals = [sum(c.count for c in p.blocks if c.column == col)
                      for col, k in sf.COLUMN_COUNT_KEY.items() if k == key]
            if max(totals):
                t[key] = max(totals)
        p.set_trailer(t)
    note(f"{op} block {i} ({sf.COLUMN_NAMES.get(blk.column)})")
    check(write(work, p.build()), seed, "reshape")


# ----------------------------------------------------------------- trailer

json_leaf = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True),
                      st.integers(-(2 ** 70), 2 ** 70),
                      st.sampled_from([-1, 0, 1, 2 ** 31, 2 ** 32, 2 ** 40 - 1, 2 ** 40,
                                       2 ** 63, 2 ** 64]),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12)


@FUZZ
@given(st.data())
def test_trailer_corrupted(seeds, work, data):
    """The trailer's JSON: counts, tables, metadata set to anything, keys
    removed, tables shortened, whole trailer replaced by non-JSON or deep JSON."""
    seed = seeds[data.draw(seed_names)]
    p = seed.parsed.copy()
    t = p.trailer
    op = data.draw(st.sampled_from(["set", "set", "meta", "delete", "shorten", "raw"]))
    if op == "set":
        key = data.draw(st.sampled_from(sorted(t) + ["sites", "strings", "string_bytes"]))
        t[key] = data.draw(json_value)
    elif op == "meta":
        meta = t.setdefault("meta", {})
        key = data.draw(st.sampled_from(sorted(meta) + ["rss", "python_heap", "time", "seq",
                                                        "pid", "pause_seconds"]))
        meta[key] = data.draw(json_value)
    elif op == "delete":
        t.pop(data.draw(st.sampled_from(sorted(t))), None)
    elif op == "shorten":
        key = data.draw(st.sampled_from(["types", "type_kinds", "labels"]))
        t[key] = t[key][:data.draw(st.integers(0, max(0, len(t[key]) - 1)))]
        if data.draw(st.booleans()) and key != "labels":
            other = "type_kinds" if key == "types" else "types"
            t[other] = t[other][:len(t[key])]
    if op == "raw":
        raw = data.draw(st.one_of(
            st.binary(max_size=64),
            st.sampled_from([b"", b"[]", b"null", b"1", b'"x"', b"[" * 100000,
                             b'{"a":' * 50000, b"\xff\xfe{}", b"NaN", b"{}",
                             json.dumps({"objects": 2 ** 39}).encode()])))
        p.set_trailer_raw(raw)
    else:
        p.set_trailer(t)
    note(f"trailer {op}")
    check(write(work, p.build()), seed, "trailer")


# ------------------------------------------------------- fixed hostile files

def _elf():
    with open(sys.executable, "rb") as f:
        return f.read(4096)


OTHER_FILES = {
    "empty": lambda s: b"",
    "png": lambda s: b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + os.urandom(64),
    "elf": lambda s: _elf(),
    "json": lambda s: json.dumps({"objects": 1, "types": ["x"]}).encode(),
    "gzip of a snapshot": lambda s: gzip.compress(s),
    "pickle": lambda s: pickle.dumps({"objects": 1}),
    "magic only": lambda s: sf.MAGIC,
    "header only": lambda s: s[:12],
    "header and half a block header": lambda s: s[:20],
    "newer major version": lambda s: s[:8] + struct.pack("<HH", sf.VERSION[0] + 1, 0) + s[12:],
    "major version 0": lambda s: s[:8] + struct.pack("<HH", 0, 0) + s[12:],
    "data after the trailer": lambda s: s + b"\0" * 10,
    "two snapshots back to back": lambda s: s + s,
}


@pytest.mark.parametrize("kind", sorted(OTHER_FILES))
def test_other_file_types(seeds, work, kind):
    seed = seeds["plain"]
    path = write(work, OTHER_FILES[kind](seed.data), f"{kind.replace(' ', '-')}.snap")
    check(path, seed, "other files", must_fail=True)
    rc, err = run_cli(["top", path])
    if kind == "newer major version":
        assert "newer" in err and "upgrade memdiag" in err, err


def test_newer_minor_version_is_read(seeds, work):
    """A newer minor version only adds what older readers may ignore."""
    s = seeds["plain"].data
    path = write(work, s[:8] + struct.pack("<HH", sf.VERSION[0], sf.VERSION[1] + 7) + s[12:])
    assert check(path, seeds["plain"], "other files") == [0, 0, 0, 0]


@pytest.mark.parametrize("kind", ["directory", "fifo", "char device", "missing"])
def test_not_a_file(seeds, work, tmp_path, kind):
    """Paths that are not snapshot files; a FIFO must not hang the reader."""
    path = str(tmp_path / "thing")
    if kind == "directory":
        os.mkdir(path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "char device":
        path = "/dev/zero"
    CASES["other files"] += 1
    for argv in (["top", path], ["diff", seeds["plain"].a, path]):
        rc, err = run_cli(argv)
        assert rc == 3, (argv, rc, err)
        assert one_line(err).startswith("memdiag: error: ")


# ---------------------------------------------- huge counts, memory-capped

def _lying_counts(seed):
    """Files whose headers claim far more data than their bytes can hold."""
    p0 = seed.parsed
    cases = {}

    p = p0.copy()                                   # one chunk claims 2^32-1 values
    p.blocks[0].count = 2 ** 32 - 1
    cases["count 2^32-1"] = p

    p = p0.copy()                                   # the trailer claims 256 MiB
    p.trailer_block.count = sf.MAX_TRAILER_BYTES
    cases["trailer 256 MiB"] = p

    p = p0.copy()                                   # a chunk's stored length past EOF
    p.blocks[3].stored_len = 2 ** 32 - 1
    cases["stored_len 4 GiB"] = p

    # Every column: 16 chunks each claiming the 64 MiB maximum, backed by 11
    # bytes of zlib; the trailer's counts agree with the headers.
    tiny = zlib.compress(b"\0" * 8)
    for claim in ("objects", "edges", "roots"):
        p = p0.copy()
        t = p.trailer
        new_blocks = []
        for column in sorted({b.column for b in p.blocks}):
            first = next(b for b in p.blocks if b.column == column)
            key = sf.COLUMN_COUNT_KEY[column]
            if key != claim:
                new_blocks.extend(b for b in p.blocks if b.column == column)
                continue
            per = sf.MAX_CHUNK_BYTES // first.width
            for _ in range(16):
                b = snapcraft.Block(sf.KIND_COLUMN, column, first.width, first.transform,
                                    per, b"")
                b.stored = tiny
                new_blocks.append(b)
            t[key] = 16 * per
        p.blocks = new_blocks
        p.set_trailer(t)
        cases[f"{claim}: 16 x 64 MiB per column from 11 bytes"] = p

    p = p0.copy()                                   # counts at the trailer's limit
    t = p.trailer
    t["objects"] = 2 ** 40 - 1
    p.set_trailer(t)
    cases["objects 2^40-1"] = p

    p = p0.copy()                                   # a label index far past the table
    t = p.trailer
    t["labels"] = t["labels"][:2]
    p.set_trailer(t)
    cases["labels cut to 2"] = p
    return cases


def test_huge_counts_under_memory_cap(seeds, work):
    """Run in a separate process with an address-space cap of +256 MiB: a reader
    that allocated what a header claims (GiBs) would die of MemoryError."""
    seed = seeds["plain"]
    argvs = []
    for name, p in _lying_counts(seed).items():
        path = write(work, p.build(), f"huge-{len(argvs)}.snap")
        argvs += [["top", path], ["diff", seed.a, path],
                  ["retainers", path, "--since", seed.a, "--type", "Session"]]
    cases_file = write(work, json.dumps(argvs).encode(), "huge-cases.json")
    r = subprocess.run([sys.executable, os.path.join(PROGRAMS, "read_worker.py"), cases_file,
                        "256", str(CASE_SECONDS)], capture_output=True, text=True,
                       timeout=600, cwd=ROOT,
                       env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(results) == len(argvs)
    for res in results:
        CASES["huge counts"] += 1
        assert res["error"] is None, res
        assert res["rc"] == 3, res
        assert one_line(res["stderr"]).startswith("memdiag: error: "), res
        assert res["seconds"] < CASE_SECONDS


# ------------------------------------------------------- the real CLI, too

def test_cli_subprocess_one_line(seeds, work):
    """A few damaged files through the installed command (not in-process)."""
    seed = seeds["chunked"]
    p = seed.parsed.copy()
    blk = p.column_blocks(sf.COL_PARENT)[-1]
    vals = blk.values()
    vals[-1] = p.trailer["objects"] + 5
    blk.set_values(vals)
    files = {
        "truncated": seed.data[: len(seed.data) // 2],
        "parent out of range": p.build(),
        "png": OTHER_FILES["png"](seed.data),
    }
    env = {k: v for k, v in os.environ.items() if k != "MEMDIAG_DEBUG"}
    for name, data in files.items():
        path = write(work, data, f"cli-{name.replace(' ', '-')}.snap")
        for argv in (["top", path], ["diff", seed.a, path],
                     ["retainers", path, "--type", "str"]):
            code, out, err = memdiag(*argv, env=env)
            if name == "parent out of range" and argv[0] in ("top", "diff") and code == 0:
                # top and diff decode parents only along the paths they print
                # (chunk by chunk); damage they never read cannot change them.
                assert err == "" and out, (out, err)
                continue
            assert code == 3, (name, argv, code, err)
            line = one_line(err)
            assert line.startswith("memdiag: error: ") and "internal error" not in line, line
            assert out == ""
