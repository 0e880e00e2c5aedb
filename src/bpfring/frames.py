"""Records as Arrow record batches, pandas and polars frames.

The ring methods ``read_arrow``, ``view_arrow``, ``read_frame`` and
``read_polars`` (:class:`~bpfring.RingBuffer` and
:class:`~bpfring.PerfBuffer`) are thin wrappers around the functions here;
:func:`to_arrow`, :func:`to_pandas` and :func:`to_polars` convert what
``read_array``/``view_array`` return, or a list of records or raw samples.

How C types come out (the numpy dtype of :attr:`bpfring.btf.Codec.dtype`
is the layout; numpy keeps ``char[N]`` as ``S<N>`` bytes, which is what lets
``view_array`` be a zero-copy view of the ring):

=========================  ================================================
C type                     Arrow column
=========================  ================================================
integers, ``float``,       the same width (``int32``, ``uint64``, ``double``,
``double``, ``_Bool``      ``bool``); enums are their integer values
``char[N]``                ``string``: cut at the first NUL, UTF-8 decoded
                           (invalid bytes replaced), as in decoded records
other arrays               ``fixed_size_list`` (nested for more dimensions)
nested struct              ``struct`` column (pandas/polars: flattened, see below)
union                      a ``struct`` of every member, all read from the
                           same bytes, as records decode unions
bitfields                  one integer column per bitfield (in arrays of
                           structs: the shared storage integer, named
                           ``"a|b"`` as in the numpy dtype)
raw bytes (no BTF type),   ``fixed_size_binary``
``__int128``
flexible array ``x[]``     no column (it holds no bytes of the record)
=========================  ================================================

Nested structs stay ``struct`` columns in Arrow (Parquet and DuckDB keep
them as such); :func:`to_pandas` and :func:`to_polars` flatten them into
columns with dotted names (``times.start_ns``), one level after another.

Arrow is columnar and a ring holds rows, so a batch cannot alias the ring
memory: every column is gathered with one vectorised strided copy straight
out of the ring's mapping (``view_array``), without an intermediate copy of
the records and without Python code per record (``char[]`` columns cost one
extra vectorised pass to find the NULs).

pyarrow, pandas and polars are optional: ``pip install 'bpfring[arrow]'``
(``[pandas]``, ``[polars]``).  Without them these functions raise
:class:`~bpfring.MissingExtra` with the command, before consuming anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import MissingExtra

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["require", "to_arrow", "to_pandas", "to_polars"]

#: Import name -> (bpfring extra, pip distribution).
_EXTRAS = {"pyarrow": ("arrow", "pyarrow"), "pandas": ("pandas", "pandas"),
           "polars": ("polars", "polars")}


def require(module: str) -> Any:
    """Import an optional dependency, or raise :class:`~bpfring.MissingExtra`
    naming the ``pip install 'bpfring[EXTRA]'`` that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra, dist = _EXTRAS.get(module, (module, module))
        raise MissingExtra(f"{module} is not installed ({e}); it is an optional "
                           f"dependency of bpfring", extra=extra,
                           hint=f"pip install 'bpfring[{extra}]' (or pip install "
                           f"{dist})") from None


# --- numpy -> arrow --------------------------------------------------------------------


def _dtype_of(record: Any) -> np.dtype[Any]:
    dt: np.dtype[Any] = np.dtype(getattr(record, "dtype", record))
    if dt.itemsize == 0:
        raise ValueError("the record type has no size")
    return dt


def _strings(pa: Any, arr: npt.NDArray[Any]) -> Any:
    """``S<N>`` items as an Arrow string array: each cut at its first NUL and
    UTF-8 decoded, invalid bytes replaced (what record decoding does)."""
    n, width = len(arr), arr.dtype.itemsize
    m = np.ascontiguousarray(arr).view(np.uint8).reshape(n, width)
    nul = m == 0
    lens = np.where(nul.any(axis=1), nul.argmax(axis=1), width)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lens, out=offsets[1:])
    data = np.ascontiguousarray(m[np.arange(width) < lens[:, None]])
    binary = pa.Array.from_buffers(pa.binary(), n,
                                   [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    try:
        return binary.cast(pa.string())  # validates UTF-8 in one pass
    except pa.ArrowInvalid:  # rare: decode row by row, replacing bad bytes
        return pa.array([b.decode("utf-8", "replace") for b in binary.to_pylist()],
                        type=pa.string())


def _members(dt: np.dtype[Any]) -> list[str]:
    """The members of a struct dtype that hold bytes: a flexible array member
    (``x[]``, size 0) is not part of the record and gets no column."""
    fields: dict[str, Any] = dict(dt.fields or {})
    return [k for k in dt.names or () if fields[k][0].itemsize]


def _column(pa: Any, arr: npt.NDArray[Any], bits: Any = None,
            path: tuple[str, ...] = ()) -> Any:
    """One Arrow array from a (possibly strided) numpy array whose first axis
    is the records.  ``bits`` maps member paths (``()``: the record itself)
    to their bitfields (:attr:`bpfring.btf.Codec.bitfields`), or is None."""
    dt = arr.dtype
    if arr.ndim > 1:  # a C array member: (n, d1, d2...) -> nested fixed-size lists
        col = _column(pa, np.ascontiguousarray(arr).reshape(-1))
        for d in reversed(arr.shape[1:]):
            col = pa.FixedSizeListArray.from_arrays(col, d)
        return col
    if dt.names is not None:
        names, cols = _struct_columns(pa, arr, bits, path)
        return pa.StructArray.from_arrays(cols, names=names)
    if dt.kind == "S":
        return _strings(pa, arr)
    if dt.kind == "V":
        raw = np.ascontiguousarray(arr).view(np.uint8)
        return pa.Array.from_buffers(pa.binary(dt.itemsize), len(arr),
                                     [None, pa.py_buffer(raw)])
    if not dt.isnative:
        arr = arr.astype(dt.newbyteorder("="))
    return pa.array(np.ascontiguousarray(arr))


def _struct_columns(pa: Any, arr: npt.NDArray[Any], bits: Any, path: tuple[str, ...]
                    ) -> tuple[list[str], list[Any]]:
    """The names and columns of a struct: a bitfield storage member of the
    dtype becomes one integer column per bitfield, in bit order."""
    by_storage: dict[str, list[Any]] = {}
    for bf in ((bits or {}).get(path) or {}).values():
        by_storage.setdefault(bf.storage, []).append(bf)
    names: list[str] = []
    cols: list[Any] = []
    for name in _members(arr.dtype):
        run = by_storage.get(name)
        if not run:
            names.append(name)
            cols.append(_column(pa, arr[name], bits, (*path, name)))
            continue
        for bf in sorted(run, key=lambda b: b.shift):
            names.append(bf.name)
            cols.append(pa.array(bf.extract(arr)))
    return names, cols


def _as_array(data: Any, record: Any) -> tuple[npt.NDArray[Any], Any]:
    """``data`` as a 1-d structured numpy array, and the codec (or None)."""
    if isinstance(data, np.ndarray):
        if record is not None and _dtype_of(record) != data.dtype:
            raise ValueError(f"the array's dtype {data.dtype} is not the record's "
                             f"{_dtype_of(record)}")
        return data.reshape(-1) if data.ndim != 1 else data, record
    if record is None:
        raise ValueError("a list of records or samples needs record= (a BTF record type)")
    dt = _dtype_of(record)
    rows = [bytes(x) for x in data]  # Records encode; bytes/memoryviews copy
    for k, row in enumerate(rows):
        if len(row) < dt.itemsize:
            raise ValueError(f"sample {k} has {len(row)} bytes, fewer than the "
                             f"{dt.itemsize} of the record type")
    joined = b"".join(r[:dt.itemsize] for r in rows)
    return np.frombuffer(joined, dtype=dt), record


def to_arrow(data: Any, record: Any = None) -> Any:
    """A ``pyarrow.RecordBatch`` from a structured numpy array (what
    ``read_array``/``view_array`` give), or from a list of records or
    samples (bytes) with ``record=`` (a BTF record type from
    :mod:`bpfring.btf`).  With a record type, top-level bitfields become
    columns of their own.  See the module documentation for the types."""
    pa = require("pyarrow")
    arr, codec = _as_array(data, record)
    if arr.dtype.names is None:
        return pa.RecordBatch.from_arrays([_column(pa, arr)], names=["value"])
    bits: dict[tuple[str, ...], dict[str, Any]] = {}
    if codec is not None and hasattr(codec, "bitfields"):
        bits = {(): codec.bitfields, **codec.member_bitfields}
    names, cols = _struct_columns(pa, arr, bits, ())
    return pa.RecordBatch.from_arrays(cols, names=names)


def _flat_table(batch: Any) -> Any:
    """A pyarrow Table with struct columns flattened (``a.b``), all levels."""
    pa = require("pyarrow")
    table = pa.Table.from_batches([batch])
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


def to_pandas(data: Any, record: Any = None) -> Any:
    """A ``pandas.DataFrame``: :func:`to_arrow`, nested structs flattened into
    dotted column names, ``char[]`` as ``str``."""
    require("pandas")
    return _flat_table(data if _is_batch(data) else to_arrow(data, record)).to_pandas()


def to_polars(data: Any, record: Any = None) -> Any:
    """A ``polars.DataFrame``, flattened like :func:`to_pandas`."""
    pl = require("polars")
    return pl.from_arrow(_flat_table(data if _is_batch(data) else to_arrow(data, record)))


def _is_batch(data: Any) -> bool:
    return type(data).__name__ == "RecordBatch" and hasattr(data, "schema")


# --- the ring methods --------------------------------------------------------------------


def _codec(consumer: Any, record: Any) -> Any:
    codec = record if record is not None else consumer.record
    if codec is None:
        raise ValueError("no record type: pass record= (a BTF record type) or open the "
                         "ring with record=")
    return codec


def ring_read_arrow(ring: Any, record: Any = None, limit: int | None = None,
                    timeout: float | None = 0) -> Any:
    """``RingBuffer.read_arrow``: consume the waiting run of fixed-size
    records into a RecordBatch, waiting up to ``timeout`` for the first."""
    require("pyarrow")  # before anything is consumed
    codec = _codec(ring, record)
    with ring_view_arrow(ring, codec, limit) as batch:
        if batch.num_rows or timeout == 0 or (limit is not None and limit <= 0):
            return batch
    # Nothing waiting: read_array waits (and says why when the next record
    # has another size).
    return to_arrow(ring.read_array(codec, limit, timeout), codec)


@contextmanager
def ring_view_arrow(ring: Any, record: Any = None, limit: int | None = None
                    ) -> Iterator[Any]:
    """``RingBuffer.view_arrow``: the waiting run as a RecordBatch, consumed
    when the block exits normally (left in the ring on an exception)."""
    require("pyarrow")
    codec = _codec(ring, record)
    with ring.view_array(codec, limit) as arr:
        yield to_arrow(arr, codec)


def perf_read_arrow(perf: Any, record: Any = None, limit: int | None = None,
                    timeout: float | None = 0) -> Any:
    """``PerfBuffer.read_arrow``: records of every CPU (each cut to the
    record's size: perf pads samples) into one RecordBatch."""
    require("pyarrow")
    codec = _codec(perf, record)
    return to_arrow(perf.read_array(codec, limit, timeout), codec)


def read(consumer: Any, form: str, record: Any = None, limit: int | None = None,
         timeout: float | None = 0) -> Any:
    """The ``read_arrow``/``read_frame``/``read_polars`` methods of both
    consumers: ``form`` is ``"arrow"``, ``"pandas"`` or ``"polars"``.  Every
    package needed is imported before anything is consumed."""
    require("pyarrow")
    if form != "arrow":
        require(form)
    take = ring_read_arrow if hasattr(consumer, "view_array") else perf_read_arrow
    batch = take(consumer, record, limit, timeout)
    if form == "pandas":
        return to_pandas(batch)
    if form == "polars":
        return to_polars(batch)
    return batch


# --- Jupyter ---------------------------------------------------------------------------


class Table:
    """Records shown as an HTML table in Jupyter (at most ``limit`` rows);
    ``repr`` is one short line.  Made by :func:`table`."""

    def __init__(self, columns: list[str], rows: list[list[Any]], total: int,
                 title: str) -> None:
        self.columns = columns
        self.rows = rows
        self.total = total
        self.title = title

    def __repr__(self) -> str:
        return f"<Table {self.title} {self.total} rows x {len(self.columns)} columns>"

    def _repr_html_(self) -> str:
        from .btf._html import table as html_table

        return html_table(self.columns, self.rows, title=self.title, total=self.total,
                          shown=len(self.rows))


def table(data: Any, record: Any = None, limit: int = 20) -> Table:
    """A :class:`Table` of records for notebooks: a list of records, a
    structured numpy array (decoded with ``record`` when given, so
    ``char[]`` shows as text) or a ``pyarrow.RecordBatch``; the first
    ``limit`` rows."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    if _is_batch(data):
        head = data.slice(0, limit).to_pylist()
        cols = list(data.schema.names)
        return Table(cols, [[r[c] for c in cols] for r in head], data.num_rows, "RecordBatch")
    if isinstance(data, np.ndarray):
        total = len(data)
        if record is not None:
            recs = [record.decode(data[k].tobytes())
                    for k in range(min(limit, total))]
            title = str(getattr(record, "name", "records"))
        else:
            names = list(data.dtype.names or ["value"])
            rows = [list(r) if data.dtype.names else [r] for r in data[:limit].tolist()]
            return Table(names, rows, total, "array")
    else:
        recs = list(data)
        total = len(recs)
        recs = recs[:limit]
        title = recs[0]._name if recs and hasattr(recs[0], "_fields") else "records"
    if not recs:
        return Table([], [], total, title)
    if not hasattr(recs[0], "_fields"):
        return Table(["value"], [[r] for r in recs], total, title)
    cols = list(recs[0]._fields)
    return Table(cols, [[getattr(r, c) for c in cols] for r in recs], total, title)
