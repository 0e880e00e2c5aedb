"""The kernel ABI bpfring packs by hand, checked against BTF.

``bpfring._sys`` talks to the kernel without libbpf for map and program
operations, and the ring code maps the kernel's ring pages directly.  Every
structure involved is declared as data (``bpfring._layout``: field name ->
(offset, size)) and every constant by name (``_sys.ENUMS``); these tests read
the running kernel's own description of the same things from
``/sys/kernel/btf/vmlinux`` with bpfring's BTF reader and compare them one by
one.  The bridge's wire structs (``bpfring/bridge.bpf.h``) are checked the
same way against the BTF of a compiled object.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import pytest
from conftest import BPF_DIR, REQUIRE_KERNEL

from bpfring import _sys, btf

VMLINUX = Path("/sys/kernel/btf/vmlinux")
SRC = Path(__file__).resolve().parents[1] / "src" / "bpfring"


@pytest.fixture(scope="module")
def vmlinux() -> btf.BTF:
    if not VMLINUX.exists():
        if REQUIRE_KERNEL:
            pytest.fail(f"{VMLINUX} is missing but BPFRING_REQUIRE_KERNEL=1")
        pytest.skip(f"{VMLINUX} is missing (kernel without CONFIG_DEBUG_INFO_BTF)")
    return btf.load(VMLINUX)


def _is_aggregate(t: Any) -> bool:
    return t.kind.name in ("STRUCT", "UNION")


def flat_fields(b: btf.BTF, t: Any, base: int = 0) -> dict[str, tuple[int, int, Any]]:
    """name -> (byte offset, size, resolved type) of a struct's members, the
    members of anonymous inner structs and unions included (as C sees them).
    Bitfields get size -1: bpfring packs none, so they never match."""
    out: dict[str, tuple[int, int, Any]] = {}
    for m in t.members:
        off = base + m.bit_offset // 8
        rt = b.resolve(m.type_id)
        if not m.name and _is_aggregate(rt):
            out.update(flat_fields(b, rt, off))
        elif m.bitfield_size or m.bit_offset % 8:
            out[m.name] = (off, -1, rt)
        else:
            out[m.name] = (off, b.sizeof(m.type_id), rt)
    return out


def _check_layout(lay: Any, fields: dict[str, tuple[int, int, Any]], what: str) -> None:
    base = fields[lay.base][0] if lay.base else 0
    for name, (off, size) in lay.fields.items():
        assert name in fields, f"{what}: the kernel has no field {name!r}"
        k_off, k_size, _ = fields[name]
        assert (off, size) == (k_off - base, k_size), (
            f"{what}.{name}: bpfring packs (offset {off}, size {size}), the kernel's BTF "
            f"says (offset {k_off - base}, size {k_size})")
        assert off + size <= lay.size, f"{what}.{name} lies past the {lay.size} bytes we pass"


# --- union bpf_attr, one member struct per command ---------------------------------------


def _attr_member(vmlinux: btf.BTF, lay: Any) -> dict[str, tuple[int, int, Any]]:
    union = vmlinux.find("bpf_attr", "union")
    found = []
    for m in union.members:
        rt = vmlinux.resolve(m.type_id)
        if not _is_aggregate(rt):
            continue
        if lay.member is not None:
            if m.name == lay.member:
                found.append(flat_fields(vmlinux, rt))
        elif not m.name:
            fields = flat_fields(vmlinux, rt)
            if set(lay.fields) <= set(fields):
                found.append(fields)
    assert len(found) == 1, (f"expected one member of union bpf_attr "
                             f"{lay.member or 'with fields ' + ', '.join(lay.fields)}, "
                             f"found {len(found)}")
    return found[0]


@pytest.mark.parametrize("name", sorted(_sys.ATTR_LAYOUTS))
def test_bpf_attr_layout(vmlinux: btf.BTF, name: str) -> None:
    lay = _sys.ATTR_LAYOUTS[name]
    assert lay.ctype == "union bpf_attr"
    _check_layout(lay, _attr_member(vmlinux, lay), f"bpf_attr[{name}]")
    # We pass a fixed block: it covers every field and is no larger than the
    # union (else the kernel would check that the excess is zero: harmless,
    # but then the comment in _sys would be wrong).
    assert lay.size <= _sys.ATTR_SIZE <= vmlinux.find("bpf_attr", "union").size


def test_every_command_has_an_attr_layout() -> None:
    """Each command _sys issues packs a layout the test above checks."""
    text = (SRC / "_sys.py").read_text()
    used = set(re.findall(r"\b(?:bpf|Attr)\(\s*([A-Z_]+)\s*,", text))
    commands = set(_sys.ENUMS["bpf_cmd"].values())
    assert used and {getattr(_sys, c) for c in used} <= commands
    assert len(_sys.ATTR_LAYOUTS) >= 7


# --- info structs and the ring pages ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_sys.LAYOUTS))
def test_struct_layout(vmlinux: btf.BTF, name: str) -> None:
    lay = _sys.LAYOUTS[name]
    kind, _, cname = lay.ctype.partition(" ")
    t = vmlinux.find(cname, kind)
    _check_layout(lay, flat_fields(vmlinux, t), lay.ctype)


def test_ring_pages_are_page_aligned(vmlinux: btf.BTF) -> None:
    """The ring mapping: consumer page, producer page, then data, one page
    apart in the kernel's struct (its PAGE_SIZE is ours)."""
    fields = flat_fields(vmlinux, vmlinux.find("bpf_ringbuf", "struct"))
    cons = fields["consumer_pos"][0]
    assert cons % _sys.PAGE_SIZE == 0
    assert fields["producer_pos"][0] - cons == _sys.PAGE_SIZE
    assert fields["data"][0] - cons == 2 * _sys.PAGE_SIZE


# --- every packer _sys uses comes from a checked layout -----------------------------------


def _packers() -> list[tuple[str, Any]]:
    return [(n, v) for n, v in vars(_sys).items() if isinstance(v, _sys.Fields)]


def test_packers_come_from_checked_layouts() -> None:
    checked = [*_sys.ATTR_LAYOUTS.values(), *_sys.LAYOUTS.values()]
    packers = _packers()
    assert len(packers) >= 20
    for name, f in packers:
        assert any(f.layout is lay for lay in checked), f"_sys.{name}: unchecked layout"
        # Walk the format: each named field sits where the layout says.
        pos = f.offset
        fields = iter(f.names)
        for count, code in re.findall(r"(\d*)([a-zA-Z])", f.format.lstrip("<")):
            n = int(count or 1)
            if code == "x":
                pos += n
                continue
            field = next(fields)
            off, size = f.layout[field]
            assert off == pos, f"_sys.{name}.{field}"
            assert struct.calcsize("<" + (count + code)) == size, f"_sys.{name}.{field}"
            pos += size


def test_no_literal_struct_formats_in_sys() -> None:
    """Offsets and formats come from the tables, not from literals."""
    text = (SRC / "_sys.py").read_text()
    assert not re.findall(r"struct\.(?:pack|unpack)\w*\(\s*[\"']", text)
    assert not re.findall(r"(?:pack_into|unpack_from)\(\s*\w+\s*,\s*\d", text)


# --- constants ---------------------------------------------------------------------------


def _enumerators(vmlinux: btf.BTF, name: str | None) -> dict[str, int]:
    if name is not None:
        return {e.name: e.value for e in vmlinux.find(name, "enum").enumerators}
    out: dict[str, int] = {}
    for t in vmlinux.iter_types("enum"):
        if not t.name:
            out.update((e.name, e.value) for e in t.enumerators)
    return out


@pytest.mark.parametrize("enum", sorted(_sys.ENUMS, key=str))
def test_constants(vmlinux: btf.BTF, enum: str | None) -> None:
    kernel = _enumerators(vmlinux, enum)
    for cname, value in _sys.ENUMS[enum].items():
        assert cname in kernel, f"{cname}: not in the kernel's {enum or 'anonymous'} enums"
        assert kernel[cname] & 0xFFFFFFFF == value, f"{cname} is {kernel[cname]}, not {value}"


def test_ring_core_uses_the_kernel_constants() -> None:
    from bpfring import _ringcore

    assert _ringcore.HDR_SIZE == _sys.RINGBUF_HDR_SZ == _sys.RINGBUF_HDR.size
    assert _ringcore.BUSY_BIT == _sys.RINGBUF_BUSY_BIT
    assert _ringcore.DISCARD_BIT == _sys.RINGBUF_DISCARD_BIT


# --- the bridge's wire format -------------------------------------------------------------

#: Globals of the wire types keep them in the object's BTF: clang emits only
#: the types that globals and function signatures reach, and the bridge uses
#: the op header and the result only through pointers.
_WIRE_SRC = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/bridge.bpf.h>

struct bpfring_bridge_op keep_op;
struct bpfring_bridge_result keep_result;
struct bpfring_bridge_flush keep_flush;
struct bpfring_bridge_state keep_state;
struct bpfring_bridge_timer_args keep_timer_args;

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def wire_btf() -> list[btf.BTF]:
    """The BTF of the keep-types program and of tests/bpf/bridge_maps.bpf.c."""
    import bpfring

    keep = bpfring.build_source(_WIRE_SRC, name="abi_bridge_wire")
    real = bpfring.build(BPF_DIR / "bridge_maps.bpf.c")
    return [btf.load(keep), btf.load(real)]


def _struct_fields(fmt: struct.Struct) -> list[tuple[int, int, bool]]:
    """(offset, size, signed) of each field of a little-endian struct format."""
    out = []
    pos = 0
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", fmt.format.lstrip("<")):
        n = int(count or 1)
        size = struct.calcsize("<" + code)
        if code == "x":
            pos += n
            continue
        for _ in range(n):
            out.append((pos, size, code.islower() and code not in "sx?"))
            pos += size
    return out


def _kernel_side(b: btf.BTF, name: str) -> tuple[int, list[tuple[str, int, int, bool]]]:
    t = b.find(name, "struct")
    return t.size, [(m.name, m.bit_offset // 8, b.sizeof(m.type_id),
                     b.resolve(m.type_id).signed) for m in t.members]


@pytest.mark.parametrize("fmt_name, cname", [
    ("OP_HDR", "bpfring_bridge_op"),
    ("RESULT", "bpfring_bridge_result"),
    ("FLUSH_CTX", "bpfring_bridge_flush"),
])
def test_bridge_wire_struct(wire_btf: list[btf.BTF], fmt_name: str, cname: str) -> None:
    from bpfring.bridge import _wire as bridge

    fmt = getattr(bridge, fmt_name)
    ours = _struct_fields(fmt)
    for b in wire_btf:
        if b.get(cname, "struct") is None:  # the real object may not keep it
            continue
        size, members = _kernel_side(b, cname)
        assert fmt.size == size, f"{fmt_name}: {fmt.size} bytes, struct {cname}: {size}"
        theirs = [(off, sz, signed) for _, off, sz, signed in members]
        assert ours == theirs, f"bridge.{fmt_name} {fmt.format!r} != struct {cname} {members}"
    assert wire_btf[0].get(cname, "struct") is not None


def test_bridge_state_layout(wire_btf: list[btf.BTF]) -> None:
    """The mmapped state element: the u64 counters in _STATE_FIELDS order,
    the u32 control words at the indexes the bridge writes (bridge/_wire.py)."""
    from bpfring.bridge import _wire as bridge

    for b in wire_btf:
        size, members = _kernel_side(b, "bpfring_bridge_state")
        assert size == bridge.STATE_SIZE
        by_name = {name: (off, sz, signed) for name, off, sz, signed in members}
        counters = [m for m in members if m[2] == 8 and m[0] != "reserved"]
        assert tuple(m[0] for m in counters) == bridge.STATE_FIELDS
        for i, name in enumerate(bridge.STATE_FIELDS):
            assert by_name[name][:2] == (8 * i, 8), name
        # counters() reads last_error as an s64 in a u64 view: the only signed one
        assert {n for n, (_, _, s) in by_name.items() if s} == {"last_error"}
        for word, index in (("want_wakeup", bridge.CTL_WANT_WAKEUP),
                            ("report", bridge.CTL_REPORT), ("budget", bridge.CTL_BUDGET)):
            assert by_name[word][:2] == (4 * index, 4), word


def test_bridge_timer_args(wire_btf: list[btf.BTF]) -> None:
    """start_timer() passes the period as one u64 (the timer_on ctx)."""
    size, members = _kernel_side(wire_btf[0], "bpfring_bridge_timer_args")
    assert (size, [m[:3] for m in members]) == (8, [("period_ns", 0, 8)])
