"""CO-RE relocations: on kernel UAPI types user space and the kernel agree; on
a program's own types user space uses the object's BTF (the local layout)."""

from __future__ import annotations

import struct

import pytest
from conftest import BPF_DIR

import bpfring
from bpfring.userspace import UserLoadError, _elf, load


@pytest.fixture(scope="module")
def core_path():
    import bpfring

    return bpfring.build(BPF_DIR / "userspace_core.bpf.c")


def test_core_on_uapi_types_matches_kernel(core_path, kernel):
    import bpfring

    pkt = bytes(60)
    with bpfring.load(core_path) as k, load(core_path) as u:
        assert u.programs["core_xdp"].run(data=pkt) == k.programs["core_xdp"].run(data=pkt) == 2
        assert list(u.globals.out) == list(k.globals.out)
        assert list(u.globals.out) == [1, 4, 24, 16, 1, 3, 1, 60]


def test_core_records_are_read(core_path):
    image = _elf.parse(core_path.read_bytes(), "core")
    assert image.core_relos >= 7


def test_core_on_local_types():
    import bpfring

    path = bpfring.build(BPF_DIR / "userspace_core_local.bpf.c")
    with load(path) as u:
        # struct point: x@0 (4), y@4 (2), z@8 (8), inner@16 {tag@16, w@20}: 24 bytes
        ctx = struct.pack("<IHxxQBxxxi", 7, 9, 1 << 40, 3, -5)
        assert u.programs["core_local"].run(ctx=ctx) == 9
        assert list(u.globals.out[:6]) == [1 << 40, (-5) & ((1 << 64) - 1), 20, 2, 24, 1]
        assert u.btf.sizeof(u.btf.find("point").id) == 24


def test_bad_core_record_is_a_load_error(core_path):
    data = bytearray(core_path.read_bytes())
    # Corrupt the kind of the first CO-RE record: it must be named, not ignored.
    image = _elf._Elf(bytes(data))
    ext = image.section(".BTF.ext")
    assert ext is not None
    hdr_len = struct.unpack_from("<I", ext.data, 4)[0]
    core_off = struct.unpack_from("<I", ext.data, 24)[0]
    first = ext.offset + hdr_len + core_off + 4 + 8  # rec_size, sec name, count
    struct.pack_into("<I", data, first + 12, 99)
    with pytest.raises(UserLoadError, match="unknown CO-RE relocation kind 99"):
        load(bytes(data))


def test_bpfring_load_runtime_user_dispatches_to_the_runtime(kernel):
    """The one-call form: the same source in the kernel and in user space."""
    from conftest import BPF_DIR

    with bpfring.load(BPF_DIR / "echo.bpf.c", runtime="user") as uobj:
        assert type(uobj).__name__ == "UserObject"
        with bpfring.load(BPF_DIR / "echo.bpf.c") as kobj:
            assert set(uobj.maps) >= {"in_ring", "out_ring"} and type(kobj).__name__ == "BPFObject"
    with pytest.raises(ValueError, match="runtime must be"):
        bpfring.load(BPF_DIR / "echo.bpf.c", runtime="gpu")
    assert issubclass(bpfring.UserRuntimeError, bpfring.BPFError)
    assert bpfring.userspace.UserRuntimeError is bpfring.UserRuntimeError
