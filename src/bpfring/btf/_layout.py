"""Layout nodes and the code generator behind every codec.

A C type becomes a tree of nodes (:class:`Atom`, :class:`ArrayNode`,
:class:`StructNode` with :class:`Bits` runs, :class:`BitsRoot`); the tree
knows its byte layout, its numpy dtype and how to generate Python source
for decoding and encoding it.  :class:`Compiled` turns a tree into one
``struct.Struct`` plus generated ``decode``/``flatten``/``encode_into``
functions: decoding a record is one ``unpack_from`` and one expression.

Nodes are built from BTF by :mod:`._builder`; this module never sees BTF.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from ..errors import BTFError
from ._records import Record, make_record_class
from ._runtime import HELPERS, Encoder, anon_get, getter, same

if TYPE_CHECKING:
    from enum import IntEnum

    from _typeshed import ReadableBuffer, WriteableBuffer

#: One ``struct`` item a generated decoder reads: (byte offset, size, struct
#: code, number of values it yields, member path for messages).
Item: TypeAlias = tuple[int, int, str, int, str]


class Decoder(Protocol):
    """``decode(buffer, offset=0)``: one value from a bytes-like object."""

    def __call__(self, buffer: ReadableBuffer, /, offset: int = 0) -> Any: ...


class EncoderInto(Protocol):
    """``encode_into(buffer, offset, value)``: write a value into a writable buffer."""

    def __call__(self, buffer: WriteableBuffer, offset: int, value: Any, /) -> None: ...


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

    def extract(self, values: Any) -> npt.NDArray[np.int64] | npt.NDArray[np.uint64]:
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
# Code generation state
# --------------------------------------------------------------------------------------


class Gen:
    """State for generating one decode expression / encode body: the flat list of
    ``struct`` items it reads (offset, size, code, number of values, path) and
    the namespace holding the objects the code refers to."""

    def __init__(
        self, ns: dict[str, Any], counter: Iterator[int], base: str | None, label: str = ""
    ) -> None:
        self.ns = ns
        self.label = label  # the compiled type's name: prefixes paths in messages
        self.counter = counter
        self.base = base
        self.items: list[Item] = []
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

    def sym(self, obj: object, prefix: str = "_c") -> str:
        ids: dict[int, str] = self.ns.setdefault("__ids__", {})
        name = ids.get(id(obj))
        if name is None:
            name = f"{prefix}{next(self.counter)}"
            ids[id(obj)] = name
            self.ns[name] = obj
        return name

    def tmp(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    def sub(self, base: str) -> Gen:
        return Gen(self.ns, self.counter, base, self.label)


# --------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------


class Node:
    """A piece of C layout.  ``gen_dec`` registers the struct items it reads and
    returns a Python expression building the value; ``gen_enc`` emits
    statements appending the values to pack, in the same order."""

    size: int = 0
    atom: bool = False
    label: str = "value"
    #: How many Python values decoding makes (records and leaves): bounds the work a
    #: decode of untrusted BTF can cost (see CodecBuilder).
    cost: int = 1
    _compiled: Compiled | None = None

    def np_format(self) -> npt.DTypeLike:
        raise NotImplementedError

    def gen_dec(self, g: Gen, off: int, path: str) -> str:
        raise NotImplementedError

    def gen_enc(self, g: Gen, val: str, lines: list[str], ind: str, path: str) -> None:
        raise NotImplementedError

    def compiled(self) -> Compiled:
        """This node compiled once, labelled with its own name (made on first use)."""
        c = self._compiled
        if c is None:
            c = self._compiled = Compiled(self, self.label)
        return c


class Atom(Node):
    """A value read as one ``struct`` item: scalars, char arrays, unions, raw bytes.
    ``code`` is the item (``"I"``, ``"16s"``); ``single`` codes can be repeated
    as ``"<n><code>"`` for arrays."""

    atom = True

    def __init__(
        self,
        size: int,
        code: str,
        np_fmt: npt.DTypeLike,
        *,
        dec: Callable[[Any], Any] | None = None,
        dec_map: dict[int, Any] | None = None,
        enc: Encoder | None = None,
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
        self.enum_class: type[IntEnum] | None = None  # set for enums

    def np_format(self) -> npt.DTypeLike:
        return self._np

    def dec_expr(self, g: Gen, x: str) -> str:
        if self.dec_map is not None:
            m = g.sym(self.dec_map, "_m")
            return f"{m}.get({x}, {x})"
        if self.dec is not None:
            return f"{g.sym(self.dec, '_f')}({x})"
        return x

    def enc_expr(self, g: Gen, x: str) -> str:
        if self.enc is not None:
            return f"{g.sym(self.enc, '_f')}({x})"
        return f"{self.zero!r} if {x} is None else {x}"

    def gen_dec(self, g: Gen, off: int, path: str) -> str:
        return self.dec_expr(g, g.v(g.add(off, self.size, self.code, 1, path)))

    def gen_enc(self, g: Gen, val: str, lines: list[str], ind: str, path: str) -> None:
        lines.append(f"{ind}_a({self.enc_expr(g, val)})")


#: Arrays of more struct items than this (or of more non-repeatable atoms) are read
#: as one run of raw bytes and decoded element by element with the element's own
#: codec, so that building a codec stays O(1) in the number of elements.
EXPAND_LIMIT = 256


#: A struct member whose layout makes more values than this is compiled on its
#: own and read as one raw item (else a DAG of big structs would inline
#: exponentially many items); small members, the usual case, are inlined.
INLINE_LIMIT = 64


def apart(node: Node) -> bool:
    """Whether a member is decoded by its own compiled codec (see INLINE_LIMIT)."""
    return isinstance(node, StructNode | ArrayNode) and node.cost > INLINE_LIMIT


class ArrayNode(Node):
    """A C array.  Arrays of atoms (also multi-dimensional) are read as one flat
    run of items; small arrays of structs repeat the element's items, large ones
    (and large arrays of raw atoms) are one raw item decoded at a stride."""

    def __init__(self, elem: Node, n: int) -> None:
        self.elem = elem
        if isinstance(elem, ArrayNode) and elem.base.atom:
            self.base: Node = elem.base
            self.shape: tuple[int, ...] = (n, *elem.shape)
        else:
            self.base = elem
            self.shape = (n,)
        self.size = n * elem.size
        self.cost = n * elem.cost + 1
        self.label = elem.label + f"[{n}]"

    def np_format(self) -> npt.DTypeLike:
        if self.base.atom:
            return (self.base.np_format(), self.shape)
        return (self.elem.np_format(), self.shape[:1])

    def _strided(self) -> bool:
        """Whether this array is read as one raw item (see :data:`EXPAND_LIMIT`)."""
        if isinstance(self.base, Atom):
            return not self.base.single and math.prod(self.shape) > EXPAND_LIMIT
        return self.shape[0] * self.elem.cost > EXPAND_LIMIT

    def gen_dec(self, g: Gen, off: int, path: str) -> str:
        if self._strided():
            k = g.add(off, self.size, f"{self.size}s", 1, path)
            if isinstance(self.base, Atom):
                base, total = self.base, math.prod(self.shape)
                conv = base.dec_expr(g, "x")
                if base.size == 0:
                    flat = f"[{conv} for x in [b''] * {total}]"
                else:
                    b, sz = g.v(k), base.size
                    slices = f"[{b}[j : j + {sz}] for j in range(0, {self.size}, {sz})]"
                    flat = f"[{conv} for x in {slices}]"
                return f"_nest({flat}, {self.shape!r})" if len(self.shape) > 1 else flat
            dec = g.sym(self.elem.compiled().decode, "_d")
            n, esize = self.shape[0], self.elem.size
            if esize == 0:
                return f"[{dec}(b'') for _ in range({n})]"
            return f"[{dec}({g.v(k)}, j) for j in range(0, {self.size}, {esize})]"
        if isinstance(self.base, Atom):
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
        # Arrays of structs: one element function, applied to the element's items
        # repeated once per element (the whole array is still one unpack).
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

    def gen_enc(self, g: Gen, val: str, lines: list[str], ind: str, path: str) -> None:
        if isinstance(self.base, Atom):
            enc = g.sym(self.base.enc, "_f") if self.base.enc is not None else "None"
            flat = f"_flat_arr({val}, {self.shape!r}, {enc}, {self.base.zero!r}, {path!r})"
            if self._strided():
                lines.append(f"{ind}_a(_join_fixed({flat}, {self.base.size}))")
            else:
                lines.append(f"{ind}_e({flat})")
            return
        if self._strided():
            into = g.sym(self.elem.compiled().encode_into, "_w")
            n, esize = self.shape[0], self.elem.size
            lines.append(f"{ind}_a(_strided_enc({val}, {n}, {esize}, {into}, {path!r}))")
            return
        # The element's own flatten (its values in its items' order): one statement
        # per array, so nesting never runs into Python's limit on nested blocks.
        flat = g.sym(self.elem.compiled().flatten, "_fl")
        e = g.tmp("e")
        lines.append(f"{ind}for {e} in _seq({val}, {self.shape[0]}, {path!r}): _e({flat}({e}))")


@dataclass(slots=True)
class Field:
    """A member of a struct that is not a bitfield."""

    pyname: str
    offset: int
    node: Node
    anon_keys: frozenset[str] | None = None  # set for anonymous struct/union members


@dataclass(slots=True)
class BitSpec:
    """One bitfield member."""

    pyname: str
    bit: int  # absolute bit offset inside the struct
    bits: int
    signed: bool
    dec_map: dict[int, Any] | None
    enc: Encoder | None
    is_bool: bool


class Bits:
    """Consecutive bitfields whose bytes overlap, read as one storage item.
    The storage is the smallest byte span covering them, widened to 2/4/8 bytes
    when that does not run into the next member."""

    def __init__(self, first: BitSpec) -> None:
        self.fields = [first]
        self.start = first.bit // 8
        self.end = (first.bit + first.bits + 7) // 8
        self.width = self.end - self.start
        self.np_start, self.np_width = self.start, self.width

    def overlaps(self, f: BitSpec) -> bool:
        # a bitfield before this run's start (BTF out of order) starts a new run,
        # which the struct format then reports as overlapping
        return self.start <= f.bit // 8 < self.end

    def add(self, f: BitSpec) -> None:
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

    def gen_dec(self, g: Gen, off: int, path: str) -> list[str]:
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

    def gen_enc(self, g: Gen, get: str, lines: list[str], ind: str, path: str) -> None:
        b = g.tmp("b")
        lines.append(f"{ind}{b} = 0")
        for f in self.fields:
            sh = f.bit - self.start * 8
            enc = g.sym(f.enc, "_f") if f.enc is not None else "None"
            p = f"{g.label}{path}.{f.pyname}"
            lines.append(f"{ind}x = {get}({f.pyname!r})")
            check = f"_bits_in(x, {f.bits}, {enc}, {p!r}, {f.signed})"
            lines.append(f"{ind}if x is not None: {b} |= {check} << {sh}")
        if self.width in (1, 2, 4, 8):
            lines.append(f"{ind}_a({b})")
        else:
            lines.append(f"{ind}_a({b}.to_bytes({self.width}, 'little'))")


#: A union member compiled on its own: (name, byte offset, layout, anon keys).
UnionMember: TypeAlias = tuple[str, int, "Compiled", frozenset[str] | None]
#: A union's (decode from bytes at an offset, encode to bytes).
UnionFunctions: TypeAlias = tuple[Callable[..., Record], Callable[[Any], bytes]]


class StructNode(Node):
    """A struct or union: decodes to a Record.  A union is read as raw bytes and
    decoded member by member (each member reads the same bytes)."""

    def __init__(
        self, name: str, size: int, entries: list[Field | Bits], union: bool, label: str
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
            if isinstance(e, Bits):
                fields.extend(f.pyname for f in e.fields)
            else:
                fields.append(e.pyname)
                if e.anon_keys is not None:
                    anon.append((e.pyname, e.anon_keys))
                    keys |= e.anon_keys
        keys.update(fields)
        self.cost = 1 + sum(
            len(e.fields) if isinstance(e, Bits) else e.node.cost for e in entries
        )
        self.fields = fields
        self.keys = frozenset(keys)
        self.cls = make_record_class(name, fields, union, anon)
        self.cls._node = self
        self._np: np.dtype[np.void] | None = None
        self._union_codec: UnionFunctions | None = None
        for i, e in enumerate(entries):
            if isinstance(e, Bits):
                nxt = entries[i + 1] if i + 1 < len(entries) and not union else None
                limit = size if nxt is None else (
                    nxt.offset if isinstance(nxt, Field) else nxt.start
                )
                e.widen(limit, size)

    # numpy -----------------------------------------------------------------------
    def np_format(self) -> np.dtype[np.void]:
        if self._np is None:
            names: list[str] = []
            formats: list[npt.DTypeLike] = []
            offsets: list[int] = []
            for e in self.entries:
                if isinstance(e, Bits):
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
            if isinstance(e, Bits):
                for f in e.fields:
                    out[f.pyname] = BitField(
                        f.pyname, e.storage, e.np_start, f.bit - 8 * e.np_start, f.bits, f.signed
                    )
        return out

    # code generation ------------------------------------------------------------------
    def member_exprs(self, g: Gen, off: int, path: str) -> list[str]:
        exprs: list[str] = []
        for e in self.entries:
            if isinstance(e, Bits):
                exprs.extend(e.gen_dec(g, off, path))
            elif apart(e.node):
                k = g.add(off + e.offset, e.node.size, f"{e.node.size}s", 1, f"{path}.{e.pyname}")
                exprs.append(f"{g.sym(e.node.compiled().decode, '_d')}({g.v(k)})")
            else:
                exprs.append(e.node.gen_dec(g, off + e.offset, f"{path}.{e.pyname}"))
        return exprs

    def member_enc(
        self, g: Gen, val: str, get: str, lines: list[str], ind: str, path: str
    ) -> None:
        for e in self.entries:
            if isinstance(e, Bits):
                e.gen_enc(g, get, lines, ind, path)
                continue
            x = g.tmp("x")
            if e.anon_keys is not None:
                keys = g.sym(e.anon_keys, "_k")
                lines.append(f"{ind}{x} = _anon_get({val}, {get}, {e.pyname!r}, {keys})")
            else:
                lines.append(f"{ind}{x} = {get}({e.pyname!r})")
            if apart(e.node):
                lines.append(f"{ind}_a({g.sym(e.node.compiled().pack, '_p')}({x}))")
            else:
                e.node.gen_enc(g, x, lines, ind, f"{path}.{e.pyname}")

    def gen_dec(self, g: Gen, off: int, path: str) -> str:
        if self.union:
            k = g.add(off, self.size, f"{self.size}s", 1, path)
            return f"{g.sym(self.union_functions()[0], '_u')}({g.v(k)})"
        cls = g.sym(self.cls, "_C")
        return f"{cls}({', '.join(self.member_exprs(g, off, path))})"

    def gen_enc(self, g: Gen, val: str, lines: list[str], ind: str, path: str) -> None:
        if self.union:
            lines.append(f"{ind}_a({g.sym(self.union_functions()[1], '_u')}({val}))")
            return
        get = g.tmp("g")
        keys = g.sym(self.keys, "_k")
        cls = g.sym(self.cls, "_C")
        lines.append(f"{ind}{get} = _getter({val}, {keys}, {self.name!r}, {cls})")
        self.member_enc(g, val, get, lines, ind, path)

    def union_members(self) -> list[UnionMember]:
        """Each union member compiled on its own: (name, byte offset, layout, anon keys)."""
        out: list[UnionMember] = []
        for e in self.entries:
            if isinstance(e, Bits):
                for f in e.fields:
                    bits = Bits(f)
                    one = Compiled(BitsRoot(bits), f"{self.name}.{f.pyname}")
                    out.append((f.pyname, bits.start, one, None))
            else:
                one = Compiled(e.node, f"{self.name}.{e.pyname}")
                out.append((e.pyname, e.offset, one, e.anon_keys))
        for pyname, mo, one, _k in out:
            if mo + one.size > self.size:
                raise BTFError(
                    f"{self.name}.{pyname}: union member ends at {mo + one.size}, beyond the "
                    f"union's size {self.size}"
                )
        return out

    def union_functions(self) -> UnionFunctions:
        """(decode from bytes, encode to bytes) for a union."""
        if self._union_codec is None:
            members = self.union_members()
            size, keys, name = self.size, self.keys, self.name
            cls: Callable[..., Record] = self.cls
            zero = bytes(size)

            def from_bytes(b: Any, offset: int = 0) -> Record:
                rec = cls(*[m.decode(b, offset + mo) for _, mo, m, _ in members])
                rec._raw = bytes(b[offset : offset + size])  # type: ignore[misc]  # union slot
                return rec

            def to_bytes(val: Any) -> bytes:
                if val is None:
                    return zero
                get = getter(val, keys, name)
                raw = getattr(val, "_raw", None) if isinstance(val, Record) else None
                if raw is not None and len(raw) == size:
                    # A decoded union: keep its bytes, rewrite only the members changed since.
                    buf = bytearray(raw)
                    for pyname, mo, m, _k in members:
                        x = get(pyname)
                        if not same(m.decode(raw, mo), x):
                            m.encode_into(buf, mo, x)
                    return bytes(buf)
                buf = bytearray(size)
                wrote = False
                for pyname, mo, m, anon_keys in members:
                    x = get(pyname) if anon_keys is None else anon_get(val, get, pyname, anon_keys)
                    if x is None:
                        continue
                    if wrote and same(m.decode(buf, mo), x):
                        continue
                    m.encode_into(buf, mo, x)
                    wrote = True
                return bytes(buf)

            self._union_codec = (from_bytes, to_bytes)
        return self._union_codec


class BitsRoot(Node):
    """A single bitfield as a top-level value (a bitfield member of a union)."""

    def __init__(self, bits: Bits) -> None:
        self.bits = bits
        self.size = bits.width
        self.label = bits.fields[0].pyname
        self.shift = bits.start

    def np_format(self) -> npt.DTypeLike:
        return self.bits.np_format()

    def gen_dec(self, g: Gen, off: int, path: str) -> str:
        return self.bits.gen_dec(g, off - self.shift, path)[0]

    def gen_enc(self, g: Gen, val: str, lines: list[str], ind: str, path: str) -> None:
        get = g.tmp("g")
        lines.append(f"{ind}{get} = lambda _n: {val}")
        self.bits.gen_enc(g, get, lines, ind, path)


# --------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------


def struct_format(items: list[Item], size: int, label: str) -> str:
    """The ``struct`` format reading ``items`` (sorted by offset) of a ``size``-byte type."""
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


class Compiled:
    """A node compiled to a ``struct.Struct`` plus generated decode/flatten functions."""

    decode: Decoder
    encode_into: EncoderInto
    flatten: Callable[[Any], list[Any]]

    def __init__(self, node: Node, label: str) -> None:
        self.node = node
        self.label = label
        self.size = node.size
        if isinstance(node, StructNode) and node.union:
            self._init_union(node, label)
            return
        ns: dict[str, Any] = dict(HELPERS)
        g = Gen(ns, itertools.count(), None, label)
        expr = node.gen_dec(g, 0, "")
        self.items = g.items
        self.struct = struct.Struct(struct_format(g.items, node.size, label))
        ns["_unpack"] = self.struct.unpack_from
        ns["_pack_into"] = self.struct.pack_into
        ns["_short"] = short_buffer
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
            "    except (_StructError, OverflowError) as e:\n"  # OverflowError: float > f
            "        raise _packerr(o, e, buf, offset) from None\n"
        )
        try:
            exec(src, ns)
        except (SyntaxError, RecursionError, MemoryError) as e:  # BTF nested absurdly
            raise BTFError(f"{label}: layout too complex to compile ({e})") from None
        self.decode = ns["decode"]
        self.flatten = ns["flatten"]
        self.encode_into = ns["encode_into"]

    def _init_union(self, node: StructNode, label: str) -> None:
        """A union top level: its own functions over the raw bytes, no generated code."""
        from_bytes, to_bytes = node.union_functions()
        self.struct = struct.Struct(f"<{node.size}s")
        self.items = [(0, node.size, f"{node.size}s", 1, label)]
        pack_into = self.struct.pack_into
        size = node.size

        def encode_into(buf: Any, offset: int, val: Any) -> None:
            pack_into(buf, offset, to_bytes(val))

        def decode(buf: Any, offset: int = 0) -> Any:
            if len(buf) - offset < size or offset < 0:
                raise short_buffer(buf, offset, size, label)
            return from_bytes(buf, offset)

        self.decode = decode
        self.encode_into = encode_into
        self.flatten = lambda val: [to_bytes(val)]

    def pack(self, val: Any) -> bytes:
        o = self.flatten(val)
        try:
            return self.struct.pack(*o)
        except (struct.error, OverflowError) as e:
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
            except (struct.error, OverflowError) as e:
                where = f"{self.label}{path}" if path.startswith((".", "[")) else self.label
                return ValueError(f"cannot encode {where}: {e}")
            k += nv
        return ValueError(f"cannot encode {self.label}: {err}")


def short_buffer(buf: Any, offset: int, size: int, label: str) -> ValueError:
    """The error for a buffer too short to hold ``size`` bytes at ``offset``."""
    try:
        have = len(buf)
    except TypeError:
        have = -1
    return ValueError(f"{label}: need {size} bytes at offset {offset}, buffer has {have}")
