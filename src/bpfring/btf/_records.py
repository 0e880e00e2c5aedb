"""Decoded structs and unions: the :class:`Record` base class and the factory
making one subclass per C type."""

from __future__ import annotations

import enum
import keyword
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

# The record classes and enums made at run time say they come from the public
# module (as they did when bpfring.btf was one file).
PUBLIC_MODULE = "bpfring.btf"


class _Packer(Protocol):
    def pack(self, val: Any) -> bytes: ...


class _Layout(Protocol):
    """What a record class knows of its layout (a ``StructNode``): how to pack it."""

    def compiled(self) -> _Packer: ...


class Record:
    """Base class of decoded structs and unions.

    One subclass is made per C type (named after it).  Fields are slots named
    after the C members; a C name that clashes with this API gets a trailing
    ``_``.  Records are mutable (set a field, then encode) and unhashable.
    Equality holds between records of the same C type name with equal field
    values.  Convert with :meth:`_asdict`; records are deliberately neither
    mappings nor iterable (so a C member called ``keys`` or ``items`` cannot
    shadow the API, and a record is never mistaken for a sequence).

    Records the C decoder makes of a struct whose members are all numbers,
    enums, bools or ``char[]`` are not tracked by the cyclic garbage
    collector (as decoded they cannot be part of a reference cycle, and
    hundreds of thousands of them kept in a list would otherwise make every
    collection walk them).  Storing a container into such a record that
    refers back to it (``rec.pid = [rec]``) makes a cycle the collector
    does not see: it is never freed.  Store plain values, or copy the
    fields out (:meth:`_asdict`) first.
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _name: ClassVar[str] = ""
    _union: ClassVar[bool] = False
    _anon: ClassVar[tuple[str, ...]] = ()
    _inner: ClassVar[frozenset[str]] = frozenset()  # fields of anonymous members
    _node: ClassVar[_Layout]  # the layout; set on each subclass by its StructNode
    _raw: bytes  # a union record's bytes (a slot of union subclasses only)
    __hash__ = None  # type: ignore[assignment]
    __iter__ = None

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
        inner = ", ".join(f"{f}={value_repr(getattr(self, f, None))}" for f in self._fields)
        return f"{self._name}({inner})"

    def _repr_html_(self) -> str:
        """Jupyter: the record as a one-row table (``repr`` stays one line)."""
        from ._html import record_html

        return record_html(self)

    def __getitem__(self, name: str) -> Any:
        """``rec["name"]``: for C names that are Python keywords (``rec["in"]``)."""
        if name in self._fields or name in self._inner:
            return getattr(self, name)
        raise KeyError(name)

    def _asdict(self) -> dict[str, Any]:
        """Plain nested ``dict``: records become dicts, arrays lists; enums stay IntEnum."""
        return {f: plain(getattr(self, f)) for f in self._fields}

    def _replace(self, **changes: Any) -> Record:
        """A shallow copy with some fields changed."""
        cls = type(self)
        new = cls.__new__(cls)
        for f in self._fields:
            object.__setattr__(new, slot_name(f), getattr(self, f))
        if self._union and hasattr(self, "_raw"):
            object.__setattr__(new, "_raw", self._raw)
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    def __bytes__(self) -> bytes:
        return self._node.compiled().pack(self)


def plain(x: Any) -> Any:
    """``x`` with records turned into dicts, recursively (lists and mappings too)."""
    if isinstance(x, Record):
        return x._asdict()
    if isinstance(x, list):
        return [plain(e) for e in x]
    if isinstance(x, Mapping):
        return {k: plain(v) for k, v in x.items()}
    return x


def value_repr(v: Any) -> str:
    if isinstance(v, enum.Enum):
        return f"{type(v).__name__}.{v.name}"
    if isinstance(v, list):
        return "[" + ", ".join(value_repr(e) for e in v) + "]"
    return repr(v)


def slot_name(field: str) -> str:
    """The slot a field is stored in.  type() would mangle a slot called ``__x``
    into ``_Class__x``; such a field is stored under a name that is not mangled
    and exposed as ``__x`` through a property."""
    return "_p" + field if field.startswith("__") else field


#: Names a C member may not take as an attribute (they are the Record API;
#: ``_node`` is only declared on the base class, set on each subclass; ``_raw`` is
#: the slot where a union record keeps its bytes).
RESERVED = frozenset({*dir(Record), "_node", "_raw"})


def make_record_class(
    name: str, fields: list[str], union: bool, anon: list[tuple[str, frozenset[str]]]
) -> type[Record]:
    """Create the Record subclass for one C struct/union, with a positional
    ``__init__`` generated for speed (decode calls it once per record)."""
    slots = [slot_name(f) for f in fields]
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
        "__module__": PUBLIC_MODULE,
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
                object.__setattr__(self, slot_name(attr), value)

        cls_ns["__getattr__"] = __getattr__
        cls_ns["__setattr__"] = __setattr__
        cls_ns["_inner"] = frozenset(owner)
    cls = type(name, (Record,), cls_ns)
    for f, s in zip(fields, slots, strict=True):
        if s != f:
            desc = cls.__dict__[s]
            setattr(cls, f, property(desc.__get__, desc.__set__))
    return cls
