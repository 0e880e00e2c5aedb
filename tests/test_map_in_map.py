"""Maps of ring buffers (the kernel selftest test_ringbuf_multi's shape):
an array of maps whose values are ring buffers, its inner prototype given
from user space as a RingBuffer, rings put into it after load and read back
through RingBuffer; the crashing libbpf 1.1 configuration (changing the
prototype the BPF C declares) is refused with a clear error.

BPF side: tests/bpf/ringbuf_multi.bpf.c (``emit`` writes ``slot << 32 |
value`` into the ring in slot ``slot`` of ``rings``).
"""

from __future__ import annotations

import ctypes
import gc
import signal
import struct
import subprocess
import sys
import warnings

import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import BPFError, LoadError, Map, MapTypeError, RingBuffer, UserRingBuffer, _sys

PROG = BPF_DIR / "ringbuf_multi.bpf.c"
PAGE = 4096


def _emit(obj, slot: int, value: int) -> int:
    return obj.programs["emit"].run(ctx=struct.pack("<II", slot, value))


def _records(ring: RingBuffer) -> list[tuple[int, int]]:
    return [divmod(struct.unpack("<Q", r)[0], 1 << 32) for r in ring.read()]


@pytest.fixture
def opened(kernel):
    obj = bpfring.open(PROG)
    obj.maps["ring_a"].max_entries = PAGE
    obj.maps["ring_b"].max_entries = 4 * PAGE
    yield obj
    obj.close()


def test_rings_in_an_array_of_maps(opened):
    obj = opened
    outer = obj.maps["rings"]
    with RingBuffer.create(PAGE) as proto:
        outer.inner_map = proto
        assert outer.inner_map is proto
    # The prototype was closed before the load: bpfring kept its own fd.
    obj.load()
    ring_a, ring_b = obj.ring_buffer("ring_a"), obj.ring_buffer("ring_b")
    assert (ring_a.size, ring_b.size) == (PAGE, 4 * PAGE)
    # The object's own initializer put ring_a and ring_b in slots 0 and 1;
    # user space reads them back as the inner maps' ids.
    assert outer[0] == ring_a.map_id and outer[1] == ring_b.map_id
    assert outer.lookup(2) is None
    # Two more rings put in from user space, of other sizes.
    with RingBuffer.create(2 * PAGE) as ring_c, RingBuffer.create(8 * PAGE) as ring_d:
        outer[2] = ring_c
        outer.update(3, Map(ring_d.fileno()))
        assert outer[2] == ring_c.map_id and outer[3] == ring_d.map_id
        for i in range(3):
            for slot in range(4):
                assert _emit(obj, slot, 10 * slot + i) == 0
        got = {slot: _records(r) for slot, r in enumerate((ring_a, ring_b, ring_c, ring_d))}
        assert got == {s: [(s, 10 * s + i) for i in range(3)] for s in range(4)}
        # A ring found through the outer map by id is the same ring.
        assert _emit(obj, 3, 99) == 0
        with RingBuffer.from_id(outer[3]) as again:
            assert _records(again) == [(3, 99)]
        assert ring_d.read() == []
        # An emptied slot: the program finds no ring there.
        del outer[2]
        assert _emit(obj, 2, 1) == -1
        assert ring_c.read() == []
    assert obj.globals.emitted == 13


def test_wrong_kind_in_the_outer_map_is_refused(opened):
    obj = opened
    obj.maps["rings"].inner_map = RingBuffer.create(PAGE)
    obj.load()
    with UserRingBuffer.create(PAGE) as user_ring, pytest.raises(BPFError) as e:
        obj.maps["rings"][2] = user_ring  # not the prototype's kind
    assert e.value.errno == 22


def test_prototype_declared_by_the_program_is_read_only(opened):
    obj = opened
    outer = obj.maps["rings"]
    declared = outer.inner_map
    assert isinstance(declared, Map)
    assert declared.type == _sys.MAP_TYPE_RINGBUF and declared.max_entries == 0
    for what, value in (("max_entries", PAGE), ("type", _sys.MAP_TYPE_ARRAY),
                        ("flags", 0), ("value_size", 8)):
        with pytest.raises(BPFError) as e:
            setattr(declared, what, value)
        assert "libbpf 1.1 would crash" in str(e.value) and what in str(e.value)
        assert "RingBuffer.create" in e.value.hint
    with pytest.raises(BPFError, match="has no fd"):
        declared.fd  # noqa: B018
    assert not declared.closed
    # Left as declared (no size), the load fails clearly, naming the remedy.
    with pytest.raises(LoadError) as e:
        obj.load()
    assert "inner map prototype cannot be created" in str(e.value)
    assert "inner_map" in e.value.hint


def test_the_refused_configuration_really_crashes_libbpf_1_1(kernel):
    """Why the refusal: libbpf 1.1 dereferences the owning object of its
    declared prototype, which it never sets, so the process dies of SIGSEGV
    (in a child process here).  Only checked against libbpf 1.1."""
    lib = ctypes.CDLL("libbpf.so.1")
    if (lib.libbpf_major_version(), lib.libbpf_minor_version()) != (1, 1):
        pytest.skip("the crash is libbpf 1.1's")
    code = f"""
import ctypes, bpfring
from bpfring._libbpf import lib
obj = bpfring.open({str(PROG)!r})
inner = lib.bpf_map__inner_map(obj.maps["rings"]._in_object.ptr)
assert inner
lib.bpf_map__set_max_entries(inner, 4096)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGSEGV, (proc.returncode, proc.stderr)


def test_inner_map_errors(opened, kernel):
    obj = opened
    outer = obj.maps["rings"]
    with pytest.raises(TypeError, match="takes a Map, RingBuffer or UserRingBuffer"):
        outer.inner_map = 5
    with RingBuffer.create(PAGE) as proto:
        with pytest.raises(MapTypeError, match="not a map of maps"):
            obj.maps["ring_a"].inner_map = proto
        outer.inner_map = proto
        with pytest.raises(BPFError, match="already set"):
            outer.inner_map = proto
    obj.load()
    with RingBuffer.create(PAGE) as proto, \
            pytest.raises(BPFError, match="cannot set inner_map after load"):
        obj.maps["rings"].inner_map = proto


def test_an_unloaded_object_releases_the_prototype_fd(kernel):
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        obj = bpfring.open(PROG)
        with RingBuffer.create(PAGE) as proto:
            obj.maps["rings"].inner_map = proto
        own = obj.maps["rings"]._inner_fd
        assert own is not None and not own.closed
        obj.close()  # never loaded: the object closes our duplicate
        assert own.closed
