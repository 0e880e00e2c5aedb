"""Sans-IO core of the BPF ring buffer protocol.

Everything here works on plain Python buffers (a ``bytearray`` in tests, an
mmap'ed ring in production) and on integer positions handed in by the caller:
no system calls, no mmap, no waiting.  The I/O layer (:mod:`bpfring.ringbuf`)
loads the positions from the shared pages, calls into this module, and stores
the new positions back.

Layout recap (kernel/bpf/ringbuf.c, include/uapi/linux/bpf.h):

* The data area is ``size`` bytes, a power of two and a multiple of the page
  size.  Positions are ever-increasing 64-bit byte counters; the offset of a
  position in the data area is ``pos & (size - 1)``.
* Each record starts with an 8-byte header: a 32-bit ``len`` word (bits 0-29
  payload length, bit 30 DISCARD, bit 31 BUSY) and a 32-bit ``pg_off`` that
  only the kernel uses.  A record occupies ``round_up(len + 8, 8)`` bytes, so
  every header and every position is 8-byte aligned and a header never wraps.
* The kernel maps the data pages twice in a row, so a payload that runs past
  the end of the area is contiguous in a mapping of ``2 * size`` bytes.  The
  functions here also accept a buffer of exactly ``size`` bytes (no double
  mapping, as in tests) and then join the two pieces of a wrapped payload.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RecordTooLarge, RingCorrupted, RingFull, SampleError

HDR_SIZE = 8
BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
LEN_MASK = DISCARD_BIT - 1
_FLAGS = BUSY_BIT | DISCARD_BIT
POS_MASK = (1 << 64) - 1
#: Largest payload ``bpf_user_ringbuf_drain`` hands to a callback
#: (``bpf_dynptr_check_size``: DYNPTR_MAX_SIZE = 16 MiB - 1); larger -> -E2BIG.
DYNPTR_MAX = (1 << 24) - 1
#: ``BPF_MAX_USER_RINGBUF_SAMPLES``: one drain call visits at most this many samples.
DRAIN_CAP = 128 * 1024

_U32 = struct.Struct("<I")


def record_span(length: int) -> int:
    """Bytes a record with ``length`` payload bytes occupies (header included)."""
    return (length + HDR_SIZE + 7) & ~7


def check_ring_size(size: int, page_size: int) -> None:
    """Raise ``ValueError`` unless ``size`` is a valid ring data size.

    The kernel (``ringbuf_map_alloc``) requires a power of two that is also a
    multiple of the page size, at most 2 GiB through the u32 ``max_entries``.
    """
    if size <= 0 or size & (size - 1):
        raise ValueError(f"ring size {size} is not a power of two")
    if size % page_size:
        raise ValueError(f"ring size {size} is not a multiple of the page size ({page_size})")
    if size > 1 << 31:
        raise ValueError(f"ring size {size} exceeds the 2 GiB limit of max_entries")


def parse_header(word: int) -> tuple[int, bool, bool]:
    """Split a header ``len`` word into (payload length, busy, discarded)."""
    return word & LEN_MASK, bool(word & BUSY_BIT), bool(word & DISCARD_BIT)


def read_payload(data: memoryview, size: int, offset: int, length: int) -> memoryview:
    """A view of ``length`` bytes at data offset ``offset``.

    Zero-copy when the buffer is double mapped (or the payload does not wrap);
    otherwise the two pieces are joined into a fresh buffer.
    """
    end = offset + length
    if end <= len(data):
        return data[offset:end]
    first = size - offset
    return memoryview(bytes(data[offset:size]) + bytes(data[: length - first]))


def write_payload(data: memoryview, size: int, offset: int, payload) -> None:
    """Copy ``payload`` to data offset ``offset``, splitting at the wrap if needed."""
    n = len(payload)
    end = offset + n
    if end <= len(data):
        data[offset:end] = payload
        return
    first = size - offset
    src = memoryview(payload).cast("B")
    data[offset:size] = src[:first]
    data[: n - first] = src[first:]


# --------------------------------------------------------------------------------------
# Consumer side (BPF_MAP_TYPE_RINGBUF: the kernel produces, we consume)
# --------------------------------------------------------------------------------------


@dataclass
class ConsumeResult:
    """Outcome of one :meth:`Consumer.consume` pass."""

    delivered: int = 0  #: records handed to the callback
    discarded: int = 0  #: discarded records skipped
    busy: bool = False  #: stopped at a record the kernel has not committed yet
    cons: int = 0  #: consumer position after the pass


class _RingView:
    """The data area of a ring (``size`` or ``2 * size`` bytes) with a 32-bit
    view of the same memory for header words."""

    __slots__ = ("data", "mask", "size", "words")

    def __init__(self, data: memoryview, size: int) -> None:
        if len(data) not in (size, 2 * size):
            raise ValueError("data buffer must be size or 2*size bytes")
        self.data = data
        self.size = size
        self.mask = size - 1
        self.words = data.cast("B").cast("I")


class Consumer(_RingView):
    """Walks committed records of a kernel-produced ring.

    ``data`` is the data area (``size`` or ``2 * size`` bytes); headers are
    read through ``words``, a 32-bit view of the same memory, so each header
    read is one aligned 4-byte load (see the memory-ordering note in
    :mod:`bpfring.ringbuf`).
    """


    def consume(
        self,
        cons: int,
        prod: int,
        callback: Callable[[memoryview], object],
        limit: int | None,
        publish: memoryview | None,
        release_views: bool = True,
    ) -> ConsumeResult:
        """Deliver records between ``cons`` and ``prod`` to ``callback``.

        Stops after ``limit`` delivered records (``None``: no limit; 0 delivers
        nothing), at the first BUSY record, or at ``prod``.  Discarded records
        are skipped and do not count.  After each record the new consumer
        position is stored into ``publish[0]`` (a ``'Q'`` view: the shared
        consumer page, or any buffer in tests); ``None``: never, the caller
        publishes ``result.cons``.

        If ``callback`` raises, the record that raised is *not* consumed: the
        position before it is published and the exception propagates, so the
        next pass delivers it again (at-least-once).
        """
        res = ConsumeResult(cons=cons)
        if limit is not None and limit <= 0:
            return res
        words, data, mask, size = self.words, self.data, self.mask, self.size
        doubled = len(data) == 2 * size
        if (prod - cons) & POS_MASK > size:
            raise RingCorrupted(f"positions cons={cons} prod={prod} are more than a ring apart")
        # Positions are 64-bit counters; the loop works on plain ints and only
        # wraps the result: 2**64 bytes would take decades at memory speed.
        if prod < cons:
            prod += 1 << 64
        pub = publish if publish is not None else memoryview(bytearray(8)).cast("Q")
        stop_at = -1 if limit is None else limit
        n = 0
        while cons < prod:
            off = cons & mask
            word = words[off >> 2]
            length = word & LEN_MASK
            span = (length + 15) & ~7
            if word & _FLAGS:
                if word & BUSY_BIT:
                    res.busy = True
                    break
                # DISCARD: skipped, not counted; the consumer still moves past it
                # (never past producer_pos: that would publish a bogus position).
                if cons + span > prod:
                    raise RingCorrupted(
                        f"discarded record at position {cons} claims {length} bytes "
                        f"but only {prod - cons - HDR_SIZE} are published"
                    )
                res.discarded += 1
                cons += span
                pub[0] = cons & POS_MASK
                continue
            if cons + span > prod:
                raise RingCorrupted(
                    f"record at position {cons} claims {length} bytes but only "
                    f"{prod - cons - HDR_SIZE} are published"
                )
            start = off + HDR_SIZE
            if doubled or start + length <= size:
                view = data[start:start + length]
            else:
                view = read_payload(data, size, start & mask, length)
            try:
                callback(view)
            except BaseException:
                pub[0] = cons & POS_MASK
                res.cons = cons & POS_MASK
                raise
            finally:
                if release_views:
                    try:
                        view.release()
                    except BufferError:
                        pass  # the callback kept a sub-view; it stays valid
            cons += span
            pub[0] = cons & POS_MASK
            n += 1
            if n == stop_at:
                break
        res.delivered = n
        res.cons = cons & POS_MASK
        return res

    def pending_records(self, cons: int, prod: int) -> tuple[int, int, int]:
        """Count (committed, discarded, busy) records between the positions,
        without consuming anything; the walk stops at the first BUSY record."""
        committed = discarded = 0
        words, mask = self.words, self.mask
        left = (prod - cons) & POS_MASK
        if left > self.size:
            raise RingCorrupted(f"positions cons={cons} prod={prod} are more than a ring apart")
        while left:
            word = words[(cons & mask) >> 2]
            if word & BUSY_BIT:
                return committed, discarded, 1
            span = (word & LEN_MASK) + 15 & ~7
            if span > left:
                raise RingCorrupted(f"record at position {cons} claims {word & LEN_MASK} "
                                    f"bytes, past producer position {prod}")
            if word & DISCARD_BIT:
                discarded += 1
            else:
                committed += 1
            cons = (cons + span) & POS_MASK
            left -= span
        return committed, discarded, 0


# --------------------------------------------------------------------------------------
# Producer side (BPF_MAP_TYPE_USER_RINGBUF: we produce, the kernel drains)
# --------------------------------------------------------------------------------------


class Producer(_RingView):
    """Reserves, submits and discards samples in a user ring buffer.

    Mirrors what ``bpf_user_ringbuf_drain`` expects: a header with BUSY set is
    written first and ``producer_pos`` is advanced past the sample
    (``publish``); submit later clears BUSY (optionally setting DISCARD).  The
    drain stops at the first BUSY header, so samples become visible in
    reservation order.  Unlike a kernel ring, a user ring may be filled to the
    last byte (``prod - cons == size``).
    """


    def max_payload(self) -> int:
        """Largest payload a single sample can ever have in this ring."""
        return min(self.size - HDR_SIZE, DYNPTR_MAX)

    def free(self, cons: int, prod: int) -> int:
        return self.size - ((prod - cons) & POS_MASK)

    def plan(self, length: int, cons: int, prod: int) -> tuple[int, int]:
        """Check that a sample of ``length`` fits; return (header offset, new prod).

        Raises :class:`RecordTooLarge` when it can never fit (bigger than the
        ring, or than the 16 MiB - 1 the drain accepts) and :class:`RingFull`
        when it does not fit now.
        """
        if length < 0 or length > LEN_MASK:
            raise RecordTooLarge(f"sample of {length} bytes is outside 0..{LEN_MASK}")
        span = (length + 15) & ~7
        if span > self.size or length > DYNPTR_MAX:
            raise RecordTooLarge(
                f"sample of {length} bytes can never fit: the largest sample for this "
                f"{self.size}-byte ring is {self.max_payload()} bytes",
                hint="create a larger ring or split the data",
            )
        if prod & 7:
            raise RingCorrupted(f"producer position {prod} is not 8-byte aligned")
        used = (prod - cons) & POS_MASK
        if used > self.size:
            raise RingCorrupted(
                f"consumer position {cons} is more than a ring size behind producer {prod}"
            )
        if span > self.size - used:
            raise RingFull(
                f"no room for a {length}-byte sample: {self.size - used} of "
                f"{self.size} bytes free"
            )
        return prod & self.mask, (prod + span) & POS_MASK

    def begin(self, hdr_off: int, length: int) -> int:
        """Write a BUSY header at ``hdr_off``; return the payload's data offset."""
        # pg_off (second word) is kernel-only; user producers write 0 like libbpf.
        self.words[(hdr_off >> 2) + 1] = 0
        self.words[hdr_off >> 2] = length | BUSY_BIT
        return (hdr_off + HDR_SIZE) & self.mask

    def commit(self, hdr_off: int, discard: bool) -> None:
        """Clear BUSY on the header at ``hdr_off`` (and mark it discarded).

        The single aligned 4-byte store is what publishes the sample to the
        drain, which load-acquires the header word.
        """
        idx = hdr_off >> 2
        word = self.words[idx]
        if not word & BUSY_BIT:
            raise SampleError("sample was already submitted or discarded")
        self.words[idx] = (word & LEN_MASK) | (DISCARD_BIT if discard else 0)

    def write(self, payload_off: int, payload) -> None:
        write_payload(self.data, self.size, payload_off, payload)


# --------------------------------------------------------------------------------------
# What the kernel's drain would say about a user ring (validation over any buffer)
# --------------------------------------------------------------------------------------


@dataclass
class DrainCheck:
    """Result of :func:`check_drain`: what ``bpf_user_ringbuf_drain`` would do."""

    samples: int  #: samples it would hand to the callback before stopping
    discarded: int  #: discarded samples it would skip
    cons: int  #: consumer position where it would stop
    errno: int  #: 0, or the positive errno it would return (EINVAL, E2BIG)
    reason: str  #: why it stops


def check_drain(data: memoryview, size: int, cons: int, prod: int,
                cap: int = DRAIN_CAP) -> DrainCheck:
    """Replay the kernel's user-ring drain checks (``__bpf_user_ringbuf_peek``)
    over a buffer, without modifying it.

    The order of checks matches kernel/bpf/ringbuf.c: misaligned producer
    position -> EINVAL; sample longer than what is published -> EINVAL; sample
    longer than the ring -> E2BIG; payload above the dynptr limit -> E2BIG;
    DISCARD is tested before BUSY (a header with both is skipped as discarded).
    """
    import errno as _e

    words = data.cast("B").cast("I")
    mask = size - 1
    samples = discarded = 0
    for _ in range(cap):
        if prod & 7:
            return DrainCheck(samples, discarded, cons, _e.EINVAL, "misaligned producer_pos")
        if cons >= prod:
            return DrainCheck(samples, discarded, cons, 0, "empty")
        word = words[(cons & mask) >> 2]
        length = word & LEN_MASK
        span = (length + 15) & ~7
        if span > prod - cons:
            return DrainCheck(samples, discarded, cons, _e.EINVAL,
                              "sample longer than the published data")
        if span > size:
            return DrainCheck(samples, discarded, cons, _e.E2BIG, "sample longer than the ring")
        if length > DYNPTR_MAX:
            return DrainCheck(samples, discarded, cons, _e.E2BIG,
                              "sample above the 16 MiB dynptr limit")
        if word & DISCARD_BIT:
            discarded += 1
        elif word & BUSY_BIT:
            return DrainCheck(samples, discarded, cons, 0, "busy sample")
        else:
            samples += 1
        cons += span
    return DrainCheck(samples, discarded, cons, 0, "per-call sample cap")
