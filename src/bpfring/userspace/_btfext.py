"""The object's BTF side: DATASEC fix-ups (as libbpf makes them when it opens
an object), CO-RE relocation records and line info from ``.BTF.ext``."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..btf import BTF, Kind
from ..errors import BTFError
from ._core import CoreRelo
from ._errors import UserLoadError
from ._isa import Insn

if TYPE_CHECKING:
    from ._elf import _Elf

__all__ = ["CORE_KINDS", "check_core", "fixup_btf", "line_info"]

#: CO-RE relocation kinds (enum bpf_core_relo_kind).
CORE_KINDS = {
    0: "field_byte_offset", 1: "field_byte_size", 2: "field_exists", 3: "field_signed",
    4: "field_lshift_u64", 5: "field_rshift_u64", 6: "type_id_local", 7: "type_id_target",
    8: "type_exists", 9: "type_size", 10: "enumval_exists", 11: "enumval_value",
    12: "type_matches",
}

_SYMBOL_TYPES = (0, 1, 2)  # STT_NOTYPE, STT_OBJECT, STT_FUNC: symbols that name storage
_FIXED_WORDS = (0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0)
_VLEN_WORDS = (0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3)


def fixup_btf(raw: bytes, elf: _Elf) -> BTF:
    """The object's BTF with each DATASEC's size set to its section's and each
    variable's offset to its symbol's value (clang leaves them 0 in a .o)."""
    try:
        btf = BTF.from_bytes(raw)
    except BTFError as e:
        raise UserLoadError(f"the object's BTF is malformed: {e}") from None
    hdr_len, type_off, type_len = struct.unpack_from("<III", raw, 4)
    buf = bytearray(raw)
    pos = hdr_len + type_off
    end = pos + type_len
    tid = 1
    sec_sizes = {s.name: s.size for s in elf.sections}
    while pos < end:
        info = struct.unpack_from("<I", buf, pos + 4)[0]
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if kind >= len(_FIXED_WORDS) or kind == 0:
            raise UserLoadError(f"BTF type {tid} has unknown kind {kind}")
        if kind == Kind.DATASEC:
            name = btf.type(tid).name
            sec = elf.section(name)
            if sec is not None:
                struct.pack_into("<I", buf, pos + 8, sec_sizes[name])
                syms = {s.name: s.value for s in elf.symbols if s.shndx == sec.index
                        and s.type in _SYMBOL_TYPES}
                for j in range(vlen):
                    at = pos + 12 + 12 * j
                    var_id = struct.unpack_from("<I", buf, at)[0]
                    var = btf.type(var_id)
                    if var.name in syms:
                        struct.pack_into("<I", buf, at + 4, syms[var.name])
        pos += 4 * (3 + _FIXED_WORDS[kind] + _VLEN_WORDS[kind] * vlen)
        tid += 1
    return BTF.from_bytes(bytes(buf))


def check_core(elf: _Elf, btf: BTF, code: dict[int, list[Insn]]) -> list[CoreRelo]:
    """Read and validate the CO-RE relocation records (known kind, on an
    instruction, a type of the object's BTF); :func:`._core.apply_core`
    resolves them against a target BTF."""
    out: list[CoreRelo] = []
    ext = elf.section(".BTF.ext")
    if ext is None or len(ext.data) < 24:
        return out
    raw = ext.data
    magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", raw, 0)
    if magic != 0xEB9F:
        raise UserLoadError(f"bad .BTF.ext magic {magic:#x}")
    if hdr_len < 32 or len(raw) < 32:
        return out  # no CO-RE part
    core_off, core_len = struct.unpack_from("<II", raw, 24)
    if core_len == 0:
        return out
    pos = hdr_len + core_off
    end = pos + core_len
    if end > len(raw):
        raise UserLoadError(".BTF.ext CO-RE section runs past its end")
    rec_size = struct.unpack_from("<I", raw, pos)[0]
    if rec_size < 16:
        raise UserLoadError(f".BTF.ext CO-RE record size {rec_size}")
    pos += 4
    by_name = {s.name: s.index for s in elf.sections}
    try:
        _read_core(raw, pos, end, rec_size, btf, by_name, code, out)
    except (BTFError, struct.error) as e:
        raise UserLoadError(f".BTF.ext CO-RE records are malformed: {e}") from None
    return out


def _read_core(raw: bytes, pos: int, end: int, rec_size: int, btf: BTF,
               by_name: dict[str, int], code: dict[int, list[Insn]],
               out: list[CoreRelo]) -> None:
    while pos + 8 <= end:
        name_off, n = struct.unpack_from("<II", raw, pos)
        pos += 8
        sname = btf.string(name_off)
        sidx = by_name.get(sname)
        for _ in range(n):
            if pos + 16 > end:
                raise UserLoadError(f".BTF.ext CO-RE records of {sname} run past their end")
            insn_off, type_id, acc_off, kind = struct.unpack_from("<IIII", raw, pos)
            pos += rec_size
            if kind not in CORE_KINDS:
                raise UserLoadError(f"unknown CO-RE relocation kind {kind} in {sname}")
            if sidx is None or sidx not in code or insn_off % 8 or \
                    insn_off // 8 >= len(code[sidx]):
                raise UserLoadError(f"CO-RE relocation {CORE_KINDS[kind]} at {sname}+"
                                    f"{insn_off // 8} is not on an instruction")
            if type_id >= len(btf):
                raise UserLoadError(f"CO-RE relocation at {sname}+{insn_off // 8} names BTF "
                                    f"type {type_id}: none")
            out.append(CoreRelo(sname, sidx, insn_off // 8, type_id, btf.string(acc_off),
                                kind, len(out)))


def line_info(elf: _Elf, btf: BTF) -> dict[tuple[int, int], str]:
    """(section index, insn index) -> "file:line: text" from .BTF.ext line info
    (for error messages; malformed line info is ignored, it changes nothing)."""
    ext = elf.section(".BTF.ext")
    out: dict[tuple[int, int], str] = {}
    if ext is None or len(ext.data) < 24:
        return out
    raw = ext.data
    try:
        hdr_len = struct.unpack_from("<I", raw, 4)[0]
        line_off, line_len = struct.unpack_from("<II", raw, 16)
        pos = hdr_len + line_off
        end = min(pos + line_len, len(raw))
        rec_size = struct.unpack_from("<I", raw, pos)[0]
        pos += 4
        by_name = {s.name: s.index for s in elf.sections}
        while rec_size >= 16 and pos + 8 <= end:
            name_off, n = struct.unpack_from("<II", raw, pos)
            pos += 8
            sidx = by_name.get(btf.string(name_off), -1)
            for _ in range(n):
                insn_off, file_off, text_off, line_col = struct.unpack_from("<IIII", raw, pos)
                pos += rec_size
                text = btf.string(text_off).strip()
                if text:
                    fname = btf.string(file_off).rsplit("/", 1)[-1]
                    out[(sidx, insn_off // 8)] = f"{fname}:{line_col >> 10}: {text}"
    except (struct.error, BTFError, UserLoadError):
        return out
    return out
