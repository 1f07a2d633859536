"""The snapshot file format: a writer and a validating reader, stdlib only.

A snapshot is plain data, never pickle: loading one cannot run code.

Layout (all integers little-endian)::

    header   8 bytes magic b"\\x89MDSNAP\\n", u16 major version, u16 minor version
    block*   16-byte block header, then `stored_len` bytes of zlib data
             kind u8 (1 = column chunk, 2 = trailer), column u8, width u8,
             transform u8, count u32, stored_len u32, crc32 u32 (of stored bytes)

A column chunk holds `count` unsigned integers of `width` bytes. Before
compression the writer may have applied, in this order: delta coding (each
value minus the previous one in the chunk, two's complement), zig-zag coding
of those signed deltas, and a byte shuffle (all first bytes, then all second
bytes, ...). The trailer is the last block: a zlib-compressed JSON object with
the counts, the type and label tables and the process metadata (see
docs/FORMAT.md). Nothing after it.

>>> import io
>>> buf = io.BytesIO()
>>> w = Writer(buf)
>>> for column in (COL_ADDR, COL_TYPE, COL_SIZE, COL_LENGTH, COL_NEDGES,
...                COL_PARENT, COL_PLABEL):
...     w.add(column, [140000000, 0, 56, 0, 0, 0, 0][column - 1:column])
>>> w.add(COL_ROOT_OBJ, [0]); w.add(COL_ROOT_KIND, [ROOT_MODULE])
>>> w.add(COL_ROOT_DESC, [1]); w.add(COL_ROOT_NAME, [0])
>>> w.finish({"objects": 1, "edges": 0, "roots": 1, "types": ["module"],
...           "type_kinds": ["module"], "labels": ["", "sys"]})
>>> r = Reader.from_bytes(buf.getvalue())
>>> r.trailer["objects"], r.column_values(COL_ADDR), r.column_values(COL_SIZE)
(1, [140000000], [56])
>>> chunk = r.chunks[COL_SIZE][0]
>>> chunk.count, chunk.width, len(r.read_chunk(chunk))
(1, 8, 8)
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from array import array

MAGIC = b"\x89MDSNAP\n"
VERSION = (1, 0)
HEADER = struct.Struct("<8sHH")
BLOCK = struct.Struct("<BBBBIII")

KIND_COLUMN = 1
KIND_TRAILER = 2

T_DELTA = 1
T_ZIGZAG = 2
T_SHUFFLE = 4

# Object columns: one value per object, in object index order (BFS order).
COL_ADDR = 1      # id() of the object
COL_TYPE = 2      # index into trailer["types"]
COL_SIZE = 3      # the object's own bytes, as sys.getsizeof without Python code (FORMAT.md)
COL_LENGTH = 4    # len() for containers, str and bytes; 0 otherwise
COL_NEDGES = 5    # number of outgoing edges recorded for the object
COL_PARENT = 6    # index+1 of the object whose edge discovered it; 0 for roots
COL_PLABEL = 7    # label code of that discovering edge
COL_SITE = 8      # tracemalloc site index+1, 0 = unknown (only with tracing)
# Edge columns: one value per edge, grouped by source object.
COL_ETARGET = 9
COL_ELABEL = 10
# Root columns: one value per root.
COL_ROOT_OBJ = 11
COL_ROOT_KIND = 12
COL_ROOT_DESC = 13   # label index: module name, frame or thread description
COL_ROOT_NAME = 14   # label index: local variable name, 0 if none
# String contents, only when the user asked for them (--strings).
COL_STR_OBJ = 15
COL_STR_LEN = 16
COL_STR_DATA = 17

COLUMN_NAMES = {
    COL_ADDR: "addr", COL_TYPE: "type", COL_SIZE: "size", COL_LENGTH: "length",
    COL_NEDGES: "nedges", COL_PARENT: "parent", COL_PLABEL: "plabel",
    COL_SITE: "site", COL_ETARGET: "etarget", COL_ELABEL: "elabel",
    COL_ROOT_OBJ: "root_obj", COL_ROOT_KIND: "root_kind",
    COL_ROOT_DESC: "root_desc", COL_ROOT_NAME: "root_name",
    COL_STR_OBJ: "str_obj", COL_STR_LEN: "str_len", COL_STR_DATA: "str_data",
}
# Which trailer count each column's total must equal.
COLUMN_COUNT_KEY = {
    COL_ADDR: "objects", COL_TYPE: "objects", COL_SIZE: "objects",
    COL_LENGTH: "objects", COL_NEDGES: "objects", COL_PARENT: "objects",
    COL_PLABEL: "objects", COL_SITE: "objects",
    COL_ETARGET: "edges", COL_ELABEL: "edges",
    COL_ROOT_OBJ: "roots", COL_ROOT_KIND: "roots", COL_ROOT_DESC: "roots",
    COL_ROOT_NAME: "roots",
    COL_STR_OBJ: "strings", COL_STR_LEN: "strings", COL_STR_DATA: "string_bytes",
}
# The width and transform the writer uses for each column.
COLUMN_CODING = {
    COL_ADDR: (8, T_DELTA | T_ZIGZAG | T_SHUFFLE),
    COL_TYPE: (4, T_SHUFFLE),
    COL_SIZE: (8, T_SHUFFLE),
    COL_LENGTH: (8, T_SHUFFLE),
    COL_NEDGES: (4, T_SHUFFLE),
    COL_PARENT: (4, T_DELTA | T_ZIGZAG | T_SHUFFLE),
    COL_PLABEL: (4, T_SHUFFLE),
    COL_SITE: (4, T_SHUFFLE),
    COL_ETARGET: (4, T_DELTA | T_ZIGZAG | T_SHUFFLE),
    COL_ELABEL: (4, T_SHUFFLE),
    COL_ROOT_OBJ: (4, T_SHUFFLE),
    COL_ROOT_KIND: (1, 0),
    COL_ROOT_DESC: (4, T_SHUFFLE),
    COL_ROOT_NAME: (4, T_SHUFFLE),
    COL_STR_OBJ: (4, T_SHUFFLE),
    COL_STR_LEN: (4, T_SHUFFLE),
    COL_STR_DATA: (1, 0),
}
REQUIRED_COLUMNS = (COL_ADDR, COL_TYPE, COL_SIZE, COL_LENGTH, COL_NEDGES,
                    COL_PARENT, COL_PLABEL, COL_ETARGET, COL_ELABEL,
                    COL_ROOT_OBJ, COL_ROOT_KIND, COL_ROOT_DESC, COL_ROOT_NAME)

# Root kinds.
ROOT_MODULE = 1       # a module in sys.modules; desc = its name
ROOT_LOCAL = 2        # a local variable of a thread's frame; desc = frame, name = variable
ROOT_THREAD = 3       # a thread's state dict (thread locals); desc = thread
ROOT_UNREACHED = 4    # reached from no root above: held from C, or a leaked reference
ROOT_KIND_NAMES = {ROOT_MODULE: "module", ROOT_LOCAL: "local",
                   ROOT_THREAD: "thread", ROOT_UNREACHED: "unreached"}

# Edge label codes: (payload << 3) | kind.
L_NONE = 0          # an unlabeled reference
L_INDEX = 1         # payload = position in a list or tuple
L_KEY = 2           # the edge goes to a dict key object
L_ITEM = 3          # a dict value; payload = label index of its name-like str key
L_ITEM_OPAQUE = 4   # a dict value; payload = object index of its key (not name-like)
L_ATTR = 5          # an attribute or field; payload = label index of the name
L_LOCAL = 6         # a frame's local variable; payload = label index of the name
LABEL_KIND_BITS = 3
LABEL_KIND_MASK = 7

# Labels every snapshot starts with, so both walkers agree on their indexes.
WELL_KNOWN_LABELS = ("", "__dict__", "__class__", "__code__", "__globals__",
                     "__defaults__", "__kwdefaults__", "__closure__",
                     "cell_contents", "f_back", "__mro__", "__bases__",
                     "__cache__")

CHUNK = 1 << 16                 # values per column chunk written
MAX_CHUNK_BYTES = 64 << 20      # a reader refuses larger chunks
MAX_TRAILER_BYTES = 256 << 20
MAX_ZLIB_RATIO = 1032           # deflate never inflates one stored byte to more


class SnapshotFormatError(Exception):
    """A file that is not a complete, intact snapshot this version can read."""


# ---------------------------------------------------------------- transforms

_TYPECODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _array(width, values=()):
    code = _TYPECODES[width]
    a = array(code, values)
    if a.itemsize != width:  # pragma: no cover - platforms without these sizes
        raise SnapshotFormatError(f"no {width}-byte array type on this platform")
    return a


def encode(values, width, transform):
    """Apply the column transform to a sequence of ints and return bytes.

    >>> encode([5, 3, 4], 4, T_DELTA | T_ZIGZAG).hex()
    '0a0000000300000002000000'
    """
    mask = (1 << (8 * width)) - 1
    if transform & T_DELTA:
        out = []
        prev = 0
        sign = 1 << (8 * width - 1)
        for v in values:
            d = (v - prev) & mask
            prev = v
            if transform & T_ZIGZAG:
                s = d - (1 << (8 * width)) if d & sign else d
                d = ((s << 1) ^ (s >> (8 * width - 1))) & mask
            out.append(d)
        values = out
    a = _array(width, values)
    if sys.byteorder != "little":  # pragma: no cover
        a.byteswap()
    raw = a.tobytes()
    if transform & T_SHUFFLE and width > 1:
        raw = b"".join(raw[k::width] for k in range(width))
    return raw


def decode(raw, width, transform, count):
    """Invert `encode` in pure Python (the CLI uses numpy instead)."""
    if transform & T_SHUFFLE and width > 1:
        out = bytearray(len(raw))
        for k in range(width):
            out[k::width] = raw[k * count:(k + 1) * count]
        raw = bytes(out)
    a = _array(width)
    a.frombytes(raw)
    if sys.byteorder != "little":  # pragma: no cover
        a.byteswap()
    values = list(a)
    if transform & T_DELTA:
        mask = (1 << (8 * width)) - 1
        prev = 0
        for i, d in enumerate(values):
            if transform & T_ZIGZAG:
                d = (d >> 1) ^ -(d & 1)
            prev = (prev + d) & mask
            values[i] = prev
    return values


# -------------------------------------------------------------------- writer

class Writer:
    """Streams columns into a file object opened for binary writing.

    `add(column, values)` buffers values and writes full chunks as they fill;
    `write_chunk` takes a chunk already encoded (the C walker's path);
    `finish(trailer)` flushes everything and writes the trailer.
    """

    def __init__(self, fileobj, level=1):
        self.f = fileobj
        self.level = level
        self.pending = {}
        self.counts = {}
        self.bytes_written = 0
        self._write(HEADER.pack(MAGIC, *VERSION))

    def _write(self, data):
        self.f.write(data)
        self.bytes_written += len(data)

    def write_chunk(self, column, width, transform, count, payload):
        if len(payload) != width * count:
            raise ValueError("payload size does not match count and width")
        stored = zlib.compress(payload, self.level)
        self._write(BLOCK.pack(KIND_COLUMN, column, width, transform, count,
                               len(stored), zlib.crc32(stored)))
        self._write(stored)
        self.counts[column] = self.counts.get(column, 0) + count

    def write_compressed(self, column, width, transform, count, stored, crc=None):
        """Write a chunk that is already encoded and zlib-compressed (the
        compiled walker compresses in native threads, without the GIL)."""
        if crc is None:
            crc = zlib.crc32(stored)
        self._write(BLOCK.pack(KIND_COLUMN, column, width, transform, count,
                               len(stored), crc))
        self._write(stored)
        self.counts[column] = self.counts.get(column, 0) + count

    def add(self, column, values):
        buf = self.pending.get(column)
        if buf is None:
            buf = self.pending[column] = []
        buf.extend(values)
        if len(buf) >= CHUNK:
            self._flush(column)

    def _flush(self, column):
        buf = self.pending.get(column)
        if not buf:
            return
        width, transform = COLUMN_CODING[column]
        for start in range(0, len(buf), CHUNK):
            part = buf[start:start + CHUNK]
            self.write_chunk(column, width, transform, len(part),
                             encode(part, width, transform))
        self.pending[column] = []

    def finish(self, trailer):
        for column in sorted(self.pending):
            self._flush(column)
        trailer = dict(trailer)
        trailer["column_counts"] = {str(k): v for k, v in sorted(self.counts.items())}
        raw = json.dumps(trailer, separators=(",", ":")).encode()
        stored = zlib.compress(raw, 6)
        self._write(BLOCK.pack(KIND_TRAILER, 0, 1, 0, len(raw), len(stored),
                               zlib.crc32(stored)))
        self._write(stored)


# -------------------------------------------------------------------- reader

class Chunk:
    """Where one column chunk lies in the file, as its block header says."""

    __slots__ = ("column", "width", "transform", "count", "offset", "stored_len", "crc")

    def __init__(self, column, width, transform, count, offset, stored_len, crc):
        self.column = column
        self.width = width
        self.transform = transform
        self.count = count
        self.offset = offset
        self.stored_len = stored_len
        self.crc = crc


class Reader:
    """Validates a snapshot's structure and hands out raw column payloads.

    Every length in the file is checked against the file size and against the
    counts in the trailer before anything is allocated for it. Any mismatch
    raises SnapshotFormatError with a one-line reason.
    """

    def __init__(self, fileobj, size, name="snapshot"):
        self.f = fileobj
        self.size = size
        self.name = name
        self.chunks = {}
        self.trailer = None
        self._scan()

    @classmethod
    def open(cls, path):
        import os
        f = open(path, "rb")
        try:
            size = os.fstat(f.fileno()).st_size
            return cls(f, size, name=str(path))
        except BaseException:
            f.close()
            raise

    @classmethod
    def from_bytes(cls, data, name="snapshot"):
        import io
        return cls(io.BytesIO(data), len(data), name=name)

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fail(self, why):
        raise SnapshotFormatError(why)

    def _read_exact(self, offset, n):
        self.f.seek(offset)
        data = self.f.read(n)
        if len(data) != n:
            self._fail("truncated snapshot (the file ends early)")
        return data

    def _scan(self):
        if self.size < HEADER.size:
            if self.size == 0:
                self._fail("empty file, not a memdiag snapshot")
            self._fail("not a memdiag snapshot (too short)")
        magic, major, minor = HEADER.unpack(self._read_exact(0, HEADER.size))
        if magic != MAGIC:
            self._fail("not a memdiag snapshot (unknown file type)")
        if major != VERSION[0]:
            if major > VERSION[0]:
                self._fail(f"snapshot format version {major}.{minor} is newer than this "
                           f"memdiag reads ({VERSION[0]}.x); upgrade memdiag")
            self._fail(f"snapshot format version {major}.{minor} is not supported")
        self.version = (major, minor)
        offset = HEADER.size
        while True:
            if offset == self.size:
                self._fail("truncated snapshot (no trailer: the writer did not finish)")
            if offset + BLOCK.size > self.size:
                self._fail("truncated snapshot (the file ends inside a block header)")
            kind, column, width, transform, count, stored_len, crc = BLOCK.unpack(
                self._read_exact(offset, BLOCK.size))
            data_at = offset + BLOCK.size
            if stored_len > self.size - data_at:
                self._fail("truncated snapshot (a block runs past the end of the file)")
            if count * (width if kind == KIND_COLUMN else 1) > MAX_ZLIB_RATIO * stored_len:
                self._fail(f"corrupted snapshot (a block at byte {offset} claims more data "
                           f"than it stores)")
            if kind == KIND_TRAILER:
                if count > MAX_TRAILER_BYTES:
                    self._fail("corrupted snapshot (trailer too large)")
                if data_at + stored_len != self.size:
                    self._fail("corrupted snapshot (data after the trailer)")
                self.trailer = self._load_trailer(data_at, stored_len, count, crc)
                break
            if kind != KIND_COLUMN:
                self._fail(f"corrupted snapshot (unknown block kind {kind} at byte {offset})")
            if column not in COLUMN_NAMES:
                self._fail(f"corrupted snapshot (unknown column {column} at byte {offset})")
            if width not in _TYPECODES or transform & ~(T_DELTA | T_ZIGZAG | T_SHUFFLE):
                self._fail(f"corrupted snapshot (bad column coding at byte {offset})")
            if count * width > MAX_CHUNK_BYTES:
                self._fail(f"corrupted snapshot (oversized chunk at byte {offset})")
            self.chunks.setdefault(column, []).append(
                Chunk(column, width, transform, count, data_at, stored_len, crc))
            offset = data_at + stored_len
        self._check_counts()

    def _inflate(self, offset, stored_len, raw_len, crc):
        stored = self._read_exact(offset, stored_len)
        if zlib.crc32(stored) != crc:
            self._fail(f"corrupted snapshot (checksum mismatch at byte {offset})")
        d = zlib.decompressobj()
        try:
            raw = d.decompress(stored, raw_len)
        except zlib.error:
            self._fail(f"corrupted snapshot (bad compressed data at byte {offset})")
        if len(raw) != raw_len or d.unconsumed_tail or not d.eof:
            self._fail(f"corrupted snapshot (block size mismatch at byte {offset})")
        return raw

    def _load_trailer(self, offset, stored_len, raw_len, crc):
        raw = self._inflate(offset, stored_len, raw_len, crc)
        try:
            trailer = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            self._fail("corrupted snapshot (unreadable trailer)")
        if not isinstance(trailer, dict):
            self._fail("corrupted snapshot (unreadable trailer)")
        return trailer

    def _check_counts(self):
        t = self.trailer
        for key in ("objects", "edges", "roots"):
            v = t.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= 1 << 40:
                self._fail(f"corrupted snapshot (bad '{key}' count in trailer)")
        for key in ("types", "type_kinds", "labels"):
            v = t.get(key, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                self._fail(f"corrupted snapshot (bad '{key}' table in trailer)")
        if len(t.get("types", [])) != len(t.get("type_kinds", [])):
            self._fail("corrupted snapshot (type tables disagree)")
        if not isinstance(t.get("meta", {}), dict):
            self._fail("corrupted snapshot (bad metadata in trailer)")
        for column in REQUIRED_COLUMNS:
            key = COLUMN_COUNT_KEY[column]
            if t[key] and column not in self.chunks:
                self._fail(f"corrupted snapshot (column '{COLUMN_NAMES[column]}' is missing)")
        for column, chunks in self.chunks.items():
            key = COLUMN_COUNT_KEY[column]
            expected = t.get(key)
            if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
                self._fail(f"corrupted snapshot (bad '{key}' count in trailer)")
            total = sum(c.count for c in chunks)
            if total != expected:
                self._fail(f"corrupted snapshot (column '{COLUMN_NAMES[column]}' has "
                           f"{total} values, trailer says {expected})")

    @property
    def meta(self):
        return self.trailer.get("meta", {})

    def has(self, column):
        return column in self.chunks

    def read_chunk(self, chunk):
        """The encoded payload of one chunk of `chunks`, `count * width` bytes:
        read, checksum-verified and inflated (SnapshotFormatError if not intact)."""
        return self._inflate(chunk.offset, chunk.stored_len, chunk.count * chunk.width,
                             chunk.crc)

    def payloads(self, column):
        """Yield (width, transform, count, raw bytes) for each chunk of a column."""
        for c in self.chunks.get(column, ()):
            yield c.width, c.transform, c.count, self.read_chunk(c)

    def column_values(self, column):
        """A column as a Python list (slow; for tests and small files)."""
        out = []
        for width, transform, count, raw in self.payloads(column):
            out.extend(decode(raw, width, transform, count))
        return out
