"""Map elements: the one place where keys and values become the exact bytes a
BPF map stores, and back.

:class:`Map` (one bpf() call per element, or batches) and
:class:`~bpfring.MapBridge` (operations queued in a user ring) both encode
through an :class:`ElementCodec`, so a key or value is accepted, converted and
size-checked the same way whichever path it takes: bytes-like objects of the
right size always work; with the map's BTF type, Python values too (ints,
dicts or records for structs, ``str`` for ``char`` arrays, numpy scalars and
rows).  A wrong size is an :class:`ElementSizeError` raised in Python, before
anything reaches the kernel.

numpy is imported only by :meth:`ElementCodec.rows` (batches), so plain
element access does not pay for it.
"""

from __future__ import annotations

import errno as _errno
import struct
from typing import TYPE_CHECKING, Any

from .errors import BPFError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .btf import Codec

__all__ = ["ElementCodec", "ElementSizeError", "percpu_stride"]

_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


class ElementSizeError(BPFError, ValueError):
    """A key or value does not have the map's size (rejected before any system
    call or ring write)."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("errno", _errno.EINVAL)
        kw.setdefault("hint", "pass exactly the map's key/value size in bytes, or a value "
                              "of the map's BTF type")
        super().__init__(message, **kw)


def percpu_stride(value_size: int) -> int:
    """Bytes one CPU's slot takes in a per-CPU value as bpf() passes it: the
    kernel rounds every slot up to 8 bytes (``round_up(value_size, 8)``)."""
    return (value_size + 7) & ~7


class ElementCodec:
    """Keys (``what="key"``) or values of one map <-> the bytes the map stores.

    ``btf_type`` is the map's BTF codec for them (:class:`bpfring.btf.Codec`)
    or None, in which case only bytes-like objects (and plain ints for 1, 2, 4
    or 8 bytes) are accepted.  For per-CPU maps a value codec describes one
    CPU's slot; the per-CPU layout is the caller's business.
    """

    __slots__ = ("_int", "btf_type", "dtype", "size", "what")

    def __init__(self, what: str, size: int, btf_type: Codec | None) -> None:
        self.what = what
        self.size = size
        self.btf_type = btf_type
        dt = None
        if btf_type is not None:
            try:
                dt = btf_type.dtype
            except (BPFError, TypeError, ValueError):  # a type numpy cannot lay out
                dt = None
        #: the numpy dtype of one element (None without BTF, or when its
        #: itemsize is not the map's size)
        self.dtype: np.dtype[Any] | None = dt if dt is not None and dt.itemsize == size else None
        # Plain integers (the common key) skip the BTF codec: struct packs them faster.
        self._int: struct.Struct | None = None
        if self.dtype is not None and self.dtype.names is None and \
                self.dtype.kind in "iu" and size in _INT_CODES:
            code = _INT_CODES[size]
            self._int = struct.Struct("<" + (code.upper() if self.dtype.kind == "u" else code))

    def wrong_size(self, n: int) -> ElementSizeError:
        """The error for an element of ``n`` bytes."""
        return ElementSizeError(f"{self.what} of {n} bytes, but the map's {self.what}s are "
                                f"{self.size} bytes")

    def encode(self, value: Any) -> bytes:
        """``value`` as exactly :attr:`size` bytes (:class:`ElementSizeError`
        otherwise; :class:`TypeError`/:class:`ValueError` from the BTF codec
        say what else is wrong)."""
        if type(value) is bytes:  # the fast paths first: bytes, ints
            raw = value
        elif type(value) is int and self._int is not None:
            try:
                return self._int.pack(value)
            except struct.error:
                raw = self._generic(value)  # out of range: the BTF codec says so
        elif isinstance(value, bytearray | memoryview):
            raw = bytes(value)
        else:
            raw = self._generic(value)
        if len(raw) != self.size:
            raise self.wrong_size(len(raw))
        return raw

    def _generic(self, value: Any) -> bytes:
        if hasattr(value, "tobytes") and getattr(value, "nbytes", None) == self.size:
            out: bytes = value.tobytes()  # a numpy scalar or row
            return out
        if self.btf_type is not None:
            return self.btf_type.encode(value)
        if isinstance(value, int) and self.size in _INT_CODES:
            try:
                return value.to_bytes(self.size, "little", signed=value < 0)
            except OverflowError:
                raise ValueError(f"{value} does not fit in a {self.size}-byte "
                                 f"{self.what}") from None
        raise TypeError(f"{self.what} must be {self.size} bytes (the map has no BTF type "
                        f"for it), not {type(value).__name__}")

    def decode(self, raw: bytes | bytearray | memoryview) -> Any:
        """One element from its bytes: a typed value with BTF, else ``bytes``."""
        if self.btf_type is not None:
            return self.btf_type.decode(raw)
        return bytes(raw)

    def rows(self, data: Any) -> npt.NDArray[Any]:
        """``data`` as a C-contiguous array with one row of exactly ``size``
        bytes per element: a numpy array (1-D numbers are cast to the BTF
        type; rows of the right size pass as they are, without a copy), one
        bytes-like object of n * size bytes, or a sequence of values accepted
        by :meth:`encode`."""
        import numpy as np

        if isinstance(data, np.ndarray):
            a = data
            if a.ndim == 0:
                raise ValueError(f"{self.what}s must be an array of rows, not a scalar")
            dt = self.dtype
            if dt is not None and a.dtype is not dt and a.ndim == 1 and \
                    dt.kind in "biuf" and a.dtype.kind in "biuf" and a.dtype != dt and \
                    not (a.dtype.itemsize == dt.itemsize and a.dtype.kind in "iu" and
                         dt.kind in "iu"):
                a = a.astype(dt)  # numbers of another type: cast (same-size ints: as is)
            if not a.flags.c_contiguous:
                a = np.ascontiguousarray(a)
            n = len(a)
            if n and a.nbytes != n * self.size:
                raise self.wrong_size(a.nbytes // n)
            return a
        if isinstance(data, bytes | bytearray | memoryview):
            buf = memoryview(data).cast("B")
            if buf.nbytes % self.size:
                raise self.wrong_size(buf.nbytes)
            return np.frombuffer(buf, np.uint8).reshape(-1, self.size)
        encoded = b"".join(self.encode(x) for x in data)
        return np.frombuffer(encoded, np.uint8).reshape(-1, self.size)

    def __repr__(self) -> str:
        typed = self.btf_type.name if self.btf_type is not None else "bytes"
        return f"<ElementCodec {self.what} size={self.size} {typed}>"
