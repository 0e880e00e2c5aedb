"""User ring buffers, bpf_user_ringbuf_drain and dynptrs, kfuncs: the echo test
program (tests/bpf/echo.bpf.c) and bpfring's demo program, in the kernel and
in user space."""

from __future__ import annotations

import os
import struct

import pytest
from conftest import BPF_DIR
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bpfring._ringcore import BUSY_BIT, DISCARD_BIT
from bpfring.errors import RecordTooLarge, RingFull
from bpfring.userspace import UserLoadError, UserRuntimeError, load


@pytest.fixture(scope="module")
def echo_obj_path():
    import bpfring

    return bpfring.build(BPF_DIR / "echo.bpf.c")


RING_SIZE = 64 * 1024  # in_ring in echo.bpf.c


def _globals(obj):
    g = obj.globals
    return g.echoed, g.echo_failed, g.too_big, g.last_drain


@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.one_of(
           st.binary(max_size=64),
           st.builds(lambda n, b: bytes([b]) * n, st.integers(8190, 8200), st.integers(0, 255))),
           max_size=8), min_size=1, max_size=4),
       prog=st.sampled_from(["echo", "echo_nowakeup"]))
@example(batches=[[bytes([7]) * 8190] * 8, [b"after"]], prog="echo")  # the 8th is RingFull
def test_echo_through_user_ring_matches_kernel(echo_obj_path, kernel, batches, prog):
    import bpfring

    with bpfring.load(echo_obj_path) as k, load(echo_obj_path) as u:
        kin, kout = k.user_ring_buffer("in_ring"), k.ring_buffer("out_ring")
        uin, uout = u.maps["in_ring"], u.maps["out_ring"]
        for batch in batches:
            # A batch of big samples may not fit the 64 KiB ring (each record
            # takes its 8-byte header plus padding to 8 bytes): the one that
            # does not fit is RingFull in both runtimes, and the ring holds
            # exactly what fitted.
            used = 0
            for sample in batch:
                span = (len(sample) + 8 + 7) & ~7
                if used + span <= RING_SIZE:
                    kin.write(sample)
                    uin.write(sample)
                    used += span
                else:
                    with pytest.raises(RingFull):
                        kin.write(sample)
                    with pytest.raises(RingFull):
                        uin.write(sample)
            assert kin.pending_bytes() == used
            assert u.programs[prog].run() == k.programs[prog].run()
            assert _globals(u) == _globals(k)
            assert uout.read() == kout.read()
        assert u.maps["out_ring__lost"][0] == k.maps["out_ring__lost"][0]


def test_user_ring_producer_errors(echo_obj_path):
    with load(echo_obj_path) as u:
        ring = u.maps["in_ring"]
        with pytest.raises(RecordTooLarge):
            ring.write(bytes(64 * 1024))
        n = 0
        with pytest.raises(RingFull):
            while True:
                ring.write(bytes(1000))
                n += 1
        assert n == 64 * 1024 // 1008
        assert u.programs["echo"].run() == n


def test_drain_skips_discarded_and_stops_at_busy(echo_obj_path):
    with load(echo_obj_path) as u:
        ring = u.maps["in_ring"]
        for payload in (b"one", b"two", b"three"):
            ring.write(payload)
        data = ring._r().data
        struct.pack_into("<I", data, 16, 3 | DISCARD_BIT)     # "two" discarded
        struct.pack_into("<I", data, 32, 5 | BUSY_BIT)        # "three" still busy
        assert u.programs["echo"].run() == 1
        assert u.maps["out_ring"].read() == [b"one"]
        assert ring.consumer_pos == 32                        # past the discarded one
        struct.pack_into("<I", data, 32, 5)
        assert u.programs["echo"].run() == 1
        assert u.maps["out_ring"].read() == [b"three"]


def test_unknown_kfunc_is_named(tmp_path):
    import bpfring

    src = tmp_path / "kf.bpf.c"
    src.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
                   "extern void bpf_rcu_read_lock(void) __ksym;\n"
                   'SEC("syscall") int f(void *ctx) { bpf_rcu_read_lock(); return 0; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    with pytest.raises(UserLoadError, match="kfunc 'bpf_rcu_read_lock'"):
        load(bpfring.build(src))


def test_demo_program_runs_in_user_space():
    demo = os.path.join(os.path.dirname(__import__("bpfring").__file__), "bpf", "demo.bpf.c")
    with load(demo) as u:
        sample = u.types["user_sample"]
        for i in range(3):
            u.maps["user_ringbuf"].write(sample.encode(i=i, comm="py"))
        u.maps["user_ringbuf"].write(b"short")          # skipped: shorter than a sample
        assert u.programs["handle_kill_exit"].run(ctx=bytes(16)) == 0
        events = [u.types["event"].decode(r) for r in u.maps["kernel_ringbuf"].read()]
        with open("/proc/thread-self/comm") as f:
            comm = f.read().strip()[:15]
        assert [(e.pid, e.comm) for e in events] == [(os.getpid(), comm)] * 3
        assert u.globals.read == 3


def test_callback_cannot_write_the_sample(echo_obj_path, tmp_path):
    import bpfring

    src = tmp_path / "w.bpf.c"
    src.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
                   "struct { __uint(type, BPF_MAP_TYPE_USER_RINGBUF); "
                   "__uint(max_entries, 4096); } in SEC(\".maps\");\n"
                   "static long cb(struct bpf_dynptr *d, void *ctx) {\n"
                   "  char *p = bpf_dynptr_data(d, 0, 1); if (p) *p = 1; return 0; }\n"
                   'SEC("syscall") int f(void *ctx)\n'
                   '{ return bpf_user_ringbuf_drain(&in, cb, 0, 0); }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    with load(bpfring.build(src)) as u:
        u.maps["in"].write(b"abc")
        with pytest.raises(UserRuntimeError, match="read-only user ring sample"):
            u.programs["f"].run()
        assert u.maps["in"].consumer_pos == 16  # the sample was consumed all the same


@pytest.mark.parametrize("runs", [[(30, 1000)], [(200, 0), (200, 200), (50, 7)]])
def test_dynptr_records_match_kernel(kernel, runs):
    """tests/bpf/diff_prog.bpf.c: records built with bpf_ringbuf_reserve_dynptr,
    bpf_dynptr_write, submit/discard_dynptr (the ring fills up and the program
    stops at the first failed reservation)."""
    import random

    import bpfring

    path = bpfring.build(BPF_DIR / "diff_prog.bpf.c")
    pattern = random.Random(3).randbytes(2048)
    with bpfring.load(path) as k, load(path) as u:
        kr = k.ring_buffer("kring")
        for obj in (k, u):
            obj.maps["pattern"].update_raw(b"\0\0\0\0", pattern)
        for count, base in runs:
            ctx = struct.pack("<II", count, base)
            assert u.programs["gen"].run(ctx=ctx) == k.programs["gen"].run(ctx=ctx)
            assert u.maps["kring"].read() == kr.read()
        for sample in (b"a" * 10, b"b" * 5000, b""):
            k.user_ring_buffer("uring").write(sample)
            u.maps["uring"].write(sample)
        assert u.programs["drain"].run() == k.programs["drain"].run() == 3
        assert sorted(u.maps["stats"].items()) == sorted(k.maps["stats"].items())
        assert u.maps["echo_ring"].read() == k.ring_buffer("echo_ring").read()
