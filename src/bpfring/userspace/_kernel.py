"""User-space maps bound to kernel maps: ``load(..., kernel_maps={...})``.

A user-space program's map can be a *kernel* map instead of a memfd one.
What each program-side operation becomes (documented in docs/userspace.md,
"Working with kernel eBPF"):

* ``BPF_F_MMAPABLE`` arrays (:class:`KernelArrayMap`): the kernel array is
  mmapped; a lookup's pointer is the element in the shared pages (bounds
  checked to the element), so loads and stores through it *are* the kernel
  map's; ``bpf_map_update_elem`` is a copy into the mapping (with the
  kernel's array checks).  No system call at all.
* any other hash/array map (:class:`KernelMap`): a lookup is one ``bpf()``
  lookup into a buffer that stays valid (and at the same address for the
  same key) until the run ends; if the program changed its bytes, the new
  value is queued once at the end of the run as an update with
  ``BPF_EXIST``.  An update or delete of that key by the program drops the
  write-back (in the kernel, the pointer then refers to the replaced
  element).  Updates and deletes are queued into a :class:`~bpfring.MapBridge`
  on the map (its user ring) and applied by the kernel asynchronously (flush,
  timer): no system call per operation.
* ring buffers (:class:`KernelRingMap`): records are reserved in a local
  ring with the kernel's layout, and each committed record is copied in
  order into a relay user ring that a small kernel program drains into the
  kernel ring with ``bpf_ringbuf_output`` (see :mod:`._relay`).
* perf event arrays (:class:`KernelPerfMap`): each ``bpf_perf_event_output``
  sample is queued with its slot into a relay user ring that a kernel
  raw_tp program drains on the slot's CPU, emitting it with
  ``bpf_perf_event_output`` (:class:`~._relay.PerfRelay`).
"""

from __future__ import annotations

import errno as _errno
import mmap
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import _sys
from .._fd import OwnedFD
from .._ringcore import BUSY_BIT, DISCARD_BIT, HDR_SIZE, LEN_MASK
from ..errors import BPFError, MapTypeError, RingFull
from ._errors import UserLoadError
from ._maps import (
    ARRAY,
    EXIST,
    F_LOCK,
    HASH,
    LRU_HASH,
    LRU_PERCPU_HASH,
    NOEXIST,
    PERCPU_ARRAY,
    PERCPU_HASH,
    RINGBUF,
    UserMap,
    _r8,
)
from ._ringbuf import RB_FORCE_WAKEUP, RB_NO_WAKEUP, RingBufMap

if TYPE_CHECKING:
    from ..bridge import MapBridge
    from ..btf import BTF
    from ._elf import MapDef
    from ._memory import Memory
    from ._relay import PerfRelay, Relay

__all__ = ["KernelArrayMap", "KernelMap", "KernelPerfMap", "KernelRingMap", "bind_kernel_map",
           "open_kernel_map"]

PERF_EVENT_ARRAY = 4
_BRIDGED = frozenset({HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_HASH, LRU_PERCPU_HASH})
_HASHES = frozenset({HASH, LRU_HASH})
_ARRAYS = frozenset({ARRAY, PERCPU_ARRAY})


def open_kernel_map(source: Any, name: str) -> OwnedFD:
    """A private fd of the kernel map ``source``: a :class:`bpfring.Map` (or
    anything with an ``fd``), a :class:`~bpfring.MapRef` or its string
    (``"id 42"``, ``"pinned PATH"``, ``"name NAME"``), a path under bpffs, or
    an fd (duplicated: the caller keeps its own)."""
    from ..mapref import MapRef

    what = f"kernel map for {name!r}"
    if isinstance(source, bool):
        raise TypeError(f"kernel_maps[{name!r}]: not a map: {source!r}")
    if isinstance(source, int):
        return OwnedFD.dup(source, what)
    if isinstance(source, MapRef):
        return source.open_owned()
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        if text.startswith("/"):
            return MapRef("pinned", text).open_owned()
        return MapRef.parse(text).open_owned()
    fd = getattr(source, "fd", None)
    if isinstance(fd, int):
        return OwnedFD.dup(fd, what)
    raise TypeError(f"kernel_maps[{name!r}] must be a Map, MapRef, pinned path or fd, "
                    f"not {type(source).__name__}")


def check_compatible(name: str, user_type: int, key_size: int, value_size: int,
                     info: _sys.MapInfo) -> None:
    """UserLoadError unless the object's map ``name`` can stand for the kernel map."""
    def refuse(why: str) -> UserLoadError:
        return UserLoadError(f"map {name!r} cannot be bound to kernel map {info.name!r} "
                             f"(id {info.id}): {why}")

    if info.type == RINGBUF:
        if user_type not in (RINGBUF, PERF_EVENT_ARRAY):
            raise refuse(f"the kernel map is a ring buffer, the object's map is type "
                         f"{user_type}")
        return
    if info.type == PERF_EVENT_ARRAY:
        if user_type != PERF_EVENT_ARRAY:
            raise refuse(f"the kernel map is a perf event array, the object's map is type "
                         f"{user_type}")
        return
    if info.type not in _BRIDGED:
        raise refuse(f"kernel {info.type_name} maps cannot be bound (hash, LRU hash, "
                     "array, their per-CPU variants, ring buffers and perf event arrays "
                     "can)")
    same = {ARRAY: ARRAY, PERCPU_ARRAY: PERCPU_ARRAY, HASH: HASH, LRU_HASH: HASH,
            PERCPU_HASH: PERCPU_HASH, LRU_PERCPU_HASH: PERCPU_HASH}
    if same.get(user_type) != same[info.type]:
        raise refuse(f"the kernel map is {info.type_name}, the object's is type {user_type}")
    if (key_size, value_size) != (info.key_size, info.value_size):
        raise refuse(f"key/value sizes {key_size}/{value_size} differ from the kernel's "
                     f"{info.key_size}/{info.value_size}")


class KernelMap(UserMap):
    """A kernel hash or array map seen by a user-space program (see the module doc)."""

    def __init__(self, *a: Any, fd: OwnedFD, info: _sys.MapInfo,
                 bridge: MapBridge | None = None, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.type = info.type
        self.max_entries = info.max_entries
        self.flags = info.flags
        self.kernel_fd = fd
        self.kernel_info = info
        self.bridge = bridge
        #: key -> (address, buffer, bytes looked up) of this run's lookups
        self._looked: dict[bytes, tuple[int, bytearray, bytes]] = {}
        self.write_backs = 0
        self.refused = 0  #: updates/deletes refused because the bridge ring stayed full

    @property
    def memfd(self) -> int:
        raise MapTypeError(f"map {self.name!r} is a kernel map (fd {self.kernel_fd.fileno()}), "
                           "it has no memfd")

    def _vsize(self) -> int:
        return self._ncpu * _r8(self.value_size) if self.percpu else self.value_size

    # program side ------------------------------------------------------------------

    def p_lookup(self, key: bytes, cpu: int | None = None) -> int:
        hit = self._looked.get(key)
        if hit is None:
            raw = self._get(key)
            if raw is None:
                return 0
            buf = bytearray(raw)
            addr = self._mem.add(buf, f"{self.name}[kernel copy]", kind="map value")
            hit = (addr, buf, raw)
            self._looked[key] = hit
        if not self.percpu:
            return hit[0]
        c = self._cpu() if cpu is None else cpu
        return hit[0] + c * _r8(self.value_size)  # slot c of the copied per-CPU value

    def _queue(self, op: str, key: bytes, value: bytes = b"", flags: int = 0) -> int:
        """Queue an update or delete into the bridge: 0, or -errno as the kernel
        would report a bad argument (-EAGAIN: the bridge ring stayed full)."""
        self._forget(key)
        br = self.bridge
        assert br is not None
        try:
            if op == "update":
                br.update(key, value, flags)
            else:
                br.delete(key)
        except RingFull:
            self.refused += 1
            return -_errno.EAGAIN
        return 0

    def p_update(self, key: bytes, value: bytes, flags: int) -> int:
        if flags & ~F_LOCK > EXIST or flags & F_LOCK:
            return -_errno.EINVAL  # BPF_F_LOCK needs the element's lock: not across a ring
        if self.type in _ARRAYS:
            i = int.from_bytes(key[:4], "little")
            if i >= self.max_entries:
                return -_errno.E2BIG
            if flags & NOEXIST:
                return -_errno.EEXIST
        if self.percpu:
            value = value[:self.value_size]  # the bridge writes it into every CPU's slot
        return self._queue("update", key, value, flags)

    def p_delete(self, key: bytes) -> int:
        if self.type in _ARRAYS:
            return -_errno.EINVAL
        return self._queue("delete", key)

    def p_items(self) -> Iterator[tuple[int, int]]:
        for k in list(self._raw_keys()):
            vaddr = self.p_lookup(k)
            if not vaddr:
                continue
            kaddr = self._mem.add(memoryview(bytearray(k)).toreadonly(), f"{self.name} key",
                                  writable=False, kind="map key")
            try:
                yield kaddr, vaddr
            finally:
                self._mem.remove(kaddr)

    def _forget(self, key: bytes) -> None:
        hit = self._looked.pop(key, None)
        if hit is not None:
            self._mem.remove(hit[0])

    def end_run(self) -> None:
        """The run is over: queue the changed lookups back (BPF_EXIST) and free
        their buffers."""
        looked, self._looked = self._looked, {}
        for key, (addr, buf, raw) in looked.items():
            self._mem.remove(addr)
            if bytes(buf) != raw and self.bridge is not None:
                value = bytes(buf[:self.value_size]) if self.percpu else bytes(buf)
                self.write_backs += 1
                try:
                    self.bridge.update(key, value, EXIST)
                except RingFull:
                    self.refused += 1

    # Python side: one bpf() call per operation, as bpfring.Map -------------------

    def _get(self, key: bytes) -> bytes | None:
        val = bytearray(self._vsize())
        if not _sys.map_lookup(self.kernel_fd.fileno(), key, val):
            return None
        return bytes(val)

    def _set(self, key: bytes, raw: bytes, flags: int) -> int:
        try:
            _sys.map_update(self.kernel_fd.fileno(), key, raw, flags)
        except BPFError as e:
            return -(e.errno or _errno.EINVAL)
        return 0

    def _del(self, key: bytes) -> int:
        try:
            return 0 if _sys.map_delete(self.kernel_fd.fileno(), key) else -_errno.ENOENT
        except BPFError as e:
            return -(e.errno or _errno.EINVAL)

    def _raw_keys(self) -> Iterator[bytes]:
        if self.type in _ARRAYS:
            for i in range(self.max_entries):
                yield i.to_bytes(4, "little")
            return
        key: bytes | None = None
        while True:
            key = _sys.map_next_key(self.kernel_fd.fileno(), key, self.key_size)
            if key is None:
                return
            yield key

    def close(self) -> None:
        if self._closed:
            return
        for key in list(self._looked):
            self._forget(key)
        try:
            if self.bridge is not None:
                self.bridge.close()
        finally:
            super().close()
            self.kernel_fd.close()

    def __repr__(self) -> str:
        via = "bridge" if self.bridge is not None else "mmapped"
        return f"<KernelMap {self.name} {self.type_name} kernel id {self.kernel_info.id} " \
               f"({via})>"


class KernelArrayMap(KernelMap):
    """A kernel ``BPF_F_MMAPABLE`` array, mmapped: lookups and updates touch the
    kernel's pages directly (the kernel's stride: values rounded up to 8)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        info = self.kernel_info
        self._stride8 = _r8(info.value_size)
        length = max(mmap.PAGESIZE, (info.max_entries * self._stride8 + mmap.PAGESIZE - 1)
                     & ~(mmap.PAGESIZE - 1))
        self._mm: mmap.mmap | None = mmap.mmap(self.kernel_fd.fileno(), length,
                                               mmap.MAP_SHARED,
                                               mmap.PROT_READ | mmap.PROT_WRITE)
        self._view = memoryview(self._mm)
        self._subs: list[memoryview] = []
        self._slots: dict[int, int] = {}

    def p_lookup(self, key: bytes, cpu: int | None = None) -> int:
        i = int.from_bytes(key[:4], "little")
        if i >= self.max_entries:
            return 0
        addr = self._slots.get(i)
        if addr is None:
            off = i * self._stride8
            view = self._view[off:off + self.value_size]
            self._subs.append(view)
            addr = self._mem.add(view, f"{self.name}[{i}] (kernel)", kind="map value")
            self._slots[i] = addr
        return addr

    def p_update(self, key: bytes, value: bytes, flags: int) -> int:
        if flags & ~F_LOCK > EXIST or flags & F_LOCK:
            return -_errno.EINVAL
        i = int.from_bytes(key[:4], "little")
        if i >= self.max_entries:
            return -_errno.E2BIG
        if flags & NOEXIST:
            return -_errno.EEXIST
        off = i * self._stride8
        self._view[off:off + self.value_size] = value[:self.value_size]
        return 0

    def end_run(self) -> None:
        pass  # the pointers are the kernel's memory: nothing to write back

    def _get(self, key: bytes) -> bytes | None:
        i = int.from_bytes(key[:4], "little")
        if i >= self.max_entries:
            return None
        off = i * self._stride8
        return bytes(self._view[off:off + self.value_size])

    def close(self) -> None:
        if self._closed:
            return
        for addr in self._slots.values():
            self._mem.remove(addr)
        self._slots.clear()
        for v in self._subs:
            v.release()
        self._view.release()
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        super().close()


class KernelRingMap(RingBufMap):
    """A kernel ring buffer written by user-space programs.

    ``bpf_ringbuf_reserve``/``_output`` (and ``bpf_perf_event_output`` when
    the object's map is a perf event array) work on a local ring of the
    kernel ring's size and layout; every commit moves the committed records,
    in reservation order, into the relay's user ring, from which the kernel
    relay program re-emits them into the kernel ring.  When the relay ring is
    full, records wait in the local ring; when that is full too, reserve
    returns NULL and output -EAGAIN, as the kernel's helpers do on a full ring,
    and :attr:`refused` counts it.  Nothing is dropped silently: the records
    the kernel ring had no room for are counted in :attr:`lost`.
    """

    def __init__(self, name: str, map_type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int, *a: Any, relay: Relay, **kw: Any) -> None:
        info = relay.info
        super().__init__(name, RINGBUF, 0, 0, info.max_entries, 0, *a, **kw)
        self.declared_type = map_type
        self.relay = relay
        self.kernel_info = info
        self.refused = 0

    def reserve(self, size: int) -> int:
        addr = super().reserve(size)
        if not addr and size <= LEN_MASK and self.pump():
            addr = super().reserve(size)
        if not addr:
            self.refused += 1
        return addr

    def commit(self, addr: int, flags: int, discard: bool) -> None:
        # Nobody waits on the local ring: no eventfd wakeup (a system call per
        # record); the kernel ring's consumers are woken by bpf_ringbuf_output.
        super().commit(addr, (flags & ~RB_FORCE_WAKEUP) | RB_NO_WAKEUP, discard)
        self.pump()

    def pump(self) -> int:
        """Move committed records into the relay ring, in order, while it has
        room; return how many moved."""
        r = self._r()
        cons, prod = self.consumer_pos, self.producer_pos
        n = 0
        while cons < prod:
            off = cons & self.mask
            word = int.from_bytes(r.data[off:off + 4], "little")
            if word & BUSY_BIT:
                break
            length = word & LEN_MASK
            if not word & DISCARD_BIT:
                try:
                    self.relay.write(r.data[off + HDR_SIZE:off + HDR_SIZE + length])
                except RingFull:
                    break
                n += 1
            cons += (length + HDR_SIZE + 7) & ~7
            self.consumer_pos = cons
        return n

    @property
    def waiting(self) -> int:
        """Bytes of committed records still in the local ring (relay ring full)."""
        return self.producer_pos - self.consumer_pos

    @property
    def lost(self) -> int:
        """Records the kernel ring had no room for when the relay re-emitted them."""
        return self.relay.counters()["lost"]

    @property
    def relayed(self) -> int:
        """Records the relay wrote into the kernel ring."""
        return self.relay.counters()["relayed"]

    def consume(self, callback: Any, limit: int | None = None) -> int:
        raise MapTypeError(f"map {self.name!r} is bound to kernel ring {self.kernel_info.name!r}:"
                           " read that ring (bpfring.RingBuffer on the kernel map)")

    def close(self) -> None:
        if self._closed:
            return
        try:
            super().close()
        finally:
            self.relay.close()

    def __repr__(self) -> str:
        return f"<KernelRingMap {self.name} -> kernel ring {self.kernel_info.name!r} " \
               f"(id {self.kernel_info.id})>"


class KernelPerfMap(UserMap):
    """A kernel perf event array written by user-space programs: each sample of
    ``bpf_perf_event_output`` is queued with its slot into the relay's user
    ring (no system call) and emitted into the kernel map on the slot's CPU
    when the object flushes (see :class:`~._relay.PerfRelay`).  A full relay
    ring is back-pressure: the relay is flushed there and then and the sample
    queued; only when it still finds no room does the helper return
    ``-EAGAIN``, counted in :attr:`refused`.  Nothing is dropped silently:
    samples the reader's ring had no room for are :attr:`lost` (and reported
    by the reader as lost), other emit errors are :attr:`failed`."""

    def __init__(self, *a: Any, relay: PerfRelay, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.type = PERF_EVENT_ARRAY
        self.max_entries = relay.info.max_entries
        self.relay = relay
        self.kernel_info = relay.info
        self.refused = 0

    @property
    def memfd(self) -> int:
        raise MapTypeError(f"map {self.name!r} is bound to kernel perf event array "
                           f"{self.kernel_info.name!r}: it has no memfd")

    def output(self, index: int, data: bytes) -> int:
        """bpf_perf_event_output into slot ``index``: 0 once queued, -E2BIG past
        the map or for a sample larger than the relay carries, -EAGAIN when the
        relay ring stays full."""
        from ._relay import RELAY_MAX

        if index >= self.max_entries or len(data) > RELAY_MAX:
            return -_errno.E2BIG
        try:
            self.relay.write(index, data)
        except RingFull:
            try:
                self.relay.flush()  # back-pressure: make room now
                self.relay.write(index, data)
            except RingFull:
                self.refused += 1
                return -_errno.EAGAIN
        return 0

    def flush(self) -> None:
        """Relay every queued sample into the kernel map now."""
        if self.relay.pending:
            self.relay.flush()

    @property
    def pending(self) -> int:
        """Samples queued, not relayed yet."""
        return self.relay.pending

    @property
    def relayed(self) -> int:
        """Samples the relay emitted into the kernel map."""
        return self.relay.counters()["relayed"]

    @property
    def lost(self) -> int:
        """Samples the reader's ring had no room for (``-ENOSPC`` in the kernel)."""
        return self.relay.counters()["lost"]

    @property
    def failed(self) -> int:
        """Samples the kernel refused otherwise (no reader on the slot, an event
        of another CPU: ``relay.counters()["last_error"]``)."""
        return self.relay.counters()["failed"]

    def consume(self, callback: Any, limit: int | None = None) -> int:
        raise MapTypeError(f"map {self.name!r} is bound to kernel perf event array "
                           f"{self.kernel_info.name!r}: read that map (bpfring.PerfBuffer)")

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        except BPFError as e:  # closing must not fail; say what was not relayed
            import logging

            logging.getLogger("bpfring").warning(
                "user-space map %s: %d samples not relayed at close: %s", self.name,
                self.relay.pending, e)
        finally:
            super().close()
            self.relay.close()

    def __repr__(self) -> str:
        return f"<KernelPerfMap {self.name} -> kernel perf event array " \
               f"{self.kernel_info.name!r} (id {self.kernel_info.id})>"


def bind_kernel_map(d: MapDef, source: Any, mem: Memory, btf: BTF | None, mode: str,
                    period: float, relay_size: int, **kw: Any) -> UserMap:
    """The user-space map standing for the object's map ``d`` bound to the kernel
    map ``source`` (see the module doc for what each kind does)."""
    if d.section is not None:
        raise UserLoadError(f"map {d.name!r} holds global variables: it cannot be bound to "
                            "a kernel map")
    fd = open_kernel_map(source, d.name)
    try:
        info = _sys.map_info(fd.fileno())
        check_compatible(d.name, d.type, d.key_size, d.value_size, info)
        args = (d.name, d.type, d.key_size, d.value_size, d.max_entries, d.flags, mem, btf)
        if info.type == RINGBUF:
            from ._relay import Relay

            relay = Relay(fd, info, mode=mode, period=period, size=relay_size)
            return KernelRingMap(*args, relay=relay, **kw)
        if info.type == PERF_EVENT_ARRAY:
            from ._relay import PerfRelay

            return KernelPerfMap(*args, relay=PerfRelay(fd, info, size=relay_size), **kw)
        if info.type == ARRAY and info.flags & _sys.F_MMAPABLE:
            return KernelArrayMap(*args, fd=fd, info=info, **kw)
        from ..bridge import MapBridge

        bridge = MapBridge(fd.fileno(), d.name, mode="timer" if mode == "timer" else "flush",
                           period=period, on_full="wait",
                           full_timeout=1.0, fallback=False)
        try:
            return KernelMap(*args, fd=fd, info=info, bridge=bridge, **kw)
        except BaseException:
            bridge.close()
            raise
    except BaseException:
        fd.close()
        raise
