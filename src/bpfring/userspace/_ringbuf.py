"""``BPF_MAP_TYPE_RINGBUF`` in user space, with the kernel's memory layout.

The memfd holds, as the kernel's ring mapping does (kernel/bpf/ringbuf.c):

* offset 0: the consumer page; ``consumer_pos`` (u64) at its start;
* offset PAGE_SIZE: the producer page; ``producer_pos`` (u64) at its start,
  then ``pending_pos`` (u64: the oldest record not yet committed);
* offset 2 * PAGE_SIZE: the data area of ``max_entries`` bytes (a power of
  two, a multiple of the page size).

This process maps the file as the kernel's vmap does: consumer page,
producer page, then the data area *twice* in a row, so a record that wraps
around the end is contiguous and a program's pointer into it needs no
special case.  Records are what bpfring's ring consumer expects: an 8-byte
header (u32 ``len`` with BUSY bit 31 and DISCARD bit 30, u32 ``pg_off``),
the payload, padding to 8 bytes; positions are 64-bit byte counters.

Reserve, commit and query follow ``__bpf_ringbuf_reserve``,
``bpf_ringbuf_commit`` and ``bpf_ringbuf_query`` line by line (including the
``pending_pos`` rule of 6.x kernels: a new record may not start more than a
ring ahead of the oldest busy one).  Positions are plain 8-byte loads and
stores.  A pinned ring (:mod:`._share`) may have producers in several
processes: each reservation (and each user ring write) then holds the
file's exclusive lock, as the kernel holds the ring's spinlock; one
consumer at a time.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

from .._fd import OwnedFD
from .._ringcore import BUSY_BIT, DISCARD_BIT, HDR_SIZE, LEN_MASK
from ..errors import MapTypeError, RecordTooLarge, RingFull
from ..ringbuf._mapped import RingPages
from ._errors import UserLoadError
from ._maps import UserMap

__all__ = ["RingBufMap", "UserRingBufMap"]

RB_NO_WAKEUP, RB_FORCE_WAKEUP = 1, 2
RB_AVAIL_DATA, RB_RING_SIZE, RB_CONS_POS, RB_PROD_POS = 0, 1, 2, 3
RINGBUF_MAX_RECORD_SZ = 0xFFFFFFFF // 4
_DRAIN_CAP = 128 * 1024  # BPF_MAX_USER_RINGBUF_SAMPLES
_DYNPTR_MAX = (1 << 24) - 1  # DYNPTR_MAX_SIZE
#: pg_off of a header counts pages from the kernel's struct bpf_ringbuf, whose
#: data area starts 3 pages in (meta page, consumer page, producer page).
_PG_OFF_BASE = 3

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_SHARED, _MAP_PRIVATE, _MAP_FIXED, _MAP_ANON = 0x01, 0x02, 0x10, 0x20
_MAP_FAILED = ctypes.c_void_p(-1).value
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _mmap(addr: int | None, length: int, prot: int, flags: int, fd: int, off: int) -> int:
    got = _libc.mmap(addr, length, prot, flags, fd, off)
    if got is None or got == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of a ring buffer failed: {os.strerror(err)}")
    return int(got)


class _RingMemory:
    """The memfd and the kernel-like mapping: [cons page][prod page][data][data]."""

    def __init__(self, name: str, size: int) -> None:
        page = mmap.PAGESIZE
        self.page, self.size = page, size
        fd = os.memfd_create(f"bpfring-user:{name}", os.MFD_CLOEXEC)
        self.fd = OwnedFD(fd, f"user-space ring buffer {name}")
        self.length = 2 * page + 2 * size
        self.addr = 0
        try:
            os.ftruncate(fd, 2 * page + size)
            rw = mmap.PROT_READ | mmap.PROT_WRITE
            # Reserve the whole range (PROT_NONE), then map the file over it: pages,
            # data, data again.
            self.addr = _mmap(None, self.length, 0, _MAP_PRIVATE | _MAP_ANON, -1, 0)
            _mmap(self.addr, 2 * page + size, rw, _MAP_SHARED | _MAP_FIXED, fd, 0)
            _mmap(self.addr + 2 * page + size, size, rw, _MAP_SHARED | _MAP_FIXED, fd, 2 * page)
        except BaseException:
            self.close()
            raise
        raw = (ctypes.c_char * self.length).from_address(self.addr)
        self.all = memoryview(raw).cast("B")
        self.cons = self.all[0:8]
        self.prod = self.all[page:page + 16]
        self.data = self.all[2 * page:2 * page + 2 * size]
        self._views: list[memoryview] = [self.all, self.cons, self.prod, self.data]
        #: bpfring RingBuffer/UserRingBuffer objects over these pages (RingPages):
        #: the unmap waits until the last of them is closed.
        self._users = 0
        self._closing = False

    def hold(self) -> None:
        if self._closing or not self.addr:
            raise ValueError("the ring buffer's memory is closed")
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._closing and self._users == 0:
            self._unmap()

    def sub(self, offset: int, size: int) -> memoryview:
        """A view of ``size`` bytes at data offset ``offset`` (may run into the second copy)."""
        v = self.data[offset:offset + size]
        self._views.append(v)
        return v

    def drop(self, view: memoryview) -> None:
        try:
            self._views.remove(view)
        except ValueError:
            pass
        view.release()

    def close(self) -> None:
        # A bpfring ring still reading these pages keeps them mapped until it closes.
        self._closing = True
        if getattr(self, "_users", 0) == 0:
            self._unmap()

    def _unmap(self) -> None:
        # Every view goes before the unmap: nothing can touch the pages afterwards.
        for v in reversed(getattr(self, "_views", [])):
            v.release()
        self._views = []
        if self.addr:
            _libc.munmap(self.addr, self.length)
            self.addr = 0
        self.fd.close()


class RingBufMap(UserMap):
    """A ring buffer a user-space program writes and Python reads."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        size = self.max_entries
        page = mmap.PAGESIZE
        if self.key_size or self.value_size:
            raise UserLoadError(f"ring buffer {self.name!r}: key and value size must be 0")
        if size <= 0 or size & (size - 1) or size % page:
            raise UserLoadError(f"ring buffer {self.name!r}: max_entries {size} is not a "
                                f"power of two multiple of the page size ({page})")
        self.mask = size - 1
        self._ring: _RingMemory | None = _RingMemory(self.name, size)
        #: payload address -> (header offset, region view) of each reserved record
        self._reserved: dict[int, tuple[int, memoryview]] = {}
        self.wakeups = 0
        self._event = OwnedFD(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK),
                              f"ring buffer {self.name} eventfd")

    # positions -------------------------------------------------------------------------

    def _r(self) -> _RingMemory:
        if self._ring is None:
            raise ValueError(f"ring buffer {self.name!r} is closed")
        return self._ring

    @property
    def memfd(self) -> int:
        return self._r().fd.fileno()

    @property
    def eventfd(self) -> int:
        """Readable (an eventfd counter) after each wakeup the kernel would send."""
        return self._event.fileno()

    @property
    def size(self) -> int:
        return self.max_entries

    def pages(self) -> RingPages:
        """The ring's memory for bpfring's own :class:`~bpfring.RingBuffer` /
        :class:`~bpfring.UserRingBuffer` (the same sans-IO core and backend as
        for kernel rings), woken through :attr:`eventfd`."""
        r = self._r()
        return RingPages(r.all, self.max_entries, self.eventfd, r, self.name)

    @property
    def consumer_pos(self) -> int:
        return int(_U64.unpack_from(self._r().cons)[0])

    @consumer_pos.setter
    def consumer_pos(self, pos: int) -> None:
        _U64.pack_into(self._r().cons, 0, pos)

    @property
    def producer_pos(self) -> int:
        return int(_U64.unpack_from(self._r().prod)[0])

    @property
    def pending_pos(self) -> int:
        return int(_U64.unpack_from(self._r().prod, 8)[0])

    @property
    def available(self) -> int:
        """Bytes between the consumer and the producer (as BPF_RB_AVAIL_DATA)."""
        return self.producer_pos - self.consumer_pos

    # program side ----------------------------------------------------------------------

    def reserve(self, size: int) -> int:
        """``__bpf_ringbuf_reserve``: the payload address, or 0 when there is no room."""
        if self._share is not None:
            with self._share.locked():
                return self._reserve(size)
        return self._reserve(size)

    def _reserve(self, size: int) -> int:
        r = self._r()
        if size > RINGBUF_MAX_RECORD_SZ:
            return 0
        length = (size + HDR_SIZE + 7) & ~7
        if length > self.max_entries:
            return 0
        cons = self.consumer_pos
        pend = self.pending_pos
        prod = self.producer_pos
        new_prod = prod + length
        data = r.data
        # Move pending_pos past records committed since (busy ones stop it).
        while pend < prod:
            word = _U32.unpack_from(data, pend & self.mask)[0]
            if word & BUSY_BIT:
                break
            pend += ((word & ~DISCARD_BIT) + HDR_SIZE + 7) & ~7
        _U64.pack_into(r.prod, 8, pend)
        if new_prod - cons > self.mask or new_prod - pend > self.mask:
            return 0
        off = prod & self.mask
        _U32.pack_into(data, off, size | BUSY_BIT)
        _U32.pack_into(data, off + 4, off // mmap.PAGESIZE + _PG_OFF_BASE)
        _U64.pack_into(r.prod, 0, new_prod)  # after the header: the consumer sees BUSY
        view = r.sub(off + HDR_SIZE, size)
        addr = self._mem.add(view, f"{self.name} record@{prod}", kind="ring record")
        self._reserved[addr] = (off, view)
        return addr

    def is_record(self, addr: int) -> bool:
        return addr in self._reserved

    def commit(self, addr: int, flags: int, discard: bool) -> None:
        """``bpf_ringbuf_commit``: clear BUSY (set DISCARD), wake up as the kernel would."""
        off, view = self._reserved.pop(addr)
        self._mem.remove(addr)
        r = self._r()
        r.drop(view)
        word = _U32.unpack_from(r.data, off)[0] ^ BUSY_BIT
        if discard:
            word |= DISCARD_BIT
        _U32.pack_into(r.data, off, word)
        rec_pos = self.consumer_pos & self.mask
        if flags & RB_FORCE_WAKEUP or (not flags & RB_NO_WAKEUP and rec_pos == off):
            self.wakeups += 1
            try:
                os.eventfd_write(self._event.fileno(), 1)
            except BlockingIOError:
                pass

    def output(self, data: bytes, flags: int) -> int:
        """``bpf_ringbuf_output``: 0, -EINVAL for bad flags, -EAGAIN when full."""
        if flags & ~(RB_NO_WAKEUP | RB_FORCE_WAKEUP):
            return -_errno.EINVAL
        addr = self.reserve(len(data))
        if not addr:
            return -_errno.EAGAIN
        self._mem.write(addr, data)
        self.commit(addr, flags, False)
        return 0

    def query(self, flags: int) -> int:
        if flags == RB_AVAIL_DATA:
            return (self.producer_pos - self.consumer_pos) & ((1 << 64) - 1)
        if flags == RB_RING_SIZE:
            return self.max_entries
        if flags == RB_CONS_POS:
            return self.consumer_pos
        if flags == RB_PROD_POS:
            return self.producer_pos
        return 0

    def abandon(self) -> int:
        """Discard every record still reserved (a program that died holding one);
        returns how many there were."""
        n = len(self._reserved)
        for addr in list(self._reserved):
            self.commit(addr, RB_NO_WAKEUP, True)
        return n

    # user side -------------------------------------------------------------------------

    def consume(self, callback: Callable[[bytes], object], limit: int | None = None) -> int:
        """Hand each committed record's payload (bytes) to ``callback``, skipping
        discarded ones; stop at a busy record.  Returns the count delivered."""
        r = self._r()
        cons, prod = self.consumer_pos, self.producer_pos
        n = 0
        while cons < prod and (limit is None or n < limit):
            off = cons & self.mask
            word = _U32.unpack_from(r.data, off)[0]
            if word & BUSY_BIT:
                break
            length = word & LEN_MASK
            span = (length + HDR_SIZE + 7) & ~7
            if not word & DISCARD_BIT:
                callback(bytes(r.data[off + HDR_SIZE:off + HDR_SIZE + length]))
                n += 1
            cons += span
            self.consumer_pos = cons
        return n

    def read(self, limit: int | None = None) -> list[bytes]:
        """The committed records' payloads (consumed)."""
        out: list[bytes] = []
        self.consume(out.append, limit)
        return out

    def __iter__(self) -> Iterator[Any]:
        raise MapTypeError(f"ring buffer {self.name!r} has no keys; use read() or consume()")

    def _get(self, key: bytes) -> bytes | None:
        raise MapTypeError(f"ring buffer {self.name!r} has no element lookup")

    def close(self) -> None:
        if self._closed:
            return
        for addr in list(self._reserved):
            self._mem.remove(addr)
        self._reserved.clear()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        self._event.close()
        super().close()


class UserRingBufMap(RingBufMap):
    """``BPF_MAP_TYPE_USER_RINGBUF``: Python produces (:meth:`write`), programs
    drain with ``bpf_user_ringbuf_drain``.  Same memory layout; the producer
    protocol is libbpf's ``user_ring_buffer__reserve``/``__submit``, the drain
    ``__bpf_user_ringbuf_peek`` and ``bpf_user_ringbuf_drain``."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._draining = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append one sample; :class:`~bpfring.RingFull` when there is no room now,
        :class:`~bpfring.RecordTooLarge` when it can never fit."""
        if self._share is not None:
            with self._share.locked():
                return self._write(data)
        return self._write(data)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        r = self._r()
        size = len(data)
        total = (size + HDR_SIZE + 7) & ~7
        if total > self.max_entries or size > LEN_MASK:
            raise RecordTooLarge(f"a {size}-byte sample cannot fit in the "
                                 f"{self.max_entries}-byte user ring {self.name!r}")
        cons, prod = self.consumer_pos, self.producer_pos
        if self.max_entries - (prod - cons) < total:
            raise RingFull(f"user ring {self.name!r} is full")
        off = prod & self.mask
        _U32.pack_into(r.data, off, size | BUSY_BIT)
        _U32.pack_into(r.data, off + 4, 0)
        _U64.pack_into(r.prod, 0, prod + total)
        r.data[off + HDR_SIZE:off + HDR_SIZE + size] = bytes(data)
        _U32.pack_into(r.data, off, size)  # commit: clear BUSY

    def drain(self, callback: Callable[[int, int], int], flags: int) -> int:
        """``bpf_user_ringbuf_drain``: ``callback(payload address, size)`` per
        committed sample (discarded ones skipped), stopping at a busy or missing
        one, after DRAIN_CAP samples or when the callback returns nonzero.
        Returns the count handed over, or -EINVAL/-E2BIG/-EBUSY."""
        if flags & ~(RB_NO_WAKEUP | RB_FORCE_WAKEUP):
            return -_errno.EINVAL
        if self._draining:
            return -_errno.EBUSY
        r = self._r()
        self._draining = True
        samples, ret = 0, 0
        try:
            while samples < _DRAIN_CAP and ret == 0:
                cons, prod = self.consumer_pos, self.producer_pos
                if cons & 7 or prod & 7:
                    return -_errno.EINVAL
                if cons >= prod:
                    break
                word = _U32.unpack_from(r.data, cons & self.mask)[0]
                length = word & LEN_MASK
                total = (length + HDR_SIZE + 7) & ~7
                if total > prod - cons:
                    return -_errno.EINVAL
                if total > self.max_entries or length > _DYNPTR_MAX:
                    return -_errno.E2BIG
                if word & DISCARD_BIT:
                    self.consumer_pos = cons + total
                    continue
                if word & BUSY_BIT:
                    break
                start = (cons + HDR_SIZE) & self.mask
                view = r.sub(start, length).toreadonly() if length else r.sub(start, 0)
                addr = self._mem.add(view, f"{self.name} sample@{cons}", writable=False,
                                     kind="user ring sample")
                try:
                    ret = callback(addr, length)
                finally:
                    # Consumed even when the callback failed: a sample that kills the
                    # program must not block the ring for every later drain.
                    self._mem.remove(addr)
                    r.drop(view)
                    self.consumer_pos = cons + total
                samples += 1
            return samples
        finally:
            self._draining = False
            if flags & RB_FORCE_WAKEUP or (not flags & RB_NO_WAKEUP and samples > 0):
                self.wakeups += 1
                try:  # a UserRingBuffer waiting for room wakes (its epoll edge)
                    os.eventfd_write(self._event.fileno(), 1)
                except BlockingIOError:
                    pass
