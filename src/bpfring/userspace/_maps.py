"""BPF maps in user-space memory, with the kernel's element semantics.

Each map's storage is one memfd mapped shared into this process; pinning
(:meth:`UserMap.pin`, :mod:`._share`) moves it into a file another process
opens (the storage bytes unchanged, a header page in front).  Layouts,
documented so a second reader can parse them:

* array (``BPF_MAP_TYPE_ARRAY``): ``max_entries`` values, each at a stride of
  ``round_up(value_size, 8)`` from offset 0 -- the layout of a kernel
  ``BPF_F_MMAPABLE`` array;
* per-CPU array: value ``i`` of CPU ``c`` at ``(i * ncpu + c) * stride``;
* hash, per-CPU hash, LRU hashes: ``max_entries`` slots of
  ``[u32 in_use][u32 0][key, padded to 8][value(s), each padded to 8]``;
  the key -> slot index is a dict rebuilt from the slots;
* ring buffer: see :mod:`._ringbuf`.

Program-side operations (``p_lookup``/``p_update``/``p_delete``) return
addresses in the object's :class:`~._memory.Memory` and kernel return codes
(``-ENOENT``, ``-EEXIST``, ``-E2BIG``, ``-EINVAL``); user-side operations
mirror :class:`bpfring.Map` (``lookup``/``update``/``delete``/``items``/...,
typed through BTF when the object has it) and raise :class:`~bpfring.BPFError`
with the errno the kernel gives.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import mmap
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .._fd import OwnedFD
from ..btf import BTF
from ..errors import BPFError, MapTypeError
from ._errors import UserLoadError
from ._memory import Memory

if TYPE_CHECKING:
    from ._share import SharedFile

__all__ = ["MAP_TYPE_NAMES", "ArrayMap", "UserMap", "make_map", "possible_cpus"]

ANY, NOEXIST, EXIST, F_LOCK = 0, 1, 2, 4
ARRAY, HASH, PROG_ARRAY, PERCPU_HASH, PERCPU_ARRAY = 2, 1, 3, 5, 6
LRU_HASH, LRU_PERCPU_HASH, QUEUE, STACK, RINGBUF, USER_RINGBUF = 9, 10, 22, 23, 27, 31
PERF_EVENT_ARRAY = 4
MAP_TYPE_NAMES = {
    1: "hash", 2: "array", 3: "prog_array", 4: "perf_event_array", 5: "percpu_hash",
    6: "percpu_array", 7: "stack_trace", 8: "cgroup_array", 9: "lru_hash",
    10: "lru_percpu_hash", 11: "lpm_trie", 12: "array_of_maps", 13: "hash_of_maps",
    14: "devmap", 15: "sockmap", 16: "cpumap", 17: "xskmap", 18: "sockhash",
    19: "cgroup_storage", 20: "reuseport_sockarray", 21: "percpu_cgroup_storage",
    22: "queue", 23: "stack", 24: "sk_storage", 25: "devmap_hash", 26: "struct_ops",
    27: "ringbuf", 28: "inode_storage", 29: "task_storage", 30: "bloom_filter",
    31: "user_ringbuf", 32: "cgrp_storage", 33: "arena",
}
_BUFFERS = (bytes, bytearray, memoryview)
_MISSING = object()


def possible_cpus() -> int:
    """Number of possible CPUs (the slot count of per-CPU values), as the kernel
    counts them in /sys/devices/system/cpu/possible."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n or 1


def _r8(n: int) -> int:
    return (n + 7) & ~7


def _err(err: int, what: str) -> BPFError:
    return BPFError(f"{what}: {os.strerror(err)}", errno=err)


class _Backing:
    """A memfd of ``size`` bytes mapped shared; ``view`` is its memoryview."""

    def __init__(self, name: str, size: int) -> None:
        length = max(mmap.PAGESIZE, (size + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1))
        fd = os.memfd_create(f"bpfring-user:{name}", os.MFD_CLOEXEC)
        self.fd = OwnedFD(fd, f"user-space map {name}")
        try:
            os.ftruncate(fd, length)
            self.mm: mmap.mmap | None = mmap.mmap(fd, length, mmap.MAP_SHARED,
                                                  mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            self.fd.close()
            raise
        self.view = memoryview(self.mm)
        self.length = length
        self._subs: list[memoryview] = []

    def sub(self, offset: int, size: int, writable: bool = True) -> memoryview:
        """A view of ``size`` bytes at ``offset``, released when the backing closes."""
        view = self.view[offset:offset + size]
        self._subs.append(view)
        if not writable:
            view = view.toreadonly()
            self._subs.append(view)
        return view

    def close(self) -> None:
        for v in reversed(self._subs):
            v.release()
        self._subs.clear()
        self.view.release()
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:  # a sub-view is still alive: the GC unmaps it later
                pass
            self.mm = None
        self.fd.close()


class UserMap:
    """A map of a user-space object; element access mirrors :class:`bpfring.Map`."""

    internal = False

    def __init__(self, name: str, map_type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int, mem: Memory, btf: BTF | None,
                 key_type_id: int = 0, value_type_id: int = 0, section: str | None = None,
                 ncpu: int = 1, cpu: Callable[[], int] = lambda: 0) -> None:
        self.name = name
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self._mem = mem
        self._btf = btf
        self._key_type_id = key_type_id
        self._value_type_id = value_type_id
        self._section = section
        self.internal = section is not None
        self._ncpu = ncpu
        self._cpu = cpu
        self._codecs: tuple[Any, Any] | None = None
        self._backing: _Backing | None = None
        self._closed = False
        self._regions: dict[tuple[int, int], int] = {}
        self._frozen = False  # .rodata after load: the program cannot write, nor can users
        self._share: SharedFile | None = None  # set once pinned (see _share)

    # identity --------------------------------------------------------------------------

    @property
    def section(self) -> str | None:
        return self._section

    @property
    def type_name(self) -> str:
        return MAP_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def percpu(self) -> bool:
        return self.type in (PERCPU_ARRAY, PERCPU_HASH, LRU_PERCPU_HASH)

    @property
    def memfd(self) -> int:
        """The memfd holding the map's storage (see the module doc for its layout)."""
        self._check_open()
        assert self._backing is not None
        return self._backing.fd.fileno()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"map {self.name!r} is closed")

    # sharing -----------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """Whether the storage is a pinned file other processes may open (then
        hash indexes resync from the file and claims take its lock)."""
        return self._share is not None

    @property
    def pinned_path(self) -> str | None:
        return self._share.path if self._share is not None else None

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Move the storage into the file ``path`` (a new name in a private
        directory, made 0700 if missing), which another process opens with
        :func:`bpfring.userspace.open_map` or ``load(..., pinned_maps=dir)``."""
        from ._share import pin_map, pinned_dir

        self._check_open()
        p = os.fspath(path)
        head, name = os.path.split(p)
        d = pinned_dir(head or ".")
        try:
            pin_map(self, d.fileno(), name, p, reuse=False)
        finally:
            d.close()

    def unpin(self) -> None:
        """Remove the pinned file (the storage stays mapped here and in every
        process that has it open)."""
        if self._share is None:
            raise BPFError(f"map {self.name!r} is not pinned", errno=_errno.ENOENT)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._share.path)

    def _shared_changed(self) -> None:
        """Called once the storage is a shared file (hash maps rebuild their index)."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for addr in self._regions.values():
            self._mem.remove(addr)
        self._regions.clear()
        if self._backing is not None:
            self._backing.close()
        if self._share is not None:
            self._share.close()

    def __repr__(self) -> str:
        return f"<UserMap {self.name} {self.type_name} key={self.key_size} " \
               f"value={self.value_size} max_entries={self.max_entries}>"

    def _bad_flags(self, flags: int) -> bool:
        """The kernel's flag check: unknown bits, or BPF_F_LOCK on a value with no
        ``struct bpf_spin_lock`` (-EINVAL)."""
        if flags & ~F_LOCK > EXIST:
            return True
        return bool(flags & F_LOCK) and not self._has_spin_lock()

    def _has_spin_lock(self) -> bool:
        btf = self._btf
        if btf is None or not self._value_type_id:
            return False
        t = btf.resolve(self._value_type_id)
        return any(btf.resolve(m.type_id).name == "bpf_spin_lock" for m in t.members)

    # program side (overridden) -----------------------------------------------------

    def p_lookup(self, key: bytes, cpu: int | None = None) -> int:
        """The value's address for the program (0: none); ``cpu`` picks the slot
        of a per-CPU map (default: the current CPU)."""
        return 0

    def p_update(self, key: bytes, value: bytes, flags: int) -> int:
        return -_errno.EINVAL

    def p_delete(self, key: bytes) -> int:
        return -_errno.EINVAL

    def p_items(self) -> Iterator[tuple[int, int]]:
        """(key address, value address) of each element, for bpf_for_each_map_elem."""
        return iter(())

    # raw element storage (overridden) ----------------------------------------------

    def _get(self, key: bytes) -> bytes | None:
        raise MapTypeError(f"{self.type_name} map {self.name!r} has no element lookup")

    def _set(self, key: bytes, raw: bytes, flags: int) -> int:
        return -_errno.EINVAL

    def _del(self, key: bytes) -> int:
        return -_errno.EINVAL

    def _raw_keys(self) -> Iterator[bytes]:
        return iter(())

    # typed access, as bpfring.Map -----------------------------------------------------

    def _load_codecs(self) -> tuple[Any, Any]:
        if self._codecs is None:
            btf = self._btf
            kc = btf.codec(self._key_type_id) if btf and self._key_type_id else None
            vc = btf.codec(self._value_type_id) if btf and self._value_type_id else None
            self._codecs = (kc, vc)
        return self._codecs

    @property
    def key_type(self) -> Any:
        """The BTF codec of the key type, or None (then keys are bytes)."""
        return self._load_codecs()[0]

    @property
    def value_type(self) -> Any:
        """The BTF codec of the value type, or None (then values are bytes)."""
        return self._load_codecs()[1]

    @staticmethod
    def _raw(value: Any, size: int, codec: Any, what: str) -> bytes:
        if isinstance(value, _BUFFERS):
            raw = bytes(value)
        elif hasattr(value, "tobytes") and getattr(value, "nbytes", None) == size:
            raw = value.tobytes()
        elif codec is not None:
            raw = codec.encode(value)
        elif isinstance(value, int) and size in (1, 2, 4, 8):
            raw = value.to_bytes(size, "little", signed=value < 0)
        else:
            raise TypeError(f"{what} must be {size} bytes (the map has no BTF type for it), "
                            f"not {type(value).__name__}")
        if len(raw) != size:
            raise ValueError(f"{what} has {len(raw)} bytes; the map's {what}s have {size}")
        return raw

    def _key(self, key: Any) -> bytes:
        return self._raw(key, self.key_size, self.key_type, "key")

    def _stride(self) -> int:
        return _r8(self.value_size)

    def _value(self, value: Any) -> bytes:
        vc = self.value_type
        if not self.percpu:
            return self._raw(value, self.value_size, vc, "value")
        if isinstance(value, list | tuple) and len(value) == self._ncpu and \
                not (vc is not None and vc.record_class is None and vc.dtype.shape):
            per = list(value)
        else:
            per = [value] * self._ncpu
        stride = self._stride()
        return b"".join(self._raw(v, self.value_size, vc, "value").ljust(stride, b"\0")
                        for v in per)

    def _decode_value(self, raw: bytes) -> Any:
        vc = self.value_type
        if self.percpu:
            stride = self._stride()
            out = []
            for i in range(len(raw) // stride):
                chunk = raw[i * stride:i * stride + self.value_size]
                out.append(vc.decode(chunk) if vc is not None else bytes(chunk))
            return out
        return vc.decode(raw) if vc is not None else bytes(raw)

    def _decode_key(self, raw: bytes) -> Any:
        kc = self.key_type
        return kc.decode(raw) if kc is not None else raw

    def lookup(self, key: Any, default: Any = None) -> Any:
        """The value at ``key`` (typed), or ``default`` when absent.  Per-CPU maps
        give a list with one value per possible CPU."""
        self._check_open()
        raw = self._get(self._key(key))
        return default if raw is None else self._decode_value(raw)

    def __getitem__(self, key: Any) -> Any:
        val = self.lookup(key, _MISSING)
        if val is _MISSING:
            raise KeyError(key)
        return val

    def update(self, key: Any, value: Any, flags: int = ANY) -> None:
        """Set ``key`` to ``value``; ``flags``: 0 any, 1 only if new (NOEXIST),
        2 only if present (EXIST)."""
        self._check_open()
        if self._frozen:
            raise _err(_errno.EPERM, "map update")
        ret = self._set(self._key(key), self._value(value), flags)
        if ret < 0:
            raise _err(-ret, "map update")

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def delete(self, key: Any) -> bool:
        """Delete ``key``; False when it was absent."""
        self._check_open()
        ret = self._del(self._key(key))
        if ret == -_errno.ENOENT:
            return False
        if ret < 0:
            raise _err(-ret, "map delete")
        return True

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        self._check_open()
        return self._get(self._key(key)) is not None

    def keys(self) -> Iterator[Any]:
        self._check_open()
        for k in list(self._raw_keys()):
            yield self._decode_key(k)

    __iter__ = keys

    def items(self) -> Iterator[tuple[Any, Any]]:
        self._check_open()
        for k in list(self._raw_keys()):
            raw = self._get(k)
            if raw is not None:
                yield self._decode_key(k), self._decode_value(raw)

    def values(self) -> Iterator[Any]:
        for _, v in self.items():
            yield v

    def __len__(self) -> int:
        self._check_open()
        return sum(1 for _ in self._raw_keys())

    def lookup_raw(self, key: bytes) -> bytes | None:
        self._check_open()
        return self._get(bytes(key))

    def update_raw(self, key: bytes, value: bytes, flags: int = ANY) -> None:
        self._check_open()
        if self._frozen:
            raise _err(_errno.EPERM, "map update")
        ret = self._set(bytes(key), bytes(value), flags)
        if ret < 0:
            raise _err(-ret, "map update")

    def __enter__(self) -> UserMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # regions -------------------------------------------------------------------------

    def _region(self, slot: int, cpu: int, offset: int, size: int, kind: str = "map value",
                writable: bool = True) -> int:
        """The address of ``size`` bytes at ``offset`` of the backing (cached per slot)."""
        addr = self._regions.get((slot, cpu))
        if addr is None:
            assert self._backing is not None
            view = self._backing.sub(offset, size, writable)
            label = f"{self.name}[{slot}]" if cpu < 0 else f"{self.name}[{slot}]@cpu{cpu}"
            addr = self._mem.add(view, label, writable=writable, kind=kind)
            self._regions[(slot, cpu)] = addr
        return addr


class ArrayMap(UserMap):
    """``BPF_MAP_TYPE_ARRAY`` and ``BPF_MAP_TYPE_PERCPU_ARRAY``."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        if self.key_size != 4:
            raise UserLoadError(f"array map {self.name!r}: key size {self.key_size} is not 4")
        if self.value_size <= 0 or self.max_entries <= 0:
            raise UserLoadError(f"array map {self.name!r}: value size and max_entries "
                                "must be positive")
        per = self._ncpu if self.percpu else 1
        self._backing = _Backing(self.name, self.max_entries * per * self._stride())

    def _off(self, index: int, cpu: int = 0) -> int:
        per = self._ncpu if self.percpu else 1
        return (index * per + cpu) * self._stride()

    def _index(self, key: bytes) -> int:
        return int.from_bytes(key[:4], "little")

    def initialise(self, data: bytes) -> None:
        """Set element 0 from ``data`` (a global section's initial image)."""
        assert self._backing is not None
        self._backing.view[:len(data)] = data

    def section_view(self) -> memoryview:
        """The bytes of element 0 (the section of a global data map)."""
        assert self._backing is not None
        return self._backing.sub(0, self.value_size)

    def p_lookup(self, key: bytes, cpu: int | None = None) -> int:
        i = self._index(key)
        if i >= self.max_entries:
            return 0
        cpu = (self._cpu() if cpu is None else cpu) if self.percpu else -1
        return self._region(i, cpu, self._off(i, max(cpu, 0)), self.value_size,
                            "global section" if self.internal else "map value",
                            writable=not self._frozen)

    def _check_update(self, key: bytes, flags: int) -> int:
        """array_map_update_elem's checks, in its order; the index or -errno."""
        if flags & ~F_LOCK > EXIST:
            return -_errno.EINVAL
        i = self._index(key)
        if i >= self.max_entries:
            return -_errno.E2BIG
        if flags & NOEXIST:
            return -_errno.EEXIST
        if flags & F_LOCK and not self._has_spin_lock():
            return -_errno.EINVAL
        if self._frozen:
            return -_errno.EPERM
        return i

    def p_update(self, key: bytes, value: bytes, flags: int) -> int:
        i = self._check_update(key, flags)
        if i < 0:
            return i
        assert self._backing is not None
        off = self._off(i, self._cpu() if self.percpu else 0)
        self._backing.view[off:off + self.value_size] = value[:self.value_size]
        return 0

    def p_delete(self, key: bytes) -> int:
        return -_errno.EINVAL

    def p_items(self) -> Iterator[tuple[int, int]]:
        for i in range(self.max_entries):
            key = self._mem.add(bytearray(i.to_bytes(4, "little")), f"{self.name} key {i}",
                                writable=False, kind="map key")
            try:
                yield key, self.p_lookup(i.to_bytes(4, "little"))
            finally:
                self._mem.remove(key)

    def _get(self, key: bytes) -> bytes | None:
        i = self._index(key)
        if i >= self.max_entries:
            return None
        assert self._backing is not None
        if not self.percpu:
            off = self._off(i)
            return bytes(self._backing.view[off:off + self.value_size])
        off = self._off(i)
        return bytes(self._backing.view[off:off + self._ncpu * self._stride()])

    def _set(self, key: bytes, raw: bytes, flags: int) -> int:
        if flags & F_LOCK and not self._has_spin_lock():
            return -_errno.EINVAL  # the syscall's own check comes first
        i = self._check_update(key, flags)
        if i < 0:
            return i
        assert self._backing is not None
        off = self._off(i)
        if self.percpu:
            self._backing.view[off:off + len(raw)] = raw
        else:
            self._backing.view[off:off + self.value_size] = raw
        return 0

    def _del(self, key: bytes) -> int:
        return -_errno.EINVAL

    def _raw_keys(self) -> Iterator[bytes]:
        for i in range(self.max_entries):
            yield i.to_bytes(4, "little")


def make_map(name: str, map_type: int, key_size: int, value_size: int, max_entries: int,
             flags: int, mem: Memory, btf: BTF | None, **kw: Any) -> UserMap:
    """A user-space map of ``map_type``; UserLoadError for a type not implemented."""
    from ._hash import HashMap
    from ._ringbuf import RingBufMap, UserRingBufMap
    from ._special import ProgArrayMap, QueueStackMap

    cls: type[UserMap]
    if map_type in (ARRAY, PERCPU_ARRAY):
        cls = ArrayMap
    elif map_type in (HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH):
        cls = HashMap
    elif map_type == PROG_ARRAY:
        cls = ProgArrayMap
    elif map_type == RINGBUF:
        cls = RingBufMap
    elif map_type == USER_RINGBUF:
        cls = UserRingBufMap
    elif map_type in (QUEUE, STACK):
        cls = QueueStackMap
    elif map_type == PERF_EVENT_ARRAY:
        from ._perf import PerfEventArrayMap

        cls = PerfEventArrayMap
    else:
        raise UserLoadError(f"map {name!r}: type {MAP_TYPE_NAMES.get(map_type, map_type)} is "
                            "not supported in user space")
    return cls(name, map_type, key_size, value_size, max_entries, flags, mem, btf, **kw)
