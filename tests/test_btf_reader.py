"""Tests of the BTF reader (bpfring.btf._reader, _model, _elf): parsing every
kind, split BTF, lookups, data sections, loading from files, malformed input.

Against the running kernel's BTF, the clang-built fixture (see
tests/btf_support.py) and hand-built blobs.
"""

from __future__ import annotations

import ast
import itertools
import os
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from btf_support import FIXTURE, Blob, all_kinds_blob, fixture_linked

from bpfring import BTFError, TypeNotFound
from bpfring.btf import BTF, Kind, Member, elf_section, load


@pytest.fixture(scope="session")
def linked(built: dict[str, Any]) -> Path:
    return fixture_linked(built)


# --------------------------------------------------------------------------------------
# The kernel's BTF
# --------------------------------------------------------------------------------------


def test_vmlinux_loads_fast_and_finds_task_struct() -> None:
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("kernel without BTF")
    data = Path("/sys/kernel/btf/vmlinux").read_bytes()
    tracemalloc.start()
    t0 = time.perf_counter()
    kbtf = BTF.from_bytes(data)
    t1 = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ts = kbtf.find("task_struct", Kind.STRUCT)
    t2 = time.perf_counter()
    print(f"\nvmlinux BTF: {len(data) / 1e6:.1f} MB, {len(kbtf)} type ids, "
          f"parsed in {(t1 - t0) * 1e3:.1f} ms, first lookup {(t2 - t1) * 1e3:.1f} ms")  # fmt: skip
    # Fast because lazy: a copy of the blob and a compact index, no object per
    # type (memory, unlike time, does not depend on the machine's load).
    assert peak < 2 * len(data), f"{peak} bytes to parse {len(data)}"
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
# Lookups in the fixture
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Lookup names and package structure
# --------------------------------------------------------------------------------------


def test_lookup_names(btf: BTF) -> None:
    """type_by_id/enum_class are the methods; type/enum (their first names) are the
    same functions; find_layout/datasec_type/not_found_error are what record(),
    datasec_codec() and the codec builder use."""
    assert BTF.type is BTF.type_by_id and BTF.enum is BTF.enum_class
    assert BTF.__getitem__ is BTF.type_by_id
    event = btf.find("event", Kind.STRUCT)
    assert btf.type_by_id(event.id) is btf.type(event.id) is btf[event.id] is event
    assert btf.enum_class("color") is btf.enum("color") is btf.record("enum color").enum
    assert btf.find_layout("event") is event and btf.find_layout("struct event") is event
    assert btf.find_layout("stamp_t").kind == Kind.TYPEDEF
    assert btf.find_layout("color").kind == Kind.ENUM
    assert btf.find_layout("my_u32_alias_t").kind == Kind.TYPEDEF
    with pytest.raises(TypeNotFound, match="forward declaration"):
        btf.find_layout("opaque")
    with pytest.raises(TypeNotFound, match="forward declaration"):
        btf.find_layout("struct opaque")
    with pytest.raises(TypeNotFound, match="not found"):
        btf.find_layout("union event")
    bss = btf.datasec_type(".bss")
    assert bss.kind == Kind.DATASEC and bss.name == ".bss"
    with pytest.raises(TypeNotFound, match="sections present"):
        btf.datasec_type(".nope")
    err = btf.not_found_error("nosuch", "struct")
    assert isinstance(err, TypeNotFound) and "struct nosuch _nosuch_keep" in str(err)
    assert "forward declaration of 'union x'" in str(btf.not_found_error("x", "union",
                                                                         forward=True))


SRC_BTF = Path(__file__).parent.parent / "src" / "bpfring" / "btf"


def test_btf_is_ground_layer() -> None:
    """bpfring.btf imports only the standard library, numpy and bpfring.errors
    (and, for type checking, typeshed): it sits in the ground layer."""
    files = sorted(SRC_BTF.glob("*.py"))
    assert len(files) >= 8
    allowed_top = set(sys.stdlib_module_names) | {"numpy", "_typeshed"}
    seen = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    seen.add(alias.name)
                    assert alias.name.split(".")[0] in allowed_top, (path.name, alias.name)
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 0:
                    seen.add(mod)
                    assert mod.split(".")[0] in allowed_top, (path.name, mod)
                elif node.level == 2:
                    assert mod == "errors", (path.name, "." * node.level + mod)
                else:
                    assert node.level == 1 and (SRC_BTF / f"{mod}.py").exists(), (path.name, mod)
    assert "numpy" in seen


def test_btf_class_body_shadows_no_builtin() -> None:
    """Inside the body of BTF, ``type`` and ``enum`` are the builtin and the
    module: the methods carrying those names are bound only by the body's last
    two statements (aliases)."""
    tree = ast.parse((SRC_BTF / "_reader.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BTF")
    binding = []
    for i, stmt in enumerate(cls.body):
        if isinstance(stmt, ast.FunctionDef | ast.ClassDef) and stmt.name in ("type", "enum"):
            binding.append(i)
        elif isinstance(stmt, ast.Assign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(t, ast.Name) and t.id in ("type", "enum") for t in targets):
                binding.append(i)
    assert binding == [len(cls.body) - 2, len(cls.body) - 1]
