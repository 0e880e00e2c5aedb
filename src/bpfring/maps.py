"""BPF maps other than rings: element access through the bpf() syscall.

A :class:`Map` comes from a loaded object (``obj.maps[name]``) or from an fd,
a pin path or an id.  Keys and values are bytes-like here; typed access from
BTF builds on top of this class.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _sys
from ._libbpf import cstr, lib

if TYPE_CHECKING:
    from .object import BPFObject

__all__ = ["Map"]


class Map:
    """A BPF map: its identity and raw element operations."""

    def __init__(self, fd: int, *, name: str = "", _owned: bool = False) -> None:
        self._obj: BPFObject | None = None
        self._ptr: int | None = None
        self._fd = fd
        self._owned = _owned
        info = _sys.map_info(fd)
        self.name = name or info.name
        self.type = info.type
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.internal = False

    @classmethod
    def _from_libbpf(cls, obj: BPFObject, ptr: int) -> Map:
        self = cls.__new__(cls)
        self._obj, self._ptr, self._fd, self._owned = obj, ptr, -1, False
        self.name = cstr(lib.bpf_map__name(ptr))
        self.type = lib.bpf_map__type(ptr)
        self.key_size = lib.bpf_map__key_size(ptr)
        self.value_size = lib.bpf_map__value_size(ptr)
        self.max_entries = lib.bpf_map__max_entries(ptr)
        self.internal = bool(lib.bpf_map__is_internal(ptr))
        return self

    def _loaded(self) -> None:
        # Sizes may change at load (libbpf rounds ring sizes up to a valid size).
        self.max_entries = lib.bpf_map__max_entries(self._ptr)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Map:
        return cls(_sys.obj_get(os.fspath(path)), _owned=True)

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        return cls(_sys.map_get_fd_by_id(map_id), _owned=True)

    @property
    def section(self) -> str | None:
        """For global-variable maps, the ELF section (``.bss``, ``.rodata``, ...)."""
        if not self.internal:
            return None
        i = self.name.find(".")
        return self.name[i:] if i >= 0 else None

    @property
    def fd(self) -> int:
        if self._ptr is not None:
            if self._obj is not None:
                self._obj._check_open()
            fd = lib.bpf_map__fd(self._ptr)
            if fd < 0:
                raise ValueError(f"map {self.name!r} has no fd: the object is not loaded")
            return fd
        return self._fd

    @property
    def type_name(self) -> str:
        return _sys.MAP_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def info(self) -> _sys.MapInfo:
        return _sys.map_info(self.fd)

    @property
    def id(self) -> int:
        return self.info.id

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map on a bpffs so other processes can open it by path."""
        from ._fs import ensure_bpffs

        ensure_bpffs()
        _sys.obj_pin(self.fd, os.fspath(path))

    # raw element operations --------------------------------------------------------

    def _value_buf(self) -> bytearray:
        if self.type in _sys.PERCPU_MAP_TYPES:
            return bytearray(((self.value_size + 7) & ~7) * _sys.possible_cpus())
        return bytearray(self.value_size)

    def lookup_raw(self, key: bytes) -> bytes | None:
        val = self._value_buf()
        return bytes(val) if _sys.map_lookup(self.fd, key, val) else None

    def update_raw(self, key: bytes, value: bytes, flags: int = _sys.ANY) -> None:
        _sys.map_update(self.fd, key, value, flags)

    def delete_raw(self, key: bytes) -> bool:
        return _sys.map_delete(self.fd, key)

    def keys_raw(self) -> Iterator[bytes]:
        key = None
        fd = self.fd
        while (key := _sys.map_next_key(fd, key, self.key_size)) is not None:
            yield key

    def items_raw(self) -> Iterator[tuple[bytes, bytes]]:
        for k in self.keys_raw():
            v = self.lookup_raw(k)
            if v is not None:
                yield k, v

    def close(self) -> None:
        if self._owned and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Map {self.name} {self.type_name} key={self.key_size} " \
               f"value={self.value_size} max_entries={self.max_entries}>"
