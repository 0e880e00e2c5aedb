"""``RingBuffer.read_array(out=...)``: a reused output array returns exactly
what record-by-record consumption returns (the scenario of test_fastpath:
mixed sizes, discards from both sides, many laps around the ring), and bad
output arrays are refused before anything is consumed."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import produce_ctx
from test_fastpath import DT40, REC256, _scalar, _scenario

import bpfring


def _arrays_out(rb, out, rnd):
    buf = np.empty(rnd.choice([1, 7, 64, 4096]), DT40)
    while True:
        limit = rnd.choice([None, 1, 5, 64])
        try:
            arr = rb.read_array(DT40, limit=limit, out=buf)
        except ValueError:  # next record has another size: scalar path
            out.extend(rb.read(1))
            continue
        if len(arr) == 0:
            break
        assert arr.base is buf and len(arr) <= len(buf)
        assert limit is None or len(arr) <= limit
        out.extend(row.tobytes() for row in arr)


def test_read_array_into_a_reused_array_equals_scalar(echo_path):
    with bpfring.load(echo_path) as a:
        expected = _scenario(a, 13, _scalar)
    with bpfring.load(echo_path) as b:
        got = _scenario(b, 13, _arrays_out)
    assert len(expected) > 3000
    assert got == expected


def test_read_array_out_fills_at_most_its_length(echo):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(10, discard_every=3))
    want = [i for i in range(10) if (i + 1) % 3]
    out = np.zeros(4, REC256)
    first = rb.read_array(REC256, out=out)
    assert first.base is out and list(first["seq"]) == want[:4]
    second = rb.read_array(REC256, out=out, limit=2)
    assert list(second["seq"]) == want[4:6]
    assert list(rb.read_array(REC256, out=out)["seq"]) == want[6:]
    assert rb.read_array(REC256, out=out).shape == (0,)


def test_read_array_refuses_bad_outputs_without_consuming(echo):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(3))
    with pytest.raises(ValueError, match="256"):
        rb.read_array(REC256, out=np.zeros(4, DT40))  # another itemsize
    with pytest.raises(ValueError, match="contiguous"):
        rb.read_array(REC256, out=np.zeros(8, REC256)[::2])
    ro = np.zeros(4, REC256)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        rb.read_array(REC256, out=ro)
    with pytest.raises(TypeError, match="1-D numpy array"):
        rb.read_array(REC256, out=bytearray(1024))
    with pytest.raises(TypeError, match="1-D numpy array"):
        rb.read_array(REC256, out=np.zeros((2, 2), REC256))
    assert list(rb.read_array(REC256)["seq"]) == [0, 1, 2]  # nothing was consumed
