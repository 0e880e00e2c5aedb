"""The public face of a compiled layout: :class:`Codec`."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

from ..errors import BTFError
from ._fast import record_decoder
from ._layout import Atom, BitField, Compiled, Decoder, EncoderInto, Field, Node, StructNode
from ._records import Record

if TYPE_CHECKING:
    from array import array
    from mmap import mmap

#: The buffers :meth:`Codec.decode_array` (``numpy.frombuffer``) reads.
ArrayBuffer: TypeAlias = "bytes | bytearray | memoryview | mmap | array[Any] | npt.NDArray[Any]"


class Codec:
    """Converts one C type between bytes and Python values.

    ``decode(buffer, offset=0)`` decodes one value from a bytes-like object at
    ``offset``; ``encode_into(buffer, offset, value)`` encodes ``value`` into a
    writable buffer at ``offset`` (padding is zeroed).  Both are generated
    functions stored on the instance (no method-binding cost per call); for a
    struct, ``decode`` is the C decoder of :mod:`._fast` when the accelerator
    is in use (the same records, faster).
    Attributes:

    * ``name`` -- the C name the codec was asked for (``"event"``, ``"pid_t"``)
    * ``size`` -- ``sizeof`` the type
    * ``dtype`` -- numpy dtype with the same layout (offsets, padding, itemsize)
    * ``fields`` -- member names of a struct/union (else ``()``)
    * ``record_class`` -- the :class:`Record` subclass (structs/unions) or None
    * ``enum`` -- the :class:`enum.IntEnum` class (enums) or None
    * ``bitfields`` -- ``{name: BitField}`` for a struct's own bitfields
    * ``format`` -- the ``struct`` format used for decoding
    """

    decode: Decoder
    """Decode one value from ``buffer`` (bytes-like) at ``offset``."""
    encode_into: EncoderInto
    """Encode ``value`` into a writable buffer at ``offset`` (padding is zeroed)."""

    def __init__(self, node: Node, name: str, compiled: Compiled | None = None) -> None:
        self._node = node
        self._compiled = compiled if compiled is not None else Compiled(node, name)
        self.name = name
        self.size = node.size
        self.decode = self._compiled.decode
        if isinstance(node, StructNode) and not node.union:
            # structs decode in C when the accelerator is in use (same records; see _fast)
            fast = record_decoder(node, self.decode)
            if fast is not None:
                self.decode = fast
        self.encode_into = self._compiled.encode_into
        self.record_class: type[Record] | None = (
            node.cls if isinstance(node, StructNode) else None
        )
        self.fields: tuple[str, ...] = tuple(node.fields) if isinstance(node, StructNode) else ()
        self.enum: type[IntEnum] | None = node.enum_class if isinstance(node, Atom) else None
        self.format: str = self._compiled.struct.format
        self._dtype: np.dtype[Any] | None = None

    @property
    def dtype(self) -> np.dtype[Any]:
        """numpy dtype with the exact C layout: nested structs are nested dtypes,
        arrays subarrays, ``char[N]`` is ``S<N>``, unions overlap, bitfields are
        their storage (see :attr:`bitfields`)."""
        if self._dtype is None:
            try:
                self._dtype = np.dtype(self._node.np_format())
            except (ValueError, TypeError) as e:  # layouts numpy refuses (hostile BTF)
                raise BTFError(f"{self.name}: no numpy dtype for this layout ({e})") from None
        return self._dtype

    @property
    def bitfields(self) -> dict[str, BitField]:
        node = self._node
        return node.bitfields() if isinstance(node, StructNode) else {}

    @property
    def member_bitfields(self) -> dict[tuple[str, ...], dict[str, BitField]]:
        """:attr:`bitfields` of the nested struct members, by path of member
        names (``("bf",)`` for ``rec.bf``), each relative to that member's
        own dtype; members that are arrays of structs are not walked."""
        out: dict[tuple[str, ...], dict[str, BitField]] = {}

        def walk(node: Node, path: tuple[str, ...]) -> None:
            for e in node.entries if isinstance(node, StructNode) else ():
                if isinstance(e, Field) and isinstance(e.node, StructNode):
                    sub = (*path, e.pyname)
                    if bits := e.node.bitfields():
                        out[sub] = bits
                    walk(e.node, sub)

        walk(self._node, ())
        return out

    def encode(self, obj: Any = None, /, **fields: Any) -> bytes:
        """Encode a value to exactly :attr:`size` bytes.  For structs, ``obj`` may
        be a record, a dict or None, and keyword arguments set (or override)
        fields; anything unset is zero."""
        if fields:
            if obj is None:
                obj = fields
            elif isinstance(obj, Record):
                obj = {**{f: getattr(obj, f) for f in obj._fields}, **fields}
            elif isinstance(obj, Mapping):
                obj = {**obj, **fields}
            else:
                raise TypeError("keyword fields need a struct/union codec and a dict or record")
        return self._compiled.pack(obj)

    def new(self, **fields: Any) -> Any:
        """A zero-initialised value with some fields set (decode of encode)."""
        return self.decode(self.encode(**fields) if fields else bytes(self.size))

    def padded(self) -> Codec:
        """This codec for records the BPF side may cut short: ``decode`` of a
        buffer shorter than :attr:`size` reads it as if zero-padded.

        Tools with a large trailing array send only the part they filled
        (bcc's execsnoop: ``bpf_perf_event_output(..., EVENT_SIZE(e))``, the
        header plus ``args_size`` bytes of ``args[7680]``); ``record=
        obj.types["event"].padded()`` decodes those samples.  Everything
        else, encoding included, is this codec's."""
        short = Codec.__new__(Codec)
        short.__dict__.update(self.__dict__)
        full, size = self.decode, self.size

        def decode(buffer: Any, offset: int = 0) -> Any:
            have = len(memoryview(buffer).cast("B")) - offset
            if 0 <= have < size:
                return full(bytes(memoryview(buffer).cast("B")[offset:]) + bytes(size - have))
            return full(buffer, offset)

        short.decode = decode
        return short

    def decode_array(
        self, buffer: ArrayBuffer, count: int = -1, offset: int = 0
    ) -> npt.NDArray[Any]:
        """Many packed values at once, as a numpy structured array (no copy)."""
        if self.size == 0:  # numpy has no arrays of zero-sized items
            raise BTFError(f"{self.name} has size 0: there is no array of it to decode")
        return np.frombuffer(buffer, dtype=self.dtype, count=count, offset=offset)

    def __repr__(self) -> str:
        return f"<Codec {self.name} size={self.size}>"
