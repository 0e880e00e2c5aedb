"""Issue 11, item 14 (second half): a callback's view points into the ring,
so a slice kept past the call silently shows newer records once the ring
wraps (documented); debug mode (``debug=True``, ``BPFRING_DEBUG=1``) hands
callbacks a view released when they return, so a use after the callback
raises ``ValueError``, and refuses a kept slice on the spot.  Both backends
(the ``mode`` fixture) and the perf buffer."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import produce_ctx

from bpfring import BPFError, PerfBuffer, Poller, RingBuffer

# small_ring is 4096 bytes and a rec256 record takes 264 with its header:
# record 512 is the first to start again at data offset 0 (512 * 264 is a
# multiple of 4096), right over record 0.
_LAP = 512


def _seq(view: memoryview) -> int:
    return int(struct.unpack_from("<I", view)[0])


def _produce_laps(echo, rb: RingBuffer, first: int, count: int) -> None:
    """Records first .. first+count-1 through small_ring, 15 at a time (what
    fits), each batch consumed before the next."""
    done = 0
    while done < count:
        n = min(15, count - done)
        echo.programs["produce"].run(ctx=produce_ctx(n, small=True, seq_base=first + done))
        assert rb.consume(lambda v: None) == n
        done += n


def test_a_kept_slice_shows_newer_records_without_debug(echo, mode):
    rb = echo.ring_buffer("small_ring", debug=False)
    assert not rb.debug
    kept: list[memoryview] = []
    echo.programs["produce"].run(ctx=produce_ctx(1, small=True, seq_base=7))
    assert rb.consume(lambda v: kept.append(v[0:4])) == 1
    assert _seq(kept[0]) == 7
    _produce_laps(echo, rb, 1000, _LAP)
    # The documented hazard: same memory, now record 512 of the laps.
    assert _seq(kept[0]) == 1000 + _LAP - 1
    kept[0].release()


def test_debug_releases_the_view_after_the_callback(echo, mode):
    rb = echo.ring_buffer("small_ring", debug=True)
    assert rb.debug
    kept: list[memoryview] = []
    seen: list[int] = []

    def cb(v: memoryview) -> None:
        assert v.readonly and len(v) == 256
        seen.append(_seq(v))  # inside the call: fine
        kept.append(v)

    echo.programs["produce"].run(ctx=produce_ctx(3, small=True, seq_base=40))
    assert rb.consume(cb) == 3
    assert seen == [40, 41, 42]
    for v in kept:
        with pytest.raises(ValueError, match="released"):
            v[0]
        with pytest.raises(ValueError):
            bytes(v)


@pytest.mark.parametrize("keep", ["slice", "cast", "numpy"])
def test_debug_refuses_a_kept_slice_and_keeps_the_record(echo, mode, keep):
    rb = echo.ring_buffer("small_ring", debug=True)
    kept: list[object] = []

    def cb(v: memoryview) -> None:
        if keep == "slice":
            kept.append(v[0:4])
        elif keep == "cast":
            kept.append(v.cast("I"))
        else:
            kept.append(np.frombuffer(v, dtype=np.uint32))

    echo.programs["produce"].run(ctx=produce_ctx(2, small=True, seq_base=5))
    with pytest.raises(ValueError, match="kept a view") as ei:
        rb.consume(cb)
    assert isinstance(ei.value, BPFError) and ei.value.hint
    # What it kept shows poison, never ring memory; the record was not consumed.
    assert bytes(memoryview(kept[0]).cast("B"))[:4] == b"\xdb" * 4  # type: ignore[arg-type]
    kept.clear()
    got: list[int] = []
    assert rb.consume(lambda v: got.append(_seq(v))) == 2
    assert got == [5, 6]


def test_debug_through_a_poller_and_the_backlog(echo, mode):
    rb = echo.ring_buffer("small_ring", debug=True)
    echo.programs["produce"].run(ctx=produce_ctx(4, small=True, seq_base=0))
    it = iter(rb)
    assert struct.unpack_from("<I", next(it))[0] == 0  # the rest wait in the backlog
    kept: list[memoryview] = []
    with Poller() as p:
        p.add(rb, kept.append)
        assert p.poll(timeout=0) == 3
    assert len(kept) == 3
    with pytest.raises(ValueError):
        kept[0].tobytes()


def test_debug_from_the_environment(echo, monkeypatch):
    monkeypatch.setenv("BPFRING_DEBUG", "1")
    rb = echo.ring_buffer("small_ring")
    assert rb.debug
    monkeypatch.setenv("BPFRING_DEBUG", "0")
    assert not RingBuffer(echo.maps["small_ring"].fd).debug
    rb2 = RingBuffer(echo.maps["small_ring"].fd, debug=True)
    assert rb2.debug
    rb2.close()


def test_debug_perf_buffer(kernel):
    from conftest import BPF_DIR
    from test_perfbuf import emit

    import bpfring

    with bpfring.load(bpfring.build(BPF_DIR / "perf_prog.bpf.c")) as perf, \
            PerfBuffer(perf.maps["events"].fd, cpus=[0], debug=True) as pb:
        emit(perf, 2, 64, cpu=0)
        kept: list[memoryview] = []
        assert pb.consume(kept.append) == 2
        with pytest.raises(ValueError):
            kept[0][0]
        emit(perf, 1, 64, cpu=0)
        with pytest.raises(ValueError, match="kept a view"):
            pb.consume(lambda v: kept.append(v[0:8]))
        kept.clear()
        assert len(pb.read(timeout=1)) == 1
