"""The eBPF instruction set (RFC 9669): encoding constants, decoding,
validation and a disassembler.

An instruction is 8 bytes: ``code`` (u8), ``dst:4 | src:4`` (u8, dst in the
low nibble on little-endian hosts), ``off`` (s16) and ``imm`` (s32).  The
64-bit immediate load (``LD | IMM | DW``) takes two slots; its second slot
carries the upper 32 bits in ``imm``.

:func:`decode` turns raw bytes into :class:`Insn` tuples (the second slot of
a wide load is kept, marked :data:`FILLER`), :func:`check` says why an
instruction is not valid, :func:`disasm` prints one the way the kernel's
verifier log does (``r1 = *(u32 *)(r2 +4)``).  Both interpreter backends
consume the same decoded arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

__all__ = ["Insn", "check", "decode", "disasm", "encode"]

# classes
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
# sizes
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
SIZE_BYTES = {W: 4, H: 2, B: 1, DW: 8}
SIZE_NAME = {W: "u32", H: "u16", B: "u8", DW: "u64"}
SSIZE_NAME = {W: "s32", H: "s16", B: "s8"}
# modes
IMM, ABS, IND, MEM, MEMSX, ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0
# source
K, X = 0x00, 0x08
# ALU operations
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
# jump operations
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE, JSLT, JSLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
# atomic operations (imm of STX | ATOMIC)
FETCH = 0x01
XCHG = 0xE0 | FETCH
CMPXCHG = 0xF0 | FETCH
LOAD_ACQ = 0x100
STORE_REL = 0x110
# ld_imm64 source (pseudo) values
PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, PSEUDO_BTF_ID, PSEUDO_FUNC = 1, 2, 3, 4
PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE = 5, 6
# call source values
PSEUDO_CALL, PSEUDO_KFUNC_CALL = 1, 2

LD_IMM64 = LD | IMM | DW  # 0x18
#: ``code`` given to the second slot of a 64-bit immediate load by :func:`decode`.
FILLER = -1

_INSN = struct.Struct("<BBhi")

ALU_NAMES = {ADD: "+=", SUB: "-=", MUL: "*=", DIV: "/=", OR: "|=", AND: "&=", LSH: "<<=",
             RSH: ">>=", MOD: "%=", XOR: "^=", MOV: "=", ARSH: "s>>="}
JMP_NAMES = {JEQ: "==", JGT: ">", JGE: ">=", JSET: "&", JNE: "!=", JSGT: "s>", JSGE: "s>=",
             JLT: "<", JLE: "<=", JSLT: "s<", JSLE: "s<="}
ATOMIC_NAMES = {ADD: "add", OR: "or", AND: "and", XOR: "xor"}


class Insn(NamedTuple):
    """One decoded instruction slot.  For a 64-bit immediate load ``imm`` is the
    whole 64-bit value (unsigned) and the next slot has ``code`` FILLER."""

    code: int
    dst: int
    src: int
    off: int
    imm: int


def decode(raw: bytes | bytearray | memoryview) -> list[Insn]:
    """Decode a program's bytes (a multiple of 8) into instruction slots."""
    if len(raw) % 8:
        raise ValueError(f"program size {len(raw)} is not a multiple of 8")
    out: list[Insn] = []
    n = len(raw) // 8
    i = 0
    while i < n:
        code, regs, off, imm = _INSN.unpack_from(raw, i * 8)
        dst, src = regs & 0xF, regs >> 4
        if code == LD_IMM64 and i + 1 < n:
            hi = _INSN.unpack_from(raw, i * 8 + 8)[3]
            out.append(Insn(code, dst, src, off, (imm & 0xFFFFFFFF) | ((hi & 0xFFFFFFFF) << 32)))
            out.append(Insn(FILLER, 0, 0, 0, hi))
            i += 2
            continue
        out.append(Insn(code, dst, src, off, imm))
        i += 1
    return out


def encode(insns: list[Insn]) -> bytes:
    """The bytes of decoded slots (inverse of :func:`decode`)."""
    parts = []
    for ins in insns:
        if ins.code == FILLER:
            continue
        imm = ins.imm
        if ins.code == LD_IMM64:
            lo, hi = imm & 0xFFFFFFFF, (imm >> 32) & 0xFFFFFFFF
            parts.append(_INSN.pack(ins.code, ins.dst | ins.src << 4, ins.off,
                                    lo - (1 << 32) if lo >= 1 << 31 else lo))
            parts.append(_INSN.pack(0, 0, 0, hi - (1 << 32) if hi >= 1 << 31 else hi))
            continue
        parts.append(_INSN.pack(ins.code, ins.dst | ins.src << 4, ins.off, imm))
    return b"".join(parts)


def iter_code(raw: bytes | bytearray | memoryview) -> Iterator[tuple[int, int, int, int, int]]:
    """Raw (code, dst, src, off, imm) per 8-byte slot, wide loads not joined."""
    for i in range(len(raw) // 8):
        code, regs, off, imm = _INSN.unpack_from(raw, i * 8)
        yield code, regs & 0xF, regs >> 4, off, imm


def check(ins: Insn) -> str | None:
    """Why ``ins`` is not a valid instruction, or None when it is.

    Legacy packet loads (``LD | ABS/IND``) are valid instructions but reported
    here too, since the runtime does not run them."""
    code, dst, src, off, imm = ins
    if code == FILLER:
        return None
    cls = code & 7
    if dst > 10 or (src > 10 and not (cls == LD or (cls in (JMP, JMP32) and code & 0xF0 == CALL))):
        return "register number out of range"
    if cls in (ALU, ALU64):
        return _check_alu(cls, code, dst, src, off, imm)
    if cls in (JMP, JMP32):
        return _check_jmp(cls, code, dst, src, off, imm)
    mode, size = code & 0xE0, code & 0x18
    if cls == LD:
        if code == LD_IMM64:
            if dst == 10:
                return "r10 (the frame pointer) is read-only"
            if src > PSEUDO_MAP_IDX_VALUE:
                return f"unknown ld_imm64 source {src}"
            return None
        if mode in (ABS, IND) and size != DW:
            return "legacy packet access (LD ABS/IND) is not supported"
        return "unknown LD instruction"
    if cls == LDX:
        if mode == MEM or (mode == MEMSX and size != DW):
            return "r10 (the frame pointer) is read-only" if dst == 10 else None
        return "unknown LDX mode"
    if cls == ST:
        return None if mode == MEM else "unknown ST mode"
    # STX
    if mode == MEM:
        return None
    if mode == ATOMIC:
        if size not in (W, DW):
            if imm in (LOAD_ACQ, STORE_REL):
                return None
            return "atomic operations need a 32- or 64-bit size"
        if imm in (ADD, OR, AND, XOR, ADD | FETCH, OR | FETCH, AND | FETCH, XOR | FETCH, XCHG,
                   CMPXCHG, LOAD_ACQ, STORE_REL):
            return None
        return f"unknown atomic operation {imm:#x}"
    return "unknown STX mode"


def _check_alu(cls: int, code: int, dst: int, src: int, off: int, imm: int) -> str | None:
    op = code & 0xF0
    if dst == 10:
        return "r10 (the frame pointer) is read-only"
    if op == END:
        if imm not in (16, 32, 64):
            return f"byte swap width {imm} is not 16, 32 or 64"
        if cls == ALU64 and code & X:
            return "unknown ALU64 END variant"
        return None
    if op == NEG:
        return None if code & X == 0 else "NEG takes no source"
    if op in (DIV, MOD):
        return None if off in (0, 1) else f"{'div' if op == DIV else 'mod'} offset {off}"
    if op == MOV:
        if off == 0:
            return None
        if code & X and off in ((8, 16, 32) if cls == ALU64 else (8, 16)):
            return None
        return f"mov offset {off}"
    if op in ALU_NAMES:
        return None if off == 0 else f"nonzero offset {off} on an ALU instruction"
    return f"unknown ALU operation {op:#x}"


def _check_jmp(cls: int, code: int, dst: int, src: int, off: int, imm: int) -> str | None:
    op = code & 0xF0
    if op == JA:
        return None if code & X == 0 else "unknown JA variant"
    if op == CALL:
        if cls != JMP:
            return "call in the JMP32 class"
        return None if src in (0, PSEUDO_CALL, PSEUDO_KFUNC_CALL) else f"call source {src}"
    if op == EXIT:
        return None if cls == JMP else "exit in the JMP32 class"
    if op in JMP_NAMES:
        return None
    return f"unknown jump operation {op:#x}"


def _hex(v: int) -> str:
    return hex(v) if v >= 0 else "-" + hex(-v)


def _o(off: int) -> str:
    return f"+{off}" if off >= 0 else str(off)


def disasm(ins: Insn, helper_name: Callable[[int], str] | None = None,
           annotation: str = "") -> str:
    """One instruction in the kernel verifier log's notation."""
    code, dst, src, off, imm = ins
    if code == FILLER:
        return "(second half of ld_imm64)"
    cls = code & 7
    note = f" ; {annotation}" if annotation else ""
    if cls in (ALU, ALU64):
        r = "r" if cls == ALU64 else "w"
        op = code & 0xF0
        s = f"{r}{src}" if code & X else _hex(imm)
        if op == END:
            if cls == ALU64:
                return f"r{dst} = bswap{imm} r{dst}"
            return f"r{dst} = {'be' if code & X else 'le'}{imm} r{dst}"
        if op == NEG:
            return f"{r}{dst} = -{r}{dst}"
        if op == MOV and off:
            return f"{r}{dst} = (s{off}){r}{src}"
        name = ALU_NAMES.get(op, f"?{op:#x}")
        if op in (DIV, MOD) and off == 1:
            name = "s" + name
        return f"{r}{dst} {name} {s}"
    if cls in (JMP, JMP32):
        op = code & 0xF0
        if op == JA:
            return f"gotol pc{_o(imm)}" if cls == JMP32 else f"goto pc{_o(off)}"
        if op == EXIT:
            return "exit"
        if op == CALL:
            if src == PSEUDO_CALL:
                return f"call pc{_o(imm)}{note}"
            if src == PSEUDO_KFUNC_CALL:
                return f"call kfunc#{imm}{note}"
            name = helper_name(imm) if helper_name else ""
            return f"call {name}#{imm}{note}" if name else f"call #{imm}{note}"
        r = "r" if cls == JMP else "w"
        s = f"{r}{src}" if code & X else _hex(imm)
        return f"if {r}{dst} {JMP_NAMES.get(op, '?')} {s} goto pc{_o(off)}"
    mode, size = code & 0xE0, code & 0x18
    if cls == LD:
        if code == LD_IMM64:
            kinds = {PSEUDO_MAP_FD: "map_fd", PSEUDO_MAP_VALUE: "map_value",
                     PSEUDO_BTF_ID: "btf_id", PSEUDO_FUNC: "func", PSEUDO_MAP_IDX: "map_idx",
                     PSEUDO_MAP_IDX_VALUE: "map_idx_value"}
            kind = f" {kinds[src]}" if src in kinds else ""
            return f"r{dst} = {imm:#x} ll{kind}{note}"
        sz = SIZE_NAME.get(size, "?")
        if mode == ABS:
            return f"r0 = *({sz} *)skb[{imm}]"
        if mode == IND:
            return f"r0 = *({sz} *)skb[r{src} + {imm}]"
        return f"(unknown LD {code:#04x})"
    if cls == LDX:
        names = SSIZE_NAME if mode == MEMSX else SIZE_NAME
        return f"r{dst} = *({names.get(size, '?')} *)(r{src} {_o(off)}){note}"
    if cls == ST:
        return f"*({SIZE_NAME[size]} *)(r{dst} {_o(off)}) = {_hex(imm)}"
    if mode == ATOMIC:
        return _disasm_atomic(size, dst, src, off, imm)
    return f"*({SIZE_NAME[size]} *)(r{dst} {_o(off)}) = r{src}"


def _disasm_atomic(size: int, dst: int, src: int, off: int, imm: int) -> str:
    r = "r" if size == DW else "w"
    mem = f"({SIZE_NAME.get(size, '?')} *)(r{dst} {_o(off)})"
    if imm == LOAD_ACQ:
        return f"r{src} = load_acquire({mem})"
    if imm == STORE_REL:
        return f"store_release({mem}, r{src})"
    if imm == XCHG:
        return f"{r}{src} = xchg({mem}, {r}{src})"
    if imm == CMPXCHG:
        return f"{r}0 = cmpxchg({mem}, {r}0, {r}{src})"
    name = ATOMIC_NAMES.get(imm & ~FETCH, "?")
    if imm & FETCH:
        return f"{r}{src} = atomic_fetch_{name}({mem}, {r}{src})"
    sym = ALU_NAMES.get(imm & ~FETCH, "?")
    return f"lock *{mem} {sym} {r}{src}"
