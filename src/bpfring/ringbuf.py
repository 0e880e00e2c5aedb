"""Ring buffers between Python and BPF programs, implemented natively over mmap.

* :class:`RingBuffer` consumes a ``BPF_MAP_TYPE_RINGBUF`` (kernel -> user).
* :class:`UserRingBuffer` produces into a ``BPF_MAP_TYPE_USER_RINGBUF``
  (user -> kernel), drained by ``bpf_user_ringbuf_drain()``.

The protocol itself lives in :mod:`bpfring._ringcore`; this module maps the
ring's pages, loads and stores the shared positions, and waits with epoll.

Memory ordering
---------------
The kernel pairs its position and header accesses with acquire/release
semantics (``smp_load_acquire``/``smp_store_release`` and ``xchg`` in
kernel/bpf/ringbuf.c).  We read and write positions through a ``'Q'`` view and
headers through an ``'I'`` view of the mapping; CPython performs each item
access as one fixed-size ``memcpy`` of an aligned address, which compiles to a
single aligned load or store.  On x86-64 (TSO) every aligned load already has
acquire and every aligned store release semantics, and the interpreter issues
our accesses in program order (each is an opaque C call, so no compiler
reordering across them).  That is exactly the ordering the protocol needs:
payload and header stores become visible before the producer-position store,
and the consumer-position store comes after the payload reads.  Weakly
ordered CPUs (arm64, riscv, ppc) need real barriers, which pure Python cannot
issue.

The C accelerator
-----------------
``bpfring._speedups`` (built from ``_speedups.c`` at install time when a C
compiler is present; optional) runs the per-record paths in C: the callback
loop of :meth:`RingBuffer.consume`/:meth:`~RingBuffer.poll`, the copies of
:meth:`RingBuffer.read` and iteration, and :meth:`UserRingBuffer.write` /
:meth:`~UserRingBuffer.write_many`.  It accesses positions and headers with
real ``__atomic`` acquire loads, release stores and a compare-exchange for
the user-ring header commit, each paired with the kernel's
``smp_load_acquire``/``smp_store_release``/``xchg``.  While it is active the
remaining Python paths (reserve/submit, ``read_array``, ``view_array``,
``write_array``, the position properties) also load and store positions
through it and put an acquire fence between a vectorised header check and
the payload copy, so every shared access of this module is ordered on any
CPU.  Hence:

* with the accelerator active, rings may be opened on any architecture;
* without it (not built, or ``BPFRING_PURE_PYTHON=1`` in the environment,
  which selects the pure-Python reference paths), this module refuses to run
  on anything but x86 with a clear error instead of risking torn or
  reordered records.

:data:`ACCELERATED` tells which paths are active (read it as
``bpfring.ringbuf.ACCELERATED``: :func:`_set_accelerated` switches at run
time, for tests and benchmarks).  Code that touches a ring's memory directly
instead of going through these classes (e.g. the map bridge) has to do its
own ordering.
"""

from __future__ import annotations

import asyncio
import errno as _errno
import importlib
import logging
import mmap
import operator
import os
import platform
import select
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import _sys
from ._ringcore import (
    BUSY_BIT,
    DISCARD_BIT,
    HDR_SIZE,
    LEN_MASK,
    POS_MASK,
    Consumer,
    Producer,
    check_ring_size,
    record_span,
)
from .errors import BPFError, MapTypeError, RecordTooLarge, RingCorrupted, RingFull, SampleError
from .mapref import MapRef

MapSource = int | MapRef | str

__all__ = ["ACCELERATED", "RingBuffer", "Sample", "UserRingBuffer"]

log = logging.getLogger("bpfring")

PAGE_SIZE = mmap.PAGESIZE
_TSO_MACHINES = frozenset({"x86_64", "amd64", "i686", "i386"})
#: The ``API`` number of the _speedups.c this module was written against.
_SPEEDUPS_API = 1

#: True while the C accelerator (``bpfring._speedups``) runs the hot paths;
#: False on the pure-Python reference paths (extension not built, or
#: ``BPFRING_PURE_PYTHON=1``).
ACCELERATED: bool = False
#: The extension module while it is active, else None (read at every call).
_sp: Any = None
# Position accesses outside the C hot paths: ``(view, index)`` and
# ``(view, index, value)`` on a ``'Q'`` view.  Pure Python: plain item access
# (acquire/release only on x86-TSO); accelerated: real acquire/release.
_load_pos: Callable[[memoryview, int], int] = operator.getitem
_store_pos: Callable[[memoryview, int, int], None] = operator.setitem


def _is_tso() -> bool:
    return platform.machine().lower() in _TSO_MACHINES


def _set_accelerated(enabled: bool) -> bool:
    """Switch between the C paths (``True``) and the pure-Python reference
    paths (``False``) for every ring of the process; return the previous state.

    Meant for tests and benchmarks; takes effect at the next call of any ring
    method.  Raises ``ImportError`` when the extension is not built (or was
    built from another version of ``_speedups.c``), and :class:`BPFError`
    when asked for pure Python on a CPU that needs barriers.
    """
    global ACCELERATED, _sp, _load_pos, _store_pos
    prev = ACCELERATED
    if enabled:
        sp = importlib.import_module(f"{__package__}._speedups")
        if getattr(sp, "API", None) != _SPEEDUPS_API:
            raise ImportError(f"{sp.__file__} was built from another version of "
                              "_speedups.c; rebuild it (pip install -e .)")
        _sp, _load_pos, _store_pos = sp, sp.load_acquire_u64, sp.store_release_u64
    else:
        if not _is_tso():
            raise BPFError(f"the pure-Python ring paths cannot run on {platform.machine()}",
                           hint="keep the C accelerator enabled")
        _sp, _load_pos, _store_pos = None, operator.getitem, operator.setitem
    ACCELERATED = enabled
    return prev


if os.environ.get("BPFRING_PURE_PYTHON", "") != "1":
    try:
        _set_accelerated(True)
    except ModuleNotFoundError as e:  # not built (no compiler at install time): pure Python
        if e.name != f"{__package__}._speedups":
            raise
    except ImportError as e:  # built but unusable (stale build, failed to load)
        log.warning("bpfring's C accelerator is not used: %s", e)


def accelerator_status() -> str:
    """One line for ``bpfring --version``: is the C accelerator running the
    hot paths, and if not, why."""
    if ACCELERATED:
        return "C accelerator: active"
    if os.environ.get("BPFRING_PURE_PYTHON", "") == "1":
        return "C accelerator: off (BPFRING_PURE_PYTHON=1), pure-Python ring paths"
    try:
        importlib.import_module(f"{__package__}._speedups")
    except ImportError as e:
        return f"C accelerator: not available ({e}), pure-Python ring paths"
    return "C accelerator: built but unused, pure-Python ring paths"


def _check_arch() -> None:
    if _sp is not None or _is_tso():
        return
    machine = platform.machine()
    if os.environ.get("BPFRING_PURE_PYTHON", "") == "1":
        hint = "unset BPFRING_PURE_PYTHON: the C accelerator provides the barriers"
    else:
        hint = ("install bpfring with a C compiler and the Python headers present, so that "
                "its C accelerator (bpfring._speedups) is built, or use an x86-64 host")
    raise BPFError(
        f"ring buffer access needs acquire/release barriers on {machine}, which only "
        "bpfring's C accelerator provides, and it is not available",
        hint=hint,
    )


def _dup(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("timeout must be >= 0 or None")
    return time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (None: forever), never negative."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


class _MappedRing:
    """What both ring kinds share: a private fd, map info, the two mappings and
    an epoll instance watching the map fd."""

    _map_type: int = -1
    _kind: str = ""

    def __init__(self, source: MapSource, *, _owned: bool = False) -> None:
        _check_arch()
        self._closed = True
        if isinstance(source, str):
            source = MapRef.parse(source)
        if isinstance(source, MapRef):
            self._fd = source.open(map_type=self._map_type)
        else:
            self._fd = source if _owned else _dup(source)
        try:
            info = _sys.map_info(self._fd)
            if info.type != self._map_type:
                raise MapTypeError(
                    f"map {info.name or info.id!r} (id {info.id}) is a {info.type_name} map, "
                    f"not a {_sys.MAP_TYPE_NAMES[self._map_type]} map",
                    hint=f"use {'UserRingBuffer' if info.type == 31 else 'RingBuffer'} "
                    "for this map" if info.type in (27, 31) else None,
                )
            self.info = info
            self._size = info.max_entries
            self._map()
        except BaseException:
            os.close(self._fd)
            raise
        self._closed = False

    def _mmap(self, length: int, prot: int, offset: int) -> mmap.mmap:
        try:
            return mmap.mmap(self._fd, length, flags=mmap.MAP_SHARED, prot=prot, offset=offset)
        except OSError as e:
            if e.errno == _errno.EINVAL and prot & mmap.PROT_WRITE == 0 and offset == 0:
                hint = "open the map read-write: fds opened with BPF_F_RDONLY cannot be mmapped"
            elif e.errno == _errno.EPERM:
                hint = "the map is frozen (BPF_MAP_FREEZE) or the fd lacks write access"
            else:
                hint = "open the map read-write (no BPF_F_RDONLY/BPF_F_WRONLY)"
            raise BPFError(f"cannot mmap {self._kind} ring buffer: {e.strerror}",
                           errno=e.errno, hint=hint) from None

    def _map(self) -> None:
        raise NotImplementedError

    def _map_pages(self, cons_prot: int, data_prot: int) -> None:
        """Map the consumer page (offset 0) and the producer page followed by
        the data area twice over (offset PAGE_SIZE, 2*size bytes of data), and
        set up the views of positions and data."""
        self._cons_mm = self._mmap(PAGE_SIZE, cons_prot, 0)
        try:
            self._data_mm = self._mmap(PAGE_SIZE + 2 * self._size, data_prot, PAGE_SIZE)
        except BaseException:
            self._cons_mm.close()
            raise
        self._cons_view = memoryview(self._cons_mm).cast("Q")
        prod_page = memoryview(self._data_mm)
        self._prod_view = prod_page[:PAGE_SIZE].cast("Q")
        self._data = prod_page[PAGE_SIZE:]

    @property
    def consumer_pos(self) -> int:
        return _load_pos(self._cons_view, 0)

    @property
    def producer_pos(self) -> int:
        return _load_pos(self._prod_view, 0)

    # Context manager and fd plumbing -------------------------------------------------

    def fileno(self) -> int:
        """The map fd (a private duplicate, valid until :meth:`close`)."""
        self._check_open()
        return self._fd

    @property
    def size(self) -> int:
        """Size of the data area in bytes."""
        return self._size

    @property
    def map_id(self) -> int:
        return self.info.id

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{type(self).__name__} is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release(self) -> None:
        """Mark closed, then drop the epoll, the views, the mappings and the fd
        (callers hold the ring's lock)."""
        self._closed = True
        self._epoll.close()
        self.__dict__.pop("_npd", None)
        self._unmap([self._core.words, self._data, self._prod_view, self._cons_view],
                    [self._data_mm, self._cons_mm])
        os.close(self._fd)

    def _unmap(self, views: list[memoryview], maps: list[mmap.mmap]) -> None:
        for v in views:
            v.release()
        for m in maps:
            try:
                m.close()
            except BufferError:
                # A caller still holds a view into the ring; the mapping is
                # released by the garbage collector once that view is gone.
                log.warning("ring buffer mapping still referenced; unmapping deferred")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"<{type(self).__name__} id={self.info.id} name={self.info.name!r} " \
               f"size={self._size} {state}>"

    # Constructors shared by both kinds ---------------------------------------------

    @classmethod
    def create(cls, size: int, *, name: str = ""):
        """Create a new standalone ring map of ``size`` bytes (a power of two
        and a multiple of the page size)."""
        check_ring_size(size, PAGE_SIZE)
        fd = _sys.map_create(cls._map_type, 0, 0, size, name=name)
        return cls(fd, _owned=True)

    @classmethod
    def open(cls, path: str | os.PathLike[str]):
        """Open a ring map pinned on a bpffs at ``path``."""
        fd = _sys.obj_get(os.fspath(path))
        return cls(fd, _owned=True)

    @classmethod
    def from_id(cls, map_id: int):
        """Open a ring map by its kernel map id."""
        fd = _sys.map_get_fd_by_id(map_id)
        return cls(fd, _owned=True)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map on a bpffs at ``path`` so other processes can open it."""
        self._check_open()
        _sys.obj_pin(self._fd, os.fspath(path))


class RingBuffer(_MappedRing):
    """Consumer of a ``BPF_MAP_TYPE_RINGBUF`` (records produced by BPF programs).

    ``RingBuffer(fd)`` duplicates ``fd``; the caller keeps ownership of its own.
    One consumer per ring: a second consumer (in this or another process)
    steals records.  Methods are thread-safe (a lock serialises consumption).

    Delivery is at-least-once for callbacks: a record whose callback raises is
    not consumed and comes again on the next call.  :meth:`read` and iteration
    return copies, and a record counts as consumed once it is copied.
    """

    _map_type = _sys.MAP_TYPE_RINGBUF
    _kind = "kernel"

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
        self._lost_fd = _dup(lost_map) if lost_map is not None else None
        # Records already consumed from the ring by an iterator but not yet
        # handed out: kept here so that stopping an iteration loses nothing.
        self._backlog: deque[bytes] = deque()
        self.record = record
        self._decode: Callable[[Any], Any] = record.decode if record is not None else bytes

    def _map(self) -> None:
        # Consumer page: RW, exactly one page at offset 0 (ringbuf_map_mmap_kern
        # refuses any other writable mapping).  Producer page + doubled data: RO.
        self._map_pages(mmap.PROT_READ | mmap.PROT_WRITE, mmap.PROT_READ)
        self._core = Consumer(self._data, self._size)
        self._epoll = select.epoll()
        self._epoll.register(self._fd, select.EPOLLIN)

    # Positions ---------------------------------------------------------------------

    @property
    def pending_pos(self) -> int:
        """Kernel bookkeeping (6.10+): first record not yet known committed."""
        return _load_pos(self._prod_view, 1)

    @property
    def available(self) -> int:
        """Bytes waiting in the ring (headers, discarded and busy records
        included; records an iterator already took out are not counted)."""
        self._check_open()
        return (_load_pos(self._prod_view, 0) - _load_pos(self._cons_view, 0)) & POS_MASK

    # Consuming ---------------------------------------------------------------------

    def consume(self, callback: Callable[[memoryview], Any], limit: int | None = None) -> int:
        """Deliver waiting records to ``callback`` without waiting; return how many.

        ``callback(view)`` gets a read-only memoryview of the payload that is
        valid only during the call (copy it with ``bytes(view)`` to keep it).
        ``limit`` bounds the records delivered (0 delivers none).
        """
        return self._consume(callback, limit)[0]

    def _consume(self, callback: Callable[[memoryview], Any], limit: int | None
                 ) -> tuple[int, bool]:
        self._check_open()
        with self._lock:
            if self._backlog:
                return self._consume_backlog(callback, limit), False
            sp = _sp
            if sp is not None:
                # The same loop in C (see _speedups.consume), with acquire
                # loads of producer_pos and headers, release stores of
                # consumer_pos.
                n, _, busy, _ = sp.consume(
                    self._data, self._cons_view, self._prod_view, self._size, callback,
                    None if limit is None else max(limit, 0), not self.batch_publish, True)
                return n, busy
            # Load-acquire consumer_pos once (only we write it), then
            # producer_pos: pairs with the kernel's store-release of producer_pos
            # after writing the BUSY header.
            cons = self._cons_view[0]
            total = 0
            busy = False
            publish = None if self.batch_publish else self._cons_view
            while True:
                prod = self._prod_view[0]
                if cons == prod:
                    break
                left = None if limit is None else limit - total
                res = self._core.consume(cons, prod, callback, left, publish)
                total += res.delivered
                if self.batch_publish and res.cons != cons:
                    self._cons_view[0] = res.cons
                cons = res.cons
                busy = res.busy
                if busy or (limit is not None and total >= limit) or res.cons != prod:
                    break
            return total, busy

    def _consume_backlog(self, callback: Callable[[memoryview], Any], limit: int | None) -> int:
        n = 0
        backlog = self._backlog
        while backlog and (limit is None or n < limit):
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
        return self._polled(lambda: self._consume(callback, limit), timeout, limit)

    def _polled(self, attempt: Callable[[], tuple[Any, bool]], timeout: float | None,
                limit: int | None) -> Any:
        """Call ``attempt()`` -> (result, busy) until the result is non-empty
        (a count or a list), waiting in between as :meth:`poll` describes."""
        deadline = _deadline(timeout)
        backoff = 20e-6
        while True:
            got, busy = attempt()
            if got or (limit is not None and limit <= 0):
                return got
            left = _remaining(deadline)
            if left == 0.0:
                return got
            if busy:
                # A BPF program on another CPU holds a reservation open.  The fd
                # stays readable (prod != cons), so epoll would spin: back off.
                time.sleep(backoff if left is None else min(backoff, left))
                backoff = min(backoff * 2, 1e-3)
                continue
            backoff = 20e-6
            self._epoll.poll(-1 if left is None else left)

    def read(self, limit: int | None = None, timeout: float | None = 0) -> list[Any]:
        """Return copies of waiting records (at most ``limit``), waiting up to
        ``timeout`` seconds for the first one (default: do not wait).

        Records are ``bytes``, or decoded records when the ring has a ``record`` type.
        """
        sp = _sp
        if sp is not None:
            recs = self._polled(lambda: self._take(sp, limit), timeout, limit)
            return recs if self._decode is bytes else self._decode_all(recs)
        out: list[Any] = []
        decode = self._decode
        self.poll(lambda v: out.append(decode(v)), timeout, limit)
        return out

    def _take(self, sp: Any, limit: int | None) -> tuple[list[bytes], bool]:
        """C path of :meth:`read`: copies of up to ``limit`` waiting records
        (the iterator's backlog first, like :meth:`consume`) and whether a
        BUSY record stopped the walk; does not wait.  The C side stores
        consumer_pos once, when the copies are made."""
        self._check_open()
        with self._lock:
            backlog = self._backlog
            if backlog:
                k = len(backlog) if limit is None else max(0, min(limit, len(backlog)))
                return [backlog.popleft() for _ in range(k)], False
            return sp.read(self._data, self._cons_view, self._prod_view, self._size,
                           None if limit is None else max(limit, 0))

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

    def _np_data(self):
        arr = self.__dict__.get("_npd")
        if arr is None:
            import numpy as np

            arr = np.frombuffer(self._data, dtype=np.uint8)
            self.__dict__["_npd"] = arr
        return arr

    def _regular_run(self, cons: int, prod: int, itemsize: int, limit: int | None
                     ) -> tuple[int, int, int]:
        """Find the longest run of committed records of exactly ``itemsize``
        bytes starting at ``cons``, skipping leading discarded records.

        Returns (position of the run, records in it, stop reason) where the
        stop reason is 0: end of data or limit, 1: BUSY record, 2: a record of
        another size.  All headers of a run are checked in one vectorised
        pass; irregular records are walked one by one like the scalar path.
        """
        import numpy as np

        data = self._np_data()
        mask = self._size - 1
        span = (itemsize + 15) & ~7
        words = self._core.words
        if (prod - cons) & POS_MASK > self._size:
            raise RingCorrupted(f"positions cons={cons} prod={prod} are more than a ring apart")
        while True:
            if cons == prod:
                return cons, 0, 0
            word = words[(cons & mask) >> 2]
            if word & DISCARD_BIT and not word & BUSY_BIT:
                skip = ((word & LEN_MASK) + 15) & ~7
                if skip > (prod - cons) & POS_MASK:
                    raise RingCorrupted(f"discarded record at position {cons} claims "
                                        f"{word & LEN_MASK} bytes, past producer position {prod}")
                cons = (cons + skip) & POS_MASK
                continue  # leading discarded record: skip like the scalar path
            break
        n = ((prod - cons) & POS_MASK) // span
        if limit is not None:
            n = min(n, limit)
        if n == 0:
            word = words[(cons & mask) >> 2]
            return cons, 0, 1 if word & BUSY_BIT else 2
        off = cons & mask
        # The data pages are mapped twice in a row, so the run is contiguous
        # in our 2*size view even when it wraps.
        # One snapshot of the headers: the run and the reason it ends must be
        # judged on the same values (a BUSY header read twice may have been
        # committed in between, and would then look like a record of the
        # right size that was rejected).
        hdrs = np.ndarray((n,), dtype=np.uint32, buffer=data, offset=off,
                          strides=(span,)).copy()
        bad = np.flatnonzero(hdrs != itemsize)
        if len(bad):
            k = int(bad[0])
            word = int(hdrs[k])
            return cons, k, 1 if word & BUSY_BIT else (0 if word & DISCARD_BIT else 2)
        return cons, n, 0

    @staticmethod
    def _as_dtype(dtype):
        import numpy as np

        dt = getattr(dtype, "dtype", dtype)
        dt = np.dtype(dt)
        if dt.itemsize == 0:
            raise ValueError("dtype has no size")
        return dt

    def read_array(self, dtype, limit: int | None = None, timeout: float | None = 0):
        """Consume fixed-size records into a new structured numpy array.

        ``dtype`` is a numpy dtype (or a record type with ``.dtype``) whose
        itemsize equals the records' payload size.  Headers of a whole run are
        checked at once and payloads copied with one strided copy; discarded
        records are skipped and the batch stops at a BUSY record, exactly as
        record-by-record consumption would.  A record of another size ends the
        batch and stays in the ring (read it with :meth:`read`); if it is the
        very first record, ``ValueError`` says so.  Waits up to ``timeout``
        seconds for the first record like :meth:`poll`.
        """
        import numpy as np

        dt = self._as_dtype(dtype)
        deadline = _deadline(timeout)
        chunks: list[np.ndarray] = []
        got = 0
        while True:
            self._check_open()
            with self._lock:
                if self._backlog:
                    raise ValueError("records taken out by an iterator are pending; "
                                     "finish them with read() first")
                cons = _load_pos(self._cons_view, 0)
                while limit is None or got < limit:
                    prod = _load_pos(self._prod_view, 0)
                    start, n, why = self._regular_run(
                        cons, prod, dt.itemsize, None if limit is None else limit - got)
                    if n:
                        if _sp is not None:
                            # The headers were checked in one vectorised pass:
                            # order those loads before the payload copy.
                            _sp.acquire_fence()
                        span = (dt.itemsize + 15) & ~7
                        # Copy as an (n, itemsize) byte matrix: numpy's strided
                        # byte copy is about twice as fast as a structured one.
                        src = np.ndarray((n, dt.itemsize), dtype=np.uint8,
                                         buffer=self._np_data(),
                                         offset=(start & (self._size - 1)) + HDR_SIZE,
                                         strides=(span, 1))
                        chunks.append(src.copy().view(dt).reshape(n))
                        got += n
                        cons = (start + n * span) & POS_MASK
                    elif start != cons:
                        cons = start
                    _store_pos(self._cons_view, 0, cons)
                    if why == 2 and not got:
                        word = self._core.words[(cons & (self._size - 1)) >> 2]
                        raise ValueError(
                            f"next record has {word & LEN_MASK} bytes, not the "
                            f"{dt.itemsize} of the dtype; consume it with read()")
                    if n == 0 or why:
                        busy = why == 1
                        break
            if got or (limit is not None and limit <= 0):
                break
            left = _remaining(deadline)
            if left == 0.0:
                break
            if busy:
                time.sleep(min(50e-6, left) if left is not None else 50e-6)
            else:
                self._epoll.poll(-1 if left is None else left)
        if not chunks:
            return np.empty(0, dtype=dt)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    @contextmanager
    def view_array(self, dtype, limit: int | None = None):
        """Zero-copy: ``with rb.view_array(dtype) as arr:`` gives a read-only
        strided view straight into the ring over the waiting run of records.

        The records are consumed when the block exits normally (the consumer
        position moves past them; on an exception they stay).  The view must
        not be used after the block: the kernel reuses that memory.  Does not
        wait; ``arr`` may be empty.  Consumption is locked meanwhile.
        """
        import numpy as np

        dt = self._as_dtype(dtype)
        self._check_open()
        with self._lock:
            cons = _load_pos(self._cons_view, 0)
            start, n, _ = self._regular_run(cons, _load_pos(self._prod_view, 0), dt.itemsize,
                                            limit)
            if start != cons:
                _store_pos(self._cons_view, 0, start)  # leading discarded records
            if n and _sp is not None:
                _sp.acquire_fence()  # header checks before the caller reads payloads
            span = (dt.itemsize + 15) & ~7
            arr = np.ndarray((n,), dtype=dt, buffer=self._np_data(),
                             offset=(start & (self._size - 1)) + HDR_SIZE, strides=(span,))
            yield arr
            _store_pos(self._cons_view, 0, (start + n * span) & POS_MASK)

    _ITER_BATCH = 256

    def __iter__(self) -> Iterator[bytes]:
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
        sp = _sp
        if sp is not None:
            backlog.extend(self._polled(lambda: self._take(sp, self._ITER_BATCH), timeout,
                                        self._ITER_BATCH))
            return
        self.poll(lambda v: backlog.append(bytes(v)), timeout, self._ITER_BATCH)

    # asyncio -------------------------------------------------------------------------

    async def _wait_readable(self) -> None:
        """Wait on the running loop until the map fd reports data (or a BUSY
        record makes us back off); no thread, nothing consumed, so a
        cancellation at this await loses nothing."""
        if self.pending()[2]:
            await asyncio.sleep(50e-6)
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(self._fd, ready)
        try:
            await fut
        finally:
            loop.remove_reader(self._fd)

    async def read_async(self, limit: int | None = None) -> list[Any]:
        """Wait (in the running event loop) until records arrive; return copies
        of up to ``limit`` of them."""
        while True:
            out = self.read(limit, 0)
            if out or (limit is not None and limit <= 0):
                return out
            await self._wait_readable()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """``async for rec in rb``: like iteration, on the event loop."""
        backlog = self._backlog
        decode = self._decode
        while True:
            if not backlog:
                sp = _sp
                if sp is not None:
                    backlog.extend(self._take(sp, self._ITER_BATCH)[0])
                else:
                    self.consume(lambda v: backlog.append(bytes(v)), self._ITER_BATCH)
                if not backlog:
                    await self._wait_readable()
                continue
            rec = backlog.popleft()
            yield rec if decode is bytes else decode(rec)

    @property
    def lost(self) -> int | None:
        """Records BPF programs failed to reserve (ring full), summed over CPUs.

        Counted by the ``bpfring_reserve``/``bpfring_output`` wrappers of
        ``<bpfring/ring.bpf.h>``; ``None`` when the ring has no such counter.
        """
        if self._lost_fd is None:
            return None
        self._check_open()
        return _sys.percpu_sum(self._lost_fd)

    def pending(self) -> tuple[int, int, int]:
        """(committed, discarded, busy) records waiting, without consuming them."""
        self._check_open()
        return self._core.pending_records(_load_pos(self._cons_view, 0),
                                          _load_pos(self._prod_view, 0))

    def close(self) -> None:
        """Unmap the ring and close the private fd (idempotent)."""
        if self._closed:
            return
        with self._lock:
            self._release()
            if self._lost_fd is not None:
                os.close(self._lost_fd)


class Sample:
    """A reserved, writable sample of a :class:`UserRingBuffer`.

    Write the payload through :attr:`data` (a writable memoryview straight into
    the ring), ``sample[a:b] = ...`` or :meth:`write`, then :meth:`submit` or
    :meth:`discard` exactly once.  Used as a context manager it submits on
    normal exit and discards when the block raises.  After submit or discard
    the view is released: later writes raise instead of corrupting the ring.
    """

    __slots__ = ("_hdr", "_ring", "data")

    def __init__(self, ring: UserRingBuffer, hdr: int, data: memoryview) -> None:
        self._ring = ring
        self._hdr = hdr
        self.data = data

    def __len__(self) -> int:
        return self.data.nbytes

    def __setitem__(self, key, value) -> None:
        self.data[key] = value

    def __getitem__(self, key):
        return self.data[key]

    def write(self, payload, offset: int = 0) -> None:
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

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._hdr < 0:
            return
        self._ring._commit(self, exc_type is not None)

    def __repr__(self) -> str:
        state = "done" if self._hdr < 0 else "reserved"
        return f"<Sample {state} size={len(self) if self._hdr >= 0 else '?'}>"


class UserRingBuffer(_MappedRing):
    """Producer into a ``BPF_MAP_TYPE_USER_RINGBUF`` drained by a BPF program.

    Thread-safe: reservations are serialised by a lock; submits need none.
    Several *processes* writing one ring must coordinate among themselves (the
    kernel offers no lock); the drain itself may run concurrently with writes.
    Samples reach the kernel in reservation order, and an unsubmitted sample
    holds back the ones reserved after it.
    """

    _map_type = _sys.MAP_TYPE_USER_RINGBUF
    _kind = "user"

    def __init__(self, source: MapSource, *, record: Any = None, _owned: bool = False) -> None:
        """Produce into a user ring map given as an fd (duplicated), a
        :class:`MapRef` or its string form.  With a ``record`` type (see
        :mod:`bpfring.btf`), :meth:`write` also takes a record, a dict or
        keyword fields: ``urb.write(i=1, comm="hi")``."""
        self.record = record
        super().__init__(source, _owned=_owned)
        self._lock = threading.Lock()
        self._outstanding: dict[int, Sample] = {}

    def _map(self) -> None:
        size = self._size
        # ringbuf_map_mmap_user: consumer page read-only, producer page + data RW.
        self._map_pages(mmap.PROT_READ, mmap.PROT_READ | mmap.PROT_WRITE)
        self._core = Producer(self._data, size)
        self._words = self._core.words
        self._mask = size - 1
        self._max_payload = self._core.max_payload()
        # Edge-triggered EPOLLOUT: the kernel reports EPOLLOUT whenever the ring
        # is not 100% full, so a level-triggered wait for room for N bytes would
        # spin (libbpf's reserve_blocking does).  With EPOLLET, each wait blocks
        # until the next drain wakeup (ringbuf_map_poll_user + irq_work).
        self._epoll = select.epoll()
        self._epoll.register(self._fd, select.EPOLLOUT | select.EPOLLET)

    @property
    def free(self) -> int:
        """Bytes free for new samples (each sample also needs an 8-byte header)."""
        self._check_open()
        return self._core.free(_load_pos(self._cons_view, 0), _load_pos(self._prod_view, 0))

    @property
    def max_sample_size(self) -> int:
        """Largest payload one sample can have in this ring."""
        return self._core.max_payload()

    def _wait_room(self, length: int, deadline: float | None, first: RingFull) -> None:
        """Block until a sample of ``length`` may fit, or raise ``first`` at the deadline."""
        while True:
            left = _remaining(deadline)
            if left == 0.0:
                raise first
            self._epoll.poll(-1 if left is None else left)
            if self._core.free(_load_pos(self._cons_view, 0),
                               _load_pos(self._prod_view, 0)) >= record_span(length):
                return

    def _attempt(self, length: int, timeout: float | None, attempt: Callable[[], Any]) -> Any:
        """Run ``attempt()`` under the producer lock; while it raises
        :class:`RingFull`, wait for drains (up to ``timeout``; 0: never wait,
        None: forever) and try again."""
        self._check_open()
        deadline: float | None = None
        waited = False
        while True:
            with self._lock:
                try:
                    return attempt()
                except RingFull as e:
                    if timeout == 0:
                        raise
                    full = e
            if not waited:
                deadline, waited = _deadline(timeout), True
            self._wait_room(length, deadline, full)

    def reserve(self, size: int, timeout: float | None = 0) -> Sample:
        """Reserve a sample of ``size`` payload bytes.

        ``timeout`` 0 raises :class:`RingFull` at once when there is no room; a
        positive value (seconds) or ``None`` (forever) waits for the kernel to
        drain without spinning.  :class:`RecordTooLarge` means it can never fit.
        """
        hdr, off = self._attempt(size, timeout, lambda: self._reserve_locked(size))
        s = Sample(self, hdr, self._data[off:off + size])
        self._outstanding[hdr] = s
        return s

    def _reserve_locked(self, size: int) -> tuple[int, int]:
        # Load-acquire consumer_pos: pairs with the drain's store-release after
        # it read the space we are about to reuse.
        hdr, new_prod = self._core.plan(size, _load_pos(self._cons_view, 0),
                                        self._prod_view[0])
        off = self._core.begin(hdr, size)
        # Store-release of producer_pos after the BUSY header: the drain may
        # now see the sample, but skips it while BUSY.
        _store_pos(self._prod_view, 0, new_prod)
        return hdr, off

    def _commit(self, sample: Sample, discard: bool) -> None:
        hdr = sample._hdr
        if hdr < 0:
            raise SampleError("sample was already submitted or discarded")
        sample._hdr = -1
        self._outstanding.pop(hdr, None)
        sample.data.release()
        sp = _sp
        if sp is None:
            self._core.commit(hdr, discard)
            return
        # Atomic compare-exchange (acq_rel) clearing BUSY: the payload written
        # through sample.data is visible before the drain's load-acquire of
        # the header sees it committed.
        if not sp.commit_header(self._data, hdr, discard) & BUSY_BIT:
            raise SampleError("sample was already submitted or discarded")

    def write(self, data: Any = None, timeout: float | None = 0, **fields: Any) -> None:
        """Reserve, copy ``data`` and submit in one step.

        ``data`` is any bytes-like object; on a ring with a ``record`` type it
        may also be a record or a dict, or be omitted in favour of keyword
        fields (unset fields are zero).
        """
        if self.record is not None and (fields or data is None or
                                        not isinstance(data, bytes | bytearray | memoryview)):
            data = self.record.encode(data, **fields)
        sp = _sp
        if sp is not None:
            if self._closed:
                self._check_open()
            # Fast path in C (_speedups.write): acquire consumer_pos, copy,
            # header, store-release producer_pos.  False: no room now, too
            # large, misaligned positions or not a contiguous buffer: the
            # checked path below says which (or waits).
            with self._lock:
                if sp.write(self._data, self._cons_view, self._prod_view, self._size, data):
                    return
            payload = data if type(data) is bytes else memoryview(data).cast("B")
            self._attempt(len(payload), timeout, lambda: self._write_locked(memoryview(payload)))
            return
        payload = data if type(data) is bytes else memoryview(data).cast("B")
        n = len(payload)
        if self._closed:
            self._check_open()
        # Fast path, inlined (this is the per-message cost): room is checked
        # against a fresh consumer_pos, everything is written, then one store
        # of producer_pos publishes the sample.  Anything unusual (full ring,
        # oversize sample) goes through the fully checked path below.
        with self._lock:
            prod = self._prod_view[0]
            span = (n + 15) & ~7
            if n <= self._max_payload and not prod & 7 and \
                    span <= self._size - ((prod - self._cons_view[0]) & POS_MASK):
                hdr = prod & self._mask
                self._data[hdr + HDR_SIZE:hdr + HDR_SIZE + n] = payload
                self._words[(hdr >> 2) + 1] = 0
                self._words[hdr >> 2] = n
                self._prod_view[0] = (prod + span) & POS_MASK
                return
        self._attempt(n, timeout, lambda: self._write_locked(memoryview(payload)))

    def _write_locked(self, payload: memoryview) -> None:
        n = payload.nbytes
        hdr, new_prod = self._core.plan(n, _load_pos(self._cons_view, 0), self._prod_view[0])
        # The payload and a final (non-BUSY) header are written before
        # producer_pos moves, so the drain never sees a partial sample.  A
        # header in the last 8 bytes of the area puts the payload at offset 0,
        # which is where the second mapping of the same pages continues.
        start = hdr + HDR_SIZE
        self._data[start:start + n] = payload
        words = self._core.words
        words[(hdr >> 2) + 1] = 0
        words[hdr >> 2] = n
        _store_pos(self._prod_view, 0, new_prod)

    def _fill(self, length: int, timeout: float | None, step: Callable[[], bool]) -> None:
        """Call ``step()`` under the lock until it reports everything written
        (True); between calls wait for drains, up to ``timeout`` (0: once)."""
        self._check_open()
        deadline: float | None = None
        waited = False
        while True:
            with self._lock:
                if step() or timeout == 0:
                    return
            if not waited:
                deadline, waited = _deadline(timeout), True
            try:
                self._wait_room(length, deadline, RingFull())
            except RingFull:
                return

    def write_many(self, buffers, timeout: float | None = 0) -> int:
        """Write several samples of any sizes and publish them with a single
        producer-position store; return how many were written.

        Stops at the first sample that does not fit (after waiting up to
        ``timeout`` for room); samples are never split.
        """
        it = iter(buffers)
        state: dict[str, Any] = {"written": 0, "next": None}
        sp = _sp
        if sp is not None:

            def step_c() -> bool:
                while True:
                    k, pending = sp.write_many(self._data, self._cons_view, self._prod_view,
                                               self._size, it, state["next"])
                    state["written"] += k
                    state["next"] = pending
                    if pending is None:
                        return True
                    # The C loop stopped at ``pending``: let the checked path
                    # write it (room may have appeared since) or say why not:
                    # RecordTooLarge, RingCorrupted, TypeError, or RingFull:
                    # wait for a drain.
                    try:
                        self._write_locked(memoryview(pending).cast("B"))
                    except RingFull:
                        return False
                    state["written"] += 1
                    state["next"] = None

            self._fill(0, timeout, step_c)
            return state["written"]

        def step() -> bool:
            cons = self._cons_view[0]
            prod = start = self._prod_view[0]
            data, words, plan = self._data, self._core.words, self._core.plan
            done = False
            while True:
                pending = state["next"]
                if pending is None:
                    pending = next(it, None)
                    if pending is None:
                        done = True
                        break
                    pending = state["next"] = memoryview(pending).cast("B")
                n = pending.nbytes
                try:
                    hdr, new_prod = plan(n, cons, prod)
                except RingFull:
                    break
                data[hdr + HDR_SIZE:hdr + HDR_SIZE + n] = pending
                words[(hdr >> 2) + 1] = 0
                words[hdr >> 2] = n
                prod = new_prod
                state["written"] += 1
                state["next"] = None
            if prod != start:
                self._prod_view[0] = prod  # one store-release publishes the batch
            return done

        self._fill(0, timeout, step)
        return state["written"]

    def write_array(self, arr, timeout: float | None = 0) -> int:
        """Write the rows of a 1-D numpy array as fixed-size samples in one
        vectorised pass (headers, then one strided payload copy) and publish
        them with a single producer-position store.

        Returns how many rows were written: as many as fit (never a partial
        sample); with a ``timeout`` it keeps waiting for drains until all are
        written or the time is up.
        """
        import numpy as np

        arr = np.asarray(arr)
        if arr.ndim != 1:
            raise ValueError("write_array takes a 1-D array (one sample per row)")
        itemsize = arr.dtype.itemsize
        span = (itemsize + 15) & ~7
        if span > self._size or itemsize > self._core.max_payload():
            raise RecordTooLarge(f"samples of {itemsize} bytes can never fit in a "
                                 f"{self._size}-byte ring")
        self._check_open()
        npd = self.__dict__.get("_npd")
        if npd is None:
            npd = self.__dict__["_npd"] = np.frombuffer(self._data, dtype=np.uint8)
        total = len(arr)
        raw = np.ascontiguousarray(arr).view(np.uint8).reshape(total, itemsize)
        done = 0

        def step() -> bool:
            nonlocal done
            prod = self._prod_view[0]
            if prod & 7:
                raise RingCorrupted(f"producer position {prod} is not 8-byte aligned")
            n = min(total - done, self._core.free(_load_pos(self._cons_view, 0), prod) // span)
            if n:
                off = prod & (self._size - 1)
                # Contiguous thanks to the double mapping, even across the wrap.
                hdrs = np.ndarray((n,), dtype=np.uint64, buffer=npd, offset=off,
                                  strides=(span,))
                hdrs[:] = itemsize  # len word = size (not BUSY), pg_off = 0
                body = np.ndarray((n, itemsize), dtype=np.uint8, buffer=npd,
                                  offset=off + HDR_SIZE, strides=(span, 1))
                body[:] = raw[done:done + n]  # byte copy: ~3x faster than structured
                # Everything is written before producer_pos moves: one
                # store-release publishes the whole batch to the drain.
                _store_pos(self._prod_view, 0, (prod + n * span) & POS_MASK)
                done += n
            return done == total

        self._fill(itemsize, timeout, step)
        return done

    async def _wait_drain_async(self) -> None:
        # Our private epoll holds the map fd with EPOLLOUT|EPOLLET, so its own
        # fd turns readable exactly when a drain wakeup arrives.  The event
        # loop watches that fd: no thread and no spinning while partly full.
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        efd = self._epoll.fileno()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(efd, ready)
        try:
            await fut
        finally:
            loop.remove_reader(efd)
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

    async def write_async(self, data) -> None:
        """Write one sample, awaiting kernel drains while the ring is full."""
        while True:
            try:
                return self.write(data, 0)
            except RingFull:
                pass
            await self._wait_drain_async()

    def pending_bytes(self) -> int:
        """Bytes written but not yet drained by the kernel."""
        self._check_open()
        return (_load_pos(self._prod_view, 0) - _load_pos(self._cons_view, 0)) & POS_MASK

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until the kernel has drained everything written so far.

        Relies on drain wakeups (a drain with ``BPF_RB_NO_WAKEUP`` is noticed
        only at the next wakeup or by polling every 10 ms).  Returns False on timeout.
        """
        deadline = _deadline(timeout)
        target = _load_pos(self._prod_view, 0)
        while ((target - _load_pos(self._cons_view, 0)) & POS_MASK) and \
                ((target - _load_pos(self._cons_view, 0)) & POS_MASK) <= self._size:
            left = _remaining(deadline)
            if left == 0.0:
                return False
            self._epoll.poll(0.01 if left is None else min(left, 0.01))
        return True

    def close(self) -> None:
        """Discard outstanding samples, unmap the ring and close the fd (idempotent)."""
        if self._closed:
            return
        with self._lock:
            for s in list(self._outstanding.values()):
                self._commit(s, True)
            self._release()

