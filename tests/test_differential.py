"""Differential tests: bpfring and libbpf's own ring code on the SAME maps.

libbpf (``libbpf.so.1``, bound here with ctypes) is the reference
implementation of the user-space halves of both ring types.  Both libraries
map the same rings and take turns, so any disagreement about positions,
headers, rounding, discards or capacity shows up as a lost, duplicated,
reordered or corrupted record.  BPF side: ``tests/bpf/diff_prog.bpf.c``.
"""

from __future__ import annotations

import ctypes
import errno
import random
import struct

import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import RingFull, UserRingBuffer
from bpfring._ringcore import record_span

# ---------------------------------------------------------------------------------
# libbpf bindings (ring_buffer__* and user_ring_buffer__*, both in libbpf 1.1)
# ---------------------------------------------------------------------------------

SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_lib: ctypes.CDLL | None = None


def libbpf() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        except OSError as e:  # pragma: no cover - libbpf-dev is a test requirement
            pytest.skip(f"libbpf.so.1 unavailable: {e}")
        vp = ctypes.c_void_p
        lib.ring_buffer__new.restype = vp
        lib.ring_buffer__new.argtypes = [ctypes.c_int, SAMPLE_FN, vp, vp]
        lib.ring_buffer__poll.restype = ctypes.c_int
        lib.ring_buffer__poll.argtypes = [vp, ctypes.c_int]
        lib.ring_buffer__consume.restype = ctypes.c_int
        lib.ring_buffer__consume.argtypes = [vp]
        lib.ring_buffer__free.restype = None
        lib.ring_buffer__free.argtypes = [vp]
        lib.user_ring_buffer__new.restype = vp
        lib.user_ring_buffer__new.argtypes = [ctypes.c_int, vp]
        lib.user_ring_buffer__reserve.restype = vp
        lib.user_ring_buffer__reserve.argtypes = [vp, ctypes.c_uint32]
        lib.user_ring_buffer__submit.restype = None
        lib.user_ring_buffer__submit.argtypes = [vp, vp]
        lib.user_ring_buffer__discard.restype = None
        lib.user_ring_buffer__discard.argtypes = [vp, vp]
        lib.user_ring_buffer__free.restype = None
        lib.user_ring_buffer__free.argtypes = [vp]
        _lib = lib
    return _lib


class LibbpfRing:
    """libbpf's ring_buffer consumer on one RINGBUF map fd.

    ``stop_after`` makes the callback return -1 once that many records were
    delivered by the current call: libbpf then stores the consumer position
    past that record and returns, which is how we consume "part" of a ring.
    """

    def __init__(self, map_fd: int) -> None:
        self.lib = libbpf()
        self._sink: list[bytes] = []
        self._count = 0
        self._stop_after: int | None = None
        self._cb = SAMPLE_FN(self._on_sample)  # keep a reference for libbpf
        ptr = self.lib.ring_buffer__new(map_fd, self._cb, None, None)
        if not ptr:
            err = ctypes.get_errno()
            raise OSError(err, f"ring_buffer__new: {errno.errorcode.get(err, err)}")
        self.ptr = ptr

    def _on_sample(self, _ctx, data, size) -> int:
        self._sink.append(ctypes.string_at(data, size))
        self._count += 1
        if self._stop_after is not None and self._count >= self._stop_after:
            return -1
        return 0

    def _run(self, call, sink: list[bytes], limit: int | None) -> tuple[int, int]:
        self._sink, self._count, self._stop_after = sink, 0, limit
        ret = call()
        return ret, self._count

    def consume(self, sink: list[bytes], limit: int | None = None) -> int:
        ret, n = self._run(lambda: self.lib.ring_buffer__consume(self.ptr), sink, limit)
        assert ret == (-1 if limit is not None and n >= limit else n)
        return n

    def poll(self, sink: list[bytes], timeout_ms: int, limit: int | None = None) -> int:
        ret, n = self._run(lambda: self.lib.ring_buffer__poll(self.ptr, timeout_ms),
                           sink, limit)
        assert ret == (-1 if limit is not None and n >= limit else n)
        return n

    def close(self) -> None:
        if self.ptr:
            self.lib.ring_buffer__free(self.ptr)
            self.ptr = None


class LibbpfUserRing:
    """libbpf's user_ring_buffer producer on one USER_RINGBUF map fd."""

    def __init__(self, map_fd: int) -> None:
        self.lib = libbpf()
        ptr = self.lib.user_ring_buffer__new(map_fd, None)
        if not ptr:
            err = ctypes.get_errno()
            raise OSError(err, f"user_ring_buffer__new: {errno.errorcode.get(err, err)}")
        self.ptr = ptr

    def reserve(self, size: int) -> int | None:
        """Pointer to the sample, or None (then ``ctypes.get_errno()`` says why)."""
        ctypes.set_errno(0)
        return self.lib.user_ring_buffer__reserve(self.ptr, size)

    def submit(self, sample: int) -> None:
        self.lib.user_ring_buffer__submit(self.ptr, sample)

    def discard(self, sample: int) -> None:
        self.lib.user_ring_buffer__discard(self.ptr, sample)

    def close(self) -> None:
        if self.ptr:
            self.lib.user_ring_buffer__free(self.ptr)
            self.ptr = None


# ---------------------------------------------------------------------------------
# Fixtures and the record generator mirrored from diff_prog.bpf.c
# ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diff_path(kernel):
    return bpfring.build(BPF_DIR / "diff_prog.bpf.c")


@pytest.fixture
def diff(diff_path):
    with bpfring.load(diff_path) as obj:
        yield obj


def gen_record(seq: int, pattern: bytes) -> tuple[bool, bytes]:
    """(discarded, payload) of record ``seq`` exactly as ``gen`` builds it."""
    h = (seq * 2654435761) & 0xFFFFFFFF
    length = 8 + ((h >> 8) % 1017)
    off = seq & 255
    return (h & 0xFF) < 40, struct.pack("<II", seq, length) + pattern[off:off + length - 8]


def gen_ctx(count: int, base: int) -> bytes:
    return struct.pack("<II", count, base)


def stat(obj, idx: int) -> int:
    return struct.unpack("<Q", obj.maps["stats"].lookup_raw(struct.pack("<I", idx)))[0]


STAT_ECHOED, STAT_ECHO_FAILED, STAT_TOO_BIG = 0, 1, 2


def test_generator_matches_its_python_model(diff):
    """Sanity check of the mirror used below: one run, read by bpfring alone."""
    pattern = random.Random(1).randbytes(2048)
    diff.maps["pattern"].update_raw(b"\0\0\0\0", pattern)
    rb = diff.ring_buffer("kring")
    assert diff.programs["gen"].run(ctx=gen_ctx(30, 1000)) == 30
    want = [p for d, p in (gen_record(s, pattern) for s in range(1000, 1030)) if not d]
    discarded = 30 - len(want)
    assert rb.pending() == (len(want), discarded, 0)
    assert rb.read() == want
    assert rb.lost == 0


# ---------------------------------------------------------------------------------
# (a) kernel -> user: bpfring and libbpf consumers take turns on one ring
# ---------------------------------------------------------------------------------


def test_kernel_ring_interleaved_consumers_see_exact_sequence(diff):
    """A kernel producer emits 30000 numbered records with 8..1024-byte
    payloads (about 15% discarded) into a 64 KiB ring, many times around it.  Four consumers
    take random-sized turns on the same ring: bpfring publishing after each
    record, bpfring publishing once per call, bpfring with a callback that
    raises (the record must stay for the next consumer), and libbpf's
    ring_buffer__consume/__poll.  Concatenated in turn order, what they got
    is exactly the non-discarded produced sequence: nothing lost, duplicated,
    reordered or altered."""
    rnd = random.Random(7)
    pattern = rnd.randbytes(2048)
    diff.maps["pattern"].update_raw(b"\0\0\0\0", pattern)
    gen = diff.programs["gen"]
    per_record = diff.ring_buffer("kring")
    batched = diff.ring_buffer("kring", batch_publish=True)
    lb = LibbpfRing(diff.maps["kring"].fd)
    size = per_record.size

    expected: list[bytes] = []
    got: list[bytes] = []
    by_source: dict[str, int] = dict.fromkeys(("bpfring", "batched", "raising", "libbpf"), 0)
    switches = 0
    last_source = None
    seq = 0
    total = 30000
    early_stops = 0

    def take_turn(limit: int | None) -> None:
        nonlocal switches, last_source
        source = rnd.choice(list(by_source))
        before = len(got)
        if source == "bpfring":
            if rnd.random() < 0.5:
                n = per_record.consume(lambda v: got.append(bytes(v)), limit)
            else:
                got.extend(per_record.read(limit))
                n = len(got) - before
        elif source == "batched":
            n = batched.poll(lambda v: got.append(bytes(v)), timeout=0, limit=limit)
        elif source == "raising":
            # Take up to k records, then raise on the next one: at-least-once
            # means that record is NOT consumed and the next turn gets it.
            k = rnd.randint(0, 5)
            seen: list[bytes] = []

            def cb(v: memoryview) -> None:
                if len(seen) == k:
                    raise LookupError("refuse")
                seen.append(bytes(v))

            pending_before = per_record.pending()[0]
            try:
                per_record.consume(cb)
            except LookupError:
                assert pending_before > k
            got.extend(seen)
            n = len(seen)
        elif rnd.random() < 0.3:
            n = lb.poll(got, 0, limit)
        else:
            n = lb.consume(got, limit)
        if limit is not None and source != "raising":
            assert n <= limit
        assert n == len(got) - before
        if n:
            by_source[source] += n
            if source != last_source:
                switches += 1
            last_source = source

    while seq < total:
        # Keep the ring from filling: produce only while at most half is used
        # (a chunk is at most 24 * 1032 bytes).
        if per_record.available <= size // 2:
            want = rnd.randint(1, 24)
            n = gen.run(ctx=gen_ctx(want, seq))
            assert 0 <= n <= want
            if n < want:
                early_stops += 1
            for s in range(seq, seq + n):
                discarded, payload = gen_record(s, pattern)
                if not discarded:
                    expected.append(payload)
            seq += n
        for _ in range(rnd.randint(0, 3)):
            take_turn(rnd.choice([None, 1, 2, 3, 7, 20]))
    while per_record.available:
        take_turn(rnd.choice([None, 1, 5]))

    lb.close()
    assert early_stops == 0
    assert per_record.lost == 0
    assert len(got) == len(expected)
    assert got == expected
    # Every consumer really took part, turns alternated many times, and the
    # positions went around the 64 KiB ring many times.
    assert all(by_source.values()), by_source
    assert switches > 2000
    assert per_record.consumer_pos == batched.consumer_pos == per_record.producer_pos
    assert per_record.consumer_pos > 200 * size


def test_kernel_ring_libbpf_stops_exactly_where_bpfring_resumes(diff):
    """Record by record hand-over: libbpf takes exactly one record, bpfring
    the next, and so on; each one's consumer position is the other's start."""
    pattern = bytes(range(256)) * 8
    diff.maps["pattern"].update_raw(b"\0\0\0\0", pattern)
    rb = diff.ring_buffer("kring")
    lb = LibbpfRing(diff.maps["kring"].fd)
    assert diff.programs["gen"].run(ctx=gen_ctx(40, 0)) == 40
    want = [p for d, p in (gen_record(s, pattern) for s in range(40)) if not d]
    got: list[bytes] = []
    positions = []
    while len(got) < len(want):
        if len(got) % 2:
            assert rb.consume(lambda v: got.append(bytes(v)), limit=1) == 1
        else:
            assert lb.consume(got, limit=1) == 1
        positions.append(rb.consumer_pos)
    lb.close()
    assert got == want
    assert positions == sorted(set(positions))  # strictly increasing
    assert rb.consumer_pos == rb.producer_pos


# ---------------------------------------------------------------------------------
# (b) user -> kernel: bpfring and libbpf producers write one user ring
# ---------------------------------------------------------------------------------

_SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 100, 1000, 2047, 2048, 4088, 4095, 4096]


def test_user_ring_alternating_producers_drain_in_written_order(diff):
    """bpfring (write(), write_many() and reserve/submit/discard) and libbpf
    (user_ring_buffer__reserve/__submit/__discard) produce alternately into
    one 16 KiB user ring, with payloads of 0..4096 bytes, ~15% discards, and
    reservations left open across the other library's reservations (each
    submitted later, in random order).  The kernel drains into a kernel ring:
    what arrives is exactly the submitted samples in reservation order.
    Whenever one library finds the ring full, the other must agree for the
    same size (same capacity rule: exact fill allowed)."""
    rnd = random.Random(11)
    urb = diff.user_ring_buffer("uring")
    out = diff.ring_buffer("echo_ring")
    lu = LibbpfUserRing(diff.maps["uring"].fd)
    drain = diff.programs["drain"]
    size = urb.size

    expected: list[bytes] = []  # in reservation order, discards left out
    got: list[bytes] = []
    held: list[tuple[str, object, bool]] = []  # open reservations
    drained_total = 0
    full_agreements = 0
    writers = {"bpfring": 0, "libbpf": 0}

    def commit(kind: str, handle, discard: bool) -> None:
        if kind == "libbpf":
            (lu.discard if discard else lu.submit)(handle)
        else:
            (handle.discard if discard else handle.submit)()

    def commit_held() -> None:
        rnd.shuffle(held)
        while held:
            commit(*held.pop())

    def run_drain() -> None:
        nonlocal drained_total
        commit_held()
        n = drain.run()
        assert n >= 0
        drained_total += n
        assert urb.pending_bytes() == 0  # everything was committed
        got.extend(out.read())

    def try_reserve(kind: str, n: int, payload: bytes):
        """Reserve through one library: a handle (``True`` for bpfring's
        one-step write, already submitted), or None when the ring is full."""
        if kind == "libbpf":
            ptr = lu.reserve(n)
            if not ptr:
                assert ctypes.get_errno() == errno.ENOSPC
                return None
            ctypes.memmove(ptr, payload, n)
            return ptr
        try:
            if kind == "bpfring-write":
                if rnd.random() < 0.5:
                    urb.write(payload)
                elif urb.write_many([payload]) != 1:
                    return None
                return True
            s = urb.reserve(n)
        except RingFull:
            return None
        s.write(payload)
        return s

    n_ops = 20000
    for i in range(n_ops):
        kind = "libbpf" if i % 2 else rnd.choice(["bpfring", "bpfring", "bpfring-write"])
        n = rnd.choice(_SIZES) if rnd.random() < 0.6 else rnd.randint(0, 4096)
        payload = struct.pack("<I", i)[:n] + rnd.randbytes(max(0, n - 4))
        discard = kind != "bpfring-write" and rnd.random() < 0.15
        free_before = urb.free
        handle = try_reserve(kind, n, payload)
        if handle is None:
            # Full for this size: the other implementation must say the same
            # (a probe that fails changes nothing).
            assert free_before < record_span(n)
            other = "libbpf" if kind.startswith("bpfring") else "bpfring"
            assert try_reserve(other, n, payload) is None
            full_agreements += 1
            run_drain()
            handle = try_reserve(kind, n, payload)
            assert handle is not None
        else:
            assert free_before >= record_span(n)
        writers["libbpf" if kind == "libbpf" else "bpfring"] += 1
        if not discard:
            expected.append(payload)
        if handle is True:
            pass  # written and submitted in one step
        elif rnd.random() < 0.2 and len(held) < 4:
            held.append((kind, handle, discard))  # submitted later, out of order
        else:
            commit(kind, handle, discard)
        if rnd.random() < 0.1:
            run_drain()
    while urb.pending_bytes() or held:
        run_drain()

    lu.close()
    assert len(got) == len(expected)
    assert got == expected
    assert drained_total == len(expected)
    assert stat(diff, STAT_ECHOED) == len(expected)
    assert stat(diff, STAT_ECHO_FAILED) == stat(diff, STAT_TOO_BIG) == 0
    assert out.lost == 0
    assert full_agreements > 500
    assert writers == {"bpfring": n_ops // 2, "libbpf": n_ops // 2}
    assert urb.producer_pos > 1000 * size  # many laps: wrap-around on every kind
    assert urb.free == size


def test_user_ring_busy_sample_of_one_library_holds_back_the_other(diff):
    """A sample reserved by bpfring and still open blocks libbpf's submitted
    samples behind it, and vice versa; the drain delivers nothing until the
    first one is committed, then everything in reservation order."""
    urb: UserRingBuffer = diff.user_ring_buffer("uring")
    out = diff.ring_buffer("echo_ring")
    lu = LibbpfUserRing(diff.maps["uring"].fd)
    drain = diff.programs["drain"]

    first = urb.reserve(3)
    first[:] = b"one"
    p = lu.reserve(3)
    ctypes.memmove(p, b"two", 3)
    lu.submit(p)
    assert drain.run() == 0
    assert out.read() == []
    first.submit()
    assert drain.run() == 2
    assert out.read() == [b"one", b"two"]

    p = lu.reserve(5)
    ctypes.memmove(p, b"three", 5)
    urb.write(b"four")
    assert drain.run() == 0
    lu.submit(p)
    d = lu.reserve(100)
    lu.discard(d)
    s = urb.reserve(4)
    s[:] = b"five"
    s.discard()
    urb.write(b"six")
    assert drain.run() == 3  # discards skipped and not counted
    assert out.read() == [b"three", b"four", b"six"]
    assert urb.pending_bytes() == 0
    lu.close()


def test_user_ring_exact_fill_and_too_large_agree(diff):
    """Both libraries accept samples that fill the ring to the last byte (also
    across the wrap), refuse a sample one byte too large to ever fit (E2BIG /
    RecordTooLarge) and refuse even an empty sample while the ring is full
    (ENOSPC / RingFull)."""
    urb = diff.user_ring_buffer("uring")
    lu = LibbpfUserRing(diff.maps["uring"].fd)
    drain = diff.programs["drain"]
    out = diff.ring_buffer("echo_ring")
    size = urb.size
    assert lu.reserve(size - 7) is None
    assert ctypes.get_errno() == errno.E2BIG
    with pytest.raises(bpfring.RecordTooLarge):
        urb.reserve(size - 7)
    # The largest sample fits alone; discarded, it gives every byte back.
    p = lu.reserve(size - 8)
    assert p and urb.free == 0
    lu.discard(p)
    assert drain.run() == 0 and urb.free == size
    s = urb.reserve(size - 8)
    assert urb.free == 0
    s.discard()
    assert drain.run() == 0 and urb.free == size

    for shift in (0, 40):
        if shift:  # move the positions off the page grid: the fill wraps
            p = lu.reserve(shift - 8)
            lu.submit(p)
            assert drain.run() == 1
            out.read()
        chunk = 4088  # 4096 with the header: four fill the 16 KiB ring exactly
        payloads = [bytes([65 + i]) * chunk for i in range(size // 4096)]
        for i, payload in enumerate(payloads):
            if i % 2 == 0:
                p = lu.reserve(chunk)
                assert p
                ctypes.memmove(p, payload, chunk)
                lu.submit(p)
            else:
                urb.write(payload)
        assert urb.free == 0
        assert lu.reserve(0) is None
        assert ctypes.get_errno() == errno.ENOSPC
        with pytest.raises(RingFull):
            urb.reserve(0)
        assert drain.run() == len(payloads)
        assert out.read() == payloads
        assert urb.free == size
    lu.close()
