"""HTML tables for Jupyter: the ``_repr_html_`` of records (here, in btf,
which imports nothing above it), rings, perf buffers and
:class:`bpfring.frames.Table`.

Plain ``repr`` stays one short line everywhere; notebooks call
``_repr_html_`` and get a table.  Every value is escaped; long values are
cut, and tables show at most ``limit`` rows with a line saying how many
were left out.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

#: Characters of one cell before it is cut.
CELL_MAX = 80

_STYLE = "border-collapse:collapse;font-family:monospace;font-size:90%"


def cell(value: Any) -> str:
    """One value as escaped text: records and dicts by their short repr, enums
    by name, strings quoted only when empty; cut at :data:`CELL_MAX`."""
    import enum

    if isinstance(value, enum.Enum):
        text = f"{value.name} ({value.value})"
    elif isinstance(value, str):
        text = value if value else "''"
    elif isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).hex()
    else:
        text = repr(value)
    if len(text) > CELL_MAX:
        text = text[:CELL_MAX - 1] + "…"
    return html.escape(text)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str = "",
          total: int | None = None, shown: int | None = None) -> str:
    """A ``<table>`` with a header row; ``title`` above it, and "N of TOTAL
    rows" below when rows were left out."""
    head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    caption = f"<caption style='text-align:left'>{html.escape(title)}</caption>" if title else ""
    out = f"<table style='{_STYLE}'>{caption}<thead><tr>{head}</tr></thead>" \
          f"<tbody>{body}</tbody></table>"
    if total is not None and shown is not None and total > shown:
        out += f"<div style='font-size:85%'>{shown} of {total} rows shown</div>"
    return out


def record_html(rec: Any) -> str:
    """One record: its type name, then one row of its fields."""
    fields = list(rec._fields)
    return table(fields, [[getattr(rec, f) for f in fields]], title=rec._name)


def properties_html(title: str, props: Sequence[tuple[str, Any]]) -> str:
    """A two-column table of ``(name, value)`` pairs (rings and buffers)."""
    return table(["property", "value"], props, title=title)
