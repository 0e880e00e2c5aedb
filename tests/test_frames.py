"""Arrow / pandas / polars export (bpfring.frames and the ring methods).

Layouts come from real BTF (tests/bpf/btf_types.c, every C type the codecs
know) and records from real kernel programs (exitsnoop's process exits, the
perf buffer test program).  The reference for every value is the record
decoder: a column must hold what decoding the same bytes gives.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import frames
from bpfring.errors import MissingExtra

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

EXITSNOOP = BPF_DIR / "exitsnoop.bpf.c"


def same(a: object, b: object) -> bool:
    """Equality, NaN equal to NaN, recursively through lists and dicts."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def _random_records(codec, n: int, seed: int) -> np.ndarray:
    raw = np.random.default_rng(seed).integers(0, 256, n * codec.size, dtype=np.uint8)
    return raw.view(codec.dtype)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_columns_hold_what_decoding_gives(btf, seed):
    """Random bytes (invalid UTF-8, NaNs, odd bools included) through every
    C type: each Arrow value equals the decoded record's."""
    ev = btf.record("event")
    arr = _random_records(ev, 40, seed)
    batch = frames.to_arrow(arr, ev)
    assert batch.num_rows == 40
    assert batch.schema.field("comm").type == pa.string()
    assert batch.schema.field("in").type == pa.struct([("a", pa.int16()), ("tag", pa.string())])
    assert batch.schema.field("matrix").type == pa.list_(pa.list_(pa.int32(), 3), 2)
    assert batch.schema.field("names").type == pa.list_(pa.string(), 2)
    assert "flex" not in batch.schema.names  # a flexible array member holds no bytes
    for k, row in enumerate(batch.to_pylist()):
        want = ev.decode(arr[k].tobytes())._asdict()
        for name in ("big", "ubig"):  # __int128: the little-endian bytes
            assert row.pop(name) == want.pop(name).to_bytes(16, "little",
                                                           signed=name == "big")
        want.pop("flex")
        assert same(row, want), (k, {f: (row[f], want[f]) for f in row
                                     if not same(row[f], want[f])})


def test_top_level_bitfields_become_columns(btf):
    bits = btf.record("bits")
    arr = _random_records(bits, 25, 9)
    batch = frames.to_arrow(arr, bits)
    assert batch.schema.names == ["a", "b", "c", "lvl", "flag", "big", "sbig", "tail", "s1",
                                  "s2"]
    for k, row in enumerate(batch.to_pylist()):
        assert row == bits.decode(arr[k].tobytes())._asdict()


def test_pandas_and_polars_flatten_nested_structs(btf):
    ev = btf.record("event")
    arr = _random_records(ev, 5, 4)
    df = frames.to_pandas(arr, ev)
    assert {"in.a", "in.tag", "stamp.ts", "u.half.lo", "bf.big"} <= set(df.columns)
    for k in range(5):
        rec = ev.decode(arr[k].tobytes())
        assert df["comm"][k] == rec.comm and isinstance(df["comm"][k], str)
        assert df["in.tag"][k] == rec["in"].tag
        assert df["stamp.ts"][k] == rec.stamp.ts
    pl = pytest.importorskip("polars")
    pdf = frames.to_polars(arr, ev)
    assert isinstance(pdf, pl.DataFrame)
    assert pdf["comm"].to_list() == list(df["comm"]) and "u.half.hi" in pdf.columns


def test_lists_of_records_and_samples(btf):
    inner = btf.record("inner")
    samples = [inner.encode(a=i, tag="x" * (i % 4)) for i in range(6)]
    recs = [inner.decode(s) for s in samples]
    for data in (samples, recs, [memoryview(s) for s in samples]):
        batch = frames.to_arrow(data, inner)
        assert batch.column("a").to_pylist() == list(range(6))
        assert batch.column("tag").to_pylist() == [r.tag for r in recs]
    with pytest.raises(ValueError, match="needs record="):
        frames.to_arrow(samples)
    with pytest.raises(ValueError, match="fewer than"):
        frames.to_arrow([b"\x01"], inner)
    with pytest.raises(ValueError, match="not the record's"):
        frames.to_arrow(np.zeros(3, np.uint32), inner)
    plain = frames.to_arrow(np.arange(4, dtype=np.uint16))
    assert plain.schema.names == ["value"] and plain.column(0).to_pylist() == [0, 1, 2, 3]


def test_missing_extra_is_a_clear_error(monkeypatch, btf):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(MissingExtra) as e:
        frames.to_arrow(np.zeros(1, btf.record("inner").dtype))
    assert isinstance(e.value, bpfring.BPFError) and e.value.extra == "arrow"
    assert "pip install 'bpfring[arrow]'" in str(e.value)
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(MissingExtra, match=r"bpfring\[polars\]"):
        frames.require("polars")


# --- real kernel programs ------------------------------------------------------------


@pytest.fixture(scope="module")
def exitsnoop(kernel):
    return bpfring.build(EXITSNOOP)


def _children(n: int) -> list[int]:
    pids = []
    for _ in range(n):
        p = subprocess.Popen(["true"])
        p.wait()
        pids.append(p.pid)
    return pids


def _collect(read, n: int) -> list:
    """Call read() until n rows arrived (10 s at most); the batches."""
    out, rows = [], 0
    deadline = time.monotonic() + 10
    while rows < n and time.monotonic() < deadline:
        got = read()
        rows += len(got)
        if len(got):
            out.append(got)
    return out


def test_ring_read_arrow_and_frame_from_real_exits(exitsnoop):
    me = os.getpid()
    with bpfring.load(exitsnoop, globals={"target_ppid": me}) as obj:
        obj.attach()
        rb = obj.ring_buffer("exitsnoop_rb", record="event")
        pids = _children(12)
        batches = _collect(lambda: rb.read_arrow(timeout=0.5), 12)
        table = pa.Table.from_batches(batches)
        assert table.column("pid").to_pylist() == pids
        assert set(table.column("comm").to_pylist()) == {"true"}
        assert table.column("ppid").to_pylist() == [me] * 12
        times = table.column("times").combine_chunks()
        assert all(t["start_ns"] <= t["exit_ns"] for t in times.to_pylist())
        assert rb.read() == []  # consumed

        pids = _children(5)
        frames_ = _collect(lambda: rb.read_frame(timeout=0.5), 5)
        df = pd.concat(frames_)
        assert list(df["pid"]) == pids and list(df["comm"]) == ["true"] * 5
        assert (df["times.start_ns"] <= df["times.exit_ns"]).all()

        # read_array defaults to the ring's record type; numpy keeps char[] as bytes.
        pids = _children(3)
        arrs = _collect(lambda: rb.read_array(timeout=0.5), 3)
        arr = np.concatenate(arrs)
        assert arr.dtype == obj.types["event"].dtype and list(arr["pid"]) == pids
        assert list(arr["comm"]) == [b"true"] * 3


def test_view_arrow_consumes_only_on_success(exitsnoop):
    me = os.getpid()
    with bpfring.load(exitsnoop, globals={"target_ppid": me}) as obj:
        obj.attach()
        rb = obj.ring_buffer("exitsnoop_rb", record="event")
        pids = _children(4)
        deadline = time.monotonic() + 10
        while rb.pending()[0] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(RuntimeError), rb.view_arrow() as batch:
            assert batch.column("pid").to_pylist() == pids
            raise RuntimeError("the sink failed")
        with rb.view_arrow(limit=3) as batch:  # still there
            assert batch.column("pid").to_pylist() == pids[:3]
        assert [r.pid for r in rb.read()] == pids[3:]
        with rb.view_arrow() as batch:
            assert batch.num_rows == 0 and "comm" in batch.schema.names


def test_no_record_type_and_missing_extra_lose_nothing(exitsnoop, monkeypatch):
    me = os.getpid()
    with bpfring.load(exitsnoop, globals={"target_ppid": me}) as obj:
        obj.attach()
        rb = obj.ring_buffer("exitsnoop_rb")
        with pytest.raises(ValueError, match="no record type"):
            rb.read_arrow()
        with pytest.raises(TypeError, match="no dtype"):
            rb.read_array()
        pids = _children(2)
        time.sleep(0.05)
        monkeypatch.setitem(sys.modules, "pandas", None)
        with pytest.raises(MissingExtra, match=r"bpfring\[pandas\]"):
            rb.read_frame(obj.types["event"], timeout=1)
        monkeypatch.undo()
        batch = _collect(lambda: rb.read_arrow(obj.types["event"], timeout=0.5), 2)
        assert pa.Table.from_batches(batch).column("pid").to_pylist() == pids


def test_perf_buffer_read_arrow_and_frame(kernel):
    from test_perfbuf import emit

    with bpfring.load(bpfring.build(BPF_DIR / "perf_prog.bpf.c")) as obj:
        rtype = obj.types["perf_rec"]
        with bpfring.PerfBuffer(obj.maps["events"].fd, record=rtype, cpus=[0]) as pb:
            emit(obj, 6, 256, seq=40, cpu=0)
            batch = pb.read_arrow(timeout=1)
            assert batch.column("seq").to_pylist() == list(range(40, 46))
            assert batch.schema.field("fill").type == pa.list_(pa.uint8(), 240)
            emit(obj, 3, 256, seq=90, cpu=0)
            df = pb.read_frame(timeout=1)
            assert list(df["seq"]) == [90, 91, 92] and list(df["size"]) == [256] * 3
            emit(obj, 2, 256, seq=7, cpu=0)
            assert pb.read_array(timeout=1)["seq"].tolist() == [7, 8]


# --- Jupyter -------------------------------------------------------------------------


def test_html_reprs_are_tables_and_plain_reprs_stay_short(btf, exitsnoop):
    inner = btf.record("inner")
    rec = inner.decode(inner.encode(a=3, tag="<b>"))
    page = rec._repr_html_()
    assert page.startswith("<table") and "<th style='text-align:left'>tag</th>" in page
    assert "&lt;b&gt;" in page and "<b>" not in page  # escaped
    assert repr(rec) == "inner(a=3, tag='<b>')"
    recs = [inner.decode(inner.encode(a=i, tag="t")) for i in range(30)]
    t = frames.table(recs, limit=5)
    assert t._repr_html_().count("<tr>") == 1 + 5 and "5 of 30 rows shown" in t._repr_html_()
    assert repr(t) == "<Table inner 30 rows x 2 columns>"
    arr = np.frombuffer(b"".join(inner.encode(a=i, tag="ab") for i in range(8)), inner.dtype)
    assert "<td>ab</td>" in frames.table(arr, inner)._repr_html_()
    assert frames.table(arr, limit=2)._repr_html_().count("<tr>") == 3
    assert "<td>ab</td>" in frames.table(frames.to_arrow(arr, inner))._repr_html_()
    with bpfring.load(exitsnoop) as obj:
        rb = obj.ring_buffer("exitsnoop_rb")
        page = rb._repr_html_()
        for text in ("exitsnoop_rb", f"<td>{rb.map_id}</td>", "<td>262144</td>",
                     "consumer_pos", "producer_pos"):
            assert text in page
        assert len(repr(rb)) < 100 and "\n" not in repr(rb)
        rb.close()
        assert "closed" in rb._repr_html_()


def test_missing_extra_pickles():
    import pickle

    e = MissingExtra("pyarrow is not installed", extra="arrow", hint="pip install x")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is MissingExtra and back.extra == "arrow" and str(back) == str(e)


def test_records_an_iterator_took_out_come_first(exitsnoop):
    """An iteration that stopped keeps its batch; a frame of newer records
    must not overtake it: read_arrow says so, read() drains it first."""
    me = os.getpid()
    with bpfring.load(exitsnoop, globals={"target_ppid": me}) as obj:
        obj.attach()
        rb = obj.ring_buffer("exitsnoop_rb", record="event")
        pids = _children(3)
        it = iter(rb)
        assert next(it).pid == pids[0]
        for call in (rb.read_arrow, rb.read_frame, rb.view_arrow):
            with pytest.raises(ValueError, match="iterator are pending"):
                call()
        assert [r.pid for r in rb.read()] == pids[1:]
        later = _children(2)
        batch = _collect(lambda: rb.read_arrow(timeout=0.5), 2)
        assert pa.Table.from_batches(batch).column("pid").to_pylist() == later
