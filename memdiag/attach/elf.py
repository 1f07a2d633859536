"""Reads the dynamic symbols of an ELF file, without running it.

memdiag attach learns from the target's interpreter binary (or the
libpython it maps) which Python it is and whether it exports what the
injector calls, before anything touches the process:

    >>> import os, sys
    >>> from memdiag.attach.target import describe
    >>> runtime = describe(os.getpid()).runtime   # libpython3.x.so, or the python binary
    >>> syms = dynamic_symbols(runtime, {"Py_Version", "Py_AddPendingCall"})
    >>> sorted(syms)
    ['Py_AddPendingCall', 'Py_Version']
    >>> read_symbol_value(runtime, syms["Py_Version"]) == sys.hexversion
    True

Only 64-bit little-endian files (x86-64, aarch64), which is where attach is
supported; anything else raises ElfError.
"""

from __future__ import annotations

import struct
from typing import Dict, NamedTuple

SHT_DYNSYM = 11
SHT_NOBITS = 8
SHN_UNDEF = 0
MAX_SECTIONS = 1 << 16


class ElfError(Exception):
    """Not an ELF file memdiag can read; the message is one line."""


class Symbol(NamedTuple):
    value: int     # its address relative to the file's load base
    size: int
    section: int   # index of the section that holds it


def _header(f):
    ident = f.read(64)
    if len(ident) < 64 or ident[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    if ident[4] != 2 or ident[5] != 1:
        raise ElfError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", ident, 0x28)
    shentsize, shnum, _ = struct.unpack_from("<HHH", ident, 0x3A)
    if shentsize < 64 or not 0 < shnum <= MAX_SECTIONS:
        raise ElfError("no section table")
    return shoff, shentsize, shnum


def _sections(f):
    """[(type, addr, offset, size, link, entsize)] of every section."""
    shoff, shentsize, shnum = _header(f)
    f.seek(shoff)
    raw = f.read(shentsize * shnum)
    if len(raw) < shentsize * shnum:
        raise ElfError("truncated section table")
    out = []
    for i in range(shnum):
        _, sh_type, _, addr, offset, size, link, _, _, entsize = struct.unpack_from(
            "<IIQQQQIIQQ", raw, i * shentsize)
        out.append((sh_type, addr, offset, size, link, entsize))
    return out


def dynamic_symbols(path, names) -> Dict[str, Symbol]:
    """{name: Symbol} for those of `names` that the file defines and exports."""
    wanted = {n.encode() for n in names}
    found = {}
    try:
        with open(path, "rb") as f:
            sections = _sections(f)
            for sh_type, _, offset, size, link, entsize in sections:
                if sh_type != SHT_DYNSYM or entsize < 24 or link >= len(sections):
                    continue
                str_offset, str_size = sections[link][2], sections[link][3]
                f.seek(str_offset)
                strtab = f.read(min(str_size, 64 << 20))
                f.seek(offset)
                table = f.read(min(size, 256 << 20))
                for pos in range(0, len(table) - entsize + 1, entsize):
                    name_off, _, _, shndx, value, sym_size = struct.unpack_from(
                        "<IBBHQQ", table, pos)
                    if shndx == SHN_UNDEF or name_off >= len(strtab):
                        continue
                    end = strtab.find(b"\0", name_off)
                    name = strtab[name_off:end if end >= 0 else None]
                    if name in wanted:
                        found[name.decode()] = Symbol(value, sym_size, shndx)
    except OSError as e:
        raise ElfError(f"cannot read {path}: {e.strerror}") from None
    except struct.error:
        raise ElfError(f"{path}: damaged ELF file") from None
    return found


def read_symbol_value(path, symbol: Symbol) -> int:
    """The initial value of a constant integer the file defines (e.g. Py_Version)."""
    if symbol.size not in (1, 2, 4, 8):
        raise ElfError(f"{path}: symbol of size {symbol.size} is not an integer")
    try:
        with open(path, "rb") as f:
            sections = _sections(f)
            if symbol.section >= len(sections):
                raise ElfError(f"{path}: symbol in a section that does not exist")
            sh_type, addr, offset, size, _, _ = sections[symbol.section]
            if sh_type == SHT_NOBITS:
                raise ElfError(f"{path}: symbol has no initial value in the file")
            if not (addr <= symbol.value and symbol.value + symbol.size <= addr + size):
                raise ElfError(f"{path}: symbol outside its section")
            f.seek(offset + symbol.value - addr)
            data = f.read(symbol.size)
    except OSError as e:
        raise ElfError(f"cannot read {path}: {e.strerror}") from None
    if len(data) < symbol.size:
        raise ElfError(f"{path}: truncated file")
    return int.from_bytes(data, "little")
