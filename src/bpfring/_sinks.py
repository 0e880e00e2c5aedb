"""Files ``bpfring tail --output`` writes: JSON lines, CSV, Arrow IPC and
Parquet, in batches, rotated by size or age.

A file is written under a temporary name (``NAME.part``) and renamed to its
final name when it is complete (rotation, or the end of ``tail``), so every
file a reader sees under its final name is whole: Arrow and Parquet files
have their footers.  Signals that end ``tail`` are held while a batch is
written (see :class:`SignalGuard`), so they never cut a write in half.
"""

from __future__ import annotations

import csv
import errno
import importlib
import io
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import BPFError

FORMATS = ("jsonl", "csv", "arrow", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
             ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow", ".parquet": "parquet"}
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(text: str) -> int:
    """``100M`` -> bytes (K, M, G, T are powers of 1024; a trailing B is allowed)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not m or float(m[1]) <= 0:
        raise ValueError(f"not a size: {text!r} (e.g. 100M, 1G, 65536)")
    return int(float(m[1]) * _UNITS[m[2].lower()])


def parse_duration(text: str) -> float:
    """``1h`` -> seconds (s, m, h, d; plain numbers are seconds)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text, re.IGNORECASE)
    if not m or float(m[1]) <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 10m, 1h, 1d)")
    return float(m[1]) * _SECONDS[(m[2] or "s").lower()]


def format_of(path: str) -> str | None:
    """The format a file name implies (``.parquet`` -> parquet), or None."""
    return _SUFFIXES.get(os.path.splitext(path)[1].lower())


class SignalGuard:
    """Holds SIGINT, SIGTERM and SIGHUP while a batch is written: the handler
    raises ``KeyboardInterrupt`` at once outside a write, and right after it
    inside one, so files are never left half-written."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False
        for sig in self.SIGNALS:
            signal.signal(sig, self._handler)

    def _handler(self, signum: int, frame: object) -> None:
        if self._depth:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending:
            self._pending = False
            raise KeyboardInterrupt


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Nested dicts as dotted keys (CSV columns)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}{k}.", v, out)
    else:
        out[prefix[:-1]] = value


def _csv_value(v: Any) -> Any:
    if isinstance(v, list):
        return json.dumps(v, default=str)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return int(v)  # enums: their value, as in Arrow
    return v


class RotatingSink:
    """Writes batches of samples to files of one format, rotating by size
    (``rotate_size`` bytes, checked after each batch) or age
    (``rotate_time`` seconds since the file was opened).

    ``pattern`` may hold ``{index}`` (0, 1, ... ; format specs work:
    ``{index:04d}``) and ``{time}`` (UTC ``YYYYmmddTHHMMSSZ`` of the file's
    first batch); with rotation and neither, ``.{index:04d}`` goes before
    the extension.  ``record`` is the BTF record type (or None: raw samples
    as ``size`` and ``data``).  Files are created with their first batch.
    """

    def __init__(self, pattern: str, fmt: str, record: Any = None, *,
                 rotate_size: int | None = None, rotate_time: float | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (choose one of {', '.join(FORMATS)})")
        if "{" not in pattern and (rotate_size or rotate_time):
            root, ext = os.path.splitext(pattern)
            pattern = root + ".{index:04d}" + ext
        try:
            pattern.format(index=0, time="t")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"bad file name pattern {pattern!r}: only {{index}} and "
                             f"{{time}} may be used ({e})") from None
        self.pattern = pattern
        self.fmt = fmt
        self.record = record
        self.rotate_size = rotate_size
        self.rotate_time = rotate_time
        self.index = 0
        self.files: list[str] = []  # completed files, in order
        self.rows = 0
        self._path: str | None = None
        self._opened = 0.0
        self._fh: Any = None
        self._writer: Any = None
        if fmt in ("arrow", "parquet"):
            from . import frames

            self._pa = frames.require("pyarrow")
            if fmt == "parquet":
                self._pq = importlib.import_module("pyarrow.parquet")

    # files ---------------------------------------------------------------------------

    def _open(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.pattern.format(index=self.index, time=stamp)
        if os.path.exists(path) or path in self.files:
            raise BPFError(f"output file {path} exists already",
                           errno=errno.EEXIST, hint="remove it, or give another --output name")
        self._path = path
        self._opened = time.monotonic()
        self._fh = open(path + ".part", "wb")  # noqa: SIM115 (closed in _close)
        self._writer = None

    def _close(self) -> None:
        if self._fh is None:
            return
        try:
            if self._writer is not None:
                self._writer.close()  # the Arrow / Parquet footer
        finally:
            self._writer = None
            self._fh.close()
            self._fh = None
        assert self._path is not None
        os.replace(self._path + ".part", self._path)
        self.files.append(self._path)
        self._path = None
        self.index += 1

    def _due(self) -> bool:
        if self._fh is None:
            return False
        if self.rotate_size and self._fh.tell() >= self.rotate_size:
            return True
        return bool(self.rotate_time and time.monotonic() - self._opened >= self.rotate_time)

    # batches -------------------------------------------------------------------------

    def write(self, samples: list[bytes]) -> None:
        """Write one batch of samples (each at least the record's size;
        longer ones are cut to it, as perf buffers pad them)."""
        if not samples:
            if self._due():
                self._close()
            return
        if self._fh is not None and self._due():
            self._close()
        if self._fh is None:
            self._open()
        getattr(self, "_write_" + self.fmt)(samples)
        self._fh.flush()
        self.rows += len(samples)
        if self._due():
            self._close()

    def close(self) -> None:
        """Finish the current file (idempotent)."""
        self._close()

    def _dicts(self, samples: list[bytes]) -> Iterator[dict[str, Any]]:
        if self.record is None:
            for s in samples:
                yield {"size": len(s), "data": s.hex()}
        else:
            decode = self.record.decode
            for s in samples:
                yield decode(s)._asdict()

    def _write_jsonl(self, samples: list[bytes]) -> None:
        out = "".join(json.dumps(d, default=_json_value) + "\n" for d in self._dicts(samples))
        self._fh.write(out.encode())

    def _write_csv(self, samples: list[bytes]) -> None:
        buf = io.StringIO()
        rows = []
        for d in self._dicts(samples):
            flat: dict[str, Any] = {}
            _flat("", d, flat)
            rows.append({k: _csv_value(v) for k, v in flat.items()})
        if self._writer is None:
            self._writer = _CsvHeader(list(rows[0]))
            csv.writer(buf).writerow(self._writer.columns)
        w = csv.DictWriter(buf, self._writer.columns, extrasaction="ignore")
        w.writerows(rows)
        self._fh.write(buf.getvalue().encode())

    def _batch(self, samples: list[bytes]) -> Any:
        pa = self._pa
        if self.record is None:
            return pa.RecordBatch.from_arrays(
                [pa.array([len(s) for s in samples], pa.uint32()),
                 pa.array(samples, pa.binary())], names=["size", "data"])
        from . import frames

        return frames.to_arrow(samples, self.record)

    def _write_arrow(self, samples: list[bytes]) -> None:
        batch = self._batch(samples)
        if self._writer is None:
            self._writer = self._pa.ipc.new_file(self._fh, batch.schema)
        self._writer.write_batch(batch)

    def _write_parquet(self, samples: list[bytes]) -> None:
        batch = self._batch(samples)
        if self._writer is None:
            self._writer = self._pq.ParquetWriter(self._fh, batch.schema)
        self._writer.write_batch(batch)


class _CsvHeader:
    """The CSV writer state of one file: its columns (from the first row)."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns

    def close(self) -> None:
        pass


def _json_value(obj: object) -> object:
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj).hex()
    return str(obj)

