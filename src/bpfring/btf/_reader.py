"""The BTF reader: header, string section, type records, split BTF, lookups.

:class:`BTF` checks the header and indexes the type section in one pass at
load time (:func:`index_types`); a type record is decoded only when it is
asked for (:meth:`BTF.type_by_id` -> :func:`decode_type`).  Those two
functions read the type section (``BTF._kind_array`` only reads the kind
and name words at the offsets :func:`index_types` found), so bounds checks
on BTF input have one place to live.  Codecs are built by
:mod:`._builder`; the codec methods here only delegate to it.
"""

from __future__ import annotations

import difflib
import os
import struct
import threading
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from ..errors import BTFError, TypeNotFound
from ._builder import CodecBuilder, TypeMap
from ._codec import Codec
from ._elf import SHT_NOBITS, Source, elf_sections, read_source
from ._model import (
    BTF_MAGIC,
    LAYOUT_ORDER,
    MAX_CHAIN,
    MAX_DEPTH,
    MAX_SIZE,
    MODIFIERS,
    SYS_BTF_DIR,
    VMLINUX_PATH,
    VOID,
    Enumerator,
    Kind,
    Member,
    Param,
    Type,
    VarSecInfo,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, 4 x u32

_KINDS = tuple(Kind)
# 32-bit words that follow the 12-byte common header of a type record: a fixed
# part plus a part per vlen entry.  None marks kinds that cannot appear.
_FIXED_WORDS: tuple[int | None, ...] = (
    None, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0,
) + (None,) * 12  # fmt: skip
_VLEN_WORDS: tuple[int | None, ...] = (
    None, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3,
) + (None,) * 12  # fmt: skip

_KIND_WORDS: dict[str, frozenset[Kind]] = {k.name.lower(): frozenset({k}) for k in Kind}
_KIND_WORDS["enum"] = frozenset({Kind.ENUM, Kind.ENUM64})


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

    def decode(self, section: ReadableBuffer) -> Any:
        """Decode this variable from the bytes of its whole section."""
        return self.codec.decode(section, self.offset)


def index_types(words: memoryview) -> array[int]:
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


def decode_type(btf: BTF, tid: int, w: memoryview, i: int) -> Type:
    """The type record of id ``tid`` starting at word ``i`` of ``w`` (names via ``btf``)."""
    string = btf.string
    name_off, info, su = w[i], w[i + 1], w[i + 2]
    kind = _KINDS[(info >> 24) & 0x1F]
    vlen = info & 0xFFFF
    kflag = bool(info >> 31)
    name = string(name_off)
    p = i + 3
    common: dict[str, Any] = {"kind_flag": kflag, "vlen": vlen}
    if kind in _SIZED:
        check_size(tid, kind, su, w[p] if kind == Kind.INT else 0)
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
                members.append(Member(string(w[q]), w[q + 1], off & 0xFFFFFF, off >> 24))
            else:
                members.append(Member(string(w[q]), w[q + 1], off, 0))
        return Type(tid, kind, name, size=su, members=tuple(members), **common)
    if kind == Kind.ENUM:
        raw = [w[p + 2 * k + 1] for k in range(vlen)]
        signed = kflag or (not btf.enum_signs_marked() and unmarked_enum_is_signed(raw))
        vals = [Enumerator(string(w[p + 2 * k]), v - (1 << 32) if signed and v >= 1 << 31
                           else v) for k, v in enumerate(raw)]
        return Type(tid, kind, name, size=su, enumerators=tuple(vals),
                    signed_enum=signed and not kflag, **common)
    if kind == Kind.ENUM64:
        vals = []
        for k in range(vlen):
            q = p + 3 * k
            v = w[q + 1] | (w[q + 2] << 32)
            if kflag and v >= 1 << 63:
                v -= 1 << 64
            vals.append(Enumerator(string(w[q]), v))
        return Type(tid, kind, name, size=su, enumerators=tuple(vals), **common)
    if kind == Kind.FUNC_PROTO:
        params = tuple(Param(string(w[p + 2 * k]), w[p + 2 * k + 1]) for k in range(vlen))
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


_SIZED = frozenset({Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FLOAT, Kind.STRUCT, Kind.UNION,
                    Kind.DATASEC})  # fmt: skip


def unmarked_enum_is_signed(raw: list[int]) -> bool:
    """Whether a 32-bit BTF enum without kind_flag is signed, from its raw
    enumerator values, for BTF whose producer never marks signedness.

    clang before 15 writes each enumerator's value as 32 bits and no sign:
    ``-3`` and ``0xfffffffd`` look the same.  C gives an enum with a
    negative enumerator a signed type, so a value with bit 31 set is read as
    negative when every such value is a small negative number (down to
    -2**24: error codes, ``-1`` sentinels); an enum with larger ones
    (``1u << 31`` flags, ``0xdeadbeef``) stays unsigned.
    """
    high = [v for v in raw if v >= 1 << 31]
    return bool(high) and all(v >= (1 << 32) - (1 << 24) for v in high)


def check_size(tid: int, kind: Kind, size: int, int_enc: int) -> None:
    """Reject the size field of a type record the kernel would reject (or that is
    too big to build a codec of): BTF input is untrusted."""
    what = None
    if kind == Kind.INT:
        bits, off = int_enc & 0xFF, (int_enc >> 16) & 0xFF
        if not 1 <= size <= 16:
            what = f"int of {size} bytes"
        elif bits == 0 or bits + off > 8 * size or int_enc & 0xFF00:
            what = f"int of {bits} bits at bit {off} in {size} bytes"
    elif kind in (Kind.ENUM, Kind.ENUM64):
        if size not in (1, 2, 4, 8):
            what = f"enum of {size} bytes"
    elif kind == Kind.FLOAT:
        if size not in (2, 4, 8, 12, 16):
            what = f"float of {size} bytes"
    elif size > MAX_SIZE:
        what = f"{kind.name.lower()} of {size} bytes (limit {MAX_SIZE})"
    if what is not None:
        raise BTFError(f"BTF type {tid}: bad size: {what}")


def kind_set(kind: Kind | str | int | None) -> frozenset[Kind]:
    """The kinds a ``kind`` argument means: None is all, ``"enum"`` both enums."""
    if kind is None:
        return frozenset(Kind)
    if isinstance(kind, str):
        try:
            return _KIND_WORDS[kind.lower()]
        except KeyError:
            raise ValueError(f"unknown BTF kind {kind!r}") from None
    return frozenset({Kind(kind)})


def split_name(name: str, kind: Kind | str | None) -> tuple[str, Kind | str | None]:
    """Accept C spellings: "struct foo", "union foo", "enum foo"."""
    head, _, rest = name.strip().partition(" ")
    if rest and head in ("struct", "union", "enum") and kind is None:
        return rest.strip(), head
    return name.strip(), kind


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
        if len(data) < HEADER.size:
            raise BTFError(f"BTF blob too short ({len(data)} bytes)")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = (
            HEADER.unpack_from(data)
        )
        if magic != BTF_MAGIC:
            if magic == 0x9FEB:
                raise BTFError("big-endian BTF is not supported")
            raise BTFError(f"bad BTF magic {magic:#06x} (expected {BTF_MAGIC:#06x})")
        if version != 1:
            raise BTFError(f"unsupported BTF version {version}")
        if hdr_len < HEADER.size or hdr_len > len(data):
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
        self._start_id: int = base._next_id if base is not None else 1
        self._str_start: int = base._str_end if base is not None else 0
        self._str_end: int = self._str_start + str_len
        self._offsets = index_types(self._words)
        self._next_id: int = self._start_id + len(self._offsets)
        self._cache: dict[int, Type] = {}
        self._name_cache: dict[str, list[int]] = {}
        self._name_offs: npt.NDArray[np.uint32] | None = None
        self._kinds: npt.NDArray[np.uint32] | None = None
        self._signs_marked: bool | None = None
        self._lock = threading.RLock()
        self._codecs = CodecBuilder(self)
        self.types: TypeMap = TypeMap(self)

    # construction -------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, base: BTF | None = None) -> BTF:
        """Parse a raw BTF blob (as in ``/sys/kernel/btf/*`` or an ELF ``.BTF``)."""
        return cls(data, base)

    @classmethod
    def from_elf(cls, source: Source, base: BTF | None = None) -> BTF:
        """Parse the ``.BTF`` section of an ELF64 little-endian file (path or bytes)."""
        data = read_source(source)
        sections = elf_sections(data)
        if ".BTF" not in sections or sections[".BTF"][0] == SHT_NOBITS:
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
            return cls(read_source(path))
        with cls._vmlinux_lock:
            if cls._vmlinux is None:
                if not os.path.exists(path):
                    raise BTFError(
                        f"{path} does not exist",
                        hint="the kernel was built without CONFIG_DEBUG_INFO_BTF",
                    )
                cls._vmlinux = cls(read_source(path))
            return cls._vmlinux

    @classmethod
    def kernel_module(cls, name: str) -> BTF:
        """A kernel module's split BTF (``/sys/kernel/btf/<name>``) on top of vmlinux."""
        return cls(read_source(os.path.join(SYS_BTF_DIR, name)), cls.vmlinux())

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
    def type_by_id(self, type_id: int) -> Type:
        """The type with this id (0 is ``void``).  Also ``btf.type(id)`` and ``btf[id]``."""
        if type_id < self._start_id:
            if type_id == 0:
                return VOID
            if self._base is None or type_id < 0:
                raise BTFError(f"BTF type id {type_id} out of range")
            return self._base.type_by_id(type_id)
        t = self._cache.get(type_id)
        if t is None:
            j = type_id - self._start_id
            if j >= len(self._offsets):
                raise BTFError(f"BTF type id {type_id} out of range (last is {self._next_id - 1})")
            t = decode_type(self, type_id, self._words, self._offsets[j])
            self._cache[type_id] = t
        return t

    __getitem__ = type_by_id

    def iter_types(self, kind: Kind | str | None = None) -> Iterator[Type]:
        """All types (base first), optionally only of one kind ("enum" means both enums)."""
        if self._base is not None:
            yield from self._base.iter_types(kind)
        if kind is None:
            for j in range(len(self._offsets)):
                yield self.type_by_id(self._start_id + j)
            return
        kinds = np.array(sorted(kind_set(kind)), dtype=np.uint32)
        for hit in np.flatnonzero(np.isin(self._kind_array(), kinds)):
            yield self.type_by_id(self._start_id + int(hit))

    def enum_signs_marked(self) -> bool:
        """Whether this BTF marks signed enums with kind_flag (clang 15+,
        pahole 1.24+ do): true when any enum here has it set.  When none
        does, a 32-bit enum's signedness is read from its values
        (:func:`unmarked_enum_is_signed`), so that clang 14's ``-3`` decodes
        and encodes as the enumerator it is."""
        if self._signs_marked is None:
            words = np.frombuffer(self._types, dtype="<u4")
            offs = np.frombuffer(self._offsets, dtype=np.uint32).astype(np.int64)
            info = words[offs + 1]
            kinds = (info >> np.uint32(24)) & np.uint32(0x1F)
            enums = np.isin(kinds, np.array([Kind.ENUM, Kind.ENUM64], dtype=np.uint32))
            self._signs_marked = bool(np.any(enums & ((info >> np.uint32(31)) == 1)))
        return self._signs_marked

    def _kind_array(self) -> npt.NDArray[np.uint32]:
        """The kind of every own type record (and, alongside, their name offsets)."""
        if self._kinds is None:
            words = np.frombuffer(self._types, dtype="<u4")
            offs = np.frombuffer(self._offsets, dtype=np.uint32).astype(np.int64)
            self._kinds = (words[offs + 1] >> np.uint32(24)) & np.uint32(0x1F)
            self._name_offs = words[offs]
        return self._kinds

    def _name_offsets(self) -> npt.NDArray[np.uint32]:
        self._kind_array()
        assert self._name_offs is not None
        return self._name_offs

    def _ids_named(self, name: str) -> list[int]:
        with self._lock:
            ids = self._name_cache.get(name)
            if ids is None:
                ids = self._base._ids_named(name) if self._base is not None else []
                raw = name.encode("utf-8")
                if raw and b"\0" not in raw:
                    offs = self._string_offsets(raw)
                    if offs:
                        name_offs = self._name_offsets()
                        hits = np.flatnonzero(np.isin(name_offs, np.array(offs, np.uint32)))
                        ids = ids + [self._start_id + int(j) for j in hits]
                self._name_cache[name] = ids
            return ids

    def find_all(self, name: str, kind: Kind | str | None = None) -> list[Type]:
        """Every type called ``name`` (optionally of a kind), in id order."""
        name, kind = split_name(name, kind)
        kinds = kind_set(kind)
        return [t for t in map(self.type_by_id, self._ids_named(name)) if t.kind in kinds]

    def find(self, name: str, kind: Kind | str | None = None) -> Type:
        """The first type called ``name`` (of ``kind``); raises :class:`TypeNotFound`."""
        found = self.find_all(name, kind)
        if not found:
            raise self.not_found_error(*split_name(name, kind))
        return found[0]

    def get(self, name: str, kind: Kind | str | None = None) -> Type | None:
        """Like :meth:`find` but returns None when there is no such type."""
        found = self.find_all(name, kind)
        return found[0] if found else None

    def find_layout(self, name: str, kind: Kind | str | None = None) -> Type:
        """The type :meth:`record` builds a codec of: without a kind, the first
        struct/union called ``name``, else typedef, else enum, else int/float.
        Raises :class:`TypeNotFound` (saying so when only a forward declaration
        exists)."""
        cname, kind = split_name(name, kind)
        found = self.find_all(cname, kind)
        if kind is None:
            layout = [t for t in found if t.kind in LAYOUT_ORDER]
            layout.sort(key=lambda t: LAYOUT_ORDER[t.kind])
            if not layout:
                fwd = any(t.kind == Kind.FWD for t in found)
                raise self.not_found_error(cname, kind, forward=fwd)
            found = layout
        elif not found:
            fwd = bool(
                kind_set(kind) & {Kind.STRUCT, Kind.UNION} and self.find_all(cname, Kind.FWD)
            )
            raise self.not_found_error(cname, kind, forward=fwd)
        return found[0]

    def resolve(self, type_id: int) -> Type:
        """Follow typedefs, const/volatile/restrict and type tags to the real type."""
        t = self.type_by_id(type_id)
        for _ in range(MAX_CHAIN):
            if t.kind not in MODIFIERS:
                return t
            t = self.type_by_id(t.type_id)
        raise BTFError(f"type {type_id}: typedef/modifier chain too long (a loop?)")

    def sizeof(self, type_id: int) -> int:
        """``sizeof`` of a type, in bytes (pointers are 8).  Raises :class:`BTFError`
        for a type without a size, a cycle, or a size over the limit."""
        mult = 1
        seen: list[int] = []
        tid = type_id
        for _ in range(MAX_DEPTH):
            t = self.resolve(tid)
            if t.id in seen:
                raise BTFError(f"BTF type cycle: {' -> '.join(map(str, [*seen, t.id]))}")
            seen.append(t.id)
            if t.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.STRUCT, Kind.UNION,
                          Kind.FLOAT, Kind.DATASEC):  # fmt: skip
                return mult * t.size
            if t.kind == Kind.PTR:
                return mult * 8
            if t.kind == Kind.ARRAY:
                mult *= t.nelems
                if mult > MAX_SIZE:
                    raise BTFError(f"BTF type {t.id}: array of {mult} elements (limit {MAX_SIZE})")
                tid = t.elem_type_id
                continue
            if t.kind == Kind.VAR:
                tid = t.type_id
                continue
            raise BTFError(f"{self.type_str(t.id)} (type {t.id}) has no size")
        raise BTFError(f"BTF type {type_id}: nested too deep (limit {MAX_DEPTH})")

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
        """A C-like spelling of a type, for messages: ``struct event``, ``char[16]``.
        Raises :class:`BTFError` for a reference cycle (a pointer to itself)."""
        return self._type_str(type_id, [], [256])

    def _type_str(self, type_id: int, path: list[int], budget: list[int]) -> str:
        # path: the ids being spelled, outermost first (a cycle, or too deep);
        # budget: a DAG of function prototypes can spell exponentially long, so
        # past it parts are spelled "...".
        if type_id in path:
            loop = " -> ".join(map(str, [*path[path.index(type_id) :], type_id]))
            raise BTFError(f"BTF type cycle: type {type_id} refers to itself ({loop})")
        if len(path) > MAX_DEPTH:
            raise BTFError(f"BTF type {path[0]}: references nested too deep (limit {MAX_DEPTH})")
        budget[0] -= 1
        if budget[0] < 0:
            return "..."

        def sub(tid: int) -> str:
            path.append(type_id)
            try:
                return self._type_str(tid, path, budget)
            finally:
                path.pop()

        t = self.type_by_id(type_id)
        dims = ""
        for _ in range(MAX_CHAIN):
            if t.kind != Kind.ARRAY:
                break
            dims += f"[{t.nelems}]"
            t = self.type_by_id(t.elem_type_id)
        else:
            raise BTFError(f"BTF type {type_id}: array chain too long (a cycle?)")
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
            s = sub(t.type_id) + " *"
        elif k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
            s = f"{k.name.lower()} {sub(t.type_id)}"
        elif k == Kind.TYPE_TAG:
            s = f"{sub(t.type_id)} __tag({t.name})"
        elif k == Kind.FUNC_PROTO:
            shown = t.params[:64]  # BPF functions take 5 arguments; BTF may claim 65535
            args = ", ".join(sub(p.type_id) if p.type_id else "..." for p in shown)
            args += ", ..." if len(t.params) > len(shown) else ""
            s = f"{sub(t.type_id)} ({args or 'void'})"
        elif k == Kind.DATASEC:
            s = f"section {t.name}"
        else:
            s = t.name or f"({k.name.lower()})"
        return s + dims

    # errors ------------------------------------------------------------------------------
    def not_found_error(
        self, name: str, kind: Kind | str | None = None, *, forward: bool = False
    ) -> TypeNotFound:
        """The :class:`TypeNotFound` for a type missing from this BTF (or present only
        as a ``forward`` declaration): why clang drops types, how to keep one, and
        similar names."""
        word = kind.lower() if isinstance(kind, str) else (
            kind.name.lower() if isinstance(kind, Kind) else None
        )
        what = f"{word} {name}" if word in ("struct", "union", "enum") else name
        decl = what if word in ("struct", "union", "enum") else (
            name if word == "typedef" else f"struct {name}"
        )
        if forward:
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
            if t.name and t.kind in LAYOUT_ORDER
        }
        return difflib.get_close_matches(name, sorted(names), n=3)

    # data sections -------------------------------------------------------------------
    def datasec(self, name: str) -> list[Variable]:
        """The variables of a data section, in the order the DATASEC lists them."""
        t = self.datasec_type(name)
        out = []
        for si in t.secinfos:
            v = self.type_by_id(si.type_id)
            out.append(Variable(v.name, si.offset, si.size, v.type_id if v.kind == Kind.VAR
                                else v.id, v.linkage, self))  # fmt: skip
        return out

    def datasecs(self) -> list[str]:
        """Names of all data sections."""
        return [t.name for t in self.iter_types(Kind.DATASEC)]

    def datasec_type(self, name: str) -> Type:
        """The DATASEC type of a data section; :class:`TypeNotFound` lists those present."""
        found = self.find_all(name, Kind.DATASEC)
        if not found:
            raise TypeNotFound(
                f"no data section {name!r} in BTF",
                hint="sections present: " + (", ".join(self.datasecs()) or "none")
                + "; a section only exists if the program defines a global in it",
            )
        return found[0]

    # codecs (built by CodecBuilder) ------------------------------------------------------
    def record(self, name: str, kind: Kind | str | None = None) -> Codec:
        """A codec for the named type: a struct, union, typedef, enum, int, float
        (``"struct x"``, ``"union x"``, ``"enum x"`` pick the kind).  Raises
        :class:`TypeNotFound` (a ``KeyError``) when it is not in the BTF."""
        return self._codecs.record(name, kind)

    def codec(self, type_id: int | Type, name: str | None = None) -> Codec:
        """A codec for a type id (``name`` labels anonymous types and messages)."""
        return self._codecs.codec(type_id, name)

    def datasec_codec(self, name: str) -> Codec:
        """A codec decoding a whole data section (e.g. the value of a ``.bss`` map)
        into one record with a field per variable.  Needs real variable offsets:
        BTF from a linked or loaded object, not a raw clang ``.o``."""
        return self._codecs.datasec_codec(name)

    def enum_class(self, name: str) -> type[IntEnum]:
        """The :class:`enum.IntEnum` for a named BTF enum (or typedef of one).
        Also ``btf.enum(name)``."""
        return self._codecs.enum_class(name)

    # The first spellings of type_by_id and enum_class.  They stay the last
    # statements of the class body: above this line, ``type`` and ``enum`` in
    # the body are the builtin and the module, never these methods.
    type = type_by_id
    enum = enum_class


def load(source: Source, base: BTF | None = None) -> BTF:
    """BTF from an ELF object or a raw BTF blob, given as a path or bytes.

    A path to a kernel module's BTF (``/sys/kernel/btf/<module>``) is loaded
    as split BTF on top of vmlinux unless ``base`` is given.
    """
    data = read_source(source)
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
