"""Consumer of a ``BPF_MAP_TYPE_RINGBUF``: records produced by BPF programs.

Every walk over the records is the active backend's (``consume``, ``read``)
or the sans-IO core's (the numpy runs, ``pending``); this module adds the
mapping, the lock, the waits, the iterator's backlog and the numpy and
asyncio glue.
"""

from __future__ import annotations

import mmap
import select
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _sys, _wait
from .._fd import OwnedFD
from .._ringbackend import KernelRing
from .._ringcore import RUN_BUSY, RUN_OTHER, Consumer, distance
from ..errors import BPFError
from ._mapped import MappedRing, MapSource

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import numpy as np
    import numpy.typing as npt

_T = TypeVar("_T")


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
                 _owned: bool = False) -> None:
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
        """
        self.batch_publish = batch_publish
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
        self._backlog: deque[bytes] = deque()
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
        the kernel writes there once the ring wraps, silently.
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
        while backlog and (limit is None or n < limit) and not self._halted:
            callback(memoryview(backlog[0]))  # raises: the record stays first in line
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
        waiter = self._waiter(timeout)
        while True:
            got, busy = attempt()
            if got or (limit is not None and limit <= 0):
                return got
            # BUSY: a BPF program on another CPU holds a reservation open; the
            # fd stays readable (prod != cons), so the waiter backs off instead.
            if waiter.wait(busy) is None:
                return got

    def read(self, limit: int | None = None, timeout: float | None = 0) -> list[Any]:
        """Return copies of waiting records (at most ``limit``), waiting up to
        ``timeout`` seconds for the first one (default: do not wait).

        Records are ``bytes``, or decoded records when the ring has a ``record`` type.
        """
        recs = self._polled(lambda: self._take(limit), timeout, limit)
        return recs if self._decode is bytes else self._decode_all(recs)

    def _take(self, limit: int | None) -> tuple[list[bytes], bool]:
        """Copies of up to ``limit`` waiting records (the iterator's backlog
        first, like :meth:`consume`) and whether a BUSY record stopped the
        walk; does not wait.  consumer_pos is stored once, when the copies
        are made."""
        with self._serving():
            backlog = self._backlog
            if backlog:
                k = len(backlog) if limit is None else max(0, min(limit, len(backlog)))
                return [backlog.popleft() for _ in range(k)], False
            return self._impl.read(None if limit is None else max(limit, 0))

    def _decode_all(self, recs: list[bytes]) -> list[Any]:
        """Decode copies taken out of the ring; if decoding raises, the record
        that failed and the ones after it go back in line (first to come out
        of the next read, poll or iteration) and the error propagates."""
        decode = self._decode
        out: list[Any] = []
        try:
            for rec in recs:
                out.append(decode(rec))
        except BaseException:
            with self._lock:
                self._backlog.extendleft(reversed(recs[len(out):]))
            raise
        return out

    # Batch paths (numpy) -------------------------------------------------------------

    def _as_dtype(self, dtype: Any) -> np.dtype[Any]:
        import numpy as np

        if dtype is None:  # the ring's own record type
            if self.record is None:
                raise TypeError("no dtype: pass one, or open the ring with record=")
            dtype = self.record
        dt: np.dtype[Any] = np.dtype(getattr(dtype, "dtype", dtype))
        if dt.itemsize == 0:
            raise ValueError("dtype has no size")
        return dt

    def read_array(self, dtype: Any = None, limit: int | None = None,
                   timeout: float | None = 0) -> npt.NDArray[Any]:
        """Consume fixed-size records into a new structured numpy array.

        ``dtype`` is a numpy dtype (or a record type with ``.dtype``) whose
        itemsize equals the records' payload size.  Headers of a whole run are
        checked at once and payloads copied with one strided copy; discarded
        records are skipped and the batch stops at a BUSY record, exactly as
        record-by-record consumption would.  A record of another size ends the
        batch and stays in the ring (read it with :meth:`read`); if it is the
        very first record, ``ValueError`` says so.  Waits up to ``timeout``
        seconds for the first record like :meth:`poll`.

        ``dtype`` defaults to the ring's ``record`` type.  ``char[N]`` members
        stay ``S<N>`` bytes in numpy (so that :meth:`view_array` can be a
        view); :meth:`read_arrow` and :meth:`read_frame` give strings.
        """
        import numpy as np

        dt = self._as_dtype(dtype)
        chunks = self._polled(lambda: self._take_array(dt, limit), timeout, limit)
        if not chunks:
            return np.empty(0, dtype=dt)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def _take_array(self, dt: np.dtype[Any], limit: int | None
                    ) -> tuple[list[npt.NDArray[Any]], bool]:
        """Copies of the waiting runs of ``dt``-sized records (up to ``limit``
        records) and whether a BUSY record ended them; does not wait."""
        itemsize = dt.itemsize
        impl = self._impl
        with self._serving():
            if self._backlog:
                raise ValueError("records taken out by an iterator are pending; "
                                 "finish them with read() first")
            core, npd = self._core, self._np_data()
            chunks: list[npt.NDArray[Any]] = []
            got = 0
            busy = False
            cons = impl.consumer_pos()
            while limit is None or got < limit:
                start, n, why = core.regular_run(npd, cons, impl.producer_pos(), itemsize,
                                                 None if limit is None else limit - got)
                if n:
                    self._be.acquire_fence()  # the header checks before the payload copy
                    # Copied as an (n, itemsize) byte matrix: numpy's strided
                    # byte copy is about twice as fast as a structured one.
                    chunks.append(core.run_bytes(npd, start, n, itemsize).copy()
                                  .view(dt).reshape(n))
                    got += n
                    cons = core.run_end(start, n, itemsize)
                else:
                    cons = start  # past leading discarded records
                impl.publish(cons)
                if why == RUN_OTHER and not got:
                    raise ValueError(
                        f"next record has {core.length_at(cons)} bytes, not the "
                        f"{itemsize} of the dtype; consume it with read()")
                if n == 0 or why:
                    busy = why == RUN_BUSY
                    break
            return chunks, busy

    @contextmanager
    def view_array(self, dtype: Any = None, limit: int | None = None
                   ) -> Iterator[npt.NDArray[Any]]:
        """Zero-copy: ``with rb.view_array(dtype) as arr:`` gives a read-only
        strided view straight into the ring over the waiting run of records.

        The records are consumed when the block exits normally (the consumer
        position moves past them; on an exception they stay).  The view must
        not be used after the block: the kernel reuses that memory.  Does not
        wait; ``arr`` may be empty.  Consumption is locked meanwhile.
        """
        dt = self._as_dtype(dtype)
        impl = self._impl
        with self._serving():
            core = self._core
            cons = impl.consumer_pos()
            start, n, _ = core.regular_run(self._np_data(), cons, impl.producer_pos(),
                                           dt.itemsize, limit)
            if start != cons:
                impl.publish(start)  # past leading discarded records
            if n:
                self._be.acquire_fence()  # header checks before the caller reads payloads
            yield core.run_records(self._np_data(), start, n, dt)
            impl.publish(core.run_end(start, n, dt.itemsize))

    # Iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        """Yield records (copies), blocking for the next one.

        Records are taken from the ring in batches; those not yet yielded when
        the loop stops stay with this object and come first from the next
        read, poll or iteration.
        """
        backlog = self._backlog
        decode = self._decode
        while True:
            if not backlog:
                self._fill_backlog(None)
                continue
            rec = backlog.popleft()
            yield rec if decode is bytes else decode(rec)

    def _fill_backlog(self, timeout: float | None) -> None:
        self._check_open()
        backlog = self._backlog
        if backlog:
            return
        backlog.extend(self._polled(lambda: self._take(self._ITER_BATCH), timeout,
                                    self._ITER_BATCH))

    # asyncio -------------------------------------------------------------------------

    async def _wait_readable(self) -> None:
        """Wait on the running loop until the map fd reports data (or a BUSY
        record makes us back off); no thread, nothing consumed, so a
        cancellation at this await loses nothing."""
        if self.pending()[2]:
            import asyncio

            await asyncio.sleep(50e-6)
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
        decode = self._decode
        while True:
            if not backlog:
                backlog.extend(self._take(self._ITER_BATCH)[0])
                if not backlog:
                    await self._wait_readable()
                continue
            rec = backlog.popleft()
            yield rec if decode is bytes else decode(rec)

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
