"""A sanity check of a BPF object file before libbpf sees it.

libbpf 1.1 trusts much of what it parses: a string offset past the end of
the ``.BTF`` string section becomes a NULL name that it hands to
``strcmp`` (the process dies with SIGSEGV), and type ids, symbol indexes or
``.BTF.ext`` records that point nowhere are used in the same spirit.  Newer
libbpf validates more; we cannot choose the libbpf a user has, so every
object is checked here first, with the standard library only, and a file
that fails is refused with a :class:`~bpfring.LoadError` naming the first
thing wrong.  The check is structural (bounds, offsets, counts, indexes),
not semantic: what it lets through, libbpf and the verifier still judge.
It costs one pass over the section table, the symbols, the relocations and
the BTF type records: about a millisecond for a typical object, some tens for
one whose BTF keeps thousands of kernel types (measured on a loaded 2-core VM).
"""

from __future__ import annotations

import os
import struct

from .errors import LoadError

__all__ = ["check_object", "check_object_file"]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym
_BTF_HDR = struct.Struct("<HBBIIIII")
_EXT_HDR = struct.Struct("<HBBIIIII")  # + core_relo_off, core_relo_len when hdr_len >= 32

ET_REL = 1
EM_BPF = 247
SHT_SYMTAB, SHT_STRTAB, SHT_REL, SHT_NOBITS = 2, 3, 9, 8
SHN_LORESERVE = 0xFF00
SHN_XINDEX = 0xFFFF
BTF_MAGIC = 0xEB9F
LIBBPF_ERRNO__FORMAT = 4001

# Words after the 3-word header of a BTF type record: fixed, and per vlen item.
_FIXED = {1: 1, 2: 0, 3: 3, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0, 10: 0, 11: 0, 12: 0,
          13: 0, 14: 1, 15: 0, 16: 0, 17: 1, 18: 0, 19: 0}
_PER = {4: 3, 5: 3, 6: 2, 13: 2, 15: 3, 19: 3}
# Kinds whose third word is a type id (PTR, TYPEDEF, VOLATILE, CONST,
# RESTRICT, FUNC, FUNC_PROTO's return, VAR, DECL_TAG, TYPE_TAG).
_REFERS = {2, 8, 9, 10, 11, 12, 13, 14, 17, 18}


class _Bad(Exception):
    """Internal: what is wrong, turned into a LoadError by check_object."""


class _Defer(Exception):
    """Internal: the ELF header itself is unusable; libelf refuses such a
    file cleanly, and libbpf's own message says more than ours would."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise _Bad(what)


def check_object(data: bytes | memoryview, what: str) -> None:
    """Refuse (:class:`~bpfring.LoadError`) an ELF image libbpf must not parse;
    ``what`` names it in the message (a path, or "object bytes")."""
    try:
        _check(memoryview(data).cast("B") if isinstance(data, memoryview) else data)
    except _Defer:
        return
    except _Bad as e:
        # libbpf's own code for a malformed object, so that callers testing
        # errno see what libbpf would have said had it not crashed.
        raise LoadError(f"{what}: not a valid BPF object: {e}", errno=LIBBPF_ERRNO__FORMAT,
                        hint="rebuild it with clang -target bpf -g; a truncated or "
                             "corrupted file cannot be loaded") from None


def check_object_file(path: str | os.PathLike[str]) -> None:
    """:func:`check_object` for a file; one that cannot be read is left to
    libbpf (its open fails with the system's reason)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    check_object(data, os.fspath(path))


def _check(data: bytes | memoryview) -> None:
    size = len(data)
    if size < _EHDR.size or bytes(data[:4]) != b"\x7fELF":
        raise _Defer
    (ident, e_type, machine, _version, _entry, _phoff, shoff, _flags, ehsize, _phentsize,
     _phnum, shentsize, shnum, shstrndx) = _EHDR.unpack_from(data)
    if (ident[4], ident[5], e_type, machine) != (2, 1, ET_REL, EM_BPF) \
            or ehsize < _EHDR.size:
        raise _Defer  # not a 64-bit little-endian BPF relocatable object: libbpf says so
    _need(shoff and shentsize == _SHDR.size, "no valid section table")
    _need(shoff + _SHDR.size <= size, "section table past the end of the file")
    first = _SHDR.unpack_from(data, shoff)
    if shnum == 0:
        shnum = first[5]  # sh_size of section 0 holds large counts
    if shstrndx == SHN_XINDEX:
        shstrndx = first[6]
    _need(0 < shnum <= (size - shoff) // _SHDR.size, "section table past the end of the file")
    secs = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
    _need(shstrndx < shnum and secs[shstrndx][1] == SHT_STRTAB, "bad section name table index")
    for i, (_n, sh_type, _f, _a, off, sz, link, _info, _al, _es) in enumerate(secs):
        _need(sh_type == SHT_NOBITS or off + sz <= size, f"section {i} runs past the end")
        _need(link < shnum, f"section {i} links to section {link} of {shnum}")
    names = _strtab(data, secs[shstrndx], "section name table")
    sec_names: dict[str, int] = {}
    for i, sec in enumerate(secs):
        _need(sec[0] < len(names), f"section {i} name offset {sec[0]} is out of range")
        sec_names.setdefault(_cstr(names, sec[0]), i)
    nsyms = _check_symbols(data, secs)
    for i, (_n, sh_type, _f, _a, off, sz, _link, info, _al, es) in enumerate(secs):
        if sh_type == SHT_REL:
            _need(es == 16 and sz % 16 == 0, f"relocation section {i} has bad entry size")
            _need(info < shnum, f"relocation section {i} applies to section {info} of {shnum}")
            for r in range(off, off + sz, 16):
                sym = struct.unpack_from("<Q", data, r + 8)[0] >> 32
                _need(sym < nsyms, f"relocation in section {i} names symbol {sym} of {nsyms}")
    btf_strs, ntypes = (0, 0)
    if ".BTF" in sec_names:
        btf_strs, ntypes = _check_btf(_contents(data, secs[sec_names[".BTF"]]))
    if ".BTF.ext" in sec_names:
        _need(".BTF" in sec_names, ".BTF.ext without .BTF")
        _check_btf_ext(_contents(data, secs[sec_names[".BTF.ext"]]), btf_strs, ntypes)


def _contents(data: bytes | memoryview, sec: tuple[int, ...]) -> bytes:
    if sec[1] == SHT_NOBITS:
        return b""
    return bytes(data[sec[4]:sec[4] + sec[5]])


def _strtab(data: bytes | memoryview, sec: tuple[int, ...], what: str) -> bytes:
    strs = _contents(data, sec)
    _need(sec[1] == SHT_STRTAB and strs[-1:] == b"\0", f"{what} is not a string table")
    return strs


def _cstr(strs: bytes, off: int) -> str:
    return strs[off:strs.index(b"\0", off)].decode("utf-8", "replace")


def _check_symbols(data: bytes | memoryview, secs: list[tuple[int, ...]]) -> int:
    """Check the symbol table(s); return the symbol count of the (last) one."""
    nsyms = 0
    for i, (_n, sh_type, _f, _a, off, sz, link, _info, _al, es) in enumerate(secs):
        if sh_type != SHT_SYMTAB:
            continue
        _need(es == _SYM.size and sz % _SYM.size == 0, f"symbol table {i} has bad entry size")
        strs = _strtab(data, secs[link], f"string table of symbol table {i}")
        nsyms = sz // _SYM.size
        for k in range(nsyms):
            name, _info, _other, shndx, _value, _size = _SYM.unpack_from(data, off + k * 24)
            _need(name < len(strs), f"symbol {k} name offset {name} is out of range")
            _need(shndx < len(secs) or shndx >= SHN_LORESERVE,
                  f"symbol {k} is in section {shndx} of {len(secs)}")
    return nsyms


def _check_btf(btf: bytes) -> tuple[int, int]:
    """Check the .BTF section; return (string section length, type count)."""
    _need(len(btf) >= _BTF_HDR.size, ".BTF is truncated")
    magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
        _BTF_HDR.unpack_from(btf)
    _need(magic == BTF_MAGIC and version == 1, ".BTF has a bad magic or version")
    body = len(btf) - hdr_len
    _need(_BTF_HDR.size <= hdr_len <= len(btf), ".BTF has a bad header length")
    _need(type_off % 4 == 0 and type_off + type_len <= body and type_len % 4 == 0,
          ".BTF type section out of range")
    _need(str_off + str_len <= body and str_len > 0, ".BTF string section out of range")
    strs = btf[hdr_len + str_off:hdr_len + str_off + str_len]
    _need(strs[0] == 0 and strs[-1] == 0, ".BTF string section is not NUL-delimited")
    words = struct.unpack_from(f"<{type_len // 4}I", btf, hdr_len + type_off)
    # Pass 1: the record boundaries (so that type ids can be checked in pass 2).
    starts: list[int] = []
    i, n = 0, len(words)
    while i < n:
        _need(i + 3 <= n, f".BTF type {len(starts) + 1} is truncated")
        kind = (words[i + 1] >> 24) & 0x1F
        _need(kind in _FIXED, f".BTF type {len(starts) + 1} has unknown kind {kind}")
        starts.append(i)
        i += 3 + _FIXED[kind] + _PER.get(kind, 0) * (words[i + 1] & 0xFFFF)
    _need(i == n, f".BTF type {len(starts)} is truncated")
    ntypes = len(starts)
    for tid, i in enumerate(starts, 1):
        name, info, third = words[i:i + 3]
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        _need(name < str_len, f".BTF type {tid} name offset {name} is out of range")
        if kind in _REFERS:
            _need(third <= ntypes, f".BTF type {tid} refers to type {third} of {ntypes}")
        if kind == 3:  # array: elem type, index type, nelems
            _need(words[i + 3] <= ntypes and words[i + 4] <= ntypes,
                  f".BTF array {tid} refers to a type past {ntypes}")
        j = i + 3 + _FIXED[kind]
        step = _PER.get(kind, 0)
        for k in range(vlen if step else 0):
            item = words[j + k * step:j + (k + 1) * step]
            if kind == 15:  # datasec variable: type, offset, size
                _need(item[0] <= ntypes, f".BTF datasec {tid} item {k} refers to type "
                                         f"{item[0]} of {ntypes}")
                continue
            _need(item[0] < str_len, f".BTF type {tid} item {k} name offset is out of range")
            if kind in (4, 5, 13):  # struct/union member, func param: name, type, ...
                _need(item[1] <= ntypes, f".BTF type {tid} item {k} refers to type "
                                         f"{item[1]} of {ntypes}")
    return str_len, ntypes


def _check_btf_ext(ext: bytes, str_len: int, ntypes: int) -> None:
    """Check the .BTF.ext section against the .BTF it refers to."""
    _need(len(ext) >= _EXT_HDR.size, ".BTF.ext is truncated")
    magic, version, _flags, hdr_len, f_off, f_len, l_off, l_len = _EXT_HDR.unpack_from(ext)
    _need(magic == BTF_MAGIC and version == 1, ".BTF.ext has a bad magic or version")
    _need(_EXT_HDR.size <= hdr_len <= len(ext), ".BTF.ext has a bad header length")
    regions = [("func_info", f_off, f_len, 8), ("line_info", l_off, l_len, 16)]
    if hdr_len >= _EXT_HDR.size + 8:
        c_off, c_len = struct.unpack_from("<II", ext, _EXT_HDR.size)
        regions.append(("core_relo", c_off, c_len, 16))
    body = len(ext) - hdr_len
    for what, off, length, min_rec in regions:
        if length == 0:
            continue
        _need(off + length <= body and length >= 4, f".BTF.ext {what} out of range")
        region = ext[hdr_len + off:hdr_len + off + length]
        rec = struct.unpack_from("<I", region)[0]
        _need(min_rec <= rec <= 1024 and rec % 4 == 0,
              f".BTF.ext {what} record size {rec} is invalid")
        region += bytes(12)  # so that the last record unpacks whole, whatever its size
        p = 4
        while p < length:
            _need(p + 8 <= length, f".BTF.ext {what} is truncated")
            sec_name, count = struct.unpack_from("<II", region, p)
            _need(sec_name < str_len, f".BTF.ext {what} section name offset is out of range")
            _need(count > 0 and p + 8 + count * rec <= length,
                  f".BTF.ext {what} record count {count} is out of range")
            for r in range(p + 8, p + 8 + count * rec, rec):
                _a, b, c = struct.unpack_from("<III", region, r)
                if what == "func_info":  # insn_off, type_id
                    _need(b <= ntypes, f".BTF.ext func_info refers to type {b}")
                elif what == "line_info":  # insn_off, file_name_off, line_off
                    _need(b < str_len and c < str_len,
                          ".BTF.ext line_info string offset is out of range")
                else:  # insn_off, type_id, access_str_off
                    _need(b <= ntypes and c < str_len,
                          ".BTF.ext core_relo refers past the BTF")
            p += 8 + count * rec
