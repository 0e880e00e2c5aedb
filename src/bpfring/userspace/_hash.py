"""Hash maps in user space: ``BPF_MAP_TYPE_HASH``, ``PERCPU_HASH``, ``LRU_HASH``
and ``LRU_PERCPU_HASH``, with the kernel's update rules (see :mod:`._maps` for
the memfd layout).

The key -> slot index is a dict of this process, rebuilt from the slots (a
slot whose u32 ``in_use`` is 1 holds its key) when the map is pinned and
another process has inserted or deleted since: the pinned file's header
counts those changes (its generation), and every insert and delete runs
under the file's exclusive lock, so two processes never claim one slot."""

from __future__ import annotations

import errno as _errno
import struct
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from ._errors import UserLoadError
from ._maps import (
    EXIST,
    F_LOCK,
    LRU_HASH,
    LRU_PERCPU_HASH,
    NOEXIST,
    UserMap,
    _Backing,
    _r8,
)

__all__ = ["HashMap"]

_U32 = struct.Struct("<I")


class HashMap(UserMap):
    """Hash, per-CPU hash, LRU hash and LRU per-CPU hash maps."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        if self.key_size <= 0 or self.value_size <= 0 or self.max_entries <= 0:
            raise UserLoadError(f"hash map {self.name!r}: key size, value size and "
                                "max_entries must be positive")
        self._lru = self.type in (LRU_HASH, LRU_PERCPU_HASH)
        self._kstride = _r8(self.key_size)
        self._vper = self._ncpu if self.percpu else 1
        self._slot = 8 + self._kstride + self._vper * self._stride()
        self._backing = _Backing(self.name, self.max_entries * self._slot)
        self._index: OrderedDict[bytes, int] = OrderedDict()
        self._free = list(range(self.max_entries - 1, -1, -1))
        self._gen = -1  # the pinned file's generation the index was built at
        self._changes = 0  # inserts and deletes here (a shared map bumps the generation)

    # sharing -----------------------------------------------------------------------------

    def _shared_changed(self) -> None:
        self._gen = -1
        self._sync()

    def _sync(self) -> None:
        """Rebuild the index when another process changed the pinned map."""
        sh = self._share
        if sh is None or sh.generation == self._gen:
            return
        with sh.locked():
            gen = sh.generation
            assert self._backing is not None
            v = self._backing.view
            index: OrderedDict[bytes, int] = OrderedDict()
            free = []
            ks = self.key_size
            for slot in range(self.max_entries):
                base = slot * self._slot
                if _U32.unpack_from(v, base)[0] == 1:
                    key = bytes(v[base + 8:base + 8 + ks])
                    if key not in index:  # a duplicate (a corrupt file) is never found
                        index[key] = slot
                        continue
                    continue
                free.append(slot)
            free.reverse()
            self._index, self._free, self._gen = index, free, gen

    def _find(self, key: bytes) -> int | None:
        """The slot of ``key``; on a shared map checked against the slot itself
        (another process may have reused it since the index was built)."""
        if self._share is None:
            return self._index.get(key)
        self._sync()
        for _ in range(2):
            slot = self._index.get(key)
            if slot is None:
                return None
            assert self._backing is not None
            base = slot * self._slot
            v = self._backing.view
            if _U32.unpack_from(v, base)[0] == 1 and \
                    bytes(v[base + 8:base + 8 + self.key_size]) == key:
                return slot
            self._gen = -1
            self._sync()
        return None

    def _shared_op(self, op: Any, *args: Any) -> int:
        """Run an insert/delete under the pinned file's lock, bumping its generation."""
        sh = self._share
        assert sh is not None
        with sh.locked():
            self._sync()
            before = self._changes
            ret = int(op(*args))
            if self._changes != before:
                self._gen = sh.bump()
            return ret

    def _voff(self, slot: int, cpu: int = 0) -> int:
        return slot * self._slot + 8 + self._kstride + cpu * self._stride()

    def _alloc(self, key: bytes) -> int | None:
        if not self._free:
            if not self._lru:
                return None
            _old, slot = self._index.popitem(last=False)  # least recently used
            self._release(slot)
        else:
            slot = self._free.pop()
        assert self._backing is not None
        base = slot * self._slot
        v = self._backing.view
        v[base + 8:base + 8 + self.key_size] = key
        v[base:base + 8] = (1).to_bytes(8, "little")  # after the key: a reader sees it whole
        self._index[key] = slot
        self._changes += 1
        return slot

    def _release(self, slot: int) -> None:
        assert self._backing is not None
        base = slot * self._slot
        self._backing.view[base:base + 8] = bytes(8)

    def _write(self, slot: int, raw: bytes, all_cpus: bool, fresh: bool) -> None:
        assert self._backing is not None
        v = self._backing.view
        if not self.percpu:
            off = self._voff(slot)
            v[off:off + self.value_size] = raw[:self.value_size]
        elif all_cpus:
            off = self._voff(slot)
            v[off:off + len(raw)] = raw
        else:  # from a program: this CPU's copy; a new element's others are zero
            cpu = self._cpu()
            if fresh:
                off = self._voff(slot)
                v[off:off + self._vper * self._stride()] = bytes(self._vper * self._stride())
            off = self._voff(slot, cpu)
            v[off:off + self.value_size] = raw[:self.value_size]

    def _upsert(self, key: bytes, raw: bytes, flags: int, all_cpus: bool) -> int:
        if self._share is not None:
            return self._shared_op(self._upsert_here, key, raw, flags, all_cpus)
        return self._upsert_here(key, raw, flags, all_cpus)

    def _upsert_here(self, key: bytes, raw: bytes, flags: int, all_cpus: bool) -> int:
        if self._bad_flags(flags):
            return -_errno.EINVAL
        slot = self._index.get(key)
        f = flags & ~F_LOCK
        if slot is not None:
            if f == NOEXIST:
                return -_errno.EEXIST
            if self._lru:
                self._index.move_to_end(key)
            self._write(slot, raw, all_cpus, False)
            return 0
        if f == EXIST:
            return -_errno.ENOENT
        new = self._alloc(key)
        if new is None:
            return -_errno.E2BIG
        self._write(new, raw, all_cpus, True)
        return 0

    def _remove(self, key: bytes) -> int:
        if self._share is not None:
            return self._shared_op(self._remove_here, key)
        return self._remove_here(key)

    def _remove_here(self, key: bytes) -> int:
        slot = self._index.pop(key, None)
        if slot is None:
            return -_errno.ENOENT
        self._release(slot)
        self._free.append(slot)
        self._changes += 1
        return 0

    def p_lookup(self, key: bytes, cpu: int | None = None) -> int:
        slot = self._find(key)
        if slot is None:
            return 0
        if self._lru:
            self._index.move_to_end(key)  # the kernel sets the node's ref bit
        cpu = (self._cpu() if cpu is None else cpu) if self.percpu else -1
        return self._region(slot, cpu, self._voff(slot, max(cpu, 0)), self.value_size)

    def p_update(self, key: bytes, value: bytes, flags: int) -> int:
        return self._upsert(key, value, flags, False)

    def p_delete(self, key: bytes) -> int:
        return self._remove(key)

    def p_items(self) -> Iterator[tuple[int, int]]:
        self._sync()
        for key, slot in list(self._index.items()):
            if self._index.get(key) != slot:
                continue  # deleted by an earlier callback
            kaddr = self._region(slot, -2, slot * self._slot + 8, self.key_size, "map key",
                                 writable=False)
            cpu = self._cpu() if self.percpu else -1
            yield kaddr, self._region(slot, cpu, self._voff(slot, max(cpu, 0)),
                                      self.value_size)

    def _get(self, key: bytes) -> bytes | None:
        slot = self._find(key)
        if slot is None:
            return None
        assert self._backing is not None
        off = self._voff(slot)
        n = self._vper * self._stride() if self.percpu else self.value_size
        return bytes(self._backing.view[off:off + n])

    def _set(self, key: bytes, raw: bytes, flags: int) -> int:
        return self._upsert(key, raw, flags, True)

    def _del(self, key: bytes) -> int:
        return self._remove(key)

    def _raw_keys(self) -> Iterator[bytes]:
        self._sync()
        return iter(list(self._index))
