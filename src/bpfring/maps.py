"""BPF maps other than rings: element access through the bpf() syscall.

A :class:`Map` comes from a loaded object (``obj.maps[name]``) or from an fd,
a pin path, an id or a :class:`~bpfring.MapRef`.  Keys and values are typed
from BTF when the map has it: ``m[5] = {"count": 1}``, ``m.lookup(5).count``;
bytes-like keys and values of the right size always work, and numpy arrays
feed the kernel's batch operations.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import _sys
from ._libbpf import cstr, lib
from .errors import BPFError

if TYPE_CHECKING:
    from .object import BPFObject

__all__ = ["Map"]

_MISSING = object()
_BUFFERS = (bytes, bytearray, memoryview)


class Map:
    """A BPF map: its identity, and typed or raw element operations."""

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
        self._key_type_id = info.btf_key_type_id
        self._value_type_id = info.btf_value_type_id
        self._btf_id = info.btf_id
        self._codecs: tuple[Any, Any] | None = None

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
        self._key_type_id = lib.bpf_map__btf_key_type_id(ptr)
        self._value_type_id = lib.bpf_map__btf_value_type_id(ptr)
        self._btf_id = 0
        self._codecs = None
        return self

    def _loaded(self) -> None:
        # Sizes may change at load (libbpf rounds ring sizes up to a valid size).
        self.max_entries = lib.bpf_map__max_entries(self._ptr)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Map:
        """Open a map pinned on a bpffs."""
        return cls(_sys.obj_get(os.fspath(path)), _owned=True)

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        return cls(_sys.map_get_fd_by_id(map_id), _owned=True)

    @classmethod
    def from_ref(cls, ref) -> Map:
        """Open a map named by a :class:`~bpfring.MapRef` or its string form."""
        from .mapref import MapRef

        if isinstance(ref, str):
            ref = MapRef.parse(ref)
        return cls(ref.open(), _owned=True)

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
        if self._fd < 0:
            raise ValueError(f"map {self.name!r} is closed")
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

    @property
    def percpu(self) -> bool:
        return self.type in _sys.PERCPU_MAP_TYPES

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map on a bpffs so other processes can open it by path."""
        from ._fs import ensure_bpffs

        ensure_bpffs()
        _sys.obj_pin(self.fd, os.fspath(path))

    # types ---------------------------------------------------------------------------

    def _load_codecs(self) -> tuple[Any, Any]:
        if self._codecs is None:
            btf = None
            if self._obj is not None:
                btf = self._obj.btf
            elif self._btf_id:
                from .btf import BTF

                bfd = _sys.btf_get_fd_by_id(self._btf_id)
                try:
                    btf = BTF.from_bytes(_sys.btf_raw(bfd))
                finally:
                    os.close(bfd)
            kc = btf.codec(self._key_type_id) if btf and self._key_type_id else None
            vc = btf.codec(self._value_type_id) if btf and self._value_type_id else None
            self._codecs = (kc, vc)
        return self._codecs

    @property
    def key_type(self):
        """The BTF codec of the key type, or None (then keys are bytes)."""
        return self._load_codecs()[0]

    @property
    def value_type(self):
        """The BTF codec of the value type, or None (then values are bytes)."""
        return self._load_codecs()[1]

    @staticmethod
    def _raw(value: Any, size: int, codec: Any, what: str) -> bytes:
        if isinstance(value, _BUFFERS):
            raw = bytes(value)
        elif hasattr(value, "tobytes") and getattr(value, "nbytes", None) == size:
            raw = value.tobytes()  # numpy scalar or row
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
        return (self.value_size + 7) & ~7

    def _value(self, value: Any) -> bytes:
        """Encode a value; for per-CPU maps, one value for all CPUs or a list per CPU."""
        vc = self.value_type
        if not self.percpu:
            return self._raw(value, self.value_size, vc, "value")
        ncpu = _sys.possible_cpus()
        if isinstance(value, list | tuple) and len(value) == ncpu and \
                not (vc is not None and vc.record_class is None and vc.dtype.shape):
            per = list(value)
        else:
            per = [value] * ncpu
        stride = self._stride()
        return b"".join(self._raw(v, self.value_size, vc, "value").ljust(stride, b"\0")
                        for v in per)

    def _decode_value(self, raw: bytes | memoryview) -> Any:
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

    # element operations --------------------------------------------------------------

    def _value_buf(self) -> bytearray:
        if self.percpu:
            return bytearray(self._stride() * _sys.possible_cpus())
        return bytearray(self.value_size)

    def lookup(self, key: Any, default: Any = None) -> Any:
        """The value at ``key`` (typed), or ``default`` when absent.  Per-CPU
        maps give a list with one value per possible CPU."""
        val = self._value_buf()
        if not _sys.map_lookup(self.fd, self._key(key), val):
            return default
        return self._decode_value(val)

    def __getitem__(self, key: Any) -> Any:
        val = self.lookup(key, _MISSING)
        if val is _MISSING:
            raise KeyError(key)
        return val

    def update(self, key: Any, value: Any, flags: int = _sys.ANY) -> None:
        """Set ``key`` to ``value``; ``flags``: 0 any, 1 only if new (NOEXIST),
        2 only if present (EXIST)."""
        _sys.map_update(self.fd, self._key(key), self._value(value), flags)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def delete(self, key: Any) -> bool:
        """Delete ``key``; False when it was absent."""
        return _sys.map_delete(self.fd, self._key(key))

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        return _sys.map_lookup(self.fd, self._key(key), self._value_buf())

    def _raw_keys(self) -> Iterator[bytes]:
        key = None
        fd = self.fd
        while (key := _sys.map_next_key(fd, key, self.key_size)) is not None:
            yield key

    def keys(self) -> Iterator[Any]:
        for k in self._raw_keys():
            yield self._decode_key(k)

    __iter__ = keys

    def items(self) -> Iterator[tuple[Any, Any]]:
        for k in self._raw_keys():
            val = self._value_buf()
            if _sys.map_lookup(self.fd, k, val):  # may vanish meanwhile
                yield self._decode_key(k), self._decode_value(val)

    def values(self) -> Iterator[Any]:
        for _, v in self.items():
            yield v

    def __len__(self) -> int:
        return sum(1 for _ in self._raw_keys())

    # batch operations ----------------------------------------------------------------

    def _pack(self, items: Any, size: int, enc, what: str) -> tuple[bytearray, int]:
        itemsize = getattr(getattr(items, "dtype", None), "itemsize", None)
        if itemsize == size and getattr(items, "ndim", 1) == 1:
            import numpy as np

            arr = np.ascontiguousarray(items)
            return bytearray(arr.tobytes()), len(arr)
        parts = [enc(x) for x in items]
        return bytearray(b"".join(parts)), len(parts)

    def update_batch(self, keys: Iterable[Any], values: Iterable[Any],
                     flags: int = _sys.ANY) -> int:
        """BPF_MAP_UPDATE_BATCH: set many entries with one system call.

        ``keys``/``values`` are sequences of typed values or bytes, or numpy
        arrays whose itemsize is the key/value size.  Returns the count."""
        kbuf, nk = self._pack(keys, self.key_size, self._key, "key")
        if self.percpu:
            vbuf, nv = bytearray(b"".join(self._value(v) for v in values)), nk
        else:
            vbuf, nv = self._pack(values, self.value_size, self._value, "value")
        if nk != nv:
            raise ValueError(f"{nk} keys but {nv} values")
        if nk == 0:
            return 0
        return _sys.map_update_batch(self.fd, kbuf, vbuf, nk, flags)

    def lookup_batch(self, chunk: int = 1024) -> Iterator[tuple[bytes, bytes]]:
        """Raw (key, value) pairs read with BPF_MAP_LOOKUP_BATCH, ``chunk`` per call."""
        vstride = self._stride() * _sys.possible_cpus() if self.percpu else self.value_size
        token_size = max(self.key_size, 8)
        in_batch: bytearray | None = None
        fd = self.fd
        while True:
            keys = bytearray(chunk * self.key_size)
            vals = bytearray(chunk * vstride)
            out_batch = bytearray(token_size)
            n, done = _sys.map_lookup_batch(fd, keys, vals, chunk, in_batch, out_batch)
            for i in range(n):
                yield (bytes(keys[i * self.key_size:(i + 1) * self.key_size]),
                       bytes(vals[i * vstride:(i + 1) * vstride]))
            if done:
                return
            in_batch = out_batch

    def items_batch(self, chunk: int = 1024) -> Iterator[tuple[Any, Any]]:
        """Like :meth:`items`, with far fewer system calls (falls back to
        :meth:`items` where the map type has no batch lookup)."""
        try:
            pairs = list(self.lookup_batch(chunk))
        except BPFError as e:
            if e.errno in (_errno.EINVAL, _errno.ENOTSUP, 524):
                yield from self.items()
                return
            raise
        for k, v in pairs:
            yield self._decode_key(k), self._decode_value(v)

    # raw access (kept for tools) -----------------------------------------------------

    def lookup_raw(self, key: bytes) -> bytes | None:
        val = self._value_buf()
        return bytes(val) if _sys.map_lookup(self.fd, key, val) else None

    def update_raw(self, key: bytes, value: bytes, flags: int = _sys.ANY) -> None:
        _sys.map_update(self.fd, key, value, flags)

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
