"""CO-RE relocations: on kernel UAPI types user space and the kernel agree; on
a program's own types user space uses the object's BTF (the local layout)."""

from __future__ import annotations

import struct

import pytest
from conftest import BPF_DIR

import bpfring
from bpfring.userspace import UserLoadError, _elf, load


@pytest.fixture(scope="module")
def core_path():
    import bpfring

    return bpfring.build(BPF_DIR / "userspace_core.bpf.c")


def test_core_on_uapi_types_matches_kernel(core_path, kernel):
    import bpfring

    pkt = bytes(60)
    with bpfring.load(core_path) as k, load(core_path) as u:
        assert u.programs["core_xdp"].run(data=pkt) == k.programs["core_xdp"].run(data=pkt) == 2
        assert list(u.globals.out) == list(k.globals.out)
        assert list(u.globals.out) == [1, 4, 24, 16, 1, 3, 1, 60]


def test_core_records_are_read(core_path):
    image = _elf.parse(core_path.read_bytes(), "core")
    assert image.core_relos >= 7


def test_core_on_local_types():
    import bpfring

    path = bpfring.build(BPF_DIR / "userspace_core_local.bpf.c")
    with load(path, btf="object") as u:
        assert u.core_btf == "object"
        # struct point: x@0 (4), y@4 (2), z@8 (8), inner@16 {tag@16, w@20}: 24 bytes
        ctx = struct.pack("<IHxxQBxxxi", 7, 9, 1 << 40, 3, -5)
        assert u.programs["core_local"].run(ctx=ctx) == 9
        assert list(u.globals.out[:6]) == [1 << 40, (-5) & ((1 << 64) - 1), 20, 2, 24, 1]
        assert u.btf.sizeof(u.btf.find("point").id) == 24
        assert u.programs["core_guarded"].run(ctx=ctx) == 9
    with load(path) as k:  # the kernel's BTF: no struct point
        assert k.core_btf == "kernel"
        assert k.programs["core_guarded"].run(ctx=ctx) == -1
        with pytest.raises(bpfring.UserRuntimeError, match=r"struct point\.z: no match"):
            k.programs["core_local"].run(ctx=ctx)


def test_bad_core_record_is_a_load_error(core_path):
    data = bytearray(core_path.read_bytes())
    # Corrupt the kind of the first CO-RE record: it must be named, not ignored.
    image = _elf._Elf(bytes(data))
    ext = image.section(".BTF.ext")
    assert ext is not None
    hdr_len = struct.unpack_from("<I", ext.data, 4)[0]
    core_off = struct.unpack_from("<I", ext.data, 24)[0]
    first = ext.offset + hdr_len + core_off + 4 + 8  # rec_size, sec name, count
    struct.pack_into("<I", data, first + 12, 99)
    with pytest.raises(UserLoadError, match="unknown CO-RE relocation kind 99"):
        load(bytes(data))


def test_bpfring_load_runtime_user_dispatches_to_the_runtime(kernel):
    """The one-call form: the same source in the kernel and in user space."""
    from conftest import BPF_DIR

    with bpfring.load(BPF_DIR / "echo.bpf.c", runtime="user") as uobj:
        assert type(uobj).__name__ == "UserObject"
        with bpfring.load(BPF_DIR / "echo.bpf.c") as kobj:
            assert set(uobj.maps) >= {"in_ring", "out_ring"} and type(kobj).__name__ == "BPFObject"
    with pytest.raises(ValueError, match="runtime must be"):
        bpfring.load(BPF_DIR / "echo.bpf.c", runtime="gpu")
    assert issubclass(bpfring.UserRuntimeError, bpfring.BPFError)
    assert bpfring.userspace.UserRuntimeError is bpfring.UserRuntimeError


# --- CO-RE against the running kernel's BTF -------------------------------------------

VMLINUX = "/sys/kernel/btf/vmlinux"
needs_vmlinux = pytest.mark.skipif(not __import__("os").path.exists(VMLINUX),
                                   reason="no kernel BTF")


@pytest.fixture(scope="module")
def kernel_core_path():
    return bpfring.build(BPF_DIR / "userspace_core_kernel.bpf.c")


def _sys_exit_ctx(seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(48)


@needs_vmlinux
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_core_against_kernel_btf_matches_the_kernel(kernel_core_path, kernel, seed):
    """Local flavours with other layouts (___local), existence checks, enum
    values, type ids and sizes, bitfields: the kernel's libbpf and user space
    resolve against the same BTF and give the same out[] for the same ctx."""
    ctx = _sys_exit_ctx(seed)
    with bpfring.load(kernel_core_path) as k, load(kernel_core_path) as u:
        assert u.core_btf == "kernel"
        rk = k.programs["core_kernel"].run(ctx=ctx)
        assert u.programs["core_kernel"].run(ctx=ctx) == rk
        out = list(u.globals.out)
        assert out == list(k.globals.out)
    kbtf = bpfring.btf.BTF.vmlinux()
    task = kbtf.find("task_struct", "struct")
    pid = next(m for m in task.members if m.name == "pid")
    comm = next(m for m in task.members if m.name == "comm")
    word = lambda off, n: int.from_bytes(ctx[off:off + n], "little", signed=True)  # noqa: E731
    assert out[:4] == [word(16, 8) & (1 << 64) - 1, word(8, 8) & (1 << 64) - 1,
                       word(4, 4) & (1 << 64) - 1, int.from_bytes(ctx[0:2], "little")]
    assert rk == int.from_bytes(ctx[0:2], "little")
    assert out[4:8] == [16, 0, 1, 0]
    assert out[8:11] == [task.size, pid.offset, 0]
    assert out[11:16] == [27, 0, 130, task.id, 4]
    bits = int.from_bytes(ctx[36:38], "little")  # tcphdr's flags word (kernel bit 96)
    assert out[16:19] == [(bits >> 4) & 0xF, (bits >> 9) & 1, (bits >> 12) & 1]
    assert out[19:24] == [77, comm.offset + 3, 1, 0, 1]


@needs_vmlinux
def test_core_btf_object_keeps_local_layouts(kernel_core_path):
    """btf="object": the values clang compiled in (the ___local layouts)."""
    ctx = _sys_exit_ctx(5)
    with load(kernel_core_path, btf="object") as u:
        assert u.core_btf == "object"
        u.programs["core_kernel"].run(ctx=ctx)
        out = list(u.globals.out)
    word = lambda off: int.from_bytes(ctx[off:off + 8], "little")  # noqa: E731
    assert out[0] == word(0) and out[1] == word(8)  # ret@0, id@8 locally
    assert out[4:8] == [0, 1, 1, 1] and out[11] == 1 and out[12] == 1


@needs_vmlinux
def test_core_btf_given_as_path_or_object(kernel_core_path):
    ctx = _sys_exit_ctx(7)
    results = []
    for target in ("kernel", VMLINUX, bpfring.btf.BTF.vmlinux()):
        with load(kernel_core_path, btf=target) as u:
            u.programs["core_kernel"].run(ctx=ctx)
            results.append(list(u.globals.out))
    assert results[0] == results[1] == results[2]
    with pytest.raises(UserLoadError, match="cannot read BTF"):
        load(kernel_core_path, btf="/nonexistent/btf")
    # A target without the kernel's types (the object's own BTF: only the
    # ___local flavours, no trace_event_raw_sys_exit): the first read is poisoned.
    own = _elf.parse(kernel_core_path.read_bytes(), "x").btf
    with load(kernel_core_path, btf=own) as u:
        assert u.core_btf == "BTF"
        with pytest.raises(bpfring.UserRuntimeError,
                           match=r"poisoned.*relocation #0 .*raw_sys_exit___local\.ret"):
            u.programs["core_kernel"].run(ctx=ctx)


@needs_vmlinux
def test_unmatched_access_is_poisoned_and_named(kernel):
    """An unguarded access to a field the kernel lacks loads (libbpf poisons
    it; the verifier would refuse it) and faults where it is reached, naming
    the relocation; runs that do not reach it work."""
    path = bpfring.build(BPF_DIR / "userspace_core_poison.bpf.c")
    with pytest.raises(bpfring.LoadError):
        bpfring.load(path).close()
    with load(path) as u:
        assert u.core_btf == "kernel"
        prog = u.programs["reaches"]
        assert prog.run(ctx=bytes(16) + struct.pack("<q", 5)) == 5  # ret@16 in the kernel
        ctx = bytes(16) + struct.pack("<q", 1)
        with pytest.raises(bpfring.UserRuntimeError) as e:
            prog.run(ctx=ctx)
        msg = str(e.value)
        assert "bpf_core_poisoned" in msg and "field_byte_offset" in msg
        assert "trace_event_raw_sys_exit___p.bpfring_missing" in msg
        assert "no match in the target BTF" in msg
        assert prog.run(ctx=bytes(16) + struct.pack("<q", 5)) == 5  # healthy after
    with load(path, btf="object") as u:  # the local layout: no poison
        assert u.programs["reaches"].run(ctx=struct.pack("<qq", 1, 42)) == 42


def test_essential_names():
    from bpfring.userspace._core import essential_name

    assert essential_name("task_struct___x") == "task_struct"
    assert essential_name("a___b___c") == "a___b"
    assert essential_name("task_struct") == "task_struct"
    assert essential_name("x____y") == "x____y"  # four underscores: no flavour
    assert essential_name("___x") == "___x" and essential_name("") == ""


@needs_vmlinux
def test_type_matches_and_checks_against_kernel_btf(kernel_core_path):
    """bpf_core_type_matches (clang 14 cannot emit it: records made here) and
    the check of compiled-in values, on the kernel BTF."""
    from bpfring.userspace import _core, _isa

    local = _elf.parse(kernel_core_path.read_bytes(), "x").btf
    kbtf = bpfring.btf.BTF.vmlinux()

    def run(type_name: str, kind: int, imm: int = 1, access: str = "0") -> int:
        tid = local.find(type_name).id
        code = {0: [_isa.Insn(_isa.ALU64 | _isa.MOV, 0, 0, 0, imm)]}
        relo = _core.CoreRelo("syscall", 0, 0, tid, access, kind, 0)
        assert _core.apply_core([relo], local, kbtf, code) == {}
        return code[0][0].imm

    M = _core.TYPE_MATCHES
    assert run("trace_entry___m", M) == 1  # int pid: a subset of the kernel's members
    # "unsigned short" (clang) is not "short unsigned int" (pahole): names differ
    assert run("trace_entry___local", M) == 0
    assert run("task_struct___x", M) == 0  # no_such_field
    assert run("bpfring_no_such_type", M) == 0
    assert run("trace_event_raw_sys_exit___local", M) == 0  # ent is another struct, nope
    assert run("trace_entry___local", _core.TYPE_SIZE, 8) == 8  # size of the kernel's
    assert run("trace_entry___local", _core.FIELD_BYTE_OFFSET, 4, "0:1") == 0  # type@0
    with pytest.raises(UserLoadError, match=r"relocation #0 \(field_byte_offset\).*holds 3, "
                                            "expected 4"):
        run("trace_entry___local", _core.FIELD_BYTE_OFFSET, 3, "0:1")
    with pytest.raises(UserLoadError, match=r"member 9 of struct trace_entry___local: none"):
        run("trace_entry___local", _core.FIELD_BYTE_OFFSET, 4, "0:9")


@needs_vmlinux
def test_fuzz_core_records(kernel_core_path):
    """Random records (kinds, local types, access strings, instructions) over
    the object's BTF and the kernel's: resolved, poisoned, or a UserLoadError
    naming the relocation; never another exception."""
    from hypothesis import given, settings
    from hypothesis import strategies as hst

    from bpfring.userspace import _core, _isa

    local = _elf.parse(kernel_core_path.read_bytes(), "x").btf
    kbtf = bpfring.btf.BTF.vmlinux()
    insns = hst.sampled_from([
        _isa.Insn(_isa.ALU64 | _isa.MOV, 0, 0, 0, 0),
        _isa.Insn(_isa.LDX | _isa.MEM | _isa.DW, 0, 1, 0, 0),
        _isa.Insn(_isa.STX | _isa.MEM | _isa.W, 1, 0, 4, 0),
        _isa.Insn(_isa.ALU | _isa.ADD | _isa.X, 0, 1, 0, 0),
        _isa.Insn(_isa.JMP | _isa.EXIT, 0, 0, 0, 0),
    ])
    access = hst.lists(hst.integers(0, 40), min_size=0, max_size=5).map(
        lambda xs: ":".join(map(str, xs)))

    @settings(max_examples=200, deadline=None)
    @given(hst.integers(0, len(local) + 2), hst.integers(0, 12), access | hst.text(max_size=6),
           insns, hst.booleans())
    def check(tid, kind, acc, ins, wide):
        code = {0: [_isa.Insn(_isa.LD_IMM64, 0, 0, 0, 0), _isa.Insn(_isa.FILLER, 0, 0, 0, 0)]
                if wide else [ins]}
        relo = _core.CoreRelo("s", 0, 0, tid, acc, kind, 3)
        try:
            _core.apply_core([relo], local, kbtf, code)
        except UserLoadError as e:
            assert "CO-RE relocation #3" in str(e)

    check()
