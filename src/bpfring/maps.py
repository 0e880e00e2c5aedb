"""BPF maps other than rings: element access through the bpf() syscall.

A :class:`Map` comes from a loaded object (``obj.maps[name]``) or from an fd,
a pin path, an id or a :class:`~bpfring.MapRef`.  Keys and values are typed
from BTF when the map has it: ``m[5] = {"count": 1}``, ``m.lookup(5).count``;
bytes-like keys and values of the right size always work, and numpy arrays
feed the kernel's batch operations.  Encoding and size checks are those of
:class:`~bpfring._elements.ElementCodec`, which :class:`~bpfring.MapBridge`
shares.

Who owns the fd: a map opened here (fd, pin, id, reference) holds its own
:class:`~bpfring._fd.OwnedFD` and closes it in :meth:`Map.close`; a map of a
BPF object uses libbpf's fd, valid from load until the object is closed.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _sys
from ._elements import ElementCodec, percpu_stride
from ._fd import OwnedFD
from ._fs import ensure_bpffs
from ._libbpf import cstr, lib
from .errors import BPFError, MapTypeError
from .mapref import MapRef

if TYPE_CHECKING:
    from .btf import BTF, Codec
    from .object import BPFObject
    from .ringbuf import RingBuffer, UserRingBuffer

__all__ = ["Map"]

_MISSING = object()
_MAP_OF_MAPS = (12, 13)  # BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS
# bpf() errnos meaning "this map type has no batch lookup" (524: ENOTSUPP).
_NO_BATCH = (_errno.EINVAL, _errno.ENOTSUP, 524)


class _Shape(NamedTuple):
    """What a map is: read from the kernel (fd) or from libbpf (object maps)."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    internal: bool
    key_type_id: int
    value_type_id: int
    #: where the BTF type ids point: 0 with ``object_btf``: the object's BTF;
    #: else the kernel BTF object of that id (0: no types)
    btf_id: int
    object_btf: bool = False


class _InObject(NamedTuple):
    """A map of a :class:`~bpfring.BPFObject`: the object and libbpf's ``struct bpf_map *``."""

    obj: BPFObject
    ptr: int


def _libbpf_shape(ptr: int, name: str | None = None) -> _Shape:
    return _Shape(
        name=cstr(lib.bpf_map__name(ptr)) if name is None else name,
        type=int(lib.bpf_map__type(ptr)),
        key_size=int(lib.bpf_map__key_size(ptr)),
        value_size=int(lib.bpf_map__value_size(ptr)),
        max_entries=int(lib.bpf_map__max_entries(ptr)),
        internal=bool(lib.bpf_map__is_internal(ptr)),
        key_type_id=int(lib.bpf_map__btf_key_type_id(ptr)),
        value_type_id=int(lib.bpf_map__btf_value_type_id(ptr)),
        btf_id=0,
        object_btf=True,
    )


class Map:
    """A BPF map: its identity, and typed or raw element operations.

    ``Map(fd)`` duplicates ``fd`` (the caller keeps its own) and ``Map(owned)``
    takes over an :class:`~bpfring._fd.OwnedFD`; either way :meth:`close`
    closes the map's descriptor.
    """

    def __init__(self, fd: int | OwnedFD, *, name: str = "") -> None:
        owned = fd if isinstance(fd, OwnedFD) else OwnedFD.dup(fd, "map")
        try:
            info = _sys.map_info(owned.fileno())
        except BaseException:
            owned.close()
            raise
        self._init(_Shape(name or info.name, info.type, info.key_size, info.value_size,
                          info.max_entries, False, info.btf_key_type_id,
                          info.btf_value_type_id, info.btf_id))
        owned.what = f"map {self.name!r}"
        self._owned: OwnedFD | None = owned
        self._in_object: _InObject | None = None

    def _init(self, shape: _Shape) -> None:
        self.name = shape.name
        #: True for the maps libbpf makes for global variables (.bss, .data, ...)
        self.internal = shape.internal
        self._shape = shape
        self._codecs: tuple[ElementCodec, ElementCodec] | None = None
        # The inner-map prototype user space gave (what the getter returns),
        # our duplicate of its fd (libbpf keeps the number, not a reference),
        # and the read-only view of a prototype the object itself declares.
        self._inner: Map | RingBuffer | UserRingBuffer | None = None
        self._inner_fd: OwnedFD | None = None
        self._declared_inner: Map | None = None
        #: set on the view of a declared prototype: the outer map's name
        self._prototype_of: str | None = None

    # The map's definition.  For a map of an opened object that is not loaded
    # yet every one of these can be set (libbpf's bpf_map__set_*): that is how
    # user space configures what the BPF C leaves open (a ring's size, a map's
    # type for the libbpf-tools ring/perf switch, ...).  Elsewhere they are
    # read-only.

    @property
    def type(self) -> int:
        """The map type (``BPF_MAP_TYPE_*``)."""
        return self._shape.type

    @type.setter
    def type(self, value: int) -> None:
        self._set("type", lib.bpf_map__set_type, int(value))

    @property
    def key_size(self) -> int:
        return self._shape.key_size

    @key_size.setter
    def key_size(self, value: int) -> None:
        self._set("key_size", lib.bpf_map__set_key_size, int(value))

    @property
    def value_size(self) -> int:
        return self._shape.value_size

    @value_size.setter
    def value_size(self, value: int) -> None:
        self._set("value_size", lib.bpf_map__set_value_size, int(value))

    @property
    def max_entries(self) -> int:
        """Entries (bytes for ring buffers; libbpf rounds a ring up to a power
        of two pages at load; 0 for a perf event array: one per CPU)."""
        return self._shape.max_entries

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        self._set("max_entries", lib.bpf_map__set_max_entries, int(value))

    @property
    def flags(self) -> int:
        """``map_flags`` (``BPF_F_*``)."""
        where = self._in_object
        if where is not None and not where.obj.closed:
            return int(lib.bpf_map__map_flags(where.ptr))
        return self.info.flags

    @flags.setter
    def flags(self, value: int) -> None:
        self._set("flags", lib.bpf_map__set_map_flags, int(value))

    @property
    def autocreate(self) -> bool:
        """Whether load creates this map (off: the programs using it must not
        be loaded either, as with the libbpf-tools ``heap`` map)."""
        where = self._in_object
        return bool(lib.bpf_map__autocreate(where.ptr)) if where is not None else True

    @autocreate.setter
    def autocreate(self, value: bool) -> None:
        self._set("autocreate", lib.bpf_map__set_autocreate, bool(value))

    @property
    def pin_path(self) -> str | None:
        """Where libbpf pins the map at load, reusing a map already pinned
        there (``None``: not pinned)."""
        where = self._in_object
        if where is None:
            return None
        return cstr(lib.bpf_map__pin_path(where.ptr)) or None

    @pin_path.setter
    def pin_path(self, value: str | os.PathLike[str] | None) -> None:
        if value is not None:
            ensure_bpffs(os.path.dirname(os.path.abspath(value)) or "/")
        self._set("pin_path", lib.bpf_map__set_pin_path,
                  None if value is None else os.fsencode(value))

    @property
    def inner_map(self) -> Map | RingBuffer | UserRingBuffer | None:
        """For a map-in-map (array/hash of maps): the prototype of its inner
        maps.  Set it before load to a :class:`Map`, a
        :class:`~bpfring.RingBuffer` or a :class:`~bpfring.UserRingBuffer`
        (for example ``RingBuffer.create(4096)`` for an array of ring
        buffers): only its kind and sizes matter, and the ring may be closed
        afterwards (bpfring keeps its own duplicate until the load).  Unset,
        it is None, or, when the BPF C declares the inner maps itself
        (``__array(values, struct ...)``), a read-only :class:`Map`
        describing that declaration: libbpf 1.1 crashes when its own
        prototype is changed, so changing it raises :class:`BPFError`
        instead; replace it with a prototype made here."""
        if self._inner is not None:
            return self._inner
        where = self._in_object
        if self._declared_inner is None and where is not None and not where.obj.closed \
                and not where.obj.loaded:
            ptr = lib.bpf_map__inner_map(where.ptr)
            if ptr:
                # A snapshot: libbpf frees its prototype at load, so the view
                # never touches the pointer again.
                view = Map.__new__(Map)
                view._init(_libbpf_shape(ptr))
                view._owned = None
                view._in_object = None
                view._prototype_of = self.name
                self._declared_inner = view
        return self._declared_inner

    @inner_map.setter
    def inner_map(self, value: Map | RingBuffer | UserRingBuffer) -> None:
        from .ringbuf import RingBuffer, UserRingBuffer  # ring I/O, a lower layer

        if isinstance(value, Map):
            fd = value.fd
        elif isinstance(value, RingBuffer | UserRingBuffer):
            fd = value.fileno()
        else:
            raise TypeError(f"map {self.name!r}: inner_map takes a Map, RingBuffer or "
                            f"UserRingBuffer, not {type(value).__name__}")
        self._settable("inner_map")
        if self.type not in _MAP_OF_MAPS:
            raise MapTypeError(f"map {self.name!r} is a {self.type_name} map, not a map of "
                               "maps: it has no inner map",
                               hint="inner_map applies to array_of_maps and hash_of_maps")
        if self._inner_fd is not None:
            # libbpf 1.1 refuses a second inner_map_fd (EINVAL): say why.
            raise BPFError(f"map {self.name!r}: inner_map is already set",
                           errno=_errno.EEXIST,
                           hint="set the inner map prototype once, before obj.load()")
        own = OwnedFD.dup(fd, f"inner map prototype of map {self.name!r}")
        try:
            self._set("inner_map", lib.bpf_map__set_inner_map_fd, own.fileno())
        except BaseException:
            own.close()
            raise
        where = self._in_object
        assert where is not None  # _set checked it
        where.obj.adopt(own)  # closed with the object if it is never loaded
        self._inner_fd = own
        self._inner = value
        self._declared_inner = None  # libbpf dropped its own prototype

    def _set(self, what: str, setter: Any, value: object) -> None:
        """Apply a libbpf ``bpf_map__set_*`` to a map of an opened, not yet
        loaded object, then re-read the definition."""
        where = self._settable(what)
        ret = int(setter(where.ptr, value))
        if ret < 0:
            raise _sys.error_from_errno(-ret, f"setting {what} of map {self.name!r} to "
                                              f"{value!r}")
        self._shape = _libbpf_shape(where.ptr, self.name)
        self._codecs = None

    def _settable(self, what: str) -> _InObject:
        """The object of a map whose ``what`` may be set now, or the error
        that says why not."""
        where = self._in_object
        if self._prototype_of is not None:
            outer = self._prototype_of
            raise BPFError(f"map {outer!r}: the inner map prototype its BPF C declares cannot "
                           f"be changed ({what}); libbpf 1.1 would crash",
                           hint=f"give a prototype of the size you want instead: "
                                f"obj.maps[{outer!r}].inner_map = "
                                "bpfring.RingBuffer.create(size) (or a Map)")
        if where is None:
            raise BPFError(f"map {self.name!r}: {what} of an existing kernel map cannot change",
                           hint=f"set {what} on obj.maps[...] between bpfring.open() and "
                                "obj.load()")
        if where.obj.closed:
            raise ValueError(f"map {self.name!r}: its BPF object is closed")
        if where.obj.loaded:
            raise BPFError(f"map {self.name!r}: cannot set {what} after load",
                           hint=f"open with bpfring.open(), set {what}, then call obj.load()")
        return where

    @classmethod
    def _from_libbpf(cls, obj: BPFObject, ptr: int) -> Map:
        """A map of ``obj`` (used by :class:`~bpfring.BPFObject` only)."""
        self = cls.__new__(cls)
        self._init(_libbpf_shape(ptr))
        self._owned = None
        self._in_object = _InObject(obj, ptr)
        return self

    def _object_loaded(self) -> None:
        """Called by the object after load: libbpf may have changed sizes (it
        rounds ring sizes up to a valid size).  An inner-map prototype has
        served its purpose: our duplicate of its fd is closed."""
        if self._in_object is not None:
            self._shape = _libbpf_shape(self._in_object.ptr, self.name)
        if self._inner_fd is not None:
            self._inner_fd.close()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Map:
        """Open a map pinned on a bpffs."""
        return cls(OwnedFD(_sys.obj_get(os.fspath(path)), "map"))

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        """Open a map by its kernel id."""
        return cls(OwnedFD(_sys.map_get_fd_by_id(map_id), "map"))

    @classmethod
    def from_ref(cls, ref: MapRef | str) -> Map:
        """Open a map named by a :class:`~bpfring.MapRef` or its string form."""
        if isinstance(ref, str):
            ref = MapRef.parse(ref)
        return cls(ref.open_owned())

    # identity ------------------------------------------------------------------------

    @property
    def section(self) -> str | None:
        """For global-variable maps, the ELF section (``.bss``, ``.rodata``, ...)."""
        if not self.internal:
            return None
        i = self.name.find(".")
        return self.name[i:] if i >= 0 else None

    @property
    def fd(self) -> int:
        """The map's file descriptor (owned by this Map, or by libbpf for a map
        of a loaded object).  :class:`ValueError` once closed; for a map of an
        object that is not loaded yet, a :class:`BPFError` saying so."""
        owned = self._owned
        if owned is not None:
            return owned.fileno()
        if self._prototype_of is not None:
            raise BPFError(f"the inner map prototype of map {self._prototype_of!r} is a "
                           "definition only: it has no fd",
                           hint="the inner maps are the values of the outer map after load")
        where = self._in_object
        assert where is not None
        if where.obj.closed:
            raise ValueError(f"map {self.name!r}: its BPF object is closed")
        fd = int(lib.bpf_map__fd(where.ptr))
        if fd < 0:
            raise BPFError(f"map {self.name!r} has no fd yet: its BPF object "
                           f"{where.obj.name!r} is not loaded",
                           hint="load it first (obj.load(), or bpfring.load() instead of "
                                "open_object())")
        return fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or, for a map of an object,
        once the object is closed)."""
        if self._owned is not None:
            return self._owned.closed
        if self._in_object is None:  # the view of a declared inner prototype
            return False
        return self._in_object.obj.closed

    @property
    def type_name(self) -> str:
        return _sys.MAP_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def info(self) -> _sys.MapInfo:
        """The kernel's ``struct bpf_map_info`` of the map (one system call)."""
        return _sys.map_info(self.fd)

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def percpu(self) -> bool:
        return self.type in _sys.PERCPU_MAP_TYPES

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map on a bpffs so other processes can open it by path."""
        ensure_bpffs()
        _sys.obj_pin(self.fd, os.fspath(path))

    def reuse_fd(self, fd: int) -> None:
        """Make this map of an opened, not yet loaded object use the existing
        kernel map ``fd`` instead of creating a new one at load (libbpf's
        ``bpf_map__reuse_fd``; libbpf takes its own duplicate, the caller keeps
        ``fd``).  Key, value and size then come from that map."""
        where = self._in_object
        if where is None:
            raise BPFError(f"map {self.name!r} is not part of a BPF object",
                           hint="reuse_fd() applies to obj.maps[...] before load")
        if where.obj.closed:
            raise ValueError(f"map {self.name!r}: its BPF object is closed")
        if where.obj.loaded:
            raise BPFError(f"map {self.name!r}: its BPF object is already loaded",
                           hint="call reuse_fd() between open_object() and obj.load()")
        info = _sys.map_info(fd)
        ret = int(lib.bpf_map__reuse_fd(where.ptr, fd))
        if ret < 0:
            raise _sys.error_from_errno(-ret, f"reusing map fd {fd} for map {self.name!r}")
        # libbpf took the other map's definition (and name); we keep our name,
        # which is how obj.maps knows the map.  Its BTF type ids belong to the
        # other map's BTF, not to this object's.
        self._init(_Shape(self.name, info.type, info.key_size, info.value_size,
                          info.max_entries, self.internal, info.btf_key_type_id,
                          info.btf_value_type_id, info.btf_id))

    def initial_value(self) -> memoryview:
        """For a global-section map of an object that is not loaded yet: the
        image libbpf will load into it, writable in place.  The view points
        into libbpf's memory: use it at once, do not keep it past load or close."""
        where = self._in_object
        if where is None or not self.internal:
            raise BPFError(f"map {self.name!r} is not a global-variable map of a BPF object")
        if where.obj.closed:
            raise ValueError(f"map {self.name!r}: its BPF object is closed")
        size = ctypes.c_size_t()
        ptr = lib.bpf_map__initial_value(where.ptr, ctypes.byref(size))
        if not ptr:
            raise BPFError(f"global section {self.section} is not accessible")
        return memoryview((ctypes.c_char * size.value).from_address(ptr)).cast("B")

    # types ---------------------------------------------------------------------------

    def _btf(self) -> BTF | None:
        if self._shape.object_btf:
            assert self._in_object is not None
            return self._in_object.obj.btf
        if not self._shape.btf_id:
            return None
        from .btf import BTF

        with OwnedFD(_sys.btf_get_fd_by_id(self._shape.btf_id), "BTF object") as bfd:
            return BTF.from_bytes(_sys.btf_raw(bfd.fileno()))

    def _element_codecs(self) -> tuple[ElementCodec, ElementCodec]:
        codecs = self._codecs
        if codecs is None:
            btf = self._btf()
            shape = self._shape
            kt: Codec | None = btf.codec(shape.key_type_id) if btf and shape.key_type_id else None
            vt: Codec | None = (btf.codec(shape.value_type_id)
                                if btf and shape.value_type_id else None)
            codecs = self._codecs = (ElementCodec("key", self.key_size, kt),
                                     ElementCodec("value", self.value_size, vt))
        return codecs

    @property
    def key_codec(self) -> ElementCodec:
        """How keys become bytes (and back): from BTF when the map has it."""
        return self._element_codecs()[0]

    @property
    def value_codec(self) -> ElementCodec:
        """How values become bytes (one CPU's slot for per-CPU maps)."""
        return self._element_codecs()[1]

    @property
    def key_type(self) -> Codec | None:
        """The BTF codec of the key type, or None (then keys are bytes)."""
        return self.key_codec.btf_type

    @property
    def value_type(self) -> Codec | None:
        """The BTF codec of the value type, or None (then values are bytes)."""
        return self.value_codec.btf_type

    def _key(self, key: Any) -> bytes:
        return self.key_codec.encode(key)

    def _stride(self) -> int:
        return percpu_stride(self.value_size)

    def _value(self, value: Any) -> bytes:
        """Encode a value; for per-CPU maps, one value for all CPUs or a list per
        CPU; for maps of maps, a Map or ring (its fd) or an fd number."""
        vc = self.value_codec
        if self.type in _MAP_OF_MAPS:
            value = _inner_fd_of(value)
        if not self.percpu:
            return vc.encode(value)
        ncpu = _sys.possible_cpus()
        vt = vc.btf_type
        # A list of ncpu values is one per CPU, unless the value type is itself
        # an array (then the list is one value, the same on every CPU).
        if isinstance(value, list | tuple) and len(value) == ncpu and \
                not (vt is not None and vt.record_class is None and vt.dtype.shape):
            per = list(value)
        else:
            per = [value] * ncpu
        stride = self._stride()
        return b"".join(vc.encode(v).ljust(stride, b"\0") for v in per)

    def _decode_value(self, raw: bytes | bytearray | memoryview) -> Any:
        vc = self.value_codec
        if self.type in _MAP_OF_MAPS and vc.btf_type is None and len(raw) == 4:
            # A lookup from user space gives the inner map's id, not an fd.
            return int.from_bytes(raw, "little")
        if self.percpu:
            stride = self._stride()
            return [vc.decode(raw[i * stride:i * stride + self.value_size])
                    for i in range(len(raw) // stride)]
        return vc.decode(raw)

    def _decode_key(self, raw: bytes) -> Any:
        return self.key_codec.decode(raw)

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

    def update_batch(self, keys: Iterable[Any], values: Iterable[Any],
                     flags: int = _sys.ANY) -> int:
        """BPF_MAP_UPDATE_BATCH: set many entries with one system call.

        ``keys``/``values`` are sequences of typed values or bytes, or numpy
        arrays whose itemsize is the key/value size.  Returns the count."""
        krows = self.key_codec.rows(keys)
        nk = len(krows)
        if self.percpu:
            vbuf, nv = bytearray(b"".join(self._value(v) for v in values)), nk
        else:
            vrows = self.value_codec.rows(values)
            vbuf, nv = bytearray(vrows.tobytes()), len(vrows)
        if nk != nv:
            raise ValueError(f"{nk} keys but {nv} values")
        if nk == 0:
            return 0
        return _sys.map_update_batch(self.fd, bytearray(krows.tobytes()), vbuf, nk, flags)

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
            if e.errno in _NO_BATCH:
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
        """Close the map's own fd (idempotent); a map of an object closes with it."""
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Map {self.name} {self.type_name} key={self.key_size} " \
               f"value={self.value_size} max_entries={self.max_entries}>"


def _inner_fd_of(value: Any) -> Any:
    """The fd a map-of-maps update stores for ``value``: a :class:`Map`'s or a
    ring's map fd; anything else (an fd number, bytes) as given."""
    from .ringbuf import RingBuffer, UserRingBuffer  # ring I/O, a lower layer

    if isinstance(value, Map):
        return value.fd
    if isinstance(value, RingBuffer | UserRingBuffer):
        return value.fileno()
    return value
