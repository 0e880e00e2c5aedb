"""Kernel structure layouts bpfring packs or reads, as data (used by :mod:`bpfring._sys`).

A :class:`Layout` per structure: each ``union bpf_attr`` member struct of a
command bpfring issues, ``struct bpf_map_info``, ``struct bpf_prog_info``,
``struct bpf_btf_info``, the ring buffer pages and record header, and the
perf event ring's ``perf_event_mmap_page``.  A layout maps field names to
(offset, size); the packing code builds its :mod:`struct` formats from it
(:meth:`Layout.struct`) instead of writing offsets as literals, and
``tests/test_abi.py`` checks every entry against the running kernel's BTF
(``/sys/kernel/btf/vmlinux``).  The offsets are those of
``include/uapi/linux/bpf.h`` and ``perf_event.h``: kernel ABI that never
changes, but a wrong one here would otherwise fail silently.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Collection, Iterator, Mapping

__all__ = [
    "ATTR_GET_ID",
    "ATTR_INFO",
    "ATTR_LAYOUTS",
    "ATTR_MAP_BATCH",
    "ATTR_MAP_CREATE",
    "ATTR_MAP_ELEM",
    "ATTR_OBJ",
    "ATTR_SIZE",
    "ATTR_TEST_RUN",
    "BTF_INFO",
    "LAYOUTS",
    "MAP_INFO",
    "PAGE_SIZE",
    "PERF_EVENT_MMAP_PAGE",
    "PROG_INFO",
    "RINGBUF_HDR",
    "RINGBUF_PAGES",
    "Fields",
    "Layout",
]

# --------------------------------------------------------------------------------------
# Layouts: every kernel structure bpfring packs or reads, as data
# --------------------------------------------------------------------------------------

_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


class Fields(struct.Struct):
    """Some fields of a :class:`Layout` as one :class:`struct.Struct`, placed at
    ``offset`` in the structure: ``f.pack_into(buf, f.offset, *values)`` and
    ``f.unpack_from(buf, f.offset)``.

    Hot paths call the inherited C methods directly (no Python wrapper).  The
    bytes between the chosen fields are written as zeros by ``pack_into``.
    """

    offset: int
    names: tuple[str, ...]
    layout: Layout

    def __init__(self, fmt: str, offset: int, names: tuple[str, ...], layout: Layout) -> None:
        super().__init__(fmt)
        self.offset = offset
        self.names = names
        self.layout = layout


class Layout:
    """A kernel structure as bpfring uses it: field name -> (offset, size) in
    bytes, for the fields we read or write (not necessarily all of them).

    ``ctype`` is the C type (``"union bpf_attr"``, ``"struct bpf_map_info"``);
    for a ``union bpf_attr`` command, ``member`` names the union's member
    struct (``"test"``, ``"info"``, ``"batch"``) or is ``None`` for the
    anonymous member that holds these fields.  ``base`` names a field whose
    offset is 0 here although it is not at the start of the C structure: the
    ring buffer mapping starts at ``consumer_pos``.  ``size`` is how many
    bytes we pass for the structure (default: up to the end of the last
    field).  Offsets of several fields may coincide (members of an inner
    union, such as ``value``/``next_key``).
    """

    __slots__ = ("base", "ctype", "fields", "member", "signed", "size")

    def __init__(self, ctype: str, fields: Mapping[str, tuple[int, int]], *,
                 member: str | None = None, base: str | None = None,
                 signed: Collection[str] = (), size: int | None = None) -> None:
        self.ctype = ctype
        self.member = member
        self.base = base
        self.fields = dict(fields)
        self.signed = frozenset(signed)
        end = max(off + n for off, n in self.fields.values())
        self.size = end if size is None else size
        if self.size < end:
            raise ValueError(f"{ctype}: size {self.size} < end of its fields ({end})")

    def __getitem__(self, name: str) -> tuple[int, int]:
        return self.fields[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def offset(self, name: str) -> int:
        return self.fields[name][0]

    def struct(self, *names: str) -> Fields:
        """A :class:`Fields` packer for ``names``, in increasing offset order:
        integers of 1/2/4/8 bytes (signed where the layout says so), byte
        strings for other sizes, zero padding in between."""
        if not names:
            raise ValueError("no fields")
        start = pos = self.fields[names[0]][0]
        fmt = "<"
        for name in names:
            off, size = self.fields[name]
            if off < pos:
                raise ValueError(f"{self.ctype}: field {name!r} at {off} is not after {pos}")
            if off > pos:
                fmt += f"{off - pos}x"
            code = _INT_CODES.get(size)
            if code is None:
                code = f"{size}s"
            elif name in self.signed:
                code = code.lower()
            fmt += code
            pos = off + size
        return Fields(fmt, start, names, self)


_ATTR = "union bpf_attr"

#: BPF_MAP_CREATE.
ATTR_MAP_CREATE = Layout(_ATTR, {
    "map_type": (0, 4), "key_size": (4, 4), "value_size": (8, 4), "max_entries": (12, 4),
    "map_flags": (16, 4), "inner_map_fd": (20, 4), "numa_node": (24, 4),
    "map_name": (28, 16),  # char[BPF_OBJ_NAME_LEN]
})
#: BPF_MAP_LOOKUP_ELEM, _UPDATE_ELEM, _DELETE_ELEM, _GET_NEXT_KEY.
ATTR_MAP_ELEM = Layout(_ATTR, {
    "map_fd": (0, 4), "key": (8, 8), "value": (16, 8), "next_key": (16, 8), "flags": (24, 8),
})
#: BPF_MAP_LOOKUP_BATCH, _UPDATE_BATCH, _DELETE_BATCH.
ATTR_MAP_BATCH = Layout(_ATTR, {
    "in_batch": (0, 8), "out_batch": (8, 8), "keys": (16, 8), "values": (24, 8),
    "count": (32, 4), "map_fd": (36, 4), "elem_flags": (40, 8), "flags": (48, 8),
}, member="batch")
#: BPF_OBJ_PIN, BPF_OBJ_GET.
ATTR_OBJ = Layout(_ATTR, {"pathname": (0, 8), "bpf_fd": (8, 4), "file_flags": (12, 4)})
#: BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID (start_id and the ids share offset 0).
ATTR_GET_ID = Layout(_ATTR, {
    "start_id": (0, 4), "prog_id": (0, 4), "map_id": (0, 4), "btf_id": (0, 4),
    "next_id": (4, 4), "open_flags": (8, 4),
})
#: BPF_OBJ_GET_INFO_BY_FD.
ATTR_INFO = Layout(_ATTR, {"bpf_fd": (0, 4), "info_len": (4, 4), "info": (8, 8)},
                   member="info")
#: BPF_PROG_TEST_RUN (``retval`` is the program's u32 return value, read as the
#: int a C program returns).
ATTR_TEST_RUN = Layout(_ATTR, {
    "prog_fd": (0, 4), "retval": (4, 4), "data_size_in": (8, 4), "data_size_out": (12, 4),
    "data_in": (16, 8), "data_out": (24, 8), "repeat": (32, 4), "duration": (36, 4),
    "ctx_size_in": (40, 4), "ctx_size_out": (44, 4), "ctx_in": (48, 8), "ctx_out": (56, 8),
    "flags": (64, 4), "cpu": (68, 4), "batch_size": (72, 4),
}, member="test", signed=("retval",))

#: The attribute layouts of every command bpfring issues.
ATTR_LAYOUTS: dict[str, Layout] = {
    "map_create": ATTR_MAP_CREATE, "map_elem": ATTR_MAP_ELEM, "map_batch": ATTR_MAP_BATCH,
    "obj": ATTR_OBJ, "get_id": ATTR_GET_ID, "info": ATTR_INFO, "test_run": ATTR_TEST_RUN,
}
#: Bytes of ``union bpf_attr`` we pass (zero-extended by the kernel).
ATTR_SIZE = 128

#: ``struct bpf_map_info``, the fields :class:`MapInfo` holds.
MAP_INFO = Layout("struct bpf_map_info", {
    "type": (0, 4), "id": (4, 4), "key_size": (8, 4), "value_size": (12, 4),
    "max_entries": (16, 4), "map_flags": (20, 4), "name": (24, 16),
    "btf_id": (64, 4), "btf_key_type_id": (68, 4), "btf_value_type_id": (72, 4),
})
#: ``struct bpf_prog_info``: the maps a program uses and its BTF.
PROG_INFO = Layout("struct bpf_prog_info", {
    "type": (0, 4), "id": (4, 4), "nr_map_ids": (52, 4), "map_ids": (56, 8),
    "btf_id": (128, 4),
})
#: ``struct bpf_btf_info``: where to copy a BTF object's raw data.
BTF_INFO = Layout("struct bpf_btf_info", {"btf": (0, 8), "btf_size": (8, 4), "id": (12, 4)})

PAGE_SIZE = mmap.PAGESIZE
#: A ring buffer map's mmap (``struct bpf_ringbuf`` from ``consumer_pos`` on):
#: the consumer position alone on the first page, the producer position on the
#: second, the data (mapped twice, back to back) from the third.  Both ring
#: types (BPF_MAP_TYPE_RINGBUF and _USER_RINGBUF) share it.
RINGBUF_PAGES = Layout("struct bpf_ringbuf", {
    "consumer_pos": (0, 8), "producer_pos": (PAGE_SIZE, 8), "data": (2 * PAGE_SIZE, 0),
}, base="consumer_pos")
#: The 8-byte header before every ring buffer record (``len`` carries the BUSY
#: and DISCARD bits).
RINGBUF_HDR = Layout("struct bpf_ringbuf_hdr", {"len": (0, 4), "pg_off": (4, 4)})
#: The first page of a perf event ring (``perf_event_mmap_page``): where the
#: data area is and the producer/consumer positions in it.
PERF_EVENT_MMAP_PAGE = Layout("struct perf_event_mmap_page", {
    "version": (0, 4), "compat_version": (4, 4),
    "data_head": (1024, 8), "data_tail": (1032, 8), "data_offset": (1040, 8),
    "data_size": (1048, 8),
})

#: Every non-attr layout, for the ABI test.
LAYOUTS: dict[str, Layout] = {
    "map_info": MAP_INFO, "prog_info": PROG_INFO, "btf_info": BTF_INFO,
    "ringbuf_pages": RINGBUF_PAGES, "ringbuf_hdr": RINGBUF_HDR,
    "perf_event_mmap_page": PERF_EVENT_MMAP_PAGE,
}
