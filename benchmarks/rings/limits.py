"""The memory limits of the pre-filled section, measured by numpy on the very
buffer the consumers read: the ring's own data pages, mapped read-only a
second time here (the same physical pages as the ring's mapping in bpfring).

Each case times numpy alone over the round's records, as they sit in the ring
after ``prefill()``, then throws the records away (not timed) so the round
ends with an empty ring like every other case:

* ``np-headers``: a strided scan of only the 8-byte headers (one u32 length
  word per 48-byte record, summed): the floor for any consumer that must look
  at every header, as ``view_array`` must;
* ``np-headers-seq``: that header scan, then the strided sum of the ``seq``
  column (a second pass over the records): exactly the work of the
  ``view_array`` case (its scan of the headers, then ``arr["seq"].sum()``),
  so its physical bound;
* ``np-copy``: a strided copy of the 40-byte payloads into a new array, then
  the same ``seq`` sum the ``read_array`` case does: the memcpy limit
  ``read_array`` is compared with;
* ``np-stream``: a contiguous streaming read of the records' bytes (a uint64
  sum): the memory bandwidth itself.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

from .bench import Bench
from .common import EVENT, PAGE, RECORD_SIZE, SLOT, _mono

ConsumeResult = tuple[int, int | None, int, int]

# One read-only mapping per ring (producer page + double-mapped data), kept
# for the whole run: mapping it per round would time page faults.
_MAPS: dict[int, tuple[mmap.mmap, np.ndarray]] = {}


def _ring_bytes(rb: Any) -> np.ndarray:
    key = id(rb)
    if key not in _MAPS:
        m = mmap.mmap(rb.fileno(), PAGE + 2 * rb.size, mmap.MAP_SHARED, mmap.PROT_READ,
                      offset=PAGE)
        _MAPS[key] = (m, np.frombuffer(m, np.uint8)[PAGE:])
    return _MAPS[key][1]


def _drop(rb: Any) -> None:
    """Consume everything (untimed), with the fastest consumer there is."""
    while True:
        with rb.view_array(EVENT) as arr:
            n = len(arr)
        if n == 0 and rb.available == 0:
            return


def _where(b: Bench, mode: str, n: int) -> tuple[Any, np.ndarray, int]:
    rb = b.rings[mode]
    if rb.available < n * SLOT:
        raise RuntimeError(f"the ring holds {rb.available} bytes, not {n} records")
    return rb, _ring_bytes(rb), rb.consumer_pos & (rb.size - 1)


def np_headers(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb, data, off = _where(b, mode, n)
    t0 = _mono()
    lens = np.ndarray((n,), np.uint32, buffer=data, offset=off, strides=(SLOT,))
    total = int(lens.sum(dtype=np.uint64))
    t1 = _mono()
    if total != n * RECORD_SIZE:
        raise RuntimeError("headers are not all committed 40-byte records")
    _drop(rb)
    return n, None, t0, t1


def np_headers_seq(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb, data, off = _where(b, mode, n)
    t0 = _mono()
    lens = np.ndarray((n,), np.uint32, buffer=data, offset=off, strides=(SLOT,))
    total = int(lens.sum(dtype=np.uint64))
    seqs = np.ndarray((n,), np.uint64, buffer=data, offset=off + 8, strides=(SLOT,))
    s = int(seqs.sum())
    t1 = _mono()
    if total != n * RECORD_SIZE:
        raise RuntimeError("headers are not all committed 40-byte records")
    _drop(rb)
    return n, s, t0, t1


def np_copy(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb, data, off = _where(b, mode, n)
    t0 = _mono()
    rows = np.ndarray((n, RECORD_SIZE), np.uint8, buffer=data, offset=off + 8,
                      strides=(SLOT, 1)).copy()
    s = int(rows.view(EVENT).reshape(n)["seq"].sum())
    t1 = _mono()
    _drop(rb)
    return n, s, t0, t1


def np_stream(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb, data, off = _where(b, mode, n)
    t0 = _mono()
    words = np.ndarray((n * SLOT // 8,), np.uint64, buffer=data, offset=off)
    int(words.sum())
    t1 = _mono()
    _drop(rb)
    return n, None, t0, t1


LIMIT_CONSUMERS = {"np-headers": np_headers, "np-headers-seq": np_headers_seq,
                   "np-copy": np_copy, "np-stream": np_stream}


def limit_note(case: str, rate: float) -> str | None:
    """The note under a limit row: what the rate means in bytes."""
    if case == "np-stream":
        return f"memory limit: {rate * SLOT / 1e9:.1f} GB/s of ring bytes streamed"
    if case == "np-headers":
        return f"memory limit: headers every {SLOT} B, {rate * SLOT / 1e9:.1f} GB/s of ring"
    if case == "np-copy":
        return "memcpy limit: strided payload copy + the seq sum read_array's case does"
    if case == "objects-read":
        return "floor for bytes input: every object of write_many's list read, nothing written"
    if case == "objects-copy":
        return ("write_many's bound: the same objects copied as samples with its stores, "
                "no checks")
    if case == "np-headers-seq":
        return "view_array's bound: the header scan + the strided seq sum its case does"
    return None


def bound_note(case: str, rate: float, bound: str, bound_rate: float) -> str:
    """The note under a case that has a limit row of the same work."""
    return f"{rate / bound_rate:.2f}x of its memory bound ({bound}, same run)"


def close_maps() -> None:
    for m, _ in _MAPS.values():
        try:
            m.close()
        except BufferError:
            pass
    _MAPS.clear()
