"""Producer into a ``BPF_MAP_TYPE_USER_RINGBUF``, drained by
``bpf_user_ringbuf_drain()`` in a BPF program.

``write``/``write_many`` are the active backend's; reservations, the checked
slow path and ``write_array`` use the sans-IO core with the backend's
position stores and header commit.  This module adds the mapping, the lock,
the waits for room and the numpy and asyncio glue.
"""

from __future__ import annotations

import mmap
import select
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _sys, _wait
from .._ringbackend import UserRing
from .._ringcore import BUSY_BIT, Producer, distance
from ..errors import RingCorrupted, RingFull, SampleError
from ._mapped import MappedRing, MapSource

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_T = TypeVar("_T")


class Sample:
    """A reserved, writable sample of a :class:`UserRingBuffer`.

    Write the payload through :attr:`data` (a writable memoryview straight into
    the ring), ``sample[a:b] = ...`` or :meth:`write`, then :meth:`submit` or
    :meth:`discard` exactly once.  Used as a context manager it submits on
    normal exit and discards when the block raises.  After submit or discard
    the view is released: later writes raise instead of corrupting the ring.

    A sample dropped while still reserved would hold back every sample
    reserved after it forever; it is discarded when garbage-collected,
    with a :class:`ResourceWarning` (as an unclosed file is closed).
    """

    __slots__ = ("__weakref__", "_hdr", "_ring", "data")

    def __init__(self, ring: UserRingBuffer, hdr: int, data: memoryview) -> None:
        self._ring = ring
        self._hdr = hdr
        self.data = data

    def __len__(self) -> int:
        return self.data.nbytes

    def __setitem__(self, key: int | slice, value: Any) -> None:
        self.data[key] = value

    def __getitem__(self, key: int | slice) -> Any:
        return self.data[key]

    def write(self, payload: ReadableBuffer, offset: int = 0) -> None:
        """Copy ``payload`` into the sample at ``offset``."""
        n = memoryview(payload).nbytes
        self.data[offset:offset + n] = memoryview(payload).cast("B")

    @property
    def done(self) -> bool:
        return self._hdr < 0

    def submit(self) -> None:
        """Hand the sample to the kernel (clears the BUSY bit)."""
        self._ring._commit(self, False)

    def discard(self) -> None:
        """Give the space back without the kernel ever seeing the sample."""
        self._ring._commit(self, True)

    def __enter__(self) -> Sample:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._hdr < 0:
            return
        self._ring._commit(self, exc_type is not None)

    def __del__(self) -> None:
        if self._hdr < 0:
            return
        try:
            warnings.warn(f"reserved Sample of {self.data.nbytes} bytes dropped without "
                          "submit() or discard(): discarded", ResourceWarning, stacklevel=2)
            if not self._ring._closed:
                self._ring._commit(self, True)
        except Exception:  # interpreter shutdown, a ring closed meanwhile
            pass

    def __repr__(self) -> str:
        state = "done" if self._hdr < 0 else "reserved"
        return f"<Sample {state} size={len(self) if self._hdr >= 0 else '?'}>"


class UserRingBuffer(MappedRing):
    """Producer into a ``BPF_MAP_TYPE_USER_RINGBUF`` drained by a BPF program.

    Thread-safe: reservations are serialised by a lock; submits need none.
    Closing from another thread wakes every writer waiting for room.

    Wakeup modes of the drain, and what a writer waiting for room pays:
    the default (adaptive) and ``BPF_RB_FORCE_WAKEUP`` wake it as soon as
    the drain returns; ``BPF_RB_NO_WAKEUP`` sends nothing, so the writer
    notices the room only when it re-checks consumer_pos (after 1 ms, then
    on a back-off up to :attr:`RECHECK_MAX`, 20 ms): up to that much latency
    and about 50 cheap wakeups per second of waiting, never a hang.
    Several *processes* writing one ring must coordinate among themselves (the
    kernel offers no lock); the drain itself may run concurrently with writes.
    Samples reach the kernel in reservation order, and an unsubmitted sample
    holds back the ones reserved after it.
    """

    _map_type = _sys.MAP_TYPE_USER_RINGBUF
    _kind = "user"
    # ringbuf_map_mmap_user: consumer page read-only, producer page + data RW.
    _cons_prot = mmap.PROT_READ
    _data_prot = mmap.PROT_READ | mmap.PROT_WRITE
    # Edge-triggered: each wait for room blocks until the next drain wakeup
    # (ringbuf_map_poll_user + irq_work); see bpfring._wait.
    _epoll_events = select.EPOLLOUT | select.EPOLLET
    _impl: UserRing

    def __init__(self, source: MapSource, *, record: Any = None, _owned: bool = False) -> None:
        """Produce into a user ring map given as an fd (duplicated), a
        :class:`MapRef` or its string form.  With a ``record`` type (see
        :mod:`bpfring.btf`), :meth:`write` also takes a record, a dict or
        keyword fields: ``urb.write(i=1, comm="hi")``."""
        self.record = record
        super().__init__(source, _owned=_owned)
        self._lock = threading.Lock()
        # Weak: a sample dropped while reserved is discarded by its __del__.
        self._outstanding: dict[int, weakref.ref[Sample]] = {}

    def _bind(self) -> memoryview:
        self._core = Producer(self._data, self._size)
        self._impl = self._be.UserRing(self._data, self._cons_view, self._prod_view, self._size)
        return self._core.words

    @property
    def free(self) -> int:
        """Bytes free for new samples (each sample also needs an 8-byte header)."""
        self._check_open()
        return self._core.free(self._impl.consumer_pos(), self._impl.producer_pos())

    @property
    def max_sample_size(self) -> int:
        """Largest payload one sample can have in this ring."""
        return self._core.max_payload()

    # Waiting for room ------------------------------------------------------------------

    #: Longest a wait for room (or for a drain) sleeps without looking at
    #: consumer_pos: a drain with BPF_RB_NO_WAKEUP sends no wakeup at all.
    RECHECK_MAX = 0.02

    def _room_waiter(self, timeout: float | None) -> _wait.Waiter:
        # Drain wakeups end the wait at once; without one (BPF_RB_NO_WAKEUP,
        # or a wakeup lost to a race) consumer_pos is re-checked on a back-off
        # from 1 ms doubling up to RECHECK_MAX (see bpfring._wait).
        return self._waiter(timeout, recheck=self.RECHECK_MAX)

    def _wait_room(self, length: int, waiter: _wait.Waiter, first: RingFull) -> None:
        """Block until a sample of ``length`` may fit, or raise ``first`` at the deadline."""
        impl = self._impl
        while True:
            if waiter.wait() is None:
                raise first
            self._check_open()
            if self._core.has_room(length, impl.consumer_pos(), impl.producer_pos()):
                return

    def _attempt(self, length: int, timeout: float | None, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt()`` under the producer lock; while it raises
        :class:`RingFull`, wait for drains (up to ``timeout``; 0: never wait,
        None: forever) and try again."""
        self._check_open()
        waiter: _wait.Waiter | None = None
        while True:
            with self._lock:
                try:
                    return attempt()
                except RingFull as e:
                    if timeout == 0:
                        raise
                    full = e
            if waiter is None:  # the timeout counts from the first failure
                waiter = self._room_waiter(timeout)
            self._wait_room(length, waiter, full)

    def _fill(self, length: int, timeout: float | None, step: Callable[[], bool]) -> None:
        """Call ``step()`` under the lock until it reports everything written
        (True); between calls wait for drains, up to ``timeout`` (0: once)."""
        self._check_open()
        waiter: _wait.Waiter | None = None
        while True:
            with self._lock:
                if step() or timeout == 0:
                    return
            if waiter is None:
                waiter = self._room_waiter(timeout)
            try:
                self._wait_room(length, waiter, RingFull())
            except RingFull:
                return

    # Reserve / submit ------------------------------------------------------------------

    def reserve(self, size: int, timeout: float | None = 0) -> Sample:
        """Reserve a sample of ``size`` payload bytes.

        ``timeout`` 0 raises :class:`RingFull` at once when there is no room; a
        positive value (seconds) or ``None`` (forever) waits for the kernel to
        drain without spinning.  :class:`RecordTooLarge` means it can never fit.
        """
        hdr, off = self._attempt(size, timeout, lambda: self._reserve_locked(size))
        s = Sample(self, hdr, self._data[off:off + size])
        self._outstanding[hdr] = weakref.ref(s)
        return s

    def _reserve_locked(self, size: int) -> tuple[int, int]:
        # Load-acquire consumer_pos: pairs with the drain's store-release after
        # it read the space we are about to reuse.
        hdr, new_prod = self._core.plan(size, self._impl.consumer_pos(), self._prod_view[0])
        off = self._core.begin(hdr, size)
        # Store-release of producer_pos after the BUSY header: the drain may
        # now see the sample, but skips it while BUSY.
        self._impl.publish(new_prod)
        return hdr, off

    def _commit(self, sample: Sample, discard: bool) -> None:
        hdr = sample._hdr
        if hdr < 0:
            raise SampleError("sample was already submitted or discarded")
        sample._hdr = -1
        self._outstanding.pop(hdr, None)
        sample.data.release()
        # Clears BUSY in one atomic step (C: compare-exchange, acq_rel): the
        # payload written through sample.data is visible before the drain's
        # load-acquire of the header sees it committed.
        if not self._impl.commit(hdr, discard) & BUSY_BIT:
            raise SampleError("sample was already submitted or discarded")

    # Writing ---------------------------------------------------------------------------

    def write(self, data: Any = None, timeout: float | None = 0, **fields: Any) -> None:
        """Reserve, copy ``data`` and submit in one step.

        ``data`` is any bytes-like object; on a ring with a ``record`` type it
        may also be a record or a dict, or be omitted in favour of keyword
        fields (unset fields are zero).
        """
        if self.record is not None and (fields or data is None or
                                        not isinstance(data, bytes | bytearray | memoryview)):
            data = self.record.encode(data, **fields)
        if self._closed:
            self._check_open()
        # Fast path in the backend: acquire consumer_pos, copy, header,
        # store-release producer_pos.  False: no room now, too large,
        # misaligned positions or not a contiguous buffer: the checked path
        # below says which (or waits).
        with self._lock:
            if self._impl.write(data):
                return
        payload = memoryview(data).cast("B")
        self._attempt(len(payload), timeout, lambda: self._write_locked(payload))

    def _write_locked(self, payload: memoryview) -> None:
        """The checked path of one sample: raises what the fast path only
        reports (RecordTooLarge, RingFull, RingCorrupted)."""
        prod = self._prod_view[0]  # only we store it (under the lock)
        self._core.plan(payload.nbytes, self._impl.consumer_pos(), prod)
        # The payload and a final (non-BUSY) header are written before
        # producer_pos moves, so the drain never sees a partial sample.
        self._impl.publish(self._core.put(prod, payload))

    def write_many(self, buffers: Iterable[Any], timeout: float | None = 0) -> int:
        """Write several samples of any sizes and publish them with a single
        producer-position store; return how many were written.

        Stops at the first sample that does not fit (after waiting up to
        ``timeout`` for room); samples are never split.  A list or tuple is
        read in place, faster than any other iterable (see
        docs/howto-numpy.md).
        """
        if type(buffers) in (list, tuple):
            return self._write_list(buffers, timeout)  # type: ignore[arg-type]
        it = iter(buffers)
        written = 0
        pending: tuple[Any, ...] = ()  # (item,): the item the backend stopped at

        def step() -> bool:
            nonlocal written, pending
            while True:
                k, pending = self._impl.write_many(it, pending)
                written += k
                if not pending:
                    return True
                # The backend stopped at pending[0]: let the checked path
                # write it (room may have appeared since) or say why not:
                # RecordTooLarge, RingCorrupted, TypeError, or RingFull:
                # wait for a drain.
                try:
                    self._write_locked(memoryview(pending[0]).cast("B"))
                except RingFull:
                    return False
                written += 1
                pending = ()

        self._fill(0, timeout, step)
        return written

    def _write_list(self, items: list[Any] | tuple[Any, ...], timeout: float | None) -> int:
        """write_many() of a list or tuple: the backend reads the items in
        place by index (no iterator, and no reference counts written into
        them: a large batch's items are only read, which halves its memory
        traffic)."""
        done = 0

        def step() -> bool:
            nonlocal done
            while done < len(items):
                done += self._impl.write_list(items, done)
                if done >= len(items):
                    break
                # The backend stopped at items[done]: the checked path writes
                # it (room may have appeared since) or says why not, as in
                # write_many().
                try:
                    self._write_locked(memoryview(items[done]).cast("B"))
                except RingFull:
                    return False
                done += 1
            return True

        self._fill(0, timeout, step)
        return done

    def write_array(self, arr: Any, timeout: float | None = 0) -> int:
        """Write the rows of a 1-D numpy array as fixed-size samples in one
        pass of the backend (each header and payload, with plain stores;
        streaming stores after the first 4 MiB on x86-64) and publish them
        with a single producer-position store.

        Returns how many rows were written: as many as fit (never a partial
        sample); with a ``timeout`` it keeps waiting for drains until all are
        written or the time is up.
        """
        import numpy as np

        arr = np.asarray(arr)
        if arr.ndim != 1:
            raise ValueError("write_array takes a 1-D array (one sample per row)")
        itemsize = arr.dtype.itemsize
        core = self._core
        core.check_fixed(itemsize)
        self._check_open()
        total = len(arr)
        raw = memoryview(np.ascontiguousarray(arr).view(np.uint8).reshape(total * itemsize)
                         .data)
        done = 0

        def step() -> bool:
            nonlocal done
            impl = self._impl
            # Everything is written before producer_pos moves: one
            # store-release publishes the whole batch to the drain.
            k = impl.write_array(raw[done * itemsize:], itemsize, total - done)
            if k < 0:  # inconsistent positions: the checked path raises
                core.room_for(itemsize, impl.consumer_pos(), impl.producer_pos())
                raise RingCorrupted("the ring's positions changed under the producer lock")
            done += k
            return done == total

        self._fill(itemsize, timeout, step)
        return done

    # asyncio -----------------------------------------------------------------------------

    async def _wait_drain_async(self) -> None:
        # Our private epoll holds the map fd with EPOLLOUT|EPOLLET, so its own
        # fd turns readable exactly when a drain wakeup arrives.  The event
        # loop watches that fd: no thread and no spinning while partly full.
        await _wait.readable(self._epoll.fileno())
        self._epoll.poll(0)  # consume the edge so the next wait blocks

    async def reserve_async(self, size: int) -> Sample:
        """Reserve a sample, awaiting kernel drains while the ring is full.

        Cancellation-safe: nothing is reserved until the call returns."""
        while True:
            try:
                return self.reserve(size, 0)
            except RingFull:
                pass
            await self._wait_drain_async()

    async def write_async(self, data: Any) -> None:
        """Write one sample, awaiting kernel drains while the ring is full."""
        while True:
            try:
                return self.write(data, 0)
            except RingFull:
                pass
            await self._wait_drain_async()

    # State -----------------------------------------------------------------------------

    def pending_bytes(self) -> int:
        """Bytes written but not yet drained by the kernel."""
        self._check_open()
        return distance(self._impl.consumer_pos(), self._impl.producer_pos())

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until the kernel has drained everything written so far.

        Drain wakeups end the wait at once; a drain with ``BPF_RB_NO_WAKEUP``
        is noticed by re-checking consumer_pos on a back-off (1 ms doubling up
        to :attr:`RECHECK_MAX`).  Returns False on timeout; raises
        ``ValueError`` if another thread closes the ring meanwhile.
        """
        impl = self._impl
        waiter = self._room_waiter(timeout)
        target = impl.producer_pos()
        while 0 < distance(impl.consumer_pos(), target) <= self._size:
            if waiter.wait() is None:
                return False
        return True

    def close(self) -> None:
        """Discard outstanding samples, unmap the ring and close the fd (idempotent).

        Threads blocked in a wait for room (``write``/``reserve``/
        ``write_many``/``write_array`` with a timeout) or in
        :meth:`wait_drained` wake up and raise ``ValueError``."""
        if self._closed:
            return
        self._wake_waiters()
        with self._lock:
            if self._closed:
                return
            for ref in list(self._outstanding.values()):
                s = ref()
                if s is not None and s._hdr >= 0:
                    self._commit(s, True)
            self._release()
