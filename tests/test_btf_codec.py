"""Tests of the codecs built from BTF (bpfring.btf._builder, _layout, _codec,
_records, _enums): layouts against the C compiler, decoding and encoding,
records, enums, char arrays, bitfields, unions, numpy dtypes.

The fixture and the C truth come from tests/btf_support.py.
"""

from __future__ import annotations

import math
import random
import re
import struct
from typing import Any

import numpy as np
import pytest
from btf_support import Blob, CTruth, all_kinds_blob

from bpfring.btf import BTF, Codec, Kind, Record


@pytest.fixture(scope="session")
def truth(built: dict[str, Any]) -> CTruth:
    return built["truth"]


def dtype_offset(dt: np.dtype, path: str) -> tuple[int, int]:
    """Byte offset and size of a C member path (``a.b[2].c``) in a numpy dtype;
    C's anonymous members are looked up inside the ``_anonN`` fields."""
    off = 0
    for name, idx in re.findall(r"\.?([A-Za-z_]\w*)|\[(\d+)\]", path):
        if name:
            if name not in dt.names:
                anon = next(n for n in dt.names if n.startswith("_anon")
                            and name in (dt.fields[n][0].names or ()))  # fmt: skip
                sub, o = dt.fields[anon][:2]
                off += o
                dt = sub
            sub, o = dt.fields[name][:2]
            off += o
            dt = sub
        else:
            base, shape = dt.subdtype
            elem = np.dtype((base, shape[1:])) if len(shape) > 1 else base
            off += int(idx) * elem.itemsize
            dt = elem
    return off, dt.itemsize


# --------------------------------------------------------------------------------------
# Layout against the C compiler
# --------------------------------------------------------------------------------------


def test_sizes_match_c(btf: BTF, truth: CTruth) -> None:
    assert len(truth.sizes) >= 7
    for name, size in truth.sizes.items():
        codec = btf.record(name)
        t = btf.find(name.split()[-1], name.split()[0] if " " in name else "typedef")
        assert codec.size == size == btf.sizeof(t.id), name
        assert codec.dtype.itemsize == size, name


def test_member_offsets_match_c(btf: BTF, truth: CTruth) -> None:
    assert len(truth.offsets) > 60
    for path, (tname, off, size) in truth.offsets.items():
        dt = btf.record(tname).dtype
        assert dtype_offset(dt, path.split(".", 1)[1]) == (off, size), path


def test_bitfield_masks_match_c(btf: BTF, truth: CTruth) -> None:
    """For each bitfield, C set it to all ones in a zeroed struct: decoding must
    give all ones, the other fields zero, and encoding must give those bytes."""
    expected = {
        "struct bits": {"a": 7, "b": -1, "c": 0xFFFFF, "lvl": 7, "flag": True,
                        "big": 2**40 - 1, "sbig": -1, "s1": 127, "s2": -1},
        "struct pbits": {"y": 0xFFFFF, "z": 0xFFFFF, "w": 2**50 - 1, "neg": -1},
        "union bitunion": {"low4": 15, "sfield": -1},
        "struct anon_holder": {"bf": 15},
    }  # fmt: skip
    checked = 0
    for tname, fields in expected.items():
        codec = btf.record(tname)
        t = btf.find(tname)
        members = {m.name: m for m in t.members}
        for fname, value in fields.items():
            mask = truth.hexes[f"MASK:{tname}.{fname}"]
            rec = codec.decode(mask)
            assert getattr(rec, fname) == value, (tname, fname)
            assert codec.encode({fname: value}) == mask, (tname, fname)
            # the BTF bit position is where C put the bits
            bits = int.from_bytes(mask, "little")
            bit, nbits = btf.member_bits(t, members[fname])
            assert (bit, nbits) == ((bits & -bits).bit_length() - 1, bin(bits).count("1"))
            if t.kind == Kind.STRUCT:  # everything else is zero
                assert rec._replace(**{fname: type(value)(0)}) == codec.new(), (tname, fname)
            checked += 1
    assert checked == 16


def expected_event(btf: BTF) -> dict[str, Any]:
    """The values the host program put into its struct event."""
    color = btf.enum("color")
    return {
        "pid": 4242, "neg": -123456, "comm": "bash", "sc": -5, "uc": 250, "ss": -30000,
        "us": 65000, "sll": -9000000000000000000, "ull": 18000000000000000000, "ok": True,
        "f": 1.5, "d": -2.25, "big": -(2**100) - 7, "ubig": 2**127 + 3,
        "ptr": 0xFFFF888012345678, "uptr": 0x1000, "op": 0, "color": color.BLUE,
        "colors": [color.NEG, color.GREEN, 42],
        "in": {"a": -7, "tag": "xyz"},
        "ins": [{"a": 100 + i, "tag": chr(ord("a") + i)} for i in range(3)],
        "many": [{"a": -1 - i, "tag": chr(65 + i) + chr(97 + i)} for i in range(6)],
        "matrix": [[-3, -2, -1], [7, 8, 9]],
        "names": ["alpha", "été"],
        "arr": [1, 1001, 2001, 3001, 4001],
        "u": {"f": 1.5},
        "nums": [{"u": 0x00020001}, {"i": -1}],
        "bf": {"a": 5, "b": -9, "c": 0xABCDE, "lvl": 3, "flag": True, "big": 0x123456789A,
               "sbig": -4000000, "tail": 0x5A, "s1": 99, "s2": -200},
        "cv": -1, "td": 0xDEADBEEF, "stamp": {"ts": 1234567890123, "id": 77},
        "flags": [True, False, True], "ds": [0.5, -1e300], "bytes": [1, 0, 0, 255],
        "flex": [],
    }  # fmt: skip


def assert_matches(got: Any, want: Any, path: str = "") -> None:
    """``got`` (decoded) has at least what ``want`` says (union members given in
    ``want`` are checked, the others not)."""
    if isinstance(want, dict):
        for k, v in want.items():
            sub = got[k] if isinstance(got, dict) else getattr(got, k)
            assert_matches(sub, v, f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_matches(g, w, f"{path}[{i}]")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def test_decode_matches_c_values(btf: BTF, truth: CTruth) -> None:
    event = btf.record("event")
    rec = event.decode(truth.hexes["event"])
    assert_matches(rec, expected_event(btf))
    color = btf.enum("color")
    assert type(rec.color) is color and rec.color is color.BLUE
    assert type(rec.colors[2]) is int  # 42 is no enumerator
    assert type(rec.bf.lvl) is btf.enum("level") and rec.bf.lvl.name == "HIGH"
    assert rec.u.u == struct.unpack("<I", struct.pack("<f", 1.5))[0]
    assert rec.u.half.hi == 0x3FC0 and rec.u.b == [0, 0, 0xC0, 0x3F]
    assert rec.nums[0].half.lo == 1 and rec.nums[0].half.hi == 2
    assert rec.nums[1].u == 0xFFFFFFFF and math.isnan(rec.nums[1].f)
    assert type(rec.ok) is bool and type(rec.f) is float and type(rec.big) is int
    assert rec["in"] is getattr(rec, "in")  # C names that are Python keywords
    assert rec.stamp._name == "stamp_t"


def test_encode_matches_c_bytes(btf: BTF, truth: CTruth) -> None:
    event = btf.record("event")
    want = truth.hexes["event"]
    assert event.encode(expected_event(btf)) == want
    assert event.encode(**expected_event(btf)) == want
    # decode -> encode is exact, also through nested plain dicts
    rec = event.decode(want)
    assert event.encode(rec) == want
    assert bytes(rec) == want
    assert event.encode(rec._asdict()) == want
    for name in ("pbits", "anon_holder", "bitunion"):
        codec = btf.record(name)
        raw = truth.hexes[name]
        assert codec.encode(codec.decode(raw)) == raw, name


def test_other_c_instances(btf: BTF, truth: CTruth) -> None:
    p = btf.record("pbits").decode(truth.hexes["pbits"])
    assert (p.x, p.y, p.z, p.w, p.neg) == (0xAB, 0x12345, 0xFEDCB, 0x2468ACE013579, -4000)
    anon = btf.record("anon_holder")
    h = anon.decode(truth.hexes["anon_holder"])
    assert (h.kind, h.fval, h.x, h.y, h.bf) == (3, 2.5, 11, 22, 9)  # C-style anonymous members
    assert h._anon0.fval == 2.5 and h._anon1.y == 22 and h["ival"] == h.ival
    assert anon.encode(kind=3, fval=2.5, x=11, y=22, bf=9) == truth.hexes["anon_holder"]
    h.x = 5  # routed to the anonymous struct
    assert h._anon1.x == 5 and anon.decode(anon.encode(h)).x == 5
    u = btf.record("bitunion").decode(truth.hexes["bitunion"])
    assert (u.whole, u.low4, u.sfield) == (0xFFFFFFE5, 5, -27)


def test_random_round_trips(btf: BTF) -> None:
    rng = random.Random(1234)
    bits, pbits = btf.record("bits"), btf.record("pbits")
    for _ in range(300):
        v = {
            "a": rng.randrange(8), "b": rng.randrange(-16, 16), "c": rng.randrange(2**20),
            "lvl": rng.choice([1, 2, 3]), "flag": rng.random() < 0.5,
            "big": rng.randrange(2**40), "sbig": rng.randrange(-(2**22), 2**22),
            "tail": rng.randrange(256), "s1": rng.randrange(128), "s2": rng.randrange(-256, 256),
        }  # fmt: skip
        assert bits.decode(bits.encode(v))._asdict() == v
        w = {"x": rng.randrange(256), "y": rng.randrange(2**20), "z": rng.randrange(2**20),
             "w": rng.randrange(2**50), "neg": rng.randrange(-4096, 4096)}  # fmt: skip
        assert pbits.decode(pbits.encode(w))._asdict() == w
    event = btf.record("event")
    for _ in range(50):
        raw = bytes(rng.randrange(1, 128) for _ in range(event.size))  # ASCII: lossless chars
        rec = event.decode(raw)
        assert event.decode(event.encode(rec)) == rec  # (ASCII bytes make no NaNs)


# --------------------------------------------------------------------------------------
# Records, enums, strings, errors
# --------------------------------------------------------------------------------------


def test_record_api(btf: BTF) -> None:
    inner = btf.record("struct inner")
    assert isinstance(inner, Codec) and inner.name == "inner" and inner.size == 6
    assert inner.fields == ("a", "tag") and btf.types["inner"].size == 6
    r = inner.new(a=12, tag="hi")
    assert repr(r) == "inner(a=12, tag='hi')"
    assert isinstance(r, Record) and isinstance(r, inner.record_class)
    assert r.a == 12 and r["tag"] == "hi" and r._fields == ("a", "tag")
    with pytest.raises(KeyError):
        r["_asdict"]
    assert r == inner.decode(inner.encode(a=12, tag="hi")) and r != inner.new(a=13)
    assert r._replace(a=1) == inner.new(a=1, tag="hi") and r.a == 12
    with pytest.raises(TypeError):
        hash(r)
    with pytest.raises(TypeError):
        iter(r)
    with pytest.raises(AttributeError):
        r.nope = 1  # type: ignore[attr-defined]
    r.a = -3
    assert inner.decode(bytes(r)).a == -3
    event = btf.record("event").new(pid=1, ins=[{"a": 5}], u={"i": -1})
    d = event._asdict()
    assert type(d) is dict and type(d["in"]) is dict and type(d["ins"][0]) is dict
    assert d["ins"][0] == {"a": 5, "tag": ""} and d["u"]["u"] == 0xFFFFFFFF
    assert repr(event).startswith("event(pid=1, neg=0, comm='', ")
    assert "color=color.RED" in repr(event)


def test_typedefs_and_scalars(btf: BTF) -> None:
    stamp = btf.record("stamp_t")  # typedef of an anonymous struct
    assert stamp.name == "stamp_t" and stamp.size == 16
    assert repr(stamp.new(ts=1, id=2)) == "stamp_t(ts=1, id=2)"
    alias = btf.record("my_u32_alias_t")  # typedef -> typedef -> unsigned int
    assert alias.size == 4 and alias.dtype == np.dtype("<u4")
    assert alias.decode(alias.encode(0xFFFFFFFF)) == 0xFFFFFFFF
    with pytest.raises(ValueError, match="my_u32_alias_t"):
        alias.encode(-1)
    buf = bytearray(10)
    alias.encode_into(buf, 3, 7)
    assert buf[3:7] == b"\x07\0\0\0" and alias.decode(buf, 3) == 7


def test_enums(btf: BTF) -> None:
    color = btf.enum("color")
    assert issubclass(color, int) and color.BLUE == 7 and color.GREEN.name == "GREEN"
    codec = btf.record("enum color")
    assert codec.enum is color and codec.size == 4
    assert codec.decode(codec.encode(color.BLUE)) is color.BLUE
    assert codec.encode("GREEN") == codec.encode(1) == b"\x01\0\0\0"
    assert codec.decode(b"\x2a\0\0\0") == 42 and type(codec.decode(b"\x2a\0\0\0")) is int
    # clang 14 emits ENUM with kind_flag 0 (unsigned): -2 reads as 2**32 - 2
    assert codec.decode(b"\xfe\xff\xff\xff") is color.NEG
    with pytest.raises(ValueError, match="PURPLE"):
        codec.encode("PURPLE")


def test_char_arrays(btf: BTF) -> None:
    event = btf.record("event")
    assert event.decode(event.encode(comm="x" * 40)).comm == "x" * 16  # truncated
    assert event.encode(comm=b"ab\0zz")[8:24] == b"ab\0zz" + bytes(11)
    bad = bytearray(event.encode(comm="ok"))
    bad[8:12] = b"\xff\xfeA\0"
    assert event.decode(bad).comm == "\ufffd\ufffdA"
    assert event.decode(event.encode(names=["", "é"])).names == ["", "é"]
    with pytest.raises(TypeError):
        event.encode(comm=5)


def test_encode_errors(btf: BTF) -> None:
    event = btf.record("event")
    with pytest.raises(TypeError, match="pidd"):
        event.encode(pidd=1)
    with pytest.raises(ValueError, match=r"event\.pid"):
        event.encode(pid=-1)
    with pytest.raises(ValueError, match=r"event\.in\.a"):
        event.encode({"in": {"a": 1 << 20}})
    with pytest.raises(ValueError, match="6 elements for an array of 5"):
        event.encode(arr=[0] * 6)
    with pytest.raises(ValueError, match=r"bf\.a"):
        event.encode(bf={"a": 8})
    with pytest.raises(ValueError, match="need 352 bytes"):
        event.decode(bytes(100))
    with pytest.raises(ValueError, match="need 352 bytes"):
        event.encode_into(bytearray(10), 0, None)
    with pytest.raises(TypeError):
        event.encode(42)


def test_encode_into_and_numpy(btf: BTF, truth: CTruth) -> None:
    event = btf.record("event")
    raw = truth.hexes["event"]
    buf = bytearray(8 + 2 * event.size)
    event.encode_into(buf, 8, event.decode(raw))
    event.encode_into(memoryview(buf), 8 + event.size, event.decode(raw))
    assert bytes(buf[8:]) == raw * 2
    arr = event.decode_array(buf, offset=8)
    assert arr.shape == (2,) and list(arr["pid"]) == [4242, 4242]
    assert arr["comm"][0] == b"bash" and arr.dtype["comm"] == np.dtype("S16")
    assert arr["in"]["a"][1] == -7 and arr["matrix"][0].tolist() == [[-3, -2, -1], [7, 8, 9]]
    assert arr["u"]["f"][0] == 1.5 and arr["u"]["u"][0] == event.decode(raw).u.u
    assert arr.dtype["many"].shape == (6,)
    assert arr["many"]["a"][0].tolist() == list(range(-1, -7, -1))
    rec = event.decode(raw)
    for name, bf in btf.record("bits").bitfields.items():
        assert bf.extract(arr["bf"]).tolist() == [getattr(rec.bf, name)] * 2, name
    union = btf.record("union num").dtype
    assert union.itemsize == 4 and {union.fields[n][1] for n in union.names} == {0}


def test_unions(btf: BTF) -> None:
    num = btf.record("union num")
    assert num.fields == ("u", "i", "f", "b", "half")
    assert num.encode(f=1.5) == struct.pack("<f", 1.5)
    assert num.encode(half={"lo": 1, "hi": 2}) == struct.pack("<HH", 1, 2)
    rec = num.decode(struct.pack("<I", 0x3FC00000))
    assert rec.f == 1.5 and rec.i == 0x3FC00000
    rec.half.lo = 0xFFFF  # change one member of a decoded union: the rest stays
    assert num.encode(rec) == struct.pack("<HH", 0xFFFF, 0x3FC0)
    rec = num.decode(b"\x01\x02\x03\x04")
    rec.b = [9]
    assert num.encode(rec) == b"\x09\0\0\0"  # a list is written whole (short lists padded)


# --------------------------------------------------------------------------------------
# Bitfields without kind_flag (hand-built)
# --------------------------------------------------------------------------------------


def test_old_style_bitfields() -> None:
    """Structs without kind_flag encode bitfields in the INT type (bits, offset)."""
    b = Blob()
    u4 = b.int_("unsigned int", 4)
    bf3 = b.int_("unsigned int", 4, bits=3)
    sbf5 = b.int_("int", 4, signed=True, bits=5, off=3)
    b.add("old", Kind.STRUCT, 8, b.s("a"), bf3, 0, b.s("b"), sbf5, 0, b.s("c"), u4, 32, vlen=3)
    btf = BTF.from_bytes(b.build())
    t = btf.find("old")
    assert [btf.member_bits(t, m) for m in t.members] == [(0, 3), (3, 5), (32, 0)]
    codec = btf.record("old")
    raw = struct.pack("<II", 5 | (0b10111 << 3), 99)
    assert codec.decode(raw)._asdict() == {"a": 5, "b": -9, "c": 99}
    assert codec.encode(a=5, b=-9, c=99) == raw
    assert codec.dtype.itemsize == 8
    assert codec.bitfields["b"].extract(codec.decode_array(raw)).tolist() == [-9]


def test_member_names_clashing_with_the_record_api() -> None:
    """C members named like Record's own attributes (also ``_node``, which only
    record subclasses carry) get a trailing ``_``; ``__x`` keeps its name.  The
    generated classes say they come from bpfring.btf."""
    b = Blob()
    i32 = b.int_("int", 4, signed=True)
    b.add("odd", Kind.STRUCT, 12, b.s("_node"), i32, 0, b.s("_fields"), i32, 32,
          b.s("__x"), i32, 64, vlen=3)  # fmt: skip
    btf = BTF.from_bytes(b.build())
    codec = btf.record("odd")
    assert codec.fields == ("_node_", "_fields_", "__x")
    rec = codec.decode(bytes(range(12)))
    assert rec.__x == struct.unpack_from("<i", bytes(range(12)), 8)[0]
    assert bytes(rec) == bytes(range(12)) and codec.encode(rec) == bytes(range(12))
    assert type(rec).__module__ == codec.record_class.__module__ == "bpfring.btf"
    assert BTF.from_bytes(all_kinds_blob()).enum("e").__module__ == "bpfring.btf"
