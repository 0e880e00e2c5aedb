"""Pure-Python BTF (BPF Type Format) reader and record codecs.

BTF describes the C types of a BPF program (and of the kernel itself).  This
module parses raw BTF blobs, the ``.BTF`` section of ELF objects and the
kernel's ``/sys/kernel/btf/vmlinux``, and turns a C type into a *codec* that
converts between bytes (a ring buffer sample, a map value, a global section)
and Python values, so that Python and BPF agree on one layout: the one the
compiler actually produced.

Quick tour::

    btf = BTF.from_elf("prog.bpf.o")          # or load(path_or_bytes), BTF.vmlinux()
    event = btf.record("event")                # "struct event", typedef names work too
    rec = event.decode(sample)                 # -> event(pid=12, comm='bash', ...)
    rec.pid, rec._asdict()                     # attributes; nested plain dicts
    data = event.encode(pid=1, comm="x")       # unset fields are zero
    event.dtype                                # numpy dtype with the exact C layout
    btf.datasec(".bss")                        # global variables: name, offset, size, codec

Parsing is lazy so that the 5-6 MB kernel BTF loads in tens of milliseconds:
loading makes one pass that records where every type record starts; a type
is decoded only when it is asked for; a name lookup searches the string
section for the name and then compares the name offsets of all types in one
vectorised numpy operation (results are cached per name).

Value mapping (decode; encode accepts the same and is lenient where noted):

=============================  ==============================================
C type                         Python value
=============================  ==============================================
signed/unsigned int 1-8 bytes  ``int`` (``__int128`` and other sizes too)
``_Bool``                      ``bool``
``float``/``double``           ``float``
pointer                        ``int`` (the address; BPF pointers are 8 bytes)
enum                           member of an :class:`enum.IntEnum` built from
                               the BTF enum; a value that is not an enumerator
                               decodes as a plain ``int``.  Encoding also
                               accepts an enumerator name (``str``).
``char[N]``                    ``str`` cut at the first NUL, UTF-8 decoded with
                               ``errors="replace"``; encoding accepts ``str``
                               or ``bytes``, truncated or NUL-padded to N
other arrays                   ``list`` (nested lists for multi-dimensional
                               arrays); encoding pads short lists with zeros
struct / union                 a :class:`Record`; encoding accepts a record,
                               a ``dict`` (missing keys are zero) or ``None``
bitfields                      ``int``/``bool``/enum, sign-extended when signed
typedef/const/volatile/...     resolved to the underlying type
=============================  ==============================================

Records (see :class:`Record`): attribute access (``rec.pid``), item access
(``rec["pid"]``, for C names that are Python keywords), ``rec._fields``,
``rec._asdict()`` (the one conversion: deep, nested records become dicts and
arrays lists; records are not mappings, so ``dict(rec)`` is not supported),
``rec._replace(**changes)``, ``bytes(rec)``, equality with records of the same
C type, and a readable ``repr`` such as ``event(pid=12, comm='bash')``.  The
members of an anonymous struct/union member are reachable directly
(``rec.a`` for ``struct { union { int a; ... }; }``), as in C; the member
itself is stored as ``_anon0``, ``_anon1``, ... .

Unions decode every member.  A decoded union record remembers its bytes;
encoding it rewrites only the members whose values changed since (like
assigning one member in C), so it round-trips exactly.  A union given as a
dict is written member by member in declaration order, skipping a member
whose value already matches the bytes so far; to set one member, give only
that member.

``char[N]`` means plain ``char`` (or the BTF CHAR encoding): ``unsigned
char``/``__u8``/``signed char`` arrays are lists of ints.  In
:attr:`Codec.dtype` a run of bitfields sharing bytes becomes one unsigned
storage field named ``"a|b|c"``; :attr:`Codec.bitfields` says where each
bitfield sits in it and :meth:`BitField.extract` pulls it out of an array.

Global variables: ``btf.datasec(name)`` lists the variables of a data section
(``.bss``, ``.data``, ``.rodata``, ``.data.foo`` ...).  The blob is taken as
it is: in ELF ``.o`` files straight from clang, DATASEC sizes and variable
offsets are often 0, because libbpf (and the static linker, ``bpftool gen
object``) fills them in from the ELF symbol table only when it opens the
object.  BTF read back from the kernel or from a linked object has the real
values.

Limits: little-endian BTF only (the BPF target of an x86/arm64 host); pointer
size is taken to be 8 bytes; ``long double`` and other floats that are not 2,
4 or 8 bytes decode as raw ``bytes``.  Enum signedness comes from kind_flag as
the current BTF spec says; clang before 15 never sets it, so with such objects
a negative enumerator reads as its unsigned 32-bit value (consistently for the
enum class and for decoded fields).
"""

from __future__ import annotations

import difflib
import enum
import itertools
import keyword
import math
import operator
import os
import struct
import threading
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .errors import BTFError, TypeNotFound

__all__ = [
    "BTF",
    "VMLINUX_PATH",
    "BitField",
    "Codec",
    "Enumerator",
    "Kind",
    "Member",
    "Param",
    "Record",
    "Type",
    "TypeMap",
    "VarSecInfo",
    "Variable",
    "elf_section",
    "load",
]

BTF_MAGIC = 0xEB9F
VMLINUX_PATH = "/sys/kernel/btf/vmlinux"
SYS_BTF_DIR = "/sys/kernel/btf"

INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4

_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, 4 x u32
_MAX_CHAIN = 64  # longest typedef/modifier chain we follow before calling it a loop


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


_KINDS = tuple(Kind)
# 32-bit words that follow the 12-byte common header of a type record: a fixed
# part plus a part per vlen entry.  None marks kinds that cannot appear.
_FIXED_WORDS: tuple[int | None, ...] = (
    None, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0,
) + (None,) * 12  # fmt: skip
_VLEN_WORDS: tuple[int | None, ...] = (
    None, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3,
) + (None,) * 12  # fmt: skip

_MODIFIERS = frozenset({Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG})
# Kinds that btf.record(name) considers when no kind is given, best first.
_LAYOUT_ORDER = {
    Kind.STRUCT: 0, Kind.UNION: 0, Kind.TYPEDEF: 1, Kind.ENUM: 2, Kind.ENUM64: 2,
    Kind.INT: 3, Kind.FLOAT: 3,
}  # fmt: skip
_KIND_WORDS: dict[str, frozenset[Kind]] = {k.name.lower(): frozenset({k}) for k in Kind}
_KIND_WORDS["enum"] = frozenset({Kind.ENUM, Kind.ENUM64})


# --------------------------------------------------------------------------------------
# Type records
# --------------------------------------------------------------------------------------


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
        return self.kind_flag if self.kind in (Kind.ENUM, Kind.ENUM64) else False

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


_VOID = Type(0, Kind.UNKN, "void")


@dataclass(frozen=True, slots=True)
class Variable:
    """A global variable of a data section (see :meth:`BTF.datasec`).

    ``offset``/``size`` are exactly what the DATASEC says (0 in unlinked
    ``.o`` files for many sections).  ``codec`` decodes the variable's type.
    """

    name: str
    offset: int
    size: int
    type_id: int
    linkage: int
    btf: BTF = field(repr=False, compare=False)

    @property
    def codec(self) -> Codec:
        return self.btf.codec(self.type_id, name=self.name)

    def decode(self, section: bytes | bytearray | memoryview) -> Any:
        """Decode this variable from the bytes of its whole section."""
        return self.codec.decode(section, self.offset)


@dataclass(frozen=True, slots=True)
class BitField:
    """Where a bitfield of a struct lives in the numpy :attr:`Codec.dtype`.

    ``storage`` is the dtype field holding it (named after the bitfields it
    holds, joined with ``|``), ``offset`` that field's byte offset, ``shift``
    and ``bits`` the bit position inside it (little-endian).
    """

    name: str
    storage: str
    offset: int
    shift: int
    bits: int
    signed: bool

    def extract(self, values: Any) -> Any:
        """Extract this bitfield from a numpy structured array (or record) of the codec's
        dtype, sign-extending signed fields."""
        raw = np.asarray(values[self.storage])
        if raw.dtype.kind == "V":
            raise BTFError(f"bitfield {self.name} lives in {raw.dtype.itemsize} raw bytes")
        x = (raw.astype(np.uint64) >> np.uint64(self.shift)) & np.uint64((1 << self.bits) - 1)
        if self.signed:
            sign = np.int64(1) << np.int64(self.bits - 1) if self.bits < 64 else None
            xi = x.astype(np.int64)
            return xi if sign is None else (xi ^ sign) - sign
        return x


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


class Record:
    """Base class of decoded structs and unions.

    One subclass is made per C type (named after it).  Fields are slots named
    after the C members; a C name that clashes with this API gets a trailing
    ``_``.  Records are mutable (set a field, then encode) and unhashable.
    Equality holds between records of the same C type name with equal field
    values.  Convert with :meth:`_asdict`; records are deliberately neither
    mappings nor iterable (so a C member called ``keys`` or ``items`` cannot
    shadow the API, and a record is never mistaken for a sequence).
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _name: ClassVar[str] = ""
    _union: ClassVar[bool] = False
    _anon: ClassVar[tuple[str, ...]] = ()
    _inner: ClassVar[frozenset[str]] = frozenset()  # fields of anonymous members
    _node: ClassVar[Any] = None
    __hash__ = None  # type: ignore[assignment]
    __iter__ = None  # type: ignore[assignment]

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Record):
            return NotImplemented
        return (
            self._name == other._name
            and self._fields == other._fields
            and self._values() == other._values()
        )

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={_value_repr(getattr(self, f, None))}" for f in self._fields)
        return f"{self._name}({inner})"

    def __getitem__(self, name: str) -> Any:
        """``rec["name"]``: for C names that are Python keywords (``rec["in"]``)."""
        if name in self._fields or name in self._inner:
            return getattr(self, name)
        raise KeyError(name)

    def _asdict(self) -> dict[str, Any]:
        """Plain nested ``dict``: records become dicts, arrays lists; enums stay IntEnum."""
        return {f: _plain(getattr(self, f)) for f in self._fields}

    def _replace(self, **changes: Any) -> Record:
        """A shallow copy with some fields changed."""
        cls = type(self)
        new = cls.__new__(cls)
        for f in self._fields:
            object.__setattr__(new, _slot_name(f), getattr(self, f))
        if self._union and hasattr(self, "_raw"):
            object.__setattr__(new, "_raw", self._raw)  # type: ignore[attr-defined]
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    def __bytes__(self) -> bytes:
        return self._node.codec().encode(self)


def _plain(x: Any) -> Any:
    if isinstance(x, Record):
        return x._asdict()
    if isinstance(x, list):
        return [_plain(e) for e in x]
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _value_repr(v: Any) -> str:
    if isinstance(v, enum.Enum):
        return f"{type(v).__name__}.{v.name}"
    if isinstance(v, list):
        return "[" + ", ".join(_value_repr(e) for e in v) + "]"
    return repr(v)


def _slot_name(field: str) -> str:
    # type() would mangle a slot called "__x" into "_Class__x"; store it under
    # a name that is not mangled and expose "__x" through a property.
    return "_p" + field if field.startswith("__") else field


_RESERVED = frozenset(dir(Record))


def _make_record_class(
    name: str, fields: list[str], union: bool, anon: list[tuple[str, frozenset[str]]]
) -> type[Record]:
    """Create the Record subclass for one C struct/union, with a positional
    ``__init__`` generated for speed (decode calls it once per record)."""
    slots = [_slot_name(f) for f in fields]
    args = ", ".join(f"a{k}" for k in range(len(fields)))
    body = []
    for k, s in enumerate(slots):
        if anon or keyword.iskeyword(s):
            body.append(f"    _osa(self, {s!r}, a{k})")
        else:
            body.append(f"    self.{s} = a{k}")
    src = f"def __init__(self{', ' if args else ''}{args}):\n" + ("\n".join(body) or "    pass")
    ns: dict[str, Any] = {"_osa": object.__setattr__}
    exec(src, ns)
    cls_ns: dict[str, Any] = {
        "__slots__": (*slots, "_raw") if union else tuple(slots),
        "__init__": ns["__init__"],
        "_fields": tuple(fields),
        "_name": name,
        "_union": union,
        "_anon": tuple(a for a, _ in anon),
    }
    if anon:
        owner = {inner: slot for slot, keys in anon for inner in keys}

        def __getattr__(self: Record, attr: str) -> Any:  # C-style anonymous members
            slot = owner.get(attr)
            if slot is None:
                raise AttributeError(f"{name!r} record has no field {attr!r}")
            return getattr(getattr(self, slot), attr)

        def __setattr__(self: Record, attr: str, value: Any) -> None:
            slot = owner.get(attr)
            if slot is not None and attr not in fields:
                setattr(getattr(self, slot), attr, value)
            else:
                object.__setattr__(self, _slot_name(attr), value)

        cls_ns["__getattr__"] = __getattr__
        cls_ns["__setattr__"] = __setattr__
        cls_ns["_inner"] = frozenset(owner)
    cls = type(name, (Record,), cls_ns)
    for f, s in zip(fields, slots, strict=True):
        if s != f:
            desc = cls.__dict__[s]
            setattr(cls, f, property(desc.__get__, desc.__set__))
    return cls


# --------------------------------------------------------------------------------------
# Runtime helpers used by generated code
# --------------------------------------------------------------------------------------


def _cstr(b: bytes) -> str:
    return b.partition(b"\0")[0].decode("utf-8", "replace")


def _senc(x: Any) -> bytes:
    if x is None:
        return b""
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x)
    raise TypeError(f"expected str or bytes for a char array, got {type(x).__name__}")


def _raw(x: Any) -> bytes:
    if x is None:
        return b""
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x)
    raise TypeError(f"expected bytes, got {type(x).__name__}")


def _nest(flat: list[Any], shape: tuple[int, ...]) -> list[Any]:
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_nest(flat[j : j + step], shape[1:]) for j in range(0, len(flat), step)]


def _flat_arr(
    x: Any, shape: tuple[int, ...], enc: Callable[[Any], Any] | None, zero: Any, path: str
) -> list[Any]:
    """Flatten a (nested) sequence for an array of atoms: convert, pad, check length."""
    if x is None:
        return [zero] * math.prod(shape)
    if isinstance(x, str):
        raise TypeError(f"{path}: a str is not valid for an array of non-char values")
    seq = list(x)
    n = shape[0]
    if len(seq) > n:
        raise ValueError(f"{path}: {len(seq)} elements for an array of {n}")
    if len(shape) > 1:
        out: list[Any] = []
        for e in seq:
            out.extend(_flat_arr(e, shape[1:], enc, zero, path))
        out.extend([zero] * (math.prod(shape[1:]) * (n - len(seq))))
        return out
    seq = [enc(e) for e in seq] if enc is not None else [zero if e is None else e for e in seq]
    seq.extend([zero] * (n - len(seq)))
    return seq


def _seq(x: Any, n: int, path: str) -> list[Any]:
    """An array of structs (or of arrays of structs): pad with None to n."""
    if x is None:
        return [None] * n
    seq = list(x)
    if len(seq) > n:
        raise ValueError(f"{path}: {len(seq)} elements for an array of {n}")
    return seq + [None] * (n - len(seq))


def _none_get(_name: str) -> None:
    return None


def _getter(
    val: Any, keys: frozenset[str], cname: str, cls: type | None = None
) -> Callable[[str], Any]:
    """How to read fields from an encode input: a record, a mapping or None."""
    if type(val) is cls:  # a record of this very type: every field is there
        return val.__getattribute__  # type: ignore[no-any-return]
    if val is None:
        return _none_get
    if isinstance(val, Mapping):
        if not keys.issuperset(val):
            unknown = ", ".join(sorted(map(str, set(val) - keys)))
            raise TypeError(f"{cname} has no field(s) {unknown}")
        return val.get
    if isinstance(val, Record):
        return lambda name: getattr(val, name, None)
    raise TypeError(
        f"cannot encode {type(val).__name__} as {cname}: expected a record, dict or None"
    )


def _anon_get(val: Any, get: Callable[[str], Any], slot: str, keys: frozenset[str]) -> Any:
    """The value of an anonymous member: given as ``_anonN`` or as its inner names."""
    x = get(slot)
    if x is not None or not isinstance(val, Mapping):
        return x
    sub = {k: v for k, v in val.items() if k in keys}
    return sub or None


def _bits_in(x: Any, bits: int, enc: Callable[[Any], Any] | None, path: str) -> int:
    if enc is not None:
        x = enc(x)
    x = operator.index(x)
    if not -(1 << (bits - 1)) <= x < (1 << bits):
        raise ValueError(f"{path}: {x} does not fit in a {bits}-bit field")
    return x & ((1 << bits) - 1)


def _le(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _same(decoded: Any, given: Any) -> bool:
    """Whether an encode input already matches decoded bytes (NaN matches NaN)."""
    try:
        return _eq(_plain(decoded), _plain(given))
    except Exception:  # odd inputs: just write them
        return False


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(map(_eq, a, b))
    return bool(a == b)


_HELPERS: dict[str, Any] = {
    "_nest": _nest,
    "_flat_arr": _flat_arr,
    "_seq": _seq,
    "_getter": _getter,
    "_anon_get": _anon_get,
    "_bits_in": _bits_in,
    "_le": _le,
    "_StructError": struct.error,
}


# --------------------------------------------------------------------------------------
# Layout nodes and code generation
# --------------------------------------------------------------------------------------


class _Gen:
    """State for generating one decode expression / encode body: the flat list of
    ``struct`` items it reads (offset, size, code, number of values, path) and
    the namespace holding the objects the code refers to."""

    def __init__(self, ns: dict[str, Any], counter: Iterator[int], base: str | None) -> None:
        self.ns = ns
        self.counter = counter
        self.base = base
        self.items: list[tuple[int, int, str, int, str]] = []
        self.nvals = 0

    def add(self, off: int, size: int, code: str, nvals: int, path: str) -> int:
        k = self.nvals
        self.items.append((off, size, code, nvals, path))
        self.nvals += nvals
        return k

    def idx(self, k: int) -> str:
        if self.base is None:
            return str(k)
        return self.base if k == 0 else f"{self.base}+{k}"

    def v(self, k: int) -> str:
        return f"v[{self.idx(k)}]"

    def sl(self, k: int, n: int) -> str:
        return f"v[{self.idx(k)}:{self.idx(k + n)}]"

    def sym(self, obj: Any, prefix: str = "_c") -> str:
        ids: dict[int, str] = self.ns.setdefault("__ids__", {})
        name = ids.get(id(obj))
        if name is None:
            name = f"{prefix}{next(self.counter)}"
            ids[id(obj)] = name
            self.ns[name] = obj
        return name

    def tmp(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    def sub(self, base: str) -> _Gen:
        return _Gen(self.ns, self.counter, base)


class _Node:
    """A piece of C layout.  ``gen_dec`` registers the struct items it reads and
    returns a Python expression building the value; ``gen_enc`` emits
    statements appending the values to pack, in the same order."""

    size: int = 0
    atom: bool = False

    def np_format(self) -> Any:
        raise NotImplementedError

    def gen_dec(self, g: _Gen, off: int, path: str) -> str:
        raise NotImplementedError

    def gen_enc(self, g: _Gen, val: str, lines: list[str], ind: str, path: str) -> None:
        raise NotImplementedError

    def codec(self) -> Codec:
        c = getattr(self, "_codec", None)
        if c is None:
            c = Codec(self, getattr(self, "label", "value"))
            self._codec = c
        return c


class _Atom(_Node):
    """A value read as one ``struct`` item: scalars, char arrays, unions, raw bytes.
    ``code`` is the item (``"I"``, ``"16s"``); ``single`` codes can be repeated
    as ``"<n><code>"`` for arrays."""

    atom = True

    def __init__(
        self,
        size: int,
        code: str,
        np_fmt: Any,
        *,
        dec: Callable[[Any], Any] | None = None,
        dec_map: dict[int, Any] | None = None,
        enc: Callable[[Any], Any] | None = None,
        zero: Any = 0,
        label: str = "value",
    ) -> None:
        self.size = size
        self.code = code
        self.single = len(code) == 1
        self._np = np_fmt
        self.dec = dec
        self.dec_map = dec_map
        self.enc = enc
        self.zero = zero
        self.label = label

    def np_format(self) -> Any:
        return self._np() if callable(self._np) else self._np

    def dec_expr(self, g: _Gen, x: str) -> str:
        if self.dec_map is not None:
            m = g.sym(self.dec_map, "_m")
            return f"{m}.get({x}, {x})"
        if self.dec is not None:
            return f"{g.sym(self.dec, '_f')}({x})"
        return x

    def enc_expr(self, g: _Gen, x: str) -> str:
        if self.enc is not None:
            return f"{g.sym(self.enc, '_f')}({x})"
        return f"{self.zero!r} if {x} is None else {x}"

    def gen_dec(self, g: _Gen, off: int, path: str) -> str:
        return self.dec_expr(g, g.v(g.add(off, self.size, self.code, 1, path)))

    def gen_enc(self, g: _Gen, val: str, lines: list[str], ind: str, path: str) -> None:
        lines.append(f"{ind}_a({self.enc_expr(g, val)})")


class _Array(_Node):
    """A C array.  Arrays of atoms (also multi-dimensional) are read as one flat
    run of items; arrays of structs repeat the element's items."""

    def __init__(self, elem: _Node, n: int) -> None:
        self.elem = elem
        if isinstance(elem, _Array) and elem.base.atom:
            self.base: _Node = elem.base
            self.shape: tuple[int, ...] = (n, *elem.shape)
        else:
            self.base = elem
            self.shape = (n,)
        self.size = n * elem.size
        self.label = getattr(elem, "label", "value") + f"[{n}]"

    def np_format(self) -> Any:
        if self.base.atom:
            return (self.base.np_format(), self.shape)
        return (self.elem.np_format(), self.shape[:1])

    def gen_dec(self, g: _Gen, off: int, path: str) -> str:
        if isinstance(self.base, _Atom):
            base = self.base
            total = math.prod(self.shape)
            if base.single:
                k = g.add(off, self.size, f"{total}{base.code}", total, path)
            else:
                k = g.nvals
                for j in range(total):
                    g.add(off + j * base.size, base.size, base.code, 1, f"{path}[{j}]")
            conv = base.dec_expr(g, "x")
            seq = g.sl(k, total)
            flat = f"list({seq})" if conv == "x" else f"[{conv} for x in {seq}]"
            if len(self.shape) > 1:
                flat = f"_nest({flat}, {self.shape!r})"
            return flat
        n, esize = self.shape[0], self.elem.size
        if n <= 4:
            parts = [self.elem.gen_dec(g, off + j * esize, f"{path}[{j}]") for j in range(n)]
            return "[" + ", ".join(parts) + "]"
        sub = g.sub("i")
        expr = self.elem.gen_dec(sub, 0, "")
        fn = g.tmp("_fd")
        exec(f"def {fn}(v, i):\n    return {expr}\n", g.ns)
        start = g.nvals
        for j in range(n):
            for o, sz, code, nv, p in sub.items:
                g.add(off + j * esize + o, sz, code, nv, f"{path}[{j}]{p}")
        nv = sub.nvals
        if nv == 0:
            return f"[{fn}(v, 0) for _ in range({n})]"
        return f"[{fn}(v, j) for j in range({g.idx(start)}, {g.idx(start + n * nv)}, {nv})]"

    def gen_enc(self, g: _Gen, val: str, lines: list[str], ind: str, path: str) -> None:
        if isinstance(self.base, _Atom):
            enc = g.sym(self.base.enc, "_f") if self.base.enc is not None else "None"
            lines.append(
                f"{ind}_e(_flat_arr({val}, {self.shape!r}, {enc}, {self.base.zero!r}, {path!r}))"
            )
            return
        e = g.tmp("e")
        lines.append(f"{ind}for {e} in _seq({val}, {self.shape[0]}, {path!r}):")
        self.elem.gen_enc(g, e, lines, ind + "    ", path + "[]")


@dataclass(slots=True)
class _Field:
    pyname: str
    offset: int
    node: _Node
    anon_keys: frozenset[str] | None = None  # set for anonymous struct/union members


@dataclass(slots=True)
class _BitSpec:
    pyname: str
    bit: int  # absolute bit offset inside the struct
    bits: int
    signed: bool
    dec_map: dict[int, Any] | None
    enc: Callable[[Any], Any] | None
    is_bool: bool


class _Bits:
    """Consecutive bitfields whose bytes overlap, read as one storage item.
    The storage is the smallest byte span covering them, widened to 2/4/8 bytes
    when that does not run into the next member."""

    def __init__(self, first: _BitSpec) -> None:
        self.fields = [first]
        self.start = first.bit // 8
        self.end = (first.bit + first.bits + 7) // 8
        self.width = self.end - self.start
        self.np_start, self.np_width = self.start, self.width

    def overlaps(self, f: _BitSpec) -> bool:
        return f.bit // 8 < self.end

    def add(self, f: _BitSpec) -> None:
        self.fields.append(f)
        self.end = max(self.end, (f.bit + f.bits + 7) // 8)
        self.width = self.end - self.start
        self.np_start, self.np_width = self.start, self.width

    def widen(self, limit: int, size: int) -> None:
        """Pick the storage: for ``struct``, widen the span to 2/4/8 bytes if that
        stays before ``limit`` (the next member); for numpy, where fields may
        overlap, use a 1/2/4/8-byte unsigned int anywhere inside the struct so
        that the storage can always be shifted and masked."""
        n = self.end - self.start
        w = next((w for w in (1, 2, 4, 8) if w >= n), n)
        self.width = w if self.start + w <= limit else n
        self.np_start, self.np_width = self.start, self.width
        if w <= 8 and w <= size:
            self.np_width = w
            self.np_start = min(self.start, size - w)

    @property
    def code(self) -> str:
        return {1: "B", 2: "H", 4: "I", 8: "Q"}.get(self.width, f"{self.width}s")

    @property
    def storage(self) -> str:
        return "|".join(f.pyname for f in self.fields)

    def np_format(self) -> str:
        w = self.np_width
        return f"<u{w}" if w in (1, 2, 4, 8) else f"V{w}"

    def gen_dec(self, g: _Gen, off: int, path: str) -> list[str]:
        k = g.add(off + self.start, self.width, self.code, 1, f"{path}.{{{self.storage}}}")
        x = g.v(k) if self.width in (1, 2, 4, 8) else f"_le({g.v(k)})"
        out = []
        for f in self.fields:
            sh = f.bit - self.start * 8
            mask = (1 << f.bits) - 1
            e = f"({x} & {mask})" if sh == 0 else f"(({x} >> {sh}) & {mask})"
            if f.signed:
                sb = 1 << (f.bits - 1)
                e = f"(({e} ^ {sb}) - {sb})"
            if f.dec_map is not None:
                e = f"{g.sym(f.dec_map, '_m')}.get({e}, {e})"
            elif f.is_bool:
                e = f"({e} != 0)"
            out.append(e)
        return out

    def gen_enc(self, g: _Gen, get: str, lines: list[str], ind: str, path: str) -> None:
        b = g.tmp("b")
        lines.append(f"{ind}{b} = 0")
        for f in self.fields:
            sh = f.bit - self.start * 8
            enc = g.sym(f.enc, "_f") if f.enc is not None else "None"
            p = f"{path}.{f.pyname}"
            lines.append(f"{ind}x = {get}({f.pyname!r})")
            lines.append(
                f"{ind}if x is not None: {b} |= _bits_in(x, {f.bits}, {enc}, {p!r}) << {sh}"
            )
        if self.width in (1, 2, 4, 8):
            lines.append(f"{ind}_a({b})")
        else:
            lines.append(f"{ind}_a({b}.to_bytes({self.width}, 'little'))")


class _Struct(_Node):
    """A struct or union: decodes to a Record.  A union is read as raw bytes and
    decoded member by member (each member reads the same bytes)."""

    def __init__(
        self, name: str, size: int, entries: list[_Field | _Bits], union: bool, label: str
    ) -> None:
        self.name = name
        self.size = size
        self.entries = entries
        self.union = union
        self.label = label
        fields: list[str] = []
        anon: list[tuple[str, frozenset[str]]] = []
        keys: set[str] = set()
        for e in entries:
            if isinstance(e, _Bits):
                fields.extend(f.pyname for f in e.fields)
            else:
                fields.append(e.pyname)
                if e.anon_keys is not None:
                    anon.append((e.pyname, e.anon_keys))
                    keys |= e.anon_keys
        keys.update(fields)
        self.fields = fields
        self.keys = frozenset(keys)
        self.cls = _make_record_class(name, fields, union, anon)
        self.cls._node = self
        self._np: np.dtype | None = None
        self._union_codec: tuple[Callable[[Any], Any], Callable[[Any], bytes]] | None = None
        for i, e in enumerate(entries):
            if isinstance(e, _Bits):
                nxt = entries[i + 1] if i + 1 < len(entries) and not union else None
                limit = size if nxt is None else (
                    nxt.offset if isinstance(nxt, _Field) else nxt.start
                )
                e.widen(limit, size)

    # numpy -----------------------------------------------------------------------
    def np_format(self) -> np.dtype:
        if self._np is None:
            names, formats, offsets = [], [], []
            for e in self.entries:
                if isinstance(e, _Bits):
                    names.append(e.storage)
                    formats.append(e.np_format())
                    offsets.append(e.np_start)
                else:
                    names.append(e.pyname)
                    formats.append(e.node.np_format())
                    offsets.append(e.offset)
            self._np = np.dtype(
                {"names": names, "formats": formats, "offsets": offsets, "itemsize": self.size}
            )
        return self._np

    def bitfields(self) -> dict[str, BitField]:
        out = {}
        for e in self.entries:
            if isinstance(e, _Bits):
                for f in e.fields:
                    out[f.pyname] = BitField(
                        f.pyname, e.storage, e.np_start, f.bit - 8 * e.np_start, f.bits, f.signed
                    )
        return out

    # code generation ------------------------------------------------------------------
    def member_exprs(self, g: _Gen, off: int, path: str) -> list[str]:
        exprs: list[str] = []
        for e in self.entries:
            if isinstance(e, _Bits):
                exprs.extend(e.gen_dec(g, off, path))
            else:
                exprs.append(e.node.gen_dec(g, off + e.offset, f"{path}.{e.pyname}"))
        return exprs

    def member_enc(
        self, g: _Gen, val: str, get: str, lines: list[str], ind: str, path: str
    ) -> None:
        for e in self.entries:
            if isinstance(e, _Bits):
                e.gen_enc(g, get, lines, ind, path)
                continue
            x = g.tmp("x")
            if e.anon_keys is not None:
                keys = g.sym(e.anon_keys, "_k")
                lines.append(f"{ind}{x} = _anon_get({val}, {get}, {e.pyname!r}, {keys})")
            else:
                lines.append(f"{ind}{x} = {get}({e.pyname!r})")
            e.node.gen_enc(g, x, lines, ind, f"{path}.{e.pyname}")

    def gen_dec(self, g: _Gen, off: int, path: str) -> str:
        if self.union:
            k = g.add(off, self.size, f"{self.size}s", 1, path)
            return f"{g.sym(self.union_functions()[0], '_u')}({g.v(k)})"
        cls = g.sym(self.cls, "_C")
        return f"{cls}({', '.join(self.member_exprs(g, off, path))})"

    def gen_enc(self, g: _Gen, val: str, lines: list[str], ind: str, path: str) -> None:
        if self.union:
            lines.append(f"{ind}_a({g.sym(self.union_functions()[1], '_u')}({val}))")
            return
        get = g.tmp("g")
        keys = g.sym(self.keys, "_k")
        cls = g.sym(self.cls, "_C")
        lines.append(f"{ind}{get} = _getter({val}, {keys}, {self.name!r}, {cls})")
        self.member_enc(g, val, get, lines, ind, path)

    def union_members(self) -> list[tuple[str, int, _Compiled, frozenset[str] | None]]:
        """Each union member compiled on its own: (name, byte offset, layout, anon keys)."""
        out = []
        for e in self.entries:
            if isinstance(e, _Bits):
                for f in e.fields:
                    bits = _Bits(f)
                    one = _Compiled(_BitsRoot(bits), f"{self.name}.{f.pyname}")
                    out.append((f.pyname, bits.start, one, None))
            else:
                one = _Compiled(e.node, f"{self.name}.{e.pyname}")
                out.append((e.pyname, e.offset, one, e.anon_keys))
        return out

    def union_functions(self) -> tuple[Callable[[Any], Any], Callable[[Any], bytes]]:
        """(decode from bytes, encode to bytes) for a union."""
        if self._union_codec is None:
            members = self.union_members()
            size, cls, keys, name = self.size, self.cls, self.keys, self.name
            zero = bytes(size)

            def from_bytes(b: Any, offset: int = 0) -> Record:
                rec = cls(*[m.decode(b, offset + mo) for _, mo, m, _ in members])
                rec._raw = bytes(b[offset : offset + size])
                return rec

            def to_bytes(val: Any) -> bytes:
                if val is None:
                    return zero
                get = _getter(val, keys, name)
                raw = getattr(val, "_raw", None) if isinstance(val, Record) else None
                if raw is not None and len(raw) == size:
                    # A decoded union: keep its bytes, rewrite only the members changed since.
                    buf = bytearray(raw)
                    for pyname, mo, m, _k in members:
                        x = get(pyname)
                        if not _same(m.decode(raw, mo), x):
                            m.encode_into(buf, mo, x)
                    return bytes(buf)
                buf = bytearray(size)
                wrote = False
                for pyname, mo, m, anon_keys in members:
                    x = get(pyname) if anon_keys is None else _anon_get(val, get, pyname, anon_keys)
                    if x is None:
                        continue
                    if wrote and _same(m.decode(buf, mo), x):
                        continue
                    m.encode_into(buf, mo, x)
                    wrote = True
                return bytes(buf)

            self._union_codec = (from_bytes, to_bytes)
        return self._union_codec


class _BitsRoot(_Node):
    """A single bitfield as a top-level value (a bitfield member of a union)."""

    def __init__(self, bits: _Bits) -> None:
        self.bits = bits
        self.size = bits.width
        self.label = bits.fields[0].pyname
        self.shift = bits.start

    def np_format(self) -> Any:
        return self.bits.np_format()

    def gen_dec(self, g: _Gen, off: int, path: str) -> str:
        return self.bits.gen_dec(g, off - self.shift, path)[0]

    def gen_enc(self, g: _Gen, val: str, lines: list[str], ind: str, path: str) -> None:
        get = g.tmp("g")
        lines.append(f"{ind}{get} = lambda _n: {val}")
        self.bits.gen_enc(g, get, lines, ind, path)


def _struct_format(items: list[tuple[int, int, str, int, str]], size: int, label: str) -> str:
    fmt = ["<"]
    pos = 0
    for off, sz, code, _nv, path in items:
        if off < pos:
            raise BTFError(
                f"{label}: member {path.lstrip('.') or label} at offset {off} overlaps the "
                f"previous one (ends at {pos})",
                hint="DATASEC offsets are 0 in unlinked .o files; use BTF from a linked or "
                "loaded object" if label.startswith(".") else None,
            )
        if off > pos:
            fmt.append(f"{off - pos}x")
        fmt.append(code)
        pos = off + sz
    if pos > size:
        raise BTFError(f"{label}: members end at {pos}, beyond the type's size {size}")
    if size > pos:
        fmt.append(f"{size - pos}x")
    return "".join(fmt)


class _Compiled:
    """A node compiled to a ``struct.Struct`` plus generated decode/flatten functions."""

    def __init__(self, node: _Node, label: str) -> None:
        self.node = node
        self.label = label
        self.size = node.size
        if isinstance(node, _Struct) and node.union:
            from_bytes, to_bytes = node.union_functions()
            self.struct = struct.Struct(f"<{node.size}s")
            self.items = [(0, node.size, f"{node.size}s", 1, label)]
            pack_into = self.struct.pack_into

            def encode_into(buf: Any, offset: int, val: Any) -> None:
                pack_into(buf, offset, to_bytes(val))

            size = node.size

            def decode(buf: Any, offset: int = 0) -> Any:
                if len(buf) - offset < size or offset < 0:
                    raise _short(buf, offset, size, label)
                return from_bytes(buf, offset)

            self.decode = decode
            self.encode_into = encode_into
            self.flatten: Callable[[Any], list[Any]] = lambda val: [to_bytes(val)]
            return
        ns: dict[str, Any] = dict(_HELPERS)
        g = _Gen(ns, itertools.count(), None)
        expr = node.gen_dec(g, 0, "")
        self.items = g.items
        self.struct = struct.Struct(_struct_format(g.items, node.size, label))
        ns["_unpack"] = self.struct.unpack_from
        ns["_pack_into"] = self.struct.pack_into
        ns["_short"] = _short
        ns["_packerr"] = self.pack_error
        lines: list[str] = []
        node.gen_enc(g, "val", lines, "    ", "")
        src = (
            "def decode(buf, offset=0):\n"
            "    try:\n"
            "        v = _unpack(buf, offset)\n"
            "    except _StructError:\n"
            f"        raise _short(buf, offset, {node.size}, {label!r}) from None\n"
            f"    return {expr}\n"
            "\n"
            "def flatten(val):\n"
            "    o = []\n"
            "    _a = o.append\n"
            "    _e = o.extend\n"
            + "".join(line + "\n" for line in lines)
            + "    return o\n"
            "\n"
            "def encode_into(buf, offset, val):\n"
            "    o = flatten(val)\n"
            "    try:\n"
            "        _pack_into(buf, offset, *o)\n"
            "    except _StructError as e:\n"
            "        raise _packerr(o, e, buf, offset) from None\n"
        )
        exec(src, ns)
        self.decode = ns["decode"]
        self.flatten = ns["flatten"]
        self.encode_into = ns["encode_into"]

    def pack(self, val: Any) -> bytes:
        o = self.flatten(val)
        try:
            return self.struct.pack(*o)
        except struct.error as e:
            raise self.pack_error(o, e) from None

    def pack_error(
        self, values: list[Any], err: Exception, buf: Any = None, offset: int = 0
    ) -> Exception:
        """Turn a ``struct.error`` into an exception naming the offending field."""
        if buf is not None and (offset < 0 or len(buf) - offset < self.size):
            return ValueError(
                f"{self.label}: need {self.size} bytes at offset {offset}, buffer has {len(buf)}"
            )
        k = 0
        for _off, _sz, code, nv, path in self.items:
            try:
                struct.pack("<" + code, *values[k : k + nv])
            except struct.error as e:
                where = f"{self.label}{path}" if path.startswith((".", "[")) else self.label
                return ValueError(f"cannot encode {where}: {e}")
            k += nv
        return ValueError(f"cannot encode {self.label}: {err}")


def _short(buf: Any, offset: int, size: int, label: str) -> ValueError:
    try:
        have = len(buf)
    except TypeError:
        have = -1
    return ValueError(f"{label}: need {size} bytes at offset {offset}, buffer has {have}")


# --------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------


class Codec:
    """Converts one C type between bytes and Python values.

    ``decode`` and ``encode_into`` are generated functions stored on the
    instance (no method-binding cost per call).  Attributes:

    * ``name`` -- the C name the codec was asked for (``"event"``, ``"pid_t"``)
    * ``size`` -- ``sizeof`` the type
    * ``dtype`` -- numpy dtype with the same layout (offsets, padding, itemsize)
    * ``fields`` -- member names of a struct/union (else ``()``)
    * ``record_class`` -- the :class:`Record` subclass (structs/unions) or None
    * ``enum`` -- the :class:`enum.IntEnum` class (enums) or None
    * ``bitfields`` -- ``{name: BitField}`` for a struct's own bitfields
    * ``format`` -- the ``struct`` format used for decoding
    """

    def __init__(self, node: _Node, name: str) -> None:
        self._node = node
        self._compiled = _Compiled(node, name)
        self.name = name
        self.size = node.size
        self.decode: Callable[..., Any] = self._compiled.decode
        self.encode_into: Callable[[Any, int, Any], None] = self._compiled.encode_into
        self.record_class: type[Record] | None = node.cls if isinstance(node, _Struct) else None
        self.fields: tuple[str, ...] = tuple(node.fields) if isinstance(node, _Struct) else ()
        self.enum: type[enum.IntEnum] | None = getattr(node, "enum", None)
        self.format: str = self._compiled.struct.format
        self._dtype: np.dtype | None = None

    @property
    def dtype(self) -> np.dtype:
        """numpy dtype with the exact C layout: nested structs are nested dtypes,
        arrays subarrays, ``char[N]`` is ``S<N>``, unions overlap, bitfields are
        their storage (see :attr:`bitfields`)."""
        if self._dtype is None:
            self._dtype = np.dtype(self._node.np_format())
        return self._dtype

    @property
    def bitfields(self) -> dict[str, BitField]:
        node = self._node
        return node.bitfields() if isinstance(node, _Struct) else {}

    def decode(self, buffer: Any, offset: int = 0) -> Any:  # replaced per instance
        """Decode one value from ``buffer`` (bytes-like) at ``offset``."""
        raise NotImplementedError

    def encode_into(self, buffer: Any, offset: int, value: Any) -> None:  # replaced
        """Encode ``value`` into a writable buffer at ``offset`` (padding is zeroed)."""
        raise NotImplementedError

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

    def decode_array(self, buffer: Any, count: int = -1, offset: int = 0) -> np.ndarray:
        """Many packed values at once, as a numpy structured array (no copy)."""
        return np.frombuffer(buffer, dtype=self.dtype, count=count, offset=offset)

    def __repr__(self) -> str:
        return f"<Codec {self.name} size={self.size}>"


# --------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------


def _make_enum(name: str, members: tuple[Enumerator, ...]) -> type[enum.IntEnum] | None:
    """An IntEnum for a BTF enum; names Python's Enum refuses (``mro``, ``_x_``)
    are left out (those values then decode as plain ints)."""
    pairs = [(m.name, m.value) for m in members if m.name]
    if not pairs:
        return None
    cls_name = name if name.isidentifier() else "enum"
    try:
        return enum.IntEnum(cls_name, pairs)  # type: ignore[return-value]
    except (ValueError, TypeError):
        pass
    ok = []
    for p in pairs:
        try:
            enum.IntEnum("probe", [p])
            ok.append(p)
        except (ValueError, TypeError):
            continue
    return enum.IntEnum(cls_name, ok) if ok else None  # type: ignore[return-value]


def _enum_encoder(cls: type[enum.IntEnum] | None, label: str) -> Callable[[Any], Any]:
    # __members__ includes aliases (enumerators sharing a value)
    names = {n: int(m) for n, m in cls.__members__.items()} if cls is not None else {}

    def enc(x: Any) -> Any:
        if x is None:
            return 0
        if isinstance(x, str):
            try:
                return names[x]
            except KeyError:
                raise ValueError(f"{label} has no enumerator {x!r}") from None
        return x

    return enc


# --------------------------------------------------------------------------------------
# ELF
# --------------------------------------------------------------------------------------


def _elf_sections(data: bytes | memoryview) -> dict[str, tuple[int, int, int]]:
    """Section name -> (type, file offset, size) of an ELF64 little-endian file."""
    if bytes(data[:4]) != b"\x7fELF":
        raise BTFError("not an ELF file")
    if len(data) < 64:
        raise BTFError("truncated ELF header")
    if data[4] != 2:
        raise BTFError("only 64-bit ELF files are supported")
    if data[5] != 1:
        raise BTFError("only little-endian ELF files are supported")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shoff == 0:
        raise BTFError("ELF file has no section table")
    if shentsize < 64 or shoff + shentsize > len(data):
        raise BTFError("bad ELF section table")
    sec0 = struct.unpack_from("<IIQQQQIIQQ", data, shoff)
    if shnum == 0:  # more than 0xff00 sections: count in section 0
        shnum = sec0[5]
    if shstrndx == 0xFFFF:
        shstrndx = sec0[6]
    if shoff + shnum * shentsize > len(data) or shstrndx >= shnum:
        raise BTFError("bad ELF section table")
    headers = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    _n, _t, _f, _a, str_off, str_size, *_ = headers[shstrndx]
    if str_off + str_size > len(data):
        raise BTFError("bad ELF section name table")
    names = bytes(data[str_off : str_off + str_size])
    out: dict[str, tuple[int, int, int]] = {}
    for name_off, sh_type, _f, _a, off, size, *_ in headers:
        end = names.find(b"\0", name_off)
        name = names[name_off : end if end >= 0 else None].decode("utf-8", "replace")
        if sh_type != 8 and off + size > len(data):  # 8 = SHT_NOBITS occupies no file space
            raise BTFError(f"ELF section {name} runs past the end of the file")
        out.setdefault(name, (sh_type, off, size))
    return out


def elf_section(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, name: str
) -> bytes:
    """The contents of one section of an ELF64 little-endian file (e.g. ``.BTF``,
    or ``.data``/``.rodata`` for the initial values of globals)."""
    data = _read_source(source)
    sections = _elf_sections(data)
    if name not in sections:
        raise BTFError(f"ELF file has no {name} section")
    sh_type, off, size = sections[name]
    if sh_type == 8:  # SHT_NOBITS (.bss): zeros
        return bytes(size)
    return bytes(data[off : off + size])


def _read_source(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> bytes:
    if isinstance(source, str | os.PathLike):
        try:
            return Path(source).read_bytes()
        except FileNotFoundError:
            raise BTFError(f"{source}: no such file") from None
        except OSError as e:
            raise BTFError(f"{source}: {e.strerror or e}", errno=e.errno) from None
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    raise TypeError(f"expected a path or bytes, got {type(source).__name__}")


# --------------------------------------------------------------------------------------
# BTF
# --------------------------------------------------------------------------------------


class BTF:
    """A parsed BTF blob (optionally split BTF on top of a ``base``).

    Type ids run from 1 (0 is ``void``); in split BTF they continue after the
    base's, and lookups fall through to the base.  Build with
    :meth:`from_bytes`, :meth:`from_elf`, :meth:`vmlinux` or :func:`load`.
    """

    _vmlinux: ClassVar[BTF | None] = None
    _vmlinux_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, data: bytes | bytearray | memoryview, base: BTF | None = None) -> None:
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise BTFError(f"BTF blob too short ({len(data)} bytes)")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = (
            _HEADER.unpack_from(data)
        )
        if magic != BTF_MAGIC:
            if magic == 0x9FEB:
                raise BTFError("big-endian BTF is not supported")
            raise BTFError(f"bad BTF magic {magic:#06x} (expected {BTF_MAGIC:#06x})")
        if version != 1:
            raise BTFError(f"unsupported BTF version {version}")
        if hdr_len < _HEADER.size or hdr_len > len(data):
            raise BTFError(f"bad BTF header length {hdr_len}")
        t0, s0 = hdr_len + type_off, hdr_len + str_off
        if t0 + type_len > len(data) or s0 + str_len > len(data):
            raise BTFError("BTF type or string section runs past the end of the blob")
        if type_len % 4 or type_off % 4:
            raise BTFError("BTF type section is not 4-byte aligned")
        strs = data[s0 : s0 + str_len]
        if strs and strs[-1] != 0:
            raise BTFError("BTF string section is not NUL-terminated")
        if base is None and strs and strs[0] != 0:
            raise BTFError("BTF string section does not start with an empty string")
        self._data = data
        self._base = base
        self._types = data[t0 : t0 + type_len]
        self._strs = strs
        self._words = memoryview(self._types).cast("I")
        self._start_id = base._next_id if base is not None else 1
        self._str_start = base._str_end if base is not None else 0
        self._str_end = self._str_start + str_len
        self._offsets = self._index(self._words)
        self._next_id = self._start_id + len(self._offsets)
        self._cache: dict[int, Type] = {}
        self._name_cache: dict[str, list[int]] = {}
        self._name_offs: np.ndarray | None = None
        self._kinds: np.ndarray | None = None
        self._nodes: dict[tuple[int, str | None], _Node] = {}
        self._enums: dict[int, type[enum.IntEnum] | None] = {}
        self._named_codecs: dict[tuple[int, str], Codec] = {}
        self._lock = threading.RLock()
        self.types = TypeMap(self)

    @staticmethod
    def _index(words: memoryview) -> array:
        """Word offsets of every type record: the one pass made at load time."""
        offsets = array("I")
        append = offsets.append
        fixed, per = _FIXED_WORDS, _VLEN_WORDS
        n = len(words)
        i = 0
        try:
            while i < n:
                append(i)
                info = words[i + 1]
                kind = (info >> 24) & 0x1F
                i += 3 + fixed[kind] + per[kind] * (info & 0xFFFF)  # type: ignore[operator]
        except TypeError:
            raise BTFError(
                f"BTF type record {len(offsets)} at byte {4 * i} has unknown kind "
                f"{(words[i + 1] >> 24) & 0x1F}"
            ) from None
        except IndexError:
            raise BTFError("truncated BTF type record") from None
        if i != n:
            raise BTFError("truncated BTF type record")
        return offsets

    # construction -------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, base: BTF | None = None) -> BTF:
        """Parse a raw BTF blob (as in ``/sys/kernel/btf/*`` or an ELF ``.BTF``)."""
        return cls(data, base)

    @classmethod
    def from_elf(
        cls,
        source: str | os.PathLike[str] | bytes | bytearray | memoryview,
        base: BTF | None = None,
    ) -> BTF:
        """Parse the ``.BTF`` section of an ELF64 little-endian file (path or bytes)."""
        data = _read_source(source)
        sections = _elf_sections(data)
        if ".BTF" not in sections or sections[".BTF"][0] == 8:
            raise BTFError(
                f"{source if isinstance(source, str | os.PathLike) else 'ELF file'} has no "
                ".BTF section",
                hint="compile with debug info: clang -O2 -g -target bpf",
            )
        _t, off, size = sections[".BTF"]
        return cls(memoryview(data)[off : off + size], base)

    @classmethod
    def vmlinux(cls, path: str = VMLINUX_PATH) -> BTF:
        """The running kernel's BTF, loaded once and cached."""
        if path != VMLINUX_PATH:
            return cls(_read_source(path))
        with cls._vmlinux_lock:
            if cls._vmlinux is None:
                if not os.path.exists(path):
                    raise BTFError(
                        f"{path} does not exist",
                        hint="the kernel was built without CONFIG_DEBUG_INFO_BTF",
                    )
                cls._vmlinux = cls(_read_source(path))
            return cls._vmlinux

    @classmethod
    def kernel_module(cls, name: str) -> BTF:
        """A kernel module's split BTF (``/sys/kernel/btf/<name>``) on top of vmlinux."""
        return cls(_read_source(os.path.join(SYS_BTF_DIR, name)), cls.vmlinux())

    # basic properties --------------------------------------------------------------
    @property
    def base(self) -> BTF | None:
        return self._base

    @property
    def start_id(self) -> int:
        """First type id of this blob (1, or after the base's types for split BTF)."""
        return self._start_id

    @property
    def raw(self) -> bytes:
        """The blob this BTF was parsed from."""
        return self._data

    def __len__(self) -> int:
        """Number of type ids, counting void and the base's types (= last id + 1)."""
        return self._next_id

    def __repr__(self) -> str:
        split = f", split on {len(self._base)} base ids" if self._base is not None else ""
        return f"<BTF {len(self._offsets)} types{split}>"

    # strings -------------------------------------------------------------------------
    def string(self, offset: int) -> str:
        """The string at ``offset`` of the (logical, base + own) string section."""
        if offset < self._str_start:
            assert self._base is not None
            return self._base.string(offset)
        off = offset - self._str_start
        s = self._strs
        end = s.find(b"\0", off)
        if off >= len(s) or end < 0:
            raise BTFError(f"BTF string offset {offset} out of range")
        return s[off:end].decode("utf-8", "replace")

    def _string_offsets(self, name: bytes) -> list[int]:
        """All logical offsets where ``name`` is a whole string (base included)."""
        out = self._base._string_offsets(name) if self._base is not None else []
        s = self._strs
        if s.startswith(name + b"\0"):
            out.append(self._str_start)
        needle = b"\0" + name + b"\0"
        pos = s.find(needle)
        while pos >= 0:
            out.append(self._str_start + pos + 1)
            pos = s.find(needle, pos + 1)
        return out

    # types -----------------------------------------------------------------------------
    def type(self, type_id: int) -> Type:
        """The type with this id (0 is ``void``)."""
        if type_id < self._start_id:
            if type_id == 0:
                return _VOID
            if self._base is None or type_id < 0:
                raise BTFError(f"BTF type id {type_id} out of range")
            return self._base.type(type_id)
        t = self._cache.get(type_id)
        if t is None:
            j = type_id - self._start_id
            if j >= len(self._offsets):
                raise BTFError(f"BTF type id {type_id} out of range (last is {self._next_id - 1})")
            t = self._decode_type(type_id, self._offsets[j])
            self._cache[type_id] = t
        return t

    __getitem__ = type

    def _decode_type(self, tid: int, i: int) -> Type:
        w = self._words
        name_off, info, su = w[i], w[i + 1], w[i + 2]
        kind = _KINDS[(info >> 24) & 0x1F]
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        name = self.string(name_off)
        p = i + 3
        common: dict[str, Any] = {"kind_flag": kflag, "vlen": vlen}
        if kind == Kind.INT:
            enc = w[p]
            return Type(tid, kind, name, size=su, encoding=(enc >> 24) & 0x0F,
                        int_offset=(enc >> 16) & 0xFF, bits=enc & 0xFF, **common)  # fmt: skip
        if kind == Kind.ARRAY:
            return Type(tid, kind, name, elem_type_id=w[p], index_type_id=w[p + 1],
                        nelems=w[p + 2], **common)  # fmt: skip
        if kind in (Kind.STRUCT, Kind.UNION):
            members = []
            for k in range(vlen):
                q = p + 3 * k
                off = w[q + 2]
                if kflag:
                    members.append(Member(self.string(w[q]), w[q + 1], off & 0xFFFFFF, off >> 24))
                else:
                    members.append(Member(self.string(w[q]), w[q + 1], off, 0))
            return Type(tid, kind, name, size=su, members=tuple(members), **common)
        if kind == Kind.ENUM:
            vals = []
            for k in range(vlen):
                v = w[p + 2 * k + 1]
                if kflag and v >= 1 << 31:
                    v -= 1 << 32
                vals.append(Enumerator(self.string(w[p + 2 * k]), v))
            return Type(tid, kind, name, size=su, enumerators=tuple(vals), **common)
        if kind == Kind.ENUM64:
            vals = []
            for k in range(vlen):
                q = p + 3 * k
                v = w[q + 1] | (w[q + 2] << 32)
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                vals.append(Enumerator(self.string(w[q]), v))
            return Type(tid, kind, name, size=su, enumerators=tuple(vals), **common)
        if kind == Kind.FUNC_PROTO:
            params = tuple(Param(self.string(w[p + 2 * k]), w[p + 2 * k + 1]) for k in range(vlen))
            return Type(tid, kind, name, type_id=su, params=params, **common)
        if kind == Kind.VAR:
            return Type(tid, kind, name, type_id=su, linkage=w[p], **common)
        if kind == Kind.DATASEC:
            infos = tuple(
                VarSecInfo(w[p + 3 * k], w[p + 3 * k + 1], w[p + 3 * k + 2]) for k in range(vlen)
            )
            return Type(tid, kind, name, size=su, secinfos=infos, **common)
        if kind == Kind.DECL_TAG:
            idx = w[p] - (1 << 32) if w[p] >= 1 << 31 else w[p]
            return Type(tid, kind, name, type_id=su, component_idx=idx, **common)
        if kind == Kind.FUNC:
            return Type(tid, kind, name, type_id=su, linkage=vlen, **common)
        if kind == Kind.FLOAT:
            return Type(tid, kind, name, size=su, **common)
        # PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
        return Type(tid, kind, name, type_id=0 if kind == Kind.FWD else su, **common)

    def iter_types(self, kind: Kind | str | None = None) -> Iterator[Type]:
        """All types (base first), optionally only of one kind ("enum" means both enums)."""
        if self._base is not None:
            yield from self._base.iter_types(kind)
        if kind is None:
            for j in range(len(self._offsets)):
                yield self.type(self._start_id + j)
            return
        kinds = np.array(sorted(self._kind_set(kind)), dtype=np.uint32)
        for j in np.flatnonzero(np.isin(self._kind_array(), kinds)):
            yield self.type(self._start_id + int(j))

    def _kind_array(self) -> np.ndarray:
        if self._kinds is None:
            words = np.frombuffer(self._types, dtype="<u4")
            offs = np.frombuffer(self._offsets, dtype=np.uint32).astype(np.int64)
            self._kinds = (words[offs + 1] >> 24) & 0x1F
            self._name_offs = words[offs]
        return self._kinds

    @staticmethod
    def _kind_set(kind: Kind | str | int | None) -> frozenset[Kind]:
        if kind is None:
            return frozenset(Kind)
        if isinstance(kind, str):
            try:
                return _KIND_WORDS[kind.lower()]
            except KeyError:
                raise ValueError(f"unknown BTF kind {kind!r}") from None
        return frozenset({Kind(kind)})

    @staticmethod
    def _split_name(name: str, kind: Kind | str | None) -> tuple[str, Kind | str | None]:
        """Accept C spellings: "struct foo", "union foo", "enum foo"."""
        head, _, rest = name.strip().partition(" ")
        if rest and head in ("struct", "union", "enum") and kind is None:
            return rest.strip(), head
        return name.strip(), kind

    def _ids_named(self, name: str) -> list[int]:
        with self._lock:
            ids = self._name_cache.get(name)
            if ids is None:
                ids = self._base._ids_named(name) if self._base is not None else []
                raw = name.encode("utf-8")
                if raw and b"\0" not in raw:
                    offs = self._string_offsets(raw)
                    if offs:
                        self._kind_array()
                        hits = np.flatnonzero(np.isin(self._name_offs, np.array(offs, np.uint32)))
                        ids = ids + [self._start_id + int(j) for j in hits]
                self._name_cache[name] = ids
            return ids

    def find_all(self, name: str, kind: Kind | str | None = None) -> list[Type]:
        """Every type called ``name`` (optionally of a kind), in id order."""
        name, kind = self._split_name(name, kind)
        kinds = self._kind_set(kind)
        return [t for t in map(self.type, self._ids_named(name)) if t.kind in kinds]

    def find(self, name: str, kind: Kind | str | None = None) -> Type:
        """The first type called ``name`` (of ``kind``); raises :class:`TypeNotFound`."""
        found = self.find_all(name, kind)
        if not found:
            raise self._not_found(*self._split_name(name, kind))
        return found[0]

    def get(self, name: str, kind: Kind | str | None = None) -> Type | None:
        """Like :meth:`find` but returns None when there is no such type."""
        found = self.find_all(name, kind)
        return found[0] if found else None

    def resolve(self, type_id: int) -> Type:
        """Follow typedefs, const/volatile/restrict and type tags to the real type."""
        t = self.type(type_id)
        for _ in range(_MAX_CHAIN):
            if t.kind not in _MODIFIERS:
                return t
            t = self.type(t.type_id)
        raise BTFError(f"type {type_id}: typedef/modifier chain too long (a loop?)")

    def sizeof(self, type_id: int) -> int:
        """``sizeof`` of a type, in bytes (pointers are 8)."""
        t = self.resolve(type_id)
        for _ in range(_MAX_CHAIN):
            if t.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.STRUCT, Kind.UNION,
                          Kind.FLOAT, Kind.DATASEC):  # fmt: skip
                return t.size
            if t.kind == Kind.PTR:
                return 8
            if t.kind == Kind.ARRAY:
                return t.nelems * self.sizeof(t.elem_type_id)
            if t.kind == Kind.VAR:
                t = self.resolve(t.type_id)
                continue
            raise BTFError(f"{self.type_str(t.id)} has no size")
        raise BTFError(f"type {type_id}: reference chain too long")

    def member_bits(self, struct_type: Type, member: Member) -> tuple[int, int]:
        """(bit offset, bitfield size or 0) of a member, for structs with or
        without kind_flag (without it, bitfields are encoded in the INT type)."""
        if struct_type.kind_flag:
            return member.bit_offset, member.bitfield_size
        rt = self.resolve(member.type_id)
        if rt.kind == Kind.INT and (rt.bits != rt.size * 8 or rt.int_offset):
            return member.bit_offset + rt.int_offset, rt.bits
        return member.bit_offset, 0

    def type_str(self, type_id: int) -> str:
        """A C-like spelling of a type, for messages: ``struct event``, ``char[16]``."""
        t = self.type(type_id)
        dims = ""
        for _ in range(_MAX_CHAIN):
            if t.kind != Kind.ARRAY:
                break
            dims += f"[{t.nelems}]"
            t = self.type(t.elem_type_id)
        k = t.kind
        if k == Kind.UNKN:
            s = "void"
        elif k in (Kind.STRUCT, Kind.UNION):
            s = f"{k.name.lower()} {t.name or '(anon)'}"
        elif k in (Kind.ENUM, Kind.ENUM64):
            s = f"enum {t.name or '(anon)'}"
        elif k == Kind.FWD:
            s = f"{'union' if t.kind_flag else 'struct'} {t.name}"
        elif k == Kind.PTR:
            s = self.type_str(t.type_id) + " *"
        elif k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
            s = f"{k.name.lower()} {self.type_str(t.type_id)}"
        elif k == Kind.TYPE_TAG:
            s = f"{self.type_str(t.type_id)} __tag({t.name})"
        elif k == Kind.FUNC_PROTO:
            args = ", ".join(self.type_str(p.type_id) if p.type_id else "..." for p in t.params)
            s = f"{self.type_str(t.type_id)} ({args or 'void'})"
        elif k == Kind.DATASEC:
            s = f"section {t.name}"
        else:
            s = t.name or f"({k.name.lower()})"
        return s + dims

    # errors ------------------------------------------------------------------------------
    def _not_found(self, name: str, kind: Kind | str | None, fwd: bool = False) -> TypeNotFound:
        word = kind.lower() if isinstance(kind, str) else (
            kind.name.lower() if isinstance(kind, Kind) else None
        )
        what = f"{word} {name}" if word in ("struct", "union", "enum") else name
        decl = what if word in ("struct", "union", "enum") else (
            name if word == "typedef" else f"struct {name}"
        )
        if fwd:
            msg = f"BTF has only a forward declaration of '{what}', not its definition."
        else:
            msg = f"type '{what}' not found in BTF."
        msg += (
            " clang drops types that a BPF program only uses in casts or sizeof(), so they"
            " never reach BTF."
        )
        ident = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
        hint = (
            f"keep it by declaring a typed global, e.g. `{decl} _{ident}_keep = {{}};` or "
            f"`{decl} *unused_{ident} __attribute__((unused));`, or use it as a map's "
            "value type"
        )
        close = self._close_names(name)
        if close:
            hint += "; similar names: " + ", ".join(close)
        return TypeNotFound(msg, hint=hint)

    def _close_names(self, name: str) -> list[str]:
        if self._next_id > 5000:  # too costly for the kernel's BTF; not worth it
            return []
        names = {
            t.name
            for t in self.iter_types()
            if t.name and t.kind in _LAYOUT_ORDER
        }
        return difflib.get_close_matches(name, sorted(names), n=3)

    # codecs ------------------------------------------------------------------------------
    def record(self, name: str, kind: Kind | str | None = None) -> Codec:
        """A codec for the named type: a struct, union, typedef, enum, int, float
        (``"struct x"``, ``"union x"``, ``"enum x"`` pick the kind).  Raises
        :class:`TypeNotFound` (a ``KeyError``) when it is not in the BTF."""
        cname, kind = self._split_name(name, kind)
        found = self.find_all(cname, kind)
        if kind is None:
            layout = [t for t in found if t.kind in _LAYOUT_ORDER]
            layout.sort(key=lambda t: _LAYOUT_ORDER[t.kind])
            if not layout:
                raise self._not_found(cname, kind, fwd=any(t.kind == Kind.FWD for t in found))
            found = layout
        elif not found:
            fwd = bool(
                self._kind_set(kind) & {Kind.STRUCT, Kind.UNION}
                and self.find_all(cname, Kind.FWD)
            )
            raise self._not_found(cname, kind, fwd=fwd)
        return self.codec(found[0].id, name=cname)

    def codec(self, type_id: int | Type, name: str | None = None) -> Codec:
        """A codec for a type id (``name`` labels anonymous types and messages)."""
        tid = type_id.id if isinstance(type_id, Type) else type_id
        if name is None:  # a variable or typedef labels the codec with its own name
            t = self.type(tid)
            if t.kind in (Kind.VAR, Kind.TYPEDEF) and t.name:
                name = t.name
        node = self._node(tid, name)
        codec = node.codec()
        if name is None or name == codec.name:
            return codec
        with self._lock:  # a typedef or variable name: label messages with it
            named = self._named_codecs.get((id(node), name))
            if named is None:
                named = Codec(node, name)
                self._named_codecs[(id(node), name)] = named
            return named

    def enum(self, name: str) -> type[enum.IntEnum]:
        """The :class:`enum.IntEnum` for a named BTF enum (or typedef of one)."""
        c = self.record(name)
        if c.enum is None:
            raise TypeNotFound(f"'{name}' is not an enum with enumerators")
        return c.enum

    def _node(self, tid: int, hint: str | None = None) -> _Node:
        t = self.type(tid)
        typedef = None
        for _ in range(_MAX_CHAIN):
            if t.kind not in _MODIFIERS and t.kind != Kind.VAR:
                break
            if t.kind == Kind.TYPEDEF and typedef is None:
                typedef = t.name
            t = self.type(t.type_id)
        else:
            raise BTFError(f"type {tid}: typedef/modifier chain too long (a loop?)")
        label = t.name or typedef or hint or f"anon_{t.kind.name.lower()}"
        key = (t.id, None if t.name else label)
        with self._lock:
            node = self._nodes.get(key)
            if node is None:
                node = self._build_node(t, label)
                self._nodes[key] = node
        return node

    def _enum_class(self, t: Type, label: str) -> type[enum.IntEnum] | None:
        if t.id not in self._enums:
            self._enums[t.id] = _make_enum(label, t.enumerators)
        return self._enums[t.id]

    def _build_node(self, t: Type, label: str) -> _Node:
        k = t.kind
        if k == Kind.INT:
            return _int_atom(t.size, t.signed, t.is_bool, label)
        if k in (Kind.ENUM, Kind.ENUM64):
            cls = self._enum_class(t, label)
            atom = _int_atom(t.size, t.signed, False, label)
            atom.dec_map = {int(m): m for m in cls} if cls is not None else {}
            atom.enc = _enum_encoder(cls, label)
            atom.enum = cls  # type: ignore[attr-defined]
            return atom
        if k == Kind.PTR:
            return _Atom(8, "Q", "<u8", label=label)
        if k == Kind.FLOAT:
            if t.size in (2, 4, 8):
                return _Atom(t.size, "efd"[(2, 4, 8).index(t.size)], f"<f{t.size}",
                             zero=0.0, label=label)  # fmt: skip
            return _Atom(t.size, f"{t.size}s", f"V{t.size}", enc=_raw, zero=b"", label=label)
        if k == Kind.ARRAY:
            elem = self.resolve(t.elem_type_id)
            n = t.nelems
            if elem.is_char:
                return _Atom(n, f"{n}s", f"S{n}", dec=_cstr, enc=_senc, zero=b"",
                             label=f"char[{n}]")  # fmt: skip
            return _Array(self._node(t.elem_type_id, label), n)
        if k in (Kind.STRUCT, Kind.UNION):
            return self._build_struct(t, label)
        if k == Kind.DATASEC:
            return self._build_datasec(t, label)
        if k == Kind.FWD:
            raise self._not_found(t.name, "union" if t.kind_flag else "struct", fwd=True)
        raise BTFError(f"{self.type_str(t.id)} ({k.name}) has no data layout to decode")

    def _build_struct(self, t: Type, label: str) -> _Struct:
        union = t.kind == Kind.UNION
        entries: list[_Field | _Bits] = []
        used = set(_RESERVED)
        anon = 0
        for m in t.members:
            bit, nbits = self.member_bits(t, m)
            if not nbits and bit % 8:
                rt = self.resolve(m.type_id)
                if rt.kind not in (Kind.INT, Kind.ENUM, Kind.ENUM64):
                    raise BTFError(
                        f"{label}.{m.name}: member at bit offset {bit} is not byte aligned"
                    )
                nbits = rt.size * 8
            if nbits:
                if not m.name:
                    continue  # unnamed bitfield: padding
                spec = self._bit_spec(_py_name(m.name, used), m, bit, nbits, label)
                last = entries[-1] if entries else None
                if not union and isinstance(last, _Bits) and last.overlaps(spec):
                    last.add(spec)
                else:
                    entries.append(_Bits(spec))
                continue
            if m.name:
                pyname = _py_name(m.name, used)
                node = self._node(m.type_id, f"{label}.{pyname}")
                entries.append(_Field(pyname, bit // 8, node))
            else:
                node = self._node(m.type_id, f"{label}._anon{anon}")
                if not isinstance(node, _Struct):
                    continue  # an unnamed non-struct member has no way to be accessed
                pyname = _py_name(f"_anon{anon}", used)
                anon += 1
                entries.append(_Field(pyname, bit // 8, node, node.keys))
        return _Struct(label, t.size, entries, union, label)

    def _bit_spec(self, pyname: str, m: Member, bit: int, nbits: int, label: str) -> _BitSpec:
        rt = self.resolve(m.type_id)
        if rt.kind == Kind.INT:
            return _BitSpec(pyname, bit, nbits, rt.signed, None, None, rt.is_bool)
        if rt.kind in (Kind.ENUM, Kind.ENUM64):
            cls = self._enum_class(rt, rt.name or f"{label}.{pyname}")
            dec_map = {int(x): x for x in cls} if cls is not None else {}
            return _BitSpec(pyname, bit, nbits, rt.signed, dec_map,
                            _enum_encoder(cls, rt.name or pyname), False)  # fmt: skip
        raise BTFError(f"{label}.{m.name}: bitfield of {self.type_str(m.type_id)} is not supported")

    def _build_datasec(self, t: Type, label: str) -> _Struct:
        entries: list[_Field | _Bits] = []
        used = set(_RESERVED)
        end = 0
        for si in sorted(t.secinfos, key=lambda s: s.offset):
            v = self.type(si.type_id)
            if v.kind != Kind.VAR:
                continue  # extern functions (.ksyms) have no storage
            entries.append(_Field(_py_name(v.name, used), si.offset, self._node(v.type_id, v.name)))
            end = max(end, si.offset + si.size)
        return _Struct(label, max(t.size, end), entries, False, label)

    def datasec(self, name: str) -> list[Variable]:
        """The variables of a data section, in the order the DATASEC lists them."""
        t = self._datasec_type(name)
        out = []
        for si in t.secinfos:
            v = self.type(si.type_id)
            out.append(Variable(v.name, si.offset, si.size, v.type_id if v.kind == Kind.VAR
                                else v.id, v.linkage, self))  # fmt: skip
        return out

    def datasec_codec(self, name: str) -> Codec:
        """A codec decoding a whole data section (e.g. the value of a ``.bss`` map)
        into one record with a field per variable.  Needs real variable offsets:
        BTF from a linked or loaded object, not a raw clang ``.o``."""
        return self._node(self._datasec_type(name).id, name).codec()

    def datasecs(self) -> list[str]:
        """Names of all data sections."""
        return [t.name for t in self.iter_types(Kind.DATASEC)]

    def _datasec_type(self, name: str) -> Type:
        found = self.find_all(name, Kind.DATASEC)
        if not found:
            raise TypeNotFound(
                f"no data section {name!r} in BTF",
                hint="sections present: " + (", ".join(self.datasecs()) or "none")
                + "; a section only exists if the program defines a global in it",
            )
        return found[0]


def _py_name(cname: str, used: set[str]) -> str:
    """A Python attribute name for a C member: unique, never clashing with Record's API."""
    name = cname if cname.isidentifier() else "".join(
        c if c.isalnum() or c == "_" else "_" for c in cname
    ) or "_"
    if name[0].isdigit():
        name = "_" + name
    if name.startswith("__") and name.endswith("__"):
        name += "_"
    while name in used:
        name += "_"
    used.add(name)
    return name


def _int_atom(size: int, signed: bool, is_bool: bool, label: str) -> _Atom:
    if is_bool and size == 1:
        return _Atom(1, "?", "?", zero=False, label=label)
    if size in (1, 2, 4, 8):
        code = "bhiq"[(1, 2, 4, 8).index(size)]
        return _Atom(size, code if signed else code.upper(), f"<{'i' if signed else 'u'}{size}",
                     label=label)  # fmt: skip

    def dec(b: bytes) -> int:
        return int.from_bytes(b, "little", signed=signed)

    def enc(x: Any) -> bytes:
        return (0 if x is None else operator.index(x)).to_bytes(size, "little", signed=signed)

    return _Atom(size, f"{size}s", f"V{size}", dec=dec, enc=enc, zero=bytes(size), label=label)


class TypeMap(Mapping[str, Codec]):
    """``btf.types[name]`` -> :class:`Codec` (same as :meth:`BTF.record`).  Iterating
    lists the names of structs, unions, enums, typedefs, ints and floats (which
    scans every type: slow for the kernel's BTF)."""

    def __init__(self, btf: BTF) -> None:
        self._btf = btf

    def __getitem__(self, name: str) -> Codec:
        return self._btf.record(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        cname, kind = BTF._split_name(name, None)
        return any(
            t.kind in _LAYOUT_ORDER for t in self._btf.find_all(cname, kind)
        )

    def _names(self) -> list[str]:
        seen: dict[str, None] = {}
        for t in self._btf.iter_types():
            if t.name and t.kind in _LAYOUT_ORDER:
                seen.setdefault(t.name)
        return list(seen)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def load(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, base: BTF | None = None
) -> BTF:
    """BTF from an ELF object or a raw BTF blob, given as a path or bytes.

    A path to a kernel module's BTF (``/sys/kernel/btf/<module>``) is loaded
    as split BTF on top of vmlinux unless ``base`` is given.
    """
    data = _read_source(source)
    if data[:4] == b"\x7fELF":
        return BTF.from_elf(data, base)
    if data[:2] == b"\x9f\xeb":
        if base is None and isinstance(source, str | os.PathLike):
            p = Path(source)
            if str(p.parent) == SYS_BTF_DIR and p.name != "vmlinux":
                base = BTF.vmlinux()
        return BTF.from_bytes(data, base)
    if data[:2] == b"\xeb\x9f":
        raise BTFError("big-endian BTF is not supported")
    raise BTFError("neither an ELF file nor raw BTF (bad magic)")
