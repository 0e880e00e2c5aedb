"""Perf event buffers: the sans-IO core on plain memory, and PerfBuffer against
the real kernel (tests/bpf/perf_prog.bpf.c emits numbered records with
bpf_perf_event_output from a raw tracepoint program test-run on a chosen CPU),
including a differential test against libbpf's own perf_buffer__* functions."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
import threading
import time

import numpy as np
import pytest
from conftest import BPF_DIR
from hypothesis import given, settings
from hypothesis import strategies as st

import bpfring
from bpfring import BPFError, MapTypeError, RingCorrupted, _perf, _perfcore, _sys
from bpfring.perfbuf import PerfBuffer

# ---------------------------------------------------------------------------------
# The sans-IO core on a bytearray
# ---------------------------------------------------------------------------------


class FakePerfRing:
    """A data area written the way the kernel writes it (records may wrap)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.data = bytearray(size)
        self.head = 0
        self.tail = 0

    def free(self) -> int:
        return self.size - (self.head - self.tail)

    def put(self, rec: bytes) -> bool:
        if len(rec) > self.free():
            return False
        for i, b in enumerate(rec):
            self.data[(self.head + i) % self.size] = b
        self.head += len(rec)
        return True

    def walk(self, cb, limit=None, on_lost=None):
        res = _perfcore.walk(memoryview(self.data), self.size, self.tail, self.head, cb,
                             limit, on_lost)
        self.tail = res.tail
        return res


def _payload(seq: int, n: int) -> bytes:
    return bytes((seq + j) & 0xFF for j in range(n))


def _unpad(view: memoryview, n: int) -> bytes:
    # The kernel pads raw data so that 4 + raw_size is a multiple of 8.
    assert view.nbytes == (n + 4 + 7) // 8 * 8 - 4
    return bytes(view[:n])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(1, 100), st.just(-1)), min_size=1, max_size=60),
       st.integers(0, 7), st.sampled_from([64, 256, 1024]))
def test_core_delivers_every_record_in_order_across_wraps(plan, start, size):
    """Random samples (positive: payload length) and lost reports (-1),
    produced and consumed in rounds from a start position that makes records
    straddle the end of the data area."""
    ring = FakePerfRing(size)
    ring.head = ring.tail = start * 8
    expected: list[bytes] = []
    got: list[bytes] = []
    lost_expected = lost_got = 0
    for seq, n in enumerate(plan):
        rec = _perfcore.lost_record(seq + 1) if n < 0 else _perfcore.sample_record(
            _payload(seq, n))
        if len(rec) > size:
            continue
        if not ring.put(rec):
            res = ring.walk(lambda v: got.append(bytes(v)))
            lost_got += res.lost
            assert ring.put(rec)
        if n < 0:
            lost_expected += seq + 1
        else:
            padded = (n + 4 + 7) // 8 * 8 - 4
            expected.append(_payload(seq, n) + bytes(padded - n))
    res = ring.walk(lambda v: got.append(bytes(v)))
    lost_got += res.lost
    assert got == expected
    assert lost_got == lost_expected
    assert ring.tail == ring.head


def test_core_limit_and_lost_callback():
    ring = FakePerfRing(4096)
    for i in range(10):
        ring.put(_perfcore.sample_record(_payload(i, 10)))
    ring.put(_perfcore.lost_record(7))
    ring.put(_perfcore.sample_record(b"x" * 12))
    got: list[bytes] = []
    lost: list[int] = []
    assert ring.walk(lambda v: got.append(_unpad(v, 10)), limit=4).delivered == 4
    assert got == [_payload(i, 10) for i in range(4)]
    res = ring.walk(lambda v: got.append(bytes(v)), on_lost=lost.append)
    assert res.delivered == 7 and res.lost == 7 and lost == [7]
    assert ring.walk(lambda v: None, limit=0).delivered == 0


def test_core_callback_error_leaves_the_record_in_place():
    ring = FakePerfRing(1024)
    for i in range(5):
        ring.put(_perfcore.sample_record(_payload(i, 20)))
    seen: list[bytes] = []

    def cb(v: memoryview) -> None:
        if len(seen) == 2:
            seen.append(b"boom")
            raise RuntimeError("boom")
        seen.append(_unpad(v, 20))

    with pytest.raises(RuntimeError) as ei:
        ring.walk(cb)
    done = ei.value.walk_result
    assert done.delivered == 2
    ring.tail = done.tail
    rest: list[bytes] = []
    ring.walk(lambda v: rest.append(_unpad(v, 20)))
    assert rest == [_payload(i, 20) for i in range(2, 5)]


@pytest.mark.parametrize("bad", [0, 4, 12, 4096])
def test_core_rejects_impossible_headers(bad):
    ring = FakePerfRing(256)
    ring.put(_perfcore.sample_record(b"abcd"))
    struct.pack_into("<H", ring.data, 6, bad)
    with pytest.raises(RingCorrupted):
        ring.walk(lambda v: None)


def test_core_rejects_impossible_positions():
    data = memoryview(bytearray(256))
    with pytest.raises(RingCorrupted, match="more than"):
        _perfcore.walk(data, 256, 0, 512, lambda v: None)
    with pytest.raises(RingCorrupted, match="multiple of 8"):
        _perfcore.walk(data, 256, 0, 12, lambda v: None)
    rec = bytearray(_perfcore.sample_record(b"abcd"))
    struct.pack_into("<I", rec, 8, 200)  # raw size larger than the record
    ring = FakePerfRing(256)
    ring.put(bytes(rec))
    with pytest.raises(RingCorrupted, match="raw bytes"):
        ring.walk(lambda v: None)


def test_cpu_list_parsing():
    assert _perf.parse_cpu_list("0-3,5,7-8\n") == [0, 1, 2, 3, 5, 7, 8]
    assert _perf.parse_cpu_list("0") == [0]
    for bad in ("3-1", "a", "-1"):
        with pytest.raises(ValueError):
            _perf.parse_cpu_list(bad)


# ---------------------------------------------------------------------------------
# Against the kernel
# ---------------------------------------------------------------------------------

_RUN_ON_CPU = 1  # BPF_F_TEST_RUN_ON_CPU


def emit(obj, count: int, size: int = 0, seq: int = 0, cpu: int = 0) -> None:
    """Test-run the raw tracepoint program on ``cpu``: ``count`` records."""
    prog_fd = obj.programs["emit"].fd
    ctx = bytearray(struct.pack("<QQQ", count, size, seq))
    cbuf = (ctypes.c_char * len(ctx)).from_buffer(ctx)
    attr = bytearray(128)
    struct.pack_into("<I", attr, 0, prog_fd)
    struct.pack_into("<IIQ", attr, 40, len(ctx), 0, ctypes.addressof(cbuf))
    struct.pack_into("<II", attr, 64, _RUN_ON_CPU, cpu)
    _sys.bpf(_sys.PROG_TEST_RUN, attr, "test-running emit")
    assert struct.unpack_from("<i", attr, 4)[0] == 0


@pytest.fixture(scope="module")
def perf_path(kernel):
    return bpfring.build(BPF_DIR / "perf_prog.bpf.c")


@pytest.fixture
def perf(perf_path):
    with bpfring.load(perf_path) as obj:
        yield obj


def _check(rec: bytes, cpu: int | None = None) -> tuple[int, int]:
    seq, rcpu, n = struct.unpack_from("<QII", rec)
    assert len(rec) == (n + 4 + 7) // 8 * 8 - 4
    assert rec[16:n] == bytes((seq + j) & 0xFF for j in range(n - 16))
    if cpu is not None:
        assert rcpu == cpu
    return seq, rcpu


def test_records_from_each_cpu_in_order(perf):
    cpus = _perf.online_cpus()
    with PerfBuffer(perf.maps["events"].fd, page_count=8) as pb:
        assert pb.cpus == cpus
        for cpu in cpus:
            emit(perf, 50, 0, seq=1000 * cpu, cpu=cpu)
        got = pb.read_with_cpu(timeout=1)
        assert len(got) == 50 * len(cpus)
        for cpu in cpus:
            mine = [_check(r, cpu)[0] for c, r in got if c == cpu]
            assert mine == list(range(1000 * cpu, 1000 * cpu + 50))
        assert pb.lost == 0


def test_wraparound_many_laps_with_varying_sizes(perf):
    """A 1-page ring (4 KiB), records of 16..256 bytes in rounds: over 100
    laps, every record exactly once, intact."""
    seq = 0
    got: list[int] = []
    with PerfBuffer(perf.maps["events"].fd, page_count=1, cpus=[0]) as pb:
        for _ in range(300):
            emit(perf, 13, 0, seq=seq, cpu=0)
            seq += 13
            pb.consume(lambda v: got.append(_check(bytes(v), 0)[0]))
        assert pb.lost == 0
    assert got == list(range(seq))
    assert perf.globals.emitted == seq


def test_lost_counts_are_exact(perf):
    """Overflow a 1-page ring: what we get plus what the kernel reports lost
    is exactly what was emitted, and equals the helper's failures.  The
    kernel writes its PERF_RECORD_LOST report into the ring just before the
    next record it manages to write, so one more record brings the report."""
    with PerfBuffer(perf.maps["events"].fd, page_count=1, cpus=[0]) as pb:
        emit(perf, 1000, 256, cpu=0)
        seen: list[int] = []
        reports: list[tuple[int, int]] = []
        pb._lost_cb = lambda cpu, n: reports.append((cpu, n))
        n = pb.consume(lambda v: seen.append(_check(bytes(v), 0)[0]))
        failed = perf.globals.failed
        assert n == len(seen) and 0 < n < 1000 and failed == 1000 - n
        assert pb.lost == 0  # not reported yet: no room was left for the report
        emit(perf, 1, 256, seq=5000, cpu=0)
        assert pb.consume(lambda v: seen.append(_check(bytes(v), 0)[0])) == 1
        assert seen[-1] == 5000
        seen.pop()
        assert pb.lost == 1000 - n == failed
        assert pb.lost_per_cpu == {0: failed}
        assert sum(c for _, c in reports) == failed and {c for c, _ in reports} == {0}
        # The records we did get are the first ones, in order.
        assert seen == list(range(n))


def test_typed_records_and_read_array(perf):
    rtype = perf.types["perf_rec"]
    with PerfBuffer(perf.maps["events"].fd, record=rtype, cpus=[1 % len(_perf.online_cpus())]
                    ) as pb:
        cpu = pb.cpus[0]
        emit(perf, 5, 256, seq=7, cpu=cpu)
        recs = pb.read(timeout=1)
        assert [r.seq for r in recs] == [7, 8, 9, 10, 11]
        assert all(r.cpu == cpu and r.size == 256 for r in recs)
        emit(perf, 4, 256, seq=20, cpu=cpu)
        arr = pb.read_array(rtype, timeout=1)
        assert arr["seq"].tolist() == [20, 21, 22, 23]
        assert arr.dtype == rtype.dtype
        emit(perf, 1, 16, cpu=cpu)
        with pytest.raises(BPFError, match="shorter"):
            pb.read_array(np.dtype([("x", "<u8", 40)]), timeout=1)


def test_callback_error_redelivers(perf):
    with PerfBuffer(perf.maps["events"].fd, cpus=[0]) as pb:
        emit(perf, 3, 64, cpu=0)
        calls: list[int] = []

        def flaky(v: memoryview) -> None:
            seq = _check(bytes(v))[0]
            calls.append(seq)
            if seq == 1 and calls.count(1) == 1:
                raise ValueError("once")

        with pytest.raises(ValueError):
            pb.consume(flaky)
        assert pb.consume(flaky) == 2
        assert calls == [0, 1, 1, 2]


def test_poll_waits_and_wakes(perf):
    with PerfBuffer(perf.maps["events"].fd) as pb:
        t0 = time.monotonic()
        assert pb.poll(lambda v: None, timeout=0.2) == 0
        assert 0.15 < time.monotonic() - t0 < 30  # its timeout (upper: a hang guard)
        timer = threading.Timer(0.2, emit, (perf, 1, 32, 0, 0))
        timer.start()
        got: list[bytes] = []
        t0 = time.monotonic()
        assert pb.poll(lambda v: got.append(bytes(v)), timeout=60) == 1
        assert time.monotonic() - t0 < 30  # woken, long before the timeout
        timer.join()
        assert pb.poll(lambda v: None, timeout=0) == 0


def test_iteration_and_async(perf):
    with PerfBuffer(perf.maps["events"].fd, cpus=[0]) as pb:
        emit(perf, 10, 32, seq=100, cpu=0)
        it = iter(pb)
        first = [_check(next(it))[0] for _ in range(3)]
        assert first == [100, 101, 102]
        # The rest stayed with the buffer: read() gets them next.
        assert [_check(r)[0] for r in pb.read()] == list(range(103, 110))

        async def main() -> list[int]:
            loop = asyncio.get_running_loop()
            loop.call_later(0.1, emit, perf, 3, 32, 200, 0)
            out: list[int] = []
            async for rec in pb:
                out.append(_check(rec)[0])
                if len(out) == 3:
                    break
            return out

        assert asyncio.run(asyncio.wait_for(main(), 10)) == [200, 201, 202]


def test_close_takes_the_events_out_of_the_map(perf):
    """After close the map slots are empty: the helper fails (nobody would
    read), instead of writing into a ring that no one consumes."""
    pb = PerfBuffer(perf.maps["events"].fd)
    emit(perf, 5, 32, cpu=0)
    assert (perf.globals.emitted, perf.globals.failed) == (5, 0)
    pb.close()
    pb.close()
    assert pb.closed
    with pytest.raises(ValueError, match="closed"):
        pb.consume(lambda v: None)
    emit(perf, 5, 32, cpu=0)
    assert (perf.globals.emitted, perf.globals.failed) == (5, 5)


def test_bad_arguments(perf):
    with pytest.raises(MapTypeError, match="not a perf_event_array"):
        PerfBuffer(perf.maps["heap"].fd)
    for bad in (0, 3, 6):
        with pytest.raises(ValueError, match="power of two"):
            PerfBuffer(perf.maps["events"].fd, page_count=bad)
    with pytest.raises(ValueError, match="offline or beyond"):
        PerfBuffer(perf.maps["events"].fd, cpus=[4096])
    with pytest.raises(ValueError):
        PerfBuffer(perf.maps["events"].fd, watermark=0)
    with pytest.raises(ValueError):
        PerfBuffer(perf.maps["events"].fd, wakeup_events=0)


def test_watermark_and_wakeup_events(perf):
    """With wakeup_events=10 the reader sleeps through 9 samples and wakes
    at the 10th; the records are there either way."""
    with PerfBuffer(perf.maps["events"].fd, cpus=[0], wakeup_events=10) as pb:
        emit(perf, 9, 32, cpu=0)
        ready = pb._epoll.poll(0.2)
        assert ready == []
        emit(perf, 1, 32, cpu=0)
        assert pb._epoll.poll(5)
        assert len(pb.read()) == 10
    with PerfBuffer(perf.maps["events"].fd, cpus=[0], watermark=2048) as pb:
        emit(perf, 1, 32, cpu=0)
        assert pb._epoll.poll(0.2) == []
        emit(perf, 20, 256, cpu=0)
        assert pb._epoll.poll(5)
        assert len(pb.read()) == 21


# ---------------------------------------------------------------------------------
# Differential: bpfring's PerfBuffer == libbpf's perf_buffer__* on the same map
# ---------------------------------------------------------------------------------

_SAMPLE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                              ctypes.c_uint32)
_LOST_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64)


def _libbpf():
    lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
    lib.perf_buffer__new.restype = ctypes.c_void_p
    lib.perf_buffer__new.argtypes = [ctypes.c_int, ctypes.c_size_t, _SAMPLE_CB, _LOST_CB,
                                     ctypes.c_void_p, ctypes.c_void_p]
    lib.perf_buffer__consume.argtypes = [ctypes.c_void_p]
    lib.perf_buffer__free.argtypes = [ctypes.c_void_p]
    return lib


def _scenario(perf, take) -> None:
    """The same emissions for both consumers: mixed sizes on every CPU, with
    an overflow of CPU 0's 1-page ring in the middle."""
    cpus = _perf.online_cpus()
    for rnd in range(20):
        for cpu in cpus:
            emit(perf, 7 + rnd % 5, 0, seq=10_000 * cpu + 100 * rnd, cpu=cpu)
        if rnd == 10:
            emit(perf, 200, 256, seq=900_000, cpu=0)
        take()


def _with_bpfring(obj) -> tuple[list[tuple[int, bytes]], dict[int, int]]:
    recs: list[tuple[int, bytes]] = []
    lost: dict[int, int] = {}
    with PerfBuffer(obj.maps["events"].fd, page_count=1,
                    lost_callback=lambda cpu, n: lost.__setitem__(cpu, lost.get(cpu, 0) + n)
                    ) as pb:
        _scenario(obj, lambda: pb.consume(lambda v: recs.append((pb.cpu, bytes(v)))))
    return recs, lost


def _with_libbpf(obj) -> tuple[list[tuple[int, bytes]], dict[int, int]]:
    recs: list[tuple[int, bytes]] = []
    lost: dict[int, int] = {}
    lib = _libbpf()

    @_SAMPLE_CB
    def on_sample(_ctx, cpu, data, size):
        recs.append((cpu, ctypes.string_at(data, size)))

    @_LOST_CB
    def on_lost(_ctx, cpu, n):
        lost[cpu] = lost.get(cpu, 0) + n

    handle = lib.perf_buffer__new(obj.maps["events"].fd, 1, on_sample, on_lost, None, None)
    assert handle, os.strerror(ctypes.get_errno())
    try:
        _scenario(obj, lambda: lib.perf_buffer__consume(handle))
    finally:
        lib.perf_buffer__free(handle)
    return recs, lost


def test_differential_against_libbpf_perf_buffer(perf_path):
    """The same emissions (every CPU, mixed sizes, one overflow) read by both
    consumers from fresh maps: the same records per CPU, the same losses."""
    results = {}
    for who, run in (("bpfring", _with_bpfring), ("libbpf", _with_libbpf)):
        with bpfring.load(perf_path) as obj:
            recs, lost = run(obj)
            results[who] = (sorted(recs), lost, obj.globals.failed)
    assert len(results["bpfring"][0]) > 300
    assert results["bpfring"][1], "the scenario must overflow a ring"
    assert results["bpfring"] == results["libbpf"]


# ---------------------------------------------------------------------------------
# Re-entrancy and closing from other threads
# ---------------------------------------------------------------------------------


def test_reading_from_inside_a_callback_is_a_clear_error(perf):
    with PerfBuffer(perf.maps["events"].fd, cpus=[0]) as pb:
        emit(perf, 3, 32, cpu=0)
        errors: list[BaseException] = []

        def cb(v: memoryview) -> None:
            try:
                pb.consume(lambda w: None)
            except BPFError as e:
                errors.append(e)
                raise

        with pytest.raises(BPFError, match="inside one of its own callbacks"):
            pb.consume(cb)
        assert len(errors) == 1
        # Nothing was lost: the record whose callback raised comes again.
        assert len(pb.read()) == 3


def test_close_from_a_callback_takes_effect_after_it(perf):
    pb = PerfBuffer(perf.maps["events"].fd, cpus=[0])
    emit(perf, 5, 32, cpu=0)
    seen: list[bytes] = []

    def cb(v: memoryview) -> None:
        seen.append(bytes(v))
        pb.close()

    assert pb.consume(cb) == 1
    assert len(seen) == 1 and pb.closed
    emit(perf, 1, 32, cpu=0)  # the map slot is empty again
    assert perf.globals.failed == 1


def test_close_from_another_thread_wakes_a_blocked_poll(perf):
    pb = PerfBuffer(perf.maps["events"].fd)
    outcome: list[BaseException | int] = []

    def waiter() -> None:
        try:
            outcome.append(pb.poll(lambda v: None, timeout=None))
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    assert t.is_alive()
    pb.close()
    t.join(5)
    assert not t.is_alive(), "poll(timeout=None) stayed blocked after close()"
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError)
    assert "closed" in str(outcome[0])


def test_poller_serves_perf_and_ring_buffers_together(perf, echo):
    """One Poller, one thread: a PerfBuffer next to a RingBuffer."""
    from conftest import produce_ctx

    got: dict[str, int] = {"perf": 0, "ring": 0}
    with PerfBuffer(perf.maps["events"].fd) as pb, bpfring.Poller() as poller:
        rb = echo.ring_buffer("out_ring")
        poller.add(pb, lambda v: got.__setitem__("perf", got["perf"] + 1))
        poller.add(rb, lambda v: got.__setitem__("ring", got["ring"] + 1))
        assert poller.poll(timeout=0) == 0
        emit(perf, 7, 32, cpu=0)
        echo.programs["produce"].run(ctx=produce_ctx(5))
        deadline = time.monotonic() + 10
        while got["perf"] + got["ring"] < 12 and time.monotonic() < deadline:
            poller.poll(timeout=1)
        assert got == {"perf": 7, "ring": 5}
        t0 = time.monotonic()
        assert poller.poll(timeout=0.2) == 0  # nothing left: it waits, no spin
        assert time.monotonic() - t0 >= 0.15


# ---------------------------------------------------------------------------------
# The two backends of the walk: C (_speedups.perf_walk) == pure (_perfcore.perf_walk)
# ---------------------------------------------------------------------------------

try:
    from bpfring import _speedups as _sp
except ImportError:  # a skip here fails under CI (conftest)
    _sp = None


def _walkers():
    out = [("pure", _perfcore.perf_walk)]
    if _sp is not None:
        out.append(("c", _sp.perf_walk))
    return out


@pytest.mark.skipif(_sp is None, reason="bpfring._speedups is not built")
@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.integers(1, 120), st.just(-1)), min_size=1, max_size=40),
       st.integers(0, 31), st.sampled_from([128, 512]), st.one_of(st.none(), st.integers(0, 8)),
       st.integers(-1, 12))
def test_c_and_pure_walks_agree(plan, start, size, limit, raise_at):
    """Same fake ring (records wrapping the end, lost reports), same limit, a
    callback that may raise: both walks deliver the same views, count the
    same losses, store the same data_tail and raise the same way."""
    results = []
    for _name, walker in _walkers():
        meta_b = bytearray(4096)
        meta = memoryview(meta_b).cast("Q")
        ring = FakePerfRing(size)
        ring.head = ring.tail = start * 8
        for seq, n in enumerate(plan):
            rec = (_perfcore.lost_record(seq + 1) if n < 0
                   else _perfcore.sample_record(_payload(seq, n)))
            if not ring.put(rec):
                break
        meta[_perfcore.DATA_HEAD // 8] = ring.head
        meta[_perfcore.DATA_TAIL // 8] = ring.tail
        got: list[bytes] = []
        lost: list[int] = []

        def cb(v: memoryview, got=got) -> None:
            if len(got) == raise_at:
                raise KeyError("stop")
            got.append(bytes(v))

        try:
            res = walker(meta, memoryview(ring.data), cb, limit, lost.append, None)
            err = None
        except KeyError:
            res, err = None, "KeyError"
        results.append((got, lost, res, err, meta[_perfcore.DATA_TAIL // 8]))
    assert all(r == results[0] for r in results[1:]), results


@pytest.mark.skipif(_sp is None, reason="bpfring._speedups is not built")
@pytest.mark.parametrize("bad", [0, 4, 12, 4096])
def test_c_walk_rejects_impossible_headers_and_keeps_what_came_before(bad):
    for _name, walker in _walkers():
        ring = FakePerfRing(256)
        ring.put(_perfcore.sample_record(b"good"))
        at = ring.head
        ring.put(_perfcore.sample_record(b"abcd"))
        struct.pack_into("<H", ring.data, at + 6, bad)
        meta = memoryview(bytearray(4096)).cast("Q")
        meta[_perfcore.DATA_HEAD // 8] = ring.head
        seen: list[bytes] = []

        def keep(v: memoryview, seen: list[bytes] = seen) -> None:
            seen.append(bytes(v))

        with pytest.raises(RingCorrupted):
            walker(meta, memoryview(ring.data), keep, None, None, None)
        assert seen == [b"good"]
        assert meta[_perfcore.DATA_TAIL // 8] == at  # the good record stays consumed
