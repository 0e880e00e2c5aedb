"""The batch and zero-copy paths return exactly what record-by-record
consumption returns: mixed sizes, discards and wrap-around included."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import produce_ctx

import bpfring
from bpfring import RecordTooLarge, RingFull

DT40 = np.dtype([("seq", "<u8"), ("a", "<u8"), ("b", "<u8"), ("c", "<u8"), ("d", "<u8")])
REC256 = np.dtype([("seq", "<u4"), ("size", "<u4"), ("pad", "V248")])


def _scenario(obj, seed: int, consume) -> list[bytes]:
    """Feed the kernel ring a deterministic mix and consume it with ``consume``.

    Mostly 40-byte samples, some of other sizes, and user-side discards go
    through the user ring and the kernel drain; kernel-side discards come from
    ``produce``.  Many laps around both 64 KiB rings."""
    rnd = random.Random(seed)
    crnd = random.Random(seed + 1)  # the consumer's own choices (batch limits)
    urb = obj.user_ring_buffer("in_ring")
    rb = obj.ring_buffer("out_ring")
    echo, produce = obj.programs["echo"], obj.programs["produce"]
    out: list[bytes] = []
    seq = 0
    for _ in range(400):
        for _ in range(rnd.randrange(1, 60)):
            kind = rnd.random()
            seq += 1
            if kind < 0.85:
                row = np.zeros(1, DT40)
                row["seq"] = seq
                urb.write(row.tobytes())
            elif kind < 0.92:
                urb.write(seq.to_bytes(8, "little") + bytes(rnd.randrange(0, 90)))
            else:
                with urb.reserve(40) as s:  # discarded before the kernel sees it
                    s.discard()
        echo.run()
        if rnd.random() < 0.2:
            produce.run(ctx=produce_ctx(rnd.randrange(1, 9), discard_every=3, seq_base=seq))
        consume(rb, out, crnd)
    consume(rb, out, crnd)
    assert rb.available == 0
    assert rb.consumer_pos > 8 * rb.size  # many laps around the ring
    return out


def _scalar(rb, out, rnd):
    out.extend(rb.read())


def _arrays(rb, out, rnd):
    while True:
        limit = rnd.choice([None, 1, 5, 64])
        try:
            arr = rb.read_array(DT40, limit=limit)
        except ValueError:  # next record has another size: scalar path
            recs = rb.read(1)
            out.extend(recs)
            continue
        if len(arr) == 0:
            break
        out.extend(row.tobytes() for row in arr)


def _views(rb, out, rnd):
    while True:
        with rb.view_array(DT40, limit=rnd.choice([None, 3, 50])) as arr:
            assert not arr.flags.writeable
            out.extend(row.tobytes() for row in arr)
            n = len(arr)
        if n == 0:
            recs = rb.read(1)
            if not recs:
                break
            out.extend(recs)


@pytest.mark.parametrize("consumer", [_arrays, _views], ids=["read_array", "view_array"])
def test_batch_consumers_equal_scalar(echo_path, consumer):
    with bpfring.load(echo_path) as a:
        expected = _scenario(a, 11, _scalar)
    with bpfring.load(echo_path) as b:
        got = _scenario(b, 11, consumer)
    assert len(expected) > 3000
    assert got == expected


def test_read_array_stops_at_busy_and_skips_discards(echo):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(30, discard_every=4))
    arr = rb.read_array(REC256)
    assert list(arr["seq"]) == [i for i in range(30) if (i + 1) % 4]
    assert rb.read_array(REC256).shape == (0,)
    assert rb.read_array(REC256, limit=0).shape == (0,)
    with pytest.raises(ValueError, match=r"no size"):
        rb.read_array(np.dtype("V0"))


def test_view_array_exception_keeps_records(echo):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(5))
    with pytest.raises(KeyError), rb.view_array(REC256) as arr:
        assert len(arr) == 5
        raise KeyError
    assert list(rb.read_array(REC256)["seq"]) == [0, 1, 2, 3, 4]


def test_write_array_and_write_many_equal_write(echo_path):
    rnd = np.random.default_rng(5)
    rows = np.zeros(5000, DT40)
    rows["seq"] = np.arange(5000)
    rows["a"] = rnd.integers(0, 2**63, 5000)
    odd = [bytes([i % 251]) * (i % 97) for i in range(300)]

    def run(obj, write_rows, write_odd) -> list[bytes]:
        urb = obj.user_ring_buffer("in_ring")
        rb = obj.ring_buffer("out_ring")
        out: list[bytes] = []
        i = j = 0
        while i < len(rows) or j < len(odd):
            if i < len(rows):
                i += write_rows(urb, rows[i:i + 700])
            if j < len(odd):
                j += write_odd(urb, odd[j:j + 40])
            obj.programs["echo"].run()
            out.extend(rb.read())
        return out

    def scalar_rows(urb, chunk):
        n = 0
        for row in chunk:
            try:
                urb.write(row.tobytes())
            except RingFull:
                break
            n += 1
        return n

    def scalar_odd(urb, chunk):
        n = 0
        for b in chunk:
            try:
                urb.write(b)
            except RingFull:
                break
            n += 1
        return n

    with bpfring.load(echo_path) as a:
        expected = run(a, scalar_rows, scalar_odd)
    with bpfring.load(echo_path) as b:
        got = run(b, lambda u, c: u.write_array(c), lambda u, c: u.write_many(c))
    assert len(expected) == len(rows) + len(odd)
    assert got == expected


def test_write_array_limits(echo):
    urb = echo.user_ring_buffer("in_ring")
    big = np.zeros(2, np.dtype((np.void, urb.size)))
    with pytest.raises(RecordTooLarge):
        urb.write_array(big)
    with pytest.raises(ValueError):
        urb.write_array(np.zeros((2, 2)))
    rows = np.zeros(10_000, DT40)  # 48 bytes each: 1365 fit in 64 KiB
    assert urb.write_array(rows) == urb.size // 48
    assert urb.write_array(rows) == 0  # never a partial sample
    assert urb.free == urb.size % 48
