"""Open -> configure -> load, as real programs need it (kernel selftests leave
ring sizes to user space, tools switch program variants and map kinds), the
whole verifier log in LoadError, and the libbpf-tools ring/perf compat
switch on both paths."""

from __future__ import annotations

import logging
import struct

import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import BPFError, LoadError, Map, MapTypeError, _sys
from bpfring._fd import OwnedFD
from bpfring.perfbuf import PerfBuffer
from bpfring.ringbuf import RingBuffer

CONFIG = BPF_DIR / "config_prog.bpf.c"
COMPAT = BPF_DIR / "compat" / "exitlog.bpf.c"


def _array_map() -> Map:
    """A 1-entry array of u64 (the inner-map prototype); closed by ``with``."""
    return Map(OwnedFD(_sys.map_create(_sys.MAP_TYPE_ARRAY, 4, 8, 1), "map"))


def _opened(**kw):
    obj = bpfring.open(CONFIG, **kw)
    obj.programs["variant_missing"].autoload = False
    return obj


def test_ring_size_set_by_user_space(kernel):
    with _opened() as obj, _array_map() as inner:
        assert not obj.loaded
        obj.maps["rb"].max_entries = 16 * 4096
        obj.maps["outer"].inner_map = inner
        obj.load()
        assert obj.maps["rb"].max_entries == 16 * 4096
        rb = obj.ring_buffer("rb")
        assert rb.size == 16 * 4096
        assert obj.programs["fill"].run() == 0
        assert [struct.unpack("<I", r)[0] for r in rb.read()] == [1]


def test_without_configuration_the_load_fails_clearly(kernel):
    obj = bpfring.open(CONFIG)
    with pytest.raises(LoadError) as ei:
        obj.load()
    obj.close()
    # libbpf's reason (the map-in-map has no inner prototype) is in the
    # message itself, not only in the log.
    assert "map 'outer': failed to create" in ei.value.message


def test_variant_switched_off_is_not_loaded(kernel):
    with _opened() as obj, _array_map() as proto:
        obj.maps["rb"].max_entries = 4096
        obj.maps["outer"].inner_map = proto
        obj.load()
        with pytest.raises(BPFError, match="autoload is off"):
            _ = obj.programs["variant_missing"].fd
        assert obj.programs["lookup"].fd > 0
        assert not obj.programs["variant_missing"].autoload


def test_map_in_map_with_a_user_space_prototype(kernel):
    with _opened(globals={"knob": 5}) as obj, _array_map() as proto, _array_map() as inner:
        obj.maps["rb"].max_entries = 4096
        obj.maps["outer"].inner_map = proto
        assert obj.maps["outer"].inner_map is proto
        obj.load()
        inner.update_raw(struct.pack("<I", 0), struct.pack("<Q", 37))
        obj.maps["outer"].update_raw(struct.pack("<I", 0), struct.pack("<I", inner.fd))
        assert obj.programs["lookup"].run() == 0
        assert obj.globals.seen == 42  # 37 from the inner map + knob 5 set at open


def test_build_options_reach_the_compiler(kernel):
    with _opened(defines={"BPFRING_TEST_EXTRA": 7}) as obj:
        assert obj.globals.extra == 7
    with _opened(cflags=["-DBPFRING_TEST_EXTRA=9"]) as obj:
        assert obj.globals.extra == 9


def test_settings_after_load_or_on_kernel_maps_are_refused(kernel):
    with _opened() as obj, _array_map() as proto:
        obj.maps["rb"].max_entries = 4096
        obj.maps["outer"].inner_map = proto
        obj.load()
        with pytest.raises(BPFError, match="map 'rb': cannot set max_entries after load"):
            obj.maps["rb"].max_entries = 8192
        with pytest.raises(BPFError, match="program 'lookup': cannot set autoload after load"):
            obj.programs["lookup"].autoload = False
        with Map(obj.maps["rb"].fd) as kernel_map, \
                pytest.raises(BPFError, match="of an existing kernel map cannot change"):
            kernel_map.max_entries = 8192


def test_bad_setting_names_the_map(kernel):
    with _opened() as obj, _array_map() as proto:
        obj.maps["outer"].inner_map = proto
        obj.maps["rb"].type = 10_000  # libbpf takes any number: the kernel refuses at load
        assert obj.maps["rb"].type == 10_000
        with pytest.raises(LoadError, match="map 'rb': failed to create"):
            obj.load()


# ---------------------------------------------------------------------------------
# The whole verifier log
# ---------------------------------------------------------------------------------


def test_load_error_carries_the_whole_verifier_log_once(kernel, caplog):
    with caplog.at_level(logging.DEBUG, logger="bpfring"), pytest.raises(LoadError) as ei:
        bpfring.load(BPF_DIR / "long_log.bpf.c")
    e = ei.value
    assert len(e.log) > 64 * 1024, len(e.log)
    # The message ends with what the verifier rejected (its last meaningful line).
    reason = bpfring.object.verifier_reason(e.log)
    assert "invalid mem access" in reason
    assert e.message.endswith(reason)
    # The verifier's text went into the exception, not also into the log records.
    assert not any("invalid mem access" in r.getMessage() for r in caplog.records)


def test_verifier_reason_skips_statistics():
    log = "0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\n" \
          "processed 5 insns (limit 1000000) max_states_per_insn 0 total_states 0\n"
    assert bpfring.object.verifier_reason(log) == "R1 invalid mem access 'scalar'"
    assert bpfring.object.verifier_reason("") == ""


# ---------------------------------------------------------------------------------
# libbpf-tools compat: one source, ring buffer or perf event array
# ---------------------------------------------------------------------------------


def _no_ringbuf_btf(tmp_path):
    """The kernel's BTF with ``struct bpf_ringbuf`` renamed: CO-RE against it
    sees a kernel without ring buffers, so the BPF side takes its perf path
    on this kernel too."""
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        raw = bytearray(f.read())
    hdr_len, str_off = struct.unpack_from("<I", raw, 4)[0], struct.unpack_from("<I", raw, 16)[0]
    strings = hdr_len + str_off
    at = raw.find(b"\0bpf_ringbuf\0", strings)
    assert at > 0
    raw[at + len(b"\0bpf_ringbu")] = ord("X")
    path = tmp_path / "vmlinux-no-ringbuf.btf"
    path.write_bytes(raw)
    return path


def _events(obj, buf, n: int) -> list[int]:
    for seq in range(n):
        assert obj.programs["emit"].run(ctx=struct.pack("<Q", 100 + seq)) == 0
    recs = buf.read(timeout=1)
    return [r.seq for r in recs]


def test_compat_auto_picks_the_ring_buffer(kernel):
    with bpfring.open(COMPAT) as obj:
        assert obj.prepare_event_buffer("events") == "ringbuf"
        obj.load()
        assert not obj.maps["heap"].autocreate
        buf = obj.event_buffer("events", record="exit_event")
        assert isinstance(buf, RingBuffer)
        assert _events(obj, buf, 5) == [100, 101, 102, 103, 104]


def test_compat_perf_path_on_a_kernel_without_ring_buffers(kernel, tmp_path):
    with bpfring.open(COMPAT, btf_custom_path=_no_ringbuf_btf(tmp_path)) as obj:
        assert obj.prepare_event_buffer("events", kind="perf") == "perf"
        obj.load()
        assert obj.maps["events"].type == _sys.MAP_TYPE_PERF_EVENT_ARRAY
        buf = obj.event_buffer("events", record="exit_event")
        assert isinstance(buf, PerfBuffer)
        got = _events(obj, buf, 5)
        assert got == [100, 101, 102, 103, 104]
        with pytest.raises(MapTypeError, match=r"obj\.perf_buffer"):
            obj.ring_buffer("events")


def test_compat_bad_kind(kernel):
    with bpfring.open(COMPAT) as obj:
        with pytest.raises(ValueError, match="kind must be"):
            obj.prepare_event_buffer("events", kind="pipe")
        with pytest.raises(KeyError, match="no map named"):
            obj.prepare_event_buffer("nope")
