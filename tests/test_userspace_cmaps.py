"""The C interpreter's map helper fast paths (``_speedups_vm_maps.c``) against
the pure-Python helpers: the same return values, the same map bytes (the
whole memfd of every map), the same LRU order, the same faults; and that the
fast path is the one taken (no Python helper call) where it applies.

Against the kernel the same program runs in tests/test_userspace_maps.py
(on the C interpreter, which now takes these fast paths)."""

from __future__ import annotations

import os
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


_RING_SRC = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

struct args {
	__u32 n;
	__u32 size;
	__u64 flags;
	__u32 mode; /* bit 0: every third record reserved + submitted, bit 1: discarded */
};

long rcs[64];
char buf[512];

SEC("syscall")
int out(struct args *a)
{
	__u32 i, n = a->n, sz;

	for (i = 0; i < n && i < 64; i++) {
		sz = (a->size + i * 13) & 511;
		buf[0] = i;
		buf[sz ? sz - 1 : 0] = ~i;
		if ((a->mode & 1) && i % 3 == 0) {
			char *p = bpf_ringbuf_reserve(&rb, 16, 0);
			if (!p) {
				rcs[i] = -1000;
				continue;
			}
			p[0] = i;
			if (a->mode & 2)
				bpf_ringbuf_discard(p, a->flags & 3);
			else
				bpf_ringbuf_submit(p, a->flags & 3);
			rcs[i] = 1;
			continue;
		}
		rcs[i] = bpf_ringbuf_output(&rb, buf, sz, a->flags);
	}
	return i;
}

char LICENSE[] SEC("license") = "GPL";
"""


def _ring_state(obj):
    rb = obj.maps["rb"]
    return (bytes(rb._ring.all[:2 * 4096 + 2 * 4096]), rb.wakeups, obj.memory._next,
            list(obj.globals.rcs))


_ring_runs = st.lists(st.tuples(st.integers(0, 64), st.integers(0, 600),
                                st.sampled_from([0, 0, 1, 2, 3, 4]), st.integers(0, 3),
                                st.booleans()),
                      min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=_ring_runs)
def test_ringbuf_output_matches_the_python_helper(runs):
    """Ring bytes (both pages and the data area), return codes, wakeups and
    region numbering after random outputs mixed with reserve/submit/discard
    (Python helpers), with reads in between so the ring wraps."""
    objs = []
    for be in ("c", "python"):
        prev = _cinterp.set_backend(be)
        try:
            objs.append(load(_RING_SRC))
        finally:
            _cinterp.set_backend(prev)
    c, p = objs
    try:
        if c.maps["rb"]._ring.page != 4096:
            pytest.skip("the test's offsets assume 4 KiB pages")
        for n, size, flags, mode, read in runs:
            ctx = struct.pack("<IIQI4x", n, size, flags, mode)
            assert c.programs["out"].run(ctx=ctx) == p.programs["out"].run(ctx=ctx)
            assert _ring_state(c) == _ring_state(p)
            if read:
                assert c.maps["rb"].read() == p.maps["rb"].read()
        assert c.maps["rb"].read() == p.maps["rb"].read()
        if c.maps["rb"].wakeups:
            assert os.eventfd_read(c.maps["rb"].eventfd) == \
                os.eventfd_read(p.maps["rb"].eventfd)
    finally:
        c.close()
        p.close()


def test_ringbuf_output_records_read_by_the_ring_consumer():
    """The ring's reader gets what the C path wrote, in order, and the eventfd
    was signalled (bpfring's sans-IO consumer on the memfd, and the kernel's
    records for the same program: tests/test_userspace_features.py)."""
    with _load_src(_RING_SRC, "c") as c:
        ctx = struct.pack("<IIQI4x", 20, 8, 0, 0)
        assert c.programs["out"].run(ctx=ctx) == 20
        assert list(c.globals.rcs[:20]) == [0] * 20
        recs = c.maps["rb"].read()
        assert [len(r) for r in recs] == [(8 + i * 13) & 511 for i in range(20)]
        assert [r[0] for r in recs if r] == list(range(20))
        assert c.maps["rb"].wakeups >= 1 and os.eventfd_read(c.maps["rb"].eventfd) >= 1


def _load_src(src, backend):
    prev = _cinterp.set_backend(backend)
    try:
        return load(src)
    finally:
        _cinterp.set_backend(prev)


def test_ringbuf_output_and_commit_take_the_fast_path(monkeypatch):
    """bpf_ringbuf_output registers no record region on the C path (the
    Python one adds one per record); submit/discard remove the region
    bpf_ringbuf_reserve made without calling Memory.remove."""
    with _load_src(_RING_SRC, "c") as c:
        added, removed = [], []
        mem = c.memory
        orig_add, orig_remove = mem.add, mem.remove
        monkeypatch.setattr(mem, "add", lambda *a, **k: (added.append(a[1]),
                                                         orig_add(*a, **k))[1])
        monkeypatch.setattr(mem, "remove", lambda b: (removed.append(b), orig_remove(b))[1])
        before = mem._next
        c.programs["out"].run(ctx=struct.pack("<IIQI4x", 10, 16, 0, 0))
        assert added == ["ctx"] and mem._next == before + 2 * 11  # the ctx, 10 records
        del added[:], removed[:]
        c.programs["out"].run(ctx=struct.pack("<IIQI4x", 6, 16, 0, 1))  # 2 reserved
        assert added[0] == "ctx" and len(added) == 3
        assert len(removed) == 1                           # the ctx only
        assert len(c.maps["rb"].read()) == 16 and not c.maps["rb"]._reserved
