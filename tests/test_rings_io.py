"""Waiting, notification, several rings, asyncio and map references, against
the real kernel."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from typing import Any

import pytest
from blocking import until_blocked
from conftest import produce_ctx

from bpfring import BPFError, MapRef, Poller, RingBuffer, RingFull, UserRingBuffer, _sys

NO_WAKEUP, FORCE_WAKEUP = 1, 2


def _seq(v) -> int:
    return struct.unpack_from("<I", v)[0]


def _blocked_poll(rb: RingBuffer, timeout: float, start_producer) -> tuple[float, int]:
    """Block in rb.poll in another thread, start the producer once that thread
    really waits; return (seconds until poll returned, records delivered)."""
    got: list[int] = []
    out: list[Any] = []

    def run() -> None:
        t0 = time.monotonic()
        try:
            n = rb.poll(lambda v: got.append(_seq(v)), timeout=timeout)
        except BaseException as e:  # handed to the test thread
            out.append(e)
            return
        out.append((time.monotonic() - t0, n))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    until_blocked(t)
    start_producer()
    t.join(timeout + 30)
    assert not t.is_alive(), "poll outlived its timeout"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


@pytest.mark.parametrize(("flags", "woken"), [(0, True), (FORCE_WAKEUP, True),
                                               (NO_WAKEUP, False)])
def test_wakeup_flags_of_the_kernel_producer(echo, flags, woken):
    """Adaptive (consumer caught up) and FORCE_WAKEUP wake a blocked poll;
    NO_WAKEUP does not: the records are picked up when the timeout ends.
    The poll is blocked before the producer runs; a woken poll returns long
    before its (long) timeout, whatever the machine's load."""
    rb = echo.ring_buffer("out_ring")
    prog = echo.programs["produce"]
    timeout = 60 if woken else 1.5
    elapsed, n = _blocked_poll(rb, timeout, lambda: prog.run(ctx=produce_ctx(3, flags=flags)))
    if woken:
        # The wakeup can come after the first submit, before the program has
        # committed the other two: the woken poll returns what it found (as
        # libbpf's ring_buffer__poll does) and the rest is waiting in the ring.
        assert 1 <= n <= 3
        assert n + rb.consume(lambda v: None) == 3
        assert elapsed < timeout / 2
    else:
        assert n == 3
        assert elapsed >= 1.4


def test_adaptive_wakeup_is_skipped_while_consumer_lags(echo):
    """With records already waiting, the kernel does not notify again
    (consumer_pos is not at the new record), yet poll() still finds them
    because it consumes before it waits."""
    rb = echo.ring_buffer("out_ring")
    prog = echo.programs["produce"]
    prog.run(ctx=produce_ctx(2))
    prog.run(ctx=produce_ctx(2, seq_base=2))
    assert rb.poll(lambda v: None, timeout=5) == 4


def test_batch_publish_moves_consumer_once(echo):
    prog = echo.programs["produce"]
    for batch in (False, True):
        rb = echo.ring_buffer("out_ring", batch_publish=batch)
        prog.run(ctx=produce_ctx(4))
        start = rb.consumer_pos
        seen_pos: list[int] = []
        rb.consume(lambda v, rb=rb, seen=seen_pos: seen.append(rb.consumer_pos))
        if batch:
            assert seen_pos == [start] * 4
        else:
            assert seen_pos == [start + 264 * i for i in range(4)]
        assert rb.consumer_pos == start + 4 * 264
        rb.close()


def test_consume_status_reports_count_and_busy(echo):
    """The public method event loops (Poller) serve rings with: what consume()
    delivers, plus whether a BUSY record stopped the pass (none here: the
    produce program commits every record before it returns)."""
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(5))
    got: list[int] = []
    assert rb.consume_status(lambda v: got.append(_seq(v)), 2) == (2, False)
    assert rb.consume_status(lambda v: got.append(_seq(v))) == (3, False)
    assert rb.consume_status(lambda v: got.append(_seq(v))) == (0, False)
    assert got == [0, 1, 2, 3, 4]


def test_poller_serves_many_rings_fairly(echo):
    big = echo.ring_buffer("out_ring")
    small = echo.ring_buffer("small_ring")
    urb = echo.user_ring_buffer("in_ring")
    prog = echo.programs["produce"]
    prog.run(ctx=produce_ctx(200))
    prog.run(ctx=produce_ctx(10, small=True, seq_base=1000))
    got: dict[str, list[int]] = {"big": [], "small": []}
    writable: list[UserRingBuffer] = []
    with Poller(batch=8) as p:
        p.add(big, lambda v: got["big"].append(_seq(v)))
        p.add(small, lambda v: got["small"].append(_seq(v)))
        p.add(urb, writable.append)
        assert len(p) == 3
        assert p.fileno() >= 0
        first = p.poll(timeout=0)
        # One round serves both rings: the small one is not starved.
        assert got["small"] == list(range(1000, 1010))
        assert first == 200 + 10
        assert got["big"] == list(range(200))
        assert p.poll(timeout=0.05) == 0
        writable.clear()  # registration itself may report the ring writable once
        # A drain of the user ring wakes the poller for the producer callback.
        urb.write(struct.pack("<I", 4242))
        threading.Timer(0.1, echo.programs["echo"].run).start()
        deadline = time.monotonic() + 60  # a hang guard: the drain's wakeup ends it
        while not writable and time.monotonic() < deadline:
            p.poll(timeout=1)
        assert writable == [urb]
        assert urb.pending_bytes() == 0  # it was the drain that woke us
        p.poll(timeout=0)
        assert got["big"][-1] == 4242  # the echoed sample
        with pytest.raises(ValueError):
            p.add(big, print)
        p.remove(small)
        assert len(p) == 2


def test_async_read_and_iteration(echo):
    rb = echo.ring_buffer("out_ring")
    prog = echo.programs["produce"]

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, lambda: threading.Thread(
            target=prog.run, kwargs={"ctx": produce_ctx(5)}).start())
        first = await asyncio.wait_for(rb.read_async(1), 60)  # a hang guard
        out = [_seq(r) for r in first]
        async for rec in rb:
            out.append(_seq(rec))
            if len(out) == 3:
                break
        return out

    out = asyncio.run(main())
    # Records taken out by the iterator but not yet yielded are kept.
    rest = [_seq(r) for r in rb.read()]
    assert out + rest == list(range(5))


def test_async_cancellation_loses_nothing(echo):
    rb = echo.ring_buffer("out_ring")
    urb = echo.user_ring_buffer("in_ring")
    prog = echo.programs["produce"]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(rb.read_async())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rb.fileno() not in loop._selector.get_map()  # reader removed
        # Fill the user ring; a write that waits is cancelled: nothing written.
        while True:
            try:
                urb.write(b"f" * 1000)
            except RingFull:
                break
        free = urb.free
        wtask = asyncio.create_task(urb.write_async(b"w" * 1000))
        await asyncio.sleep(0.05)
        wtask.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wtask
        assert urb.free == free
        # A waiting write completes once the kernel drains.
        loop.call_later(0.1, lambda: threading.Thread(
            target=echo.programs["echo"].run).start())
        await asyncio.wait_for(urb.write_async(b"late"), 60)  # hang guards
        sample = await asyncio.wait_for(urb.reserve_async(4), 60)
        sample[:] = b"resv"
        sample.submit()

    asyncio.run(main())
    prog.run(ctx=produce_ctx(3))
    assert len(rb.read()) > 3  # the echoed samples and the 3 new records


def test_mapref_forms(kernel, tmp_path):
    from bpfring._fs import ensure_bpffs

    assert MapRef.parse("id 12") == MapRef("id", 12)
    assert str(MapRef.parse(["pinned", "/sys/fs/bpf/x"])) == "pinned /sys/fs/bpf/x"
    for bad in ("id", "idx 3", "id abc", "name a b"):
        with pytest.raises(ValueError):
            MapRef.parse(bad)
    name = f"mr{os.getpid() % 100000}"
    ensure_bpffs()
    pin = f"/sys/fs/bpf/bpfring-ref-{os.getpid()}"
    with RingBuffer.create(4096, name=name) as rb:
        rb.pin(pin)
        try:
            for spec in (f"id {rb.map_id}", f"pinned {pin}", f"name {name}",
                         MapRef.fd(rb.fileno())):
                with RingBuffer(spec) as other:
                    assert other.map_id == rb.map_id
            with pytest.raises(BPFError, match="no user_ringbuf map named"):
                UserRingBuffer(f"name {name}")
            # A read-only fd cannot be mmapped at all; the error says so.
            ro = _sys.obj_get(pin, _sys.F_RDONLY)
            try:
                with pytest.raises(BPFError, match="BPF_F_RDONLY"):
                    RingBuffer(ro)
            finally:
                os.close(ro)
        finally:
            os.unlink(pin)
