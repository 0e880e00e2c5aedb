"""The typed fast paths: ``KernelRing.read_records`` (records decoded in the
backend's walk, straight from ring memory with the C decoder) and
``backlog_iter`` (RingBuffer's iterator) give exactly what the reference
gives: the pure backend's copies decoded one by one with the generated
Python decoder, on rings with mixed sizes, discarded records, payloads that
wrap around the end and BUSY records, in both backends; and records taken
out of the cyclic GC behave like any other."""

from __future__ import annotations

import gc
import itertools
import random
from collections import deque
from typing import Any

import pytest
from btf_support import btf_of_source, fake_perf_ring
from conftest import produce_ctx
from test_backend_contract import FakeRing, _backend, _random_ring
from test_btf_fastdecode import _factory, canon

from bpfring import _ringpure
from bpfring._ringcore import record_span
from bpfring.btf import BTF, _fast

SRC = r"""
struct ev { unsigned long long seq; unsigned long long ts; unsigned int pid;
            unsigned int cpu; char comm[16]; };
struct mixed { unsigned int a; union { unsigned int u; float f; } either;
               unsigned short port[3]; };
struct ev ev_anchor;
struct mixed mixed_anchor;
"""


@pytest.fixture(scope="module")
def btf(tmp_path_factory: pytest.TempPathFactory) -> BTF:
    return btf_of_source(tmp_path_factory, SRC, "typed")


def _decoders(btf: BTF, name: str, be_name: str) -> dict[str, Any]:
    """The decoders a ring may be given: the generated Python one, the C one
    (in the C backend: the walk decodes from ring memory when it has no
    Python ops) and a padded() codec's (a plain Python function)."""
    codec = btf.record(name)
    pure = codec._compiled.decode
    out: dict[str, Any] = {"pure": pure, "padded": codec.padded().decode}
    if be_name == "c":
        fast = _fast.record_decoder(codec._node, pure, _factory())  # type: ignore[arg-type]
        assert fast is not None
        out["fast"] = fast
    return out


def _outcome(ring: FakeRing, be: Any, limit: int | None, dec: Any, batch: bool) -> Any:
    start = ring.cons
    try:
        recs, busy, raw = ring.kernel(be).read_records(limit, dec, batch)
    except Exception as e:
        return ("raised", type(e), str(e), ring.cons - start)
    return ("ok", [canon(r) for r in recs], busy, raw, ring.cons - start)


def _reference(ring: FakeRing, limit: int | None, pure: Any, batch: bool) -> Any:
    """What read_records must do, built from the pure backend's read() and the
    generated decoder, record by record."""
    start = ring.cons
    out: list[Any] = []
    busy = False
    while limit is None or len(out) < limit:
        probe = ring.copy()
        recs, busy = _ringpure.KernelRing(*probe.args()).read(1)
        if not recs:
            ring.cons = probe.cons  # past trailing discarded records
            break
        before = ring.cons
        try:
            rec = pure(recs[0])
        except Exception as e:
            # the position of the failing record: past the discarded ones before it
            skip = ring.copy()
            core_pos = before
            while True:
                word = int.from_bytes(skip.data[core_pos % skip.size:][:4], "little")
                if not word & (1 << 30):
                    break
                core_pos += record_span(word & ((1 << 30) - 1))
            ring.cons = core_pos
            if batch and out:
                busy = False
                break
            return ("raised", type(e), str(e), ring.cons - start)
        out.append(canon(rec))
        ring.cons = probe.cons
    raw = None
    if batch and ring.cons != start:
        off = start % ring.size
        raw = bytes(ring.data[off:off + ring.cons - start])
    return ("ok", out, busy, raw, ring.cons - start)


@pytest.mark.parametrize("be_name", ["c", "pure"])
@pytest.mark.parametrize("seed", range(30))
def test_read_records_matches_the_reference(btf: BTF, be_name: str, seed: int) -> None:
    be = _backend(be_name)
    rnd = random.Random(seed)
    ring = _random_ring(rnd)
    limit = rnd.choice([None, 1, 3, 1000])
    for name in ("ev", "mixed"):
        decs = _decoders(btf, name, be_name)
        for label, dec in decs.items():
            for batch in (False, True):
                ref = ring.copy()
                want = _reference(ref, limit, decs["pure"] if label != "padded" else dec,
                                  batch)
                got_ring = ring.copy()
                got = _outcome(got_ring, be, limit, dec, batch)
                assert got == want, (name, label, batch)
                assert got_ring.cons == ref.cons


def _ev_ring(btf: BTF, n: int, *, start: int, size: int = 4096) -> tuple[FakeRing, list[bytes]]:
    """A ring of ``n`` struct ev records starting at ``start`` (so they wrap),
    every third discarded, the last one BUSY."""
    codec = btf.record("ev")
    ring = FakeRing(size)
    ring.cons = ring.prod = start
    sent = []
    for i in range(n):
        raw = codec.encode(seq=i, ts=10**12 + i % 3, pid=4242, cpu=i % 2,
                           comm="caf\u00e9" if i % 5 == 0 else "bash")
        ring.emit(raw, discard=i % 3 == 2, busy=i == n - 1)
        if i % 3 != 2 and i != n - 1:
            sent.append(raw)
    return ring, sent


@pytest.mark.parametrize("be_name", ["c", "pure"])
def test_fast_walk_equals_the_pure_decode(btf: BTF, be_name: str) -> None:
    be = _backend(be_name)
    ring, sent = _ev_ring(btf, 60, start=4096 * 7 - 48 * 20)
    codec = btf.record("ev")
    pure = codec._compiled.decode
    for dec in _decoders(btf, "ev", be_name).values():
        r = ring.copy()
        recs, busy, raw = r.kernel(be).read_records(None, dec, True)
        assert busy
        assert [canon(x) for x in recs] == [canon(pure(b)) for b in sent]
        assert recs == [pure(b) for b in sent]
        assert raw is not None and len(raw) == r.cons - ring.cons
    # The records the C walk makes hold only atomic values: out of the cyclic
    # GC (they cannot be part of a cycle as decoded), and otherwise the same.
    if be_name == "c":
        fast = _decoders(btf, "ev", "c")["fast"]
        recs = ring.copy().kernel(be).read_records(None, fast, False)[0]
        assert not gc.is_tracked(recs[0])
        assert gc.is_tracked(pure(sent[0]))
        recs[0].pid = 7
        assert recs[0].pid == 7 and recs[0]._replace(cpu=5).cpu == 5
        assert object.__setattr__(recs[0], "cpu", 3) is None and recs[0].cpu == 3
        mixed = btf.record("mixed")
        m = mixed.decode(mixed.encode(a=1))
        assert gc.is_tracked(m)  # holds a union record and a list: stays tracked


@pytest.mark.parametrize("be_name", ["c", "pure"])
def test_backlog_iter(be_name: str) -> None:
    be = _backend(be_name)
    backlog: deque[int] = deque([1, 2])
    calls = []

    def fill() -> None:
        calls.append(1)
        if len(calls) == 1:
            backlog.extend([3, 4])
        else:
            raise ValueError("closed")

    it = be.backlog_iter(backlog, fill)
    assert iter(it) is it
    assert [next(it) for _ in range(4)] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="closed"):
        next(it)
    with pytest.raises(TypeError):
        be.backlog_iter(backlog, 5)


# ---------------------------------------------------------------------------------
# RingBuffer with record= against the kernel, both backends
# ---------------------------------------------------------------------------------


def test_typed_iteration_read_and_consume_agree(echo, mode) -> None:
    """Iteration and read() give the decoded records; records an iteration
    took out but did not hand out come first from read() (decoded) and from
    consume() (raw, the same bytes); discarded records never show."""
    rb = echo.ring_buffer("out_ring", record="rec256")
    raw_rb = echo.ring_buffer("out_ring")  # another consumer of the same ring
    prog = echo.programs["produce"]
    prog.run(ctx=produce_ctx(40, discard_every=4, seq_base=100))
    want = [100 + i for i in range(40) if (i + 1) % 4]
    it = iter(rb)
    first = [next(it).seq for _ in range(5)]
    assert first == want[:5]
    assert len(rb._backlog) == len(want) - 5
    assert [r.seq for r in rb.read(limit=3)] == want[5:8]
    got: list[bytes] = []
    assert rb.consume(lambda v: got.append(bytes(v)), 4) == 4
    assert [int.from_bytes(b[:4], "little") for b in got] == want[8:12]
    assert all(len(b) == 256 for b in got)
    assert rb.record.decode(got[0]) == rb.record.decode(bytes(got[0]))
    rest = [r.seq for r in rb.read()]
    assert rest == want[12:]
    assert raw_rb.read() == []
    # A record that fails to decode stays in the ring: iteration raises at it
    # (again on the next attempt), then comes out once decoding works.
    prog.run(ctx=produce_ctx(3, seq_base=7))
    real = rb._decode

    def bad(buf: Any) -> Any:
        raise RuntimeError("cannot decode")

    rb._decode = bad
    for _ in range(2):
        with pytest.raises(RuntimeError, match="cannot decode"):
            next(iter(rb))
    assert rb.pending()[0] == 3
    rb._decode = real
    assert [r.seq for r in itertools.islice(rb, 3)] == [7, 8, 9]
    raw_rb.close()


# ---------------------------------------------------------------------------------
# perf_read: the perf ring walk collecting decoded records
# ---------------------------------------------------------------------------------


def _perf_ring(btf: BTF, rnd: random.Random, size: int = 2048) -> tuple[Any, bytearray]:
    """Samples of mixed sizes (some too short for struct ev), lost reports,
    wrapping around the end."""
    return fake_perf_ring(btf.record("ev"), rnd, size)


@pytest.mark.parametrize("be_name", ["c", "pure"])
@pytest.mark.parametrize("seed", range(15))
def test_perf_read_matches_perf_walk(btf: BTF, be_name: str, seed: int) -> None:
    from bpfring import _perfcore

    be = _backend(be_name)
    rnd = random.Random(seed)
    meta0, data = _perf_ring(btf, rnd)
    limit = rnd.choice([None, 1, 5, 1000])
    decs = {"bytes": bytes, **_decoders(btf, "ev", be_name)}
    for label, dec in decs.items():
        m1 = memoryview(bytearray(meta0.tobytes())).cast("Q")
        m2 = memoryview(bytearray(meta0.tobytes())).cast("Q")
        lost1: list[int] = []
        lost2: list[int] = []
        want: list[Any] = []
        try:
            _perfcore.perf_walk(m2, memoryview(data),
                                lambda v, w=want, d=dec: w.append(d(bytes(v))),
                                limit, lost2.append, None)
            ref: Any = ("ok", [canon(x) for x in want])
        except Exception as e:
            ref = ("raised", type(e), str(e))
        try:
            recs, lost = be.perf_read(m1, memoryview(data), dec, limit, lost1.append, None)
            got: Any = ("ok", [canon(x) for x in recs])
            assert lost == sum(lost1)
        except Exception as e:
            got = ("raised", type(e), str(e))
        assert got == ref, label
        if label == "bytes" and limit != 1:
            assert len(want) > 1
        assert lost1 == lost2
        assert m1[_perfcore.DATA_TAIL // 8] == m2[_perfcore.DATA_TAIL // 8]
