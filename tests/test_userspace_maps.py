"""User-space maps against kernel maps: the same program, the same sequence of
operations, the same return codes and the same contents; plus the Python-side
map API (mirroring bpfring.Map), memfd backing and the kernel ring layout."""

from __future__ import annotations

import errno
import mmap
import os
import struct

import pytest
from conftest import BPF_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfring.errors import BPFError
from bpfring.userspace import load

MAPS = ["hash", "array", "pcpu_array", "pcpu_hash", "lru"]


@pytest.fixture(scope="module")
def maps_path():
    import bpfring

    return bpfring.build(BPF_DIR / "userspace_maps.bpf.c")


@pytest.fixture
def pinned_cpu0():
    """Run on CPU 0, so kernel per-CPU slots and the user-space object (cpu=0) agree."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    yield
    os.sched_setaffinity(0, before)


def _op(obj, m: int, op: int, key: int, value: int = 0, flags: int = 0):
    ctx = struct.pack("<IIIIQ", m, op, key, flags, value)
    rc = obj.programs["map_op"].run(ctx=ctx)
    return rc, obj.globals.found


def _contents(obj, name):
    return sorted(obj.maps[name].items())


_ops = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(0, 11),
                          st.integers(0, (1 << 64) - 1), st.sampled_from([0, 1, 2, 3, 4, 5])),
                min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_operation_sequences_match_kernel(maps_path, kernel, pinned_cpu0, ops):
    import bpfring

    with bpfring.load(maps_path) as k, load(maps_path, cpu=0) as u:
        for m, op, key, value, flags in ops:
            if m == 4 and key >= 8:
                key %= 8  # keep the LRU map below max_entries: eviction order differs
            got_k = _op(k, m, op, key, value, flags)
            got_u = _op(u, m, op, key, value, flags)
            assert got_u == got_k, (MAPS[m], op, key, value, flags)
        for name in MAPS:
            assert _contents(u, name) == _contents(k, name), name


def test_return_codes(maps_path):
    with load(maps_path) as u:
        assert _op(u, 0, 1, 1, 5, 1) == (0, 0)                 # NOEXIST on a new key
        assert _op(u, 0, 1, 1, 6, 1)[0] == -errno.EEXIST
        assert _op(u, 0, 1, 2, 6, 2)[0] == -errno.ENOENT       # EXIST on a missing key
        assert _op(u, 0, 1, 2, 6, 4)[0] == -errno.EINVAL       # BPF_F_LOCK, no lock in value
        assert _op(u, 0, 1, 2, 6, 8)[0] == -errno.EINVAL
        for k in range(2, 9):
            assert _op(u, 0, 1, k, k)[0] == 0
        assert _op(u, 0, 1, 9, 9)[0] == -errno.E2BIG            # full
        assert _op(u, 0, 1, 3, 33)[0] == 0                      # replacing still works
        assert _op(u, 0, 2, 77)[0] == -errno.ENOENT
        assert _op(u, 1, 1, 8, 1)[0] == -errno.E2BIG            # array index out of range
        assert _op(u, 1, 1, 1, 1, 1)[0] == -errno.EEXIST        # arrays always exist
        assert _op(u, 1, 2, 1)[0] == -errno.EINVAL              # arrays cannot delete
        assert _op(u, 1, 0, 8)[0] == -2                         # lookup out of range: NULL
        assert _op(u, 0, 3, 3, 10) == (1, 43)                   # write through the pointer
        assert u.maps["hash"][3] == 43


def test_typed_keys_and_values(maps_path, kernel):
    import bpfring

    with bpfring.load(maps_path) as k, load(maps_path) as u:
        for obj in (k, u):
            for key, port, size in ((0x0A000001, 80, 100), (0x0A000001, 80, 50),
                                    (0x0A000002, 443, 7)):
                obj.programs["count_flow"].run(ctx=struct.pack("<IIIIQ", 0, 0, key, port, size))
            obj.maps["flows"][{"saddr": 9, "port": 9, "proto": 6}] = {"packets": 3, "tag": "py"}
        assert sorted(u.maps["flows"].items(), key=str) == sorted(k.maps["flows"].items(),
                                                                  key=str)
        rec = u.maps["flows"][{"saddr": 0x0A000001, "port": 80, "proto": 6}]
        assert (rec.packets, rec.bytes, rec.tag) == (2, 150, "seen")
        assert u.maps["flows"].key_type.name == k.maps["flows"].key_type.name


def test_user_side_api_mirrors_kernel_map(maps_path, kernel):
    import bpfring

    with bpfring.load(maps_path) as k, load(maps_path) as u:
        for obj in (k, u):
            h = obj.maps["hash"]
            h[1] = 10
            h.update(2, 20, flags=1)
            with pytest.raises(BPFError) as ei:
                h.update(2, 21, flags=1)
            assert ei.value.errno == errno.EEXIST
            with pytest.raises(BPFError) as ei:
                h.update(5, 1, flags=2)
            assert ei.value.errno == errno.ENOENT
            assert h.delete(1) is True and h.delete(1) is False
            with pytest.raises(KeyError):
                del h[1]
            assert 2 in h and 1 not in h and len(h) == 1
            assert h.lookup(7, "none") == "none"
            with pytest.raises(KeyError):
                h[7]
            a = obj.maps["array"]
            a[3] = 0xFFFF_FFFF_FFFF
            with pytest.raises(BPFError) as ei:
                a.delete(3)
            assert ei.value.errno == errno.EINVAL
            with pytest.raises(BPFError) as ei:
                a[8] = 1
            assert ei.value.errno == errno.E2BIG
            with pytest.raises(ValueError):
                h.update(b"\x01\x02", 1)
            p = obj.maps["pcpu_array"]
            p[1] = 5
            p[2] = list(range(len(p[2])))
        for name in ("hash", "array", "pcpu_array"):
            assert _contents(u, name) == _contents(k, name)
            assert u.maps[name].percpu == k.maps[name].percpu
            assert (u.maps[name].key_size, u.maps[name].value_size, u.maps[name].max_entries,
                    u.maps[name].type) == (k.maps[name].key_size, k.maps[name].value_size,
                                           k.maps[name].max_entries, k.maps[name].type)
        assert u.maps["hash"].lookup_raw(struct.pack("<I", 2)) == \
            k.maps["hash"].lookup_raw(struct.pack("<I", 2))


def test_lru_evicts_the_least_recently_used(maps_path):
    with load(maps_path) as u:
        for key in range(64):
            assert _op(u, 4, 1, key, key)[0] == 0
        _op(u, 4, 0, 0)                   # touch key 0: now the most recently used
        assert _op(u, 4, 1, 100, 1)[0] == 0   # full: evicts key 1, not 0
        keys = set(u.maps["lru"].keys())
        assert 0 in keys and 1 not in keys and 100 in keys and len(keys) == 64


def test_maps_live_in_a_shareable_memfd(maps_path):
    with load(maps_path) as u:
        arr = u.maps["array"]
        arr[2] = 0x1122334455667788
        fd = arr.memfd
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:bpfring-user:array")
        with mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ) as mm:
            assert struct.unpack_from("<Q", mm, 2 * 8)[0] == 0x1122334455667788
        # the hash layout: [in_use][key padded][value]
        u.maps["hash"][7] = 99
        with mmap.mmap(u.maps["hash"].memfd, mmap.PAGESIZE, mmap.MAP_SHARED,
                       mmap.PROT_READ) as mm:
            used, key, value = struct.unpack_from("<QQQ", mm, 0)
            assert (used, key, value) == (1, 7, 99)


def test_closed_map_and_object(maps_path):
    u = load(maps_path)
    m = u.maps["hash"]
    u.close()
    with pytest.raises(ValueError, match="closed"):
        m[1] = 1
    with pytest.raises(ValueError, match="closed"):
        u.programs["map_op"].run(ctx=bytes(24))
    u.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(0, 1 << 40),
                              st.sampled_from([0, 0, 2, 1, 3])), min_size=1, max_size=30))
def test_queue_and_stack_match_kernel(maps_path, kernel, ops):
    import bpfring

    with bpfring.load(maps_path) as k, load(maps_path) as u:
        for m, op, value, flags in ops:
            ctx = struct.pack("<IIIIQ", m, op, 0, flags, value)
            got = [(o.programs["qs_op"].run(ctx=ctx), o.globals.found) for o in (k, u)]
            assert got[1] == got[0], (m, op, value, flags)
        for m, name in enumerate(("fifo", "lifo")):
            expect = list(u.maps[name].values())
            drained = {}
            for o in (k, u):  # pop until empty, through the program
                out = []
                while (r := _op_qs(o, m, 1))[0] == 0:
                    out.append(r[1])
                drained[o is u] = out
            assert drained[True] == drained[False] == expect


def test_queue_and_stack_python_side(maps_path):
    with load(maps_path) as u:
        q, s = u.maps["fifo"], u.maps["lifo"]
        for v in (1, 2, 3, 4):
            q.push(v)
            s.push(v)
        with pytest.raises(BPFError) as ei:
            q.push(5)
        assert ei.value.errno == errno.E2BIG
        q.push(5, flags=2)                      # BPF_EXIST: drop the oldest
        s.push(5, flags=2)
        assert list(q.values()) == [2, 3, 4, 5] and list(s.values()) == [5, 4, 3, 2]
        assert q.peek() == 2 and q.pop() == 2 and len(q) == 3
        assert s.pop() == 5 and s.peek() == 4
        with pytest.raises(BPFError) as ei:
            q.push(1, flags=1)
        assert ei.value.errno == errno.EINVAL
        assert _op_qs(u, 0, 1) == (0, 3)
        while q.pop() is not None:
            pass
        assert q.pop("empty") == "empty"
        assert _op_qs(u, 0, 1) == (-errno.ENOENT, 0)


def _op_qs(obj, m, op, value=0, flags=0):
    ctx = struct.pack("<IIIIQ", m, op, 0, flags, value)
    return obj.programs["qs_op"].run(ctx=ctx), obj.globals.found


def test_spin_locked_values(maps_path, kernel):
    import bpfring

    with bpfring.load(maps_path) as k, load(maps_path) as u:
        for o in (k, u):
            for key, value in ((0, 5), (1, 7), (0, 9)):
                assert o.programs["locked_add"].run(
                    ctx=struct.pack("<IIIIQ", 0, 0, key, 0, value)) == 0
            assert o.programs["locked_add"].run(ctx=struct.pack("<IIIIQ", 0, 0, 2, 0, 1)) == -2
            o.maps["guarded"].update(1, {"n": 100}, flags=4)  # BPF_F_LOCK: allowed here
        assert [v.n for _, v in sorted(u.maps["guarded"].items())] == \
            [v.n for _, v in sorted(k.maps["guarded"].items())] == [14, 100]
        assert u.maps["guarded"][0].lock == k.maps["guarded"][0].lock  # unlocked again


def test_lookup_percpu_elem(maps_path, kernel):
    import bpfring

    with bpfring.load(maps_path) as k, load(maps_path) as u:
        ncpu = len(k.maps["pcpu_array"][0])
        for o in (k, u):
            o.maps["pcpu_array"][1] = [10 + c for c in range(ncpu)]
        for cpu in range(ncpu + 2):
            got = [(o.programs["percpu_get"].run(ctx=struct.pack("<IIIIQ", 0, 0, 1, cpu, 0)),
                    o.globals.found) for o in (k, u)]
            assert got[1] == got[0]
            assert got[1] == ((0, 10 + cpu) if cpu < ncpu else (-2, 0))
