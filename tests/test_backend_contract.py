"""The contract both ring backends keep: the C accelerator (``bpfring._speedups``)
and the pure-Python ``bpfring._ringpure`` run this one suite.

Every test takes ``be``, the backend module, once per backend, and works on
plain bytearrays: a bytearray of ``2 * size`` bytes stands in for the double
mapping (the helpers below write every record into both halves, as the
kernel's second mapping would show it).  The walks are compared with the
sans-IO core :mod:`bpfring._ringcore` (the reference), and the two backends
with each other.
"""

from __future__ import annotations

import random
import struct
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import bpfring
from bpfring import RingCorrupted, _ringpure
from bpfring._ringcore import (
    BUSY_BIT,
    DISCARD_BIT,
    DYNPTR_MAX,
    HDR_SIZE,
    LEN_MASK,
    Consumer,
    check_drain,
    record_span,
)

try:
    from bpfring import _speedups as sp
except ImportError:  # not built: the pure-Python backend is all there is
    sp = None

BACKENDS = ["c", "pure"]


def _backend(name: str) -> ModuleType:
    if name == "pure":
        return _ringpure
    if sp is None:
        pytest.skip("bpfring._speedups is not built")
    return sp


@pytest.fixture(params=BACKENDS)
def be(request) -> ModuleType:
    """The backend under test: ``bpfring._speedups`` or ``bpfring._ringpure``."""
    return _backend(request.param)


# ---------------------------------------------------------------------------------
# A fake ring in plain memory
# ---------------------------------------------------------------------------------


class FakeRing:
    """Data area (2 * size, both halves kept identical), consumer and producer
    pages as bytearrays; ``emit`` plays the kernel producer."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.data = bytearray(2 * size)
        self.cons_page = bytearray(8)
        self.prod_page = bytearray(8)
        self.cv = memoryview(self.cons_page).cast("Q")
        self.pv = memoryview(self.prod_page).cast("Q")

    @property
    def cons(self) -> int:
        return self.cv[0]

    @cons.setter
    def cons(self, v: int) -> None:
        self.cv[0] = v

    @property
    def prod(self) -> int:
        return self.pv[0]

    @prod.setter
    def prod(self, v: int) -> None:
        self.pv[0] = v

    def put(self, pos: int, raw: bytes) -> None:
        """Write ``raw`` at ring position ``pos`` as both mappings show it."""
        size = self.size
        for i, b in enumerate(raw):
            off = (pos + i) % size
            self.data[off] = b
            self.data[off + size] = b

    def header(self, pos: int, word: int) -> None:
        self.put(pos, struct.pack("<II", word, 0))

    def emit(self, payload: bytes, *, discard: bool = False, busy: bool = False) -> int:
        """Reserve and (unless busy) commit one record; return its position."""
        pos = self.prod
        n = len(payload)
        assert record_span(n) <= self.size - (pos - self.cons)
        self.put(pos + 8, payload)
        word = n | (BUSY_BIT if busy else 0) | (DISCARD_BIT if discard else 0)
        self.header(pos, word)
        self.prod = pos + record_span(n)
        return pos

    def args(self) -> tuple[Any, ...]:
        return self.data, self.cons_page, self.prod_page, self.size

    def kernel(self, be: ModuleType) -> Any:
        """The backend's consumer of this ring."""
        return be.KernelRing(*self.args())

    def user(self, be: ModuleType) -> Any:
        """The backend's producer into this ring."""
        return be.UserRing(*self.args())

    def copy(self) -> FakeRing:
        other = FakeRing(self.size)
        other.data[:] = self.data
        other.cons, other.prod = self.cons, self.prod
        return other


def _py_consume(ring: FakeRing, cb: Callable[[memoryview], Any], limit: int | None,
                publish_each: bool = True) -> tuple[int, int, bool, int]:
    """The reference: passes of the sans-IO core's Consumer.consume until
    producer_pos stops moving."""
    core = Consumer(memoryview(ring.data), ring.size)
    cons = ring.cons
    total = discarded = 0
    busy = False
    while True:
        prod = ring.prod
        if cons == prod:
            break
        left = None if limit is None else limit - total
        res = core.consume(cons, prod, cb, left, ring.cv if publish_each else None)
        total += res.delivered
        discarded += res.discarded
        cons = res.cons
        ring.cons = cons
        busy = res.busy
        if busy or (limit is not None and total >= limit) or res.cons != prod:
            break
    return total, discarded, busy, cons


def _random_ring(rnd: random.Random, size: int = 4096, start: int | None = None
                 ) -> FakeRing:
    """A ring somewhere in its life (positions past several laps), holding a
    random mix of records: sizes 0..300, some discarded, perhaps ending with a
    BUSY one; payloads wrap around the end of the area."""
    ring = FakeRing(size)
    pos = start if start is not None else rnd.randrange(0, 50 * size, 8)
    ring.cons = ring.prod = pos
    while True:
        n = rnd.choice([0, 1, 7, 8, 9, 40, 100, 255, 300])
        if record_span(n) > size - 8 - (ring.prod - ring.cons):
            break
        kind = rnd.random()
        ring.emit(rnd.randbytes(n), discard=kind < 0.15)
        if kind > 0.97:
            break
    if rnd.random() < 0.3 and record_span(4) <= size - 8 - (ring.prod - ring.cons):
        ring.emit(b"busy", busy=True)
    return ring


# ---------------------------------------------------------------------------------
# The two backends export the same thing
# ---------------------------------------------------------------------------------

EXPORTS = {"API", "HDR_SIZE", "DYNPTR_MAX", "KernelRing", "UserRing", "load_acquire_u64",
           "store_release_u64", "acquire_fence", "perf_walk", "perf_read", "perf_take",
           "perf_read_array", "backlog_iter"}
POSITIONS = {"consumer_pos", "producer_pos", "publish", "size"}


def _public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def test_backends_export_the_same_names_and_constants():
    assert set(_ringpure.__all__) == EXPORTS <= _public(_ringpure)
    assert (_ringpure.HDR_SIZE, _ringpure.DYNPTR_MAX) == (8, DYNPTR_MAX)
    c = _backend("c")
    assert _public(c) == EXPORTS
    assert (c.API, c.HDR_SIZE, c.DYNPTR_MAX) == (_ringpure.API, 8, DYNPTR_MAX)
    assert _public(c.KernelRing) == _public(_ringpure.KernelRing) == \
        {"consume", "read", "read_records", "halt", "scan", "read_into"} | POSITIONS
    assert _public(c.UserRing) == _public(_ringpure.UserRing) == \
        {"commit", "write", "write_many", "write_list", "write_array"} | POSITIONS


@pytest.mark.parametrize("seed", range(30))
def test_backends_agree_byte_for_byte(seed):
    """The same random ring and the same operations through both backends:
    identical results, positions and memory."""
    c = _backend("c")
    rnd = random.Random(seed)
    ring = _random_ring(rnd)
    other = ring.copy()
    limit = rnd.choice([None, 0, 1, 3, 1000])
    each = rnd.random() < 0.5
    items = [rnd.randbytes(rnd.choice([0, 3, 8, 100, 900])) for _ in range(12)]
    start = rnd.randrange(4)
    got: dict[str, list[Any]] = {"c": [], "pure": []}
    for be, r, out in ((c, ring, got["c"]), (_ringpure, other, got["pure"])):
        res = r.kernel(be).consume(lambda v, out=out: out.append(bytes(v)), limit, each, True)
        out.append(res)
        out.append(r.kernel(be).read(None))
        w = r.user(be)
        out.append(w.write_many(iter(items), ()))
        out.append(w.write_list([*items[::-1], "str"], start))
        out.append(w.write(b"tail"))
    assert got["c"] == got["pure"]
    assert (ring.cons, ring.prod) == (other.cons, other.prod)
    assert ring.data == other.data


# ---------------------------------------------------------------------------------
# KernelRing: consume / read on bytearrays
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_consume_matches_reference_on_random_rings(be, seed):
    rnd = random.Random(seed)
    ring = _random_ring(rnd)
    ref = ring.copy()
    limit = rnd.choice([None, 0, 1, 3, 10, 1000])
    publish_each = rnd.random() < 0.5
    got: list[bytes] = []
    want: list[bytes] = []
    b_res = ring.kernel(be).consume(lambda v: got.append(bytes(v)), limit, publish_each, True)
    py_res = _py_consume(ref, lambda v: want.append(bytes(v)), limit, publish_each)
    assert got == want
    assert b_res == py_res
    assert ring.cons == ref.cons == b_res[3]


@pytest.mark.parametrize("seed", range(20))
def test_read_matches_consume(be, seed):
    rnd = random.Random(seed)
    ring = _random_ring(rnd)
    ref = ring.copy()
    limit = rnd.choice([None, 0, 1, 5, 1000])
    recs, busy = ring.kernel(be).read(limit)
    want: list[bytes] = []
    res = ref.kernel(be).consume(lambda v: want.append(bytes(v)), limit, True, True)
    assert recs == want
    assert all(type(r) is bytes for r in recs)
    assert busy == res[2]
    assert ring.cons == ref.cons


def test_positions_near_2_64_wrap(be):
    ring = FakeRing(4096)
    ring.cons = ring.prod = (1 << 64) - 24
    sent = [b"a" * 10, b"b" * 30, b"c"]
    for p in sent:
        pos = ring.prod
        ring.put(pos + 8, p)
        ring.header(pos, len(p))
        ring.prod = (pos + record_span(len(p))) % (1 << 64)
    assert ring.kernel(be).read(None) == (sent, False)
    assert ring.cons == ring.prod == (sum(record_span(len(p)) for p in sent) - 24)


def test_wrapped_payload_is_one_view(be):
    ring = FakeRing(4096)
    ring.cons = ring.prod = 4096 - 16  # header at the end, payload wraps
    payload = bytes(range(200))
    ring.emit(payload)
    views: list[memoryview] = []

    def cb(v: memoryview) -> None:
        assert v.readonly and v.format == "B" and v.ndim == 1
        assert v.contiguous and v.nbytes == len(v) == 200
        assert bytes(v) == payload and v.tobytes() == payload
        views.append(v)

    assert ring.kernel(be).consume(cb, None, True, True) == (1, 0, False, 4096 - 16 + 208)
    with pytest.raises(ValueError):  # released after the call
        bytes(views[0])


def test_limits(be):
    ring = FakeRing()
    for i in range(6):
        ring.emit(bytes([i]) * 8)
    seen: list[int] = []
    kr = ring.kernel(be)
    assert kr.consume(lambda v: seen.append(v[0]), 0, True, True)[0] == 0
    assert kr.consume(lambda v: seen.append(v[0]), 2, True, True)[0] == 2
    assert kr.read(0) == ([], False)
    assert kr.read(1) == ([b"\2" * 8], False)
    assert kr.consume(lambda v: seen.append(v[0]), -1, True, True)[0] == 3
    assert seen == [0, 1, 3, 4, 5]
    with pytest.raises(ValueError):
        kr.consume(print, -2, True, True)
    with pytest.raises(ValueError):
        kr.read(-5)


def test_busy_stops_and_discards_are_published_past(be):
    ring = FakeRing()
    kr = ring.kernel(be)
    ring.emit(b"one")
    ring.emit(b"gone", discard=True)
    busy_at = ring.emit(b"busy" * 3, busy=True)
    ring.emit(b"after")
    got: list[bytes] = []
    res = kr.consume(lambda v: got.append(bytes(v)), None, True, True)
    assert got == [b"one"]
    assert res == (1, 1, True, busy_at)
    assert ring.cons == busy_at
    assert kr.read(None) == ([], True)
    ring.header(busy_at, 12)  # commit it
    assert kr.read(None) == ([b"busy" * 3, b"after"], False)
    # Only discarded records: skipped and published past, nothing delivered.
    ring.emit(b"x", discard=True)
    ring.emit(b"y" * 20, discard=True)
    assert kr.consume(print, None, False, True) == (0, 2, False, ring.prod)
    assert ring.cons == ring.prod


@pytest.mark.parametrize("publish_each", [True, False])
def test_callback_exception_publishes_position_before_the_record(be, publish_each):
    ring = FakeRing()
    pos = [ring.emit(struct.pack("<I", i)) for i in range(5)]
    seen: list[int] = []

    def cb(v: memoryview) -> None:
        i = struct.unpack("<I", v)[0]
        seen.append(i)
        if i == 2 and seen.count(2) == 1:
            raise KeyError("boom")

    kr = ring.kernel(be)
    with pytest.raises(KeyError, match="boom"):
        kr.consume(cb, None, publish_each, True)
    assert ring.cons == pos[2]  # 0 and 1 consumed, 2 not
    assert kr.consume(cb, None, publish_each, True)[:3] == (3, 0, False)
    assert seen == [0, 1, 2, 2, 3, 4]
    assert ring.cons == ring.prod


def test_callback_that_keeps_its_view_and_raises(be):
    """The exception propagates unchanged while the kept view is released."""
    ring = FakeRing()
    first = ring.emit(b"abc")
    kept: list[memoryview] = []

    def cb(v: memoryview) -> None:
        kept.append(v)
        raise ValueError("kept and raised")

    with pytest.raises(ValueError, match="kept and raised") as ei:
        ring.kernel(be).consume(cb, None, True, True)
    assert ei.value.__context__ is None
    with pytest.raises(ValueError, match="released"):
        bytes(kept[0])
    assert ring.cons == first


def test_publish_each_versus_once(be):
    ring = FakeRing()
    kr = ring.kernel(be)
    for i in range(4):
        ring.emit(bytes(16 + i))
    start = ring.cons
    seen: list[int] = []
    kr.consume(lambda v: seen.append(ring.cons), None, False, True)
    assert seen == [start] * 4
    for _ in range(4):
        ring.emit(bytes(16))
    start = ring.cons
    seen.clear()
    kr.consume(lambda v: seen.append(ring.cons), None, True, True)
    assert seen == [start + 24 * i for i in range(4)]


def test_producer_moving_during_consume_is_followed(be):
    """Like libbpf: after reaching producer_pos, load it again and go on
    while it moves."""
    ring = FakeRing()
    ring.emit(b"first")
    got: list[bytes] = []

    def cb(v: memoryview) -> None:
        got.append(bytes(v))
        if len(got) < 3:
            ring.emit(b"more%d" % len(got))

    assert ring.kernel(be).consume(cb, None, True, True)[0] == 3
    assert got == [b"first", b"more1", b"more2"]


def test_corruption_is_refused_after_publishing_good_records(be):
    ring = FakeRing()
    kr = ring.kernel(be)
    ring.emit(b"good")
    bad = ring.prod
    ring.header(bad, 100)  # claims 100 bytes, only 8 + 8 published below
    ring.prod = bad + 16
    got: list[bytes] = []
    with pytest.raises(RingCorrupted, match="claims 100 bytes but only 8 are published"):
        kr.consume(lambda v: got.append(bytes(v)), None, False, True)
    assert got == [b"good"] and ring.cons == bad
    with pytest.raises(RingCorrupted):
        kr.consume(print, None, True, True)
    assert ring.cons == bad  # never published past producer_pos
    with pytest.raises(RingCorrupted):
        kr.read(None)
    # read() hands out what it copied before a bad record; the next call raises.
    ring.cons = bad - 16
    assert kr.read(None) == ([b"good"], False)
    assert ring.cons == bad
    # A discarded record claiming too much is refused too.
    ring.header(bad, 100 | DISCARD_BIT)
    with pytest.raises(RingCorrupted, match="discarded record"):
        kr.consume(print, None, True, True)
    assert ring.cons == bad
    # Positions more than a ring apart, and a misaligned consumer_pos.
    ring.cons, ring.prod = 0, 8192
    with pytest.raises(RingCorrupted, match="more than a ring apart"):
        kr.consume(print, None, True, True)
    ring.cons, ring.prod = 1000, 900
    with pytest.raises(RingCorrupted):
        kr.read(None)
    ring.cons, ring.prod = 4, 64
    with pytest.raises(RingCorrupted, match="not 8-byte aligned"):
        kr.consume(print, None, True, True)
    with pytest.raises(RingCorrupted, match="not 8-byte aligned"):
        kr.read(None)
    assert ring.cons == 4
    with pytest.raises(RingCorrupted) as ei:
        kr.read(None)
    assert isinstance(ei.value, bpfring.BPFError) and ei.value.errno == 22


def test_views_kept_by_the_callback(be):
    """A view that outlives the call is released (release_views) or stays
    valid (release_views=False); a re-exported view (numpy) stays valid; a
    recycled view never changes what the callback kept from an earlier one."""
    ring = FakeRing()
    for i in range(6):
        ring.emit(bytes([i]) * 16)
    kept: list[Any] = []

    def cb(v: memoryview) -> None:
        i = v[0]
        if i == 0:
            kept.append(v)  # plain reference: released afterwards
        elif i == 1:
            kept.append(np.frombuffer(v, np.uint8))  # export: cannot be released
        elif i == 2:
            kept.append(v[2:6])  # a slice is its own view
        elif i == 3:
            kept.append(weakref.ref(v))
        elif i == 4:
            v.release()  # the callback may release it itself
        kept.append(bytes(v) if i != 4 else b"")

    kr = ring.kernel(be)
    kr.consume(cb, None, True, True)
    with pytest.raises(ValueError):
        bytes(kept[0])
    assert kept[1] == b"\0" * 16
    assert kept[2].tolist() == [1] * 16 and not kept[2].flags.writeable
    assert bytes(kept[4]) == b"\2" * 4
    assert kept[6]() is None or bytes(kept[6]()) == b"\3" * 16
    assert kept[-1] == b"\5" * 16
    # release_views=False: kept views stay usable.
    ring.emit(b"keep me")
    keep: list[memoryview] = []
    kr.consume(keep.append, None, True, False)
    assert bytes(keep[0]) == b"keep me"


def test_view_cannot_write_and_hash_is_fresh(be):
    ring = FakeRing()
    ring.emit(b"abc")
    ring.emit(b"xyz")
    hashes: list[int] = []

    def cb(v: memoryview) -> None:
        with pytest.raises(TypeError):
            v[0] = 1
        hashes.append(hash(v))

    # A memoryview hashes only if its exporter does: bytes (and mmap) do,
    # bytearray does not.  The data area is only read, so bytes will do.
    _, cons, prod, size = ring.args()
    be.KernelRing(bytes(ring.data), cons, prod, size).consume(cb, None, True, True)
    assert hashes == [hash(b"abc"), hash(b"xyz")]


def test_argument_checks(be):
    ring = FakeRing()
    data, cons, prod, size = ring.args()
    with pytest.raises(ValueError, match="power of two"):
        be.KernelRing(data, cons, prod, 3000)
    with pytest.raises(ValueError, match="power of two"):
        be.UserRing(data, cons, prod, 8)
    with pytest.raises(TypeError, match="size must be an int"):
        be.KernelRing(data, cons, prod, 4096.0)
    with pytest.raises(OverflowError):
        be.KernelRing(data, cons, prod, -4096)
    with pytest.raises(ValueError, match="2 \\* size"):
        be.KernelRing(data[:4096], cons, prod, size)
    with pytest.raises(ValueError, match="aligned"):
        be.KernelRing(memoryview(bytearray(2 * size + 4))[4:], cons, prod, size)
    with pytest.raises(ValueError, match="cons_page"):
        be.KernelRing(data, bytearray(4), prod, size)
    with pytest.raises(ValueError, match="prod_page"):
        be.UserRing(data, cons, memoryview(bytearray(12))[4:], size)
    with pytest.raises(BufferError):
        be.KernelRing(data, bytes(8), prod, size)  # consumer page must be writable
    with pytest.raises(BufferError):
        be.UserRing(data, cons, bytes(8), size)  # producer page must be writable
    with pytest.raises(BufferError):
        be.UserRing(bytes(data), cons, prod, size)  # the producer writes the data
    with pytest.raises(TypeError):
        be.KernelRing(data, "not a buffer", prod, size)
    with pytest.raises(TypeError):
        ring.kernel(be).consume("not callable", None, True, True)
    with pytest.raises(TypeError):
        be.KernelRing(data, cons, prod)
    with pytest.raises(TypeError):
        ring.kernel(be).read()
    with pytest.raises(TypeError):
        ring.user(be).write_many([b"a"], ())  # needs an iterator
    mv = memoryview(data)
    mv.release()
    with pytest.raises(ValueError):  # a closed ring's views are released
        be.KernelRing(mv, cons, prod, size)
    # ... also once bound: every call checks the buffers again.
    views = [memoryview(b) for b in (data, cons, prod)]
    kr = be.KernelRing(*views, size)
    ur = be.UserRing(*views, size)
    assert kr.size == ur.size == size
    for v in views:
        v.release()
    for call in (lambda: kr.read(None), lambda: kr.consume(print, None, True, True),
                 lambda: ur.write(b"x"), lambda: ur.write_many(iter([b"x"]), ())):
        with pytest.raises(ValueError):
            call()


# ---------------------------------------------------------------------------------
# UserRing: write / write_many on bytearrays
# ---------------------------------------------------------------------------------


def test_write_produces_what_the_drain_accepts(be):
    ring = FakeRing(4096)
    ring.cons = ring.prod = 4096 * 7 - 24  # wraps soon
    ur = ring.user(be)
    sent: list[bytes] = []
    rnd = random.Random(5)
    while True:
        p = rnd.randbytes(rnd.choice([0, 1, 5, 8, 100, 333]))
        if not ur.write(p):
            break
        sent.append(p)
    assert ring.size - (ring.prod - ring.cons) < record_span(333)
    # Without a real double mapping, the tail of the one payload that wraps
    # sits in the second half (the first half there is still zero): fold it
    # into the first half, then mirror the first half for the reads below.
    for off in range(ring.size):
        hi = ring.data[off + ring.size]
        if hi:
            ring.data[off] = hi
    ring.data[ring.size:] = ring.data[:ring.size]
    data = memoryview(ring.data)
    chk = check_drain(data, ring.size, ring.cons, ring.prod)
    assert (chk.samples, chk.errno, chk.cons) == (len(sent), 0, ring.prod)
    got: list[bytes] = []
    pos = ring.cons
    words = data.cast("I")
    while pos != ring.prod:
        off = pos % ring.size
        n = words[off // 4] & LEN_MASK
        assert words[off // 4 + 1] == 0
        got.append(bytes(data[off + 8:off + 8 + n]))
        pos += record_span(n)
    assert got == sent


def test_write_limits_and_refusals(be):
    ring = FakeRing(4096)
    ur = ring.user(be)
    # Exact fill is allowed in a user ring; one byte more is not.
    assert not ur.write(bytes(4096 - 7))
    assert ur.write(bytes(4096 - 8))
    assert ring.prod == 4096
    assert not ur.write(b"")
    ring.cons = 4096
    # Things the checked path must report: all refused, nothing written.
    before = bytes(ring.data)
    for payload in ("text", 12, memoryview(bytes(32))[::2]):
        assert not ur.write(payload)
    ring.prod = 4096 + 4  # misaligned producer_pos
    assert not ur.write(b"x")
    ring.prod, ring.cons = 4096 * 3, 4096  # more than a ring apart
    assert not ur.write(b"x")
    assert bytes(ring.data) == before
    # Any contiguous buffer works, typed ones as bytes.
    ring.cons = ring.prod = 0
    assert ur.write(memoryview(bytes(range(8))).cast("Q"))
    assert ur.write(np.arange(3, dtype=np.uint16))
    assert ring.data[8:16] == bytes(range(8)) and ring.data[24:30] == b"\0\0\1\0\2\0"


def test_write_respects_the_dynptr_limit(be):
    size = 32 << 20
    ring = FakeRing(size)
    ur = ring.user(be)
    assert not ur.write(bytes(DYNPTR_MAX + 1))
    assert ur.write(bytes(DYNPTR_MAX))
    assert ring.prod == record_span(DYNPTR_MAX)


def test_write_many_batches_and_stops(be):
    ring = FakeRing(4096)
    ur = ring.user(be)
    items = [bytes([i]) * (i * 10) for i in range(40)]
    it = iter(items)
    written, pending = ur.write_many(it, ())
    used = sum(record_span(len(p)) for p in items[:written])
    assert ring.prod == used and written < 40
    assert len(pending) == 1 and pending[0] is items[written]
    assert record_span(len(pending[0])) > 4096 - used
    total, calls = written, 1
    while pending:
        ring.cons = ring.prod  # drained
        k, pending = ur.write_many(it, pending)
        assert k
        total += k
        calls += 1
    assert total == 40 and calls > 2
    # Unusable items come back as pending, after publishing what was written.
    w3, p3 = ur.write_many(iter([b"ok", "str", b"never"]), ())
    assert (w3, p3) == (1, ("str",))
    # None is an item like any other (not the end): it stops the batch.
    assert ur.write_many(iter([b"ok", None, b"never"]), ()) == (1, (None,))
    assert ur.write_many(iter([b"rest"]), (b"first",)) == (2, ())
    with pytest.raises(TypeError):
        ur.write_many(iter([b"a"]), None)  # first is () or (item,)
    with pytest.raises(TypeError):
        ur.write_many(iter([b"a"]), (b"b", b"c"))

    def boom() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise OSError("source failed")

    prod = ring.prod
    with pytest.raises(OSError, match="source failed"):
        ur.write_many(boom(), ())
    assert ring.prod == prod + 32  # both published before the error
    with pytest.raises(TypeError):
        ur.write_many([b"a"], ())  # needs an iterator


def test_write_list_batches_and_stops(be):
    ring = FakeRing(4096)
    ur = ring.user(be)
    items = [bytes([i]) * (i * 10) for i in range(40)]
    written = ur.write_list(items, 0)
    used = sum(record_span(len(p)) for p in items[:written])
    assert ring.prod == used and 0 < written < 40
    assert record_span(len(items[written])) > 4096 - used
    total, calls = written, 1
    while total < 40:
        ring.cons = ring.prod  # drained
        k = ur.write_list(items, total)
        assert k
        total += k
        calls += 1
    assert calls > 2
    assert ur.write_list(items, 40) == 0  # past the end: nothing
    ring.cons = ring.prod
    # Any contiguous buffer is written; a non-buffer stops the batch after
    # publishing what came before it; tuples work as lists do.
    prod = ring.prod
    mixed = (b"ok", bytearray(b"ba"), memoryview(b"mv"), "str", b"never")
    assert ur.write_list(mixed, 0) == 3
    assert ring.prod == prod + 3 * 16
    assert ur.write_list(list(mixed), 4) == 1
    with pytest.raises(TypeError):
        ur.write_list(iter([b"a"]), 0)  # needs a list or a tuple
    with pytest.raises(ValueError):
        ur.write_list([b"a"], -1)


def _records_of(ring: FakeRing, start: int) -> list[bytes]:
    """The samples one batch wrote into a zeroed ring from position ``start``
    on.  A writer may go on past the end into the second half (the double
    mapping's other view of the same pages): merging the halves gives the
    ring as the drain sees it (each byte was written in one half at most)."""
    d = np.frombuffer(ring.data, np.uint8)
    ring_bytes = (d[:ring.size] | d[ring.size:]).tobytes()
    ring_bytes += ring_bytes  # a payload may run across the end
    out, pos = [], start
    while pos != ring.prod:
        off = pos % ring.size
        length = struct.unpack_from("<I", ring_bytes, off)[0]
        out.append(ring_bytes[off + HDR_SIZE:off + HDR_SIZE + length])
        pos += record_span(length)
    return out


@pytest.mark.parametrize("how", ["write_list", "write_many", "write_array"])
def test_batches_past_the_streaming_threshold_equal_the_reference(how):
    """The C writers switch to streaming stores after the first 4 MiB of a
    batch: the memory they leave (headers, payloads, zero padding of a
    zeroed ring) and the positions equal the pure-Python reference's, across
    the wrap, for odd sizes whose tail word is built in a register."""
    c = _backend("c")
    rnd = random.Random(7)
    size = 16 << 20
    if how == "write_array":
        itemsize = 13
        rows = rnd.randbytes(itemsize * ((10 << 20) // record_span(itemsize)))
    else:
        items = [rnd.randbytes(rnd.choice([0, 1, 7, 8, 13, 40, 255, 1000, 4097]))
                 for _ in range(12_000)]
    rings = []
    for be in (c, _ringpure):
        ring = FakeRing(size)
        ring.cons = ring.prod = size - 4096  # the batch crosses the wrap
        ur = ring.user(be)
        if how == "write_array":
            n = len(rows) // itemsize
            assert ur.write_array(rows, itemsize, n) == n
        elif how == "write_list":
            assert ur.write_list(items, 0) == len(items)
        else:
            assert ur.write_many(iter(items), ()) == (len(items), ())
        rings.append(ring)
    a, b = rings
    assert a.prod == b.prod > a.cons + (4 << 20)
    got = _records_of(a, a.cons)
    if how == "write_array":
        assert got == [rows[i:i + itemsize] for i in range(0, len(rows), itemsize)]
    else:
        assert got == items
    assert a.data == b.data


# ---------------------------------------------------------------------------------
# Single accesses
# ---------------------------------------------------------------------------------


def test_single_accesses(be):
    buf = bytearray(32)
    q = memoryview(buf).cast("Q")
    be.store_release_u64(buf, 2, (1 << 64) - 1)
    assert q[2] == (1 << 64) - 1 and be.load_acquire_u64(buf, 2) == (1 << 64) - 1
    be.store_release_u64(q, 0, 42)  # typed views work too
    assert be.load_acquire_u64(q, 0) == 42 == q[0]
    for bad in (-1, 4):
        with pytest.raises(IndexError):
            be.load_acquire_u64(buf, bad)
    with pytest.raises(ValueError, match="aligned"):
        be.load_acquire_u64(memoryview(buf)[4:], 0)
    with pytest.raises(BufferError):
        be.store_release_u64(bytes(8), 0, 1)
    with pytest.raises(OverflowError):
        be.store_release_u64(buf, 0, 1 << 64)
    with pytest.raises(OverflowError):
        be.store_release_u64(buf, 0, -1)
    with pytest.raises(TypeError):
        be.load_acquire_u64(buf, 1.0)
    assert be.acquire_fence() is None


def test_commit(be):
    """UserRing.commit: BUSY -> committed (or discarded), once."""
    ring = FakeRing(16)  # 32 bytes of data
    ur = ring.user(be)
    w = memoryview(ring.data).cast("I")
    w[2] = 40 | BUSY_BIT
    assert ur.commit(8, False) == 40 | BUSY_BIT and w[2] == 40
    assert ur.commit(8, True) == 40 and w[2] == 40  # not BUSY: untouched
    w[4] = 7 | BUSY_BIT
    assert ur.commit(16, True) == 7 | BUSY_BIT and w[4] == 7 | DISCARD_BIT
    with pytest.raises(ValueError):
        ur.commit(6, False)
    with pytest.raises(ValueError):
        ur.commit(-8, False)
    with pytest.raises(IndexError):
        ur.commit(32, False)
    with pytest.raises(TypeError):
        ur.commit(8.0, False)


def test_positions(be):
    """Each side loads both positions and publishes the one it owns."""
    ring = FakeRing()
    ring.cons, ring.prod = 24, 96
    kr, ur = ring.kernel(be), ring.user(be)
    assert (kr.consumer_pos(), kr.producer_pos()) == (24, 96)
    assert (ur.consumer_pos(), ur.producer_pos()) == (24, 96)
    kr.publish(48)
    assert (ring.cons, ring.prod) == (48, 96)
    ur.publish((1 << 64) - 8)
    assert (ring.cons, ring.prod) == (48, (1 << 64) - 8)
    assert ur.producer_pos() == (1 << 64) - 8
    for bad, exc in ((1 << 64, OverflowError), (-1, OverflowError), (1.0, TypeError)):
        with pytest.raises(exc):
            kr.publish(bad)
    # Read-only pages are fine for the positions a side only loads.
    ro = be.UserRing(ring.data, bytes(8), ring.prod_page, ring.size)
    assert ro.consumer_pos() == 0
