"""From BTF types to codecs: the walk over a type graph that builds layout nodes.

:class:`CodecBuilder` is the only code that follows type references to build
codecs (typedef/modifier chains, array elements, struct members, DATASEC
variables): :meth:`CodecBuilder.node` is the one entry of that walk, so a
cycle or depth check has one place to live.  It asks its :class:`BTF` for
types and names only; decoding bytes is the generated code's job
(:mod:`._layout`).
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from ..errors import BTFError, TypeNotFound
from ._codec import Codec
from ._enums import enum_encoder, make_enum
from ._layout import ArrayNode, Atom, Bits, BitSpec, Field, Node, StructNode
from ._model import (
    LAYOUT_ORDER,
    MAX_CHAIN,
    MAX_DEPTH,
    MAX_EMPTY_ELEMS,
    MAX_SIZE,
    MODIFIERS,
    Kind,
    Member,
    Type,
)
from ._records import RESERVED
from ._runtime import cstr, raw_bytes, str_bytes

if TYPE_CHECKING:
    from ._reader import BTF


class CodecBuilder:
    """Builds (once) and caches the codecs of one :class:`BTF`.  Thread-safe."""

    def __init__(self, btf: BTF) -> None:
        self._btf = btf
        self._nodes: dict[tuple[int, str | None], Node] = {}
        self._enums: dict[int, type[IntEnum] | None] = {}
        self._codecs: dict[tuple[int, str], Codec] = {}
        self._lock = threading.RLock()
        # Type ids being built, outermost first (under _lock, so one walk at a time):
        # a type met again on this path is a cycle, a long path is too deep.
        self._path: list[int] = []
        self._depth = 0

    # codecs --------------------------------------------------------------------------
    def record(self, name: str, kind: Kind | str | None = None) -> Codec:
        """The codec of the type :meth:`BTF.find_layout` finds for ``name``."""
        t = self._btf.find_layout(name, kind)
        return self.codec(t.id, name=t.name)

    def codec(self, type_id: int | Type, name: str | None = None) -> Codec:
        """A codec for a type id (``name`` labels anonymous types and messages)."""
        tid = type_id.id if isinstance(type_id, Type) else type_id
        if name is None:  # a variable or typedef labels the codec with its own name
            t = self._btf.type_by_id(tid)
            if t.kind in (Kind.VAR, Kind.TYPEDEF) and t.name:
                name = t.name
        return self._codec_of(self.node(tid, name), name)

    def _codec_of(self, node: Node, name: str | None) -> Codec:
        """The node's codec labelled ``name`` (default: the node's own label, whose
        compiled form records share for ``bytes(rec)``)."""
        label = node.label if name is None else name
        with self._lock:  # a typedef or variable name: label messages with it
            codec = self._codecs.get((id(node), label))
            if codec is None:
                codec = Codec(node, label, node.compiled() if label == node.label else None)
                self._codecs[(id(node), label)] = codec
            return codec

    def enum_class(self, name: str) -> type[IntEnum]:
        """The :class:`enum.IntEnum` for a named BTF enum (or typedef of one)."""
        c = self.record(name)
        if c.enum is None:
            raise TypeNotFound(f"'{name}' is not an enum with enumerators")
        return c.enum

    def datasec_codec(self, name: str) -> Codec:
        """A codec decoding a whole data section into one record."""
        return self._codec_of(self.node(self._btf.datasec_type(name).id, name), None)

    # the type walk -----------------------------------------------------------------
    def node(self, tid: int, hint: str | None = None) -> Node:
        """The layout of type ``tid`` (built once; ``hint`` labels anonymous types).

        Every node is built through here, from the top type down to each member
        and element type."""
        btf = self._btf
        t = btf.type_by_id(tid)
        typedef = None
        chain = [tid]
        for _ in range(MAX_CHAIN):
            if t.kind not in MODIFIERS and t.kind != Kind.VAR:
                break
            if t.kind == Kind.TYPEDEF and typedef is None:
                typedef = t.name
            t = btf.type_by_id(t.type_id)
            chain.append(t.id)
        else:
            raise BTFError(f"BTF type {tid}: typedef/modifier chain too long (a loop?)")
        label = t.name or typedef or hint or f"anon_{t.kind.name.lower()}"
        key = (t.id, None if t.name else label)
        with self._lock:
            node = self._nodes.get(key)
            if node is None:
                path = self._path
                if t.id in path:
                    loop = [*path[path.index(t.id) :], *chain]
                    raise BTFError(
                        f"BTF type cycle: type {t.id} contains itself "
                        f"({' -> '.join(map(str, loop))})"
                    )
                if self._depth >= MAX_DEPTH:
                    raise BTFError(
                        f"BTF type {path[0]} is nested too deep (over {MAX_DEPTH} levels, "
                        f"at type {t.id})"
                    )
                mark = len(path)
                path.extend(chain)
                self._depth += 1
                try:
                    node = self._build_node(t, label)
                finally:
                    del path[mark:]
                    self._depth -= 1
                self._nodes[key] = node
        return node

    def _enum_of(self, t: Type, label: str) -> type[IntEnum] | None:
        if t.id not in self._enums:
            self._enums[t.id] = make_enum(label, t.enumerators)
        return self._enums[t.id]

    def _build_node(self, t: Type, label: str) -> Node:
        k = t.kind
        if k == Kind.INT:
            return int_atom(t.size, t.signed, t.is_bool, label)
        if k in (Kind.ENUM, Kind.ENUM64):
            cls = self._enum_of(t, label)
            atom = int_atom(t.size, t.signed, False, label)
            atom.dec_map = {int(m): m for m in cls} if cls is not None else {}
            atom.enc = enum_encoder(cls, label)
            atom.enum_class = cls
            return atom
        if k == Kind.PTR:
            return Atom(8, "Q", "<u8", label=label)
        if k == Kind.FLOAT:
            if t.size in (2, 4, 8):
                return Atom(t.size, "efd"[(2, 4, 8).index(t.size)], f"<f{t.size}",
                            zero=0.0, label=label)  # fmt: skip
            return Atom(t.size, f"{t.size}s", f"V{t.size}", enc=raw_bytes, zero=b"", label=label)
        if k == Kind.ARRAY:
            elem = self._btf.resolve(t.elem_type_id)
            n = t.nelems
            if elem.is_char:
                if n > MAX_SIZE:
                    raise BTFError(f"BTF type {t.id}: char[{n}] is too big (limit {MAX_SIZE})")
                return Atom(n, f"{n}s", f"S{n}", dec=cstr, enc=str_bytes, zero=b"",
                            label=f"char[{n}]")  # fmt: skip
            enode = self.node(t.elem_type_id, label)
            if n * enode.size > MAX_SIZE:
                raise BTFError(
                    f"BTF type {t.id}: array of {n} x {enode.size} bytes is too big "
                    f"(limit {MAX_SIZE})"
                )
            return self._bounded(t, ArrayNode(enode, n))
        if k in (Kind.STRUCT, Kind.UNION):
            return self._bounded(t, self._build_struct(t, label))
        if k == Kind.DATASEC:
            return self._bounded(t, self._build_datasec(t, label))
        if k == Kind.FWD:
            raise self._btf.not_found_error(
                t.name, "union" if t.kind_flag else "struct", forward=True
            )
        raise BTFError(f"{self._btf.type_str(t.id)} ({k.name}) has no data layout to decode")

    @staticmethod
    def _bounded(t: Type, node: Node) -> Node:
        """``node``, unless decoding it would make far more values than its bytes
        allow (zero-sized elements repeated without limit): BTF is untrusted."""
        if node.cost > 128 * node.size + MAX_EMPTY_ELEMS:
            raise BTFError(
                f"BTF type {t.id}: decoding it would make {node.cost} values from "
                f"{node.size} bytes (zero-sized elements?)"
            )
        return node

    def _build_struct(self, t: Type, label: str) -> StructNode:
        btf = self._btf
        union = t.kind == Kind.UNION
        entries: list[Field | Bits] = []
        used = set(RESERVED)
        anon = 0
        for m in t.members:
            bit, nbits = btf.member_bits(t, m)
            if not nbits and bit % 8:
                rt = btf.resolve(m.type_id)
                if rt.kind not in (Kind.INT, Kind.ENUM, Kind.ENUM64):
                    raise BTFError(
                        f"{label}.{m.name}: member at bit offset {bit} is not byte aligned"
                    )
                nbits = rt.size * 8
            if nbits:
                size = btf.resolve(m.type_id).size
                if nbits > 8 * size:
                    raise BTFError(
                        f"BTF type {t.id} ({label}.{m.name}): bitfield of {nbits} bits in a "
                        f"{size}-byte type"
                    )
                if not m.name:
                    continue  # unnamed bitfield: padding
                spec = self._bit_spec(py_name(m.name, used), m, bit, nbits, label)
                last = entries[-1] if entries else None
                if not union and isinstance(last, Bits) and last.overlaps(spec):
                    last.add(spec)
                else:
                    entries.append(Bits(spec))
                continue
            if m.name:
                pyname = py_name(m.name, used)
                node = self.node(m.type_id, f"{label}.{pyname}")
                entries.append(Field(pyname, bit // 8, node))
            else:
                node = self.node(m.type_id, f"{label}._anon{anon}")
                if not isinstance(node, StructNode):
                    continue  # an unnamed non-struct member has no way to be accessed
                pyname = py_name(f"_anon{anon}", used)
                anon += 1
                entries.append(Field(pyname, bit // 8, node, node.keys))
        return StructNode(label, t.size, entries, union, label)

    def _bit_spec(self, pyname: str, m: Member, bit: int, nbits: int, label: str) -> BitSpec:
        rt = self._btf.resolve(m.type_id)
        if rt.kind == Kind.INT:
            return BitSpec(pyname, bit, nbits, rt.signed, None, None, rt.is_bool)
        if rt.kind in (Kind.ENUM, Kind.ENUM64):
            cls = self._enum_of(rt, rt.name or f"{label}.{pyname}")
            dec_map: dict[int, Any] = {int(x): x for x in cls} if cls is not None else {}
            return BitSpec(pyname, bit, nbits, rt.signed, dec_map,
                           enum_encoder(cls, rt.name or pyname), False)  # fmt: skip
        raise BTFError(
            f"{label}.{m.name}: bitfield of {self._btf.type_str(m.type_id)} is not supported"
        )

    def _build_datasec(self, t: Type, label: str) -> StructNode:
        entries: list[Field | Bits] = []
        used = set(RESERVED)
        end = 0
        for si in sorted(t.secinfos, key=lambda s: s.offset):
            v = self._btf.type_by_id(si.type_id)
            if v.kind != Kind.VAR:
                continue  # extern functions (.ksyms) have no storage
            entries.append(Field(py_name(v.name, used), si.offset, self.node(v.type_id, v.name)))
            end = max(end, si.offset + si.size)
        return StructNode(label, max(t.size, end), entries, False, label)


def py_name(cname: str, used: set[str]) -> str:
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


def int_atom(size: int, signed: bool, is_bool: bool, label: str) -> Atom:
    """The atom of an integer of ``size`` bytes (any size; 1/2/4/8 are native)."""
    if is_bool and size == 1:
        return Atom(1, "?", "?", zero=False, label=label)
    if size in (1, 2, 4, 8):
        code = "bhiq"[(1, 2, 4, 8).index(size)]
        return Atom(size, code if signed else code.upper(), f"<{'i' if signed else 'u'}{size}",
                    label=label)  # fmt: skip

    def dec(b: bytes) -> int:
        return int.from_bytes(b, "little", signed=signed)

    def enc(x: Any) -> bytes:
        return (0 if x is None else operator.index(x)).to_bytes(size, "little", signed=signed)

    return Atom(size, f"{size}s", f"V{size}", dec=dec, enc=enc, zero=bytes(size), label=label)


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
        return any(t.kind in LAYOUT_ORDER for t in self._btf.find_all(name))

    def _names(self) -> list[str]:
        seen: dict[str, None] = {}
        for t in self._btf.iter_types():
            if t.name and t.kind in LAYOUT_ORDER:
                seen.setdefault(t.name)
        return list(seen)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


class TypeChain(Mapping[str, Codec]):
    """Record types looked up in several BTFs, first match wins: a BPF
    object's own BTF, then the BTF of its headers (``obj.types`` of an object
    opened with ``headers=``).  ``hint`` is added to the hint of a miss."""

    def __init__(self, btfs: Sequence[BTF], hint: str | None = None) -> None:
        if not btfs:
            raise ValueError("TypeChain needs at least one BTF")
        self._btfs = tuple(btfs)
        self._hint = hint

    def __getitem__(self, name: str) -> Codec:
        for btf in self._btfs:
            if name in btf.types:
                return btf.record(name)
        try:
            return self._btfs[0].record(name)  # raises the first BTF's TypeNotFound
        except TypeNotFound as e:
            if self._hint:
                e.hint = f"{e.hint}; {self._hint}" if e.hint else self._hint
            raise

    def __contains__(self, name: object) -> bool:
        return any(name in btf.types for btf in self._btfs)

    def _names(self) -> list[str]:
        seen: dict[str, None] = {}
        for btf in self._btfs:
            seen.update(dict.fromkeys(btf.types))
        return list(seen)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


_DEFINED_KINDS = frozenset({Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.TYPEDEF})


def _spelling(t: Type) -> str:
    word = {Kind.STRUCT: "struct ", Kind.UNION: "union ", Kind.ENUM: "enum ",
            Kind.ENUM64: "enum "}.get(t.kind, "")
    return word + t.name


Shape = tuple[Any, ...]


def _shape(btf: BTF, t: Type) -> Shape:
    """What must agree between two declarations of one type, cheaply (no
    codec is built): size, and each member's name, bit offset, bitfield
    size and size, or the enumerators.  Named nested types are checked on
    their own."""
    r = btf.resolve(t.id)
    if r.kind in (Kind.STRUCT, Kind.UNION):
        return (r.kind, r.size, tuple(
            (m.name, *btf.member_bits(r, m), btf.sizeof(m.type_id)) for m in r.members))
    if r.kind in (Kind.ENUM, Kind.ENUM64):
        return ("enum", r.size, tuple((e.name, e.value) for e in r.enumerators))
    return (r.kind, btf.sizeof(r.id))


def layout_conflicts(base: BTF, other: BTF, names: Iterable[str] | None = None) -> list[str]:
    """The types named in both BTFs whose layouts differ, each as a short
    sentence (``"struct event: 56 bytes here, 48 in the object"``).

    ``names`` limits the check to those spellings (``"struct event"``,
    ``"pair_t"``); by default every struct, union, enum and typedef of
    ``other`` is checked against the type of the same kind and name in
    ``base``.  Used when an object gets the types of a header compiled
    separately: the two must describe the same records.
    """
    wanted = None if names is None else set(names)
    out = []
    for t in other.iter_types():
        if not t.name or t.kind not in _DEFINED_KINDS:
            continue
        spelling = _spelling(t)
        if wanted is not None and spelling not in wanted:
            continue
        kinds = (Kind.ENUM, Kind.ENUM64) if t.kind in (Kind.ENUM, Kind.ENUM64) else (t.kind,)
        mine = [b for b in base.find_all(t.name) if b.kind in kinds]
        if not mine:
            continue
        theirs = _shape(other, t)
        ours = _shape(base, mine[0])
        if theirs != ours:
            out.append(f"{spelling}: {_difference(ours, theirs)}")
    return out


def _difference(ours: Shape, theirs: Shape) -> str:
    if ours[0] != theirs[0]:
        return "it is another kind of type in the header"
    if ours[1] != theirs[1]:
        return f"{theirs[1]} bytes in the header, {ours[1]} in the object"
    if ours[0] == "enum":
        return "its enumerators differ"
    if len(ours) < 3:
        return "its type differs"
    o = {m[0]: m[1:] for m in ours[2]}
    h = {m[0]: m[1:] for m in theirs[2]}
    for name in [*h, *(n for n in o if n not in h)]:
        if name not in o:
            return f"field {name!r} is in the header, not in the object"
        if name not in h:
            return f"field {name!r} is in the object, not in the header"
        if o[name][0] != h[name][0]:
            return f"field {name!r} is at bit offset {h[name][0]} in the header, " \
                   f"{o[name][0]} in the object"
        if o[name] != h[name]:
            return f"field {name!r} has another size ({h[name][2]} bytes in the header, " \
                   f"{o[name][2]} in the object)"
    return "the order of its fields differs"
