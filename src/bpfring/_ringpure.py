"""The pure-Python ring backend: exactly what the C accelerator
``bpfring._speedups`` exports (the same types, functions, arguments, results
and errors), built on the sans-IO core :mod:`bpfring._ringcore`.

:mod:`bpfring._ringbackend` picks this module or the C one once; the I/O layer
(:mod:`bpfring.ringbuf`) binds a :class:`KernelRing` or :class:`UserRing` to
each ring it opens and never knows which backend made it.  Both take the
ring's memory as buffer objects, checked once, when the object is made:

    data       the data area, mapped twice in a row: exactly ``2 * size`` bytes
    cons_page  a buffer whose first 8 bytes are consumer_pos
    prod_page  a buffer whose first 8 bytes are producer_pos
    size       the data size: a power of two >= 16

(A bytearray of ``2 * size`` bytes stands in for the double mapping in tests.)
The objects keep the buffers they were given, or a plain view of them, so a
ring that was closed (its views released) makes every call raise ValueError.

Memory ordering: positions and header words are accessed as single native
items of ``'Q'``/``'I'`` views, which CPython performs as one aligned load or
store each, in program order.  That gives acquire/release semantics only on
x86 (TSO), which is why :mod:`bpfring._ringbackend` refuses this backend on
other CPUs; :func:`acquire_fence` is then a no-op.
"""

from __future__ import annotations

import ctypes
import itertools
import operator
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

# the perf ring walks: the same API as _speedups.perf_walk and perf_read
from ._perfcore import perf_read, perf_read_array, perf_take, perf_walk
from ._ringcore import (
    BUSY_BIT,
    DYNPTR_MAX,
    HDR_SIZE,
    LEN_MASK,
    POS_MASK,
    RUN_END,
    Consumer,
    ConsumeResult,
    Producer,
    committed_word,
    consume_pass,
    header_words,
    record_span,
    try_put,
)
from .errors import RingCorrupted

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

    from ._ringcore import U8Array

__all__ = ["API", "DYNPTR_MAX", "HDR_SIZE", "KernelRing", "UserRing", "acquire_fence",
           "backlog_iter", "load_acquire_u64", "perf_read", "perf_read_array", "perf_take",
           "perf_walk", "store_release_u64"]

#: The ``API`` number of the _speedups.c this module mirrors.
# 3: KernelRing.halt(); 4: also perf_walk; 5: scan, read_into, write_array;
# 6: the struct decoder _RecordDecoder; 7: KernelRing.read_records, backlog_iter,
# perf_read; 8: perf_take, perf_read_array.
API = 9

_U64_MAX = 1 << 64
_SIZE_MAX = sys.maxsize >> 2


# --------------------------------------------------------------------------------------
# Argument checks (the same, in the same order, as _speedups.c)
# --------------------------------------------------------------------------------------


def _check_size(size: object) -> int:
    if not isinstance(size, int):
        raise TypeError("size must be an int")
    if size < 0 or size >= _U64_MAX:
        raise OverflowError(f"ring size {size} does not fit an unsigned 64-bit integer")
    if size < 16 or size & (size - 1) or size > _SIZE_MAX:
        raise ValueError(f"ring size {size} is not a power of two >= 16")
    return size


def _not_writable(what: str) -> BufferError:
    return BufferError(f"{what} is not a writable buffer")


def _data_view(data: ReadableBuffer, size: int, writable: bool) -> memoryview:
    d = data if type(data) is memoryview else memoryview(data)
    if writable and d.readonly:
        raise _not_writable("data")
    if not d.c_contiguous:
        raise BufferError("data is not a contiguous buffer")
    if d.nbytes != 2 * size or _address(d) & 7:
        raise ValueError(f"data must be the double-mapped data area: 2 * size = {2 * size} "
                         f"bytes, 8-byte aligned (got {d.nbytes} bytes)")
    return d if d.format == "B" and d.ndim == 1 else d.cast("B")


def _pos_view(page: ReadableBuffer, writable: bool, what: str) -> memoryview:
    """A ``'Q'`` view whose item 0 is the position in ``page``."""
    p = page if type(page) is memoryview else memoryview(page)
    if writable and p.readonly:
        raise _not_writable(what)
    if not p.c_contiguous:
        raise BufferError(f"{what} is not a contiguous buffer")
    if p.nbytes < 8 or _address(p) & 7:
        raise ValueError(f"{what} must be an 8-byte aligned buffer of at least 8 bytes")
    if p.format == "Q" and p.ndim == 1:
        return p  # the rings' own position views
    return p.cast("B")[:8].cast("Q")


def _limit(limit: object) -> int:
    """None or -1 -> -1 (no limit), else an int >= 0."""
    if limit is None:
        return -1
    if not isinstance(limit, int):
        raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
    if limit < -1:
        raise ValueError("limit must be None, -1 (no limit) or >= 0")
    return limit


def _itemsize(obj: object) -> int:
    """A payload length the ring can hold (0..LEN_MASK), as ``get_itemsize``."""
    v = operator.index(obj)  # type: ignore[arg-type]
    if not 0 <= v <= LEN_MASK:
        raise ValueError(f"itemsize {v} is outside 0..{LEN_MASK}")
    return v


def _np_bytes(view: memoryview) -> U8Array:
    """A uint8 numpy array over a ring's data (numpy only when a batch path runs)."""
    import numpy as np

    return np.frombuffer(view, dtype=np.uint8)


def _check_positions(cons: int, prod: int, size: int) -> None:
    if (prod - cons) & POS_MASK > size:
        raise RingCorrupted(f"positions cons={cons} prod={prod} are more than a ring apart")
    if cons & 7:
        raise RingCorrupted(f"consumer position {cons} is not 8-byte aligned")


def _payload(obj: object) -> bytes | memoryview | None:
    """``obj`` as bytes or a flat byte view, or None where the C side's
    ``PyObject_GetBuffer(PyBUF_SIMPLE)`` fails (not a contiguous buffer)."""
    if type(obj) is bytes:
        return obj
    try:
        m = memoryview(obj)  # type: ignore[arg-type]
        if not m.c_contiguous:
            return None
        return m if m.format == "B" and m.ndim == 1 else m.cast("B")
    except Exception:  # any failure to get a buffer: the caller's checked path reports it
        return None


def _address(view: memoryview) -> int:
    """Address of the first byte of ``view`` (for the alignment checks)."""
    if not view.readonly:
        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    import numpy as np  # ctypes wants a writable buffer; numpy takes any

    return int(np.frombuffer(view, dtype=np.uint8).__array_interface__["data"][0])


# --------------------------------------------------------------------------------------
# The ring objects
# --------------------------------------------------------------------------------------


class _Ring:
    """The memory of one ring, checked once (as ``_speedups`` checks it)."""

    __slots__ = ("_cons", "_data", "_mine", "_prod", "size")

    #: Which buffers are written: data, consumer page, producer page.
    _writes: tuple[bool, bool, bool]

    def __init__(self, data: ReadableBuffer, cons_page: ReadableBuffer,
                 prod_page: ReadableBuffer, size: int, /) -> None:
        wd, wc, wp = self._writes
        self.size = _check_size(size)
        self._data = _data_view(data, self.size, wd)
        self._cons = _pos_view(cons_page, wc, "cons_page")
        self._prod = _pos_view(prod_page, wp, "prod_page")
        # The position this side owns and publishes.
        self._mine = self._prod if wp else self._cons

    def consumer_pos(self) -> int:
        """Load consumer_pos (an acquire on TSO)."""
        pos: int = self._cons[0]
        return pos

    def producer_pos(self) -> int:
        """Load producer_pos (an acquire on TSO)."""
        pos: int = self._prod[0]
        return pos

    def publish(self, pos: int, /) -> None:
        """Store the position this side owns (a release on TSO): consumer_pos
        of a kernel ring, producer_pos of a user ring."""
        try:
            self._mine[0] = pos  # TypeError for a non-integer, as in C
        except ValueError:
            raise OverflowError(f"{pos} does not fit an unsigned 64-bit integer") from None


class KernelRing(_Ring):
    """The memory of one kernel ring (``BPF_MAP_TYPE_RINGBUF``) as its
    consumer sees it: data and prod_page are read, cons_page is written."""

    __slots__ = ("_current", "_halted")
    _writes = (False, True, False)

    def __init__(self, data: ReadableBuffer, cons_page: ReadableBuffer,
                 prod_page: ReadableBuffer, size: int, /) -> None:
        super().__init__(data, cons_page, prod_page, size)
        self._halted = False
        self._current: ConsumeResult | None = None  # the walk in progress

    def halt(self) -> None:
        """Stop delivering: a consume() running now returns after the current
        callback, later ones deliver nothing (the ring is being closed)."""
        self._halted = True
        if self._current is not None:
            self._current.halted = True

    def _walk(self, res: ConsumeResult, callback: Callable[[memoryview], object], limit: int,
              each_record: memoryview | None, each_pass: memoryview | None,
              release_views: bool) -> None:
        """The I/O loop around :func:`consume_pass`: load producer_pos again
        after each pass and go on while it moves.  consumer_pos is stored into
        ``each_record`` after every record, or into ``each_pass`` after every
        pass (None: the caller stores it)."""
        data = self._data.toreadonly()  # the callbacks' views cannot write
        words = header_words(data)
        pv, size = self._prod, self.size
        while True:
            prod = pv[0]
            if prod == res.cons:
                return
            consume_pass(res, data, words, size, prod, callback,
                         None if limit < 0 else limit - res.delivered, each_record,
                         release_views)
            if each_pass is not None and each_pass[0] != res.cons:
                each_pass[0] = res.cons
            if res.busy or res.halted or res.delivered == limit or res.cons != prod:
                return

    def consume(self, callback: Callable[[memoryview], object], limit: int | None,
                publish_each: object, release_views: object, /
                ) -> tuple[int, int, bool, int]:
        """Deliver committed records to ``callback(view)``, a read-only
        memoryview of the payload; return (delivered, discarded, busy, cons).
        See ``_speedups.KernelRing.consume`` for the contract."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        lim = _limit(limit)
        each, release = bool(publish_each), bool(release_views)
        cv = self._cons
        res = ConsumeResult(cons=cv[0])
        if lim == 0 or self._halted:
            return 0, 0, False, res.cons
        self._current = res
        try:
            self._walk(res, callback, lim, cv if each else None, None if each else cv, release)
        finally:
            self._current = None
            # Also after an error: records delivered before it stay consumed,
            # the record that failed (callback error, corruption) does not.
            if cv[0] != res.cons:
                cv[0] = res.cons
        return res.delivered, res.discarded, res.busy, res.cons

    def read(self, limit: int | None, /) -> tuple[list[bytes], bool]:
        """Copy up to ``limit`` committed records into a list of bytes; return
        (records, busy).  consumer_pos is stored once, when the copies are
        made.  See ``_speedups.KernelRing.read`` for the contract."""
        lim = _limit(limit)
        cv = self._cons
        out: list[bytes] = []
        start = cv[0]
        res = ConsumeResult(cons=start)
        if lim == 0:
            return out, False
        append = out.append
        try:
            self._walk(res, lambda v: append(bytes(v)), lim, None, None, False)
        except RingCorrupted:
            if not out:
                raise
            res.busy = False  # hand out what we have; the next call raises
        if res.cons != start:
            cv[0] = res.cons  # after the copies: the kernel may now reuse the space
        return out, res.busy


    def read_records(self, limit: int | None, decoder: Callable[[bytes], Any], batch: object,
                     /) -> tuple[list[Any], bool, bytes | None]:
        """:meth:`read`, each payload turned into ``decoder(payload)``; return
        (records, busy, raw).  consumer_pos is stored once, after the
        decoding.  If decoding raises, consumer_pos is stored at that record
        and the error propagates, unless ``batch`` is true and records were
        decoded before it: then they are returned (the next call raises).
        With ``batch`` true, ``raw`` is the consumed area's bytes (headers
        included).  See ``_speedups.KernelRing.read_records``."""
        lim = _limit(limit)
        if not callable(decoder):
            raise TypeError("decoder must be callable")
        keep = bool(batch)
        cv = self._cons
        out: list[Any] = []
        start = cv[0]
        res = ConsumeResult(cons=start)
        if lim == 0 or self._halted:
            return out, False, None
        append = out.append

        def take(v: memoryview) -> None:
            append(decoder(bytes(v)))

        self._current = res  # halt() from code the decoder runs stops the walk
        try:
            self._walk(res, take, lim, None, None, False)
        except RingCorrupted:
            if not out:
                raise
            res.busy = False  # hand out what we have; the next call raises
        except BaseException as e:
            # The walk stopped at the record that failed: it is not consumed,
            # the ones before it are.
            if not (keep and out and isinstance(e, Exception)):
                if res.cons != start:
                    cv[0] = res.cons
                raise
            res.busy = False
        finally:
            self._current = None
        raw = None
        if keep and res.cons != start:
            raw = bytes(self._data[start & (self.size - 1):][:res.cons - start])
        if res.cons != start:
            cv[0] = res.cons  # after the decoding: the kernel may now reuse the space
        return out, res.busy, raw

    # The fixed-size batch paths: the numpy runs of the sans-IO core --------------

    def scan(self, itemsize: int, limit: int | None, /) -> tuple[int, int, int]:
        """The run of committed ``itemsize``-byte records at consumer_pos:
        (start after leading discarded records, records, why it ended: RUN_*),
        :meth:`Consumer.regular_run` over one load of producer_pos.  See
        ``_speedups.KernelRing.scan`` for the contract."""
        isz, lim = _itemsize(itemsize), _limit(limit)
        cons, prod = self._cons[0], self._prod[0]
        _check_positions(cons, prod, self.size)
        return Consumer(self._data, self.size).regular_run(
            _np_bytes(self._data), cons, prod, isz, None if lim < 0 else lim)

    def read_into(self, out: WriteableBuffer, itemsize: int, limit: int | None, /
                  ) -> tuple[int, int]:
        """Copy the committed ``itemsize``-byte records into ``out`` back to back,
        run by run as :meth:`Consumer.regular_run` finds them (at most
        ``limit``, or as many as fit); store consumer_pos once; return (records,
        why the walk stopped).  See ``_speedups.KernelRing.read_into``."""
        isz, lim = _itemsize(itemsize), _limit(limit)
        ob = memoryview(out)
        if ob.readonly:
            raise BufferError("out must be writable")
        if not ob.c_contiguous:
            raise BufferError("out must be C-contiguous")
        cap = ob.nbytes // isz if isz else sys.maxsize
        if 0 <= lim < cap:
            cap = lim
        cv, pv, size = self._cons, self._prod, self.size
        cons = start = cv[0]
        if cap == 0:
            return 0, RUN_END
        if cons & 7:
            raise RingCorrupted(f"consumer position {cons} is not 8-byte aligned")
        core, npd = Consumer(self._data, size), _np_bytes(self._data)
        dst = _np_bytes(ob)
        n, why = 0, RUN_END
        while n < cap:
            try:
                pos, k, why = core.regular_run(npd, cons, pv[0], isz, cap - n)
            except RingCorrupted:
                if not n:
                    raise
                why = RUN_END  # hand out what we have; the next call raises
                break
            if k:
                # One strided byte copy per run (the reference for the C loop).
                dst[n * isz:(n + k) * isz].reshape(k, isz)[:] = core.run_bytes(npd, pos, k, isz)
                n += k
                cons = core.run_end(pos, k, isz)
            else:
                cons = pos  # past leading discarded records
            if k == 0 or why:
                break
        if cons != start:
            cv[0] = cons  # after the copies: the kernel may now reuse the space
        return n, why


class UserRing(_Ring):
    """The memory of one user ring (``BPF_MAP_TYPE_USER_RINGBUF``) as its
    producer sees it: data and prod_page are written, cons_page is read."""

    __slots__ = ()
    _writes = (True, False, True)

    def write(self, payload: object, /) -> bool:
        """Write one sample if it fits now (payload, header, then
        producer_pos); False, writing nothing, when it does not fit or
        ``payload`` is not a contiguous buffer.  Caller holds the producer lock."""
        p = payload if type(payload) is bytes else _payload(payload)
        if p is None:
            return False
        pv = self._prod
        cons = self._cons[0]
        new = try_put(self._data, self.size, cons, pv[0], p, len(p))
        if new < 0:
            return False
        pv[0] = new
        return True

    def write_many(self, iterator: Iterator[Any], first: tuple[Any, ...], /
                   ) -> tuple[int, tuple[Any, ...]]:
        """Write the item in ``first`` (``()`` or ``(item,)``) and then the
        items of ``iterator`` while they fit, publish them with one
        producer_pos store; return (written, ``(item,)`` for the item that
        stopped the batch, or ``()`` when the iterator is exhausted).  An
        exception from the iterator propagates after the samples written so
        far are published.  Caller holds the producer lock."""
        if not hasattr(type(iterator), "__next__"):
            raise TypeError("write_many() needs an iterator")
        if type(first) is not tuple or len(first) > 1:
            raise TypeError("write_many() first must be () or (item,)")
        return self._put_items(itertools.chain(first, iterator))

    def write_list(self, items: list[Any] | tuple[Any, ...], start: int, /) -> int:
        """Write ``items[start:]`` (a list or tuple) while they fit, publish
        them with one producer_pos store; return how many were written.  It
        stops at the first item that does not fit or is not a contiguous
        buffer, or at the end.  Caller holds the producer lock."""
        if not isinstance(items, (list, tuple)):
            raise TypeError("write_list() needs a list or a tuple")
        i = operator.index(start)
        if i < 0:
            raise ValueError("write_list() start must be >= 0")
        return self._put_items(itertools.islice(items, i, None))[0]

    def _put_items(self, items: Iterator[Any]) -> tuple[int, tuple[Any, ...]]:
        """The batch writers' loop: write ``items`` while they fit and are
        contiguous buffers, publish once; return (written, ``(item,)`` that
        stopped the batch or ``()``)."""
        data, size, pv = self._data, self.size, self._prod
        cons = self._cons[0]
        prod = start = pv[0]
        written = 0
        stopped: tuple[Any, ...] = ()
        try:
            for item in items:
                p = item if type(item) is bytes else _payload(item)
                new = -1 if p is None else try_put(data, size, cons, prod, p, len(p))
                if new < 0:
                    stopped = (item,)
                    break
                prod = new
                written += 1
        finally:
            if prod != start:
                pv[0] = prod  # one store publishes the batch, also when the iterator raised
        return written, stopped

    def write_array(self, rows: ReadableBuffer, itemsize: int, count: int, /) -> int:
        """Write the contiguous buffer ``rows`` (``count`` rows) as one
        ``itemsize``-byte sample per row, as many as fit now, with :meth:`Producer.put_run` and one
        producer_pos store; -1, writing nothing, when the positions are
        inconsistent.  See ``_speedups.UserRing.write_array``."""
        isz, count = _itemsize(itemsize), operator.index(count)
        rv = memoryview(rows)
        if not rv.c_contiguous:
            raise BufferError("rows must be C-contiguous")
        nbytes = rv.nbytes
        if count < 0 or nbytes != count * isz:
            raise ValueError(f"rows of {nbytes} bytes are not {count} samples of {isz} bytes")
        size, pv = self.size, self._prod
        cons, prod = self._cons[0], pv[0]
        used, span = (prod - cons) & POS_MASK, record_span(isz)
        if prod & 7 or used > size or span > size or isz > DYNPTR_MAX:
            return -1
        n = min(count, (size - used) // span)
        if n:
            src = _np_bytes(rv)
            pv[0] = Producer(self._data, size).put_run(
                _np_bytes(self._data), prod, src[:n * isz].reshape(n, isz))
        return n

    def commit(self, offset: int, discard: object, /) -> int:
        """Submit (or discard) the sample whose header is at byte ``offset``
        of the data: replace a BUSY header word with its committed form.
        Returns the previous word; if it was not BUSY nothing is written."""
        offset = operator.index(offset)
        flag = bool(discard)
        if offset < 0 or offset & 3:
            raise ValueError("header offset must be a non-negative multiple of 4")
        words = header_words(self._data)
        if offset >> 2 >= len(words):
            raise IndexError("index out of range")
        word = int(words[offset >> 2])
        if word & BUSY_BIT:
            # One aligned 4-byte store publishes the sample (TSO: a release).
            words[offset >> 2] = committed_word(word, flag)
        return word


# --------------------------------------------------------------------------------------
# Single accesses for the slower paths
# --------------------------------------------------------------------------------------


def _item_view(buf: ReadableBuffer, index: int, writable: bool, fmt: Literal["I", "Q"]
               ) -> memoryview:
    """A native ``fmt`` view of ``buf`` in which ``index`` is valid, checked
    as ``_speedups`` checks it (contiguous, aligned, writable if need be)."""
    m = buf if type(buf) is memoryview else memoryview(buf)
    if writable and m.readonly:
        raise _not_writable("buffer")
    if not m.c_contiguous:
        raise BufferError("buffer is not contiguous")
    if m.format != fmt or m.ndim != 1:
        # Not yet a view of the items: check the alignment here (a view that
        # already has the items' format, like a ring's position views, was
        # checked when it was bound to a ring object).
        if _address(m) & (7 if fmt == "Q" else 3):
            raise ValueError("buffer is not aligned for atomic access")
        b = m.cast("B")
        width = 8 if fmt == "Q" else 4
        m = b[:len(b) // width * width].cast(fmt)
    if index < 0 or index >= len(m):
        raise IndexError("index out of range")
    return m


def load_acquire_u64(buf: ReadableBuffer, index: int, /) -> int:
    """Load the ``index``-th native u64 of ``buf`` (a position)."""
    index = operator.index(index)
    return int(_item_view(buf, index, False, "Q")[index])


def store_release_u64(buf: WriteableBuffer, index: int, value: int, /) -> None:
    """Store ``value`` into the ``index``-th native u64 of ``buf`` (a position we own)."""
    if not isinstance(value, int):
        raise TypeError(f"an integer is required, not {type(value).__name__}")
    if value < 0 or value >= _U64_MAX:
        raise OverflowError(f"{value} does not fit an unsigned 64-bit integer")
    index = operator.index(index)
    _item_view(buf, index, True, "Q")[index] = value


def backlog_iter(backlog: deque[Any], fill: Callable[[], object]) -> Iterator[Any]:
    """Pop ``backlog`` from the left; call ``fill()`` (which must put records
    into it, wait, or raise) whenever it is empty.  The C twin is a type."""
    if not callable(fill):
        raise TypeError("fill must be callable")
    popleft = backlog.popleft

    def gen() -> Iterator[Any]:
        while True:
            try:
                rec = popleft()  # one atomic pop: another thread may take the last one
            except IndexError:
                fill()
                continue
            yield rec

    return gen()


def acquire_fence() -> None:
    """An acquire fence: nothing to do on the TSO CPUs this backend runs on."""

