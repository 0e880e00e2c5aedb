"""Both ring types against the real kernel, through tests/bpf/echo.bpf.c.

``echo`` (SEC("syscall")) drains ``in_ring`` (user ring) and copies every
sample into ``out_ring`` (kernel ring); ``produce`` emits numbered 256-byte
records into ``out_ring`` or the one-page ``small_ring``.
"""

from __future__ import annotations

import os
import random
import struct
import threading
import time

import pytest
from conftest import produce_ctx

import bpfring
from bpfring import (
    MapTypeError,
    RecordTooLarge,
    RingBuffer,
    RingFull,
    SampleError,
    UserRingBuffer,
)


def _seqs(records: list[bytes]) -> list[int]:
    return [struct.unpack_from("<I", r)[0] for r in records]


def test_round_trip_varied_sizes_across_wraparound(echo):
    """Thousands of samples from 0 bytes to 8 KiB go user -> kernel -> user
    intact and in order, many times around both 64 KiB rings."""
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    run = echo.programs["echo"].run
    rnd = random.Random(2)
    sizes = [0, 1, 3, 7, 8, 9, 40, 100, 1000, 4095, 4096, 6000, 8000, 8192]
    sent: list[bytes] = []
    got: list[bytes] = []
    while len(sent) < 5000:
        batch = 0
        while batch < 40:
            payload = rnd.randbytes(rnd.choice(sizes))
            try:
                urb.write(payload)
            except RingFull:
                break
            sent.append(payload)
            batch += 1
        drained = run()
        assert drained == batch
        got.extend(rb.read())
    assert len(got) == len(sent)
    assert got == sent
    # Many laps: positions are far beyond the ring size on both sides.
    assert urb.producer_pos > 20 * urb.size
    assert rb.consumer_pos > 20 * rb.size
    assert rb.lost == 0
    assert echo.globals.echoed == len(sent)


def test_callback_views_and_limit(echo):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(10, seq_base=100))
    assert rb.pending() == (10, 0, 0)
    seen: list[int] = []
    assert rb.consume(lambda v: seen.append(struct.unpack_from("<I", v)[0]), limit=0) == 0
    assert rb.consume(lambda v: seen.append(struct.unpack_from("<I", v)[0]), limit=3) == 3
    assert seen == [100, 101, 102]
    views: list[memoryview] = []
    assert rb.poll(views.append, timeout=0, limit=2) == 2
    # Views are valid only during the callback: afterwards they are released.
    with pytest.raises(ValueError):
        bytes(views[0])
    assert _seqs(rb.read()) == [105, 106, 107, 108, 109]
    assert rb.available == 0


def test_discarded_records_are_skipped(echo):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(9, discard_every=3))
    assert rb.pending() == (6, 3, 0)
    assert _seqs(rb.read()) == [0, 1, 3, 4, 6, 7]
    assert rb.available == 0


def test_poll_timeout_and_iteration(echo):
    rb = echo.ring_buffer("out_ring")
    t0 = time.monotonic()
    assert rb.poll(lambda v: None, timeout=0.2) == 0
    assert 0.15 < time.monotonic() - t0 < 2.0
    # A producer in another thread wakes a blocked poll (adaptive wakeup:
    # the consumer is caught up, so the kernel notifies).
    prog = echo.programs["produce"]
    threading.Timer(0.1, prog.run, kwargs={"ctx": produce_ctx(3, seq_base=7)}).start()
    out: list[int] = []
    t0 = time.monotonic()
    while len(out) < 3:
        rb.poll(lambda v: out.append(struct.unpack_from("<I", v)[0]), timeout=5)
    assert time.monotonic() - t0 < 5
    assert out == [7, 8, 9]
    prog.run(ctx=produce_ctx(4, seq_base=20))
    it = iter(rb)
    assert [struct.unpack_from("<I", next(it))[0] for _ in range(4)] == [20, 21, 22, 23]


def test_callback_exception_keeps_record(echo):
    """At-least-once: the record whose callback raised comes again."""
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(5))
    seen: list[int] = []

    def cb(v: memoryview) -> None:
        seq = struct.unpack_from("<I", v)[0]
        if seq == 2 and seq not in seen:
            seen.append(seq)
            raise RuntimeError("boom")
        seen.append(seq)

    with pytest.raises(RuntimeError, match="boom"):
        rb.consume(cb)
    assert seen == [0, 1, 2]
    assert rb.consume(cb) == 3
    assert seen == [0, 1, 2, 2, 3, 4]


def test_lost_records_are_counted_exactly(echo):
    rb = echo.ring_buffer("small_ring")
    echo.programs["produce"].run(ctx=produce_ctx(100, small=True))
    # A one-page kernel ring holds (4096 - 8) // 264 = 15 records of 256 bytes
    # (a kernel ring is never filled completely): the other 85 are lost.
    assert rb.pending() == (15, 0, 0)
    assert rb.lost == 85
    assert len(rb.read()) == 15
    echo.programs["produce"].run(ctx=produce_ctx(20, small=True))
    assert rb.lost == 90


def test_reserve_submit_discard_and_context_manager(echo):
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    run = echo.programs["echo"].run
    s = urb.reserve(5)
    assert len(s) == 5
    s[:] = b"hello"
    # A reserved (BUSY) sample is invisible to the drain and blocks later ones.
    urb.write(b"after")
    assert run() == 0
    s.submit()
    assert run() == 2
    assert rb.read() == [b"hello", b"after"]

    d = urb.reserve(16)
    d.write(b"never seen")
    d.discard()
    with urb.reserve(3) as ok:
        ok[:] = b"abc"
    with pytest.raises(KeyError), urb.reserve(4) as bad:
        bad[:] = b"gone"
        raise KeyError("abort")
    assert run() == 1  # discarded samples are skipped and not counted
    assert rb.read() == [b"abc"]
    assert urb.free == urb.size  # every byte came back


def test_sample_misuse_is_refused_and_ring_stays_intact(echo):
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    s = urb.reserve(4)
    s[:] = b"once"
    s.submit()
    with pytest.raises(SampleError):
        s.submit()
    with pytest.raises(SampleError):
        s.discard()
    with pytest.raises(ValueError):  # the view was released at submit
        s[:] = b"late"
    assert echo.programs["echo"].run() == 1
    assert rb.read() == [b"once"]


def test_ring_full_and_timeouts(echo):
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    chunk = b"x" * 1016  # 1024 bytes with the header: 64 fit exactly
    for _ in range(64):
        urb.write(chunk)
    assert urb.free == 0  # a user ring can be filled to the last byte
    with pytest.raises(RingFull) as ei:
        urb.write(b"y")
    assert ei.value.errno == 28
    t0 = time.monotonic()
    with pytest.raises(RingFull):
        urb.reserve(8, timeout=0.2)
    assert time.monotonic() - t0 >= 0.19
    # Drain the 64 samples into the kernel ring from another thread while we wait.
    threading.Timer(0.1, echo.programs["echo"].run).start()
    t0 = time.monotonic()
    urb.write(b"z" * 100, timeout=5)
    assert time.monotonic() - t0 < 5
    # The 64 KiB kernel ring can never be 100% full: 63 fit, 1 is counted lost.
    assert len(rb.read()) == 63
    assert rb.lost == 1


def test_record_too_large(echo):
    urb = echo.user_ring_buffer("in_ring")
    assert urb.max_sample_size == urb.size - 8
    with pytest.raises(RecordTooLarge) as ei:
        urb.write(bytes(urb.size - 7))
    assert ei.value.errno == 7
    assert isinstance(ei.value, ValueError)
    urb.write(bytes(urb.size - 8))  # exactly fits
    assert urb.free == 0


def test_wrong_map_types(echo):
    with pytest.raises(MapTypeError):
        echo.ring_buffer("in_ring")
    with pytest.raises(TypeError):
        echo.user_ring_buffer("out_ring")
    with pytest.raises(TypeError, match="percpu_array"):
        RingBuffer(echo.maps["scratch"].fd)
    with pytest.raises(TypeError, match="use RingBuffer"):
        UserRingBuffer(echo.maps["out_ring"].fd)


def test_standalone_create_open_and_from_id(kernel, tmp_path):
    with pytest.raises(ValueError, match="power of two"):
        RingBuffer.create(3 * 4096)
    with pytest.raises(ValueError, match="multiple of the page size"):
        UserRingBuffer.create(2048)
    with RingBuffer.create(8192, name="t_kern") as rb:
        assert rb.size == 8192 and rb.available == 0
        assert rb.info.name == "t_kern"
        with RingBuffer.from_id(rb.map_id) as same:
            assert same.map_id == rb.map_id
        assert rb.read() == []
    from bpfring._fs import ensure_bpffs

    ensure_bpffs()
    pin = f"/sys/fs/bpf/bpfring-test-{os.getpid()}"
    with UserRingBuffer.create(4096) as urb:
        urb.pin(pin)
        try:
            with UserRingBuffer.open(pin) as other:
                other.write(b"abc")
                assert urb.free == 4096 - 16  # same map, seen through both
        finally:
            os.unlink(pin)


def test_closed_ring_refuses_use(echo):
    rb = echo.ring_buffer("out_ring")
    rb.close()
    rb.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        rb.read()


def test_public_api_exports():
    for name in ("RingBuffer", "UserRingBuffer", "Sample", "load", "build", "BPFObject",
                 "BPFError", "RingFull", "LoadError", "BuildError"):
        assert hasattr(bpfring, name), name
    assert issubclass(bpfring.BPFPermissionError, PermissionError)
    assert issubclass(bpfring.BPFError, OSError)
