"""Just enough ELF64 to find a section: where ``.BTF`` (and the initial values
of ``.data``/``.rodata`` globals) live in a BPF object file."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import TypeAlias

from ..errors import BTFError

#: What the loaders accept: a path, or the bytes of a file.
Source: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview

SHT_NOBITS = 8  # a section such as .bss that occupies no space in the file
_SECTION = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr


def read_source(source: Source) -> bytes:
    """The bytes of a path (errors become :class:`BTFError`) or of a bytes-like object."""
    if isinstance(source, str | os.PathLike):
        try:
            return Path(source).read_bytes()
        except FileNotFoundError:
            raise BTFError(f"{source}: no such file") from None
        except OSError as e:
            raise BTFError(f"{source}: {e.strerror or e}", errno=e.errno) from None
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    raise TypeError(f"expected a path or bytes, got {type(source).__name__}")


def elf_sections(data: bytes | memoryview) -> dict[str, tuple[int, int, int]]:
    """Section name -> (type, file offset, size) of an ELF64 little-endian file."""
    if bytes(data[:4]) != b"\x7fELF":
        raise BTFError("not an ELF file")
    if len(data) < 64:
        raise BTFError("truncated ELF header")
    if data[4] != 2:
        raise BTFError("only 64-bit ELF files are supported")
    if data[5] != 1:
        raise BTFError("only little-endian ELF files are supported")
    shoff: int = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shoff == 0:
        raise BTFError("ELF file has no section table")
    if shentsize < 64 or shoff + shentsize > len(data):
        raise BTFError("bad ELF section table")
    sec0 = _SECTION.unpack_from(data, shoff)
    if shnum == 0:  # more than 0xff00 sections: count in section 0
        shnum = sec0[5]
    if shstrndx == 0xFFFF:
        shstrndx = sec0[6]
    if shoff + shnum * shentsize > len(data) or shstrndx >= shnum:
        raise BTFError("bad ELF section table")
    headers = [_SECTION.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    _n, _t, _f, _a, str_off, str_size, *_ = headers[shstrndx]
    if str_off + str_size > len(data):
        raise BTFError("bad ELF section name table")
    names = bytes(data[str_off : str_off + str_size])
    out: dict[str, tuple[int, int, int]] = {}
    for name_off, sh_type, _f, _a, off, size, *_ in headers:
        end = names.find(b"\0", name_off)
        name = names[name_off : end if end >= 0 else None].decode("utf-8", "replace")
        if sh_type != SHT_NOBITS and off + size > len(data):
            raise BTFError(f"ELF section {name} runs past the end of the file")
        out.setdefault(name, (sh_type, off, size))
    return out


def elf_section(source: Source, name: str) -> bytes:
    """The contents of one section of an ELF64 little-endian file (e.g. ``.BTF``,
    or ``.data``/``.rodata`` for the initial values of globals)."""
    data = read_source(source)
    sections = elf_sections(data)
    if name not in sections:
        raise BTFError(f"ELF file has no {name} section")
    sh_type, off, size = sections[name]
    if sh_type == SHT_NOBITS:  # .bss: zeros
        return bytes(size)
    return bytes(data[off : off + size])
