"""Tests of bpfring.btf against real compilers and the running kernel.

tests/bpf/btf_types.c is compiled twice: by clang for the BPF target (the BTF
under test) and by the host C compiler into a program that prints the layout
truth (sizeof/offsetof of every member, bitfield masks, instances filled with
known values).  Codecs built from BTF must agree with it byte for byte.
Hand-built BTF blobs cover what clang 14 cannot emit (ENUM64, old-style
bitfields, split BTF) and malformed input.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bpfring import BTFError, TypeNotFound
from bpfring.btf import BTF, Codec, Kind, Member, Record, elf_section, load

FIXTURE = Path(__file__).parent / "bpf" / "btf_types.c"


# --------------------------------------------------------------------------------------
# Building the fixture
# --------------------------------------------------------------------------------------


class CTruth:
    """What the host C compiler says about the fixture's types."""

    def __init__(self, output: str) -> None:
        self.sizes: dict[str, int] = {}
        self.offsets: dict[str, tuple[str, int, int]] = {}
        self.hexes: dict[str, bytes] = {}
        for line in output.splitlines():
            tag, rest = line.split(" ", 1)
            if tag == "SIZE":
                name, n = rest.rsplit(" ", 1)
                self.sizes[name] = int(n)
            elif tag == "OFF":
                path, off, size = rest.rsplit(" ", 2)
                tname, member = path.split(".", 1)
                self.offsets[path] = (tname, int(off), int(size))
                assert member
            elif tag == "HEX":
                name, data = rest.rsplit(" ", 1)
                self.hexes[name] = bytes.fromhex(data)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    clang, cc = shutil.which("clang"), shutil.which("cc") or shutil.which("gcc")
    if not clang or not cc:
        pytest.skip("clang and a host C compiler are needed")
    out = tmp_path_factory.mktemp("btf")
    obj, host = out / "btf_types.o", out / "btf_types_host"
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-c", str(FIXTURE), "-o", str(obj)],
                   check=True)  # fmt: skip
    subprocess.run([cc, "-O0", "-o", str(host), str(FIXTURE)], check=True)
    truth = CTruth(subprocess.run([str(host)], check=True, capture_output=True, text=True).stdout)
    return {"obj": obj, "truth": truth, "dir": out}


@pytest.fixture(scope="session")
def btf(built: dict[str, Any]) -> BTF:
    return BTF.from_elf(built["obj"])


@pytest.fixture(scope="session")
def truth(built: dict[str, Any]) -> CTruth:
    return built["truth"]


@pytest.fixture(scope="session")
def linked(built: dict[str, Any]) -> Path:
    """The object after libbpf's static linker, which fills in DATASEC offsets."""
    bpftool = shutil.which("bpftool")
    if not bpftool:
        pytest.skip("bpftool is needed to link the object")
    out = built["dir"] / "linked.o"
    subprocess.run([bpftool, "gen", "object", str(out), str(built["obj"])], check=True)
    return out


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
# The kernel's BTF
# --------------------------------------------------------------------------------------


def test_vmlinux_loads_fast_and_finds_task_struct() -> None:
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("kernel without BTF")
    data = Path("/sys/kernel/btf/vmlinux").read_bytes()
    t0 = time.perf_counter()
    kbtf = BTF.from_bytes(data)
    t1 = time.perf_counter()
    ts = kbtf.find("task_struct", Kind.STRUCT)
    t2 = time.perf_counter()
    print(f"\nvmlinux BTF: {len(data) / 1e6:.1f} MB, {len(kbtf)} type ids, "
          f"parsed in {(t1 - t0) * 1e3:.1f} ms, first lookup {(t2 - t1) * 1e3:.1f} ms")  # fmt: skip
    assert t1 - t0 < 1.0
    assert 1000 < ts.size < 32768 and len(ts.members) > 50
    assert kbtf.sizeof(ts.id) == ts.size
    codec = kbtf.record("struct task_struct")
    assert codec.size == codec.dtype.itemsize == ts.size
    assert codec.encode(codec.decode(bytes(ts.size))) == bytes(ts.size)
    assert codec.decode(bytes(ts.size)).pid == 0
    assert BTF.vmlinux() is BTF.vmlinux()
    assert BTF.vmlinux().find("task_struct", "struct").size == ts.size


def test_vmlinux_kinds_decode() -> None:
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("kernel without BTF")
    kbtf = BTF.vmlinux()
    seen = set()
    for kind in Kind:
        for t in itertools.islice(kbtf.iter_types(kind), 300):
            assert t.kind == kind
            seen.add(kind)
            if kind in (Kind.STRUCT, Kind.UNION):
                for m in t.members:
                    kbtf.type(m.type_id)
                    bit, nbits = kbtf.member_bits(t, m)
                    assert 0 <= bit + nbits <= 8 * t.size
            elif kind == Kind.FUNC:
                assert kbtf.type(t.type_id).kind == Kind.FUNC_PROTO
            elif kind == Kind.DECL_TAG:
                assert t.component_idx >= -1
            kbtf.type_str(t.id)
    core = {Kind.INT, Kind.PTR, Kind.ARRAY, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD,
            Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.FUNC, Kind.FUNC_PROTO, Kind.VAR,
            Kind.DATASEC}  # fmt: skip
    assert core <= seen
    # ENUM64 (pahole emits it for enums with 64-bit values)
    for t in kbtf.iter_types(Kind.ENUM64):
        codec = kbtf.codec(t.id)
        assert codec.size == 8 and codec.enum is not None
        v = t.enumerators[-1]
        assert codec.decode(codec.encode(v.value)) == v.value
        assert codec.encode(v.name) == codec.encode(v.value)


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


def test_type_not_found(btf: BTF) -> None:
    with pytest.raises(TypeNotFound) as ei:
        btf.record("only_sizeof")
    msg = str(ei.value)
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, BTFError)
    assert "sizeof" in msg and "casts" in msg
    assert "struct only_sizeof _only_sizeof_keep = {};" in msg
    assert "__attribute__((unused))" in msg and "map" in msg
    assert "only_sizeof" not in btf.types and "event" in btf.types
    assert btf.types.get("only_sizeof") is None and btf.get("only_sizeof") is None
    with pytest.raises(TypeNotFound, match="forward declaration"):
        btf.record("opaque")
    with pytest.raises(TypeNotFound, match="similar names: event"):
        btf.record("evnt")
    with pytest.raises(TypeNotFound):
        btf.find("event", Kind.UNION)


def test_fixture_kinds(btf: BTF) -> None:
    """The kinds clang emits for the fixture, with their details."""
    event = btf.find("event", "struct")
    tags = {t.name: t for t in btf.iter_types(Kind.DECL_TAG)}
    assert tags["tagged_struct"].type_id == event.id and tags["tagged_struct"].component_idx == -1
    member = event.members[tags["tagged_member"].component_idx]
    assert member.name == "td" and tags["tagged_member"].type_id == event.id
    uptr = next(m for m in event.members if m.name == "uptr")
    tag = btf.type(btf.type(uptr.type_id).type_id)
    assert tag.kind == Kind.TYPE_TAG and tag.name == "user"
    assert btf.type_str(uptr.type_id) == "int __tag(user) *"
    fwd = btf.find("opaque")
    assert fwd.kind == Kind.FWD and not fwd.fwd_union
    func = btf.find("prog", Kind.FUNC)
    proto = btf.type(func.type_id)
    assert func.linkage == 1 and proto.kind == Kind.FUNC_PROTO
    assert [p.name for p in proto.params] == ["ctx"] and btf.type(proto.type_id).name == "int"
    restrict = btf.type(btf.find("restrict_keep", Kind.VAR).type_id)
    assert restrict.kind == Kind.RESTRICT
    assert btf.type_str(restrict.id) == "restrict my_u32_alias_t *"
    cv = btf.type(next(m for m in event.members if m.name == "cv").type_id)
    assert {cv.kind, btf.type(cv.type_id).kind} == {Kind.CONST, Kind.VOLATILE}
    assert btf.find("float").kind == Kind.FLOAT and btf.find("double").size == 8
    assert btf.find("_Bool").is_bool and btf.find("char").is_char
    arr = next(m for m in event.members if m.name == "matrix")
    assert btf.type_str(arr.type_id) == "int[2][3]" and btf.sizeof(arr.type_id) == 24
    assert btf.type(0).name == "void" and btf[event.id] is event


# --------------------------------------------------------------------------------------
# Loading and data sections
# --------------------------------------------------------------------------------------


def test_load_variants(built: dict[str, Any], btf: BTF, tmp_path: Path) -> None:
    obj = built["obj"]
    raw = elf_section(obj, ".BTF")
    for b in (load(obj), load(str(obj)), load(obj.read_bytes()), load(raw),
              BTF.from_elf(obj.read_bytes()), BTF.from_bytes(raw)):  # fmt: skip
        assert len(b) == len(btf) and b.find("event").size == 352
    assert load(raw).raw == raw
    nodebug = tmp_path / "nodebug.o"
    subprocess.run(["clang", "-O2", "-target", "bpf", "-c", str(FIXTURE), "-o", str(nodebug)],
                   check=True)  # fmt: skip
    with pytest.raises(BTFError, match=r"no \.BTF section") as ei:
        load(nodebug)
    assert "-g" in str(ei.value)
    with pytest.raises(BTFError, match="neither"):
        load(b"hello world, not BTF")
    with pytest.raises(BTFError, match="no such file"):
        load(tmp_path / "missing.o")
    with pytest.raises(BTFError, match="64-bit"):
        BTF.from_elf(b"\x7fELF\x01\x01" + bytes(60))


def test_datasec_unlinked(btf: BTF) -> None:
    """Straight from clang: DATASEC as emitted (libbpf fixes sizes/offsets later)."""
    assert set(btf.datasecs()) >= {".bss", ".data", ".rodata", ".data.custom"}
    bss = {v.name: v for v in btf.datasec(".bss")}
    assert {"event_keep", "pbits_keep", "anon_keep", "bitunion_keep"} <= set(bss)
    for v in bss.values():
        assert v.size == v.codec.size == btf.sizeof(v.type_id) and v.linkage == 1
    # offsets and sizes are reported as the blob has them (clang 14: offsets 0, size 0)
    sec = btf.find(".bss", Kind.DATASEC)
    assert [(v.offset, v.size) for v in btf.datasec(".bss")] == [
        (si.offset, si.size) for si in sec.secinfos
    ]
    assert bss["event_keep"].codec.fields[:2] == ("pid", "neg")
    data = {v.name: v for v in btf.datasec(".data")}
    assert data["data_color"].codec.enum is btf.enum("color")
    ro = {v.name: v for v in btf.datasec(".rodata")}
    assert ro["ro_limit"].size == 8 and ro["ro_name"].codec.size == 8
    assert [v.name for v in btf.datasec(".data.custom")] == ["custom_var", "custom_stamp"]
    with pytest.raises(TypeNotFound, match="sections present"):
        btf.datasec(".data.none")


def test_datasec_linked_initial_values(linked: Path) -> None:
    """After the static linker, offsets are real: decode the initial values of the
    globals from the ELF sections."""
    lbtf = load(linked)
    values = {}
    for sec in (".data", ".rodata", ".data.custom"):
        raw = elf_section(linked, sec)
        vars_ = lbtf.datasec(sec)
        assert len({v.offset for v in vars_}) == len(vars_)
        for v in vars_:
            assert v.offset + v.size <= len(raw)
            values[v.name] = v.decode(raw)
        whole = lbtf.datasec_codec(sec).decode(raw)
        assert all(getattr(whole, v.name) == values[v.name] for v in vars_)
    assert values["data_counter"] == 42
    assert values["data_inner"]._asdict() == {"a": 7, "tag": "ab"}
    assert values["data_color"] is lbtf.enum("color").BLUE
    assert values["ro_limit"] == 1000 and values["ro_name"] == "ro"
    assert values["custom_var"] == 5 and values["custom_stamp"]._asdict() == {"ts": 99, "id": 3}
    bss = lbtf.datasec_codec(".bss")
    assert bss.size == lbtf.find(".bss", Kind.DATASEC).size >= 352
    assert bss.decode(bytes(bss.size)).event_keep.pid == 0


# --------------------------------------------------------------------------------------
# Hand-built blobs: kinds clang 14 does not emit, split BTF, malformed input
# --------------------------------------------------------------------------------------


class Blob:
    """A tiny BTF writer, to build blobs with exactly the records a test needs."""

    def __init__(self, start_id: int = 1, str_start: int = 0) -> None:
        self.strs = bytearray(b"" if str_start else b"\0")
        self.str_start = str_start
        self.types = bytearray()
        self.next_id = start_id

    def s(self, text: str) -> int:
        if not text:
            return 0
        off = self.str_start + len(self.strs)
        self.strs += text.encode() + b"\0"
        return off

    def add(self, name: str, kind: Kind, su: int, *words: int, vlen: int = 0,
            kflag: int = 0) -> int:  # fmt: skip
        info = (kflag << 31) | (int(kind) << 24) | vlen
        self.types += struct.pack("<III", self.s(name), info, su)
        self.types += struct.pack(f"<{len(words)}I", *(w & 0xFFFFFFFF for w in words))
        self.next_id += 1
        return self.next_id - 1

    def int_(self, name: str, size: int, signed: bool = False, bits: int = 0, off: int = 0) -> int:
        encoding = (int(signed) << 24) | (off << 16) | (bits or size * 8)
        return self.add(name, Kind.INT, size, encoding)

    def build(self, magic: int = 0xEB9F) -> bytes:
        hdr = struct.pack("<HBBIIIII", magic, 1, 0, 24, 0, len(self.types), len(self.types),
                          len(self.strs))  # fmt: skip
        return hdr + bytes(self.types) + bytes(self.strs)


def all_kinds_blob() -> bytes:
    b = Blob()
    u32 = b.int_("u32", 4)
    s8 = b.int_("s8", 1, signed=True)
    ptr = b.add("", Kind.PTR, u32)
    arr = b.add("", Kind.ARRAY, 0, u32, u32, 3)
    st = b.add("pair", Kind.STRUCT, 8, b.s("x"), u32, 0, b.s("y"), s8, 32, vlen=2)
    b.add("either", Kind.UNION, 4, b.s("x"), u32, 0, b.s("y"), s8, 0, vlen=2)
    b.add("e", Kind.ENUM, 4, b.s("A"), 1, b.s("B"), -3, vlen=2, kflag=1)
    b.add("fwd_u", Kind.FWD, 0, kflag=1)
    b.add("pair_t", Kind.TYPEDEF, st)
    vol = b.add("", Kind.VOLATILE, u32)
    const = b.add("", Kind.CONST, vol)
    b.add("", Kind.RESTRICT, ptr)
    proto = b.add("", Kind.FUNC_PROTO, u32, b.s("a"), u32, 0, 0, vlen=2)
    b.add("fn", Kind.FUNC, proto, vlen=2)
    var = b.add("gv", Kind.VAR, arr, 1)
    b.add(".data", Kind.DATASEC, 12, var, 0, 12, vlen=1)
    b.add("f32", Kind.FLOAT, 4)
    b.add("tag", Kind.DECL_TAG, st, 1)
    b.add("user", Kind.TYPE_TAG, const)
    b.add("big", Kind.ENUM64, 8, b.s("HUGE"), 0, 0x80000000, b.s("ONE"), 1, 0, vlen=2)
    b.add("sbig", Kind.ENUM64, 8, b.s("MINUS"), 0xFFFFFFFE, 0xFFFFFFFF, vlen=1, kflag=1)
    return b.build()


def test_handcrafted_all_kinds() -> None:
    b = BTF.from_bytes(all_kinds_blob())
    kinds = [b.type(i).kind for i in range(1, len(b))]
    assert set(kinds) == set(Kind) - {Kind.UNKN}
    assert b.find("pair").members[1] == Member("y", 2, 32, 0)
    assert [(e.name, e.value) for e in b.find("e").enumerators] == [("A", 1), ("B", -3)]
    assert b.find("fwd_u").fwd_union
    fn = b.find("fn")
    assert fn.linkage == 2 and [p.name for p in b.type(fn.type_id).params] == ["a", ""]
    assert b.type_str(fn.type_id) == "u32 (u32, ...)"
    assert b.find("gv").linkage == 1 and b.sizeof(b.find("gv").id) == 12
    assert b.find("tag").component_idx == 1 and b.find("tag").type_id == b.find("pair").id
    assert b.type(b.find("user").type_id).kind == Kind.CONST
    assert b.find("f32").size == 4 and b.record("f32").decode(struct.pack("<f", 2.5)) == 2.5
    pair = b.record("pair_t")
    assert pair.decode(pair.encode(x=1, y=-2)) == pair.new(x=1, y=-2)
    assert b.record("either").decode(b"\xff\0\0\0")._asdict() == {"x": 255, "y": -1}
    e = b.enum("e")
    assert e.B == -3 and b.record("enum e").decode(struct.pack("<i", -3)) is e.B
    big, sbig = b.record("big"), b.record("sbig")
    assert big.enum.HUGE == 2**63 and big.decode(struct.pack("<Q", 2**63)) is big.enum.HUGE
    assert sbig.enum.MINUS == -2 and sbig.decode(struct.pack("<q", -2)) is sbig.enum.MINUS
    assert b.datasec(".data")[0].codec.decode(struct.pack("<3I", 1, 2, 3)) == [1, 2, 3]
    assert b.codec(b.find("gv").id).size == 12 and b.codec(b.find("gv")).name == "gv"


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


def test_split_btf() -> None:
    base = Blob()
    u32 = base.int_("u32", 4)
    x_off = base.s("x")
    base.add("point", Kind.STRUCT, 8, x_off, u32, 0, base.s("y"), u32, 32, vlen=2)
    base_raw = base.build()
    base_btf = BTF.from_bytes(base_raw)
    split = Blob(start_id=3, str_start=len(base.strs))
    pt = base_btf.find("point").id
    # "x" is a base string: split types may name themselves with base strings
    seg = split.add("segment", Kind.STRUCT, 16, split.s("a"), pt, 0, x_off, pt, 64, vlen=2)
    split.add("", Kind.PTR, seg)
    mod = BTF.from_bytes(split.build(), base=base_btf)
    assert mod.start_id == 3 and len(mod) == 5 and mod.base is base_btf
    assert mod.type(1).name == "u32" and mod.type(seg).name == "segment"
    assert mod.find("point").id == pt and mod.find("segment").id == seg
    assert [m.name for m in mod.find("segment").members] == ["a", "x"]
    codec = mod.record("segment")
    rec = codec.decode(struct.pack("<4I", 1, 2, 3, 4))
    assert rec._asdict() == {"a": {"x": 1, "y": 2}, "x": {"x": 3, "y": 4}}
    assert mod.find("u32").id == 1 and mod.type(4).kind == Kind.PTR
    assert mod.type_str(4) == "struct segment *" and mod.sizeof(seg) == 16
    with pytest.raises(BTFError):
        BTF.from_bytes(split.build())  # no base: string section lacks the leading ""


def test_malformed_blobs() -> None:
    good = all_kinds_blob()
    BTF.from_bytes(good)
    with pytest.raises(BTFError, match="magic"):
        BTF.from_bytes(b"\x00\x00" + good[2:])
    with pytest.raises(BTFError, match="big-endian"):
        BTF.from_bytes(b"\xeb\x9f" + good[2:])
    with pytest.raises(BTFError, match="too short"):
        BTF.from_bytes(good[:10])
    with pytest.raises(BTFError, match="past the end"):
        BTF.from_bytes(good[:-5])
    hdr = bytearray(good)
    struct.pack_into("<I", hdr, 12, struct.unpack_from("<I", hdr, 12)[0] - 4)  # type_len - 4
    with pytest.raises(BTFError, match="truncated"):
        BTF.from_bytes(bytes(hdr))
    b = Blob()
    b.int_("u32", 4)
    b.types += struct.pack("<III", 0, 25 << 24, 0)  # kind 25 does not exist
    with pytest.raises(BTFError, match="unknown kind 25"):
        BTF.from_bytes(b.build())
    b = Blob()
    b.add("", Kind.TYPEDEF, 7)  # refers to a type that is not there
    b.types[0:4] = struct.pack("<I", 999)  # name offset out of range
    bad = BTF.from_bytes(b.build())
    with pytest.raises(BTFError, match="string offset"):
        bad.type(1)
    with pytest.raises(BTFError, match="out of range"):
        bad.type(5)
    loop = Blob()
    loop.add("a", Kind.TYPEDEF, 2)
    loop.add("b", Kind.TYPEDEF, 1)
    with pytest.raises(BTFError, match="loop"):
        BTF.from_bytes(loop.build()).record("a")
