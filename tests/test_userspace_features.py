"""Helpers, subprograms, callbacks, rings and globals: tests/bpf/userspace_features.bpf.c
in the kernel and in user space, same inputs, same results."""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import struct
import threading
import time

import pytest
from conftest import BPF_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfring._ringcore import Consumer
from bpfring.userspace import load

M64 = (1 << 64) - 1


@pytest.fixture(scope="module")
def feat_path():
    import bpfring

    return bpfring.build(BPF_DIR / "userspace_features.bpf.c")


@pytest.fixture
def both(feat_path, kernel):
    import bpfring

    with bpfring.load(feat_path) as k, load(feat_path) as u:
        yield k, u


@pytest.fixture
def cpu0():
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    yield
    os.sched_setaffinity(0, before)


def _args(a: int = 0, b: int = 0, c: int = 0) -> bytes:
    return struct.pack("<QQQ", a & M64, b & M64, c & M64)


def _run(obj, prog: str, *args: int):
    rc = obj.programs[prog].run(ctx=_args(*args))
    return rc, list(obj.globals.out), obj.globals.text, obj.globals.small


def _same(k, u, prog: str, *args: int):
    got_k, got_u = _run(k, prog, *args), _run(u, prog, *args)
    assert got_u == got_k, (prog, args)
    return got_u


@pytest.mark.parametrize("stop,count", [(3, 10), (100, 10), (0, 1), (5, 0), (1 << 40, 7),
                                        (0, 1 << 23), ((1 << 23) + 1, 1 << 32)])
def test_bpf_loop(both, stop, count):
    k, u = both
    if count == 1 << 23:
        count = 3000  # the full 8M-iteration loop is too slow for the interpreter
    _rc, out, *_ = _same(k, u, "loops", stop, count)
    assert out[2] == 0xFFFF_FFF9  # -E2BIG from the inlined loop's 32-bit move
    assert out[3] == (-22) & M64  # -EINVAL: flags must be 0


@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(a=st.integers(0, M64), b=st.integers(0, M64))
def test_bpf_to_bpf_calls(both, a, b):
    k, u = both
    _same(k, u, "calls", a, b)
    assert k.globals.calls_made == u.globals.calls_made > 100


@pytest.mark.parametrize("a,limit,n", [(2, 9, 4), (1, 100, 16), (3, 0, 0), (5, 30, 20)])
def test_for_each_map_elem(both, a, limit, n):
    k, u = both
    _same(k, u, "each", a, limit, n)
    assert sorted(u.maps["vals"].items()) == sorted(k.maps["vals"].items())
    assert sorted(u.maps["counts"].items()) == sorted(k.maps["counts"].items())


def test_ring_records_positions_and_overflow(both):
    k, u = both
    krb = k.ring_buffer("events")
    for n, b in ((20, 7), (1, 0), (150, 3), (150, 4)):   # the last runs overflow the ring
        _same(k, u, "ring", n, b)
        assert u.maps["events"].read() == krb.read()
    _same(k, u, "ring", 150, 5)
    _same(k, u, "ring", 150, 6)                          # full: every record lost
    assert u.globals.out[6] > 0
    assert u.maps["events"].read() == krb.read()
    assert u.maps["events"].consumer_pos == u.maps["events"].producer_pos


def test_ring_layout_is_the_kernels(feat_path):
    """bpfring's own sans-IO consumer reads the user-space ring's memfd, mapped
    independently: consumer page, producer page, data area, 8-byte headers."""
    with load(feat_path) as u:
        ring = u.maps["events"]
        u.programs["ring"].run(ctx=_args(10, 1))
        want = ring.read()
        ring.consumer_pos = 0  # rewind: the records are still in the data area
        page, size = mmap.PAGESIZE, ring.size
        with mmap.mmap(ring.memfd, 2 * page + size, mmap.MAP_SHARED,
                       mmap.PROT_READ | mmap.PROT_WRITE) as mm:
            prod = struct.unpack_from("<Q", mm, page)[0]
            got: list[bytes] = []
            with memoryview(mm) as view, view[0:8] as c8, c8.cast("Q") as cons, \
                    view[2 * page:2 * page + size] as data:
                res = Consumer(data, size).consume(0, prod, lambda v: got.append(bytes(v)),
                                                   None, cons)
                published = cons[0]
        assert prod == ring.producer_pos and published == prod
        assert got == want and res.delivered == 8 and res.discarded == 2  # i = 3, 7
        hdr = struct.unpack_from("<II", ring._r().data, 0)
        assert hdr == (24, 3)  # len 24, pg_off: data starts 3 pages into struct bpf_ringbuf


def test_formatting(both):
    k, u = both
    for a, b, c in ((1, 0xDEADBEEF, M64 - 4), ((-5) & M64, 0, 12345678901234),
                    (0x8000_0000, M64, 1 << 63)):
        _rc, out, text, small = _same(k, u, "fmt", a, b, c)
        assert out[0] == out[1] == out[2] >= len(text) + 1
    _rc, out, text, small = _run(u, "fmt", 1, 0xDEADBEEF, 7)
    full = "a=1 b=1 x=deadbeef lx=deadbeef ld=7 s=hello c=Z % |    1|1    |00007| 1|+1|"
    assert text == full[:63] and out[0] == len(full) + 1  # truncated, full length + 1
    assert small == "a=1 b=1"
    assert out[5] == 0 and out[6] == 0 and out[7] == (-1) & M64


def test_trace_printk(both, caplog):
    k, u = both
    with caplog.at_level(logging.INFO, logger="bpfring.userspace"):
        assert u.programs["printk"].run(ctx=_args(42)) == k.programs["printk"].run(
            ctx=_args(42)) == len("printk 42 hello")
    assert "printk: printk 42 hello" in caplog.text
    assert u.printed[-1] == b"printk 42 hello"


def test_current_task_and_user_memory(both, cpu0):
    k, u = both
    value = ctypes.c_uint64(0x1122_3344_5566_7788)
    text = ctypes.create_string_buffer(b"from python!", 32)
    ctx = struct.pack("<QQ", ctypes.addressof(value), ctypes.addressof(text))
    results = []
    for obj in (k, u):
        rc = obj.programs["ids"].run(ctx=ctx)
        results.append((rc, list(obj.globals.out), obj.globals.comm, obj.globals.small))
    assert results[1] == results[0]
    rc, out, comm, small = results[1]
    assert rc == 0  # bpf_get_smp_processor_id: CPU 0
    assert out[0] == (os.getpid() << 32) | threading.get_native_id()
    assert out[1] == (os.getgid() << 32) | os.getuid()
    with open("/proc/thread-self/comm") as f:
        assert comm == f.read().strip()[:15]
    assert out[4] == 0x1122_3344_5566_7788 and out[5] == len(b"from python!") + 1
    assert out[6] == (-14) & M64 and out[7] == 0  # -EFAULT, destination zeroed
    assert small == "from pyt"


def test_clock_and_random(feat_path):
    with load(feat_path, seed=7) as u, load(feat_path, seed=7) as u2:
        before = time.monotonic_ns()
        u.programs["clock"].run(ctx=_args())
        t0, dt, boot, rnd = u.globals.out[:4]
        assert before <= t0 <= time.monotonic_ns() and 0 <= dt < 10**9
        assert abs(boot - time.clock_gettime_ns(time.CLOCK_BOOTTIME)) < 10**10
        u2.programs["clock"].run(ctx=_args())
        assert u2.globals.out[3] == rnd  # seeded


def test_rodata_knob_set_at_load(feat_path, kernel):
    import bpfring

    with bpfring.load(feat_path, globals={"knob": 5}) as k, \
            load(feat_path, globals={"knob": 5}) as u:
        assert u.globals.knob == k.globals.knob == 5
        _same(k, u, "loops", 100, 10)
        assert u.globals.out[1] == 5 * 45
        with pytest.raises(AttributeError, match="read-only after load"):
            u.globals.knob = 6
        with pytest.raises(AttributeError, match="read-only after load"):
            k.globals.knob = 6
        u.globals.calls_made = 7
        k.globals.calls_made = 7
        _same(k, u, "calls", 1, 2)
        assert u.globals.calls_made == 8
        assert u.globals.greeting == k.globals.greeting == "hello"
        assert sorted(dir(u.globals)) == sorted(dir(k.globals))
        assert set(u.maps) == set(k.maps)
