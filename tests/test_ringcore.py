"""The sans-IO ring protocol core on plain bytearrays, against simple models.

A tiny emulation of the kernel side (a BPF producer for RINGBUF, the drain for
USER_RINGBUF) writes and reads the same buffer as the core; hypothesis drives
random sizes, discards, busy records, wrap-around and interleavings.
"""

from __future__ import annotations

import errno
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpfring._ringcore import (
    BUSY_BIT,
    DISCARD_BIT,
    HDR_SIZE,
    LEN_MASK,
    POS_MASK,
    RUN_BUSY,
    RUN_END,
    RUN_OTHER,
    Consumer,
    ConsumeResult,
    Producer,
    check_drain,
    check_ring_size,
    committed_word,
    consume_pass,
    distance,
    header_words,
    parse_header,
    read_payload,
    record_span,
    try_put,
)
from bpfring.errors import RecordTooLarge, RingCorrupted, RingFull, SampleError

SIZE = 256


class KernelProducer:
    """What kernel/bpf/ringbuf.c does for a BPF producer, on a bytearray."""

    def __init__(self, buf: bytearray, size: int) -> None:
        self.buf, self.size, self.prod = buf, size, 0

    def reserve(self, length: int, cons: int) -> int | None:
        span = record_span(length)
        # A kernel ring must keep prod - cons <= size - 8 (never 100% full).
        if (self.prod + span) - cons > self.size - 1:
            return None
        off = self.prod & (self.size - 1)
        struct.pack_into("<II", self.buf, off, length | BUSY_BIT, 3)
        self.prod += span
        return off

    def fill(self, off: int, payload: bytes) -> None:
        start = (off + HDR_SIZE) % self.size
        for i, b in enumerate(payload):
            self.buf[(start + i) % self.size] = b

    def commit(self, off: int, discard: bool) -> None:
        (word,) = struct.unpack_from("<I", self.buf, off)
        word &= ~BUSY_BIT
        if discard:
            word |= DISCARD_BIT
        struct.pack_into("<I", self.buf, off, word)


def kernel_drain(buf: bytearray, size: int, cons: int, prod: int) -> tuple[list[bytes], int]:
    """What bpf_user_ringbuf_drain hands to its callback, and where it stops."""
    chk = check_drain(memoryview(buf), size, cons, prod)
    out = []
    words = memoryview(buf).cast("I")
    while cons < chk.cons:
        word = words[(cons & (size - 1)) >> 2]
        length = word & LEN_MASK
        if not word & DISCARD_BIT:
            start = (cons + HDR_SIZE) & (size - 1)
            out.append(bytes(read_payload(memoryview(buf), size, start, length)))
        cons += record_span(length)
    return out, cons


def test_sizes_and_headers():
    assert record_span(0) == 8
    assert record_span(5) == 16
    assert record_span(8) == 16
    assert record_span(9) == 24
    assert parse_header(12 | DISCARD_BIT) == (12, False, True)
    assert parse_header(40 | BUSY_BIT) == (40, True, False)
    check_ring_size(4096, 4096)
    for bad in (0, 3 * 4096, 2048, 1 << 32):
        with pytest.raises(ValueError):
            check_ring_size(bad, 4096)


# ---------------------------------------------------------------------- consumer


ops_consumer = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, 120)),
        st.tuples(st.just("commit"), st.integers(0, 10), st.booleans()),
        st.tuples(st.just("consume"), st.one_of(st.none(), st.integers(0, 4))),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops_consumer)
def test_consumer_matches_model(ops):
    buf = bytearray(SIZE)
    kp = KernelProducer(buf, SIZE)
    core = Consumer(memoryview(buf), SIZE)
    cons = 0
    published = memoryview(bytearray(8)).cast("Q")
    # model: records in reservation order: [payload, state] state busy/done/discard
    model: list[list] = []
    open_recs: list[tuple[int, int]] = []  # (record index, header offset)
    delivered: list[bytes] = []
    expected: list[bytes] = []
    seq = 0
    for op in ops:
        if op[0] == "reserve":
            off = kp.reserve(op[1], cons)
            if off is None:
                # Kernel rule: fails only when the record does not fit.
                assert kp.prod + record_span(op[1]) - cons > SIZE - 1
                continue
            payload = bytes((seq + i) & 0xFF for i in range(op[1]))
            seq += 1
            kp.fill(off, payload)
            model.append([payload, "busy"])
            open_recs.append((len(model) - 1, off))
        elif op[0] == "commit" and open_recs:
            idx, off = open_recs.pop(op[1] % len(open_recs))
            kp.commit(off, op[2])
            model[idx][1] = "discard" if op[2] else "done"
        elif op[0] == "consume":
            limit = op[1]
            before = published[0]
            res = core.consume(cons, kp.prod, lambda v: delivered.append(bytes(v)), limit,
                               published)
            # model: walk from the first unconsumed record
            n = 0
            while model and model[0][1] != "busy" and (limit is None or n < limit):
                payload, state = model.pop(0)
                open_recs[:] = [(i - 1, o) for i, o in open_recs]
                if state == "done":
                    expected.append(payload)
                    n += 1
            assert res.delivered == n
            stopped_at_busy = bool(model) and model[0][1] == "busy"
            assert res.busy == (stopped_at_busy and (limit is None or n < limit))
            moved = res.cons != cons
            cons = res.cons
            assert published[0] == (cons if moved else before)
    assert delivered == expected
    assert cons <= kp.prod


def test_consumer_reports_corruption_and_keeps_record_on_error():
    buf = bytearray(SIZE)
    core = Consumer(memoryview(buf), SIZE)
    struct.pack_into("<I", buf, 0, 100)  # claims 100 bytes, only 16 published
    with pytest.raises(RingCorrupted):
        core.consume(0, 16, lambda v: None, None, None)
    struct.pack_into("<I", buf, 0, 4)
    struct.pack_into("<I", buf, 16, 4)
    pubs = memoryview(bytearray(8)).cast("Q")
    pubs[0] = 99

    def boom(v):
        raise OSError("x")

    with pytest.raises(OSError):
        core.consume(0, 32, boom, None, pubs)
    assert pubs[0] == 0  # the failing record stays unconsumed


# ---------------------------------------------------------------------- producer


ops_producer = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, 250)),
        st.tuples(st.just("submit"), st.integers(0, 10), st.booleans()),
        st.tuples(st.just("drain")),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops_producer)
def test_producer_matches_model(ops):
    buf = bytearray(SIZE)
    core = Producer(memoryview(buf), SIZE)
    prod = cons = 0
    model: list[list] = []  # [payload, state]
    open_s: list[tuple[int, int]] = []  # (model index, header offset)
    drained: list[bytes] = []
    expected: list[bytes] = []
    seq = 0
    for op in ops:
        if op[0] == "reserve":
            n = op[1]
            span = record_span(n)
            try:
                hdr, new_prod = core.plan(n, cons, prod)
            except RecordTooLarge:
                assert span > SIZE
                continue
            except RingFull:
                assert span > SIZE - (prod - cons)
                continue
            assert span <= SIZE - (prod - cons)  # a user ring may be filled completely
            off = core.begin(hdr, n)
            payload = bytes((seq * 7 + i) & 0xFF for i in range(n))
            seq += 1
            core.write(off, payload)
            prod = new_prod
            model.append([payload, "busy"])
            open_s.append((len(model) - 1, hdr))
        elif op[0] == "submit" and open_s:
            idx, hdr = open_s.pop(op[1] % len(open_s))
            core.commit(hdr, op[2])
            with pytest.raises(SampleError):
                core.commit(hdr, op[2])
            model[idx][1] = "discard" if op[2] else "done"
        elif op[0] == "drain":
            got, cons = kernel_drain(buf, SIZE, cons, prod)
            drained.extend(got)
            while model and model[0][1] != "busy":
                payload, state = model.pop(0)
                open_s[:] = [(i - 1, h) for i, h in open_s]
                if state == "done":
                    expected.append(payload)
    assert drained == expected
    assert core.free(cons, prod) == SIZE - (prod - cons)


def test_producer_limits():
    core = Producer(memoryview(bytearray(SIZE)), SIZE)
    assert core.max_payload() == SIZE - 8
    hdr, new = core.plan(SIZE - 8, 0, 0)
    assert (hdr, new) == (0, SIZE)
    with pytest.raises(RecordTooLarge):
        core.plan(SIZE - 7, 0, 0)
    with pytest.raises(RingFull):
        core.plan(0, 0, SIZE)
    with pytest.raises(RingCorrupted):
        core.plan(0, 0, SIZE + 8)


def test_check_drain_reports_what_the_kernel_would():
    buf = bytearray(SIZE)
    mv = memoryview(buf)
    assert check_drain(mv, SIZE, 0, 12).errno == errno.EINVAL  # misaligned producer_pos
    struct.pack_into("<I", buf, 0, 32)
    assert check_drain(mv, SIZE, 0, 32).errno == errno.EINVAL  # longer than published
    struct.pack_into("<I", buf, 0, SIZE)
    assert check_drain(mv, SIZE, 0, SIZE + 8).errno == errno.E2BIG  # longer than the ring
    struct.pack_into("<I", buf, 0, 8)
    struct.pack_into("<I", buf, 16, 8 | BUSY_BIT)
    res = check_drain(mv, SIZE, 0, 32)
    assert (res.samples, res.errno, res.cons, res.reason) == (1, 0, 16, "busy sample")
    struct.pack_into("<I", buf, 16, 8 | BUSY_BIT | DISCARD_BIT)  # DISCARD wins over BUSY
    res = check_drain(mv, SIZE, 0, 32)
    assert (res.samples, res.discarded, res.cons) == (1, 1, 32)


# ---------------------------------------------------------------------- helpers of the backends


def test_positions_and_header_words():
    assert distance(10, 26) == 16
    assert distance(POS_MASK - 7, 8) == 16  # across the 64-bit wrap
    assert committed_word(40 | BUSY_BIT, False) == 40
    assert committed_word(40 | BUSY_BIT, True) == 40 | DISCARD_BIT
    words = header_words(memoryview(bytearray(16)).cast("Q"))
    assert words.format == "I" and len(words) == 4


def test_consume_pass_keeps_its_state_on_errors():
    """The walk the pure backend builds on: ``res`` says where it stopped,
    also when the callback or the ring content made it raise."""
    buf = bytearray(2 * SIZE)
    data = memoryview(buf)
    words = header_words(data)
    for pos in (0, 16, 32):
        struct.pack_into("<I", buf, pos, 4)
    res = ConsumeResult(cons=0)
    calls = []

    def cb(v: memoryview) -> None:
        calls.append(bytes(v))
        if len(calls) == 2:
            raise KeyError("second")

    with pytest.raises(KeyError):
        consume_pass(res, data, words, SIZE, 48, cb, None, None, True)
    assert (res.delivered, res.cons) == (1, 16)  # the failing record stays first
    consume_pass(res, data, words, SIZE, 48, lambda v: None, None, None, False)
    assert (res.delivered, res.cons, res.busy) == (3, 48, False)
    struct.pack_into("<I", buf, 48, 100)  # claims more than is published
    with pytest.raises(RingCorrupted, match="claims 100 bytes"):
        consume_pass(res, data, words, SIZE, 64, lambda v: None, None, None, True)
    assert res.cons == 48
    res.cons = 4
    with pytest.raises(RingCorrupted, match="not 8-byte aligned"):
        consume_pass(res, data, words, SIZE, 64, lambda v: None, None, None, True)
    res.cons = 48
    consume_pass(res, data, words, SIZE, 64, lambda v: None, 0, None, True)  # limit 0
    assert res.cons == 48 and res.delivered == 3


@settings(max_examples=300, deadline=None)
@given(st.integers(-1, SIZE + 8), st.integers(0, 3 * SIZE), st.integers(0, 3 * SIZE))
def test_try_put_writes_exactly_when_plan_allows(length, cons, prod):
    """try_put (the pure backend's fast path) and Producer.plan (the checked
    path) agree on every input: -1 and nothing written exactly when plan
    raises; else the same new position, the payload and a final header."""
    buf = bytearray(2 * SIZE)
    core = Producer(memoryview(buf)[:SIZE], SIZE)
    payload = bytes(range(max(length, 0) % 256)) * (max(length, 0) // 256 + 1)
    payload = payload[:max(length, 0)]
    try:
        hdr, want = core.plan(length, cons, prod)
    except (RecordTooLarge, RingFull, RingCorrupted):
        want = -1
    got = try_put(memoryview(buf), SIZE, cons, prod, payload, length)
    assert got == want
    if got < 0:
        assert buf == bytearray(2 * SIZE)
    else:
        assert struct.unpack_from("<II", buf, hdr) == (length, 0)
        assert buf[hdr + HDR_SIZE:hdr + HDR_SIZE + length] == payload


def _fixed_ring(sizes_flags: list[tuple[int, int]]) -> tuple[bytearray, int]:
    """A double-mapped (2 * SIZE) ring holding records of the given sizes
    and header flags from position 0; returns it and producer_pos."""
    buf = bytearray(2 * SIZE)
    pos = 0
    for i, (n, flags) in enumerate(sizes_flags):
        struct.pack_into("<II", buf, pos, n | flags, 0)
        buf[pos + HDR_SIZE:pos + HDR_SIZE + n] = bytes([i]) * n
        pos += record_span(n)
    buf[SIZE:] = buf[:SIZE]
    return buf, pos


def test_regular_run_and_its_views():
    buf, prod = _fixed_ring([(16, DISCARD_BIT), (16, 0), (16, 0), (16, 0), (5, 0),
                             (16, 0), (16, BUSY_BIT)])
    core = Consumer(memoryview(buf), SIZE)
    npd = np.frombuffer(buf, np.uint8)
    start, n, why = core.regular_run(npd, 0, prod, 16, None)
    assert (start, n, why) == (24, 3, RUN_OTHER)  # leading discard skipped; 5 bytes next
    assert core.run_bytes(npd, start, n, 16)[:, 0].tolist() == [1, 2, 3]
    recs = core.run_records(npd, start, n, np.dtype([("a", "u1"), ("pad", "V15")]))
    assert recs["a"].tolist() == [1, 2, 3]
    end = core.run_end(start, n, 16)
    assert end == 24 * 4 and core.length_at(end) == 5
    assert core.regular_run(npd, 0, prod, 16, 2) == (24, 2, RUN_END)  # the limit
    assert core.regular_run(npd, end, prod, 16, None) == (end, 0, RUN_OTHER)
    after = end + record_span(5)
    assert core.regular_run(npd, after, prod, 16, None) == (after, 1, RUN_BUSY)
    assert core.regular_run(npd, prod, prod, 16, None) == (prod, 0, RUN_END)
    with pytest.raises(RingCorrupted, match="more than a ring apart"):
        core.regular_run(npd, 0, 2 * SIZE, 16, None)
    buf2, prod2 = _fixed_ring([(100, DISCARD_BIT)])
    core2 = Consumer(memoryview(buf2), SIZE)
    with pytest.raises(RingCorrupted, match="discarded record"):
        core2.regular_run(np.frombuffer(buf2, np.uint8), 0, prod2 - 8, 16, None)


def test_fixed_runs_of_the_producer():
    buf = bytearray(2 * SIZE)
    core = Producer(memoryview(buf), SIZE)
    core.check_fixed(SIZE - 8)
    with pytest.raises(RecordTooLarge):
        core.check_fixed(SIZE - 7)
    assert core.room_for(24, 0, 0) == SIZE // 32
    assert core.room_for(24, 0, SIZE - 32) == 1
    with pytest.raises(RingCorrupted):
        core.room_for(24, 0, 12)  # misaligned producer_pos
    with pytest.raises(RingCorrupted):
        core.room_for(24, 0, SIZE + 8)  # more than a ring apart
    rows = np.arange(3 * 24, dtype=np.uint8).reshape(3, 24)
    start = SIZE - 32  # the run wraps: contiguous in the double mapping
    assert core.put_run(np.frombuffer(buf, np.uint8), start, rows) == start + 96
    for i in range(3):
        off = start + 32 * i
        assert struct.unpack_from("<II", buf, off) == (24, 0)
        assert buf[off + 8:off + 32] == rows[i].tobytes()
    assert core.has_room(SIZE - 8, 0, 0) and not core.has_room(SIZE - 7, 0, 0)
    prod = core.put(8, memoryview(b"abc"))
    assert prod == 24 and struct.unpack_from("<II", buf, 8) == (3, 0)
