"""The user-space interpreter's instruction semantics.

Differential: tests/bpf/userspace_alu.bpf.c runs one instruction (or a short
sequence) per case; the same object is loaded in the kernel (BPF_PROG_TEST_RUN)
and in user space and both must give the same return value and the same
globals, for edge operands and for hypothesis-drawn ones.  Then unit tests
of raw instruction sequences with known answers (RFC 9669's corner cases),
which need no kernel.
"""

from __future__ import annotations

import re
import struct

import pytest
from conftest import BPF_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfring.userspace import UserLoadError, UserRuntimeError, _isa, load, load_insns

M64 = (1 << 64) - 1
SRC = BPF_DIR / "userspace_alu.bpf.c"
CASES = {int(m.group(1)): m.group(2) for m in
         re.finditer(r"OP\((\d+), .*?\) /\* (.*?) \*/", SRC.read_text())}
EDGES = [0, 1, 2, 3, 7, 31, 32, 63, 64, 65, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF,
         0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF,
         0x8000_0000_0000_0000, M64, M64 - 1, 0xFFFF_FFFF_8000_0000, 0x1234_5678_9ABC_DEF0]


def _ctx(op: int, a: int, b: int) -> bytes:
    return struct.pack("<IIQQ", op, 0, a & M64, b & M64)


@pytest.fixture(scope="module")
def alu_path():
    import bpfring

    return bpfring.build(SRC)


@pytest.fixture(scope="module")
def kobj(alu_path, kernel):
    import bpfring

    with bpfring.load(alu_path) as obj:
        yield obj


@pytest.fixture(scope="module")
def uobj(alu_path):
    with load(alu_path) as obj:
        yield obj


def _both(kobj, uobj, op: int, a: int, b: int):
    ctx = _ctx(op, a, b)
    k = (kobj.programs["alu"].run(ctx=ctx), kobj.globals.result, kobj.globals.result2)
    u = (uobj.programs["alu"].run(ctx=ctx), uobj.globals.result, uobj.globals.result2)
    return k, u


def test_cases_cover_the_isa(uobj):
    """The program really contains the instructions the cases are named after."""
    assert len(CASES) > 150
    text = uobj.programs["alu"].disasm()
    for needle in ("s/= r1", "s%= r1", "w0 s/= w1", "(s8)r1", "(s16)r1", "(s32)r1", "bswap16",
                   "bswap64", "*(s8 *)", "*(s16 *)", "*(s32 *)", "gotol", "atomic_fetch_add",
                   "xchg(", "cmpxchg(", "lock *(u32 *)", "r0 = be16 r0", "r0 = le32 r0",
                   "if w0 s< -0x2", "if r0 & r1", "w0 %= 0x7", "r0 %= r1"):
        assert needle in text, needle


@pytest.mark.parametrize("op", sorted(CASES), ids=lambda op: f"{op}:{CASES[op]}")
def test_case_matches_kernel_on_edges(kobj, uobj, op):
    pairs = [(a, b) for a in EDGES[::3] for b in EDGES[1::2]] + [(a, a) for a in EDGES]
    for a, b in pairs:
        k, u = _both(kobj, uobj, op, a, b)
        assert u == k, f"{CASES[op]}: a={a:#x} b={b:#x}: kernel {k}, user space {u}"


_operand = st.one_of(st.sampled_from(EDGES), st.integers(0, M64),
                     st.integers(-(1 << 31), (1 << 31) - 1).map(lambda x: x & M64),
                     st.integers(0, 70))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(op=st.sampled_from(sorted(CASES)), a=_operand, b=_operand)
def test_random_operands_match_kernel(kobj, uobj, op, a, b):
    k, u = _both(kobj, uobj, op, a, b)
    assert u == k, f"{CASES[op]}: a={a:#x} b={b:#x}"


def test_unknown_case_returns_minus_one(uobj):
    assert uobj.programs["alu"].run(ctx=_ctx(10_000, 1, 2)) == -1


# --- raw instruction sequences (no kernel needed) -----------------------------------


def asm(*insns: tuple[int, int, int, int, int]) -> bytes:
    out = b""
    for code, dst, src, off, imm in insns:
        if code == _isa.LD_IMM64:
            out += struct.pack("<BBhi", code, dst | src << 4, off,
                               struct.unpack("<i", struct.pack("<I", imm & 0xFFFFFFFF))[0])
            out += struct.pack("<BBhi", 0, 0, 0,
                               struct.unpack("<i", struct.pack("<I", imm >> 32 & 0xFFFFFFFF))[0])
        else:
            out += struct.pack("<BBhi", code, dst | src << 4, off, imm)
    return out


def mov64(d, imm):
    return (0xB7, d, 0, 0, imm)


def ld64(d, value):
    return (_isa.LD_IMM64, d, 0, 0, value & M64)


EXIT = (0x95, 0, 0, 0, 0)


def run_raw(*insns, ctx: bytes | None = None) -> int:
    with load_insns(asm(*insns)) as obj:
        obj.programs["prog"].run(ctx=ctx)
        last = obj.programs["prog"].last_run
        assert last is not None
        return last.r0


@pytest.mark.parametrize("code,off,a,b,want", [
    (0x3F, 1, 1 << 63, M64, 1 << 63),           # sdiv64 INT_MIN / -1 = INT_MIN
    (0x9F, 1, 1 << 63, M64, 0),                 # smod64 INT_MIN % -1 = 0
    (0x3F, 1, 7, 0, 0),                         # sdiv64 by zero = 0
    (0x9F, 1, (-7) & M64, 0, (-7) & M64),       # smod64 by zero = dividend
    (0x3F, 1, (-7) & M64, 2, (-3) & M64),       # truncates toward zero
    (0x9F, 1, (-7) & M64, 2, (-1) & M64),       # remainder has the dividend's sign
    (0x9F, 1, 7, (-2) & M64, 1),
    (0x3C, 1, 0x8000_0000, 0xFFFF_FFFF, 0x8000_0000),  # sdiv32 INT_MIN / -1
    (0x9C, 1, 0xFFFF_FFFF_FFFF_FFF9, 0, 0xFFFF_FFF9),  # smod32 by 0: dividend, zero-extended
    (0x9C, 0, 0xFFFF_FFFF_0000_0005, 0, 5),            # mod32 by 0: upper half cleared
    (0x9F, 0, 12345, 0, 12345),                        # mod64 by 0: unchanged
    (0x3F, 0, 12345, 0, 0),                            # div64 by 0: 0
    (0x6F, 0, 1, 64, 1),                               # lsh64 by 64: masked to 0
    (0x6C, 0, 1, 33, 2),                               # lsh32 by 33: masked to 1
    (0xCC, 0, 0x8000_0000, 31, 0xFFFF_FFFF),           # arsh32 then zero-extend
    (0xCF, 0, 1 << 63, 127, M64),                      # arsh64 by 127 -> 63
])
def test_division_and_shift_corners(code, off, a, b, want):
    got = run_raw(ld64(0, a), ld64(1, b), (code, 0, 1, off, 0), EXIT)
    assert got == want


def test_movsx_and_bswap():
    assert run_raw(ld64(1, 0x80), (0xBF, 0, 1, 8, 0), EXIT) == (-128) & M64
    assert run_raw(ld64(1, 0xFFFF_8000), (0xBC, 0, 1, 16, 0), EXIT) == 0xFFFF_8000
    assert run_raw(ld64(1, 0x8000_0000), (0xBF, 0, 1, 32, 0), EXIT) == 0xFFFF_FFFF_8000_0000
    assert run_raw(ld64(0, 0x1122_3344_5566_7788), (0xD7, 0, 0, 0, 16), EXIT) == 0x8877
    assert run_raw(ld64(0, 0x1122_3344_5566_7788), (0xD7, 0, 0, 0, 64), EXIT) == \
        0x8877_6655_4433_2211
    assert run_raw(ld64(0, 0x1122_3344_5566_7788), (0xDC, 0, 0, 0, 32), EXIT) == 0x8877_6655
    assert run_raw(ld64(0, 0x1122_3344_5566_7788), (0xD4, 0, 0, 0, 16), EXIT) == 0x7788


def test_load_acquire_store_release_and_atomics_on_stack():
    got = run_raw(
        ld64(1, 0xDEAD_BEEF_0000_0001),
        (0xDB, 10, 1, -8, 0x110),        # store_release((u64 *)(r10 - 8), r1)
        (0xDB, 0, 10, -8, 0x100),        # r0 = load_acquire((u64 *)(r10 - 8))
        EXIT)
    assert got == 0xDEAD_BEEF_0000_0001
    got = run_raw(
        mov64(1, 5), (0x7B, 10, 1, -8, 0),   # *(u64 *)(r10 - 8) = 5
        mov64(2, 3), (0xDB, 10, 2, -8, 0x01),  # r2 = atomic_fetch_add(.., 3): r2 = 5
        (0x79, 0, 10, -8, 0),                # r0 = 8
        (0x0F, 0, 2, 0, 0),                  # r0 += r2 -> 13
        EXIT)
    assert got == 13


def test_bpf_to_bpf_call_has_its_own_frame():
    # main: *(r10-8) = 11; call sub; r0 += *(r10-8)   sub: *(r10-8) = 99; r0 = 1; exit
    got = run_raw(
        mov64(1, 11), (0x7B, 10, 1, -8, 0),
        (0x85, 0, 1, 0, 3),                  # call pc+3
        (0x79, 1, 10, -8, 0), (0x0F, 0, 1, 0, 0), EXIT,
        mov64(1, 99), (0x7B, 10, 1, -8, 0), mov64(0, 1), EXIT)
    assert got == 12


def test_callee_saved_registers_survive_a_call():
    got = run_raw(mov64(6, 40), (0x85, 0, 1, 0, 2), (0x0F, 0, 6, 0, 0), EXIT,
                  mov64(6, 1000), mov64(0, 2), EXIT)
    assert got == 42


def test_jump_out_of_the_program_is_a_load_error():
    with pytest.raises(UserLoadError, match="outside the function"):
        load_insns(asm(mov64(0, 0), (0x05, 0, 0, 5, 0), EXIT))
    with pytest.raises(UserLoadError, match="run off its end"):
        load_insns(asm(mov64(0, 0)))
    with pytest.raises(UserLoadError, match=r"invalid instruction .*0x8e"):
        load_insns(asm((0x8E, 0, 0, 0, 0), EXIT))
    with pytest.raises(UserLoadError, match="r10"):
        load_insns(asm(mov64(10, 0), EXIT))
    with pytest.raises(UserLoadError, match="legacy packet access"):
        load_insns(asm((0x30, 0, 0, 0, 0), EXIT))


def test_unknown_helper_is_a_load_error_naming_it():
    with pytest.raises(UserLoadError, match=r"bpf_get_current_task.*#35"):
        load_insns(asm((0x85, 0, 0, 0, 35), EXIT))


def test_error_names_instruction_and_disassembly():
    with pytest.raises(UserRuntimeError) as ei:
        run_raw(mov64(1, 0), (0x79, 0, 1, 16, 0), EXIT)
    e = ei.value
    assert e.pc == 1
    assert e.insn == "r0 = *(u64 *)(r1 +16)"
    assert "invalid read of 8 bytes at 0x10" in str(e)
    assert "insn 1" in str(e)


def test_disassembler_round_trips_every_case(uobj):
    prog = uobj.programs["alu"]
    raw = prog.raw
    assert _isa.encode(_isa.decode(raw)) == raw
    for ins in _isa.decode(raw):
        assert _isa.check(ins) is None
        assert "?" not in _isa.disasm(ins)
