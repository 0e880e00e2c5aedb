"""The perf buffer's batch paths (``perf_take`` behind typed iteration and
``read()``, ``perf_read_array`` behind ``read_array``) return exactly what
the reference returns: the pure walk taken one record at a time, with the
records' bytes decoded by the generated Python decoder.  On fake rings with
samples of mixed sizes (some shorter than the record type), lost reports and
records that wrap around the end of the data area, in both backends; then
against the kernel (a 1-page ring over many laps, PERF_RECORD_LOST, the
iterator's leftovers handed out raw)."""

from __future__ import annotations

import itertools
import random
import struct
from typing import Any

import numpy as np
import pytest
from btf_support import btf_of_source, fake_perf_ring
from conftest import BPF_DIR
from test_backend_contract import _backend
from test_btf_fastdecode import _factory, canon
from test_perfbuf import _check, emit

import bpfring
from bpfring import BPFError, RingCorrupted, _perfcore
from bpfring.btf import BTF, _fast
from bpfring.perfbuf import PerfBuffer

SRC = r"""
struct ev { unsigned long long seq; unsigned long long ts; unsigned int pid;
            unsigned int cpu; char comm[16]; };
struct ev ev_anchor;
"""

TAIL = _perfcore.DATA_TAIL // 8
HEAD = _perfcore.DATA_HEAD // 8


@pytest.fixture(scope="module")
def evbtf(tmp_path_factory: pytest.TempPathFactory) -> BTF:
    return btf_of_source(tmp_path_factory, SRC, "perffast")


def _ring(btf: BTF, rnd: random.Random, size: int) -> tuple[memoryview, bytearray]:
    """Samples of mixed sizes (some too short for struct ev, some longer than
    a cache line), lost reports, some wrapping the end."""
    meta, data = fake_perf_ring(btf.record("ev"), rnd, size, (40, 40, 44, 100, 8, 0, 300))
    return meta, data


def _copy(meta: memoryview) -> memoryview:
    return memoryview(bytearray(meta.tobytes())).cast("Q")


def _one_by_one(meta: memoryview, data: bytearray, limit: int | None
                ) -> tuple[list[bytes], list[int], list[int]]:
    """The reference walk: the pure perf_walk, one sample per call.  Returns
    the samples' bytes, the lost counts reported, and data_tail after each
    sample (the position where a failure at the next one leaves it)."""
    got: list[bytes] = []
    lost: list[int] = []
    tails = [meta[TAIL]]
    while limit is None or len(got) < limit:
        n, _ = _perfcore.perf_walk(meta, memoryview(data), lambda v: got.append(bytes(v)), 1,
                                   lost.append, None)
        if not n:
            break
        tails.append(meta[TAIL])
    return got, lost, tails


def _decoders(btf: BTF, be_name: str) -> dict[str, Any]:
    codec = btf.record("ev")
    pure = codec._compiled.decode
    out: dict[str, Any] = {"bytes": bytes, "pure": pure}
    if be_name == "c":
        fast = _fast.record_decoder(codec._node, pure, _factory())  # type: ignore[arg-type]
        assert fast is not None
        out["fast"] = fast
    return out


@pytest.mark.parametrize("be_name", ["c", "pure"])
@pytest.mark.parametrize("seed", range(20))
def test_perf_take_matches_the_one_by_one_walk(evbtf: BTF, be_name: str, seed: int) -> None:
    be = _backend(be_name)
    rnd = random.Random(seed)
    meta0, data = _ring(evbtf, rnd, rnd.choice([512, 2048]))
    limit = rnd.choice([None, 1, 3, 1000])
    want_raw, lost_ref, tails = _one_by_one(_copy(meta0), data, limit)
    pure = evbtf.record("ev")._compiled.decode
    for label, dec in _decoders(evbtf, be_name).items():
        # The reference: records decoded one by one, up to the first that
        # fails (too short for struct ev: the generated decoder raises).
        ref: list[Any] = []
        err: type[BaseException] | None = None
        for b in want_raw:
            try:
                ref.append(b if dec is bytes else pure(b))
            except Exception as e:
                err = type(e)
                break
        for raw_too in (False, True):
            meta = _copy(meta0)
            lost: list[int] = []
            try:
                recs, nlost, raw = be.perf_take(meta, memoryview(data), dec, limit, lost.append,
                                                None, raw_too)
            except Exception as e:
                assert not ref and err is type(e), label
                assert meta[TAIL] == tails[0] or lost  # only lost reports were consumed
                continue
            assert [canon(r) for r in recs] == [canon(r) for r in ref], label
            assert meta[TAIL] == tails[len(ref)]
            assert nlost == sum(lost) and lost == lost_ref[:len(lost)]
            if raw_too:
                assert raw is not None
                assert [bytes(v) for v in _perfcore.payloads(raw)] == want_raw[:len(ref)]
                assert len(raw) == (meta[TAIL] - meta0[TAIL])
            else:
                assert raw is None


@pytest.mark.parametrize("be_name", ["c", "pure"])
@pytest.mark.parametrize("seed", range(20))
def test_perf_read_array_matches_the_one_by_one_walk(evbtf: BTF, be_name: str,
                                                     seed: int) -> None:
    be = _backend(be_name)
    rnd = random.Random(seed)
    meta0, data = _ring(evbtf, rnd, rnd.choice([512, 2048]))
    itemsize = rnd.choice([1, 8, 40, 44, 100])
    limit = rnd.choice([None, 2, 1000])
    rows_cap = rnd.choice([3, 1000])
    samples, lost_ref, tails = _one_by_one(_copy(meta0), data, None)
    ref: list[bytes] = []
    short = -1
    for b in samples[:min(rows_cap, limit if limit is not None else rows_cap)]:
        if len(b) < itemsize:
            short = len(b)
            break
        ref.append(b[:itemsize])
    meta = _copy(meta0)
    out = bytearray(rows_cap * itemsize + rnd.randrange(itemsize))
    lost: list[int] = []
    n, nlost, got_short = be.perf_read_array(meta, memoryview(data), out, itemsize, limit,
                                             lost.append, None)
    assert (n, got_short) == (len(ref), short)
    assert bytes(out[:n * itemsize]) == b"".join(ref)
    assert meta[TAIL] == tails[n]
    assert nlost == sum(lost) and lost == lost_ref[:len(lost)]


@pytest.mark.parametrize("be_name", ["c", "pure"])
def test_perf_batch_paths_reject_bad_arguments(be_name: str) -> None:
    be = _backend(be_name)
    meta = memoryview(bytearray(4096)).cast("Q")
    data = memoryview(bytearray(256))
    with pytest.raises(ValueError):
        be.perf_read_array(meta, data, bytearray(8), 0, None, None, None)
    with pytest.raises(TypeError):
        be.perf_take(meta, data, 42, None, None, None, False)
    meta[HEAD] = 4096  # more than the data area: impossible
    with pytest.raises(RingCorrupted):
        be.perf_read_array(meta, data, bytearray(8), 8, None, None, None)
    assert meta[TAIL] == 0


@pytest.mark.parametrize("be_name", ["c", "pure"])
def test_perf_take_keeps_what_came_before_a_failing_decoder(be_name: str) -> None:
    be = _backend(be_name)
    meta = memoryview(bytearray(4096)).cast("Q")
    data = bytearray(256)
    recs = [_perfcore.sample_record(bytes([i]) * 4) for i in range(4)]
    blob = b"".join(recs)
    data[:len(blob)] = blob
    meta[HEAD] = len(blob)
    calls: list[bytes] = []

    def dec(b: bytes) -> bytes:
        calls.append(b)
        if b[0] == 2:
            raise KeyError("two")
        return b

    got, _, _ = be.perf_take(meta, memoryview(data), dec, None, None, None, False)
    assert [g[0] for g in got] == [0, 1]
    assert meta[TAIL] == 2 * len(recs[0])  # the failing record stays first
    with pytest.raises(KeyError):
        be.perf_take(meta, memoryview(data), dec, None, None, None, False)
    assert meta[TAIL] == 2 * len(recs[0])


# ---------------------------------------------------------------------------------
# Against the kernel (tests/bpf/perf_prog.bpf.c, both backends)
# ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pobj_path(kernel):
    return bpfring.build(BPF_DIR / "perf_prog.bpf.c")


@pytest.fixture
def pobj(pobj_path):
    with bpfring.load(pobj_path) as obj:
        yield obj


HEAD_DT = np.dtype([("seq", "<u8"), ("cpu", "<u4"), ("size", "<u4")])


def _read_path(pb: PerfBuffer, path: str, n: int) -> list[tuple[int, bytes | None]]:
    """``n`` records (seq, raw bytes where the path has them) through ``path``."""
    if path == "iter":
        return [(r.seq, None) for r in itertools.islice(pb, n)]
    if path == "read":
        return [(r.seq, None) for r in pb.read()]
    if path == "read_bytes":
        return [(_check(r)[0], r) for r in pb.read()]
    if path == "iter_bytes":
        return [(_check(r)[0], r) for r in itertools.islice(pb, n)]
    if path == "read_array":
        arr = pb.read_array(HEAD_DT)
        return [(int(s), None) for s in arr["seq"]]
    out: list[tuple[int, bytes | None]] = []
    pb.consume(lambda v: out.append((_check(bytes(v))[0], bytes(v))))
    return out


@pytest.mark.parametrize("path", ["iter", "read", "read_bytes", "iter_bytes", "read_array",
                                  "consume"])
def test_fast_paths_over_many_laps_of_a_one_page_ring(pobj, mode, path) -> None:
    """Records of 16..256 bytes through a 1-page (4 KiB) ring, 13 per round
    over 300 rounds (about 100 laps, so records wrap the end): each path
    returns every record once, in order, intact."""
    typed = path in ("iter", "read")
    # padded(): the samples are shorter than struct perf_rec (a Python decoder)
    with PerfBuffer(pobj.maps["events"].fd, page_count=1, cpus=[0],
                    record=pobj.types["perf_rec"].padded() if typed else None) as pb:
        seq = 0
        got: list[int] = []
        for _ in range(300):
            emit(pobj, 13, 0, seq=seq, cpu=0)
            seq += 13
            recs = _read_path(pb, path, 13)
            got += [s for s, _ in recs]
            assert pb.cpu == 0
        assert pb.lost == 0
    assert got == list(range(seq))


@pytest.mark.parametrize("path", ["iter", "read"])
def test_c_decoded_records_over_many_laps_equal_the_reference(pobj, mode, path) -> None:
    """Whole struct perf_rec samples (decoded from ring memory by the C
    decoder in the C backend), 272 ring bytes each, through a 4 KiB ring:
    every record equals the generated decoder's result for its bytes."""
    rtype = pobj.types["perf_rec"]
    ref = rtype._compiled.decode
    seq = 0
    with PerfBuffer(pobj.maps["events"].fd, page_count=1, cpus=[0], record=rtype) as pb:
        for _ in range(100):
            emit(pobj, 5, 256, seq=seq, cpu=0)
            recs = list(itertools.islice(pb, 5)) if path == "iter" else pb.read()
            assert [r.seq for r in recs] == list(range(seq, seq + 5))
            for r in recs:
                want = ref(rtype.encode(r))
                assert canon(r) == canon(want)
                assert bytes(r.fill) == bytes((r.seq + j) & 0xFF for j in range(240))
            seq += 5
        assert pb.lost == 0


@pytest.mark.parametrize("path", ["read", "read_array", "iter"])
def test_lost_reports_are_counted_by_the_fast_paths(pobj, mode, path) -> None:
    with PerfBuffer(pobj.maps["events"].fd, page_count=1, cpus=[0],
                    record=pobj.types["perf_rec"] if path != "read_array" else None) as pb:
        emit(pobj, 1000, 256, cpu=0)  # whole struct perf_rec samples: the C decoder
        failed = pobj.globals.failed
        assert failed > 0
        first = _read_path(pb, path, 1000 - failed)
        assert [s for s, _ in first] == list(range(1000 - failed))
        emit(pobj, 1, 256, seq=5000, cpu=0)  # brings the kernel's report
        assert [s for s, _ in _read_path(pb, path, 1)] == [5000]
        assert pb.lost == failed == pb.lost_per_cpu[0]


def test_iterator_leftovers_come_raw_to_consume_and_to_read_array(pobj, mode) -> None:
    rtype = pobj.types["perf_rec"].padded()
    with PerfBuffer(pobj.maps["events"].fd, cpus=[0], record=rtype) as pb:
        emit(pobj, 20, 0, seq=100, cpu=0)
        it = iter(pb)
        assert [next(it).seq for _ in range(3)] == [100, 101, 102]
        raw: list[bytes] = []
        assert pb.consume(lambda v: raw.append(bytes(v)), limit=4) == 4
        assert [_check(r, 0)[0] for r in raw] == [103, 104, 105, 106]
        arr = pb.read_array(HEAD_DT, limit=5)
        assert arr["seq"].tolist() == [107, 108, 109, 110, 111]
        assert arr["size"].tolist() == [16 + (s * 37) % 241 for s in range(107, 112)]
        assert [r.seq for r in pb.read()] == list(range(112, 120))
        assert pb.read() == []


def test_read_array_keeps_the_records_before_a_short_one(pobj, mode) -> None:
    with PerfBuffer(pobj.maps["events"].fd, cpus=[0]) as pb:
        emit(pobj, 3, 64, seq=1, cpu=0)
        emit(pobj, 1, 16, seq=4, cpu=0)
        emit(pobj, 2, 64, seq=5, cpu=0)
        big = np.dtype([("seq", "<u8"), ("rest", "V32")])
        assert pb.read_array(big)["seq"].tolist() == [1, 2, 3]
        with pytest.raises(BPFError, match="shorter"):
            pb.read_array(big)
        # The short record is still first; a smaller dtype takes it.
        assert pb.read_array(HEAD_DT)["seq"].tolist() == [4, 5, 6]
        with pytest.raises(TypeError):
            pb.read_array(np.dtype(object))


def test_read_array_across_cpus_equals_read(pobj, mode) -> None:
    from bpfring import _perf

    cpus = _perf.online_cpus()
    with PerfBuffer(pobj.maps["events"].fd, page_count=8) as pb:
        for cpu in cpus:
            emit(pobj, 40, 0, seq=1000 * cpu, cpu=cpu)
        arr = pb.read_array(HEAD_DT, limit=40 * len(cpus) - 1)
        assert len(arr) == 40 * len(cpus) - 1
        for cpu in cpus:
            mine = arr[arr["cpu"] == cpu]
            assert mine["seq"].tolist() == list(range(1000 * cpu, 1000 * cpu + 40))[:len(mine)]
        rest = pb.read()
        assert len(rest) == 1 and struct.unpack_from("<Q", rest[0])[0] == 1000 * cpus[-1] + 39
