"""Consumer of a ``BPF_MAP_TYPE_RINGBUF``: records produced by BPF programs.

Every walk over the records is the active backend's (``consume``, ``read``)
or the sans-IO core's (the numpy runs, ``pending``); this module adds the
mapping, the lock, the waits, the iterator's backlog and the numpy and
asyncio glue.
"""

from __future__ import annotations

import mmap
import select
import struct
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _sys, _wait
from .._fd import OwnedFD
from .._ringbackend import KernelRing
from .._ringcore import (
    DISCARD_BIT,
    HDR_SIZE,
    LEN_MASK,
    RUN_BUSY,
    RUN_OTHER,
    Consumer,
    distance,
    record_span,
)
from ..errors import BPFError
from ._debug import debug_callback, debug_default
from ._mapped import MappedRing, MapSource

if TYPE_CHECKING:
    from types import TracebackType

    import numpy as np
    import numpy.typing as npt

_T = TypeVar("_T")
_HDR_WORD = struct.Struct("=I")  # a record header's length word (native order)


class RingBuffer(MappedRing):
    """Consumer of a ``BPF_MAP_TYPE_RINGBUF`` (records produced by BPF programs).

    ``RingBuffer(fd)`` duplicates ``fd``; the caller keeps ownership of its own.
    One consumer per ring: a second consumer (in this or another process)
    steals records.  Methods are thread-safe (a lock serialises consumption).
    A callback must not read, consume or poll its own ring (that raises
    :class:`~bpfring.BPFError`); it may :meth:`close` it, which takes effect
    when the callback returns (no further record is delivered).  Closing
    from another thread wakes threads blocked in :meth:`poll`, :meth:`read`
    or iteration: they raise ``ValueError``, as I/O on a closed file does.

    Delivery is at-least-once for callbacks: a record whose callback raises is
    not consumed and comes again on the next call.  :meth:`read` and iteration
    return copies, and a record counts as consumed once it is copied.
    """

    _map_type = _sys.MAP_TYPE_RINGBUF
    _kind = "kernel"
    # Consumer page: RW, exactly one page at offset 0 (ringbuf_map_mmap_kern
    # refuses any other writable mapping).  Producer page + doubled data: RO.
    _cons_prot = mmap.PROT_READ | mmap.PROT_WRITE
    _data_prot = mmap.PROT_READ
    # Level-triggered: readable while records wait.
    _epoll_events = select.EPOLLIN

    _ITER_BATCH = 256
    _impl: KernelRing

    def __init__(self, source: MapSource, *, batch_publish: bool = False,
                 lost_map: int | None = None, record: Any = None,
                 debug: bool | None = None, _owned: bool = False) -> None:
        """Consume a ring map given as an fd (duplicated: the caller keeps
        ownership), a :class:`MapRef` or its string (``"id 42"``,
        ``"pinned /sys/fs/bpf/events"``, ``"name events"``).

        ``batch_publish`` stores the consumer position once per call instead of
        after every record: fewer cache-line transfers, and producers using
        adaptive wakeups see us "behind" and wake us less often; the price is
        that space frees up later, so a small ring fills sooner.
        ``lost_map`` is the fd of the per-CPU counter array that
        ``bpfring/ring.bpf.h`` keeps next to the ring (``<ring>__lost``);
        objects loaded with :func:`bpfring.load` wire it up automatically.
        ``record`` (a BTF record type, see :mod:`bpfring.btf`) makes
        :meth:`read`, iteration and :meth:`read_async` return decoded
        records instead of bytes; callbacks still get raw views.
        ``debug`` (default: environment ``BPFRING_DEBUG=1``) hands callbacks
        a view that is released when they return, so a view kept past the
        call raises instead of silently showing newer records (see
        docs/threads.md, "Views given to callbacks"); it costs a copy per record.
        """
        self.batch_publish = batch_publish
        #: Debug mode for callbacks (see :mod:`bpfring.ringbuf._debug`).
        self.debug = debug_default(debug)
        super().__init__(source, _owned=_owned)
        self._lock = threading.Lock()
        self._owner: int | None = None  # thread inside a walk, under the lock
        self._halted = False  # close() was called from a callback
        try:
            self._lost_fd = (OwnedFD.dup(lost_map, "ring lost-counter map")
                             if lost_map is not None else None)
        except BaseException:
            self._release()
            raise
        # Records already consumed from the ring by an iterator but not yet
        # handed out: kept here so that stopping an iteration loses nothing.
        # With a record type they are decoded records, and _backlog_raw holds
        # the ring bytes of the batch they came from (headers included), of
        # which the backlog is always the tail: consume() hands those out raw.
        self._backlog: deque[Any] = deque()
        self._backlog_raw: bytes | None = None
        self.record = record
        self._decode: Callable[[Any], Any] = record.decode if record is not None else bytes

    def _bind(self) -> memoryview:
        self._core = Consumer(self._data, self._size)
        self._impl = self._be.KernelRing(self._data, self._cons_view, self._prod_view,
                                         self._size)
        return self._core.words

    # Positions ---------------------------------------------------------------------

    @property
    def pending_pos(self) -> int:
        """Kernel bookkeeping (6.10+): first record not yet known committed."""
        return self._be.load_acquire_u64(self._prod_view, 1)

    @property
    def available(self) -> int:
        """Bytes waiting in the ring (headers, discarded and busy records
        included; records an iterator already took out are not counted)."""
        self._check_open()
        return distance(self._impl.consumer_pos(), self._impl.producer_pos())

    # Consuming ---------------------------------------------------------------------

    @staticmethod
    def _reentered() -> BPFError:
        return BPFError("RingBuffer read from inside one of its own callbacks",
                        hint="return from the callback first (close() from a callback "
                             "is fine: it takes effect when the callback returns)")

    @contextmanager
    def _serving(self) -> Iterator[None]:
        """Hold the lock while records are taken out; refuse re-entry from a
        callback (the lock is not re-entrant: it would hang) and run a close()
        that a callback asked for once the walk is over."""
        me = threading.get_ident()
        if self._owner == me:
            raise self._reentered()
        with self._lock:
            self._check_open()
            self._owner = me
            try:
                yield
            finally:
                self._owner = None
                if self._halted:
                    self._close_locked()

    def consume(self, callback: Callable[[memoryview], Any], limit: int | None = None) -> int:
        """Deliver waiting records to ``callback`` without waiting; return how many.

        ``callback(view)`` gets a read-only memoryview of the payload that is
        valid only during the call (copy it with ``bytes(view)`` to keep it):
        a slice of it kept past the call stays readable but shows whatever
        the kernel writes there once the ring wraps, silently; debug mode
        (``debug=True`` or ``BPFRING_DEBUG=1``) releases the view when the
        callback returns and refuses kept slices, to find such bugs.
        ``limit`` bounds the records delivered (0 delivers none).
        """
        return self.consume_status(callback, limit)[0]

    def consume_status(self, callback: Callable[[memoryview], Any], limit: int | None = None
                       ) -> tuple[int, bool]:
        """Like :meth:`consume`, and also tell whether the pass stopped at a
        record still being written (BUSY): returns (records delivered, busy).

        For event loops serving rings themselves (as :class:`~bpfring.Poller`
        does): a ring that is busy stays readable, so instead of waiting on
        its fd they should back off briefly and try again.
        """
        # _serving(), inlined: this is the per-call cost of every callback
        # consumer (a Poller calls it per ring and round).
        me = threading.get_ident()
        if self._owner == me:
            raise self._reentered()
        if self.debug:
            callback = debug_callback(callback, "RingBuffer")
        with self._lock:
            self._check_open()
            self._owner = me
            try:
                if self._backlog:
                    return self._consume_backlog(callback, limit), False
                # The walk with acquire loads of producer_pos and headers,
                # release stores of consumer_pos (after every record unless
                # batch_publish).
                n, _, busy, _ = self._impl.consume(
                    callback, None if limit is None else max(limit, 0),
                    not self.batch_publish, True)
                return n, busy
            finally:
                self._owner = None
                if self._halted:
                    self._close_locked()

    def _consume_backlog(self, callback: Callable[[memoryview], Any], limit: int | None) -> int:
        n = 0
        backlog = self._backlog
        raw = self._backlog_raw
        views = None if raw is None else _payloads(raw)
        while backlog and (limit is None or n < limit) and not self._halted:
            # raises: the record stays first in line
            if views is None:
                callback(memoryview(backlog[0]))
            else:  # decoded records: their bytes, from the tail of the batch
                callback(views[len(views) - len(backlog)])
            backlog.popleft()
            n += 1
        return n

    def poll(self, callback: Callable[[memoryview], Any], timeout: float | None = None,
             limit: int | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: forever, 0: not at all) for
        records, then deliver them to ``callback``; return how many.

        Waiting follows the kernel's wakeup rules: a producer that submits with
        ``BPF_RB_NO_WAKEUP`` (or adaptively, while we lag behind) does not wake
        us, so records it wrote are picked up at the next call or timeout.
        """
        return self._polled(lambda: self.consume_status(callback, limit), timeout, limit)

    def _polled(self, attempt: Callable[[], tuple[_T, bool]], timeout: float | None,
                limit: int | None) -> _T:
        """Call ``attempt()`` -> (result, busy) until the result is non-empty
        (a count or a list), waiting in between as :meth:`poll` describes."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 or None")
        got, busy = attempt()
        if got or (limit is not None and limit <= 0) or timeout == 0:
            return got  # the common cases, without a Waiter: no per-call set-up
        waiter = self._waiter(timeout)
        while True:
            # BUSY: a BPF program on another CPU holds a reservation open; the
            # fd stays readable (prod != cons), so the waiter backs off instead.
            if waiter.wait(busy) is None:
                return got
            got, busy = attempt()
            if got:
                return got

    def read(self, limit: int | None = None, timeout: float | None = 0) -> list[Any]:
        """Return copies of waiting records (at most ``limit``), waiting up to
        ``timeout`` seconds for the first one (default: do not wait).

        Records are ``bytes``, or decoded records when the ring has a ``record`` type.
        """
        return self._polled(lambda: self._take(limit), timeout, limit)

    def _take(self, limit: int | None) -> tuple[list[Any], bool]:
        """Up to ``limit`` waiting records (the iterator's backlog first, like
        :meth:`consume`), copied or decoded, and whether a BUSY record stopped
        the walk; does not wait.  consumer_pos is stored once, after the
        copies (or decoding) are made.  A record that fails to decode stays
        in the ring, first in line (the ones before it in this call are
        consumed), and the error propagates."""
        with self._serving():
            backlog = self._backlog
            if backlog:
                k = len(backlog) if limit is None else max(0, min(limit, len(backlog)))
                return [backlog.popleft() for _ in range(k)], False
            lim = None if limit is None else max(limit, 0)
            decode = self._decode
            if decode is bytes:
                return self._impl.read(lim)
            # Decoded in the backend's walk, straight from the ring (C decoder).
            recs, busy, _ = self._impl.read_records(lim, decode, False)
            return recs, busy

    # Batch paths (numpy) -------------------------------------------------------------

    def _as_dtype(self, dtype: Any) -> np.dtype[Any]:
        import numpy as np

        if dtype is None:  # the ring's own record type
            if self.record is None:
                raise TypeError("no dtype: pass one, or open the ring with record=")
            dtype = self.record
        if not isinstance(dtype, np.dtype):
            # A record type carries its dtype in .dtype; numpy scalar classes
            # (np.uint64) have a .dtype descriptor, which is not one.
            inner = getattr(dtype, "dtype", None)
            if isinstance(inner, np.dtype):
                dtype = inner
        dt: np.dtype[Any] = np.dtype(dtype)
        if dt.itemsize == 0:
            raise ValueError("dtype has no size")
        return dt

    def read_array(self, dtype: Any = None, limit: int | None = None,
                   timeout: float | None = 0, *, out: npt.NDArray[Any] | None = None
                   ) -> npt.NDArray[Any]:
        """Consume fixed-size records into a structured numpy array.

        ``dtype`` is a numpy dtype (or a record type with ``.dtype``) whose
        itemsize equals the records' payload size.  The backend checks the
        headers of a whole run at once and copies the payloads back to back in
        the same pass; discarded records are skipped and the batch stops at a
        BUSY record, exactly as record-by-record consumption would.  A record
        of another size ends the batch and stays in the ring (read it with
        :meth:`read`); if it is the very first record, ``ValueError`` says so.
        Waits up to ``timeout`` seconds for the first record like :meth:`poll`.

        ``out``: a writable, C-contiguous 1-D array of ``dtype``'s itemsize to
        reuse between calls (no allocation per batch); at most ``len(out)``
        records are read and ``out[:n]`` is returned.  Without it the result is
        a new array (a slice of one sized for what was waiting).

        ``dtype`` defaults to the ring's ``record`` type.  ``char[N]`` members
        stay ``S<N>`` bytes in numpy (so that :meth:`view_array` can be a
        view); :meth:`read_arrow` and :meth:`read_frame` give strings.
        """
        dt = self._as_dtype(dtype)
        if out is not None:
            self._check_out(out, dt)
            limit = len(out) if limit is None else min(max(limit, 0), len(out))
        got = self._polled(lambda: self._take_array(dt, limit, out), timeout, limit)
        if got:
            return got[0]
        if out is not None:
            return out[:0]
        import numpy as np

        return np.empty(0, dtype=dt)

    @staticmethod
    def _check_out(out: Any, dt: np.dtype[Any]) -> None:
        import numpy as np

        if not isinstance(out, np.ndarray) or out.ndim != 1:
            raise TypeError("out must be a 1-D numpy array")
        if out.dtype.itemsize != dt.itemsize:
            raise ValueError(f"out has {out.dtype.itemsize}-byte items, not the "
                             f"{dt.itemsize} of the dtype")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be C-contiguous and writeable")

    def _take_array(self, dt: np.dtype[Any], limit: int | None,
                    out: npt.NDArray[Any] | None) -> tuple[list[npt.NDArray[Any]], bool]:
        """The waiting run of ``dt``-sized records (up to ``limit``) copied
        into ``out`` or a new array, in a list (empty when there was none),
        and whether a BUSY record ended it; does not wait."""
        itemsize = dt.itemsize
        impl = self._impl
        with self._serving():
            if self._backlog:
                raise ValueError("records taken out by an iterator are pending; "
                                 "finish them with read() first")
            buf = out
            if buf is None:
                import numpy as np

                # Room for every record of this size the waiting bytes can
                # hold (never more than a ring's worth: the backend refuses
                # impossible positions itself).
                waiting = min(distance(impl.consumer_pos(), impl.producer_pos()), self._size)
                cap = waiting // record_span(itemsize)
                if limit is not None:
                    cap = min(cap, max(limit, 0))
                buf = np.empty(cap, dtype=dt)
            # One pass in the backend: header checks, payload copies, one
            # release store of consumer_pos after them.
            n, why = impl.read_into(buf.data, itemsize, None if limit is None else max(limit, 0))
            if why == RUN_OTHER and not n:
                raise ValueError(
                    f"next record has {self._core.length_at(impl.consumer_pos())} bytes, "
                    f"not the {itemsize} of the dtype; consume it with read()")
            if not n:
                return [], why == RUN_BUSY
            got = buf[:n]
            if out is None and n < len(buf) // 2 and buf.nbytes >= 1 << 20:
                got = got.copy()  # do not keep a large, mostly unused buffer alive
            return [got], why == RUN_BUSY

    def view_array(self, dtype: Any = None, limit: int | None = None
                   ) -> AbstractContextManager[npt.NDArray[Any]]:
        """Zero-copy: ``with rb.view_array(dtype) as arr:`` gives a read-only
        strided view straight into the ring over the waiting run of records.

        The records are consumed when the block exits normally (the consumer
        position moves past them; on an exception they stay).  The view must
        not be used after the block: the kernel reuses that memory.  Does not
        wait; ``arr`` may be empty.  Consumption is locked meanwhile.
        """
        return _ViewBlock(self, self._as_dtype(dtype), limit)

    # Iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        """Yield records (copies, or decoded records with ``record``), blocking
        for the next one.

        Records are taken from the ring in batches (decoded in the backend's
        walk); those not yet yielded when the loop stops stay with this
        object and come first from the next read, poll or iteration.  A
        record that fails to decode is not consumed: the error is raised
        when it is next in line (and again on the next attempt), as for
        :meth:`read`; ``consume()`` still delivers it raw.
        """
        # The backend's iterator pops the backlog (in C: no generator frame
        # per record) and calls _fill() whenever it is empty.
        it: Iterator[Any] = self._be.backlog_iter(self._backlog, self._fill)
        return it

    def _fill(self) -> None:
        self._fill_backlog(None)

    def _fill_backlog(self, timeout: float | None) -> None:
        self._check_open()
        if self._backlog:
            return
        self._polled(self._take_to_backlog, timeout, self._ITER_BATCH)

    def _take_to_backlog(self) -> tuple[int, bool]:
        """Move a batch of copies into the backlog under the lock (so threads
        iterating one ring keep the ring's order) unless records already
        wait there; returns (records waiting, busy)."""
        with self._serving():
            backlog = self._backlog
            if backlog:
                return len(backlog), False
            decode = self._decode
            if decode is bytes:
                recs, busy = self._impl.read(self._ITER_BATCH)
                self._backlog_raw = None
            else:
                recs, busy, self._backlog_raw = self._impl.read_records(
                    self._ITER_BATCH, decode, True)
            backlog.extend(recs)
            return len(recs), busy

    # asyncio -------------------------------------------------------------------------

    async def _wait_readable(self) -> None:
        """Wait on the running loop until the map fd reports data (or a BUSY
        record makes us back off); no thread, nothing consumed, so a
        cancellation at this await loses nothing."""
        if self.pending()[2]:
            import asyncio

            await asyncio.sleep(50e-6)
            return
        if self._edge_wake:
            # An eventfd (user-space runtime) stays readable once written:
            # wait for the private epoll's edge instead, then take it.
            await _wait.readable(self._epoll.fileno())
            self._epoll.poll(0)
            return
        await _wait.readable(self._fd.fileno())

    async def read_async(self, limit: int | None = None) -> list[Any]:
        """Wait (in the running event loop) until records arrive; return copies
        of up to ``limit`` of them."""
        while True:
            out = self.read(limit, 0)
            if out or (limit is not None and limit <= 0):
                return out
            await self._wait_readable()

    async def __aiter__(self) -> AsyncIterator[Any]:
        """``async for rec in rb``: like iteration, on the event loop."""
        backlog = self._backlog
        while True:
            try:
                rec = backlog.popleft()  # one atomic pop, as in __iter__
            except IndexError:
                self._take_to_backlog()
                if not backlog:
                    await self._wait_readable()
                continue
            yield rec

    # State -----------------------------------------------------------------------------

    @property
    def lost(self) -> int | None:
        """Records BPF programs failed to reserve (ring full), summed over CPUs.

        Counted by the ``bpfring_reserve``/``bpfring_output`` wrappers of
        ``<bpfring/ring.bpf.h>``; ``None`` when the ring has no such counter.
        """
        if self._lost_fd is None:
            return None
        self._check_open()
        return _sys.percpu_sum(self._lost_fd.fileno())

    def pending(self) -> tuple[int, int, int]:
        """(committed, discarded, busy) records waiting, without consuming them."""
        self._check_open()
        return self._core.pending_records(self._impl.consumer_pos(), self._impl.producer_pos())

    def close(self) -> None:
        """Unmap the ring and close the private fd (idempotent).

        From inside one of the ring's callbacks, the ring closes when the
        callback returns and no further record is delivered.  Threads blocked
        waiting on the ring wake up and raise ``ValueError``."""
        if self._closed:
            return
        if self._owner == threading.get_ident():
            self._halted = True
            self._impl.halt()  # the backend's walk stops after this callback
            return
        self._wake_waiters()
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._closed:
            return
        self._wake_waiters()
        self._release()
        if self._lost_fd is not None:
            self._lost_fd.close()

    # Arrow and data frames (bpfring.frames; pyarrow/pandas/polars optional) ----------

    def _frames(self) -> Any:
        """:mod:`bpfring.frames`, once records an iterator took out are gone
        (a batch of newer records would overtake them, as for read_array)."""
        from .. import frames

        if self._backlog:
            raise ValueError("records taken out by an iterator are pending; "
                             "finish them with read() first")
        return frames

    def read_arrow(self, record: Any = None, limit: int | None = None,
                   timeout: float | None = 0) -> Any:
        """Consume fixed-size records into a ``pyarrow.RecordBatch`` (one column
        per field, ``char[]`` as strings; see :mod:`bpfring.frames`).  ``record``
        defaults to the ring's own; waits like :meth:`read_array`."""
        return self._frames().read(self, "arrow", record, limit, timeout)

    def view_arrow(self, record: Any = None, limit: int | None = None
                   ) -> AbstractContextManager[Any]:
        """``with rb.view_arrow() as batch:``: the waiting records as a
        RecordBatch, consumed only when the block exits normally (write them
        somewhere first, lose nothing on an error).  Does not wait."""
        view: AbstractContextManager[Any] = self._frames().ring_view_arrow(self, record, limit)
        return view

    def read_frame(self, record: Any = None, limit: int | None = None,
                   timeout: float | None = 0) -> Any:
        """Like :meth:`read_arrow`, as a ``pandas.DataFrame`` (nested structs
        flattened into dotted column names)."""
        return self._frames().read(self, "pandas", record, limit, timeout)

    def read_polars(self, record: Any = None, limit: int | None = None,
                    timeout: float | None = 0) -> Any:
        """Like :meth:`read_frame`, as a ``polars.DataFrame``."""
        return self._frames().read(self, "polars", record, limit, timeout)


def _payloads(raw: bytes) -> list[memoryview]:
    """Read-only views of the committed payloads in ``raw``, a copy of a
    consumed stretch of the ring (8-byte headers included, no BUSY record)."""
    out: list[memoryview] = []
    view = memoryview(raw)
    pos, end = 0, len(raw)
    while pos + HDR_SIZE <= end:
        word = _HDR_WORD.unpack_from(raw, pos)[0]
        length = word & LEN_MASK
        if not word & DISCARD_BIT:
            out.append(view[pos + HDR_SIZE:pos + HDR_SIZE + length])
        pos += record_span(length)
    return out


class _ViewBlock:
    """The ``with`` block of :meth:`RingBuffer.view_array`: the ring's lock is
    held from ``__enter__`` to ``__exit__`` (as :meth:`RingBuffer._serving`
    holds it), the backend's header pass finds the run on entry and a normal
    exit publishes the consumer position past it.  A class rather than a
    generator: this is the per-batch cost of every zero-copy consumer."""

    __slots__ = ("_dt", "_end", "_limit", "_rb")

    def __init__(self, rb: RingBuffer, dt: np.dtype[Any], limit: int | None) -> None:
        self._rb, self._dt, self._limit = rb, dt, limit
        self._end: int | None = None

    def __enter__(self) -> npt.NDArray[Any]:
        rb = self._rb
        me = threading.get_ident()
        if rb._owner == me:
            raise rb._reentered()
        rb._lock.acquire()
        try:
            rb._check_open()
            rb._owner = me
            impl, core, itemsize = rb._impl, rb._core, self._dt.itemsize
            cons = impl.consumer_pos()
            # The backend's header pass (ends with an acquire fence: the
            # header checks are ordered before the caller's payload reads).
            start, n, _ = impl.scan(itemsize, self._limit)
            if start != cons:
                impl.publish(start)  # past leading discarded records
            arr = core.run_records(rb._np_data(), start, n, self._dt)
        except BaseException:
            self._leave()
            raise
        self._end = core.run_end(start, n, itemsize) if n else None
        return arr

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if typ is None and self._end is not None:
                self._rb._impl.publish(self._end)  # consumed: the block exited normally
        finally:
            self._end = None
            self._leave()

    def _leave(self) -> None:
        rb = self._rb
        rb._owner = None
        try:
            if rb._halted:
                rb._close_locked()  # a close() from inside the block
        finally:
            rb._lock.release()
