"""Take a real snapshot file apart and put it back together, to craft damaged
files that get past the checksums.

    p = parse(open("b.snap", "rb").read())
    blk = p.column_blocks(sf.COL_PARENT)[0]
    vals = blk.values(); vals[5] = 10**6; blk.set_values(vals)
    data = p.build()              # fresh zlib data and crc32 for every block

The parser is independent of memdiag.snapfile.Reader (the thing under test):
it only follows the documented layout. Blocks keep their decompressed
payload; `build` recompresses it unless a block carries `stored` bytes of its
own, and takes header fields (count, stored_len, crc) from the block, so a
test can make any of them lie.
"""

from __future__ import annotations

import copy
import json
import struct
import zlib

from memdiag import snapfile as sf

HEADER = struct.Struct("<8sHH")
BLOCK = struct.Struct("<BBBBIII")


class Block:
    def __init__(self, kind, column, width, transform, count, raw):
        self.kind = kind
        self.column = column
        self.width = width
        self.transform = transform
        self.count = count
        self.raw = raw            # the decompressed payload
        self.stored = None        # bytes to store instead of zlib(raw)
        self.stored_len = None    # header value to write instead of len(stored)
        self.crc = None           # header value to write instead of crc32(stored)

    def values(self):
        return sf.decode(self.raw, self.width, self.transform, self.count)

    def set_values(self, values):
        mask = (1 << (8 * self.width)) - 1
        self.raw = sf.encode([v & mask for v in values], self.width, self.transform)
        self.count = len(values)


class Parsed:
    def __init__(self, major, minor, blocks, trailer_raw):
        self.magic = sf.MAGIC
        self.major = major
        self.minor = minor
        self.blocks = blocks                # column blocks, in file order
        self.trailer_raw = trailer_raw      # the trailer's JSON bytes
        self.trailer_block = Block(sf.KIND_TRAILER, 0, 1, 0, len(trailer_raw), trailer_raw)

    @property
    def trailer(self):
        return json.loads(self.trailer_raw)

    def set_trailer(self, obj):
        self.set_trailer_raw(json.dumps(obj, separators=(",", ":")).encode())

    def set_trailer_raw(self, raw):
        self.trailer_raw = raw
        self.trailer_block = Block(sf.KIND_TRAILER, 0, 1, 0, len(raw), raw)

    def column_blocks(self, column):
        return [b for b in self.blocks if b.column == column]

    def copy(self):
        return copy.deepcopy(self)

    def build(self):
        out = [HEADER.pack(self.magic, self.major, self.minor)]
        for b in self.blocks + [self.trailer_block]:
            stored = b.stored if b.stored is not None else zlib.compress(b.raw, 1)
            count = len(b.raw) if b.kind == sf.KIND_TRAILER and b.count is None else b.count
            out.append(BLOCK.pack(b.kind, b.column, b.width, b.transform, count,
                                  len(stored) if b.stored_len is None else b.stored_len,
                                  zlib.crc32(stored) if b.crc is None else b.crc))
            out.append(stored)
        return b"".join(out)


def parse(data):
    magic, major, minor = HEADER.unpack_from(data, 0)
    assert magic == sf.MAGIC, "not a snapshot"
    off = HEADER.size
    blocks = []
    while True:
        kind, column, width, transform, count, stored_len, crc = BLOCK.unpack_from(data, off)
        stored = data[off + BLOCK.size:off + BLOCK.size + stored_len]
        assert zlib.crc32(stored) == crc
        raw = zlib.decompress(stored)
        off += BLOCK.size + stored_len
        if kind == sf.KIND_TRAILER:
            assert off == len(data)
            return Parsed(major, minor, blocks, raw)
        blocks.append(Block(kind, column, width, transform, count, raw))


def block_offsets(data):
    """[(offset of the block header, kind, column)] of every block in a file."""
    off = HEADER.size
    out = []
    while off + BLOCK.size <= len(data):
        kind, column, width, transform, count, stored_len, crc = BLOCK.unpack_from(data, off)
        out.append((off, kind, column))
        off += BLOCK.size + stored_len
    return out
