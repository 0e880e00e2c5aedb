"""The fixed-size batch paths of both ring backends (``scan`` behind
``view_array``, ``read_into`` behind ``read_array``, ``write_array``) return
exactly what the reference returns.

The reference is the record-by-record walk written out below (an oracle over
the headers), the sans-IO core's numpy runs (:meth:`Consumer.regular_run`,
which the pure backend runs) and the kernel drain's checks
(:func:`check_drain`).  The rings are the plain-memory fakes of
``test_backend_contract``: mixed sizes, discarded and BUSY records (also in
the middle of a run), positions many laps in and payloads across the wrap.
"""

from __future__ import annotations

import random
from types import ModuleType

import numpy as np
import pytest
from test_backend_contract import BACKENDS, FakeRing, _backend

from bpfring import RingCorrupted, _ringpure
from bpfring._ringcore import (
    BUSY_BIT,
    DISCARD_BIT,
    LEN_MASK,
    RUN_BUSY,
    RUN_END,
    RUN_OTHER,
    Consumer,
    check_drain,
    record_span,
)

ITEM = 40


@pytest.fixture(params=BACKENDS)
def be(request) -> ModuleType:
    return _backend(request.param)


def _fixed_ring(rnd: random.Random, size: int = 8192, itemsize: int = ITEM) -> FakeRing:
    """Mostly ``itemsize``-byte records, some of other sizes, some discarded
    (of any size), a few BUSY ones (also followed by committed records, as
    with two producers), positions laps in, wrapping."""
    ring = FakeRing(size)
    ring.cons = ring.prod = rnd.randrange(0, 40 * size, 8)
    while True:
        n = rnd.choice([itemsize] * 12 + [0, 8, itemsize - 8, itemsize + 8, 200])
        if record_span(n) > size - 8 - (ring.prod - ring.cons):
            break
        kind = rnd.random()
        ring.emit(rnd.randbytes(n), discard=kind < 0.08, busy=0.08 <= kind < 0.1)
        if kind > 0.995:
            break
    return ring


def _oracle_read(ring: FakeRing, itemsize: int, cap: int) -> tuple[list[bytes], int, int]:
    """Record by record: skip discarded records, take committed ones of
    ``itemsize`` bytes, stop at BUSY, at another size, at the end or after
    ``cap`` records.  Returns (payloads, why, position)."""
    data, size = ring.data, ring.size
    pos, prod = ring.cons, ring.prod
    out: list[bytes] = []
    why = RUN_END
    while len(out) < cap and pos != prod:
        off = pos % size
        word = int.from_bytes(data[off:off + 4], "little")
        n = word & LEN_MASK
        if word & BUSY_BIT:
            why = RUN_BUSY
            break
        if word & DISCARD_BIT:
            pos += record_span(n)
            continue
        if n != itemsize or record_span(n) > prod - pos:
            why = RUN_OTHER
            break
        out.append(bytes(data[off + 8:off + 8 + n]))
        pos += record_span(n)
    return out, why, pos


def _oracle_scan(ring: FakeRing, itemsize: int, limit: int | None) -> tuple[int, int, int]:
    """regular_run's contract, written out: (start after leading discards,
    records in the run, why it ended)."""
    data, size = ring.data, ring.size
    pos, prod = ring.cons, ring.prod

    def word_at(p: int) -> int:
        return int.from_bytes(data[p % size:p % size + 4], "little")

    while pos != prod and word_at(pos) & (BUSY_BIT | DISCARD_BIT) == DISCARD_BIT:
        pos += record_span(word_at(pos) & LEN_MASK)
    if pos == prod:
        return pos, 0, RUN_END
    room = (prod - pos) // record_span(itemsize)
    if limit is not None:
        room = min(room, limit)
    if room == 0:
        return pos, 0, RUN_BUSY if word_at(pos) & BUSY_BIT else RUN_OTHER
    for k in range(room):
        word = word_at(pos + k * record_span(itemsize))
        if word != itemsize:
            why = RUN_BUSY if word & BUSY_BIT else RUN_END if word & DISCARD_BIT else RUN_OTHER
            return pos, k, why
    return pos, room, RUN_END


# ---------------------------------------------------------------------------------
# scan: the header pass of view_array
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(60))
def test_scan_matches_the_reference(be, seed):
    rnd = random.Random(seed)
    ring = _fixed_ring(rnd)
    limit = rnd.choice([None, None, 0, 1, 7, 50])
    before = bytes(ring.data), ring.cons, ring.prod
    got = ring.kernel(be).scan(ITEM, limit)
    assert got == _oracle_scan(ring, ITEM, limit)
    npd = np.frombuffer(ring.data, np.uint8)
    core = Consumer(memoryview(ring.data), ring.size)
    assert got == core.regular_run(npd, ring.cons, ring.prod, ITEM, limit)
    assert (bytes(ring.data), ring.cons, ring.prod) == before  # scan publishes nothing


def test_scan_stops_at_busy_in_the_middle_and_reads_across_the_wrap(be):
    ring = FakeRing(4096)
    ring.cons = ring.prod = 4096 * 3 - 5 * 48  # the run wraps after 5 records
    for i in range(9):
        ring.emit(i.to_bytes(8, "little") * 5)
    busy = ring.emit(bytes(ITEM), busy=True)
    ring.emit(bytes(ITEM))  # committed after a BUSY one: not part of the run
    kr = ring.kernel(be)
    assert kr.scan(ITEM, None) == (ring.cons, 9, RUN_BUSY)
    assert kr.scan(ITEM, 4) == (ring.cons, 4, RUN_END)
    ring.header(busy, ITEM)  # committed now
    assert kr.scan(ITEM, None) == (ring.cons, 11, RUN_END)
    ring.header(busy, ITEM | DISCARD_BIT)
    assert kr.scan(ITEM, None) == (ring.cons, 9, RUN_END)


# ---------------------------------------------------------------------------------
# read_into: the fused scan + copy of read_array
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(60))
def test_read_into_matches_the_record_by_record_walk(be, seed):
    rnd = random.Random(seed)
    ring = _fixed_ring(rnd)
    ref = ring.copy()
    limit = rnd.choice([None, None, 0, 1, 5, 64])
    room = rnd.choice([None, 3, 1000])  # records the output has room for
    out = bytearray(ITEM * (room if room is not None else 200))
    cap = len(out) // ITEM if limit is None else min(limit, len(out) // ITEM)
    want, why, pos = _oracle_read(ref, ITEM, cap)
    n, got_why = ring.kernel(be).read_into(out, ITEM, limit)
    assert (n, got_why) == (len(want), why)
    assert bytes(out[:n * ITEM]) == b"".join(want)
    assert not any(out[n * ITEM:])  # nothing written past the records
    assert ring.cons == (pos if cap else ref.cons)
    assert ring.prod == ref.prod and ring.data == ref.data  # only consumer_pos moves


@pytest.mark.parametrize("seed", range(30))
def test_read_into_backends_agree_and_drain_like_consume(seed):
    """Repeated calls of both backends on copies of a ring: the same counts,
    reasons, bytes and positions; reading past other-sized records with
    read() in between delivers every record once."""
    c = _backend("c")
    rnd = random.Random(seed)
    ring = _fixed_ring(rnd)
    rings = {"c": ring, "pure": ring.copy()}
    scalar = ring.copy()
    want: list[bytes] = []
    scalar.kernel(_ringpure).consume(lambda v: want.append(bytes(v)), None, True, True)
    seen: dict[str, list[bytes]] = {}
    log: dict[str, list[tuple[int, int, int]]] = {}
    for name, be in (("c", c), ("pure", _ringpure)):
        r = rings[name]
        kr = r.kernel(be)
        got: list[bytes] = []
        steps: list[tuple[int, int, int]] = []
        crnd = random.Random(seed + 100)
        for _ in range(500):
            out = bytearray(ITEM * crnd.choice([1, 4, 300]))
            n, why = kr.read_into(out, ITEM, crnd.choice([None, 2]))
            steps.append((n, why, r.cons))
            got.extend(bytes(out[i * ITEM:(i + 1) * ITEM]) for i in range(n))
            if n == 0 and why == RUN_OTHER:
                got.extend(kr.read(1)[0])
            elif (n == 0 and why == RUN_BUSY) or (n == 0 and r.cons == r.prod):
                break
        seen[name], log[name] = got, steps
    assert seen["c"] == seen["pure"]
    assert log["c"] == log["pure"]
    assert rings["c"].cons == rings["pure"].cons
    # Up to the first BUSY record, exactly what record-by-record consumption gave.
    assert seen["c"] == want


def test_read_into_skips_discards_and_publishes_past_them(be):
    ring = FakeRing(4096)
    ring.emit(bytes(200), discard=True)
    ring.emit(bytes(8), discard=True)
    first = ring.emit(b"x" * 16)  # another size: stays
    kr = ring.kernel(be)
    out = bytearray(ITEM * 4)
    assert kr.read_into(out, ITEM, None) == (0, RUN_OTHER)
    assert ring.cons == first  # past the discarded records, not past the other one
    assert kr.read_into(out, ITEM, 0) == (0, RUN_END)


def test_read_into_refuses_impossible_rings_and_bad_arguments(be):
    ring = FakeRing(4096)
    ring.emit(bytes(ITEM))
    kr = ring.kernel(be)
    out = bytearray(ITEM * 4)
    ring.prod = ring.cons + 8192
    with pytest.raises(RingCorrupted, match="more than a ring apart"):
        kr.read_into(out, ITEM, None)
    with pytest.raises(RingCorrupted, match="more than a ring apart"):
        kr.scan(ITEM, None)
    ring.prod, ring.cons = 48, 4
    with pytest.raises(RingCorrupted, match="not 8-byte aligned"):
        kr.read_into(out, ITEM, None)
    with pytest.raises(RingCorrupted, match="not 8-byte aligned"):
        kr.scan(ITEM, None)
    ring2 = FakeRing(4096)
    ring2.header(0, 4000 | DISCARD_BIT)  # a discarded record claiming too much
    ring2.prod = 64
    with pytest.raises(RingCorrupted, match="past producer position 64"):
        ring2.kernel(be).read_into(out, ITEM, None)
    with pytest.raises(RingCorrupted, match="past producer position 64"):
        ring2.kernel(be).scan(ITEM, None)
    with pytest.raises(ValueError, match="itemsize"):
        kr.scan(-1, None)
    with pytest.raises(ValueError, match="itemsize"):
        kr.read_into(out, LEN_MASK + 1, None)
    with pytest.raises(ValueError, match="limit"):
        kr.read_into(out, ITEM, -5)
    with pytest.raises((BufferError, TypeError, ValueError)):
        kr.read_into(bytes(80), ITEM, None)  # not writable
    with pytest.raises((BufferError, TypeError, ValueError)):
        kr.read_into(np.zeros((4, 20), np.uint8)[:, :10], ITEM, None)  # not contiguous


def test_read_into_keeps_the_copies_made_before_a_corrupted_record(be):
    ring = FakeRing(4096)
    for i in range(3):
        ring.emit(bytes([i]) * ITEM)
    bad = ring.prod
    ring.header(bad, 3000 | DISCARD_BIT)
    ring.prod = bad + 16
    kr = ring.kernel(be)
    out = bytearray(ITEM * 10)
    assert kr.read_into(out, ITEM, None) == (3, RUN_END)
    assert ring.cons == bad
    with pytest.raises(RingCorrupted):
        kr.read_into(out, ITEM, None)
    assert ring.cons == bad


# ---------------------------------------------------------------------------------
# write_array: bulk samples for the user ring
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(30))
def test_write_array_backends_agree_and_the_drain_accepts_it(seed):
    c = _backend("c")
    rnd = random.Random(seed)
    size = 4096
    itemsize = rnd.choice([0, 1, 8, 40, 100, 255])
    rows = rnd.randrange(0, 200)
    payload = rnd.randbytes(rows * itemsize)
    start = rnd.randrange(0, 30 * size, 8)
    used = rnd.randrange(0, size // 2, 8)
    res = {}
    for name, be in (("c", c), ("pure", _ringpure)):
        ring = FakeRing(size)
        ring.cons, ring.prod = start, start + used
        k = ring.user(be).write_array(payload, itemsize, rows)
        res[name] = (k, ring.prod, bytes(ring.data))
        span = record_span(itemsize)
        assert k == min(rows, (size - used) // span)
        assert ring.prod == start + used + k * span
        # The samples as the drain sees them, once both mappings show them.
        data = bytearray(ring.data)
        for off in range(size):
            if data[off + size]:
                data[off] = data[off + size]
        chk = check_drain(memoryview(data), size, start + used, ring.prod)
        assert (chk.samples, chk.errno, chk.cons) == (k, 0, ring.prod)
        pos = start + used
        for i in range(k):
            off = pos % size
            assert data[off:off + 8] == itemsize.to_bytes(4, "little") + bytes(4)
            body = bytes(data[off + 8:off + 8 + itemsize])
            assert body == payload[i * itemsize:(i + 1) * itemsize]
            pos += span
    assert res["c"] == res["pure"]


def test_write_array_refusals(be):
    ring = FakeRing(4096)
    ur = ring.user(be)
    assert ur.write_array(bytes(80), ITEM, 2) == 2
    with pytest.raises(ValueError, match="not 2 samples"):
        ur.write_array(bytes(81), ITEM, 2)
    with pytest.raises(ValueError, match="not 1 samples"):
        ur.write_array(bytes(1), 0, 1)
    with pytest.raises(ValueError, match="not -1 samples"):
        ur.write_array(bytes(0), ITEM, -1)
    with pytest.raises(ValueError, match="itemsize"):
        ur.write_array(bytes(8), -8, 1)
    with pytest.raises((BufferError, TypeError, ValueError)):
        ur.write_array(np.zeros((4, 80), np.uint8)[:, :ITEM], ITEM, 4)  # not contiguous
    prod = ring.prod
    ring.prod = prod + 4  # misaligned: refused, nothing written
    assert ur.write_array(bytes(80), ITEM, 2) == -1
    ring.prod = ring.cons + 8192  # more than a ring apart
    assert ur.write_array(bytes(80), ITEM, 2) == -1
    ring.prod = prod
    assert ur.write_array(bytes(4096), 4096, 1) == -1  # can never fit
    assert ur.write_array(b"", 0, 3) == 3  # empty samples
    assert ring.prod == prod + 3 * 8
    full = FakeRing(4096)
    assert full.user(be).write_array(bytes(ITEM * 100), ITEM, 100) == 4096 // 48
    assert full.prod - full.cons == 4096 // 48 * 48
