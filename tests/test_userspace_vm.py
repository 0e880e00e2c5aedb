"""The two interpreters of the user-space runtime give the same results.

``make test`` runs the userspace test modules on the C interpreter (the
default when the accelerator is built) and ``make test-pure`` on the
pure-Python reference (``BPFRING_PURE_PYTHON=1``); this module compares the
two directly, in one process:

* every BPF program of the userspace tests (tests/bpf/userspace_*.bpf.c,
  echo, diff_prog and bpfring's demo program) runs on both, on the same
  inputs: return values, full r0, instruction counts, errors (message, pc,
  disassembly) and the bytes of every map afterwards must be identical;
* random loop-free ALU/JMP/memory/atomic programs (hypothesis) run on both
  and, when the kernel's verifier takes them, in the kernel as a socket
  filter through BPF_PROG_TEST_RUN;
* the safety model: a hostile instruction stream never crashes the process.
"""

from __future__ import annotations

import ctypes
import os
import random
import struct
from pathlib import Path

import pytest
from conftest import BPF_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interp_backends import backend, needs_c_vm

from bpfring.userspace import UserRuntimeError, _cinterp, _isa, load, load_insns

M64 = (1 << 64) - 1
M32 = 0xFFFF_FFFF
Ins = _isa.Insn

pytestmark = needs_c_vm


def test_backend_choice():
    """The object's interpreter follows the chosen backend."""
    prog = _isa.encode([Ins(0xB7, 0, 0, 0, 7), Ins(0x95, 0, 0, 0, 0)])
    for name, cls in (("c", _cinterp.CInterpreter), ("python", _cinterp.Interpreter)):
        with backend(name), load_insns(prog) as obj:
            assert type(obj._interp) is cls
            assert obj.programs["prog"].run() == 7
    if os.environ.get("BPFRING_PURE_PYTHON") == "1":
        assert _cinterp.backend() == "python"
        assert "BPFRING_PURE_PYTHON=1" in _cinterp.backend_status()
    else:
        assert _cinterp.backend() == "c"
        assert _cinterp.backend_status().endswith(": C")
    with pytest.raises(ValueError):
        _cinterp.set_backend("jit")


# every test program on both interpreters --------------------------------------------

def _programs() -> list[Path]:
    import bpfring

    demo = Path(bpfring.__file__).parent / "bpf" / "demo.bpf.c"
    return [*sorted(BPF_DIR.glob("userspace_*.bpf.c")), BPF_DIR / "echo.bpf.c",
            BPF_DIR / "diff_prog.bpf.c", demo]


def _inputs(seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    out = [(b"", b""), (bytes(64), bytes(64))]
    for n in (0, 14, 60, 128):
        for m in (0, 8, 24, 64):
            out.append((rng.randbytes(n), rng.randbytes(m)))
    # small operands in the ctx: loop counts, indexes and sizes stay sane
    for i in range(12):
        out.append((rng.randbytes(64 * (i % 2)), struct.pack("<8Q", *(rng.choice(
            (0, 1, 2, 3, 7, 8, 16, 31, 32, 63, 64, 255, M32, M64)) for _ in range(8)))))
    return out


def _outcome(obj, name: str, data: bytes, ctx: bytes):
    prog = obj.programs[name]
    try:
        rc = prog.run(data=data, ctx=ctx)
    except UserRuntimeError as e:
        return ("fault", str(e), e.pc, e.insn, obj._interp.count)
    except (ValueError, TypeError, OSError) as e:  # refused inputs: the same on both
        return (type(e).__name__, str(e))
    lr = prog.last_run
    return (rc, lr.r0, lr.data, lr.ctx, lr.insns)


def _map_bytes(obj) -> dict[str, bytes]:
    out = {}
    for name, m in obj.maps.items():
        b = getattr(m, "_backing", None)
        if b is not None and b.mm is not None:
            out[name] = bytes(b.view)
    return out


@pytest.mark.parametrize("src", _programs(), ids=lambda p: p.name)
def test_every_test_program_same_on_both(src: Path):
    import bpfring

    path = bpfring.build(src)
    results = {}
    for name in ("c", "python"):
        with backend(name), load(path, seed=1234) as obj:
            runs = []
            for pname in sorted(obj.programs):
                for data, ctx in _inputs(99):
                    runs.append((pname, _outcome(obj, pname, data, ctx)))
            results[name] = (runs, _map_bytes(obj))
    c_runs, c_maps = results["c"]
    p_runs, p_maps = results["python"]
    assert len(c_runs) == len(p_runs)
    for a, b in zip(c_runs, p_runs, strict=True):
        assert a == b
    assert c_maps.keys() == p_maps.keys()
    for k in c_maps:
        assert c_maps[k] == p_maps[k], k
    assert any(isinstance(r[1][0], int) for r in c_runs)  # something ran to its exit


# random programs: C, pure and the kernel --------------------------------------------

_ALU_OPS = (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0)
_JMP_OPS = (0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0)
_EDGES = (0, 1, 2, 7, 31, 32, 63, 64, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF,
          0x8000_0000, M32, 1 << 32, (1 << 63) - 1, 1 << 63, M64, M64 - 1,
          0xFFFF_FFFF_8000_0000, 0x1234_5678_9ABC_DEF0)
_SIZES = (0x00, 0x08, 0x10, 0x18)  # W H B DW
_SZ = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_ATOMICS = (0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1)
SLOTS = 4

value = st.one_of(st.sampled_from(_EDGES), st.integers(0, M64))
reg = st.integers(0, 9)


@st.composite
def body_insn(draw, kernel: bool):
    kind = draw(st.sampled_from(("alu", "alu", "alu", "jmp", "ldx", "stx", "st", "atomic",
                                 "end", "movsx")))
    d, s = draw(reg), draw(reg)
    if kind == "alu":
        cls = draw(st.sampled_from((_isa.ALU, _isa.ALU64)))
        op = draw(st.sampled_from(_ALU_OPS))
        width = 64 if cls == _isa.ALU64 else 32
        off = draw(st.sampled_from((0, 1))) if op in (0x30, 0x90) else 0
        if op == 0x80:
            return Ins(cls | op, d, 0, 0, 0)
        if draw(st.booleans()):
            return Ins(cls | op | _isa.X, d, s, off, 0)
        if op in (0x60, 0x70, 0xC0):
            imm = draw(st.integers(0, width - 1 if kernel else 255))
        else:
            imm = draw(st.integers(-(1 << 31), (1 << 31) - 1))
            if op in (0x30, 0x90) and imm == 0 and kernel:
                imm = 3
        return Ins(cls | op, d, 0, off, imm)
    if kind == "movsx":
        if draw(st.booleans()):
            return Ins(_isa.ALU64 | 0xB0 | _isa.X, d, s, draw(st.sampled_from((8, 16, 32))), 0)
        return Ins(_isa.ALU | 0xB0 | _isa.X, d, s, draw(st.sampled_from((8, 16))), 0)
    if kind == "end":
        w = draw(st.sampled_from((16, 32, 64)))
        return Ins(draw(st.sampled_from((_isa.ALU64 | 0xD0, _isa.ALU | 0xD0,
                                       _isa.ALU | 0xD0 | _isa.X))), d, 0, 0, w)
    if kind == "jmp":
        cls = draw(st.sampled_from((_isa.JMP, _isa.JMP32)))
        op = draw(st.sampled_from(_JMP_OPS))
        off = draw(st.integers(0, 6))  # forward, clamped by the caller
        if draw(st.booleans()):
            return Ins(cls | op | _isa.X, d, s, off, 0)
        return Ins(cls | op, d, 0, off, draw(st.integers(-(1 << 31), (1 << 31) - 1)))
    size = draw(st.sampled_from(_SIZES))
    n = _SZ[size]
    slot = draw(st.integers(1, SLOTS))
    off = -8 * slot + n * draw(st.integers(0, 8 // n - 1))
    if kind == "ldx":
        if size != 0x18 and draw(st.booleans()):
            return Ins(_isa.LDX | _isa.MEMSX | size, d, 10, off, 0)
        return Ins(_isa.LDX | _isa.MEM | size, d, 10, off, 0)
    if kind == "stx":
        return Ins(_isa.STX | _isa.MEM | size, 10, s, off, 0)
    if kind == "st":
        return Ins(_isa.ST | _isa.MEM | size, 10, 0, off, draw(st.integers(-(1 << 31),
                                                                           (1 << 31) - 1)))
    size = draw(st.sampled_from((0x00, 0x18)))
    n = _SZ[size]
    off = -8 * slot + (n * draw(st.integers(0, 1)) if n == 4 else 0)
    return Ins(_isa.STX | _isa.ATOMIC | size, 10, s, off, draw(st.sampled_from(_ATOMICS)))


def _program(init: list[int], body: list[Ins]) -> list[Ins]:
    pro = [Ins(_isa.LD_IMM64, r, 0, 0, init[r] & M64) for r in range(10)]
    pro += [Ins(_isa.STX | _isa.MEM | 0x18, 10, k, -8 * k, 0) for k in range(1, SLOTS + 1)]
    n = len(body)
    fixed = []
    for i, ins in enumerate(body):  # forward jumps that stay inside the body
        if ins.code & 7 in (_isa.JMP, _isa.JMP32):
            ins = ins._replace(off=min(ins.off, n - i - 1))
        fixed.append(ins)
    epi = []
    for r in range(1, 10):  # fold every register and stack slot into r0
        epi += [Ins(_isa.ALU64 | 0x20, 0, 0, 0, 0x3B9ACA07),
                Ins(_isa.ALU64 | 0xA0 | _isa.X, 0, r, 0, 0)]
    for k in range(1, SLOTS + 1):
        epi += [Ins(_isa.LDX | _isa.MEM | 0x18, 1, 10, -8 * k, 0),
                Ins(_isa.ALU64 | 0x20, 0, 0, 0, 0x3B9ACA07),
                Ins(_isa.ALU64 | 0xA0 | _isa.X, 0, 1, 0, 0)]
    # the kernel reports 32 bits: fold the upper half in
    epi += [Ins(_isa.ALU64 | 0xB0 | _isa.X, 1, 0, 0, 0), Ins(_isa.ALU64 | 0x70, 1, 0, 0, 32),
            Ins(_isa.ALU64 | 0xA0 | _isa.X, 0, 1, 0, 0), Ins(_isa.JMP | _isa.EXIT, 0, 0, 0, 0)]
    return pro + fixed + epi


def _user(raw: bytes, name: str, budget: int | None = None):
    with backend(name), load_insns(raw, **({} if budget is None else {"budget": budget})) as obj:
        try:
            rc = obj.programs["prog"].run()
        except UserRuntimeError as e:
            return ("fault", str(e), e.pc)
        return rc & M32, obj.programs["prog"].last_run.r0, obj.programs["prog"].last_run.insns


_LICENSE = ctypes.create_string_buffer(b"GPL")


def _kernel_run(raw: bytes) -> int | None:
    """Load ``raw`` as a socket filter and test-run it; None if refused."""
    from bpfring import BPFError, _sys

    insns = ctypes.create_string_buffer(raw, len(raw))
    log = ctypes.create_string_buffer(1 << 16)
    attr = bytearray(_sys.ATTR_SIZE)
    struct.pack_into("<IIQQIIQ", attr, 0, 1, len(raw) // 8, ctypes.addressof(insns),
                     ctypes.addressof(_LICENSE), 1, len(log), ctypes.addressof(log))
    try:
        fd = _sys.bpf(5, attr, "loading a random program")
    except BPFError:
        return None
    try:
        return _sys.prog_test_run(fd, data=bytes(64)) & M32
    finally:
        os.close(fd)


_kernel_seen = {"accepted": 0, "tried": 0}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(init=st.lists(value, min_size=10, max_size=10),
       body=st.lists(body_insn(kernel=False), min_size=1, max_size=30),
       budget=st.one_of(st.none(), st.integers(0, 80)))
def test_random_programs_c_equals_pure(init, body, budget):
    """Also with budgets that run out anywhere: the C loop charges whole
    straight runs at once and must still stop at the reference's pc."""
    raw = _isa.encode(_program(init, body))
    assert _user(raw, "c", budget) == _user(raw, "python", budget)


@pytest.mark.usefixtures("kernel")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(init=st.lists(value, min_size=10, max_size=10),
       body=st.lists(body_insn(kernel=True), min_size=1, max_size=24))
def test_random_programs_c_pure_kernel(init, body):
    raw = _isa.encode(_program(init, body))
    c, p = _user(raw, "c"), _user(raw, "python")
    assert c == p
    _kernel_seen["tried"] += 1
    k = _kernel_run(raw)
    if k is None:
        return
    _kernel_seen["accepted"] += 1
    assert c[0] == k, (c, k)


def test_the_kernel_took_the_random_programs(kernel):
    """The comparison above did compare: the verifier accepts nearly all of them."""
    if not _kernel_seen["tried"]:
        pytest.skip("run with test_random_programs_c_pure_kernel")
    assert _kernel_seen["accepted"] >= _kernel_seen["tried"] * 0.9, _kernel_seen


# safety -----------------------------------------------------------------------------

@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=8, max_size=160).map(lambda b: b[:len(b) // 8 * 8]))
def test_hostile_bytes_never_crash(raw):
    """Random bytes either fail to load (the same way) or run to the same end on
    both interpreters, within the budget, with the process healthy."""
    results = []
    for name in ("c", "python"):
        with backend(name):
            try:
                obj = load_insns(raw + _isa.encode([Ins(0x95, 0, 0, 0, 0)]), budget=5000)
            except Exception as e:  # compared below
                results.append(("load", type(e).__name__, str(e)))
                continue
            with obj:
                try:
                    results.append(("ok", obj.programs["prog"].run()))
                except UserRuntimeError as e:
                    results.append(("fault", str(e), e.pc))
    assert results[0] == results[1]


def test_runaway_and_deep_calls_fault_on_c():
    loop = _isa.encode([Ins(0x05, 0, 0, -1, 0), Ins(0x95, 0, 0, 0, 0)])
    recurse = _isa.encode([Ins(0x85, 0, 1, 0, -1), Ins(0x95, 0, 0, 0, 0)])
    with backend("c"):
        with load_insns(loop, budget=1000) as obj:
            with pytest.raises(UserRuntimeError, match="budget of 1000 exhausted") as ei:
                obj.programs["prog"].run()
            assert ei.value.pc == 0 and "goto" in ei.value.insn
        with load_insns(recurse) as obj, \
                pytest.raises(UserRuntimeError, match="call stack too deep"):
            obj.programs["prog"].run()


def test_bench_userspace_runs(kernel):
    """``bpfring bench userspace`` (quick): every engine agrees (the suite
    exits non-zero otherwise) and the report has the ratios."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "benchmarks", "userspace", "--rounds", "1",
                          "--runs", "4", "--burst", "4", "--json"], cwd=root,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["suite"] == "userspace" and rep["insns_per_run"] == 4105
    assert {"c", "c-empty", "c-loop", "pure", "kernel", "user-maps", "bpf-calls",
            "kernel-maps"} <= rep["ns_per_run"].keys()
    assert rep["ratios"]["c_vs_pure"] > 0  # a ratio, measured (speed is for the benchmark)
    assert "user_maps_vs_bpf_calls" in rep["ratios"]  # the map contents were checked
    if "dpdk" not in rep["ns_per_run"]:
        assert any(n.startswith("dpdk: not run") for n in rep["notes"])
