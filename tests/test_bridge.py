"""The map bridge (bpfring.bridge) against the real kernel: random operation
sequences against a dict model for every supported map type, exact counters,
per-operation results, a full ring, concurrent producers, the three drain
modes, the system-call fallback and bridges for maps outside our objects."""

from __future__ import annotations

import errno
import logging
import os
import random
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import RingFull, _sys
from bpfring.bridge import (
    ANY,
    EXIST,
    NOEXIST,
    MapBridge,
    OpSizeError,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="session")
def bridge_path(kernel) -> Path:
    return bpfring.build(BPF_DIR / "bridge_maps.bpf.c")


@pytest.fixture(scope="session")
def nobridge_path(kernel) -> Path:
    """The same program with the bridges compiled out (the fallback's input)."""
    return bpfring.build(BPF_DIR / "bridge_maps.bpf.c",
                         defines={"BPFRING_BRIDGE_DISABLE": None})


@pytest.fixture
def obj(bridge_path):
    with bpfring.load(bridge_path) as o:
        yield o


# --------------------------------------------------------------------------------------
# A model of what the kernel does with each operation
# --------------------------------------------------------------------------------------


class Model:
    """The map as a dict of raw bytes, and the errno each operation must get."""

    def __init__(self, kind: str, max_entries: int, value_size: int) -> None:
        self.kind = kind
        self.max = max_entries
        self.d: dict[bytes, bytes] = {}
        if kind in ("array", "percpu_array"):
            self.d = {i.to_bytes(4, "little"): bytes(value_size) for i in range(max_entries)}

    def update(self, k: bytes, v: bytes, flags: int) -> int:
        if self.kind in ("array", "percpu_array"):
            if int.from_bytes(k, "little") >= self.max:
                return errno.E2BIG
            if flags == NOEXIST:
                return errno.EEXIST
        else:
            if flags == NOEXIST and k in self.d:
                return errno.EEXIST
            if flags == EXIST and k not in self.d:
                return errno.ENOENT
            if k not in self.d and len(self.d) >= self.max:
                return errno.E2BIG
        self.d[k] = v
        return 0

    def delete(self, k: bytes) -> int:
        return 0 if self.d.pop(k, None) is not None else errno.ENOENT


# map name -> (key maker, value maker, key space)
def _u(n: int):
    return lambda x: int(x).to_bytes(n, "little")


SPECS = {
    "hmap": (lambda i: i, lambda r: {"a": r.getrandbits(64), "b": r.getrandbits(16)}, 96),
    "lru": (lambda i: _u(3)(i), lambda r: r.getrandbits(63), 64),
    "arr": (lambda i: i, lambda r: {"x": r.getrandbits(32), "name": f"n{r.randrange(999)}"},
            20),
    "pch": (lambda i: i, lambda r: r.getrandbits(64), 96),
    "pca": (lambda i: i, lambda r: {"a": r.getrandbits(8), "b": 7}, 20),
    "lpch": (lambda i: i, lambda r: r.getrandbits(32), 64),
}


def _dump(m: bpfring.Map) -> dict[bytes, bytes]:
    """Raw map contents; per-CPU values must be the same on every CPU."""
    out = {}
    for k, v in m.lookup_batch():
        if m.percpu:
            stride = (m.value_size + 7) & ~7
            slots = {v[i:i + m.value_size] for i in range(0, len(v), stride)}
            assert len(slots) == 1, f"per-CPU slots differ for key {k!r}"
            v = slots.pop()
        out[k] = v
    return out


def _run_random(br: MapBridge, name: str, seed: int, n_ops: int = 600) -> list[tuple]:
    """Queue a random mix of single and batched updates (all flags) and
    deletes, flushing at random points; return the model's expected results
    as (seq, op, flags, errno)."""
    rng = random.Random(seed)
    mkkey, mkval, space = SPECS[name]
    info = br.info
    model = Model(_sys.MAP_TYPE_NAMES[info.type], info.max_entries, info.value_size)
    kc, vc = br.key_type, br.value_type
    deletable = info.type not in (_sys.MAP_TYPE_ARRAY, _sys.MAP_TYPE_PERCPU_ARRAY)
    expected: list[tuple] = []
    i = 0
    while i < n_ops:
        roll = rng.random()
        flags = rng.choice([ANY, ANY, NOEXIST, EXIST])
        if roll < 0.15:  # a batch of updates through numpy rows
            n = rng.randrange(1, 40)
            keys = [mkkey(rng.randrange(space)) for _ in range(n)]
            vals = [mkval(rng) for _ in range(n)]
            kraw = np.frombuffer(b"".join(kc.encode(k) if not isinstance(k, bytes) else k
                                          for k in keys), np.uint8).reshape(n, -1)
            vraw = [vc.encode(v) for v in vals]
            seqs = br.update_many(kraw, b"".join(vraw), flags=flags)
            for seq, kr, vr in zip(seqs, kraw, vraw, strict=True):
                expected.append((seq, "update", flags, model.update(kr.tobytes(), vr, flags)))
            i += n
        elif roll < 0.25 and deletable:  # a batch of deletes
            n = rng.randrange(1, 20)
            keys = [mkkey(rng.randrange(space)) for _ in range(n)]
            seqs = br.delete_many(keys)
            for seq, k in zip(seqs, keys, strict=True):
                kr = k if isinstance(k, bytes) else kc.encode(k)
                expected.append((seq, "delete", 0, model.delete(kr)))
            i += n
        elif roll < 0.45 and deletable:
            k = mkkey(rng.randrange(space))
            kr = k if isinstance(k, bytes) else kc.encode(k)
            expected.append((br.delete(k), "delete", 0, model.delete(kr)))
            i += 1
        else:
            k, v = mkkey(rng.randrange(space)), mkval(rng)
            kr = k if isinstance(k, bytes) else kc.encode(k)
            seq = br.update(k, v, flags=flags)
            expected.append((seq, "update", flags, model.update(kr, vc.encode(v), flags)))
            i += 1
        if rng.random() < 0.05:
            br.flush()
    assert br.wait_applied(5)
    assert _dump(br.map) == model.d
    return expected


def _check_counters(br: MapBridge, expected: list[tuple]) -> None:
    st = br.stats
    ok = [e for e in expected if e[3] == 0]
    assert st.queued == st.consumed == len(expected)
    assert st.pending == 0
    assert st.applied == len(ok)
    assert st.updated == sum(1 for e in ok if e[1] == "update")
    assert st.deleted == sum(1 for e in ok if e[1] == "delete")
    assert st.failed == len(expected) - len(ok)
    assert st.errors == dict(Counter(errno.errorcode[e[3]] for e in expected if e[3]))
    assert st.bad == 0
    assert [e[0] for e in expected] == list(range(len(expected)))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_random_sequence_matches_dict_model(obj, name):
    """Every supported map type: the map after a random sequence equals the
    model, and the counters are exact (errors by errno included)."""
    with MapBridge(obj, name, fallback=False) as br:
        assert br.fallback is None
        expected = _run_random(br, name, seed=zlib.crc32(name.encode()))
        _check_counters(br, expected)
        errs = {e[3] for e in expected}
        if br.info.type in (_sys.MAP_TYPE_HASH, _sys.MAP_TYPE_PERCPU_HASH):
            assert {errno.EEXIST, errno.ENOENT, errno.E2BIG} <= errs  # the model was tested
        if br.info.type == _sys.MAP_TYPE_ARRAY:
            assert {errno.EEXIST, errno.E2BIG} <= errs


def test_per_operation_results_ring(obj):
    """report='all' returns one result per operation, in order, with the
    kernel's errno; report='failures' only the failures."""
    with MapBridge(obj, "hmap", report="all") as br:
        expected = _run_random(br, "hmap", seed=7, n_ops=300)
        got = br.results(timeout=1)
        while len(got) < len(expected):
            more = br.results(timeout=1)
            assert more, f"only {len(got)} of {len(expected)} results"
            got += more
        assert [(r.seq, r.op, r.flags, r.errno) for r in got] == expected
        assert br.stats.results_lost == 0
    with MapBridge(obj, "hmap", report="failures") as br:
        br.update(1, {"a": 1}, flags=NOEXIST)  # fails or not: depends on the run above
        br.delete(10**6)
        br.update(10**6 + 1, {"a": 2}, flags=EXIST)
        br.flush()
        res = br.results(timeout=1)
        assert [r.errno for r in res][-2:] == [errno.ENOENT, errno.ENOENT]
        assert all(not r.ok for r in res)


@pytest.mark.parametrize("name", ["hmap", "pca"])
def test_fallback_gives_the_same_results(nobridge_path, name, caplog):
    """Built without the bridges, MapBridge uses BPF_MAP_UPDATE_BATCH and
    per-op bpf() calls, with the same semantics, counters and results, and
    says so in the log."""
    with bpfring.load(nobridge_path) as o, caplog.at_level(logging.DEBUG, "bpfring"):
        with MapBridge(o, name, report="all") as br:
            assert br.fallback and "BPFRING_BRIDGE" in br.fallback
            expected = _run_random(br, name, seed=11, n_ops=300)
            _check_counters(br, expected)
            got = br.results()
            assert [(r.seq, r.op, r.flags, r.errno) for r in got] == expected
        assert any("using BPF_MAP_UPDATE_BATCH" in r.getMessage() for r in caplog.records)
        with pytest.raises(bpfring.BPFError, match="no user ring bridge"):
            MapBridge(o, name, fallback=False)


def test_fallback_modes_apply_at_once_or_on_flush(nobridge_path):
    with bpfring.load(nobridge_path) as o:
        with MapBridge(o, "hmap", mode="flush") as br:
            br.update(3, {"a": 3})
            assert br.pending == 1 and br.lookup(3) is None
            assert br.flush().applied == 1 and br.lookup(3).a == 3
        with MapBridge(o, "hmap", mode="timer") as br:
            br.update(4, {"a": 4})
            assert br.pending == 0 and br.lookup(4).a == 4


def test_bridge_load_falls_back_without_kernel_support(monkeypatch, kernel, caplog):
    """bpfring.bridge.load() compiles the bridges out on kernels without user
    ring buffers; MapBridge then uses system calls."""
    import bpfring.bridge as bridge_mod

    monkeypatch.setattr(bridge_mod, "_SUPPORTED", False)
    with bridge_mod.load(BPF_DIR / "bridge_maps.bpf.c") as o:
        assert "hmap__ops" not in o.maps
        with MapBridge(o, "hmap") as br:
            assert "no user ring buffers" in br.fallback
            br.update(1, {"a": 1})
            br.flush()
            assert br.lookup(1).a == 1


# --------------------------------------------------------------------------------------
# Validation, full ring, malformed samples
# --------------------------------------------------------------------------------------


def test_size_mismatch_is_rejected_before_the_kernel(obj):
    with MapBridge(obj, "hmap") as br:
        prod = br._impl.ring.producer_pos
        with pytest.raises(OpSizeError, match="key of 7 bytes"):
            br.update(b"\0" * 7, b"\0" * 16)
        with pytest.raises(OpSizeError, match="value of 17 bytes"):
            br.update(b"\0" * 8, b"\0" * 17)
        with pytest.raises(OpSizeError):
            br.update_many(np.zeros(4, np.uint32).view(np.uint8).reshape(4, 4),
                           np.zeros((4, 16), np.uint8))
        with pytest.raises(ValueError, match="3 keys but 2 values"):
            br.update_many(np.arange(3, dtype=np.uint64), np.zeros((2, 16), np.uint8))
        with pytest.raises(ValueError, match="flags"):
            br.update(1, {"a": 1}, flags=3)
        with pytest.raises(TypeError):
            br.update(1, {"nope": 1})
        assert br._impl.ring.producer_pos == prod  # nothing reached the ring
        assert br.stats.queued == 0
    with MapBridge(obj, "arr") as br, pytest.raises(bpfring.MapTypeError, match="deleted"):
        br.delete(1)


def test_map_and_bridge_share_one_element_codec(obj):
    """Map and MapBridge accept, convert and refuse keys and values alike:
    the same codec objects, the same errors for the same bad input."""
    m = obj.maps["hmap"]
    with MapBridge(obj, "hmap") as br:
        assert br.key_type is m.key_type and br.value_type is m.value_type
        for key, value in ((b"\0" * 7, b"\0" * 16), (b"\0" * 8, b"\0" * 17), (1.5, {"a": 1}),
                           (1, {"nope": 1})):
            with pytest.raises((TypeError, ValueError)) as by_map:
                m.update(key, value)
            with pytest.raises((TypeError, ValueError)) as by_bridge:
                br.update(key, value)
            assert type(by_map.value) is type(by_bridge.value)
            assert str(by_map.value) == str(by_bridge.value)
        assert isinstance(by_map.value, TypeError)  # the last: an unknown field
        with pytest.raises(OpSizeError):
            m.update(b"\0" * 7, b"\0" * 16)  # the bridge's name for the shared error
        br.update(5, {"a": 5, "b": 1})
        br.flush()
        assert m[5] == br.lookup(5) and m[5].a == 5


def test_full_ring_raises_or_waits_never_drops(obj):
    """The 4 KiB ring of 'small' holds 128 single operations."""
    with MapBridge(obj, "small", on_full="raise") as br:
        n = 0
        with pytest.raises(RingFull):
            while True:
                br.update(n, n)
                n += 1
        assert n == 4096 // 32
        with pytest.raises(RingFull):  # a batch is queued whole or not at all
            br.update_many(np.arange(10, dtype=np.uint32), np.arange(10, dtype=np.uint32))
        with pytest.raises(bpfring.RecordTooLarge):
            br.update_many(np.arange(2000, dtype=np.uint32), np.arange(2000, dtype=np.uint32))
        assert br.pending == n
        assert br.flush().applied == n
        assert br.update_many(np.arange(10, dtype=np.uint32), np.arange(10, dtype=np.uint32))
        assert br.stats.applied == n and br.pending == 10
        br.flush()
    # on_full="wait" in flush mode flushes by itself; batches larger than the ring too
    with MapBridge(obj, "small") as br:
        before = br.stats.applied  # the kernel's counters live as long as the object
        for i in range(1000):
            br.update(i, i + 1)
        br.update_many(np.arange(3000, dtype=np.uint32), np.arange(3000, dtype=np.uint32) * 2)
        br.flush()
        assert br.stats.applied - before == 4000
        assert dict(br.map.items()) == {i: 2 * i for i in range(3000)}


def test_full_ring_waits_for_the_timer(obj):
    """Timer mode: a producer that finds the ring full sleeps until the
    timer's drain makes room (asking it for a wakeup), and loses nothing."""
    with MapBridge(obj, "small", mode="timer", period=0.002) as br:
        br.update_many(np.arange(2000, dtype=np.uint32), np.arange(2000, dtype=np.uint32))
        for i in range(2000, 2300):
            br.update(i, i)
        # Had no drain made room, update() would still be waiting (the
        # default full_timeout is None): it returned, so the timer's drains
        # woke it.
        assert br.wait_applied(60)
        assert br.map.lookup(2299) == 2299 and len(br.map) == 2300
        assert br.stats.timer_ticks > 1


def test_full_ring_timeout_without_a_drain(obj):
    """Piggyback mode with nothing triggering the drain: RingFull after
    full_timeout, everything queued before still there."""
    with MapBridge(obj, "small", mode="piggyback", full_timeout=0.2) as br:
        t0 = time.monotonic()
        with pytest.raises(RingFull, match="stayed full"):
            for i in range(200):
                br.update(i, i)
        # It waited full_timeout (a lower bound the clock guarantees), not
        # forever (the upper bound is only a hang guard: the machine may be loaded).
        assert 0.15 < time.monotonic() - t0 < 60
        assert br.pending == 128
        assert not br.wait_applied(0.05)
        assert br.flush().applied == 128


def test_malformed_samples_are_counted_and_skipped(obj):
    """A foreign producer's bad sample is consumed and counted as bad without
    touching the map; the operation indexes stay in step with the kernel."""
    from bpfring.bridge._wire import OP_HDR as _OP_HDR

    urb = obj.user_ring_buffer("hmap__ops")
    urb.write(_OP_HDR.pack(1, 0, 4, 16, 1, 0) + bytes(24))  # key_size 4, not 8
    urb.write(_OP_HDR.pack(9, 0, 8, 0, 1, 0) + bytes(8))  # unknown op
    urb.close()
    with MapBridge(obj, "hmap", report="all") as br:  # applies what was left queued
        seq = br.update(1, {"a": 1})
        assert seq == 2  # two operations came before
        res = br.flush()
        assert (res.drained, res.applied, res.bad) == (1, 1, 0)
        st = br.stats
        assert (st.bad, st.applied, st.last_error) == (2, 1, -errno.EBADMSG)
        results = br.results(timeout=1)
        assert [(r.seq, r.op, r.errno) for r in results] == [
            (0, "bad", errno.EBADMSG), (1, "bad", errno.EBADMSG), (2, "update", 0)]
        assert br.lookup(1).a == 1


def test_one_producer_per_ring(obj):
    with MapBridge(obj, "lru"), pytest.raises(bpfring.BPFError,
                                              match="already has a MapBridge"):
        MapBridge(obj, "lru")
    MapBridge(obj, "lru").close()  # fine once the first is closed


# --------------------------------------------------------------------------------------
# Concurrency and the three modes
# --------------------------------------------------------------------------------------


def test_concurrent_threads(obj):
    """Four threads queue into one small ring (it fills and wraps many
    times, while the timer drains): every operation lands, with distinct
    indexes."""
    with MapBridge(obj, "small", mode="timer", period=0.001) as br:
        seqs: list[list[int]] = [[] for _ in range(4)]

        def work(t: int) -> None:
            base = t * 1000
            for i in range(0, 1000, 100):
                if i % 200:
                    keys = np.arange(base + i, base + i + 100, dtype=np.uint32)
                    seqs[t].extend(br.update_many(keys, keys + 1))
                else:
                    for k in range(base + i, base + i + 100):
                        seqs[t].append(br.update(k, k + 1))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert br.wait_applied(5)
        allseq = sorted(s for part in seqs for s in part)
        assert allseq == list(range(4000))
        assert dict(br.map.items()) == {k: k + 1 for k in range(4000)}
        assert br.stats.applied == 4000 and br.stats.bad == 0


def test_piggyback_mode_applies_on_the_users_program(obj):
    """The tracepoint program calls bpfring_bridge_drain(hmap): a getpgid()
    call applies what was queued, no flush needed."""
    obj.programs["piggyback"].attach()
    obj.globals.piggy_tgid = os.getpid()
    with MapBridge(obj, "hmap", mode="piggyback") as br:
        br.update(42, {"a": 4, "b": 2})
        time.sleep(0.01)
        assert br.lookup(42) is None  # nothing drains until the program runs
        os.getpgid(0)
        assert br.lookup(42).b == 2
        assert br.pending == 0
        assert obj.globals.piggy_runs >= 1
        # wait_applied waits (it does not flush) in this mode
        br.update(43, {"a": 1})
        threading.Timer(0.1, os.getpgid, (0,)).start()
        t0 = time.monotonic()
        assert br.wait_applied(5)
        assert time.monotonic() - t0 >= 0.05
        assert br.lookup(43).a == 1


def test_timer_mode_and_zero_syscalls(obj):
    """Timer mode: updates appear within a few periods without any call
    from Python, and queueing them makes no system call at all."""
    obj.programs["count_syscalls"].attach()
    g = obj.globals
    with MapBridge(obj, "hmap", mode="timer", period=0.001) as br:
        for i in range(50):  # warm up allocators and caches
            br.update(i % 60, {"a": i})
        g.syscalls = 0
        g.count_tid = threading.get_native_id()
        for i in range(500):
            br.update(i % 60, {"a": i, "b": 1})
        br.update_many(np.arange(60, dtype=np.uint64), np.ones((60, 2), np.uint64))
        g.count_tid = 0
        assert g.syscalls == 0
        deadline = time.monotonic() + 2
        while br.pending and time.monotonic() < deadline:
            time.sleep(0.0005)
        assert br.pending == 0
        assert br.lookup(59).b == 1
        assert br.stats.timer_ticks >= 1
        br.stop_timer()
        br.update(1, {"a": 123})
        time.sleep(0.01)
        assert br.pending == 1 and br.lookup(1).a == 1  # no timer: waits
        br.start_timer(0.001)
        assert br.wait_applied(2) and br.lookup(1).a == 123


def test_flush_mode_is_one_syscall_and_reports_counts(obj):
    with MapBridge(obj, "hmap") as br:
        seqs = br.update_many(np.arange(64, dtype=np.uint64), np.ones((64, 2), np.uint64))
        br.update(1000, {"a": 1})  # map full: E2BIG
        br.delete(5)
        r = br.flush()
        assert (r.drained, r.applied, r.failed, r.bad) == (66, 65, 1, 0)
        assert seqs == range(0, 64)
        assert br.stats.errors == {"E2BIG": 1}
        assert br.flush() == (0, 0, 0, 0)
        assert br.stats.batches == 1


def test_bridge_for_a_map_outside_our_objects(kernel):
    """MapBridge(fd) compiles a bridge that reuses the map: flush and timer."""
    fd = _sys.map_create(_sys.MAP_TYPE_HASH, 8, 16, 1024, name="plain")
    try:
        with MapBridge(fd, ring_size=1 << 16) as br:
            assert br.fallback is None and br.key_type is None
            br.update(b"\1" * 8, b"\2" * 16)
            br.update_many(np.arange(100, dtype=np.uint64).view(np.uint8).reshape(100, 8),
                           np.zeros((100, 16), np.uint8))
            assert br.flush().applied == 101
            assert br.lookup(b"\1" * 8) == b"\2" * 16
            br.start_timer(0.001)
            br.delete(b"\1" * 8)
            assert br.wait_applied(2) and br.lookup(b"\1" * 8) is None
            with pytest.raises(TypeError):
                br.update(1.5, b"\0" * 16)
        with pytest.raises(ValueError, match="piggyback"):
            MapBridge(fd, mode="piggyback")
    finally:
        os.close(fd)


def test_control_loop_example(kernel):
    """examples/bridge_control_loop.py: a control loop steering an attached
    program through a timer-mode bridge, every update applied."""
    import subprocess
    import sys

    example = Path(__file__).parent.parent / "examples" / "bridge_control_loop.py"
    proc = subprocess.run([sys.executable, str(example), "--steps", "4"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["step", "calls/s", "every", "samples/s", "in", "force",
                                "applied", "after"]
    assert [int(line.split()[0]) for line in lines[1:5]] == [1, 2, 3, 4]
    n = int(lines[-1].split()[1])
    assert lines[-1].startswith(f"bridge: {n} updates queued, {n} applied, 0 failed")


def test_bench_bridge_smoke(checkout, kernel):
    """``bpfring bench bridge`` runs every case and mode and reports JSON."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "bpfring", "bench", "bridge", "--json", "-q",
                           "--sizes", "1,256", "--rounds", "1", "--ops", "512",
                           "--latency-samples", "5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["suite"] == "bridge"
    assert [r["ops_per_flush"] for r in report["throughput"]] == [1, 256]
    for row in report["throughput"]:
        assert set(row["cases"]) == {"syscall", "batch", "bridge", "bridge-op"}
        assert set(row["ratios"]) == {"syscall", "batch"}
    assert [r["mode"] for r in report["latency"]] == ["syscall", "flush", "piggyback", "timer"]
    assert {t["target"].split(" at")[0] for t in report["targets"]} == {
        ">= 5x bpf() per op", ">= 2x BPF_MAP_UPDATE_BATCH"}
    assert report["bridge_stats"]["failed"] == 0


def test_bridges_close_with_their_object_and_keep_no_fd(bridge_path):
    """A bridge of an object is adopted by it (closed first when the object
    closes); a bridge for a map given by fd owns duplicates and its generic
    object, and gives every fd back on close."""
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    base = fds()
    o = bpfring.load(bridge_path)
    br = MapBridge(o, "hmap", mode="timer", period=0.01)
    br.update(1, {"a": 1})
    o.close()
    assert br.closed and o.closed
    br.close()  # idempotent after the object closed it
    assert fds() == base
    fd = _sys.map_create(_sys.MAP_TYPE_HASH, 8, 8, 16, name="owned")
    try:
        base = fds()
        with MapBridge(fd, ring_size=1 << 16) as br:
            br.update(b"\1" * 8, b"\2" * 8)
            assert br.flush().applied == 1
        assert fds() == base
        assert _sys.map_lookup(fd, b"\1" * 8, value := bytearray(8)) and value == b"\2" * 8
    finally:
        os.close(fd)
