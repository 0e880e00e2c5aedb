"""Definitions shared by the ring benchmark's modules: the record, the cases,
the targets and the per-case result."""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

#: benchmarks/: the BPF program and the C baselines live next to the suites.
HERE = Path(__file__).resolve().parent.parent
BPF_SOURCE = HERE / "rings.bpf.c"

#: The benchmark record (``struct event`` in rings.bpf.c and the C baselines).
EVENT = np.dtype([("seq", "<u8"), ("ts", "<u8"), ("pid", "<u4"), ("cpu", "<u4"),
                  ("comm", "S16")])
RECORD_SIZE = EVENT.itemsize  # 40
SLOT = RECORD_SIZE + 8  # bytes one record occupies in a ring
assert RECORD_SIZE == 40

LIVE_RING = 512 * 1024  # bench_ringbufs' default ring size
LIVE_BATCH = 500  # bench_ringbufs' default records per producer trigger
BPF_LOOP_MAX = 1 << 22  # records per produce() run when filling (bpf_loop allows 8 Mi)
PAGE = os.sysconf("SC_PAGE_SIZE")
ENOSPC = 28

K2U, U2K = "k2u", "u2k"
DIRECTIONS = {K2U: "kernel -> user", U2K: "user -> kernel"}
MODES = {K2U: ("prefilled", "live"), U2K: ("empty", "live")}
MODE_TITLES = {
    (K2U, "prefilled"): "pre-filled ring",
    (K2U, "live"): "live kernel producer on the other CPU",
    (U2K, "empty"): "empty ring, drained afterwards",
    (U2K, "live"): "live kernel drain on the other CPU",
}
#: The case every other case of a direction is compared to.
REFERENCE = {K2U: "libbpf-c", U2K: "libbpf-c-write"}


@dataclasses.dataclass(frozen=True)
class CaseDef:
    name: str
    direction: str
    label: str
    modes: tuple[str, ...]


CASES: tuple[CaseDef, ...] = (
    CaseDef("libbpf-c", K2U, "libbpf C: ring_buffer__consume/poll", MODES[K2U]),
    CaseDef("libbpf-ctypes", K2U, "libbpf via ctypes callbacks", MODES[K2U]),
    CaseDef("bcc", K2U, "BCC: ring_buffer_consume + event()", MODES[K2U]),
    CaseDef("callback", K2U, "bpfring: consume/poll(callback)", MODES[K2U]),
    CaseDef("iter", K2U, "bpfring: typed iteration", MODES[K2U]),
    CaseDef("read_array", K2U, "bpfring: read_array", MODES[K2U]),
    CaseDef("view_array", K2U, "bpfring: view_array", MODES[K2U]),
    CaseDef("produce", K2U, "kernel producer (bpf_loop, one CPU)", ("prefilled",)),
    # The memory limits: numpy on the same ring pages (benchmarks/rings/limits.py).
    CaseDef("np-headers", K2U, "numpy: strided header scan (limit)", ("prefilled",)),
    CaseDef("np-headers-seq", K2U, "numpy: header scan + seq sum (limit)", ("prefilled",)),
    CaseDef("np-copy", K2U, "numpy: strided payload copy (limit)", ("prefilled",)),
    CaseDef("np-stream", K2U, "numpy: streaming read (limit)", ("prefilled",)),
    CaseDef("libbpf-c-write", U2K, "libbpf C: reserve/submit", MODES[U2K]),
    CaseDef("libbpf-ctypes-write", U2K, "libbpf reserve/submit via ctypes", MODES[U2K]),
    CaseDef("write", U2K, "bpfring: write", MODES[U2K]),
    CaseDef("write_many", U2K, "bpfring: write_many", MODES[U2K]),
    CaseDef("write_array", U2K, "bpfring: write_array", MODES[U2K]),
    CaseDef("drain", U2K, "kernel drain (bpf_user_ringbuf_drain)", ("empty",)),
    # write_many's limits: C over the same bytes objects (benchmarks/objects_limits.c).
    CaseDef("objects-read", U2K, "C: read the bytes objects only (limit)", ("empty",)),
    CaseDef("objects-copy", U2K, "C: copy the bytes objects as samples (limit)", ("empty",)),
)
CASE_BY_NAME = {c.name: c for c in CASES}
RSS_APIS = ("callback", "iter", "read_array", "view_array")

#: (case, mode, versus, minimum ratio) from the issue; ratios of medians.
RATIO_TARGETS = (
    ("iter", "prefilled", "bcc", 10.0),
    ("view_array", "prefilled", "libbpf-c", 3.0),
    ("read_array", "prefilled", "np-copy", 0.8),
    ("callback", "prefilled", "libbpf-ctypes", 3.0),
    ("write_array", "empty", "libbpf-c-write", 1.5),
    ("write_many", "empty", "libbpf-c-write", 1.5),
    ("write", "empty", "libbpf-ctypes-write", 1.5),
)
#: Cases whose live run must lose no record at the producer's full rate.
NO_LOSS_CASES = ("read_array", "view_array", "callback")
#: Rows that measure limits, not consumers: numpy on the ring's memory, C on
#: write_many's input.
LIMIT_CASES = ("np-headers", "np-headers-seq", "np-copy", "np-stream", "objects-read",
               "objects-copy")
#: The limit row that bounds a case: the same work done by numpy or C alone.
BOUNDS = {"view_array": "np-headers-seq", "read_array": "np-copy",
          "write_many": "objects-copy"}
RSS_GROWTH_LIMIT = 1 << 20  # bytes of RSS growth after the first round counted as "flat"


class Skip(Exception):
    """A case cannot run here; the message says why."""


def _mono() -> int:
    return time.monotonic_ns()


# ------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    case: str
    direction: str
    mode: str
    label: str
    status: str = "ok"  # ok | skipped | failed
    reason: str | None = None
    rounds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [r["rate"] for r in self.rounds]

    @property
    def median(self) -> float | None:
        """Median rate; None unless the case ran without failing."""
        if self.status != "ok" or not self.rounds:
            return None
        return statistics.median(self.rates)

    def fail(self, reason: str) -> None:
        self.status = "failed"
        self.reason = reason

    def to_json(self, ratio: float | None) -> dict[str, Any]:
        status, reason = self.status, self.reason
        if status == "ok" and not self.rounds:
            status, reason = "failed", "no round ran"
        # A failed case keeps the rounds it completed, but gets no summary.
        rates = self.rates if status == "ok" else []
        med = statistics.median(rates) if rates else None
        lost = None
        if (self.direction, self.mode) == (K2U, "live") and rates:
            lost = sum(r["lost"] for r in self.rounds)
        return {
            "case": self.case,
            "direction": self.direction,
            "mode": self.mode,
            "label": self.label,
            "status": status,
            "reason": reason,
            "records_per_round": self.rounds[0]["records"] if self.rounds else None,
            "rounds": self.rounds,
            "median_rate": med,
            "min_rate": min(rates) if rates else None,
            "max_rate": max(rates) if rates else None,
            "spread": (max(rates) - min(rates)) / med if med else None,
            "median_gbps": med * RECORD_SIZE / 1e9 if med else None,
            "ratio_to_reference": ratio if med else None,
            "reference": REFERENCE[self.direction],
            "lost": lost,
            "notes": self.notes,
        }


def _round(records: int, ns: int, **extra: Any) -> dict[str, Any]:
    seconds = max(ns, 1) / 1e9
    return {"records": records, "seconds": seconds, "rate": records / seconds, **extra}
