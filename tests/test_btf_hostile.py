"""Hostile BTF (issue 11): blobs built by hand to be absurd, cyclic, deep or
inconsistent must raise :class:`BTFError` (naming the type), quickly and in
bounded memory; bitfield ranges follow signedness; unions decode every member
as its own type and round-trip.  ``test_btf_fuzz.py`` mutates blobs at random.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

import pytest
from btf_support import Blob

from bpfring.btf import BTF, BTFError, Kind

_T = TypeVar("_T")


def _peak(fn: Callable[[], _T]) -> tuple[_T, int]:
    """``fn()`` and the peak bytes Python allocated while it ran."""
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def build(b: Blob) -> BTF:
    return BTF.from_bytes(b.build())


# --- item 2: arrays of structs and sizes ----------------------------------------------


def test_array_of_structs_builds_in_constant_time() -> None:
    b = Blob()
    u8 = b.int_("u8", 1)
    elem = b.add("e", Kind.STRUCT, 2, b.s("a"), u8, 0, b.s("b"), u8, 8, vlen=2)
    u32 = b.int_("u32", 4)
    n = 1 << 20
    arr = b.add("", Kind.ARRAY, 0, elem, u32, n)
    b.add("big", Kind.STRUCT, 2 * n, b.s("xs"), arr, 0, vlen=1)
    btf = build(b)
    # Constant cost, measured in memory (load-independent): expanding per
    # element would take about 220 B for each of the 2**20 elements.
    c, peak = _peak(lambda: btf.record("big"))
    assert peak < 4 << 20, f"{peak} bytes to build the codec"
    assert c.size == 2 * n
    data = bytes(range(4)) + bytes(2 * n - 4)
    rec = c.decode(data)
    assert len(rec.xs) == n
    assert (rec.xs[0].a, rec.xs[0].b, rec.xs[1].a, rec.xs[1].b) == (0, 1, 2, 3)
    assert c.encode(rec) == data
    # a short list is zero-padded, a long one rejected
    assert c.encode(xs=[{"a": 7}])[:2] == b"\x07\x00"
    with pytest.raises(ValueError, match="elements"):
        c.encode(xs=[None] * (n + 1))


def test_huge_nelems_is_btferror_naming_type() -> None:
    b = Blob()
    u8 = b.int_("u8", 1)
    elem = b.add("e", Kind.STRUCT, 8, b.s("a"), u8, 0, vlen=1)
    u32 = b.int_("u32", 4)
    arr = b.add("", Kind.ARRAY, 0, elem, u32, 0xFFFFFFFF)
    b.add("big", Kind.STRUCT, 8, b.s("xs"), arr, 0, vlen=1)
    btf = build(b)

    def refuse() -> None:
        with pytest.raises(BTFError, match=f"type {arr}"):
            btf.record("big")
        with pytest.raises(BTFError, match=f"type {arr}"):
            btf.sizeof(arr)

    # Refused up front, before anything per element was made.
    _, peak = _peak(refuse)
    assert peak < 4 << 20, f"{peak} bytes before the refusal"


@pytest.mark.parametrize(
    ("kind", "size", "extra"),
    [
        (Kind.INT, 0xFFFFFFFF, (32,)),  # int of 4 GiB
        (Kind.INT, 4, (200,)),  # 200 bits in 4 bytes
        (Kind.INT, 4, (0x00200020,)),  # offset 32 + 32 bits in 4 bytes
        (Kind.ENUM, 0x40000000, ()),
        (Kind.FLOAT, 0xFFFFFFFF, ()),  # numpy 'V4294967295'
        (Kind.FLOAT, 3, ()),
        (Kind.STRUCT, 0xFFFFFFFF, ()),
        (Kind.UNION, 0x80000000, ()),
    ],
)
def test_absurd_sizes(kind: Kind, size: int, extra: tuple[int, ...]) -> None:
    b = Blob()
    tid = b.add("t", kind, size, *extra)
    btf = build(b)
    with pytest.raises(BTFError, match=f"type {tid}"):
        c = btf.codec(tid)
        c.encode(None)
        c.dtype  # noqa: B018


def test_string_offset_and_header_bounds() -> None:
    b = Blob()
    b.add("", Kind.INT, 4, 32)
    raw = bytearray(b.build())
    struct.pack_into("<I", raw, 24, 1 << 30)  # the type's name offset
    btf = BTF.from_bytes(bytes(raw))
    with pytest.raises(BTFError, match="string offset"):
        btf.type_by_id(1)
    # hdr_len, type_off, type_len, str_off, str_len: each absurd in turn
    for pos, value in ((4, 1 << 31), (4, 3), (8, 1 << 31), (12, 0xFFFFFFF0), (16, 1 << 31),
                       (20, 0xFFFFFFFF)):  # fmt: skip
        bad = bytearray(b.build())
        struct.pack_into("<I", bad, pos, value)
        with pytest.raises(BTFError):
            BTF.from_bytes(bytes(bad))


def test_zero_sized_elements_bounded() -> None:
    b = Blob()
    empty = b.add("empty", Kind.STRUCT, 0)
    u32 = b.int_("u32", 4)
    arr = b.add("", Kind.ARRAY, 0, empty, u32, 0xFFFFFFFF)
    b.add("s", Kind.STRUCT, 0, b.s("xs"), arr, 0, vlen=1)
    with pytest.raises(BTFError, match=f"type {arr}"):
        build(b).record("s")


# --- item 3: cycles and depth ---------------------------------------------------------


def test_struct_containing_itself() -> None:
    b = Blob()
    b.add("loop", Kind.STRUCT, 4, b.s("me"), 1, 0, vlen=1)
    btf = build(b)
    with pytest.raises(BTFError, match="1"):
        btf.record("loop")


def test_struct_through_typedef_and_array() -> None:
    b = Blob()
    u32 = b.int_("u32", 4)
    st = b.add("loop", Kind.STRUCT, 8, b.s("a"), 3, 0, vlen=1)  # id 2 -> typedef 3
    td = b.add("loop_t", Kind.TYPEDEF, 4)  # -> array 4
    arr = b.add("", Kind.ARRAY, 0, st, u32, 2)
    btf = build(b)
    for name in ("loop", "loop_t"):
        with pytest.raises(BTFError, match=r"cycle.*\b2\b") as exc:
            btf.record(name)
        assert str(arr) in str(exc.value) and str(td) in str(exc.value)
    assert btf.sizeof(st) == 8  # sizeof reads the struct's size: no walk, no cycle


def test_array_of_itself_and_pointer_loops() -> None:
    b = Blob()
    u32 = b.int_("u32", 4)
    arr = b.add("", Kind.ARRAY, 0, 2, u32, 2)  # id 2: array of itself
    ptr = b.add("", Kind.PTR, 3)  # id 3: pointer to itself
    proto = b.add("", Kind.FUNC_PROTO, 4, b.s("a"), 4, vlen=1)  # returns and takes itself
    cv = b.add("", Kind.CONST, 6)
    b.add("", Kind.VOLATILE, 5)  # const <-> volatile
    btf = build(b)
    with pytest.raises(BTFError, match=f"{arr}"):
        btf.codec(arr)
    with pytest.raises(BTFError, match=f"{arr}"):
        btf.sizeof(arr)
    for tid in (arr, ptr, proto, cv):
        with pytest.raises(BTFError, match=str(tid)):
            btf.type_str(tid)
    assert btf.codec(ptr).size == 8  # a pointer is an address: never followed
    with pytest.raises(BTFError, match=str(cv)):
        btf.codec(cv)


def test_deep_nesting_5000() -> None:
    b = Blob()
    prev = b.int_("u8", 1)
    for k in range(5000):
        prev = b.add(f"s{k}", Kind.STRUCT, 1, b.s("m"), prev, 0, vlen=1)
    btf = build(b)
    with pytest.raises(BTFError, match="deep"):
        btf.record("s4999")
    assert btf.type_str(prev) == "struct s4999"  # no walk through members
    assert btf.record("s10").decode(b"\x05").m.m.m.m.m.m.m.m.m.m.m == 5
    b2 = Blob()
    prev = b2.int_("u8", 1)
    u32 = b2.int_("u32", 4)
    for _ in range(5000):
        prev = b2.add("", Kind.ARRAY, 0, prev, u32, 1)
    btf2 = build(b2)
    with pytest.raises(BTFError, match=str(prev)):
        btf2.codec(prev)
    with pytest.raises(BTFError, match=str(prev)):
        btf2.sizeof(prev)
    with pytest.raises(BTFError, match=str(prev)):
        btf2.type_str(prev)


# --- item 4: foreign exceptions -------------------------------------------------------


def test_duplicate_enumerators_are_btferror_or_work() -> None:
    b = Blob()
    b.add("e", Kind.ENUM, 4, b.s("A"), 1, b.s("A"), 2, vlen=2)
    c = build(b).record("e")  # duplicate names: the first wins, no TypeError
    assert c.decode(struct.pack("<I", 1)) == 1 and c.enum is not None
    assert c.enum["A"] == 1


def test_negative_shift_bitfield_zero_bits() -> None:
    b = Blob()
    u32 = b.add("u32", Kind.INT, 4, 0)  # INT with 0 bits
    tid = b.add("s", Kind.STRUCT, 4, b.s("a"), u32, 3, vlen=1)
    with pytest.raises(BTFError, match=f"type {u32}"):
        build(b).record("s")
    b = Blob()
    u32 = b.int_("u32", 4)
    tid = b.add("s", Kind.STRUCT, 4, b.s("a"), u32, (200 << 24) | 0, vlen=1, kflag=1)
    with pytest.raises(BTFError, match=f"type {tid}"):
        build(b).record("s")


def test_member_beyond_struct_is_btferror() -> None:
    b = Blob()
    u32 = b.int_("u32", 4)
    tid = b.add("s", Kind.STRUCT, 4, b.s("a"), u32, 0xFFFFFF00, vlen=1)
    with pytest.raises(BTFError, match="s"):
        build(b).record("s")
    assert tid


# --- item 8: bitfield ranges ----------------------------------------------------------


def bitfield_codec():  # type: ignore[no-untyped-def]
    b = Blob()
    s32 = b.int_("int", 4, signed=True)
    u32 = b.int_("unsigned int", 4)
    b.add("bf", Kind.STRUCT, 4, b.s("s"), s32, (3 << 24) | 0, b.s("u"), u32, (3 << 24) | 3,
          vlen=2, kflag=1)  # fmt: skip
    return build(b).record("bf")


def test_signed_bitfield_range() -> None:
    c = bitfield_codec()
    for v in range(-4, 4):
        assert c.decode(c.encode(s=v)).s == v
    for v in (4, 7, -5):
        with pytest.raises(ValueError, match=r"bf\.s"):
            c.encode(s=v)


def test_unsigned_bitfield_range() -> None:
    c = bitfield_codec()
    for v in range(8):
        assert c.decode(c.encode(u=v)).u == v
    for v in (-1, 8):
        with pytest.raises(ValueError, match=r"bf\.u"):
            c.encode(u=v)


# --- item 9: unions -------------------------------------------------------------------


@pytest.mark.parametrize("raw_name", ["raw", "_raw"])
def test_union_members_decode_as_their_types(raw_name: str) -> None:
    b = Blob()
    i32 = b.int_("int", 4, signed=True)
    f32 = b.add("float", Kind.FLOAT, 4)
    b.add("u", Kind.UNION, 4, b.s(raw_name), i32, 0, b.s("f"), f32, 0, vlen=2)
    c = build(b).record("u")
    data = struct.pack("<f", 1.5)
    rec = c.decode(data)
    assert rec.f == 1.5
    assert c.fields[0].rstrip("_") == raw_name
    assert getattr(rec, c.fields[0]) == struct.unpack("<i", data)[0]
    assert c.encode(rec) == data
    assert bytes(rec) == data
    neg = struct.pack("<i", -2)
    assert c.encode(c.decode(neg)) == neg


def test_large_arrays_of_raw_atoms_and_unions_round_trip() -> None:
    b = Blob()
    i128 = b.int_("__int128", 16, signed=True)
    u32 = b.int_("u32", 4)
    ld = b.add("long double", Kind.FLOAT, 16)
    f32 = b.add("float", Kind.FLOAT, 4)
    a1 = b.add("", Kind.ARRAY, 0, i128, u32, 300)
    inner = b.add("", Kind.ARRAY, 0, ld, u32, 2)
    a2 = b.add("", Kind.ARRAY, 0, inner, u32, 200)
    un = b.add("num", Kind.UNION, 4, b.s("i"), u32, 0, b.s("f"), f32, 0, vlen=2)
    a3 = b.add("", Kind.ARRAY, 0, un, u32, 500)
    size = 300 * 16 + 200 * 32 + 500 * 4
    b.add("big", Kind.STRUCT, size, b.s("xs"), a1, 0, b.s("ld"), a2, 8 * 300 * 16,
          b.s("us"), a3, 8 * (300 * 16 + 200 * 32), vlen=3)  # fmt: skip
    c = build(b).record("big")
    rec = c.decode(bytes(size))
    assert rec.xs == [0] * 300 and rec.ld[199] == [b"\0" * 16] * 2 and len(rec.us) == 500
    rec = c.new(xs=[-1, 2**100], ld=[[b"\x01" * 16]], us=[{"f": 1.5}, None, {"i": 7}])
    assert rec.xs[:3] == [-1, 2**100, 0] and rec.ld[0][0] == b"\x01" * 16
    assert (rec.us[0].f, rec.us[2].i, rec.us[1].i) == (1.5, 7, 0)
    data = c.encode(rec)
    assert c.encode(c.decode(data)) == data
    assert c.dtype.itemsize == size
    with pytest.raises(ValueError, match="elements"):
        c.encode(us=[None] * 501)


def test_big_members_compiled_apart_round_trip() -> None:
    """A member with many values is decoded by its own codec (one raw item): same
    values, same bytes, errors still name the field."""
    b = Blob()
    u8 = b.int_("u8", 1)
    words = []
    for k in range(100):
        words += [b.s(f"f{k}"), u8, 8 * k]
    wide = b.add("wide", Kind.STRUCT, 100, *words, vlen=100)
    u32 = b.int_("u32", 4)
    b.add("outer", Kind.STRUCT, 104, b.s("w"), wide, 0, b.s("tail"), u32, 800, vlen=2)
    c = build(b).record("outer")
    data = bytes(range(100)) + struct.pack("<I", 7)
    rec = c.decode(data)
    assert (rec.w.f0, rec.w.f99, rec.tail) == (0, 99, 7)
    assert c.encode(rec) == data and bytes(rec) == data
    assert c.encode(w={"f3": 9})[3] == 9
    with pytest.raises(ValueError, match="f5"):
        c.encode(w={"f5": 300})
    assert c.dtype.itemsize == 104


def test_bitfields_out_of_order_are_btferror() -> None:
    """Found by the fuzzer: a bitfield before the previous one's first byte."""
    b = Blob()
    u32 = b.int_("u32", 4)
    b.add("s", Kind.STRUCT, 8, b.s("a"), u32, (3 << 24) | 40, b.s("b"), u32, (3 << 24) | 1,
          vlen=2, kflag=1)  # fmt: skip
    with pytest.raises(BTFError, match="overlaps"):
        build(b).record("s")


def test_union_member_beyond_size_is_btferror() -> None:
    """Found by the fuzzer: numpy refused the dtype of a union smaller than a member."""
    b = Blob()
    u64 = b.int_("u64", 8)
    b.add("u", Kind.UNION, 4, b.s("x"), u64, 0, vlen=1)
    btf = build(b)
    with pytest.raises(BTFError, match="beyond"):
        c = btf.record("u")
        c.decode(bytes(8))
        c.dtype  # noqa: B018
