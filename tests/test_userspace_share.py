"""Maps shared between processes: pinned files (a checked header page, then
the map's storage unchanged), opened by a second real process; hash slot
claims under the file's lock; the header parser on hostile input."""

from __future__ import annotations

import json
import mmap
import os
import struct
import subprocess
import sys

import pytest
from conftest import BPF_DIR
from hypothesis import given, settings
from hypothesis import strategies as st

import bpfring
from bpfring.userspace import UserLoadError, _cinterp, _share, load, open_map

ARGS = struct.Struct("<II")
EVENT = struct.Struct("<IIQ")

CHILD = r"""
import json, os, struct, sys
from bpfring.userspace import load, open_map
from bpfring._ringcore import Consumer

obj_path, pin_dir, mode = sys.argv[1:4]
out = {"pid": os.getpid()}
if mode == "run":
    keys = json.loads(sys.argv[4])
    with load(obj_path, pinned_maps=pin_dir) as u:
        prog = u.programs["count"]
        out["rc"] = [prog.run(ctx=struct.pack("<II", k, a)) for k, a in keys]
        out["counts"] = {str(int.from_bytes(k, "little")): int.from_bytes(v, "little")
                         for k, v in ((k, u.maps["counts"].lookup_raw(k))
                                      for k in (x.to_bytes(4, "little")
                                                for x in u.maps["counts"].keys()))}
elif mode == "consume":
    # The records through bpfring's sans-IO ring consumer over the shared pages.
    ring = open_map(os.path.join(pin_dir, "events"))
    r = ring._r()
    got = []
    cons = Consumer(r.data, ring.size).consume(ring.consumer_pos, ring.producer_pos,
                                               lambda v: got.append(bytes(v).hex()), None,
                                               r.cons.cast("Q"))
    out["records"] = got
    out["cons"] = ring.consumer_pos
    counts = open_map(os.path.join(pin_dir, "counts"))
    out["counts"] = {str(int.from_bytes(k, "little")): int.from_bytes(counts.lookup_raw(k),
                                                                       "little")
                     for k in counts.keys()}
    counts.update(7, 700)       # seen by the parent
    counts.delete(1)
    ring.close()
    counts.close()
    with open_map(os.path.join(pin_dir, "requests")) as req:   # drained by the parent
        for add in (100, 200, 300):
            req.write(struct.pack("<II", 0, add))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def share_obj():
    return bpfring.build(BPF_DIR / "userspace_share.bpf.c")


@pytest.fixture
def pin_dir(tmp_path_factory):
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="bpfring-share-", dir="/dev/shm")
    yield os.path.join(base, "maps")
    shutil.rmtree(base)


def _child(*args: object) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _events(m) -> list[tuple[int, int, int]]:
    return [EVENT.unpack(r) for r in m.read()]


def test_two_processes_share_maps_and_ring(share_obj, pin_dir):
    with load(share_obj, pinned_maps=pin_dir) as a:
        assert {n for n, m in a.maps.items() if m.shared} == {"counts", "totals", "events",
                                                              "jobs", "requests"}
        assert oct(os.stat(pin_dir).st_mode & 0o777) == "0o700"
        prog = a.programs["count"]
        assert prog.run(ctx=ARGS.pack(1, 5)) == 0
        assert prog.run(ctx=ARGS.pack(1, 5)) == 0
        # Process B runs the same object on the same pinned maps.
        b = _child(share_obj, pin_dir, "run", json.dumps([[1, 10], [2, 1]]))
        assert b["rc"] == [0, 0] and b["counts"] == {"1": 20, "2": 1}
        assert a.maps["counts"][1] == 20 and a.maps["counts"][2] == 1  # B's insert, here
        assert a.maps["totals"][0] == 21
        assert list(a.maps["jobs"].values()) == [1, 1, 1, 2]
        # Process C reads the ring A and B wrote, with bpfring's ring consumer, and
        # changes the hash map.
        c = _child(share_obj, pin_dir, "consume")
        recs = [EVENT.unpack(bytes.fromhex(h)) for h in c["records"]]
        me = os.getpid()
        assert recs == [(1, me, 5), (1, me, 10), (1, b["pid"], 20), (2, b["pid"], 1)]
        assert c["counts"] == {"1": 20, "2": 1}
        assert a.maps["events"].consumer_pos == c["cons"] == a.maps["events"].producer_pos
        assert a.maps["events"].read() == []  # consumed over there
        assert dict(a.maps["counts"].items()) == {2: 1, 7: 700}
        assert a.programs["drain"].run() == 3  # C's user ring samples, in order, drained here
        assert a.maps["totals"][1] == 600 and a.programs["drain"].run() == 0
        assert prog.run(ctx=ARGS.pack(1, 3)) == 0  # key 1 again: a new slot, no clash
        assert dict(a.maps["counts"].items()) == {2: 1, 7: 700, 1: 3}
        assert _events(a.maps["events"]) == [(1, me, 3)]


def test_concurrent_inserts_claim_distinct_slots(share_obj, pin_dir):
    """Two processes inserting at the same time (400 keys into 512 slots): every
    key once, each in its own slot, none lost."""
    with load(share_obj, pinned_maps=pin_dir) as a:
        evens = [[k, 1] for k in range(0, 400, 2)]
        odds = [[k, 1] for k in range(1, 400, 2)]
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(share_obj), pin_dir, "run",
                                   json.dumps(keys)], stdout=subprocess.PIPE, text=True)
                 for keys in (evens, odds)]
        outs = [json.loads(p.communicate(timeout=300)[0].splitlines()[-1]) for p in procs]
        assert all(p.returncode == 0 for p in procs)
        assert all(rc == 0 for o in outs for rc in o["rc"])
        counts = a.maps["counts"]
        assert dict(counts.items()) == {k: 1 for k in range(400)}
        slots = {}
        backing = counts._backing
        for slot in range(counts.max_entries):
            base = slot * counts._slot
            if int.from_bytes(backing.view[base:base + 4], "little") == 1:
                key = int.from_bytes(backing.view[base + 8:base + 12], "little")
                assert key not in slots, f"key {key} in slots {slots[key]} and {slot}"
                slots[key] = slot
        assert len(slots) == 400
        if _cinterp._backend == "c":  # host atomics; the pure interpreter's are per process
            assert a.maps["totals"][0] == 400
        assert len(_events(a.maps["events"])) == 400


def test_pin_and_open_map_in_process(share_obj, pin_dir):
    with load(share_obj) as a:
        a.maps["counts"][5] = 55
        a.maps["totals"][1] = 11
        assert not a.maps["counts"].shared
        assert sorted(a.pin_maps(pin_dir)) == ["counts", "events", "jobs", "requests",
                                               "totals"]
        assert a.maps["counts"].pinned_path == os.path.join(pin_dir, "counts")
        a.programs["count"].run(ctx=ARGS.pack(5, 1))  # regions stay valid after the move
        with open_map(os.path.join(pin_dir, "counts")) as m:
            assert m.lookup_raw((5).to_bytes(4, "little")) == (56).to_bytes(8, "little")
            m.update_raw((6).to_bytes(4, "little"), (66).to_bytes(8, "little"))
        assert a.maps["counts"][6] == 66
        with open_map(os.path.join(pin_dir, "totals")) as t:
            assert t.lookup_raw(bytes(4)) == (1).to_bytes(8, "little")
            assert t.lookup_raw((1).to_bytes(4, "little")) == (11).to_bytes(8, "little")
        with open_map(os.path.join(pin_dir, "jobs")) as q:
            assert q.pop() == (5).to_bytes(4, "little")
        assert list(a.maps["jobs"].values()) == []
        with pytest.raises(bpfring.BPFError, match="already pinned"):
            a.maps["counts"].pin(os.path.join(pin_dir, "again"))
        with load(share_obj) as other, pytest.raises(bpfring.BPFError, match="counts exists"):
            other.pin_maps(pin_dir)
        a.maps["counts"].unpin()
        assert not os.path.exists(os.path.join(pin_dir, "counts"))
        assert a.maps["counts"][6] == 66  # still mapped


def test_reuse_checks_the_shape(share_obj, pin_dir):
    with load(share_obj, pinned_maps=pin_dir):
        pass
    path = os.path.join(pin_dir, "counts")
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    struct.pack_into("<I", raw, 28, 256)  # max_entries: the size no longer matches
    with open(path, "r+b") as f:
        f.write(raw)
    with pytest.raises(UserLoadError, match=r"storage is .* its parameters need"):
        load(share_obj, pinned_maps=pin_dir)
    with pytest.raises(UserLoadError, match="storage is"):
        open_map(path)


def test_directory_and_file_checks(share_obj, pin_dir, tmp_path):
    os.mkdir(pin_dir, 0o755)
    os.chmod(pin_dir, 0o755)
    with pytest.raises(bpfring.BPFError, match="is not private"):
        load(share_obj, pinned_maps=pin_dir)
    os.chmod(pin_dir, 0o700)
    link = pin_dir + "-link"
    os.symlink(pin_dir, link)
    with pytest.raises(bpfring.BPFError, match="pinned map directory"):
        load(share_obj, pinned_maps=link)
    with load(share_obj, pinned_maps=pin_dir):
        pass
    os.symlink(os.path.join(pin_dir, "counts"), os.path.join(pin_dir, "alias"))
    with pytest.raises(bpfring.BPFError, match="never symlinks"):
        open_map(os.path.join(pin_dir, "alias"))
    os.chown(os.path.join(pin_dir, "totals"), 65534, 65534)
    with pytest.raises(UserLoadError, match="not a private regular file"):
        open_map(os.path.join(pin_dir, "totals"))
    with pytest.raises(UserLoadError, match="not a private regular file"):
        load(share_obj, pinned_maps=pin_dir)
    os.chown(os.path.join(pin_dir, "totals"), 0, 0)
    with open(os.path.join(pin_dir, "junk"), "wb") as f:
        f.write(b"hello")
    os.chmod(os.path.join(pin_dir, "junk"), 0o600)
    with pytest.raises(UserLoadError, match="header is 5 bytes"):
        open_map(os.path.join(pin_dir, "junk"))
    with pytest.raises(bpfring.BPFError, match="cannot name a pinned file"):
        open_map(os.path.join(pin_dir, "a b"))


def test_corrupt_queue_positions_are_an_error(share_obj, pin_dir):
    with load(share_obj, pinned_maps=pin_dir) as a:
        with open(os.path.join(pin_dir, "jobs"), "r+b") as f:
            f.seek(mmap.PAGESIZE)
            f.write(struct.pack("<II", 1000, 0))
        with pytest.raises(bpfring.BPFError, match="corrupt shared storage"):
            a.maps["jobs"].pop()
        with pytest.raises(bpfring.BPFError, match="corrupt shared storage"):
            a.programs["count"].run(ctx=ARGS.pack(1, 1))  # from the push helper
        a.maps["jobs"]._set_ht(0, 0)
        assert a.programs["count"].run(ctx=ARGS.pack(1, 1)) == 0  # healthy again


def _valid_header(**over: int) -> bytes:
    page = mmap.PAGESIZE
    f = dict(map_type=1, key_size=4, value_size=8, max_entries=16, flags=0, ncpu=1)
    f.update(over)
    size = _share.storage_size(f["map_type"], f["key_size"], f["value_size"],
                               f["max_entries"], f["ncpu"], page)
    return _share.Header(f["map_type"], f["key_size"], f["value_size"], f["max_entries"],
                         f["flags"], f["ncpu"], size, "m").pack(page)


def test_header_round_trip():
    from bpfring.userspace._maps import possible_cpus

    h = _share.parse_header(_valid_header(), mmap.PAGESIZE, possible_cpus())
    assert (h.map_type, h.key_size, h.value_size, h.max_entries, h.name) == (1, 4, 8, 16, "m")
    ring = _valid_header(map_type=27, key_size=0, value_size=0, max_entries=mmap.PAGESIZE)
    assert _share.parse_header(ring, mmap.PAGESIZE, 1).storage_size == 3 * mmap.PAGESIZE
    with pytest.raises(UserLoadError, match="do not make a ringbuf map"):
        _share.parse_header(_valid_header(map_type=27, key_size=0, value_size=0,
                                          max_entries=3 * mmap.PAGESIZE), mmap.PAGESIZE, 1)
    with pytest.raises(UserLoadError, match="cannot be shared"):
        _share.parse_header(_valid_header(map_type=3), mmap.PAGESIZE, 1)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=160))
def test_fuzz_header_random_bytes(raw):
    try:
        h = _share.parse_header(raw, mmap.PAGESIZE, 2)
    except UserLoadError:
        return
    assert h.storage_size == _share.storage_size(h.map_type, h.key_size, h.value_size,
                                                 h.max_entries, h.ncpu, mmap.PAGESIZE)


@settings(max_examples=600, deadline=None)
@given(st.integers(0, _share.HEADER.size - 1), st.integers(0, 255),
       st.sampled_from([1, 2, 5, 6, 9, 10, 22, 23, 27, 31]))
def test_fuzz_header_mutations(pos, byte, map_type):
    page = mmap.PAGESIZE
    shape = {27: dict(key_size=0, value_size=0, max_entries=page),
             31: dict(key_size=0, value_size=0, max_entries=page),
             22: dict(key_size=0), 23: dict(key_size=0)}.get(map_type, {})
    ncpu = 2 if map_type in (5, 6, 10) else 1
    raw = bytearray(_valid_header(map_type=map_type, ncpu=ncpu, **shape))
    raw[pos] = byte
    try:
        h = _share.parse_header(bytes(raw), page, 2)
    except UserLoadError:
        return
    # Whatever passed is self-consistent: the storage matches what the shape needs.
    assert _share._check_shape(h.map_type, h.key_size, h.value_size, h.max_entries,
                               page) is None
    assert h.storage_size == _share.storage_size(h.map_type, h.key_size, h.value_size,
                                                 h.max_entries, h.ncpu, page)
