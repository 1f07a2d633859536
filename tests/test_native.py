"""The C sources of memdiag/_native/ as files: format constants from one source.

(The compiled walker's behaviour is tested in test_walker_c.py.)
"""

from __future__ import annotations

import glob
import importlib.machinery
import os
import re
import subprocess
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.path.join(ROOT, "memdiag", "_native")


def native_sources():
    """{file name: text} of every C source and header but the generated format.h."""
    out = {}
    for path in sorted(glob.glob(os.path.join(NATIVE, "*.[ch]"))):
        if os.path.basename(path) != "format.h":
            with open(path) as f:
                out[os.path.basename(path)] = f.read()
    return out


GEN_FORMAT = os.path.join(ROOT, "scripts", "gen-format-h")


def test_format_header_is_generated_from_snapfile():
    """format.h is what scripts/gen-format-h writes from snapfile.py now."""
    r = subprocess.run([sys.executable, GEN_FORMAT, "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_gen_format_check_notices_a_stale_header(tmp_path, monkeypatch):
    loader = importlib.machinery.SourceFileLoader("gen_format", GEN_FORMAT)
    gen_format = types.ModuleType("gen_format")
    gen_format.__file__ = GEN_FORMAT
    loader.exec_module(gen_format)
    stale = tmp_path / "format.h"
    stale.write_text(gen_format.header().replace("#define CHUNK 65536", "#define CHUNK 4096"))
    monkeypatch.setattr(gen_format, "OUT", str(stale))
    assert gen_format.main(["gen_format.py", "--check"]) == 1
    assert gen_format.main(["gen_format.py"]) == 0
    assert gen_format.main(["gen_format.py", "--check"]) == 0


# A format constant defined by hand: a #define, an enum member or a table of
# the names format.h defines.
_DEFINED_BY_HAND = re.compile(
    r"^\s*#\s*define\s+(COL_\w+|NCOLS|T_DELTA|T_ZIGZAG|T_SHUFFLE|ROOT_(MODULE|LOCAL|THREAD|"
    r"UNREACHED)|L_(NONE|INDEX|KEY|ITEM|ITEM_OPAQUE|ATTR|LOCAL)|LBL_\w+|CHUNK|LABEL_KIND_\w+"
    r"|MD_MAGIC|MD_VERSION_\w+)\b"
    r"|\b(COL_\w+|LBL_\w+|NCOLS|NWELL_KNOWN)\s*=[^=]"
    r"|\b(CODING|WELL_KNOWN_LABELS)\s*\[[^\]]*\]\s*=",
    re.M)


def test_no_format_constant_is_written_twice():
    """Every format constant the C code uses comes from format.h; no C file
    defines one of its own (which could drift from snapfile.py)."""
    found = []
    for name, text in native_sources().items():
        for m in _DEFINED_BY_HAND.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append(f"{name}:{line}: {m.group(0).strip()}")
    assert not found, "format constants defined outside format.h:\n" + "\n".join(found)


def test_the_guard_sees_a_constant_defined_by_hand():
    assert _DEFINED_BY_HAND.search("#define COL_ADDR 1")
    assert _DEFINED_BY_HAND.search("enum { COL_ADDR = 1, COL_TYPE };")
    assert _DEFINED_BY_HAND.search("#define L_ATTR 5")
    assert _DEFINED_BY_HAND.search("static const char *WELL_KNOWN_LABELS[] = {")
    assert not _DEFINED_BY_HAND.search("if (column == COL_ADDR) {")
    assert not _DEFINED_BY_HAND.search("c = CODING[column].width;")


# What only compat.h and the py3NN.h files it picks may name.
_VERSION_SPECIFIC = re.compile(r"\bPY_VERSION_HEX\b|\bPY3\d\d\b|\b_Py[A-Za-z]\w*")
_COMPAT_FILES = re.compile(r"compat\.h|py3\d+\.h")


def test_version_differences_live_in_the_compat_headers():
    """No version conditional and no private _Py name outside compat.h and
    py3NN.h (the module glue's PY_VERSION constant aside): a new Python version
    is a new py3NN.h."""
    found = []
    for name, text in native_sources().items():
        if _COMPAT_FILES.fullmatch(name) or name == "fastmatch.c":
            continue
        code = re.sub(r"/\*.*?\*/", lambda m: " " * len(m.group(0)), text, flags=re.S)
        for m in _VERSION_SPECIFIC.finditer(code):
            line = code.count("\n", 0, m.start()) + 1
            found.append(f"{name}:{line}: {m.group(0)}")
    assert not found, "version-specific names outside compat.h:\n" + "\n".join(found)


def test_compat_picks_one_header_per_version():
    """compat.h picks py3NN.h for each supported version and refuses the
    others with an #error; each py3NN.h defines every accessor compat.h lists
    but those compat.h defines itself (the same in every version)."""
    with open(os.path.join(NATIVE, "compat.h")) as f:
        compat = f.read()
    picked = re.findall(r'#\s*include "(py3\d+\.h)"', compat)
    # py314.h serves 3.14 and 3.15 (the few 3.15 differences inside it)
    assert picked == ["py311.h", "py312.h", "py313.h", "py314.h"]
    assert compat.count("#  error") >= 2
    listed = set()
    for names in re.findall(r"^ \*   ((?:(?:md|MD)_\w+,? ?)+)", compat, re.M):
        listed |= set(re.findall(r"(?:md|MD)_\w+", names))
    assert len(listed) > 40, sorted(listed)
    tail = compat[compat.rindex("#  include"):]      # after the version selection
    common = set(re.findall(r"\b(md_\w+)\(", tail))
    assert common == {"md_lru_maxsize"}, common
    listed -= common
    for header in picked:
        with open(os.path.join(NATIVE, header)) as f:
            text = f.read()
        defined = set(re.findall(r"\b(md_\w+)\(", text)) | set(
            re.findall(r"#define (MD_\w+)", text))
        assert listed <= defined, f"{header} lacks {sorted(listed - defined)}"


def test_setup_builds_every_walker_source():
    """Each .c file of memdiag/_native/ is in the source list of
    memdiag._walker (fastmatch.c is memdiag._fastmatch's, dominators.c
    memdiag._dominators'): a unit left out
    would leave the extension with an undefined symbol, which fails its
    import, and memdiag would fall back to the pure-Python walker. The list
    is walker_cache.WALKER_SOURCES, which setup.py and `memdiag build-walker`
    both build from."""
    from memdiag.walker_cache import WALKER_SOURCES
    with open(os.path.join(ROOT, "setup.py")) as f:
        setup = f.read()
    assert "WALKER_SOURCES = list(_CACHE.WALKER_SOURCES)" in setup
    present = {os.path.basename(p) for p in glob.glob(os.path.join(NATIVE, "*.c"))}
    assert set(WALKER_SOURCES) == present - {"fastmatch.c", "dominators.c"}
    assert len(set(WALKER_SOURCES)) == len(WALKER_SOURCES)
