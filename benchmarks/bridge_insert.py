"""The insert case of ``bpfring bench bridge``: 4096 operations per flush into
an EMPTY hash of 131,072 entries (``bench_ins``), then the same operations
again over the now full map (overwrites), for the bridge and its two
system-call baselines, on the same map and the same numpy arrays.

A round of a case: empty the map (not timed; the bridge deletes every key,
the round checks that the map is empty), then 32 flushes of 4096 new keys
each, timed one by one (the map fills from 0 to 131,072 entries), then the
same 32 flushes again (every key exists: overwrites).  The rate of a round
is 4096 divided by the median time per flush; the table gives the median
over the rounds with the spread (min-max), and bridge / batch per phase.

Inserting into a preallocated hash is the kernel's own work either way
(``htab_map_update_elem``: an element off the free list, copy, link into
the bucket): a bridge that is 2x ``BPF_MAP_UPDATE_BATCH`` on overwrites
may come out near 1x here.  ``--profile`` prints where the CPU time of the
insert flushes goes (``perf record`` over the bridge's insert rounds, by
symbol), to show whether the kernel's hash insert is the bound.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bpfring import MapBridge

INSERT_ENTRIES = 131072
INSERT_FLUSH = 4096
INSERT_CASES = ("syscall", "batch", "bridge")
#: The issue's target: bridge >= 2x BPF_MAP_UPDATE_BATCH, inserting.
INSERT_TARGET = 2.0

#: The map and its bridge, appended to the benchmark program.
BPF_MAPS = r"""
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, struct value16);
} bench_ins SEC(".maps");

BPFRING_BRIDGE(bench_ins, 4 << 20);
"""


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    # Distinct keys spread over the whole u64 range (multiplying by an odd
    # constant is a bijection modulo 2**64).
    keys = (rng.permutation(INSERT_ENTRIES).astype(np.uint64)
            * np.uint64(0x9E3779B97F4A7C15))
    values = rng.integers(0, 1 << 63, size=(INSERT_ENTRIES, 2), dtype=np.uint64)
    return keys, values


def _empty(obj: Any, br: MapBridge, keys: np.ndarray) -> None:
    """Delete every key through the bridge (untimed) and check the map is empty."""
    m = obj.maps["bench_ins"]
    if next(iter(m.keys()), None) is None:
        return
    for start in range(0, INSERT_ENTRIES, INSERT_FLUSH):
        br.delete_many(keys[start:start + INSERT_FLUSH])
        br.flush()
    if next(iter(m.keys()), None) is not None:
        raise RuntimeError("bench_ins is not empty after deleting every key")


def _runners(obj: Any, br: MapBridge, keys: np.ndarray, values: np.ndarray
             ) -> dict[str, Callable[[int, int], None]]:
    from .bridge import Baselines, _bridge_many

    base = Baselines(obj.maps["bench_ins"].fd, keys, values)
    return {"syscall": base.per_op, "batch": base.batch,
            "bridge": _bridge_many(br, keys, values)}


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_insert(obj: Any, br: MapBridge, opts: argparse.Namespace,
                   log: Callable[[str], None]) -> dict[str, Any]:
    keys, values = _arrays()
    runners = _runners(obj, br, keys, values)
    cases = [c for c in INSERT_CASES if c in opts.cases]
    starts = list(range(0, INSERT_ENTRIES, INSERT_FLUSH))
    rates: dict[str, dict[str, list[float]]] = {
        ph: {c: [] for c in cases} for ph in ("insert", "overwrite")}
    per_flush: dict[str, dict[str, list[float]]] = {
        ph: {c: [] for c in cases} for ph in ("insert", "overwrite")}
    log(f"  insert: {len(starts)} flushes of {INSERT_FLUSH} into an empty "
        f"{INSERT_ENTRIES:,}-entry hash, then the same as overwrites")
    for rnd in range(opts.rounds + 1):  # round 0 warms up
        for c in cases:
            _empty(obj, br, keys)
            for phase in ("insert", "overwrite"):
                times = []
                for start in starts:
                    t0 = time.perf_counter_ns()
                    runners[c](start, INSERT_FLUSH)
                    times.append(time.perf_counter_ns() - t0)
                if rnd:
                    med = statistics.median(times)
                    rates[phase][c].append(INSERT_FLUSH / (med / 1e9))
                    per_flush[phase][c].append(med / 1e3)
    _empty(obj, br, keys)
    out: dict[str, Any] = {"entries": INSERT_ENTRIES, "ops_per_flush": INSERT_FLUSH,
                           "phases": {}}
    for phase in ("insert", "overwrite"):
        row: dict[str, Any] = {"cases": {c: {"ops_per_s": _summary(rates[phase][c]),
                                             "us_per_flush": _summary(per_flush[phase][c])}
                                         for c in cases}}
        if "bridge" in cases:
            b = row["cases"]["bridge"]["ops_per_s"]["median"]
            row["ratios"] = {c: b / row["cases"][c]["ops_per_s"]["median"]
                             for c in ("syscall", "batch") if c in cases}
        out["phases"][phase] = row
    if opts.profile and "bridge" in cases:
        out["profile"] = profile_bridge_insert(obj, br, keys, values, log)
    return out


def insert_target(ins: dict[str, Any] | None) -> dict[str, Any] | None:
    if not ins or "ratios" not in ins["phases"]["insert"]:
        return None
    ratio = ins["phases"]["insert"]["ratios"].get("batch")
    if ratio is None:
        return None
    return {"target": f">= {INSERT_TARGET:g}x BPF_MAP_UPDATE_BATCH at {INSERT_FLUSH} ops per "
                      f"flush inserting into an empty {INSERT_ENTRIES:,}-entry hash",
            "met": ratio >= INSERT_TARGET, "worst_ratio": round(ratio, 2),
            "at_ops_per_flush": INSERT_FLUSH}


def render_insert(ins: dict[str, Any], fmt_rate: Callable[[float], str]) -> list[str]:
    lines = ["", f"inserting: {INSERT_FLUSH} ops per flush into an empty "
                 f"{INSERT_ENTRIES:,}-entry hash (fills it), then overwriting the same keys",
             f"{'phase':<10} " + "  ".join(f"{c:>27}" for c in ins["phases"]["insert"]["cases"])
             + f"  {'x syscall':>9}  {'x batch':>7}"]
    for phase, row in ins["phases"].items():
        cells = []
        for d in row["cases"].values():
            rate, us = d["ops_per_s"], d["us_per_flush"]["median"]
            cells.append(f"{fmt_rate(rate['median']):>6} ({fmt_rate(rate['min'])}-"
                         f"{fmt_rate(rate['max'])}) {us:>8.1f}us".rjust(27))
        line = f"{phase:<10} " + "  ".join(cells)
        if "ratios" in row:
            line += (f"  {row['ratios'].get('syscall', float('nan')):>8.2f}x"
                     f"  {row['ratios'].get('batch', float('nan')):>6.2f}x")
        lines.append(line)
    prof = ins.get("profile")
    if prof:
        lines.append("")
        if prof.get("error"):
            lines.append(f"profile of the bridge's insert flushes: {prof['error']}")
        else:
            lines.append("profile of the bridge's insert flushes (perf record of this "
                         "process, share of samples by symbol; the untimed deletes that "
                         "empty the map between fills are in it too):")
            for sym, share in prof["top"]:
                lines.append(f"  {share:5.1f}%  {sym}")
            lines.append(f"  kernel hash map code (htab_*, pcpu_freelist*, "
                         f"lookup_*elem*, memcpy): {prof['htab_share']:.1f}% of samples; "
                         f"user space: {prof['user_share']:.1f}%; deletes "
                         f"{prof.get('delete_share', 0.0):.1f}%")
            rest = 100.0 - prof.get("delete_share", 0.0)
            if rest > 0:
                lines.append(f"  without the deletes, the kernel's hash insert is "
                             f"{prof['htab_share'] / rest * 100:.0f}% of the insert time")
    return lines


def profile_bridge_insert(obj: Any, br: MapBridge, keys: np.ndarray, values: np.ndarray,
                          log: Callable[[str], None]) -> dict[str, Any]:
    """perf record -a over repeated bridge insert fills of the empty map."""
    perf = shutil.which("perf")
    if perf is None:
        return {"error": "perf is not installed"}
    run = _runners(obj, br, keys, values)["bridge"]
    log("  profiling the bridge's insert flushes with perf record")
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "perf.data")
        # This process only (its syscalls and BPF_PROG_TEST_RUN run in its
        # context, so the kernel's side is in the samples too), for the
        # duration of the sleep.
        rec = subprocess.Popen([perf, "record", "-q", "-p", str(os.getpid()), "-o", data,
                                "--", "sleep", "3"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)
        end = time.monotonic() + 2.4
        while time.monotonic() < end:
            _empty(obj, br, keys)  # the deletes are in the profile too: counted apart below
            for start in range(0, INSERT_ENTRIES, INSERT_FLUSH):
                run(start, INSERT_FLUSH)
        _, err = rec.communicate(timeout=30)
        if rec.returncode != 0:
            return {"error": f"perf record failed: {err.decode(errors='replace')[-300:]}"}
        rep = subprocess.run([perf, "report", "-i", data, "--stdio", "--no-children",
                              "--sort", "sym", "-q"],
                             capture_output=True, text=True, timeout=120)
    top: list[tuple[str, float]] = []
    htab = user = delete = 0.0
    for line in rep.stdout.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[0].endswith("%"):
            continue
        share = float(parts[0].rstrip("%"))
        kind, sym = parts[1], " ".join(parts[2:])
        if kind == "[.]":
            user += share
        if kind == "[k]" and any(s in sym for s in ("delete", "freelist_push",
                                                     "free_htab_elem")):
            delete += share  # the untimed emptying between fills
        elif kind == "[k]" and any(s in sym for s in ("htab_", "pcpu_freelist", "lookup_",
                                                       "memcpy", "bpf_map_update",
                                                       "alloc_htab_elem")):
            htab += share
        if len(top) < 12:
            top.append((f"{kind} {sym}", share))
    return {"top": top, "htab_share": htab, "user_share": user, "delete_share": delete}
