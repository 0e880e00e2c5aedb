"""The BTF data model: type kinds and the decoded, immutable type records.

Nothing here reads bytes or builds codecs: :mod:`._reader` fills these
records in from a blob, :mod:`._builder` turns them into codecs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

BTF_MAGIC = 0xEB9F
VMLINUX_PATH = "/sys/kernel/btf/vmlinux"
SYS_BTF_DIR = "/sys/kernel/btf"

# BTF_INT_ENCODING bits of an INT record.
INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4

MAX_CHAIN = 64  # longest typedef/modifier chain we follow before calling it a loop
#: Deepest nesting of structs/arrays a codec is built for (the kernel's verifier
#: allows 32); deeper BTF, or a type containing itself, raises BTFError.
MAX_DEPTH = 64
#: Largest ``sizeof`` of any type we build a codec of (also bounds nelems x element
#: size): BTF input is untrusted, and a codec's encode() allocates its size.
MAX_SIZE = 1 << 28
#: Most elements of an array of zero-sized elements (each still decodes to a value).
MAX_EMPTY_ELEMS = 4096


class Kind(enum.IntEnum):
    """BTF type kinds (``BTF_KIND_*`` in ``include/uapi/linux/btf.h``)."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


#: Kinds that only qualify or rename another type: followed to reach a layout.
MODIFIERS = frozenset({Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG})
#: Kinds that ``btf.record(name)`` considers when no kind is given, best first.
LAYOUT_ORDER = {
    Kind.STRUCT: 0, Kind.UNION: 0, Kind.TYPEDEF: 1, Kind.ENUM: 2, Kind.ENUM64: 2,
    Kind.INT: 3, Kind.FLOAT: 3,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Member:
    """A struct/union member.  ``bitfield_size`` is 0 unless the member is a bitfield
    (for structs without kind_flag, see :meth:`BTF.member_bits`)."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0

    @property
    def offset(self) -> int:
        """Byte offset of the member (of its first byte, for a bitfield)."""
        return self.bit_offset // 8


@dataclass(frozen=True, slots=True)
class Enumerator:
    """One ``NAME = value`` of an enum (value already sign-interpreted)."""

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Param:
    """A FUNC_PROTO parameter; ``type_id`` 0 with no name marks ``...``."""

    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class VarSecInfo:
    """One entry of a DATASEC: a VAR (or extern FUNC) type and where it lives."""

    type_id: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Type:
    """One decoded BTF type record.

    Common fields are always set; the kind-specific ones keep their defaults
    for other kinds.  ``size`` is the record's size field (INT, ENUM, ENUM64,
    STRUCT, UNION, DATASEC, FLOAT); ``type_id`` the referenced type (PTR,
    TYPEDEF, modifiers, FUNC, FUNC_PROTO's return type, VAR, DECL_TAG,
    TYPE_TAG).  Use :meth:`BTF.sizeof` for the size of any type.
    """

    id: int
    kind: Kind
    name: str
    kind_flag: bool = False
    vlen: int = 0
    size: int = 0
    type_id: int = 0
    # INT
    encoding: int = 0
    bits: int = 0
    int_offset: int = 0
    # ARRAY
    elem_type_id: int = 0
    index_type_id: int = 0
    nelems: int = 0
    # STRUCT / UNION, ENUM / ENUM64, FUNC_PROTO, DATASEC
    members: tuple[Member, ...] = ()
    enumerators: tuple[Enumerator, ...] = ()
    # ENUM: signed although kind_flag is clear (BTF from clang < 15, which
    # never sets it; see BTF.enum_signs_marked)
    signed_enum: bool = False
    params: tuple[Param, ...] = ()
    secinfos: tuple[VarSecInfo, ...] = ()
    # VAR linkage, FUNC linkage (vlen)
    linkage: int = 0
    # DECL_TAG
    component_idx: int = -1

    @property
    def signed(self) -> bool:
        """Signedness of an INT (encoding) or ENUM/ENUM64 (kind_flag)."""
        if self.kind == Kind.INT:
            return bool(self.encoding & INT_SIGNED)
        if self.kind in (Kind.ENUM, Kind.ENUM64):
            return self.kind_flag or self.signed_enum
        return False

    @property
    def is_bool(self) -> bool:
        return self.kind == Kind.INT and bool(self.encoding & INT_BOOL)

    @property
    def is_char(self) -> bool:
        """Plain ``char`` (or an INT with the CHAR encoding bit): arrays become ``str``."""
        return (
            self.kind == Kind.INT
            and self.size == 1
            and (bool(self.encoding & INT_CHAR) or self.name == "char")
        )

    @property
    def fwd_union(self) -> bool:
        """For FWD: True if it declares a union, False for a struct."""
        return self.kind == Kind.FWD and self.kind_flag


#: Type id 0.
VOID = Type(0, Kind.UNKN, "void")
