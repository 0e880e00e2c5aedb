"""Typed map access through the real kernel (keys and values from BTF)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import BPFError, Map


@pytest.fixture
def maps_obj(kernel):
    with bpfring.load(BPF_DIR / "maps.bpf.c") as obj:
        yield obj


def test_typed_hash_roundtrip_through_kernel(maps_obj):
    flows = maps_obj.maps["flows"]
    assert flows.key_type.size == 8 and flows.value_type.size == 24
    key = {"ip": 0x0100000A, "port": 80, "proto": 6}
    flows[key] = {"count": 41, "name": "web", "color": 2, "delta": -3}
    v = flows[key]
    assert (v.count, v.name, v.delta) == (41, "web", -3)
    assert v.color == 2 and v.color.name == "GREEN"
    assert maps_obj.programs["copy_flow"].run() == 41  # the kernel read our layout
    slot = maps_obj.maps["slots"][1]
    assert (slot.count, slot.name, slot.color.name, slot.delta) == (42, "web", "GREEN", -4)
    assert key in flows and len(flows) == 1
    k, val = next(flows.items())
    assert (k.ip, k.port, k.proto, k.flags) == (0x0100000A, 80, 6, 0)
    assert val == v
    # flags: NOEXIST on an existing key, EXIST on a missing one
    with pytest.raises(BPFError) as ei:
        flows.update(key, v, flags=1)
    assert ei.value.errno == 17
    with pytest.raises(BPFError) as ei:
        flows.update({"ip": 9}, v, flags=2)
    assert ei.value.errno == 2
    assert flows.delete(key) and not flows.delete(key)
    with pytest.raises(KeyError):
        flows[key]
    assert flows.lookup(key, "absent") == "absent"


def test_bytes_numpy_and_batch(maps_obj):
    flows = maps_obj.maps["flows"]
    kdt, vdt = flows.key_type.dtype, flows.value_type.dtype
    keys = np.zeros(300, kdt)
    keys["ip"] = np.arange(300)
    keys["port"] = 443
    vals = np.zeros(300, vdt)
    vals["count"] = np.arange(300) * 10
    vals["name"] = b"batch"
    assert flows.update_batch(keys, vals) == 300
    assert len(flows) == 300
    got = {k.ip: v.count for k, v in flows.items_batch(chunk=64)}
    assert got == {i: i * 10 for i in range(300)}
    assert flows[keys[7]].count == 70  # a numpy row as key
    raw_key = keys[8].tobytes()
    assert flows.lookup(raw_key).name == "batch"
    with pytest.raises(ValueError, match="bytes"):
        flows.lookup(b"short")


def test_array_percpu_and_lru(maps_obj):
    slots = maps_obj.maps["slots"]
    slots[0] = {"count": 5}
    assert slots[0].count == 5 and slots[0].name == ""
    assert sorted(slots.keys()) == [0, 1, 2, 3]
    with pytest.raises(BPFError):
        slots[9] = {"count": 1}  # out of range: E2BIG from the kernel
    counters = maps_obj.maps["counters"]
    ncpu = bpfring._sys.possible_cpus()
    counters[1] = 7  # same value on every CPU
    assert counters[1] == [7] * ncpu
    counters[0] = list(range(ncpu))
    assert counters[0] == list(range(ncpu))
    lru = maps_obj.maps["lru"]
    assert lru.update_batch([1, 2, 3], [10, 20, 30]) == 3
    assert dict(lru.items_batch()) == {1: 10, 2: 20, 3: 30}


def test_map_by_reference_gets_types_from_kernel_btf(maps_obj):
    flows = maps_obj.maps["flows"]
    flows[{"ip": 1, "port": 2}] = {"count": 3, "name": "ref"}
    with Map.from_ref(f"id {flows.id}") as same:
        assert same.key_type is not None  # read back from the kernel's BTF object
        assert same[{"ip": 1, "port": 2}].name == "ref"
