"""``bpfring bench bridge``: map updates through the user ring bridge against
one ``bpf(BPF_MAP_UPDATE_ELEM)`` per operation and ``BPF_MAP_UPDATE_BATCH``,
in one run, on one map.

The map is a hash of 8-byte keys and 16-byte values with 65,536 entries,
filled before the first round, so every case overwrites existing entries
(the steady state of a control loop; no case ever sees a full map).  For
each batch size N ("ops per flush") every case applies the same N keys and
values, taken from the same numpy arrays:

* ``syscall``: one ``bpf(BPF_MAP_UPDATE_ELEM)`` per operation, issued as
  cheaply as Python allows (``bpfring.PreparedUpdate``: one prebuilt
  attribute block, key and value pointers computed from the arrays' base
  addresses, ctypes ``syscall`` with prebuilt arguments);
* ``batch``: one ``BPF_MAP_UPDATE_BATCH`` over the arrays (no copy, same
  pointer arithmetic);
* ``bridge``: ``MapBridge.update_many(keys, values)`` then ``flush()`` (one
  ``BPF_PROG_TEST_RUN``);
* ``bridge-op``: N calls of ``MapBridge.update(key, value)`` with typed
  Python values, then ``flush()``: the per-operation Python API.

A round applies about ``--ops`` operations per case (at least one flush);
rounds run round-robin over the cases so that drift hits all alike.  A
round's rate is N divided by its median time per flush (robust to bursts of
interference); the table shows the median rate over ``--rounds`` rounds
with the spread (min-max over rounds) and the median time per flush, and
the ratios compare medians measured in this same run.

The insert case (``benchmarks/bridge_insert.py``, skipped with
``--no-insert``): 4096 operations per flush INTO AN EMPTY 131,072-entry
hash, then the same keys again as overwrites, for ``syscall``, ``batch`` and
``bridge``; ``--profile`` adds a ``perf record`` of the bridge's inserts.

End-to-end latency (queued -> visible in the map) for the three modes:
``flush`` (update, flush), ``piggyback`` (update, then the getpgid() call a
tracepoint program drains on, as the user's own program would) and ``timer``
(update at a random point of the period, then wait, without any system
call, until the drain's counter shows it applied; ``--period``).  Every
sample is checked with a lookup after the clock stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bpfring import MapBridge, PreparedUpdate

from .bridge_insert import BPF_MAPS, insert_target, measure_insert, render_insert

#: The benchmark program: the map, its bridge and a piggyback tracepoint.
BPF_SOURCE = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/bridge.bpf.h>

struct value16 {
	__u64 a;
	__u64 b;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct value16);
} bench SEC(".maps");

BPFRING_BRIDGE(bench, 4 << 20);

__u32 piggy_tgid = 0;

SEC("tp/syscalls/sys_enter_getpgid")
int piggyback(void *ctx)
{
	if (piggy_tgid && piggy_tgid == (bpf_get_current_pid_tgid() >> 32))
		bpfring_bridge_drain(bench);
	return 0;
}

""" + BPF_MAPS + r"""
char LICENSE[] SEC("license") = "Dual BSD/GPL";
"""

ENTRIES = 65536
KEY_SIZE, VALUE_SIZE = 8, 16
SIZES = (1, 2, 4, 8, 16, 32, 64, 256, 4096, 65536)
CASES = ("syscall", "batch", "bridge", "bridge-op")
CASE_LABELS = {
    "syscall": "bpf() per op",
    "batch": "BPF_MAP_UPDATE_BATCH",
    "bridge": "bridge update_many+flush",
    "bridge-op": "bridge update() x N+flush",
}
#: Targets of the issue, at >= 256 ops per flush.
TARGETS = (("syscall", 5.0), ("batch", 2.0))
TARGET_MIN_SIZE = 256

FULL = {"rounds": 7, "ops": 131072, "latency_samples": 300}
QUICK = {"rounds": 3, "ops": 8192, "latency_samples": 40}


# ------------------------------------------------------------------------------------
# The three ways of applying N updates
# ------------------------------------------------------------------------------------


class Baselines:
    """The two system-call baselines, as cheap as Python can issue them:
    ``bpfring.PreparedUpdate`` builds the attribute blocks once, computes the
    key and value pointers from the arrays' base addresses and issues the
    ctypes syscall with prebuilt arguments."""

    def __init__(self, map_fd: int, keys: np.ndarray, values: np.ndarray) -> None:
        self._up = PreparedUpdate(map_fd, keys, values)
        #: One BPF_MAP_UPDATE_ELEM for each of elements start .. start + n - 1.
        self.per_op: Callable[[int, int], None] = self._up.update_each

    def batch(self, start: int, n: int) -> None:
        """One BPF_MAP_UPDATE_BATCH over elements start .. start + n - 1 (no copy)."""
        done = self._up.update_batch(start, n)
        if done != n:
            raise RuntimeError(f"BPF_MAP_UPDATE_BATCH applied {done} of {n}")


def _bridge_many(br: MapBridge, keys: np.ndarray, values: np.ndarray
                 ) -> Callable[[int, int], None]:
    def run(start: int, n: int) -> None:
        br.update_many(keys[start:start + n], values[start:start + n])
        r = br.flush()
        if r.applied != n:
            raise RuntimeError(f"bridge applied {r.applied} of {n}: {br.stats}")
    return run


def _bridge_ops(br: MapBridge, keys: list[int], values: list[dict]) -> Callable[[int, int], None]:
    def run(start: int, n: int) -> None:
        update = br.update
        for i in range(start, start + n):
            update(keys[i], values[i])
        r = br.flush()
        if r.applied != n:
            raise RuntimeError(f"bridge applied {r.applied} of {n}: {br.stats}")
    return run


# ------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_throughput(obj: Any, br: MapBridge, opts: argparse.Namespace,
                       log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Rates of every case at every size; each round is ~opts.ops operations."""
    rng = np.random.default_rng(1)
    keys = rng.permutation(ENTRIES).astype(np.uint64)
    values = rng.integers(0, 1 << 63, size=(ENTRIES, 2), dtype=np.uint64)
    base = Baselines(obj.maps["bench"].fd, keys, values)
    base.batch(0, ENTRIES)  # fill the map: every case overwrites entries
    runners: dict[str, Callable[[int, int], None]] = {
        "syscall": base.per_op, "batch": base.batch,
        "bridge": _bridge_many(br, keys, values),
        "bridge-op": _bridge_ops(br, keys.tolist(),
                                 [{"a": int(a), "b": int(b)} for a, b in values]),
    }
    out = []
    for n in opts.sizes:
        flushes = max(1, opts.ops // n)
        chunks = [(i * n) % ENTRIES for i in range(flushes)]
        cases = [c for c in CASES if c in opts.cases]
        rates: dict[str, list[float]] = {c: [] for c in cases}
        per_flush: dict[str, list[float]] = {c: [] for c in cases}
        log(f"  {n:>6} ops per flush: {flushes} flushes per round")
        for rnd in range(opts.rounds + 1):  # round 0 warms up
            for c in cases:
                run = runners[c]
                times = []
                for start in chunks:
                    t0 = time.perf_counter_ns()
                    run(start, n)
                    times.append(time.perf_counter_ns() - t0)
                if rnd:
                    # The round's typical flush: its median time (robust to the
                    # bursts of interference this kind of VM shows).
                    med = statistics.median(times)
                    rates[c].append(n / (med / 1e9))
                    per_flush[c].append(med / 1e3)
        row: dict[str, Any] = {"ops_per_flush": n, "flushes_per_round": flushes, "cases": {}}
        for c in cases:
            row["cases"][c] = {"ops_per_s": _summary(rates[c]),
                               "us_per_flush": _summary(per_flush[c])}
        if "bridge" in cases:
            bridge = row["cases"]["bridge"]["ops_per_s"]["median"]
            row["ratios"] = {c: bridge / row["cases"][c]["ops_per_s"]["median"]
                             for c in ("syscall", "batch") if c in cases}
        out.append(row)
    return out


def _percentiles(samples_us: list[float]) -> dict[str, float]:
    s = sorted(samples_us)

    def pct(p: float) -> float:
        return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]

    return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": s[-1],
            "mean": statistics.fmean(s), "samples": len(s)}


def measure_latency(obj: Any, br: MapBridge, opts: argparse.Namespace,
                    log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Queued -> visible in the map, one operation at a time, per mode."""
    rng = random.Random(2)
    n = opts.latency_samples
    out: list[dict[str, Any]] = []
    one_key = np.zeros(1, np.uint64)
    one_value = np.zeros((1, 2), np.uint64)
    base = Baselines(obj.maps["bench"].fd, one_key, one_value)
    lookup = obj.maps["bench"].lookup

    def check(key: int, val: int) -> None:
        got = lookup(key)
        if got is None or got.a != val:
            raise RuntimeError(f"key {key}: expected a={val}, map has {got}")

    def sample(mode: str, trigger: Callable[[], None] | None) -> None:
        lat = []
        for i in range(n):
            key, val = rng.randrange(ENTRIES), rng.getrandbits(62) | 1
            if mode == "timer":
                time.sleep(rng.uniform(0, opts.period))  # a random point of the period
            if mode == "syscall":
                one_key[0], one_value[0] = key, (val, i)
                t0 = time.perf_counter_ns()
                base.per_op(0, 1)
                t1 = time.perf_counter_ns()
            else:
                t0 = time.perf_counter_ns()
                br.update(key, {"a": val, "b": i})
                if trigger is not None:
                    trigger()
                else:  # timer: spin on the drain's counter (mmapped: no syscall)
                    while br.pending:
                        pass
                t1 = time.perf_counter_ns()
            check(key, val)
            lat.append((t1 - t0) / 1e3)
        row = {"mode": mode, **_percentiles(lat)}
        if mode == "timer":
            row["period_us"] = opts.period * 1e6
        out.append(row)
        log(f"  {mode:<9} p50 {row['p50']:.1f} us, p99 {row['p99']:.1f} us")

    sample("syscall", None)
    sample("flush", lambda: br.flush())
    prog = obj.programs["piggyback"]
    link = prog.attach()
    obj.globals.piggy_tgid = os.getpid()
    try:
        sample("piggyback", lambda: os.getpgid(0))
    finally:
        obj.globals.piggy_tgid = 0
        link.close()
    br.start_timer(opts.period)
    try:
        sample("timer", None)
    finally:
        br.stop_timer()
    return out


# ------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------


def break_even(throughput: list[dict[str, Any]]) -> dict[str, int | None]:
    """Smallest measured batch size from which the bridge is at least as fast."""
    out: dict[str, int | None] = {}
    for c in ("syscall", "batch"):
        sizes = [r["ops_per_flush"] for r in throughput if c in r.get("ratios", {})]
        good = [r["ops_per_flush"] for r in throughput
                if c in r.get("ratios", {}) and r["ratios"][c] >= 1.0]
        # from this size on, every larger measured size is at least as fast too
        first = None
        for s in sorted(sizes, reverse=True):
            if s in good:
                first = s
            else:
                break
        out[c] = first
    return out


def evaluate_targets(throughput: list[dict[str, Any]]) -> list[dict[str, Any]]:
    res = []
    for case, want in TARGETS:
        rows = [r for r in throughput
                if r["ops_per_flush"] >= TARGET_MIN_SIZE and case in r.get("ratios", {})]
        if not rows:
            continue
        worst = min(rows, key=lambda r: r["ratios"][case])
        res.append({
            "target": f">= {want:g}x {CASE_LABELS[case]} at >= {TARGET_MIN_SIZE} ops per flush",
            "met": worst["ratios"][case] >= want,
            "worst_ratio": round(worst["ratios"][case], 2),
            "at_ops_per_flush": worst["ops_per_flush"],
        })
    return res


def _fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


def render_table(report: dict[str, Any], targets: bool = False) -> str:
    m = report["machine"]
    lines = [
        f"bpfring bench bridge: {m['date']}, {m['cpu']} ({m['cpus']} CPUs), "
        f"Linux {m['kernel']}, Python {m['python']}",
        f"map: hash, {KEY_SIZE}-byte keys, {VALUE_SIZE}-byte values, {ENTRIES:,} entries "
        f"(full: every update overwrites); {report['config']['rounds']} rounds",
        "",
        "updates per second (N / median time per flush): median (min-max over rounds); "
        "time per flush: median",
    ]
    cases = [c for c in CASES if c in report["config"]["cases"]]
    head = f"{'ops/flush':>9}  " + "  ".join(f"{CASE_LABELS[c]:>27}" for c in cases)
    if "bridge" in cases:
        head += f"  {'x syscall':>9}  {'x batch':>7}"
    lines.append(head)
    for r in report["throughput"]:
        cells = []
        for c in cases:
            d = r["cases"][c]
            rate, us = d["ops_per_s"], d["us_per_flush"]["median"]
            cells.append(f"{_fmt_rate(rate['median']):>6} ({_fmt_rate(rate['min'])}-"
                         f"{_fmt_rate(rate['max'])}) {us:>8.1f}us".rjust(27))
        line = f"{r['ops_per_flush']:>9}  " + "  ".join(cells)
        if "ratios" in r:
            line += "  " + f"{r['ratios'].get('syscall', float('nan')):>8.2f}x" + \
                f"  {r['ratios'].get('batch', float('nan')):>6.2f}x"
        lines.append(line)
    be = report["break_even"]
    lines.append("")
    lines.append("break-even (bridge update_many+flush at least as fast from this batch size "
                 "on): " + ", ".join(f"vs {CASE_LABELS[c]}: "
                                     f"{be[c] if be[c] is not None else 'not reached'}"
                                     for c in be))
    if report["latency"]:
        lines.append("")
        lines.append("end-to-end latency, queued -> visible in the map (one operation), us")
        lines.append(f"{'mode':<10} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}  note")
        notes = {
            "syscall": "baseline: one bpf() update",
            "flush": "update() + flush(): one BPF_PROG_TEST_RUN",
            "piggyback": "update() + the getpgid() a tracepoint drains on",
            "timer": f"update() at a random time; bpf_timer period "
                     f"{report['config']['period_us']:.0f} us; no syscall",
        }
        for r in report["latency"]:
            lines.append(f"{r['mode']:<10} {r['p50']:>9.1f} {r['p90']:>9.1f} {r['p99']:>9.1f} "
                         f"{r['max']:>9.1f}  {notes[r['mode']]}")
    if report.get("insert"):
        lines += render_insert(report["insert"], _fmt_rate)
    if report["targets"] and targets:  # the project's goals: --targets (always in --json)
        lines.append("")
        for t in report["targets"]:
            lines.append(f"target {t['target']}: {'met' if t['met'] else 'NOT met'} "
                         f"(worst {t['worst_ratio']}x at {t['at_ops_per_flush']})")
    for note in report["environment_notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    from .rings import machine_info as _rings_machine_info

    return _rings_machine_info(None)


# ------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bpfring bench bridge",
        description="Map updates per second through the user ring bridge against one "
        "bpf() call per update and BPF_MAP_UPDATE_BATCH, and end-to-end latency of the "
        "bridge's three modes, on this machine.")
    p.add_argument("--sizes", metavar="N,N,...",
                   help="ops per flush to measure (default " +
                   ",".join(map(str, SIZES)) + ")")
    p.add_argument("--cases", metavar="C,C,...", default=",".join(CASES),
                   help="cases to run (default all: " + ", ".join(CASES) + ")")
    p.add_argument("--rounds", type=int, metavar="N", help="timed rounds (default 7)")
    p.add_argument("--ops", type=int, metavar="N",
                   help="operations per round and case (default 131072; at least one flush)")
    p.add_argument("--latency-samples", type=int, metavar="N",
                   help="operations timed per latency mode (default 300; 0 skips)")
    p.add_argument("--period", type=float, default=0.001, metavar="SEC",
                   help="timer mode period (default 0.001)")
    p.add_argument("--no-insert", action="store_true",
                   help="skip the insert case (4096 ops per flush into an empty "
                        "131,072-entry hash, then overwrites)")
    p.add_argument("--profile", action="store_true",
                   help="perf record the bridge's insert flushes and print where the time "
                        "goes (needs perf)")
    p.add_argument("--quick", action="store_true",
                   help="small numbers for smoke tests (3 rounds, 8192 ops, 40 latency "
                        "samples); explicit options still win")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--targets", action="store_true",
                   help="also show the project's performance targets (--json always has them)")
    return p


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    opts = parser.parse_args(list(argv))
    for k, v in (QUICK if opts.quick else FULL).items():
        if getattr(opts, k) is None:
            setattr(opts, k, v)
    try:
        opts.sizes = [int(x) for x in opts.sizes.split(",")] if opts.sizes else list(SIZES)
    except ValueError:
        parser.error("--sizes takes comma-separated integers")
    if any(n < 1 or n > ENTRIES or ENTRIES % n for n in opts.sizes):
        parser.error(f"sizes must divide {ENTRIES} (powers of two up to {ENTRIES})")
    opts.cases = [c.strip() for c in opts.cases.split(",") if c.strip()]
    if bad := [c for c in opts.cases if c not in CASES]:
        parser.error(f"unknown case {', '.join(bad)} (choose from {', '.join(CASES)})")
    if opts.rounds < 1 or opts.ops < 1 or opts.latency_samples < 0 or opts.period <= 0:
        parser.error("--rounds and --ops must be >= 1, --latency-samples >= 0, --period > 0")

    import bpfring

    def log(msg: str) -> None:
        if not opts.quiet:
            print(msg, file=sys.stderr, flush=True)

    load_start = [round(x, 2) for x in os.getloadavg()]
    log("bpfring bench bridge: building and loading the benchmark program")
    path = bpfring.build_source(BPF_SOURCE, name="bench_bridge")
    with bpfring.load(path, name="bench_bridge") as obj, \
            MapBridge(obj, "bench", fallback=False) as br, \
            MapBridge(obj, "bench_ins", fallback=False) as br_ins:
        log("throughput")
        throughput = measure_throughput(obj, br, opts, log)
        insert = None
        if not opts.no_insert:
            insert = measure_insert(obj, br_ins, opts, log)
        ins_stats = br_ins.stats
        latency = []
        if opts.latency_samples:
            log("end-to-end latency")
            latency = measure_latency(obj, br, opts, log)
        stats = br.stats
    machine = machine_info()
    machine["loadavg_start"] = load_start
    notes = []
    if load_start[0] > 0.5:
        notes.append(f"the machine was busy when the run started (load average "
                     f"{load_start[0]}): numbers may be noisy")
    report = {
        "suite": "bridge",
        "format": 1,
        "command": "bpfring bench bridge " + " ".join(argv),
        "machine": machine,
        "config": {"rounds": opts.rounds, "ops_per_round": opts.ops, "sizes": opts.sizes,
                   "cases": opts.cases, "map": {"type": "hash", "key_size": KEY_SIZE,
                                                "value_size": VALUE_SIZE,
                                                "max_entries": ENTRIES},
                   "latency_samples": opts.latency_samples, "period_us": opts.period * 1e6},
        "throughput": throughput,
        "break_even": break_even(throughput),
        "latency": latency,
        "insert": insert,
        "targets": evaluate_targets(throughput) + [t for t in [insert_target(insert)] if t],
        "bridge_stats": {"applied": stats.applied, "failed": stats.failed, "bad": stats.bad},
        "insert_bridge_stats": {"applied": ins_stats.applied, "failed": ins_stats.failed,
                                "bad": ins_stats.bad},
        "environment_notes": notes,
    }
    if opts.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_table(report, opts.targets))
    return 0 if stats.failed == 0 and stats.bad == 0 and ins_stats.failed == 0 \
        and ins_stats.bad == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
