"""``bpfring tail --output``: records of a real kernel program (exitsnoop's
process exits) written to JSON lines, CSV, Arrow and Parquet files, rotated
by size and time, read back with pyarrow (and DuckDB): every record exactly
once, across rotations, and files whole after SIGINT/SIGTERM/SIGHUP."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import _sinks

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def exitsnoop(kernel):
    return bpfring.build(BPF_DIR / "exitsnoop.bpf.c")


def _children(n: int) -> list[int]:
    pids = []
    for _ in range(n):
        p = subprocess.Popen(["true"])
        p.wait()
        pids.append(p.pid)
    return pids


def _until(cond, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _tail(obj, *args: str) -> subprocess.Popen[str]:
    # By map id: another process may have a map of the same name right now.
    ring = str(obj.maps["exitsnoop_rb"].id)
    return subprocess.Popen([sys.executable, "-m", "bpfring", "tail", "id", ring,
                             "--type", "event", "--no-stats", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # SIGINT as a terminal gives it, whatever ours is (nohup).
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _read(path: Path, fmt: str) -> list[dict]:
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    if fmt == "arrow":
        with pa.ipc.open_file(path) as f:
            return f.read_all().to_pylist()
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with open(path, newline="") as f:
        return [{k: (int(v) if k != "comm" else v) for k, v in row.items()}
                for row in csv.DictReader(f)]


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "jsonl", "csv"])
def test_every_record_once_across_size_rotations(exitsnoop, tmp_path, fmt):
    me = os.getpid()
    with bpfring.load(exitsnoop, globals={"target_ppid": me}) as obj:
        obj.attach()
        pids = _children(60)
        proc = _tail(obj, "--output", str(tmp_path / f"ev-{{index}}.{fmt}"), "--rotate-size", "1",
                     "--count", "60", "--timeout", "30")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out == ""  # records go to the files only
        files = sorted(tmp_path.glob(f"ev-*.{fmt}"), key=lambda p: int(p.stem.split("-")[1]))
        assert len(files) >= 1 and not list(tmp_path.glob("*.part"))
        # --rotate-size 1: every batch closes its file; the batches are what
        # arrived between two flushes, so several files for 60 exits is not
        # guaranteed, but each file is whole and none is empty.
        rows = [r for f in files for r in _read(f, fmt)]
        assert all(_read(f, fmt) for f in files)
        assert [r["pid"] for r in rows] == pids  # each once, in order
        assert {r["comm"] for r in rows} == {"true"} and {r["ppid"] for r in rows} == {me}
        if fmt in ("parquet", "arrow"):
            assert all(r["times"]["start_ns"] <= r["times"]["exit_ns"] for r in rows)
        elif fmt == "csv":
            assert all(r["times.start_ns"] <= r["times.exit_ns"] for r in rows)
        assert f"wrote 60 record(s) to {len(files)} file(s)" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_leave_whole_files_and_lose_nothing(exitsnoop, tmp_path, sig):
    """Time rotation (0.3 s): exits before and after the first file is
    complete; then the signal ends tail: the files hold every record, each
    once, and the last file (still open) is closed whole."""
    me = os.getpid()
    with bpfring.load(exitsnoop, globals={"target_ppid": me}) as obj:
        obj.attach()
        proc = _tail(obj, "--output", str(tmp_path / "ev.parquet"), "--rotate-time", "0.3")
        assert proc.stderr is not None
        first = proc.stderr.readline()  # tail is consuming from here on
        assert "tail consumes the records" in first, first
        watch = obj.ring_buffer("exitsnoop_rb")  # positions only: never consumed from
        pids = _children(5)
        first_file = tmp_path / "ev.0000.parquet"
        _until(first_file.exists)  # written, then closed by age at the next flush
        pids += _children(5)
        _until(lambda: watch.available == 0)  # tail has taken everything
        time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        files = sorted(tmp_path.glob("ev.*.parquet"))
        assert len(files) >= 2, (files, err)  # rotated by time
        assert not list(tmp_path.glob("*.part"))
        table = pa.concat_tables([pq.read_table(f) for f in files])
        assert table.column("pid").to_pylist() == pids
        duckdb = pytest.importorskip("duckdb")
        glob = str(tmp_path / "ev.*.parquet")
        ((n, distinct),) = duckdb.sql(f"select count(*), count(distinct pid) from "
                                      f"read_parquet('{glob}')").fetchall()
        assert n == distinct == len(pids)


def test_sink_options_are_checked_before_consuming(exitsnoop, tmp_path):
    me = os.getpid()
    with bpfring.load(exitsnoop, globals={"target_ppid": me}) as obj:
        obj.attach()
        pids = _children(3)
        for args, msg in ((["--format", "parquet"], "give --output FILE"),
                          (["--rotate-size", "1M"], "need --output"),
                          (["--output", str(tmp_path / "x.bin")], "cannot tell the format"),
                          (["--output", str(tmp_path / "x.csv"), "--json"], "--format jsonl"),
                          (["--output", str(tmp_path / "x.csv"), "--rotate-size", "big"],
                           "not a size"),
                          (["--output", str(tmp_path / "x-{nope}.csv"), "--rotate-time", "1h"],
                           "bad file name pattern")):
            proc = _tail(obj, *args, "--count", "1", "--timeout", "5")
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 2 and msg in err, (args, err)
        # Nothing was consumed: the three records are still there.
        proc = _tail(obj, "--format", "jsonl", "--count", "3", "--timeout", "20")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert [json.loads(line)["pid"] for line in out.splitlines()] == pids


def test_sink_raw_samples_and_parsers(tmp_path):
    sink = _sinks.RotatingSink(str(tmp_path / "raw.parquet"), "parquet")
    sink.write([b"\x01\x02", b"abc"])
    sink.write([])
    sink.close()
    sink.close()
    assert pq.read_table(tmp_path / "raw.parquet").to_pylist() == [
        {"size": 2, "data": b"\x01\x02"}, {"size": 3, "data": b"abc"}]
    with pytest.raises(bpfring.BPFError, match="exists already"):
        again = _sinks.RotatingSink(str(tmp_path / "raw.parquet"), "parquet")
        again.write([b"x"])
    assert _sinks.parse_size("100M") == 100 << 20 and _sinks.parse_size("4096") == 4096
    assert _sinks.parse_size("1.5k") == 1536 and _sinks.parse_duration("1h") == 3600
    assert _sinks.parse_duration("90") == 90 and _sinks.parse_duration("2m") == 120
    for bad in ("", "0", "-1M", "1X"):
        with pytest.raises(ValueError):
            _sinks.parse_size(bad)
    assert _sinks.format_of("a/b.PARQUET") == "parquet" and _sinks.format_of("x.bin") is None
