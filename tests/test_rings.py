"""Both ring types against the real kernel, through tests/bpf/echo.bpf.c.

``echo`` (SEC("syscall")) drains ``in_ring`` (user ring) and copies every
sample into ``out_ring`` (kernel ring); ``produce`` emits numbered 256-byte
records into ``out_ring`` or the one-page ``small_ring``.

The first tests run on the active backend (``make test`` and ``make
test-pure`` run them on each); the last section runs on both in one session,
and a deterministic scenario must give identical results on each.
"""

from __future__ import annotations

import os
import random
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
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
    _ringbackend,
)

try:
    from bpfring import _speedups as sp
except ImportError:  # not built: the pure-Python backend is all there is
    sp = None


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
    assert 0.15 < time.monotonic() - t0 < 30  # waited its timeout (upper: a hang guard)
    # A producer in another thread wakes a blocked poll (adaptive wakeup:
    # the consumer is caught up, so the kernel notifies).
    prog = echo.programs["produce"]
    threading.Timer(0.1, prog.run, kwargs={"ctx": produce_ctx(3, seq_base=7)}).start()
    out: list[int] = []
    t0 = time.monotonic()
    while len(out) < 3:
        rb.poll(lambda v: out.append(struct.unpack_from("<I", v)[0]), timeout=60)
    assert time.monotonic() - t0 < 30  # woken: not at the end of a 60 s timeout
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
    urb.write(b"z" * 100, timeout=60)
    assert time.monotonic() - t0 < 30  # woken by the drain, long before the timeout
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


# ---------------------------------------------------------------------------------
# Both backends against the kernel: the C paths == the pure-Python paths
# ---------------------------------------------------------------------------------



def _in_mode(accelerated: bool, fn: Callable[[], Any]) -> Any:
    prev = _ringbackend.set_accelerated(accelerated)
    try:
        return fn()
    finally:
        _ringbackend.set_accelerated(prev)


def _load_echo(echo_path):
    return bpfring.load(echo_path)


def _kernel_scenario(echo_path, seed: int, consumer: str) -> dict[str, Any]:
    """User ring -> echo drain -> kernel ring, plus kernel-side produce() with
    discards, consumed by ``consumer``; every choice comes from ``seed``, so
    both modes see the same sequence of operations.  Returns everything
    observable."""
    rnd = random.Random(seed)
    crnd = random.Random(seed + 1000)
    out: list[bytes] = []
    log: list[Any] = []
    with _load_echo(echo_path) as obj:
        urb = obj.user_ring_buffer("in_ring")
        rb = obj.ring_buffer("out_ring", batch_publish=crnd.random() < 0.5)
        echo, produce = obj.programs["echo"], obj.programs["produce"]
        seq = 0
        for _ in range(150):
            burst = []
            for _ in range(rnd.randrange(1, 60)):
                seq += 1
                n = rnd.choice([0, 1, 5, 8, 40, 100, 999, 4000, 8000])
                burst.append(seq.to_bytes(4, "little") * (n // 4 + 1))
                burst[-1] = burst[-1][:n]
            how = rnd.random()
            if how < 0.5:
                for p in burst:
                    try:
                        urb.write(p)
                    except RingFull:
                        log.append("full")
                        break
            elif how < 0.8:
                log.append(urb.write_many(burst))
            else:
                for p in burst:
                    try:
                        s = urb.reserve(len(p))
                    except RingFull:
                        log.append("full")
                        break
                    s.write(p)
                    if rnd.random() < 0.2:
                        s.discard()  # the kernel never sees it
                    else:
                        s.submit()
            log.append(echo.run())
            if rnd.random() < 0.3:
                produce.run(ctx=produce_ctx(rnd.randrange(1, 12),
                                            discard_every=rnd.choice([0, 2, 3]),
                                            seq_base=seq))
            _consume_some(rb, out, crnd, consumer, log)
        while rb._backlog or rb.pending()[0]:
            _consume_some(rb, out, crnd, consumer, log)
        log.append((urb.producer_pos, urb.consumer_pos, rb.producer_pos, rb.consumer_pos))
        log.append((obj.globals.echoed, obj.globals.echo_failed, rb.lost))
        assert rb.consumer_pos > 4 * rb.size  # many laps: wrap-around exercised
    return {"records": out, "log": log}


def _consume_some(rb, out: list[bytes], rnd: random.Random, consumer: str,
                  log: list[Any]) -> None:
    limit = rnd.choice([None, None, 0, 1, 7, 50])
    if consumer == "callback":
        # A failing callback: both backends publish the records before the
        # failing one, with or without batch_publish, and redeliver only it.
        fail_at = rnd.choice([None, None, 0, 3])
        calls = 0

        def cb(v: memoryview) -> None:
            nonlocal calls
            calls += 1
            if calls - 1 == fail_at:
                raise LookupError("callback failed")
            out.append(bytes(v))

        try:
            log.append(rb.consume(cb, limit))
        except LookupError:
            log.append("raised")
            log.append(rb.consume(lambda v: out.append(bytes(v)), 1))  # redelivered
    elif consumer == "read":
        recs = rb.read(limit)
        log.append(len(recs))
        out.extend(recs)
    else:  # iteration, stopped part-way: the rest stays in the backlog
        it = iter(rb)
        k = rnd.choice([1, 5, 300])
        for _ in range(k):
            if not rb._backlog and not rb.pending()[0]:
                break  # next() would block
            out.append(next(it))
        log.append(k)


@pytest.mark.parametrize("consumer", ["callback", "read", "iter"])
@pytest.mark.parametrize("seed", [1, 2])
def test_kernel_round_trip_c_equals_python(echo_path, consumer, seed):
    if sp is None:
        pytest.skip("bpfring._speedups is not built")
    c = _in_mode(True, lambda: _kernel_scenario(echo_path, seed, consumer))
    py = _in_mode(False, lambda: _kernel_scenario(echo_path, seed, consumer))
    assert len(c["records"]) > 1000
    assert c["records"] == py["records"]
    assert c["log"] == py["log"]


def test_kernel_produce_with_discards_and_limits(echo, mode):
    rb = echo.ring_buffer("out_ring")
    prog = echo.programs["produce"]
    # 64 KiB ring, 264 bytes a record: 300 records go around it more than once.
    got: list[int] = []
    base = 0
    for _ in range(10):
        prog.run(ctx=produce_ctx(30, discard_every=4, seq_base=base))
        base += 30
        assert rb.pending()[:2] == (23, 7)
        got += [struct.unpack_from("<I", r)[0] for r in rb.read(limit=10)]
        got += [struct.unpack_from("<I", r)[0] for r in rb.read()]
    assert got == [i for i in range(300) if (i % 30 + 1) % 4]
    assert rb.consumer_pos == rb.producer_pos > rb.size


def test_kernel_callback_exception_redelivers(echo, mode):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(6))
    seen: list[int] = []

    def cb(v: memoryview) -> None:
        seq = struct.unpack_from("<I", v)[0]
        seen.append(seq)
        if seq in (1, 4) and seen.count(seq) == 1:
            raise ValueError(seq)

    for _ in range(2):
        with pytest.raises(ValueError):
            rb.poll(cb, timeout=0)
    assert rb.poll(cb, timeout=0) == 2
    assert seen == [0, 1, 1, 2, 3, 4, 4, 5]
    assert rb.available == 0


def test_kernel_typed_read_and_decode_failure(echo, mode):
    """read() with a record type decodes copies; a record that fails to
    decode stays first in line (with the ones after it)."""
    rb = echo.ring_buffer("out_ring", record="rec256")
    echo.programs["produce"].run(ctx=produce_ctx(4, seq_base=50))
    recs = rb.read(limit=2)
    assert [r.seq for r in recs] == [50, 51]
    real = rb._decode
    calls = 0

    def flaky(buf: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("decode failed")
        return real(buf)

    rb._decode = flaky
    with pytest.raises(RuntimeError):
        rb.read()
    rb._decode = real
    left = [r.seq for r in rb.read()]
    # The record that failed is never lost: it goes back in the iterator's
    # backlog, first in line.
    assert left == [53]
    assert rb.available == 0


def test_kernel_user_ring_paths(echo, mode):
    """write, write_many, reserve/submit/discard and write_array all reach
    the kernel drain intact, also when the ring is full or a sample too big."""
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    run = echo.programs["echo"].run
    urb.write(b"one")
    assert urb.write_many([b"two", bytearray(b"three"), memoryview(b"four")]) == 3
    with urb.reserve(4) as s:
        s[:] = b"five"
    s = urb.reserve(3)
    s.discard()
    with pytest.raises(SampleError):
        s.submit()
    arr = np.frombuffer(b"sixseven", dtype="S4")
    assert urb.write_array(arr) == 2
    assert run() == 7
    assert rb.read() == [b"one", b"two", b"three", b"four", b"five", b"sixs", b"even"]
    with pytest.raises(RecordTooLarge):
        urb.write(bytes(urb.size))
    with pytest.raises(RecordTooLarge):
        urb.write_many([bytes(urb.size)])
    with pytest.raises(TypeError):
        urb.write("text")
    with pytest.raises(RecordTooLarge):
        urb.write_many([b"ok", bytes(urb.size)])
    # On this error path both backends publish the samples written before
    # the one that raised (the pure-Python path once published none of them).
    assert run() == 1
    rb.read()
    # None in the input is an error, not the end of it (it once ended an
    # iterator's batch silently, dropping what followed), in lists, tuples
    # and other iterables alike.
    for src in ([b"a", None, b"b"], (b"a", None, b"b"), iter([b"a", None, b"b"])):
        with pytest.raises(TypeError):
            urb.write_many(src)
        assert run() == 1
        assert rb.read() == [b"a"]
    # Fill to the last byte, then RingFull at once (timeout 0).
    n = 0
    while True:
        try:
            urb.write(bytes(1016))  # 1024 per sample: 64 fill the 64 KiB ring
        except RingFull:
            break
        n += 1
    assert n == 64 and urb.free == 0
    assert urb.write_many([b"x"]) == 0
    assert run() == 64
    assert len(rb.read()) <= 64


def test_kernel_close_with_kept_views(echo, mode):
    """A view kept past the callback pins the mapping (no use after unmap)."""
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(2, seq_base=9))
    arrays: list[np.ndarray] = []
    rb.consume(lambda v: arrays.append(np.frombuffer(v, np.uint32)))
    rb.close()
    assert [int(a[0]) for a in arrays] == [9, 10]  # still mapped: readable
