"""Perf event buffers: the consumer of a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY``,
which a third of real BPF tools (those that call ``bpf_perf_event_output``)
emit through.

:class:`PerfBuffer` opens one ``PERF_COUNT_SW_BPF_OUTPUT`` event per online
CPU, maps its ring, stores the event fds in the map (key: CPU index) and
watches them all with one epoll set.  Records are parsed by the sans-IO core
:mod:`bpfring._perfcore`; this module does the syscalls, the mappings, the
position loads and stores, and the waits.  The API has the shape of
:class:`bpfring.RingBuffer`: ``poll``, ``consume``, ``read``, iteration,
``async for``, ``read_array``, typed records with ``record=``.

Differences from a BPF ring buffer that users see:

* records are ordered per CPU, not globally;
* payloads carry the kernel's padding (up to 7 bytes, so that the raw size
  plus its 4-byte length is a multiple of 8), exactly as libbpf and BCC hand
  them over;
* lost records are counted by the kernel itself (``PERF_RECORD_LOST``), per
  CPU and exactly: :attr:`lost` and :attr:`lost_per_cpu`;
* during a callback, :attr:`cpu` is the CPU the record came from.
"""

from __future__ import annotations

import contextlib
import mmap
import select
import struct
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np

from . import _perf, _perfcore, _ringbackend, _sys
from ._fd import OwnedFD
from ._wait import Gate, Waiter, readable
from .errors import BPFError, MapTypeError
from .mapref import MapRef
from .ringbuf._debug import debug_callback, debug_default
from .ringbuf._mapped import map_info_of

__all__ = ["PerfBuffer"]

PAGE_SIZE = mmap.PAGESIZE
MAP_TYPE_PERF_EVENT_ARRAY = 4
_HEAD = _perfcore.DATA_HEAD // 8
_TAIL = _perfcore.DATA_TAIL // 8
_KEY = struct.Struct("<I")

MapSource = int | str | MapRef


class _CpuRing:
    """One CPU's event fd and mapping."""

    __slots__ = ("cpu", "data", "fd", "lost", "meta", "mm", "size")

    def __init__(self, cpu: int, fd: OwnedFD, mm: mmap.mmap) -> None:
        self.cpu = cpu
        self.fd = fd
        self.mm = mm
        view = memoryview(mm)
        self.meta = view[:PAGE_SIZE].cast("Q")
        # The kernel publishes where the data area starts and how large it
        # is (4.1+); older kernels leave zeros: one page in, the rest.
        offset = self.meta[_perfcore.DATA_OFFSET // 8] or PAGE_SIZE
        size = self.meta[_perfcore.DATA_SIZE // 8] or len(mm) - PAGE_SIZE
        self.data = view[offset:offset + size]
        self.size = size
        self.lost = 0

    def release(self) -> None:
        self.data.release()
        self.meta.release()
        try:
            self.mm.close()
        except BufferError:  # a caller kept a view of a record: the GC unmaps later
            pass
        self.fd.close()


class PerfBuffer:
    """Consumer of a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` map.

    ``PerfBuffer(source)`` takes the map as an fd (duplicated: the caller
    keeps its own), a :class:`MapRef` or its string (``"id 42"``, ``"pinned
    PATH"``, ``"name events"``).  ``page_count`` data pages per CPU (a power
    of two; default 16, as libbpf-tools use) bound how much can wait before
    the kernel drops samples.  The reader is woken every ``wakeup_events``
    samples per CPU, or, with ``watermark``, once that many bytes wait on a
    CPU.  ``cpus`` restricts the CPUs (default: every online CPU that the
    map has a slot for).  ``record`` (a BTF record type) makes :meth:`read`
    and iteration decode; ``lost_callback(cpu, count)`` is told of every
    loss report.  ``debug`` releases each view when its callback returns, as
    for :class:`~bpfring.RingBuffer` (default: ``BPFRING_DEBUG=1``).

    One consumer per map: opening a second one (here or in another process)
    replaces the first's event fds in the map.  Methods are thread-safe.
    """

    def __init__(self, source: MapSource, *, page_count: int = 16, wakeup_events: int = 1,
                 watermark: int | None = None, cpus: list[int] | None = None,
                 record: Any = None,
                 lost_callback: Callable[[int, int], object] | None = None,
                 debug: bool | None = None) -> None:
        _ringbackend.check_arch()
        # Position loads and stores go through the ring backend chosen now (C:
        # real acquire/release; pure Python: plain accesses, x86-TSO only).
        self._backend = _ringbackend.impl
        # The record walk of the backend (C: _speedups.perf_walk; pure:
        # _perfcore.perf_walk), same arguments and results.
        self._walk: Callable[..., tuple[int, int]] = self._backend.perf_walk
        if page_count < 1 or page_count & (page_count - 1):
            raise ValueError(f"page_count must be a power of two >= 1, not {page_count}")
        if wakeup_events < 1:
            raise ValueError("wakeup_events must be >= 1")
        if watermark is not None and not 0 < watermark <= page_count * PAGE_SIZE:
            raise ValueError(f"watermark must be between 1 and {page_count * PAGE_SIZE} bytes")
        self._closed = True
        self._rings: list[_CpuRing] = []
        if isinstance(source, str):
            source = MapRef.parse(source)
        given: int | None = None  # the caller's fd, named in errors (not our dup)
        if isinstance(source, MapRef):
            self._map_fd = OwnedFD(source.open(map_type=MAP_TYPE_PERF_EVENT_ARRAY),
                                   "perf event array map")
        else:
            given = source
            self._map_fd = OwnedFD.dup(source, "perf event array map")
        try:
            self.info = map_info_of(self._map_fd.fileno(), given)
            if self.info.type != MAP_TYPE_PERF_EVENT_ARRAY:
                raise MapTypeError(
                    f"map {self.info.name or self.info.id!r} (id {self.info.id}) is a "
                    f"{self.info.type_name} map, not a perf_event_array map",
                    hint="use RingBuffer for ringbuf maps" if self.info.type == 27 else None)
            self._epoll = select.epoll()
            # close() fires its eventfd to wake every thread blocked in poll().
            self._gate = Gate(self._epoll)
            self._open_cpus(cpus, page_count, wakeup_events, watermark)
        except BaseException:
            self._release()
            raise
        self.page_count = page_count
        #: Debug mode for callbacks, as for RingBuffer (``BPFRING_DEBUG=1``).
        self.debug = debug_default(debug)
        self.record = record
        self._decode: Callable[[Any], Any] = record.decode if record is not None else bytes
        self._lost_cb = lost_callback
        self._lock = threading.Lock()
        self._owner: int | None = None  # thread running callbacks, under the lock
        self._halt = bytearray(1)  # set by close() from a callback: stop walking
        # Records an iterator took out of the rings but has not handed out yet
        # (so that stopping an iteration loses none), all from CPU
        # _backlog_cpu: decoded records when ``record`` is set, and then
        # _backlog_raw holds the ring bytes they came from (headers included),
        # of which the backlog is always the tail, so consume() and
        # read_array() can still hand them out raw; else bytes.
        self._backlog: deque[Any] = deque()
        self._backlog_raw: bytes | None = None
        self._backlog_cpu = -1
        self._next_ring = 0  # where the next iterator batch starts looking
        self.cpu = -1
        self._closed = False

    def _open_cpus(self, cpus: list[int] | None, page_count: int, wakeup_events: int,
                   watermark: int | None) -> None:
        slots = self.info.max_entries
        online = _perf.online_cpus()
        if cpus is None:
            chosen = [c for c in online if c < slots]
        else:
            bad = [c for c in cpus if c not in online or c >= slots]
            if bad:
                raise ValueError(f"CPUs {bad} are offline or beyond the map's {slots} slots")
            chosen = sorted(set(cpus))
        if not chosen:
            raise BPFError(f"perf event array {self.info.name!r} has {slots} slots and none "
                           f"matches an online CPU ({online})",
                           hint="size the map to the number of possible CPUs "
                                "(max_entries 0 lets libbpf do it)")
        attr = _perf.bpf_output_attr(wakeup_events, watermark)
        length = (1 + page_count) * PAGE_SIZE
        for cpu in chosen:
            fd = OwnedFD(_perf.perf_event_open(attr, -1, cpu), f"perf event (cpu {cpu})")
            try:
                mm = mmap.mmap(fd.fileno(), length, flags=mmap.MAP_SHARED,
                               prot=mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as e:
                fd.close()
                raise BPFError(f"cannot mmap the perf ring of cpu {cpu}: {e.strerror}",
                               errno=e.errno,
                               hint="lower page_count, or raise kernel.perf_event_mlock_kb "
                                    "(or run as root)") from None
            ring = _CpuRing(cpu, fd, mm)
            self._rings.append(ring)
            _perf.enable(fd.fileno())
            _sys.map_update(self._map_fd.fileno(), _KEY.pack(cpu), _KEY.pack(fd.fileno()))
            self._epoll.register(fd.fileno(), select.EPOLLIN)
        self._by_fd = {r.fd.fileno(): r for r in self._rings}

    # Properties ----------------------------------------------------------------------

    @property
    def cpus(self) -> list[int]:
        """The CPUs this buffer has a ring for."""
        return [r.cpu for r in self._rings]

    @property
    def map_id(self) -> int:
        return self.info.id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def lost(self) -> int:
        """Samples the kernel reported lost (ring full), over all CPUs.

        Counted from the kernel's ``PERF_RECORD_LOST`` reports as they are
        consumed.  The kernel writes a report into the ring just before the
        next record it manages to write after the loss, so a loss shows once
        the ring has had room again and the report has been read."""
        return sum(r.lost for r in self._rings)

    @property
    def lost_per_cpu(self) -> dict[int, int]:
        return {r.cpu: r.lost for r in self._rings}

    def fileno(self) -> int:
        """An epoll fd that is readable when any CPU's ring has data (for
        selectors, asyncio and :class:`bpfring.Poller`)."""
        self._check_open()
        return self._epoll.fileno()

    def available(self) -> int:
        """Bytes waiting, over all CPUs (headers and padding included)."""
        self._check_open()
        load = self._backend.load_acquire_u64
        return sum((load(r.meta, _HEAD) - r.meta[_TAIL]) & _perfcore.POS_MASK
                   for r in self._rings)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("PerfBuffer is closed")

    @contextlib.contextmanager
    def _serving(self) -> Iterator[None]:
        """Hold the lock while records are taken out; refuse re-entry from a
        callback (it would deliver the records being delivered again) and
        run a close() that a callback asked for once the walk is over."""
        me = threading.get_ident()
        if self._owner == me:
            raise BPFError("PerfBuffer read from inside one of its own callbacks",
                           hint="return from the callback first (close() from a callback "
                                "is fine: it takes effect when the callback returns)")
        with self._lock:
            self._check_open()
            self._owner = me
            try:
                yield
            finally:
                self._owner = None
                if self._halt[0]:
                    self._release()

    # Consuming -----------------------------------------------------------------------

    def _on_lost(self, ring: _CpuRing) -> Callable[[int], None]:
        user_cb = self._lost_cb
        cpu = ring.cpu

        def on_lost(n: int) -> None:
            # Counted as reports are consumed, even if a later callback raises.
            ring.lost += n
            if user_cb is not None:
                user_cb(cpu, n)

        return on_lost

    def _consume_ring(self, ring: _CpuRing, callback: Callable[[memoryview], Any],
                      limit: int | None) -> int:
        """Deliver one CPU's records; the walk loads data_head (acquire) and
        stores data_tail (release) itself, also when a callback raises."""
        self.cpu = ring.cpu
        delivered, _lost = self._walk(ring.meta, ring.data, callback, limit,
                                      self._on_lost(ring), self._halt)
        return delivered

    def _take_ring(self, ring: _CpuRing, limit: int | None, want_raw: bool = False
                   ) -> tuple[list[Any], bytes | None]:
        """One CPU's records decoded (``bytes``: copies) in a list made by the
        backend's walk in one pass (no Python call per record with the C
        decoder), and with ``want_raw`` the ring bytes they came from;
        positions as in :meth:`_consume_ring`.  A record that fails to decode
        stays in the ring: the ones before it are returned and the error
        comes with the next call (at once if it is the first)."""
        self.cpu = ring.cpu
        recs, _lost, raw = self._backend.perf_take(ring.meta, ring.data, self._decode, limit,
                                                   self._on_lost(ring), self._halt, want_raw)
        return recs, raw

    def _backlog_payloads(self) -> list[memoryview]:
        """The raw bytes of the backlog's records, in its order."""
        raw = self._backlog_raw
        if raw is None:
            return [memoryview(b) for b in self._backlog]
        views = _perfcore.payloads(raw)
        return views[len(views) - len(self._backlog):]

    def _consume_backlog(self, callback: Callable[[memoryview], Any],
                         limit: int | None) -> int:
        backlog = self._backlog
        views = self._backlog_payloads()
        self.cpu = self._backlog_cpu
        n = 0
        while backlog and (limit is None or n < limit) and not self._halt[0]:
            callback(views[n])  # raises: the record stays first in line
            backlog.popleft()
            n += 1
        return n

    def _consume(self, callback: Callable[[memoryview], Any], limit: int | None,
                 rings: list[_CpuRing] | None = None) -> int:
        with self._serving():
            total = self._consume_backlog(callback, limit) if self._backlog else 0
            for ring in self._rings if rings is None else rings:
                if (limit is not None and total >= limit) or self._halt[0]:
                    break
                total += self._consume_ring(ring, callback,
                                            None if limit is None else limit - total)
            return total

    def consume(self, callback: Callable[[memoryview], Any], limit: int | None = None) -> int:
        """Deliver waiting records of every CPU to ``callback(view)`` without
        waiting; return how many.  The view is valid only during the call;
        :attr:`cpu` tells which CPU the record came from.  A record whose
        callback raises is not consumed (it comes again).  ``debug`` mode
        releases the view when the callback returns (see RingBuffer.consume)."""
        return self._consume(self._checked(callback), limit)

    def _checked(self, callback: Callable[[memoryview], Any]) -> Callable[[memoryview], Any]:
        return debug_callback(callback, "PerfBuffer") if self.debug else callback

    def consume_status(self, callback: Callable[[memoryview], Any],
                       limit: int | None = None) -> tuple[int, bool]:
        """:meth:`consume`, as ``(delivered, busy)`` like
        :meth:`RingBuffer.consume_status` (a perf ring has no busy records,
        so ``busy`` is always false); what :class:`~bpfring.Poller` calls."""
        return self._consume(self._checked(callback), limit), False

    def poll(self, callback: Callable[[memoryview], Any], timeout: float | None = None,
             limit: int | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: forever, 0: not at all) for
        records, then deliver them as :meth:`consume` does; return how many."""
        if limit is not None and limit <= 0:
            self._check_open()
            return 0
        waiter = Waiter(self._epoll, timeout, gate=self._gate, what="PerfBuffer")
        callback = self._checked(callback)
        while True:
            n = self._consume(callback, limit)
            if n:
                return n
            # The event fds report readable once per wakeup (perf_poll resets
            # its state), so waiting after an empty pass cannot spin.
            if waiter.wait() is None:
                return 0

    def read(self, limit: int | None = None, timeout: float | None = 0) -> list[Any]:
        """Copies of waiting records (at most ``limit``), waiting up to
        ``timeout`` seconds for the first; decoded when ``record`` is set
        (in the backend's walk, straight from the ring with the C decoder).
        A record that fails to decode is not consumed; the error propagates."""
        if limit is not None and limit <= 0:
            self._check_open()
            return []
        waiter = Waiter(self._epoll, timeout, gate=self._gate, what="PerfBuffer")
        while True:
            out = self._take(limit)
            if out:
                return out
            # As in poll(): the event fds report readable once per wakeup.
            if waiter.wait() is None:
                return out

    def _take(self, limit: int | None) -> list[Any]:
        """Up to ``limit`` records, decoded: the iterators' backlog first,
        then every CPU's ring, as :meth:`consume` walks them.  A record that
        fails to decode stays first in line; the records before it are
        returned and the error comes with the next call."""
        with self._serving():
            out: list[Any] = []
            backlog = self._backlog
            if backlog:
                self.cpu = self._backlog_cpu
                k = len(backlog) if limit is None else min(limit, len(backlog))
                out = [backlog.popleft() for _ in range(k)]
            for ring in self._rings:
                if (limit is not None and len(out) >= limit) or self._halt[0]:
                    break
                try:
                    recs, _ = self._take_ring(ring, None if limit is None else limit - len(out))
                except Exception:
                    if out:  # keep what we have; the error comes again next call
                        break
                    raise
                out += recs
            return out

    def read_with_cpu(self, limit: int | None = None,
                      timeout: float | None = 0) -> list[tuple[int, Any]]:
        """Like :meth:`read`, as ``(cpu, record)`` pairs."""
        out: list[tuple[int, Any]] = []
        decode = self._decode
        self.poll(lambda v: out.append((self.cpu, decode(v))), timeout, limit)
        return out

    def read_array(self, dtype: Any = None, limit: int | None = None,
                   timeout: float | None = 0) -> np.ndarray:
        """Waiting records as a numpy array of ``dtype`` (a BTF record type
        or anything ``numpy.dtype`` takes; default: the ``record`` type):
        each record's first ``dtype.itemsize`` bytes, copied by the backend
        in one pass over each CPU's ring.  A record shorter than that stops
        the copy before it and stays in the ring: the records before it are
        returned, and the call that meets it first raises."""
        if dtype is None:
            if self.record is None:
                raise TypeError("no dtype: pass one, or open the perf buffer with record=")
            dtype = self.record
        dt = np.dtype(getattr(dtype, "dtype", dtype))
        if dt.hasobject or not 1 <= dt.itemsize <= 65535:
            raise TypeError(f"dtype {dt} cannot hold perf records (it holds Python objects "
                            "or is not 1 to 65535 bytes)")
        if limit is not None and limit <= 0:
            self._check_open()
            return np.empty(0, dt)
        waiter = Waiter(self._epoll, timeout, gate=self._gate, what="PerfBuffer")
        while True:
            arr = self._take_array(dt, limit)
            if len(arr):
                return arr
            # As in poll(): the event fds report readable once per wakeup.
            if waiter.wait() is None:
                return arr

    def _short(self, nbytes: int, size: int) -> BPFError:
        return BPFError(f"perf record of {nbytes} bytes is shorter than the {size}-byte dtype",
                        hint="check the record type")

    def _backlog_rows(self, dt: np.dtype[Any], limit: int | None) -> tuple[np.ndarray, int]:
        """The backlog's records (at most ``limit``) as rows of ``dt``, and
        the size of a record too short for it that stopped them (else -1)."""
        size = dt.itemsize
        views = self._backlog_payloads()
        if limit is not None:
            views = views[:limit]
        rows = np.empty(len(views), dt)
        flat = rows.view(np.uint8)
        short = -1
        for i, v in enumerate(views):
            if v.nbytes < size:
                short = v.nbytes
                rows = rows[:i]
                break
            flat[i * size:(i + 1) * size] = np.frombuffer(v, np.uint8, size)
        for _ in range(len(rows)):
            self._backlog.popleft()
        return rows, short

    def _take_array(self, dt: np.dtype[Any], limit: int | None) -> np.ndarray:
        size = dt.itemsize
        # A sample with at least `size` raw bytes takes this many ring bytes.
        span = max(16, (_perfcore.SAMPLE_HEAD_SIZE + size + 7) // 8 * 8)
        load = self._backend.load_acquire_u64
        with self._serving():
            parts: list[np.ndarray] = []
            total = 0
            short = -1
            if self._backlog:
                part, short = self._backlog_rows(dt, limit)
                parts.append(part)
                total = len(part)
            for ring in self._rings:
                if short >= 0 or (limit is not None and total >= limit) or self._halt[0]:
                    break
                avail = (load(ring.meta, _HEAD) - ring.meta[_TAIL]) & _perfcore.POS_MASK
                if not avail:
                    continue
                # At least one: a record too short for the dtype must be met.
                cap = max(1, avail // span)
                if limit is not None:
                    cap = min(cap, limit - total)
                buf = np.empty(cap * size, np.uint8)
                self.cpu = ring.cpu
                try:
                    n, _lost, short = self._backend.perf_read_array(
                        ring.meta, ring.data, buf.data, size, cap, self._on_lost(ring), self._halt)
                except Exception:
                    if total:  # keep what we have; the error comes again next call
                        break
                    raise
                if n:
                    rows = buf[:n * size] if 2 * n >= cap else buf[:n * size].copy()
                    parts.append(rows.view(dt))
                    total += n
            if short >= 0 and not total:
                raise self._short(short, size)
            if len(parts) == 1:
                return parts[0]
            return np.concatenate(parts) if parts else np.empty(0, dt)

    _ITER_BATCH = 256

    def _take_to_backlog(self) -> bool:
        """Move one batch of one CPU's records (decoded in the backend's walk)
        into the backlog under the lock, unless records wait there already;
        the CPUs take turns.  Returns whether records wait now."""
        with self._serving():
            backlog = self._backlog
            if backlog:
                return True
            rings = self._rings
            for k in range(len(rings)):
                i = (self._next_ring + k) % len(rings)
                recs, raw = self._take_ring(rings[i], self._ITER_BATCH,
                                            self._decode is not bytes)
                if recs:
                    backlog.extend(recs)
                    self._backlog_raw = raw
                    self._backlog_cpu = rings[i].cpu
                    self._next_ring = (i + 1) % len(rings)
                    return True
            return False

    def _fill(self) -> None:
        """Fill the empty backlog, waiting as long as it takes (the
        iterator's refill)."""
        waiter = None
        while not self._take_to_backlog():
            if waiter is None:
                waiter = Waiter(self._epoll, None, gate=self._gate, what="PerfBuffer")
            # As in poll(): the event fds report readable once per wakeup.
            waiter.wait()

    def __iter__(self) -> Iterator[Any]:
        """Yield records (copies, decoded with ``record``), blocking.

        Records are taken from the rings in batches, one CPU's at a time
        (:attr:`cpu` names it), decoded in the backend's walk; those not yet
        yielded when the loop stops stay with this object and come first
        from the next read, poll or iteration.  A record that fails to
        decode is not consumed: the error is raised when it is next in line."""
        # The backend's iterator pops the backlog (in C: no generator frame
        # per record) and calls _fill() whenever it is empty.
        it: Iterator[Any] = self._backend.backlog_iter(self._backlog, self._fill)
        return it

    async def __aiter__(self) -> AsyncIterator[Any]:
        """``async for rec in pb``: like iteration, on the running event loop."""
        backlog = self._backlog
        while True:
            try:
                rec = backlog.popleft()  # one atomic pop, as in __iter__
            except IndexError:
                if not self._take_to_backlog():
                    await self._wait_readable()
                continue
            yield rec

    async def read_async(self, limit: int | None = None) -> list[Any]:
        """Wait in the running event loop until records arrive; return copies."""
        while True:
            out = self.read(limit, 0)
            if out or (limit is not None and limit <= 0):
                return out
            await self._wait_readable()

    async def _wait_readable(self) -> None:
        await readable(self._epoll.fileno())

    # Teardown ------------------------------------------------------------------------

    def _release(self) -> None:
        self._closed = True
        map_fd = None if self._map_fd.closed else self._map_fd.fileno()
        for ring in self._rings:
            if not ring.fd.closed:
                try:
                    _perf.enable(ring.fd.fileno(), False)
                except OSError:
                    pass
                if map_fd is not None:
                    # Take our fd out of the map so the program stops writing
                    # to a ring nobody reads (libbpf does the same).
                    try:
                        _sys.map_delete(map_fd, _KEY.pack(ring.cpu))
                    except BPFError:
                        pass
            ring.release()
        self._rings = []
        epoll = getattr(self, "_epoll", None)
        if epoll is not None:
            epoll.close()
        gate = getattr(self, "_gate", None)
        if gate is not None:
            gate.close()
        self._map_fd.close()

    def close(self) -> None:
        """Disable the events, remove them from the map, unmap, close (idempotent).

        Threads blocked in :meth:`poll` wake up and raise ``ValueError``.
        From inside a callback, the buffer closes when the callback returns
        and no further record is delivered."""
        if self._closed:
            return
        if self._owner == threading.get_ident():
            self._halt[0] = 1
            return
        # Wake the waiters and let them leave before their epoll goes: closing
        # the eventfd at once would take it out of the epoll set unseen.
        self._gate.wake_all()
        with self._lock:
            if not self._closed:
                self._release()

    def __enter__(self) -> PerfBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _repr_html_(self) -> str:
        """Jupyter: a table of the map's name, id, CPUs, pages and counts."""
        from .btf._html import properties_html

        props: list[tuple[str, object]] = [("map name", self.info.name or "-"),
                                           ("map id", self.info.id),
                                           ("pages per CPU", self.page_count)]
        if self._closed:
            props.append(("state", "closed"))
        else:
            props += [("cpus", self.cpus), ("bytes waiting", self.available()),
                      ("lost", self.lost)]
        return properties_html("PerfBuffer", props)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"cpus={self.cpus}"
        return (f"<PerfBuffer id={self.info.id} name={self.info.name!r} "
                f"pages={self.page_count} {state}>")

    def read_arrow(self, record: Any = None, limit: int | None = None,
                   timeout: float | None = 0) -> Any:
        """Waiting records (every CPU) as a ``pyarrow.RecordBatch``; see
        :meth:`RingBuffer.read_arrow` and :mod:`bpfring.frames`."""
        from . import frames

        return frames.read(self, "arrow", record, limit, timeout)

    def read_frame(self, record: Any = None, limit: int | None = None,
                   timeout: float | None = 0) -> Any:
        """Waiting records as a ``pandas.DataFrame`` (see :meth:`read_arrow`)."""
        from . import frames

        return frames.read(self, "pandas", record, limit, timeout)

    def read_polars(self, record: Any = None, limit: int | None = None,
                    timeout: float | None = 0) -> Any:
        """Waiting records as a ``polars.DataFrame`` (see :meth:`read_arrow`)."""
        from . import frames

        return frames.read(self, "polars", record, limit, timeout)
