"""``bpfring bench perf``: reading a perf event array (``bpf_perf_event_output``)
with :class:`bpfring.PerfBuffer` against libbpf's own perf buffer, in C and
through ctypes (the way BCC's ``perf_buffer_poll`` calls back into Python),
in one run, on one program.

Each round: the consumer under test opens its per-CPU events (which puts
them in the map), a raw tracepoint program test-run on CPU 0 writes
``--records`` 40-byte records into CPU 0's ring (large enough to hold them
all: nothing is lost), and the consumer's drain of the pre-filled ring is
timed.  Every case must deliver exactly the records written (count and sum
of sequence numbers are checked).  Rounds run round-robin over the cases so
that drift hits all alike; the table shows medians with the spread over
rounds and the ratios of medians from this same run.

Cases: ``libbpf-c`` (``perf_buffer__consume`` with a C callback),
``libbpf-ctypes`` (the same with a Python callback through ctypes, as BCC
does), ``bcc`` (BCC's ``perf_buffer_poll`` plus ``event()``, when the
``bcc`` module imports), and bpfring's ``callback`` (``consume``),
``typed`` (``read()`` decoding records from BTF) and ``read_array``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import bpfring
from bpfring import PerfBuffer

from .rings.common import Skip
from .rings.procs import LineProc, build_baseline
from .rings.report import machine_info

BPF_SOURCE = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct event {
	__u64 seq;
	__u64 ts;
	__u32 pid;
	__u32 cpu;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

struct emit_ctx {
	void *ctx;
	__u64 seq;
};

static long emit_one(__u64 i, struct emit_ctx *c)
{
	struct event e = {
		.seq = c->seq + i, .ts = bpf_ktime_get_ns(), .pid = 1,
		.cpu = bpf_get_smp_processor_id(),
	};

	bpf_perf_event_output(c->ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

/* ctx->args[0]: records to write, [1]: first sequence number */
SEC("raw_tp")
int emit(struct bpf_raw_tracepoint_args *ctx)
{
	struct emit_ctx c = { .ctx = ctx, .seq = ctx->args[1] };

	bpf_loop((__u32)ctx->args[0], emit_one, &c, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

EVENT = np.dtype([("seq", "<u8"), ("ts", "<u8"), ("pid", "<u4"), ("cpu", "<u4"),
                  ("comm", "S16")])
CASES = ("libbpf-c", "libbpf-ctypes", "bcc", "callback", "typed", "read_array")

_SAMPLE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                              ctypes.c_uint32)
_LOST_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64)


class Run:
    """One loaded program and how to fill CPU 0's ring."""

    def __init__(self, pages: int) -> None:
        self.obj = bpfring.load(BPF_SOURCE, name="perfbench", keep_types="all")
        self.map_fd = self.obj.maps["events"].fd
        self.pages = pages
        self.event = self.obj.types["event"]
        self.seq = 0

    def fill(self, n: int) -> int:
        """Write ``n`` records on CPU 0; return the sum of their seq fields."""
        first = self.seq
        self.seq += n
        self.obj.programs["emit"].run(ctx=struct.pack("<QQ", n, first))
        return (first + self.seq - 1) * n // 2


def _bpfring_case(kind: str) -> Callable[[Run, int], tuple[float, int, int]]:
    def case(run: Run, n: int) -> tuple[float, int, int]:
        with PerfBuffer(run.map_fd, page_count=run.pages, cpus=[0],
                        record=run.event if kind == "typed" else None) as pb:
            want = run.fill(n)
            total = 0
            t0 = time.perf_counter()
            if kind == "callback":
                seqs: list[int] = []
                unpack = struct.Struct("<Q").unpack_from
                pb.consume(lambda v: seqs.append(unpack(v)[0]))
                t1 = time.perf_counter()
                got, total = len(seqs), sum(seqs)
            elif kind == "typed":
                recs = pb.read()
                t1 = time.perf_counter()
                got, total = len(recs), sum(r.seq for r in recs)
            else:
                arr = pb.read_array(EVENT)
                t1 = time.perf_counter()
                got, total = len(arr), int(arr["seq"].sum())
            if (got, total) != (n, want) or pb.lost:
                raise RuntimeError(f"{kind}: got {got} records (sum {total}), lost {pb.lost}; "
                                   f"wanted {n} (sum {want})")
        return t1 - t0, got, 0
    return case


def _libbpf_c(run: Run, n: int) -> tuple[float, int, int]:
    exe = build_baseline("libbpf_perf_consume")
    proc = LineProc([str(exe), str(run.map_fd), str(run.pages)], "libbpf_perf_consume",
                    pass_fds=[run.map_fd])
    try:
        proc.expect("ready", 30)
        want = run.fill(n)
        proc.send(f"pre {n}")
        count, total, lost, t0, t1 = map(int, proc.expect("ok", 120))
    finally:
        proc.close()
    if (count, total, lost) != (n, want, 0):
        raise RuntimeError(f"libbpf C: got {count} (sum {total}, lost {lost}); wanted {n}")
    return (t1 - t0) / 1e9, count, 0


def _libbpf_ctypes(run: Run, n: int) -> tuple[float, int, int]:
    lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
    lib.perf_buffer__new.restype = ctypes.c_void_p
    lib.perf_buffer__new.argtypes = [ctypes.c_int, ctypes.c_size_t, _SAMPLE_CB, _LOST_CB,
                                     ctypes.c_void_p, ctypes.c_void_p]
    lib.perf_buffer__consume.argtypes = [ctypes.c_void_p]
    lib.perf_buffer__free.argtypes = [ctypes.c_void_p]
    seqs: list[int] = []

    @_SAMPLE_CB
    def on_sample(_ctx: Any, _cpu: int, data: int, _size: int) -> None:
        seqs.append(ctypes.c_uint64.from_address(data).value)

    @_LOST_CB
    def on_lost(_ctx: Any, _cpu: int, _n: int) -> None:
        pass

    pb = lib.perf_buffer__new(run.map_fd, run.pages, on_sample, on_lost, None, None)
    if not pb:
        raise Skip(f"perf_buffer__new: {os.strerror(ctypes.get_errno())}")
    try:
        want = run.fill(n)
        t0 = time.perf_counter()
        lib.perf_buffer__consume(pb)
        t1 = time.perf_counter()
    finally:
        lib.perf_buffer__free(pb)
    if (len(seqs), sum(seqs)) != (n, want):
        raise RuntimeError(f"libbpf ctypes: got {len(seqs)} records; wanted {n}")
    return t1 - t0, len(seqs), 0


def _bcc(run: Run, n: int) -> tuple[float, int, int]:
    try:
        import bcc  # noqa: F401
    except ImportError:
        raise Skip("the bcc module does not import under this interpreter "
                   "(apt-get install python3-bpfcc; see benchmarks/setup_bcc.sh)") from None
    raise Skip("BCC's perf buffer needs its own program; not measured in this suite yet")


RUNNERS: dict[str, Callable[[Run, int], tuple[float, int, int]]] = {
    "libbpf-c": _libbpf_c,
    "libbpf-ctypes": _libbpf_ctypes,
    "bcc": _bcc,
    "callback": _bpfring_case("callback"),
    "typed": _bpfring_case("typed"),
    "read_array": _bpfring_case("read_array"),
}


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="bpfring bench perf", description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=200_000, help="records per round")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per case")
    ap.add_argument("--pages", type=int, default=4096,
                    help="pages per CPU ring (a power of two; must hold --records)")
    ap.add_argument("--quick", action="store_true", help="20,000 records, 2 rounds")
    ap.add_argument("--only", help="comma-separated cases: " + ", ".join(CASES))
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(list(argv))
    if args.quick:
        args.records, args.rounds = 20_000, 2
    cases = [c for c in (args.only.split(",") if args.only else CASES) if c]
    bad = [c for c in cases if c not in RUNNERS]
    if bad:
        ap.error(f"unknown cases {bad}; choose from {', '.join(CASES)}")
    if args.records * 56 > args.pages * 4096:
        ap.error(f"{args.records} records do not fit in {args.pages} pages; raise --pages")
    os.sched_setaffinity(0, {0})  # the test runs write into CPU 0's ring
    run = Run(args.pages)
    times: dict[str, list[float]] = {c: [] for c in cases}
    skipped: dict[str, str] = {}
    try:
        for _ in range(args.rounds + 1):  # the first round warms up
            for c in cases:
                if c in skipped:
                    continue
                try:
                    elapsed, _got, _lost = RUNNERS[c](run, args.records)
                except Skip as e:
                    skipped[c] = str(e)
                    continue
                times[c].append(elapsed)
    finally:
        run.obj.close()
    rate = {c: args.records / statistics.median(t[1:]) for c, t in times.items() if len(t) > 1}
    spread = {c: (args.records / max(t[1:]), args.records / min(t[1:]))
              for c, t in times.items() if len(t) > 1}
    ratios = {}
    for c in ("callback", "typed", "read_array"):
        for base in ("libbpf-c", "libbpf-ctypes", "bcc"):
            if c in rate and base in rate:
                ratios[f"{c}/{base}"] = rate[c] / rate[base]
    info = machine_info(None)
    if args.json:
        print(json.dumps({"machine": info, "records": args.records, "rounds": args.rounds,
                          "rate": rate, "spread": spread, "ratios": ratios,
                          "skipped": skipped}, indent=1))
        return 0
    print(f"bpfring bench perf: {args.records:,} records of 40 B per round, {args.rounds} "
          f"rounds (+1 warm-up), CPU 0's ring of {args.pages} pages; median, [min-max]")
    print(f"{info['date']}  {info['cpu']} ({info['cpus']} CPUs)  Linux {info['kernel']}  "
          f"Python {info['python']}  libbpf {info.get('libbpf', '?')}\n")
    print(f"  {'case':<40} {'records/s':>12} {'[min-max] M/s':>18}")
    label = {"libbpf-c": "libbpf C: perf_buffer__consume",
             "libbpf-ctypes": "libbpf via ctypes callbacks (as BCC)",
             "bcc": "BCC: perf_buffer_poll + event()",
             "callback": "bpfring: PerfBuffer.consume(callback)",
             "typed": "bpfring: PerfBuffer.read() typed",
             "read_array": "bpfring: PerfBuffer.read_array"}
    for c in cases:
        if c in skipped:
            print(f"  {label[c]:<40} {'SKIPPED':>12}  {skipped[c]}")
        elif c in rate:
            lo, hi = spread[c]
            print(f"  {label[c]:<40} {rate[c] / 1e6:>9.2f} M/s [{lo / 1e6:.2f}-{hi / 1e6:.2f}]")
    if ratios:
        print("\nratios (medians of this run)")
        for k, v in ratios.items():
            print(f"  {k:<32} {v:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
