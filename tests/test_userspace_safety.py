"""A bad program never crashes or corrupts the Python process: every violation
is a UserRuntimeError naming the instruction, and the object keeps working.
Also: random instruction sequences only ever return or raise our errors, and
the runtime works without any BPF privilege (capabilities dropped)."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import BPF_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfring.userspace import UserLoadError, UserRuntimeError, load, load_insns

M64 = (1 << 64) - 1


@pytest.fixture(scope="module")
def bad_path():
    import bpfring

    return bpfring.build(BPF_DIR / "userspace_bad.bpf.c")


@pytest.fixture
def bad(bad_path):
    with load(bad_path, budget=200_000) as obj:
        yield obj


def _args(off: int = 0, n: int = 0) -> bytes:
    return struct.pack("<qQ", off, n)


def _healthy(obj, runs_before: int) -> None:
    """The object still runs programs, its maps and ring are intact."""
    assert obj.programs["good"].run(ctx=_args()) == 42
    assert obj.globals.good_runs == runs_before + 1
    recs = obj.maps["ring"].read()
    assert recs and struct.unpack("<Q", recs[-1])[0] == runs_before
    assert obj.maps["arr"][1] == runs_before + 1


@pytest.mark.parametrize("prog,args,match", [
    ("oob_ctx_read", _args(16), r"invalid read of 8 bytes .*ctx\+16"),
    ("oob_ctx_read", _args(-8), r"invalid read of 8 bytes .*before the start of ctx"),
    ("oob_ctx_read", _args(1 << 40), "invalid read of 8 bytes"),
    ("oob_map_write", _args(8), r"invalid write of 1 bytes .*arr\[0\]\+8"),
    ("oob_map_write", _args(-1), "invalid write of 1 bytes"),
    ("null_deref", _args(0, 7), "invalid read of 8 bytes at NULL"),
    ("stack_oob", _args(600), r"invalid write of 1 bytes .*stack frame 0\+1096, past the end"),
    ("stack_oob", _args(-600), "invalid write of 1 bytes"),
    ("deep", _args(0, 20), r"call stack too deep \(more than 8 frames\)"),
    ("spin", _args(0, 1), "instruction budget of 200000 exhausted"),
    ("long_loop", _args(0, 1 << 22), "instruction budget of 200000 exhausted"),
    ("not_a_map", _args(), r"map argument .*ctx\+0.* is not a map"),
    ("bad_key", _args(0x1000), "key: invalid read of 4 bytes at 0x1000"),
    ("double_submit", _args(), "is not a reserved ring buffer record"),
    ("use_after_submit", _args(), "invalid write of 8 bytes"),
    ("leak", _args(), r"exited still holding 1 reserved ring buffer record"),
    ("write_rodata", _args(), r"read-only global section userspac\.rodata"),
    ("bad_out", _args(0x1000), "invalid write of 8 bytes at 0x1000"),
])
def test_violation_raises_and_object_stays_healthy(bad, prog, args, match):
    runs = bad.globals.good_runs
    with pytest.raises(UserRuntimeError, match=match) as ei:
        bad.programs[prog].run(ctx=args)
    e = ei.value
    if "exited still holding" not in match:
        assert e.pc >= 0 and e.insn and e.insn in str(e)
        assert e.program == prog
    _healthy(bad, runs)


def test_recursion_error_names_the_subprogram(bad):
    with pytest.raises(UserRuntimeError) as ei:
        bad.programs["deep"].run(ctx=_args(0, 20))
    assert ei.value.function == "recurse"
    assert "in recurse" in str(ei.value)


def test_leaked_record_is_discarded_so_the_ring_stays_readable(bad):
    with pytest.raises(UserRuntimeError):
        bad.programs["leak"].run(ctx=_args())
    ring = bad.maps["ring"]
    assert ring.read() == []                       # discarded, not stuck BUSY
    assert ring.consumer_pos == ring.producer_pos == 16


def test_bad_format_is_einval_at_run_time(bad):
    assert bad.programs["bad_fmt"].run(ctx=_args()) == -22


def test_budget_is_configurable_per_run(bad):
    with pytest.raises(UserRuntimeError, match="budget of 50 exhausted"):
        bad.programs["long_loop"].run(ctx=_args(0, 100), budget=50)
    assert bad.programs["long_loop"].run(ctx=_args(0, 100), budget=10_000) == 100


def test_packet_and_ctx_bounds(bad):
    pkt = bytes(20)
    with pytest.raises(UserRuntimeError,
                       match=r"invalid read of 4 bytes .*packet\+64, past the end"):
        bad.programs["pkt_oob"].run(data=pkt)
    with pytest.raises(UserRuntimeError, match="read-only ctx xdp_md"):
        bad.programs["ctx_write"].run(data=pkt)
    assert bad.programs["pkt_oob"].run(data=bytes(100)) == 0


# --- random instruction streams --------------------------------------------------------

_CODES = [0x07, 0x0F, 0x17, 0x1F, 0x27, 0x2F, 0x37, 0x3F, 0x47, 0x4F, 0x57, 0x5F, 0x67, 0x6F,
          0x77, 0x7F, 0x87, 0x97, 0x9F, 0xA7, 0xAF, 0xB7, 0xBF, 0xC7, 0xCF, 0xD4, 0xDC, 0xD7,
          0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C, 0x34, 0x3C, 0x44, 0x4C, 0x54, 0x5C, 0x64, 0x6C,
          0x74, 0x7C, 0x84, 0x94, 0x9C, 0xA4, 0xAC, 0xB4, 0xBC, 0xC4, 0xCC,
          0x05, 0x15, 0x1D, 0x25, 0x2D, 0x35, 0x45, 0x55, 0x5D, 0x65, 0x6D, 0xA5, 0xAD, 0xC5,
          0x06, 0x16, 0x1E, 0x26, 0x56, 0x5E, 0x66, 0xA6, 0xC6,
          0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91, 0x62, 0x6A, 0x72, 0x7A,
          0x63, 0x6B, 0x73, 0x7B, 0xC3, 0xDB, 0x95, 0x85, 0x18, 0x00, 0x8E, 0x20]

_insn = st.tuples(st.sampled_from(_CODES), st.integers(0, 11), st.integers(0, 11),
                  st.sampled_from([0, 1, -1, 8, 16, 32, -8, -512, 3, -3, 0x7FFF]),
                  st.sampled_from([0, 1, -1, 2, 7, 16, 32, 64, 0xE1, 0xF1, 0x01, 181, 1, 5, 130,
                                   1 << 30, -(1 << 31), 63]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(_insn, min_size=1, max_size=24))
def test_random_programs_only_return_or_raise_our_errors(body):
    raw = b"".join(struct.pack("<BBhi", c, (d & 0xF) | (s & 0xF) << 4, o, i)
                   for c, d, s, o, i in body)
    raw += struct.pack("<BBhi", 0x95, 0, 0, 0)  # exit
    try:
        obj = load_insns(raw, budget=5000)
    except UserLoadError:
        return
    with obj:
        try:
            r = obj.programs["prog"].run(ctx=bytes(64))
        except UserRuntimeError as e:
            assert e.pc >= 0 and e.insn
            return
        assert isinstance(r, int) and -(1 << 31) <= r < 1 << 31


# --- without privileges ---------------------------------------------------------------


def _drop_bpf_capabilities() -> None:
    """In the child before exec: drop CAP_SYS_ADMIN, CAP_PERFMON and CAP_BPF
    from the bounding set (as tests/test_object.py does for the demo)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (21, 38, 39):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP failed")


_CHILD = textwrap.dedent("""
    import json, struct, sys
    import bpfring
    from bpfring import userspace
    from bpfring.errors import BPFPermissionError

    paths = json.loads(sys.argv[1])
    out = {}
    try:
        bpfring.load(paths["features"])
        out["kernel"] = "loaded"
    except BPFPermissionError:
        out["kernel"] = "refused"
    with userspace.load(paths["features"]) as u:
        u.programs["loops"].run(ctx=struct.pack("<QQQ", 3, 10, 0))
        out["loops"] = list(u.globals.out[:2])
        u.programs["ring"].run(ctx=struct.pack("<QQQ", 5, 2, 0))
        out["records"] = len(u.maps["events"].read())
    with userspace.load(paths["alu"]) as u:
        u.programs["alu"].run(ctx=struct.pack("<IIQQ", paths["sdiv_op"], 0, 1 << 63,
                                              (1 << 64) - 1))
        out["sdiv"] = u.globals.result
    with userspace.load(paths["xdp"]) as u:
        pkt = bytes(12) + b"\\x08\\x00" + bytes([0x45]) + bytes(8) + bytes([17]) + bytes(10)
        pkt += struct.pack(">HHHH", 1, 9, 8, 0)
        out["xdp"] = u.programs["parse"].run(data=pkt)
    with userspace.load(paths["demo"]) as u:
        for i in range(2):
            u.maps["user_ringbuf"].write(u.types["user_sample"].encode(i=i, comm="x"))
        u.programs["handle_kill_exit"].run(ctx=bytes(16))
        out["demo"] = [u.types["event"].decode(r).pid for r in u.maps["kernel_ringbuf"].read()]
    with userspace.load(paths["echo"]) as u:
        u.maps["in_ring"].write(b"ping")
        out["echo"] = [u.programs["echo"].run(), u.maps["out_ring"].read()[0].decode()]
    out["pid"] = __import__("os").getpid()
    print(json.dumps(out))
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop capabilities")
def test_runs_without_bpf_privileges(kernel):
    import bpfring

    paths = {"features": str(bpfring.build(BPF_DIR / "userspace_features.bpf.c")),
             "alu": str(bpfring.build(BPF_DIR / "userspace_alu.bpf.c")),
             "xdp": str(bpfring.build(BPF_DIR / "userspace_xdp.bpf.c")),
             "echo": str(bpfring.build(BPF_DIR / "echo.bpf.c")),
             "demo": str(bpfring.build(Path(bpfring.__file__).parent / "bpf" / "demo.bpf.c")),
             "sdiv_op": int(re.search(r"OP\((\d+), [^\n]*/\* sdiv64 reg \*/",
                                      (BPF_DIR / "userspace_alu.bpf.c").read_text())[1])}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(paths)],
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=_drop_bpf_capabilities)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["kernel"] == "refused"          # really unprivileged
    assert out["loops"] == [4, 18]             # bpf_loop stopped at i == 3, knob 3
    assert out["records"] == 4                 # 5 records, 1 discarded
    assert out["sdiv"] == 1 << 63              # INT_MIN / -1
    assert out["xdp"] == 1                     # UDP to port 9: XDP_DROP
    assert out["demo"] == [out["pid"]] * 2     # bpfring's demo program, unprivileged
    assert out["echo"] == [1, "ping"]          # user ring -> drain -> ring


def test_error_shows_the_c_source_line(bad):
    with pytest.raises(UserRuntimeError) as ei:
        bad.programs["oob_map_write"].run(ctx=_args(8))
    assert ei.value.source.startswith("userspace_bad.bpf.c:")
    assert "*(volatile char *)(v + ctx->off) = 1;" in ei.value.source
    assert ei.value.source in str(ei.value)


def test_error_pickles(bad):
    import pickle

    with pytest.raises(UserRuntimeError) as ei:
        bad.programs["null_deref"].run(ctx=_args(0, 9))
    again = pickle.loads(pickle.dumps(ei.value))
    assert str(again) == str(ei.value) and again.pc == ei.value.pc
