"""The pure-Python reference interpreter of the eBPF ISA (RFC 9669).

Backend interface (what a C interpreter implements the same way):

* input: a :class:`Image` per program -- the linked instruction slots
  (:class:`~._isa.Insn`) with every pseudo ``ld_imm64`` already resolved to a
  64-bit constant (a tagged address of a map handle, a global section, a
  function), the function table, and the name;
* the region table (:class:`~._memory.Memory`) every load and store is
  checked against;
* the helper table (id -> callable taking the machine and r1-r5);
* ``run(image, r1) -> r0`` with an instruction budget, a call stack of at
  most :data:`MAX_FRAMES` frames with their own :data:`STACK_SIZE`-byte stack
  each, and ``call(func_addr, args) -> r0`` for helpers that call back into
  the program (``bpf_loop``).

Each instruction is compiled once per image into a small Python closure
(register numbers, offsets and immediates bound in), so the loop only calls
them; calls, exits and helper calls are handled in the loop.  Every closure
works on unbounded Python ints and masks to 64 bits (ALU64) or zero-extends
from 32 bits (ALU32): division by zero gives 0 (``mod``: the dividend),
``INT_MIN / -1`` wraps to ``INT_MIN`` (``mod``: 0), shift counts are masked to
the width, signed operations (``sdiv``, ``smod``, ``s>>``, ``s<``...) see
two's-complement values.

A violation (bad address, read-only store, budget, stack depth, a helper
refusing an argument) raises :class:`~._memory.Fault` anywhere below and
leaves the loop as :class:`~bpfring.userspace.UserRuntimeError` naming the
instruction index and its disassembly.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _isa
from ._elf import FuncInfo, LinkedProgram
from ._errors import UserRuntimeError
from ._isa import Insn
from ._memory import FUNC_TAG, M64, Fault, Memory

__all__ = ["DEFAULT_BUDGET", "MAX_FRAMES", "STACK_SIZE", "Image", "Interpreter", "disasm_at",
           "error_at"]

M32 = 0xFFFF_FFFF
S64 = 1 << 63
S32 = 1 << 31
STACK_SIZE = 512
MAX_FRAMES = 8  # MAX_CALL_FRAMES of the verifier
MAX_TAIL_CALLS = 33  # MAX_TAIL_CALL_CNT
DEFAULT_BUDGET = 1_000_000
TAIL_CALL = 12

Helper = Callable[..., int]


@dataclass
class Image:
    """A program bound to an object: resolved instructions and notes for errors."""

    name: str
    insns: list[Insn]
    functions: list[FuncInfo]
    notes: dict[int, str] = field(default_factory=dict)
    prog: LinkedProgram | None = None
    #: pcs where a function starts: the only valid callback targets.
    entries: frozenset[int] = frozenset()
    #: implementations of the kfuncs the program calls, by call imm.
    kfuncs: list[Callable[..., int]] = field(default_factory=list)


def _s64(x: int) -> int:
    return x - (1 << 64) if x & S64 else x


def _s32(x: int) -> int:
    x &= M32
    return x - (1 << 32) if x & S32 else x


def _sdiv(a: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    sa = _s64(a) if bits == 64 else _s32(a)
    sb = _s64(b) if bits == 64 else _s32(b)
    if sb == 0:
        return 0
    q = abs(sa) // abs(sb)
    return (-q if (sa < 0) != (sb < 0) else q) & mask


def _smod(a: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    sa = _s64(a) if bits == 64 else _s32(a)
    sb = _s64(b) if bits == 64 else _s32(b)
    if sb == 0:
        return a & mask
    r = abs(sa) % abs(sb)
    return (-r if sa < 0 else r) & mask


def _bswap(x: int, width: int) -> int:
    return int.from_bytes((x & ((1 << width) - 1)).to_bytes(width // 8, "little"), "big")


def _sext(x: int, bits: int) -> int:
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


# Binary operations on (dst, src) already masked to the width; results are masked.
def _alu_fn(op: int, off: int, bits: int) -> Callable[[int, int], int]:
    mask = (1 << bits) - 1
    sh = bits - 1
    if op == _isa.ADD:
        return lambda a, b: (a + b) & mask
    if op == _isa.SUB:
        return lambda a, b: (a - b) & mask
    if op == _isa.MUL:
        return lambda a, b: (a * b) & mask
    if op == _isa.DIV:
        if off == 1:
            return lambda a, b: _sdiv(a, b, bits)
        return lambda a, b: a // b if b else 0
    if op == _isa.MOD:
        if off == 1:
            return lambda a, b: _smod(a, b, bits)
        return lambda a, b: a % b if b else a
    if op == _isa.OR:
        return lambda a, b: a | b
    if op == _isa.AND:
        return lambda a, b: a & b
    if op == _isa.XOR:
        return lambda a, b: a ^ b
    if op == _isa.LSH:
        return lambda a, b: (a << (b & sh)) & mask
    if op == _isa.RSH:
        return lambda a, b: a >> (b & sh)
    if op == _isa.ARSH:
        return lambda a, b: (_sext(a, bits) >> (b & sh)) & mask
    if op == _isa.MOV:
        if off:
            return lambda a, b: _sext(b, off) & mask
        return lambda a, b: b
    raise AssertionError(f"ALU op {op:#x}")


_CMP: dict[int, Callable[[int, int], bool]] = {
    _isa.JEQ: lambda a, b: a == b,
    _isa.JNE: lambda a, b: a != b,
    _isa.JGT: lambda a, b: a > b,
    _isa.JGE: lambda a, b: a >= b,
    _isa.JLT: lambda a, b: a < b,
    _isa.JLE: lambda a, b: a <= b,
    _isa.JSET: lambda a, b: bool(a & b),
}
# Signed comparisons become unsigned ones after flipping the sign bit.
_SIGNED = {_isa.JSGT: _isa.JGT, _isa.JSGE: _isa.JGE, _isa.JSLT: _isa.JLT, _isa.JSLE: _isa.JLE}

_STRUCTS = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"),
            8: struct.Struct("<Q")}


def callback_target(image: Image | None, mem: Memory, func_addr: int,
                    depth: int) -> tuple[Image, int]:
    """The image and instruction index of the callback at ``func_addr``
    (given to a helper), called from frame ``depth``: a Fault unless it is a
    function of the running program and one more frame fits.  Both
    interpreters check a callback with it."""
    assert image is not None
    target = func_addr - FUNC_TAG
    if not 0 <= target < len(image.insns) or target not in image.entries:
        raise Fault(f"callback {mem.describe(func_addr)} is not a function of {image.name}")
    if depth + 1 >= MAX_FRAMES:
        raise Fault(f"call stack too deep (more than {MAX_FRAMES} frames)")
    return image, target


def disasm_at(image: Image, pc: int, helper_name: Callable[[int], str]) -> str:
    """The disassembly of ``image``'s instruction ``pc`` (for errors)."""
    if not 0 <= pc < len(image.insns):
        return "(no instruction)"
    return _isa.disasm(image.insns[pc], helper_name, image.notes.get(pc, ""))


def error_at(image: Image, pc: int, message: str, helper_name: Callable[[int], str]
             ) -> UserRuntimeError:
    """The :class:`UserRuntimeError` of a violation at ``pc`` of ``image``: the
    program, function, instruction and source line (both backends use it)."""
    fn = ""
    for f in reversed(image.functions):
        if f.start <= pc < f.start + f.size:
            fn = f.name
            break
    source = image.prog.source_at(pc) if image.prog is not None else ""
    return UserRuntimeError(message, program=image.name, pc=pc,
                            insn=disasm_at(image, pc, helper_name), function=fn,
                            source=source)


class Interpreter:
    """Runs images of one object: its registers, frames and stacks."""

    def __init__(self, mem: Memory, helpers: dict[int, tuple[str, Helper]],
                 tail_target: Callable[[int, int], Image | None], budget: int = DEFAULT_BUDGET
                 ) -> None:
        self.mem = mem
        self.helpers = helpers
        self.tail_target = tail_target
        self.budget = budget
        self.regs = [0] * 11
        self._stacks = [bytearray(STACK_SIZE) for _ in range(MAX_FRAMES)]
        self._stack_base = [mem.add(b, f"stack frame {i}", kind="stack")
                            for i, b in enumerate(self._stacks)]
        self._frames: list[tuple[Any, ...]] = []
        self._compiled: dict[int, list[Callable[[], int | None] | None]] = {}
        self.count = 0
        self._limit = 0
        self.tail_calls = 0
        self.image: Image | None = None
        self.context: Any = None  # per-run state helpers use (set by the object)

    # public ----------------------------------------------------------------------------

    def run(self, image: Image, r1: int, budget: int | None = None) -> int:
        """Run ``image`` from its first instruction with ``r1``; return r0."""
        regs = self.regs
        for i in range(11):
            regs[i] = 0
        regs[1] = r1 & M64
        self._frames.clear()
        self._stacks[0][:] = bytes(STACK_SIZE)
        regs[10] = self._stack_base[0] + STACK_SIZE
        self.count = 0
        self._limit = self.budget if budget is None else budget
        self.tail_calls = 0
        return self._exec(image, 0, 0)

    def call(self, func_addr: int, args: Sequence[int]) -> int:
        """Call the program's function at ``func_addr`` (a callback given to a
        helper) with up to five arguments, in a new frame; return its r0."""
        image, target = callback_target(self.image, self.mem, func_addr, len(self._frames))
        regs = self.regs
        depth = len(self._frames) + 1
        saved = tuple(regs)
        self._frames.append((image, -1))
        try:
            for i, a in enumerate(args[:5]):
                regs[i + 1] = a & M64
            self._stacks[depth][:] = bytes(STACK_SIZE)
            regs[10] = self._stack_base[depth] + STACK_SIZE
            r0 = self._exec(image, target, len(self._frames))
        finally:
            self._frames.pop()
            self.image = image
            regs[:] = saved
        return r0

    def disasm(self, image: Image, pc: int) -> str:
        return disasm_at(image, pc, self.helper_name)

    def helper_name(self, hid: int) -> str:
        h = self.helpers.get(hid)
        return h[0] if h else ""

    # the loop --------------------------------------------------------------------------

    def _exec(self, image: Image, pc: int, stop: int) -> int:
        regs = self.regs
        frames = self._frames
        helpers = self.helpers
        self.image = image
        insns = image.insns
        fns = self._fns(image)
        count = self.count
        limit = self._limit
        n = len(insns)
        try:
            while True:
                count += 1
                if count > limit:
                    raise Fault(f"instruction budget of {limit} exhausted (runaway loop?)")
                f = fns[pc]
                if f is not None:
                    nxt = f()
                    pc = pc + 1 if nxt is None else nxt
                    continue
                ins = insns[pc]
                code = ins.code
                if code == _isa.JMP | _isa.EXIT:
                    if len(frames) == stop:
                        self.count = count
                        return regs[0]
                    image, ret, r6, r7, r8, r9, r10 = frames.pop()
                    regs[6], regs[7], regs[8], regs[9], regs[10] = r6, r7, r8, r9, r10
                    self.image = image
                    insns = image.insns
                    fns = self._fns(image)
                    n = len(insns)
                    pc = ret
                    continue
                if code == _isa.JMP | _isa.CALL:
                    if ins.src == _isa.PSEUDO_CALL:
                        depth = len(frames) + 1
                        if depth >= MAX_FRAMES:
                            raise Fault(f"call stack too deep (more than {MAX_FRAMES} frames)")
                        frames.append((image, pc + 1, regs[6], regs[7], regs[8], regs[9],
                                       regs[10]))
                        self._stacks[depth][:] = bytes(STACK_SIZE)
                        regs[10] = self._stack_base[depth] + STACK_SIZE
                        pc = pc + ins.imm + 1
                        continue
                    hid = ins.imm
                    if ins.src == _isa.PSEUDO_KFUNC_CALL:
                        self.count = count
                        regs[0] = image.kfuncs[hid](self, regs[1], regs[2], regs[3], regs[4],
                                                    regs[5]) & M64
                        count = self.count
                        self.image = image
                        pc += 1
                        continue
                    if hid == TAIL_CALL:
                        target = self.tail_target(regs[2], regs[3] & M32)
                        if target is not None and self.tail_calls < MAX_TAIL_CALLS:
                            self.tail_calls += 1
                            image = target
                            self.image = image
                            insns = image.insns
                            fns = self._fns(image)
                            n = len(insns)
                            depth = len(frames)
                            self._stacks[depth][:] = bytes(STACK_SIZE)
                            regs[10] = self._stack_base[depth] + STACK_SIZE
                            pc = 0
                            continue
                        pc += 1  # a failed tail call falls through
                        continue
                    self.count = count
                    _name, fn = helpers[hid]
                    regs[0] = fn(self, regs[1], regs[2], regs[3], regs[4], regs[5]) & M64
                    count = self.count
                    self.image = image
                    pc += 1
                    continue
                raise Fault(f"instruction {code:#04x} cannot run")  # pragma: no cover
        except Fault as e:
            raise self._error(image, pc, str(e)) from None
        except UserRuntimeError:
            raise
        except RecursionError:
            raise self._error(image, pc, "Python recursion limit reached") from None
        except (IndexError, KeyError) as e:
            if not 0 <= pc < n:
                raise self._error(image, pc, f"the program counter left the program ({e})"
                                  ) from None
            raise self._error(image, pc, f"internal error: {type(e).__name__}: {e}") from e
        except (TypeError, ValueError, OverflowError, struct.error, BufferError) as e:
            raise self._error(image, pc, f"internal error: {type(e).__name__}: {e}") from e

    def _error(self, image: Image, pc: int, message: str) -> UserRuntimeError:
        return error_at(image, pc, message, self.helper_name)

    # compile ---------------------------------------------------------------------------

    def _fns(self, image: Image) -> list[Callable[[], int | None] | None]:
        fns = self._compiled.get(id(image))
        if fns is None:
            fns = [self._compile(image.insns, pc) for pc in range(len(image.insns))]
            self._compiled[id(image)] = fns
        return fns

    def _compile(self, insns: list[Insn], pc: int) -> Callable[[], int | None] | None:
        ins = insns[pc]
        code, d, s, off, imm = ins
        if code == _isa.FILLER:
            def filler() -> int | None:
                raise Fault("jumped into the middle of an ld_imm64")
            return filler
        cls = code & 7
        regs = self.regs
        if cls in (_isa.ALU, _isa.ALU64):
            return _compile_alu(regs, cls, code, d, s, off, imm)
        if cls in (_isa.JMP, _isa.JMP32):
            op = code & 0xF0
            if op in (_isa.CALL, _isa.EXIT):
                return None
            return _compile_jmp(regs, cls, code, d, s, off, imm, pc)
        if code == _isa.LD_IMM64:
            value, t = imm & M64, pc + 2

            def ld_imm64() -> int | None:
                regs[d] = value
                return t
            return ld_imm64
        return _compile_mem(regs, self.mem, cls, code, d, s, off, imm)


def _compile_alu(regs: list[int], cls: int, code: int, d: int, s: int, off: int,
                 imm: int) -> Callable[[], int | None]:
    op = code & 0xF0
    is64 = cls == _isa.ALU64
    mask = M64 if is64 else M32
    if op == _isa.END:
        width = imm
        if is64 or code & _isa.X:  # bswap, or to big endian on a little-endian host

            def bswap() -> int | None:
                regs[d] = _bswap(regs[d], width)
                return None
            return bswap
        wmask = (1 << width) - 1

        def to_le() -> int | None:
            regs[d] &= wmask
            return None
        return to_le
    if op == _isa.NEG:
        def neg() -> int | None:
            regs[d] = (-regs[d]) & mask
            return None
        return neg
    src_x = bool(code & _isa.X)
    k = imm & mask
    if op == _isa.MOV and not off:
        if src_x:
            if is64:
                def mov64_x() -> int | None:
                    regs[d] = regs[s]
                    return None
                return mov64_x

            def mov32_x() -> int | None:
                regs[d] = regs[s] & M32
                return None
            return mov32_x

        def mov_k() -> int | None:
            regs[d] = k
            return None
        return mov_k
    if op == _isa.ADD and is64:
        if src_x:
            def add64_x() -> int | None:
                regs[d] = (regs[d] + regs[s]) & M64
                return None
            return add64_x

        def add64_k() -> int | None:
            regs[d] = (regs[d] + k) & M64
            return None
        return add64_k
    fn = _alu_fn(op, off, 64 if is64 else 32)
    if src_x:
        def alu_x() -> int | None:
            regs[d] = fn(regs[d] & mask, regs[s] & mask)
            return None
        return alu_x

    def alu_k() -> int | None:
        regs[d] = fn(regs[d] & mask, k)
        return None
    return alu_k


def _compile_jmp(regs: list[int], cls: int, code: int, d: int, s: int, off: int, imm: int,
                 pc: int) -> Callable[[], int | None]:
    op = code & 0xF0
    if op == _isa.JA:
        t = pc + (imm if cls == _isa.JMP32 else off) + 1

        def ja() -> int | None:
            return t
        return ja
    t = pc + off + 1
    is64 = cls == _isa.JMP
    mask = M64 if is64 else M32
    flip = 0
    if op in _SIGNED:
        flip = S64 if is64 else S32
        op = _SIGNED[op]
    cmp = _CMP[op]
    src_x = bool(code & _isa.X)
    k = (imm & mask) ^ flip
    if op == _isa.JEQ and not flip:
        if src_x:
            def jeq_x() -> int | None:
                return t if (regs[d] & mask) == (regs[s] & mask) else None
            return jeq_x

        def jeq_k() -> int | None:
            return t if (regs[d] & mask) == k else None
        return jeq_k
    if op == _isa.JNE and not flip:
        if src_x:
            def jne_x() -> int | None:
                return t if (regs[d] & mask) != (regs[s] & mask) else None
            return jne_x

        def jne_k() -> int | None:
            return t if (regs[d] & mask) != k else None
        return jne_k
    if src_x:
        def jmp_x() -> int | None:
            return t if cmp((regs[d] & mask) ^ flip, (regs[s] & mask) ^ flip) else None
        return jmp_x

    def jmp_k() -> int | None:
        return t if cmp((regs[d] & mask) ^ flip, k) else None
    return jmp_k


def _compile_mem(regs: list[int], mem: Memory, cls: int, code: int, d: int, s: int, off: int,
                 imm: int) -> Callable[[], int | None]:
    size = _isa.SIZE_BYTES[code & 0x18]
    st = _STRUCTS[size]
    unpack, pack = st.unpack_from, st.pack_into
    vmask = (1 << (8 * size)) - 1
    regions = mem.regions
    mode = code & 0xE0

    def fault(addr: int, write: bool) -> Fault:
        addr &= M64
        reg = regions.get(addr >> 32)
        what = "write" if write else "read"
        if reg is not None and write and not reg.writable and \
                (addr & M32) + size <= reg.size:
            return Fault(f"{what} of {size} bytes to read-only {reg.kind} {reg.name}")
        return Fault(f"invalid {what} of {size} bytes at {mem.describe(addr)}")

    if cls == _isa.LDX:
        signed = mode == _isa.MEMSX
        sbit = 1 << (8 * size - 1)

        def ldx() -> int | None:
            a = (regs[s] + off) & M64
            reg = regions.get(a >> 32)
            o = a & M32
            if reg is None or o + size > reg.size:
                raise fault(a, False)
            if reg.load is not None:
                v = reg.load(o, size)
                if v is not None:
                    regs[d] = v & M64
                    return None
            v = unpack(reg.buf, o)[0]
            if signed and v & sbit:
                v = (v - (sbit << 1)) & M64
            regs[d] = v
            return None
        return ldx

    if cls == _isa.ST:
        k = imm & vmask

        def st_imm() -> int | None:
            a = (regs[d] + off) & M64
            reg = regions.get(a >> 32)
            o = a & M32
            if reg is None or o + size > reg.size or not reg.writable:
                raise fault(a, True)
            pack(reg.buf, o, k)
            return None
        return st_imm

    if mode == _isa.MEM:
        def stx() -> int | None:
            a = (regs[d] + off) & M64
            reg = regions.get(a >> 32)
            o = a & M32
            if reg is None or o + size > reg.size or not reg.writable:
                raise fault(a, True)
            pack(reg.buf, o, regs[s] & vmask)
            return None
        return stx

    return _compile_atomic(regs, mem, size, d, s, off, imm, fault)


def _compile_atomic(regs: list[int], mem: Memory, size: int, d: int, s: int, off: int, imm: int,
                    fault: Callable[[int, bool], Fault]) -> Callable[[], int | None]:
    st = _STRUCTS[size]
    unpack, pack = st.unpack_from, st.pack_into
    vmask = (1 << (8 * size)) - 1
    regions = mem.regions

    def locate(a: int, write: bool) -> tuple[Any, int]:
        reg = regions.get(a >> 32)
        o = a & M32
        if reg is None or o + size > reg.size or (write and not reg.writable):
            raise fault(a, write)
        if o % size:
            raise Fault(f"misaligned atomic access of {size} bytes at {mem.describe(a)}")
        return reg, o

    if imm == _isa.LOAD_ACQ:
        def load_acquire() -> int | None:
            reg, o = locate((regs[s] + off) & M64, False)
            regs[d] = unpack(reg.buf, o)[0]
            return None
        return load_acquire
    if imm == _isa.STORE_REL:
        def store_release() -> int | None:
            reg, o = locate((regs[d] + off) & M64, True)
            pack(reg.buf, o, regs[s] & vmask)
            return None
        return store_release
    if imm == _isa.XCHG:
        def xchg() -> int | None:
            reg, o = locate((regs[d] + off) & M64, True)
            old = unpack(reg.buf, o)[0]
            pack(reg.buf, o, regs[s] & vmask)
            regs[s] = old
            return None
        return xchg
    if imm == _isa.CMPXCHG:
        def cmpxchg() -> int | None:
            reg, o = locate((regs[d] + off) & M64, True)
            old = unpack(reg.buf, o)[0]
            if old == regs[0] & vmask:
                pack(reg.buf, o, regs[s] & vmask)
            regs[0] = old
            return None
        return cmpxchg
    op = imm & ~_isa.FETCH
    fetch = bool(imm & _isa.FETCH)
    ops: dict[int, Callable[[int, int], int]] = {
        _isa.ADD: lambda a, b: (a + b) & vmask, _isa.OR: lambda a, b: a | b,
        _isa.AND: lambda a, b: a & b, _isa.XOR: lambda a, b: a ^ b}
    fn = ops[op]

    def atomic() -> int | None:
        reg, o = locate((regs[d] + off) & M64, True)
        old = unpack(reg.buf, o)[0]
        pack(reg.buf, o, fn(old, regs[s] & vmask))
        if fetch:
            regs[s] = old
        return None
    return atomic
