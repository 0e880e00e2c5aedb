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
``bcc`` module imports; it opens the benchmark's map through a pin and
puts its own perf event fds in it, so it reads the records of the same
program), and bpfring's ``callback`` (``consume``), ``typed`` (iteration
over records decoded from BTF, each dropped after use as BCC's ``event()``
objects are), ``typed_read`` (``read()``: one list of all the decoded
records, kept alive together; records of plain members are untracked by the
cyclic GC, so the collector does not walk them) and ``read_array``.

Limit rows (``limit-*``) time the cases' own per-record work with no ring
at all, on the same records (taken out of the ring as bytes first, not
timed): the ``callback`` case's Python callback called from C ``--records``
times with one memoryview, as ``consume()`` hands one view pointed at each
record in turn (``limit-callback``: what the callback itself costs, the
floor of any consumer that calls it per record), the C decoder
over each record's bytes object in the ``typed`` case's loop
(``limit-typed``) and into one list as ``read()`` makes it (``limit-read``).
They show what making the record objects costs; the ring walks decode
straight from ring memory, which saves the bytes argument, so a case may
come out a little faster than its limit row.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import ctypes.util
import itertools
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import bpfring
from bpfring import PerfBuffer

from .rings.common import Skip
from .rings.procs import LineProc, _bcc_kernel_source, _bcc_python, build_baseline
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
CASES = ("libbpf-c", "libbpf-ctypes", "bcc", "callback", "typed", "typed_read", "read_array",
         "limit-callback", "limit-typed", "limit-read")
#: The limit row each case is compared with (same run).
LIMITS = {"callback": "limit-callback", "typed": "limit-typed", "typed_read": "limit-read"}
#: (case, versus, minimum ratio of medians): issue 13's perf buffer targets.
TARGETS = (("callback", "bcc", 10.0), ("typed", "bcc", 10.0), ("typed_read", "bcc", 10.0),
           ("read_array", "bcc", 10.0))

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
        self.bcc: LineProc | None = None  # the BCC consumer, started on first use
        self.bcc_skip: str | None = None  # why BCC cannot run here
        self.pin_dir: str | None = None
        self.notes: list[str] = []
        self.versions: dict[str, str] = {}

    def close(self) -> None:
        if self.bcc is not None:
            self.bcc.close()
        if self.pin_dir is not None:
            shutil.rmtree(self.pin_dir, ignore_errors=True)
        self.obj.close()

    def fill(self, n: int) -> int:
        """Write ``n`` records on CPU 0; return the sum of their seq fields."""
        first = self.seq
        self.seq += n
        self.obj.programs["emit"].run(ctx=struct.pack("<QQ", n, first))
        return (first + self.seq - 1) * n // 2


def _user_callback(seqs: list[int]) -> Callable[[memoryview], None]:
    """The callback case's per-record work (and limit-callback's): take the
    seq field, keep it."""
    unpack = struct.Struct("<Q").unpack_from
    return lambda v: seqs.append(unpack(v)[0])


def _bpfring_case(kind: str) -> Callable[[Run, int], tuple[float, int, int]]:
    def case(run: Run, n: int) -> tuple[float, int, int]:
        with PerfBuffer(run.map_fd, page_count=run.pages, cpus=[0],
                        record=run.event if kind.startswith("typed") else None) as pb:
            want = run.fill(n)
            total = 0
            t0 = time.perf_counter()
            if kind == "callback":
                seqs: list[int] = []
                pb.consume(_user_callback(seqs))
                t1 = time.perf_counter()
                got, total = len(seqs), sum(seqs)
            elif kind == "typed":  # like BCC's callback: one record at a time, then dropped
                got = 0
                for got, rec in enumerate(itertools.islice(pb, n), 1):  # noqa: B007
                    total += rec.seq
                t1 = time.perf_counter()
            elif kind == "typed_read":
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


def _limit_case(kind: str) -> Callable[[Run, int], tuple[float, int, int]]:
    def case(run: Run, n: int) -> tuple[float, int, int]:
        with PerfBuffer(run.map_fd, page_count=run.pages, cpus=[0]) as pb:
            want = run.fill(n)
            raws = pb.read()  # the records' bytes, out of the ring (not timed)
        if kind == "limit-callback":
            # One view, n times: consume() also hands the callback one
            # memoryview, pointed at each record in turn.
            views = itertools.repeat(memoryview(raws[0]), n)
            seqs: list[int] = []
            cb = _user_callback(seqs)
            t0 = time.perf_counter()
            collections.deque(map(cb, views), maxlen=0)  # called from C, as consume() does
            t1 = time.perf_counter()
            got = len(seqs)
            if seqs[-1] != struct.unpack_from("<Q", raws[0])[0]:
                raise RuntimeError("limit-callback: the callback did not read the record")
            total = want
        elif kind == "limit-typed":
            decode = run.event.decode
            got = total = 0
            t0 = time.perf_counter()
            for got, rec in enumerate(map(decode, raws), 1):  # noqa: B007
                total += rec.seq
            t1 = time.perf_counter()
        else:
            decode = run.event.decode
            t0 = time.perf_counter()
            recs = list(map(decode, raws))
            t1 = time.perf_counter()
            got, total = len(recs), sum(r.seq for r in recs)
        if (got, total) != (n, want):
            raise RuntimeError(f"{kind}: got {got} records (sum {total}); wanted {n}")
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


BCC_SCRIPT = r'''
import sys, time
from bcc import BPF, __version__ as bcc_version
from bcc.libbcc import lib

pin, entries, pages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# BPF_PERF_OUTPUT's table, opened from the benchmark's pinned map (like
# BPF_TABLE_PINNED): the records come from the same program as for the
# other cases; BCC puts its own perf event fds in the map.
b = BPF(text="""
struct event { u64 seq; u64 ts; u32 pid; u32 cpu; char comm[16]; };
struct events_table_t {
  int key; u32 leaf;
  int (*perf_submit) (void *, void *, u32);
  int (*perf_submit_skb) (void *, u32, void *, u32);
  u32 max_entries;
};
__attribute__((section("maps/perf_output:%s")))
struct events_table_t events = { .max_entries = %d };
int anchor(void *ctx) {
  struct event ev = {};
  events.perf_submit(ctx, &ev, sizeof(ev));  /* tells BCC the record type */
  return 0;
}
""" % (pin, entries))
table = b["events"]
count = seq_sum = 0

def cb(cpu, data, size):
    global count, seq_sum
    ev = table.event(data)
    seq_sum += ev.seq
    count += 1

table.open_perf_buffer(cb, page_cnt=pages)
print("ready", bcc_version, flush=True)
for line in sys.stdin:
    cmd, n = line.split()
    n = int(n)
    if cmd == "arm":  # the other cases put their fds in the map since: put ours back
        for (_, cpu), reader in b.perf_buffers.items():
            table[table.Key(cpu)] = table.Leaf(lib.perf_reader_fd(reader))
        print("armed", flush=True)
        continue
    count = seq_sum = 0
    t0 = time.monotonic_ns()
    while count < n:
        before = count
        b.perf_buffer_poll(0)
        if count == before:
            break
    t1 = time.monotonic_ns()
    print("ok", count, seq_sum, t0, t1, flush=True)
'''


def _start_bcc(run: Run) -> LineProc:
    """The BCC consumer process (``perf_buffer_poll`` + ``event()``), or Skip saying why not."""
    py = _bcc_python()
    if not (os.path.isabs(py) and os.path.exists(py)) and not shutil.which(py):
        raise Skip(f"no interpreter {py} to run BCC with")
    chk = subprocess.run([py, "-c", "import bcc"], capture_output=True, text=True, timeout=60)
    if chk.returncode:
        raise Skip(f"the bcc module does not import under {py} "
                   "(apt-get install python3-bpfcc; see benchmarks/setup_bcc.sh)")
    if not os.path.ismount("/sys/fs/bpf"):
        raise Skip("BCC opens the map through a pin and bpffs is not mounted on /sys/fs/bpf")
    env = dict(os.environ, **_bcc_kernel_source(run.notes))
    run.pin_dir = tempfile.mkdtemp(prefix="bpfring-perfbench-", dir="/sys/fs/bpf")
    pin = os.path.join(run.pin_dir, "events")
    events = run.obj.maps["events"]
    events.pin(pin)
    p = LineProc([py, "-c", BCC_SCRIPT, pin, str(events.max_entries), str(run.pages)],
                 "BCC consumer", env=env)
    try:
        run.versions["bcc"] = p.expect("ready", 300, final=False)[0]
    except (RuntimeError, TimeoutError) as e:
        p.close()
        raise Skip(f"BCC could not compile or open its program: {e}") from None
    return p


def _bcc(run: Run, n: int) -> tuple[float, int, int]:
    if run.bcc_skip is not None:
        raise Skip(run.bcc_skip)
    if run.bcc is None or not run.bcc.alive:
        try:
            run.bcc = _start_bcc(run)
        except Skip as e:
            run.bcc_skip = str(e)
            raise
    p = run.bcc
    p.send("arm 0")
    p.expect("armed", 60)
    want = run.fill(n)
    p.send(f"pre {n}")
    count, total, t0, t1 = map(int, p.expect("ok", 300))
    if (count, total) != (n, want):
        raise RuntimeError(f"BCC: got {count} records (sum {total}); wanted {n} (sum {want})")
    return (t1 - t0) / 1e9, count, 0


RUNNERS: dict[str, Callable[[Run, int], tuple[float, int, int]]] = {
    "libbpf-c": _libbpf_c,
    "libbpf-ctypes": _libbpf_ctypes,
    "bcc": _bcc,
    "callback": _bpfring_case("callback"),
    "typed": _bpfring_case("typed"),
    "typed_read": _bpfring_case("typed_read"),
    "read_array": _bpfring_case("read_array"),
    "limit-callback": _limit_case("limit-callback"),
    "limit-typed": _limit_case("limit-typed"),
    "limit-read": _limit_case("limit-read"),
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
        run.close()
    rate = {c: args.records / statistics.median(t[1:]) for c, t in times.items() if len(t) > 1}
    spread = {c: (args.records / max(t[1:]), args.records / min(t[1:]))
              for c, t in times.items() if len(t) > 1}
    ratios = {}
    for c in ("callback", "typed", "typed_read", "read_array"):
        for base in ("libbpf-c", "libbpf-ctypes", "bcc"):
            if c in rate and base in rate:
                ratios[f"{c}/{base}"] = rate[c] / rate[base]
    for c, lim in LIMITS.items():
        if c in rate and lim in rate:
            ratios[f"{c}/{lim}"] = rate[c] / rate[lim]
    info = machine_info(None)
    targets = [(c, base, want, ratios.get(f"{c}/{base}")) for c, base, want in TARGETS
               if c in cases and base in cases]
    if args.json:
        print(json.dumps({"machine": info, "records": args.records, "rounds": args.rounds,
                          "rate": rate, "spread": spread, "ratios": ratios,
                          "targets": [{"case": c, "versus": b, "min": w, "ratio": r,
                                       "met": r is not None and r >= w}
                                      for c, b, w, r in targets],
                          "skipped": skipped, "versions": run.versions, "notes": run.notes},
                         indent=1))
        return 0
    print(f"bpfring bench perf: {args.records:,} records of 40 B per round, {args.rounds} "
          f"rounds (+1 warm-up), CPU 0's ring of {args.pages} pages; median, [min-max]")
    print(f"{info['date']}  {info['cpu']} ({info['cpus']} CPUs)  Linux {info['kernel']}  "
          f"Python {info['python']}  libbpf {info.get('libbpf', '?')}"
          + (f"  bcc {run.versions['bcc']}" if "bcc" in run.versions else "") + "\n")
    print(f"  {'case':<40} {'records/s':>12} {'[min-max] M/s':>18}")
    label = {"libbpf-c": "libbpf C: perf_buffer__consume",
             "libbpf-ctypes": "libbpf via ctypes callbacks (as BCC)",
             "bcc": "BCC: perf_buffer_poll + event()",
             "callback": "bpfring: PerfBuffer.consume(callback)",
             "typed": "bpfring: typed iteration (for rec in pb)",
             "typed_read": "bpfring: PerfBuffer.read() typed",
             "read_array": "bpfring: PerfBuffer.read_array",
             "limit-callback": "limit: the callback alone, from C",
             "limit-typed": "limit: C decoder alone, typed loop",
             "limit-read": "limit: C decoder alone, into a list"}
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
    if targets:
        print("\ntargets")
        for c, base, want, r in targets:
            state = "n/a " if r is None else "MET " if r >= want else "MISS"
            got = "not measured" + (f" ({skipped[base]})" if base in skipped else "") \
                if r is None else f"{r:.2f}x"
            print(f"  [{state}] {c} >= {want:g}x {base:<20} {got}")
    for note in run.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
