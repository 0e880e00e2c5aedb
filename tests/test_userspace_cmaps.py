"""The C interpreter's map helper fast paths (``_speedups_vm_maps.c``) against
the pure-Python helpers: the same return values, the same map bytes (the
whole memfd of every map), the same LRU order, the same faults; and that the
fast path is the one taken (no Python helper call) where it applies.

Against the kernel the same program runs in tests/test_userspace_maps.py
(on the C interpreter, which now takes these fast paths)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfring.userspace import UserRuntimeError, _cinterp, load

BPF_DIR = Path(__file__).parent / "bpf"
MAPS = ["hash", "array", "pcpu_array", "pcpu_hash", "lru"]

pytestmark = pytest.mark.skipif(
    "c" not in _cinterp.BACKENDS or _cinterp.backend() != "c",
    reason="the C interpreter is not the backend (BPFRING_PURE_PYTHON=1 or not built)")


@pytest.fixture(scope="module")
def maps_path():
    import bpfring

    return bpfring.build(BPF_DIR / "userspace_maps.bpf.c")


def _load(path, backend):
    prev = _cinterp.set_backend(backend)
    try:
        return load(path, cpu=1)
    finally:
        _cinterp.set_backend(prev)


def _op(obj, m, op, key, value=0, flags=0):
    ctx = struct.pack("<IIIIQ", m, op, key, flags, value)
    rc = obj.programs["map_op"].run(ctx=ctx)
    return rc, obj.globals.found


def _state(obj):
    out = {}
    for name in [*MAPS, "flows"]:
        mp = obj.maps[name]
        raw = bytes(mp._backing.view)
        order = list(mp._index) if hasattr(mp, "_free") else None
        free = list(mp._free) if hasattr(mp, "_free") else None
        out[name] = (raw, order, free)
    return out


_ops = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(0, 80),
                          st.integers(0, (1 << 64) - 1),
                          st.sampled_from([0, 0, 1, 2, 3, 4, 5, 0x8000_0000])),
                min_size=1, max_size=120)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops)
def test_sequences_match_the_python_helpers(maps_path, ops):
    """Keys up to 80 overflow the 8-entry hashes (-E2BIG) and the 64-entry LRU
    (eviction of the least recently used: the order is compared too)."""
    with _load(maps_path, "c") as c, _load(maps_path, "python") as p:
        for m, op, key, value, flags in ops:
            assert _op(c, m, op, key, value, flags) == _op(p, m, op, key, value, flags), \
                (MAPS[m], op, key, value, flags)
        assert _state(c) == _state(p)


def test_lru_eviction_order(maps_path):
    with _load(maps_path, "c") as c, _load(maps_path, "python") as p:
        for obj in (c, p):
            for k in range(64):
                assert _op(obj, 4, 1, k, k)[0] == 0
            assert _op(obj, 4, 0, 0)[0] == 0       # a lookup is use: 0 is the newest
            assert _op(obj, 4, 1, 100, 1)[0] == 0  # evicts 1, the least recently used
        assert 1 not in c.maps["lru"] and 0 in c.maps["lru"]
        assert _state(c) == _state(p)


def test_typed_flows_match(maps_path):
    with _load(maps_path, "c") as c, _load(maps_path, "python") as p:
        for obj in (c, p):
            for i in range(40):
                ctx = struct.pack("<IIIIQ", 0, 0, i % 20, i % 3, 100 + i)
                obj.programs["count_flow"].run(ctx=ctx)
        assert list(c.maps["flows"].items()) == list(p.maps["flows"].items())
        assert len(c.maps["flows"]) == 16  # full: the last ones got -E2BIG
        assert _state(c) == _state(p)


def test_the_fast_path_calls_no_python_helper(maps_path, monkeypatch):
    """A run whose helpers all ran in C does not call the end-of-run hook
    between repetitions (it is called when a Python helper ran).  A value's
    first lookup goes to Python (which makes the value's region)."""
    with _load(maps_path, "c") as c:
        calls = []
        orig = c._after_run
        monkeypatch.setattr(c, "_after_run", lambda *a: (calls.append(a), orig(*a)))
        for m in range(5):
            for op, flags in ((1, 0), (0, 0), (3, 0), (2, 0)):
                ctx = struct.pack("<IIIIQ", m, op, 3, flags, 7)
                c.programs["map_op"].run(ctx=ctx)  # a value's first lookup makes its region
                calls.clear()
                c.programs["map_op"].run(ctx=ctx, repeat=3)
                assert calls == [], (MAPS[m], op)
        calls.clear()  # BPF_F_LOCK goes to the Python helper (it checks the value's lock)
        c.programs["map_op"].run(ctx=struct.pack("<IIIIQ", 0, 1, 3, 4, 7), repeat=3)
        assert len(calls) == 3


@pytest.mark.parametrize("prog, off", [("bad_key", 0x1000), ("bad_key", -8),
                                       ("not_a_map", 0)])
def test_bad_arguments_fault_as_the_reference(prog, off):
    """A key pointer outside every region, or a map that is not one: the fast
    path leaves it to the Python helper, whose fault (and text) is the
    reference's, on both interpreters."""
    import bpfring

    path = bpfring.build(BPF_DIR / "userspace_bad.bpf.c")
    msgs = []
    for be in ("c", "python"):
        with _load(path, be) as obj, pytest.raises(UserRuntimeError) as ei:
            obj.programs[prog].run(ctx=struct.pack("<qQ", off, 0))
        msgs.append(str(ei.value))
    assert msgs[0] == msgs[1]
    assert "key" in msgs[0] or "not a map" in msgs[0]
