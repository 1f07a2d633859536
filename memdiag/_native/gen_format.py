r"""Writes memdiag/_native/format.h, the snapshot format's constants for the C
walker, from their one source, memdiag/snapfile.py.

    python memdiag/_native/gen_format.py            # rewrite format.h
    python memdiag/_native/gen_format.py --check    # exit 1 if it is stale

tests/test_native.py runs the check. The C code takes every format constant
from format.h: column ids and codings, transforms, root kinds, label kinds and
bits, the well-known labels, the chunk size, the magic and the version.

>>> "#define CHUNK 65536" in header()
True
>>> print(_c_str(b"\x89MD\n"), _c_str(b"\x89A"))
"\x89MD\x0a" "\x89" "A"
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "format.h")
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from memdiag import snapfile as sf  # noqa: E402


def _names(prefix):
    """(name, value) of snapfile's int constants with this prefix, by value."""
    out = [(k, v) for k, v in vars(sf).items()
           if k.startswith(prefix) and isinstance(v, int) and not isinstance(v, bool)]
    return sorted(out, key=lambda kv: (kv[1], kv[0]))


def _label_enum(label):
    """The C name of a well-known label: "" -> LBL_EMPTY, "__dict__" -> LBL_DICT,
    "cell_contents" -> LBL_CELL_CONTENTS."""
    return "LBL_" + (label.strip("_").upper() or "EMPTY")


def _c_str(b):
    """A C string literal of the bytes b (a hex escape never runs into a
    following hex digit: the literal is split there)."""
    out, hexed = [], False
    for c in b:
        ch = chr(c)
        if 32 <= c < 127 and ch not in '"\\':
            out.append(('" "' if hexed and ch in "0123456789abcdefABCDEF" else "") + ch)
            hexed = False
        else:
            out.append("\\x%02x" % c)
            hexed = True
    return '"' + "".join(out) + '"'


def header():
    cols = _names("COL_")
    ncols = max(v for _, v in cols) + 1
    assert [v for _, v in cols] == list(range(1, ncols)), "column ids must be 1..n"
    out = [
        "/* memdiag/_native/format.h: the snapshot format's constants, for the C walker.",
        " *",
        " * GENERATED from memdiag/snapfile.py (their one source) by",
        " * memdiag/_native/gen_format.py: do not edit. After a change to snapfile.py,",
        " * run `python memdiag/_native/gen_format.py` (tests/test_native.py fails",
        " * while this file is stale). */",
        "#ifndef MD_FORMAT_H",
        "#define MD_FORMAT_H",
        "",
        "#include <stdint.h>",
        "",
        f"#define MD_MAGIC {_c_str(sf.MAGIC)}",
        f"#define MD_VERSION_MAJOR {sf.VERSION[0]}",
        f"#define MD_VERSION_MINOR {sf.VERSION[1]}",
        "",
        "/* values per column chunk */",
        f"#define CHUNK {sf.CHUNK}",
        "",
        "/* column transforms, applied in this order: delta, zig-zag, byte shuffle */",
    ]
    out += [f"#define {k} {v}" for k, v in _names("T_") if k in ("T_DELTA", "T_ZIGZAG",
                                                                   "T_SHUFFLE")]
    out += ["", "/* column ids */", "enum {"]
    out += [f"    {k} = {v}," for k, v in cols]
    out += [f"    NCOLS = {ncols}", "};", "",
            "/* the width (bytes) and transform of each column, by id */",
            "static const struct { uint8_t width, transform; } CODING[NCOLS] = {",
            "    {0, 0},"]
    tnames = {sf.T_DELTA: "T_DELTA", sf.T_ZIGZAG: "T_ZIGZAG", sf.T_SHUFFLE: "T_SHUFFLE"}
    for k, v in cols:
        width, transform = sf.COLUMN_CODING[v]
        parts = [n for bit, n in sorted(tnames.items()) if transform & bit]
        assert sum(bit for bit in tnames if transform & bit) == transform
        cell = "{%d, %s}," % (width, " | ".join(parts) or "0")
        out.append(f"    {cell:<38}/* {sf.COLUMN_NAMES[v]} */")
    out += ["};", "", "/* root kinds */"]
    out += [f"#define {k} {v}" for k, v in _names("ROOT_") if k != "ROOT_KIND_NAMES"]
    out += ["", "/* edge label codes: payload << LABEL_KIND_BITS | kind */"]
    out += [f"#define {k} {v}" for k, v in _names("L_")]
    out += [f"#define LABEL_KIND_BITS {sf.LABEL_KIND_BITS}",
            f"#define LABEL_KIND_MASK {sf.LABEL_KIND_MASK}",
            "#define MD_LABEL(kind, payload) \\",
            "    ((uint32_t)(kind) | ((uint32_t)(payload) << LABEL_KIND_BITS))",
            "", "/* labels every snapshot starts with, and their indexes */",
            "static const char *const WELL_KNOWN_LABELS[] = {"]
    out += [f"    {_c_str(label.encode())}," for label in sf.WELL_KNOWN_LABELS]
    out += ["    NULL", "};", "enum {"]
    out += [f"    {_label_enum(label)} = {i}," for i, label in enumerate(sf.WELL_KNOWN_LABELS)]
    out += [f"    NWELL_KNOWN = {len(sf.WELL_KNOWN_LABELS)}", "};", "", "#endif", ""]
    return "\n".join(out)


def main(argv):
    text = header()
    if "--check" in argv:
        with open(OUT) as f:
            if f.read() != text:
                print(f"{OUT} is stale: run python {os.path.relpath(__file__)}",
                      file=sys.stderr)
                return 1
        return 0
    with open(OUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
