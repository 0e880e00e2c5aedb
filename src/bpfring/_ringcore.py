"""Sans-IO core of the BPF ring buffer protocol: the one place that knows the
record format and makes every protocol decision.

Everything here works on plain Python buffers (a ``bytearray`` in tests, an
mmap'ed ring in production) and on integer positions handed in by the caller:
no system calls, no mmap, no waiting, no memory-ordering primitives.  Two
layers build on it:

* the pure-Python backend (:mod:`bpfring._ringpure`) loads and stores the
  shared positions and calls the walks and writers below; the C accelerator
  (``_speedups.c``) is the same protocol again in C, with real atomics;
* the I/O layer (:mod:`bpfring.ringbuf`) maps the pages, waits and locks, and
  calls the backend, or this module directly for the paths that have no C
  twin (reserve/submit, the numpy runs, ``pending``).

Layout recap (kernel/bpf/ringbuf.c, include/uapi/linux/bpf.h):

* The data area is ``size`` bytes, a power of two and a multiple of the page
  size.  Positions are ever-increasing 64-bit byte counters; the offset of a
  position in the data area is ``pos & (size - 1)``.
* Each record starts with an 8-byte header: a 32-bit ``len`` word (bits 0-29
  payload length, bit 30 DISCARD, bit 31 BUSY) and a 32-bit ``pg_off`` that
  only the kernel uses.  A record occupies ``round_up(len + 8, 8)`` bytes
  (:func:`record_span`), so every header and every position is 8-byte aligned
  and a header never wraps.
* The kernel maps the data pages twice in a row, so a payload that runs past
  the end of the area is contiguous in a mapping of ``2 * size`` bytes.  The
  functions here also accept a buffer of exactly ``size`` bytes (no double
  mapping, as in tests) and then join the two pieces of a wrapped payload.

Header words are read and written through a native ``'I'`` view (or a native
``struct``), so each access is one aligned 4-byte load or store; see the
memory-ordering note in :mod:`bpfring._ringbackend`.
"""

from __future__ import annotations

import errno as _errno
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import RecordTooLarge, RingCorrupted, RingFull, SampleError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from _typeshed import ReadableBuffer

    U8Array = npt.NDArray[np.uint8]

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

#: Why :meth:`Consumer.regular_run` ended its run.
RUN_END = 0  #: end of the published data, or the limit
RUN_BUSY = 1  #: a record the producer has not committed yet
RUN_OTHER = 2  #: a committed record of another size

# A final header {len, pg_off = 0}, native byte order: two aligned 4-byte stores.
_HEADER = struct.Struct("II")


def record_span(length: int) -> int:
    """Bytes a record with ``length`` payload bytes occupies (header included)."""
    return (length + HDR_SIZE + 7) & ~7


def distance(cons: int, prod: int) -> int:
    """Bytes from position ``cons`` to position ``prod`` (64-bit wrap-around)."""
    return (prod - cons) & POS_MASK


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


def committed_word(word: int, discard: bool) -> int:
    """The header word that submits (or discards) a sample whose header holds
    ``word``: BUSY cleared, the length kept, DISCARD set if asked."""
    return (word & LEN_MASK) | (DISCARD_BIT if discard else 0)


def header_words(data: memoryview) -> memoryview:
    """A native 32-bit view of ``data`` for header loads and stores."""
    if data.format == "B" and data.ndim == 1:
        return data.cast("I")
    return data.cast("B").cast("I")


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


def write_payload(data: memoryview, size: int, offset: int, payload: ReadableBuffer) -> None:
    """Copy ``payload`` to data offset ``offset``, splitting at the wrap if needed."""
    src = memoryview(payload).cast("B")
    n = len(src)
    end = offset + n
    if end <= len(data):
        data[offset:end] = src
        return
    first = size - offset
    data[offset:size] = src[:first]
    data[: n - first] = src[first:]


# --------------------------------------------------------------------------------------
# Consumer side (BPF_MAP_TYPE_RINGBUF: the kernel produces, we consume)
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class ConsumeResult:
    """Outcome of a consume walk; updated in place, also when the walk raises
    (``cons`` is then the position of the record that failed)."""

    delivered: int = 0  #: records handed to the callback
    discarded: int = 0  #: discarded records skipped
    busy: bool = False  #: stopped at a record the kernel has not committed yet
    cons: int = 0  #: consumer position after the pass
    halted: bool = False  #: set during a callback (the ring closes): stop after it


def consume_pass(res: ConsumeResult, data: memoryview, words: memoryview, size: int,
                 prod: int, callback: Callable[[memoryview], object], limit: int | None,
                 publish: memoryview | None, release_views: bool) -> None:
    """The consumer walk: deliver committed records from ``res.cons`` up to
    ``prod`` to ``callback`` and advance ``res`` (see :meth:`Consumer.consume`
    for the rules).  ``data`` is the data area (``size`` or ``2 * size``
    bytes), ``words`` its :func:`header_words`.  ``res.cons`` is updated also
    when the walk raises: the position of the record that failed."""
    cons = res.cons
    if limit is not None and limit <= 0:
        return
    if cons & 7:
        # Someone else stored it (the kernel never does): headers would be misaligned.
        raise RingCorrupted(f"consumer position {cons} is not 8-byte aligned")
    if (prod - cons) & POS_MASK > size:
        raise RingCorrupted(f"positions cons={cons} prod={prod} are more than a ring apart")
    mask = size - 1
    doubled = len(data) == 2 * size
    # Positions are 64-bit counters; the loop works on plain ints and only
    # wraps the result: 2**64 bytes would take decades at memory speed.
    if prod < cons:
        prod += 1 << 64
    stop_at = -1 if limit is None else limit
    n = discarded = 0
    try:
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
                        f"discarded record at position {cons & POS_MASK} claims {length} "
                        f"bytes but only {prod - cons - HDR_SIZE} are published"
                    )
                discarded += 1
                cons += span
                if publish is not None:
                    publish[0] = cons & POS_MASK
                continue
            if cons + span > prod:
                raise RingCorrupted(
                    f"record at position {cons & POS_MASK} claims {length} bytes but only "
                    f"{prod - cons - HDR_SIZE} are published"
                )
            start = off + HDR_SIZE
            if doubled or start + length <= size:
                view = data[start:start + length]
            else:
                view = read_payload(data, size, start & mask, length)
            if release_views:
                try:
                    callback(view)
                finally:
                    try:
                        view.release()
                    except BufferError:
                        pass  # the callback kept a sub-view; it stays valid
            else:
                callback(view)
            cons += span
            if publish is not None:
                publish[0] = cons & POS_MASK
            n += 1
            if n == stop_at or res.halted:
                break
    except BaseException:
        if publish is not None:
            publish[0] = cons & POS_MASK  # the failing record stays first in line
        raise
    finally:
        # On an error ``cons`` is still the failing record's position: it is
        # not consumed (at-least-once), the ones before it are.
        res.delivered += n
        res.discarded += discarded
        res.cons = cons & POS_MASK


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
        self.words = header_words(data)


class Consumer(_RingView):
    """Walks committed records of a kernel-produced ring.

    ``data`` is the data area (``size`` or ``2 * size`` bytes); headers are
    read through ``words``, a 32-bit view of the same memory, so each header
    read is one aligned 4-byte load.
    """

    __slots__ = ()

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
        consume_pass(res, self.data, self.words, self.size, prod, callback, limit, publish,
                     release_views)
        return res

    def length_at(self, pos: int) -> int:
        """Payload length in the header at position ``pos``."""
        return self.words[(pos & self.mask) >> 2] & LEN_MASK

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

    # Runs of fixed-size records (the numpy batch paths) ---------------------------

    def regular_run(self, npdata: U8Array, cons: int, prod: int, itemsize: int,
                    limit: int | None) -> tuple[int, int, int]:
        """Find the longest run of committed records of exactly ``itemsize``
        bytes starting at ``cons``, skipping leading discarded records.

        ``npdata`` is a uint8 array over the double-mapped data area.  Returns
        (position of the run, records in it, why it ended: :data:`RUN_END`,
        :data:`RUN_BUSY` or :data:`RUN_OTHER`).  All headers of a run are
        checked in one vectorised pass; irregular records are walked one by
        one like :func:`consume_pass`.  The caller orders these header loads
        before its payload reads (an acquire fence).
        """
        import numpy as np

        words, mask, size = self.words, self.mask, self.size
        span = (itemsize + 15) & ~7
        if (prod - cons) & POS_MASK > size:
            raise RingCorrupted(f"positions cons={cons} prod={prod} are more than a ring apart")
        while True:
            if cons == prod:
                return cons, 0, RUN_END
            word = words[(cons & mask) >> 2]
            if word & DISCARD_BIT and not word & BUSY_BIT:
                skip = ((word & LEN_MASK) + 15) & ~7
                if skip > (prod - cons) & POS_MASK:
                    raise RingCorrupted(f"discarded record at position {cons} claims "
                                        f"{word & LEN_MASK} bytes, past producer position {prod}")
                cons = (cons + skip) & POS_MASK
                continue  # leading discarded record: skip like the scalar walk
            break
        n = ((prod - cons) & POS_MASK) // span
        if limit is not None:
            n = min(n, limit)
        if n == 0:
            word = words[(cons & mask) >> 2]
            return cons, 0, RUN_BUSY if word & BUSY_BIT else RUN_OTHER
        # The data pages are mapped twice in a row, so the run is contiguous
        # even when it wraps.  One snapshot of the headers: the run and the
        # reason it ends must be judged on the same values (a BUSY header read
        # twice may have been committed in between, and would then look like
        # a record of the right size that was rejected).
        hdrs = np.ndarray((n,), dtype=np.uint32, buffer=npdata, offset=cons & mask,
                          strides=(span,)).copy()
        bad = np.flatnonzero(hdrs != itemsize)
        if len(bad):
            k = int(bad[0])
            word = int(hdrs[k])
            return cons, k, RUN_BUSY if word & BUSY_BIT else (
                RUN_END if word & DISCARD_BIT else RUN_OTHER)
        return cons, n, RUN_END

    def run_bytes(self, npdata: U8Array, pos: int, n: int, itemsize: int) -> U8Array:
        """The payloads of the ``n`` ``itemsize``-byte records from ``pos`` as
        an (n, itemsize) strided byte matrix straight into the ring."""
        import numpy as np

        return np.ndarray((n, itemsize), dtype=np.uint8, buffer=npdata,
                          offset=(pos & self.mask) + HDR_SIZE,
                          strides=(record_span(itemsize), 1))

    def run_records(self, npdata: U8Array, pos: int, n: int, dtype: np.dtype[Any]
                    ) -> npt.NDArray[Any]:
        """The same run as a strided (n,) array of ``dtype`` straight into the ring."""
        import numpy as np

        return np.ndarray((n,), dtype=dtype, buffer=npdata,
                          offset=(pos & self.mask) + HDR_SIZE,
                          strides=(record_span(dtype.itemsize),))

    @staticmethod
    def run_end(pos: int, n: int, itemsize: int) -> int:
        """Position after ``n`` records of ``itemsize`` bytes from ``pos``."""
        return (pos + n * record_span(itemsize)) & POS_MASK


# --------------------------------------------------------------------------------------
# Producer side (BPF_MAP_TYPE_USER_RINGBUF: we produce, the kernel drains)
# --------------------------------------------------------------------------------------


def put_sample(data: memoryview, size: int, prod: int, payload: ReadableBuffer,
               length: int) -> int:
    """Write a sample at ``prod`` (payload, then a final, not BUSY header
    {length, 0}) and return the producer position after it; the caller
    checked that it fits and publishes the position.

    Nothing is visible to the drain until producer_pos moves, so the order of
    these plain stores does not matter.  A header in the last 8 bytes of the
    area puts the payload at offset 0, which is where the second mapping of
    the same pages continues.
    """
    hdr = prod & (size - 1)
    start = hdr + HDR_SIZE
    if start + length <= len(data):
        data[start:start + length] = payload
    else:
        write_payload(data, size, start & (size - 1), payload)
    _HEADER.pack_into(data, hdr, length, 0)
    return (prod + ((length + 15) & ~7)) & POS_MASK


def try_put(data: memoryview, size: int, cons: int, prod: int, payload: ReadableBuffer,
            length: int) -> int:
    """Write a ``length``-byte sample at ``prod`` with :func:`put_sample` if
    it can be written now, and return the new producer position; else -1,
    writing nothing: the ring lacks room, the sample can never fit (bigger
    than the ring or the drain's 16 MiB - 1), or the positions are
    inconsistent (misaligned ``prod``, more than a ring apart), which
    :meth:`Producer.plan` tells apart.  The fast path of the pure-Python
    backend, as ``fits``/``put_sample`` are in ``_speedups_user.c``."""
    used = (prod - cons) & POS_MASK
    if (length < 0 or length > size - HDR_SIZE or length > DYNPTR_MAX or used > size
            or prod & 7 or (length + 15) & ~7 > size - used):
        return -1
    return put_sample(data, size, prod, payload, length)


class Producer(_RingView):
    """Reserves, submits and discards samples in a user ring buffer.

    Mirrors what ``bpf_user_ringbuf_drain`` expects: a header with BUSY set is
    written first and ``producer_pos`` is advanced past the sample
    (``publish``); submit later clears BUSY (optionally setting DISCARD).  The
    drain stops at the first BUSY header, so samples become visible in
    reservation order.  Unlike a kernel ring, a user ring may be filled to the
    last byte (``prod - cons == size``).
    """

    __slots__ = ()

    def max_payload(self) -> int:
        """Largest payload a single sample can ever have in this ring."""
        return min(self.size - HDR_SIZE, DYNPTR_MAX)

    def free(self, cons: int, prod: int) -> int:
        return self.size - ((prod - cons) & POS_MASK)

    def has_room(self, length: int, cons: int, prod: int) -> bool:
        """Whether ``length`` payload bytes fit in what is free now."""
        return record_span(length) <= self.free(cons, prod)

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
        used = self._used(cons, prod)
        if span > self.size - used:
            raise RingFull(
                f"no room for a {length}-byte sample: {self.size - used} of "
                f"{self.size} bytes free"
            )
        return prod & self.mask, (prod + span) & POS_MASK

    def _used(self, cons: int, prod: int) -> int:
        if prod & 7:
            raise RingCorrupted(f"producer position {prod} is not 8-byte aligned")
        used = (prod - cons) & POS_MASK
        if used > self.size:
            raise RingCorrupted(
                f"consumer position {cons} is more than a ring size behind producer {prod}"
            )
        return used

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
        self.words[idx] = committed_word(word, discard)

    def write(self, payload_off: int, payload: ReadableBuffer) -> None:
        write_payload(self.data, self.size, payload_off, payload)

    def put(self, prod: int, payload: memoryview) -> int:
        """Write a whole sample at ``prod`` (checked with :meth:`plan`); return
        the producer position after it (see :func:`put_sample`)."""
        return put_sample(self.data, self.size, prod, payload, payload.nbytes)

    # Runs of fixed-size samples (write_array) ----------------------------------------

    def check_fixed(self, itemsize: int) -> None:
        """Raise :class:`RecordTooLarge` unless ``itemsize``-byte samples fit."""
        if record_span(itemsize) > self.size or itemsize > self.max_payload():
            raise RecordTooLarge(f"samples of {itemsize} bytes can never fit in a "
                                 f"{self.size}-byte ring")

    def room_for(self, itemsize: int, cons: int, prod: int) -> int:
        """How many ``itemsize``-byte samples fit now."""
        return (self.size - self._used(cons, prod)) // record_span(itemsize)

    def put_run(self, npdata: U8Array, prod: int, rows: U8Array) -> int:
        """Write the rows of an (n, itemsize) byte matrix as n samples at
        ``prod`` (checked with :meth:`room_for`): all headers in one vectorised
        store, then one strided payload copy.  Returns the new producer position."""
        import numpy as np

        n, itemsize = int(rows.shape[0]), int(rows.shape[1])
        span = record_span(itemsize)
        off = prod & self.mask
        # Contiguous thanks to the double mapping, even across the wrap.
        hdrs = np.ndarray((n,), dtype=np.uint64, buffer=npdata, offset=off, strides=(span,))
        hdrs[:] = itemsize  # len word = size (not BUSY), pg_off = 0 (little endian)
        body = np.ndarray((n, itemsize), dtype=np.uint8, buffer=npdata,
                          offset=off + HDR_SIZE, strides=(span, 1))
        body[:] = rows  # byte copy: ~3x faster than a structured one
        return (prod + n * span) & POS_MASK


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
    words = data.cast("B").cast("I")
    mask = size - 1
    samples = discarded = 0
    for _ in range(cap):
        if prod & 7:
            return DrainCheck(samples, discarded, cons, _errno.EINVAL, "misaligned producer_pos")
        if cons >= prod:
            return DrainCheck(samples, discarded, cons, 0, "empty")
        word = words[(cons & mask) >> 2]
        length = word & LEN_MASK
        span = (length + 15) & ~7
        if span > prod - cons:
            return DrainCheck(samples, discarded, cons, _errno.EINVAL,
                              "sample longer than the published data")
        if span > size:
            return DrainCheck(samples, discarded, cons, _errno.E2BIG,
                              "sample longer than the ring")
        if length > DYNPTR_MAX:
            return DrainCheck(samples, discarded, cons, _errno.E2BIG,
                              "sample above the 16 MiB dynptr limit")
        if word & DISCARD_BIT:
            discarded += 1
        elif word & BUSY_BIT:
            return DrainCheck(samples, discarded, cons, 0, "busy sample")
        else:
            samples += 1
        cons += span
    return DrainCheck(samples, discarded, cons, 0, "per-call sample cap")
