"""The perf event ring protocol, sans I/O: what a consumer of one CPU's
``perf_event_open`` ring does between reading ``data_head`` and storing
``data_tail``.  No syscalls, no mmap: the functions work on any buffer, so
they are tested on bytearrays as well as on the kernel's pages.

Layout (``include/uapi/linux/perf_event.h``)
--------------------------------------------
The mapping is one metadata page (``struct perf_event_mmap_page``) followed
by a data area of ``2**n`` pages.  ``data_head`` (written by the kernel) and
``data_tail`` (written by us) are free-running byte counters; the record at
counter ``p`` starts at ``data[p % size]``.  Unlike a BPF ring buffer the
data area is mapped once, so a record can wrap around its end: it is then
reassembled from two pieces.

Every record starts with ``struct perf_event_header {u32 type; u16 misc;
u16 size;}``; ``size`` counts the header and is a multiple of 8.  With
``sample_type = PERF_SAMPLE_RAW`` (what ``bpf_perf_event_output`` needs):

* ``PERF_RECORD_SAMPLE``: ``u32 raw_size`` then ``raw_size`` bytes.  The
  kernel pads the raw data so that ``4 + raw_size`` is a multiple of 8, so
  consumers see the BPF program's bytes followed by up to 7 padding bytes
  (as libbpf and BCC do);
* ``PERF_RECORD_LOST``: ``u64 id; u64 lost``: the kernel could not write
  ``lost`` samples because the ring was full.

Other record types (throttling, ...) are skipped by their size.

Ordering: ``data_head`` is read with acquire semantics (pairs with the
kernel's ``smp_store_release`` in ``perf_output_put_handle``), and
``data_tail`` is stored with release semantics after the payload reads
(pairs with the kernel's ``smp_mb`` before it reads the tail).  The I/O layer
does both; this module only computes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from .errors import RingCorrupted

__all__ = [
    "DATA_HEAD",
    "DATA_OFFSET",
    "DATA_SIZE",
    "DATA_TAIL",
    "RECORD_LOST",
    "RECORD_SAMPLE",
    "WalkResult",
    "payloads",
    "perf_read",
    "perf_read_array",
    "perf_take",
    "perf_walk",
    "walk",
]

# struct perf_event_mmap_page: byte offsets of the fields we use (checked
# against the kernel's BTF in the tests).
DATA_HEAD = 1024
DATA_TAIL = 1032
DATA_OFFSET = 1040
DATA_SIZE = 1048

RECORD_LOST = 2
RECORD_SAMPLE = 9

HEADER = struct.Struct("<IHH")  # type, misc, size
_U32 = struct.Struct("<I")
_SAMPLE_HEAD = struct.Struct("<IHHI")  # header, then a sample's raw size
SAMPLE_HEAD_SIZE = _SAMPLE_HEAD.size  #: bytes before a sample's raw data
_LOST = struct.Struct("<QQ")  # id, lost
POS_MASK = (1 << 64) - 1


class WalkResult(NamedTuple):
    tail: int        #: the new data_tail (every record before it is done with)
    delivered: int   #: samples handed to the callback
    lost: int        #: samples the kernel reported lost (PERF_RECORD_LOST)


def _record(data: memoryview, size: int, pos: int, length: int,
            scratch: bytearray) -> memoryview:
    """The ``length`` bytes of the record at counter ``pos``, contiguous:
    a view into the ring, or a copy in ``scratch`` when it wraps."""
    off = pos & (size - 1)
    end = off + length
    if end <= size:
        return data[off:end]
    first = size - off
    scratch[:first] = data[off:size]
    scratch[first:length] = data[:length - first]
    return memoryview(scratch)[:length]


def walk(data: memoryview, size: int, tail: int, head: int,
         on_sample: Callable[[memoryview], object],
         limit: int | None = None,
         on_lost: Callable[[int], object] | None = None,
         halt: bytearray | None = None) -> WalkResult:
    """Walk the records between ``tail`` and ``head`` (counters as read from
    the metadata page) of a data area of ``size`` bytes (a power of two).

    Each sample's raw bytes go to ``on_sample(view)`` (valid only during the
    call); each lost report to ``on_lost(count)``.  At most ``limit`` samples
    are delivered; the walk also stops before the next record once
    ``halt[0]`` is non-zero (a callback closing its buffer sets it).  If a
    callback raises, the walk stops *before* that
    record (it is not consumed: at-least-once delivery) and the exception is
    re-raised with ``exc.walk_result`` set to the :class:`WalkResult` of the
    records done so far, which the caller must still publish.

    Raises :class:`RingCorrupted` (with ``walk_result`` too) when the
    positions or a header are impossible: a record of size 0 or past
    ``head`` would otherwise loop forever or read garbage.
    """
    avail = (head - tail) & POS_MASK
    if avail > size:
        raise RingCorrupted(f"perf ring: data_head {head} is {avail} bytes past data_tail "
                            f"{tail}, more than the {size}-byte data area")
    if avail % 8:
        raise RingCorrupted(f"perf ring: data_head {head} - data_tail {tail} is not a "
                            "multiple of 8")
    scratch = bytearray(0)
    delivered = 0
    lost = 0
    pos = tail
    left = avail
    mask = size - 1
    cap = -1 if limit is None else limit  # -1: never equal to a count
    sample_head = _SAMPLE_HEAD.unpack_from
    try:
        while left:
            if delivered == cap or (halt is not None and halt[0]):
                break
            # The header itself never wraps (records and the header are
            # 8-byte aligned); a sample's raw size right after it may.
            off = pos & mask
            if off + _SAMPLE_HEAD.size <= size:
                rtype, _misc, rsize, raw = sample_head(data, off)
            else:
                rtype, _misc, rsize = HEADER.unpack_from(data, off)
                raw = -1
            if rsize < HEADER.size or rsize & 7 or rsize > left:
                raise RingCorrupted(f"perf ring: record at {pos} has size {rsize} "
                                    f"({left} bytes left before data_head)")
            if rtype == RECORD_SAMPLE:
                if raw >= 0 and off + rsize <= size:  # contiguous: a view, no copy
                    if _SAMPLE_HEAD.size + raw > rsize:
                        raise RingCorrupted(f"perf ring: sample at {pos} claims {raw} raw "
                                            f"bytes in a {rsize}-byte record")
                    on_sample(data[off + _SAMPLE_HEAD.size:off + _SAMPLE_HEAD.size + raw])
                else:  # wraps around the end of the data area: reassemble
                    if len(scratch) < rsize:
                        scratch = bytearray(max(rsize, 256))
                    rec = _record(data, size, pos, rsize, scratch)
                    raw = _U32.unpack_from(rec, HEADER.size)[0]
                    if HEADER.size + 4 + raw > rsize:
                        raise RingCorrupted(f"perf ring: sample at {pos} claims {raw} raw "
                                            f"bytes in a {rsize}-byte record")
                    on_sample(rec[HEADER.size + 4:HEADER.size + 4 + raw])
                delivered += 1
            elif rtype == RECORD_LOST:
                if rsize < HEADER.size + _LOST.size:
                    raise RingCorrupted(f"perf ring: lost record at {pos} has size {rsize}")
                if len(scratch) < rsize:
                    scratch = bytearray(max(rsize, 256))
                rec = _record(data, size, pos, rsize, scratch)
                count = _LOST.unpack_from(rec, HEADER.size)[1]
                if on_lost is not None:
                    on_lost(count)
                lost += count
            pos = (pos + rsize) & POS_MASK
            left -= rsize
    except BaseException as e:
        e.walk_result = WalkResult(pos, delivered, lost)  # type: ignore[attr-defined]
        raise
    return WalkResult(pos, delivered, lost)


def perf_walk(meta: memoryview, data: memoryview, on_sample: Callable[[memoryview], object],
              limit: int | None, on_lost: Callable[[int], object] | None,
              halt: bytearray | None) -> tuple[int, int]:
    """Consume one CPU's perf ring: :func:`walk` between the metadata page's
    ``data_tail`` and ``data_head``, then store the new ``data_tail`` (also
    when a callback raised or the ring proved corrupted: the records before
    stay consumed).  Returns ``(delivered, lost)``.

    The pure-Python twin of ``bpfring._speedups.perf_walk`` (same arguments,
    results and errors).  ``meta`` is the page as a ``'Q'`` view; plain item
    accesses are acquire loads and release stores on x86-TSO only, which is
    why the pure backend is refused elsewhere (``_ringbackend.check_arch``).
    """
    head = meta[DATA_HEAD // 8]
    tail = meta[DATA_TAIL // 8]
    try:
        res = walk(data, len(data), tail, head, on_sample, limit, on_lost, halt)
    except BaseException as e:
        done = getattr(e, "walk_result", None)
        if done is not None:
            meta[DATA_TAIL // 8] = done.tail
        raise
    meta[DATA_TAIL // 8] = res.tail
    return res.delivered, res.lost


def _collector(decoder: Callable[[bytes], Any]) -> tuple[list[Any], Callable[[memoryview], None]]:
    """A list and the walk callback that appends ``decoder(payload)`` (a bytes
    copy) of each sample to it (``bytes`` itself without a second call)."""
    out: list[Any] = []
    append = out.append
    if decoder is bytes:
        def take(v: memoryview) -> None:
            append(bytes(v))
    else:
        def take(v: memoryview) -> None:
            append(decoder(bytes(v)))
    return out, take


def perf_read(meta: memoryview, data: memoryview, decoder: Callable[[bytes], Any],
              limit: int | None, on_lost: Callable[[int], object] | None,
              halt: bytearray | None) -> tuple[list[Any], int]:
    """:func:`perf_walk` collecting ``decoder(payload)`` of each sample (a
    bytes copy) into a list instead of calling back; returns ``(records,
    lost)``.  If decoding raises, ``data_tail`` is stored before that sample
    and the error propagates.  The twin of ``bpfring._speedups.perf_read``."""
    if not callable(decoder):
        raise TypeError("decoder must be callable")
    out, take = _collector(decoder)
    _, lost = perf_walk(meta, data, take, limit, on_lost, halt)
    return out, lost


class _Stop(Exception):
    """Raised by a walk's callback to stop before the current sample."""


def _area(data: memoryview, size: int, start: int, end: int) -> bytes:
    """The bytes between counters ``start`` and ``end``, reassembled where
    they wrap around the end of the data area."""
    length = (end - start) & POS_MASK
    if not length:
        return b""
    return bytes(_record(data, size, start, length, bytearray(length)))


def perf_take(meta: memoryview, data: memoryview, decoder: Callable[[bytes], Any],
              limit: int | None, on_lost: Callable[[int], object] | None,
              halt: bytearray | None, want_raw: object) -> tuple[list[Any], int, bytes | None]:
    """:func:`perf_read` that loses nothing on an error: when decoding a
    sample, an ``on_lost`` call or a corrupted record fails after some
    records were decoded, those are returned, ``data_tail`` is stored before
    the failing record and the error comes again from the next call; only a
    failure at the first record propagates.  With ``want_raw``, also the
    bytes of the consumed area (headers included, reassembled where it
    wraps), from which :func:`payloads` recovers each record's raw bytes;
    else None.  The twin of ``bpfring._speedups.perf_take``."""
    if not callable(decoder):
        raise TypeError("decoder must be callable")
    want = bool(want_raw)
    out, take = _collector(decoder)
    start, end, lost = _walk_batch(meta, data, take, limit, on_lost, halt,
                                   lambda e: bool(out))
    raw = _area(data, len(data), start, end) if want and end != start else None
    return out, lost, raw


def _walk_batch(meta: memoryview, data: memoryview, take: Callable[[memoryview], None],
                limit: int | None, on_lost: Callable[[int], object] | None,
                halt: bytearray | None, keep: Callable[[Exception], bool]
                ) -> tuple[int, int, int]:
    """One pass from data_tail to data_head with ``take`` per sample;
    data_tail is stored once, at the end, also when the walk fails.  An
    error (not a BaseException such as KeyboardInterrupt) for which
    ``keep(e)`` is true ends the batch with what was taken: the failing
    sample stays first in the ring and fails again on the next call.
    Returns ``(start, end, lost)``."""
    head = meta[DATA_HEAD // 8]
    start = meta[DATA_TAIL // 8]
    try:
        res = walk(data, len(data), start, head, take, limit, on_lost, halt)
        end, lost = res.tail, res.lost
    except BaseException as e:
        done = getattr(e, "walk_result", None)
        if done is not None:
            meta[DATA_TAIL // 8] = done.tail
        if done is None or not isinstance(e, Exception) or not keep(e):
            raise
        end, lost = done.tail, done.lost
    meta[DATA_TAIL // 8] = end
    return start, end, lost


def perf_read_array(meta: memoryview, data: memoryview, out: Any, itemsize: int,
                    limit: int | None, on_lost: Callable[[int], object] | None,
                    halt: bytearray | None) -> tuple[int, int, int]:
    """Copy the first ``itemsize`` bytes of each sample into consecutive rows
    of the writable buffer ``out`` (at most ``limit`` rows, and as many as
    fit); returns ``(count, lost, short)``.  A sample shorter than
    ``itemsize`` stops the walk before it (it stays in the ring) and
    ``short`` is its raw size (else -1).  Errors as for :func:`perf_take`.
    The twin of ``bpfring._speedups.perf_read_array``."""
    if not isinstance(itemsize, int) or not 1 <= itemsize <= 65535:
        raise ValueError("itemsize must be between 1 and 65535")
    rows = memoryview(out).cast("B")
    cap = len(rows) // itemsize
    if limit is not None and 0 <= limit < cap:
        cap = limit
    count = 0
    short = -1

    def take(v: memoryview) -> None:
        nonlocal count, short
        if v.nbytes < itemsize:
            short = v.nbytes
            raise _Stop
        rows[count * itemsize:(count + 1) * itemsize] = v[:itemsize]
        count += 1

    _, _, lost = _walk_batch(meta, data, take, cap, on_lost, halt,
                             lambda e: bool(count) or isinstance(e, _Stop))
    return count, lost, short


def payloads(raw: bytes) -> list[memoryview]:
    """The raw bytes of each sample in ``raw``, a consumed area as
    :func:`perf_take` returns it (lost reports and other records skipped)."""
    out: list[memoryview] = []
    view = memoryview(raw)
    pos = 0
    while pos < len(raw):
        rtype, _misc, rsize = HEADER.unpack_from(raw, pos)
        if rtype == RECORD_SAMPLE:
            n = _U32.unpack_from(raw, pos + HEADER.size)[0]
            out.append(view[pos + _SAMPLE_HEAD.size:pos + _SAMPLE_HEAD.size + n])
        pos += rsize
    return out


def sample_record(payload: bytes) -> bytes:
    """The bytes the kernel writes for a ``bpf_perf_event_output`` of
    ``payload`` (for tests and fakes): header, raw size, payload, padding."""
    raw = (len(payload) + 4 + 7) // 8 * 8 - 4
    body = _U32.pack(raw) + payload + bytes(raw - len(payload))
    return HEADER.pack(RECORD_SAMPLE, 0, HEADER.size + len(body)) + body


def lost_record(count: int, event_id: int = 0) -> bytes:
    """The bytes of a ``PERF_RECORD_LOST`` reporting ``count`` lost samples."""
    return HEADER.pack(RECORD_LOST, 0, HEADER.size + _LOST.size) + _LOST.pack(event_id, count)
