"""``bpfring bench rings``: ring buffer throughput against libbpf C, libbpf
through ctypes and BCC, in one process run on one machine.

Every case moves the same records: ``struct event`` of 40 bytes (48 in the
ring with its header), ``--records`` of them per round (default 1,000,000),
``--rounds`` timed rounds (default 5) after ``--warmup`` untimed ones; the
table shows the median rate and the spread (min-max).  Rounds are run
round-robin over the cases of a section so that drift hits every case alike.

kernel -> user (the consumer runs on the first CPU of the process):

* ``prefilled``: a ``SEC("syscall")`` program (``rings.bpf.c``, run with
  BPF_PROG_TEST_RUN) fills a ring big enough for the whole round, then the
  case consumes it; timed from just before the first consume call to the
  return of the call that delivered the last record.
* ``live``: a helper process pinned to the second CPU runs the producer in
  batches of ``--live-batch`` records into a 512 KiB ring (the size
  ``bench_ringbufs`` uses) while the case consumes.  Records the producer
  could not reserve are counted (``lost``) and produced again once it is done,
  so every consumer handles exactly ``--records`` records; timed from the
  producer's first record (CLOCK_MONOTONIC, the same clock on both sides) to
  the consumer's last.

user -> kernel (the writer runs on the first CPU):

* ``empty``: the case writes every record into an empty ring big enough for
  the round; timed from the first write to the return of the last.  A BPF
  drain program then consumes them (timed: the ``drain`` row) and checks count
  and sequence numbers.
* ``live``: the helper on the second CPU drains continuously from a 512 KiB
  ring while the case writes, waiting for room when the ring is full; timed
  from the first write to the drain of the last record.

The cases, the baselines and how they are built are described in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from .bench import Bench, _ring_size
from .common import (
    BPF_SOURCE,
    CASE_BY_NAME,
    CASES,
    DIRECTIONS,
    K2U,
    LIVE_BATCH,
    LIVE_RING,
    MODE_TITLES,
    PAGE,
    RECORD_SIZE,
    REFERENCE,
    RSS_APIS,
    U2K,
    CaseDef,
    Result,
    _round,
)
from .importtime import import_target, measure_import
from .limits import close_maps
from .report import (
    _ratios,
    check_plot_support,
    evaluate_targets,
    machine_info,
    render_plot,
    render_table,
)
from .run import _select, run_rss, run_section

#: What other code (tests/test_bench.py, the bridge suite) uses from here.
__all__ = [
    "CASES",
    "K2U",
    "REFERENCE",
    "RSS_APIS",
    "U2K",
    "Result",
    "_ratios",
    "_round",
    "build_parser",
    "evaluate_targets",
    "machine_info",
    "main",
    "render_table",
]

# ------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------


FULL = {"records": 1_000_000, "rounds": 5, "warmup": 1, "rss_records": 100_000_000}
QUICK = {"records": 20_000, "rounds": 2, "warmup": 0, "rss_records": 100_000}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bpfring bench rings",
        description="Ring buffer throughput (kernel -> user and user -> kernel) of bpfring "
        "against libbpf C, libbpf through ctypes and BCC, on this machine.",
        epilog="cases: " + ", ".join(c.name for c in CASES) + ", rss; also "
        "k2u, u2k, prefilled, empty, live (selectors combine)",
    )
    p.add_argument("--records", type=int, metavar="N",
                   help="records per round (default 1,000,000)")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="timed rounds per case (default 5)")
    p.add_argument("--warmup", type=int, metavar="N",
                   help="untimed rounds per case first (default 1)")
    p.add_argument("--quick", action="store_true",
                   help="small numbers for smoke tests (20,000 records, 2 rounds, no warm-up, "
                        "RSS over 100,000 records); explicit options still win")
    p.add_argument("--only", metavar="CASES", default="",
                   help="comma-separated cases and selectors to run (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--plot", metavar="FILE", help="write a PNG bar chart (needs matplotlib)")
    p.add_argument("--rss-records", type=int, metavar="N",
                   help="records consumed per API for the RSS check (default 100,000,000)")
    p.add_argument("--live-batch", type=int, default=LIVE_BATCH, metavar="N",
                   help=f"records per producer run in live mode (default {LIVE_BATCH}, "
                        "as bench_ringbufs)")
    p.add_argument("--live-ring", type=int, default=LIVE_RING, metavar="BYTES",
                   help=f"ring size for live runs (default {LIVE_RING})")
    p.add_argument("--timeout", type=float, default=300, metavar="SEC",
                   help="give up on a round after SEC seconds (default 300)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--targets", action="store_true",
                   help="also show the project's performance targets, MET or MISS "
                   "(--json always has them)")
    return p


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    opts = parser.parse_args(list(argv))
    defaults = QUICK if opts.quick else FULL
    for k, v in defaults.items():
        if getattr(opts, k) is None:
            setattr(opts, k, v)
    tokens = [t.strip() for t in opts.only.split(",") if t.strip()]
    known = set(CASE_BY_NAME) | {"rss", "import", "prefilled", "empty", "live", *DIRECTIONS}
    bad = [t for t in tokens if t not in known]
    if bad:
        parser.error(f"unknown case or selector {', '.join(bad)} (choose from "
                     f"{', '.join(sorted(known))})")
    opts.only = tokens
    if opts.records < 1 or opts.records > 20_000_000:
        parser.error("--records must be between 1 and 20,000,000 (the ring is sized for a round)")
    if opts.rounds < 1 or opts.warmup < 0 or opts.live_batch < 1:
        parser.error("--rounds and --live-batch must be >= 1, --warmup >= 0")
    if opts.live_ring < PAGE or opts.live_ring & (opts.live_ring - 1):
        parser.error("--live-ring must be a power of two of at least one page")
    if opts.plot and (why := check_plot_support()):
        print(f"bpfring: error: {why}", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        if not opts.quiet:
            print(msg, file=sys.stderr, flush=True)

    selected = _select(opts)
    want_rss = not tokens or "rss" in tokens
    want_import = not tokens or "import" in tokens
    if tokens and all(t in ("rss", "import") for t in tokens):
        selected = []
    results: dict[tuple[str, str], Result] = {
        (c.name, mode): Result(c.name, c.direction, mode, c.label) for c, mode in selected}

    load_start = [round(x, 2) for x in os.getloadavg()]
    log(f"bpfring bench rings: loading {BPF_SOURCE.name} "
        f"(ring of {_ring_size(opts.records) >> 20 or 1} MiB for {opts.records:,} records)")
    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through b.close(): unpins, ends children

    old_term = signal.signal(signal.SIGTERM, terminate)
    try:
        b = Bench(opts, log)
    except BaseException:
        signal.signal(signal.SIGTERM, old_term)
        raise
    memory: list[dict[str, Any]] = []
    try:
        sections: dict[tuple[str, str], list[CaseDef]] = {}
        for c, mode in selected:
            sections.setdefault((c.direction, mode), []).append(c)
        for (direction, mode), cases in sections.items():
            log(f"{DIRECTIONS[direction]}, {MODE_TITLES[(direction, mode)]}")
            run_section(b, direction, mode, cases, results)
        imp = None
        if want_import:
            log("import bpfring (fresh processes, -X importtime)")
            try:
                imp = measure_import()
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                imp = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
        if want_rss:
            log("memory: RSS while consuming")
            for api in RSS_APIS:
                memory.append(run_rss(b, api))
        machine = machine_info(b)
        machine["loadavg_start"] = load_start
        env_notes = list(dict.fromkeys(b.env_notes))
        if load_start[0] > 0.5:
            env_notes.append(f"the machine was busy when the run started (load average "
                             f"{load_start[0]}): numbers may be noisy")
    finally:
        close_maps()
        b.close()
        signal.signal(signal.SIGTERM, old_term)

    ratios = _ratios(results)
    report = {
        "suite": "rings",
        "format": 1,
        "machine": machine,
        "config": {
            "records": opts.records, "rounds": opts.rounds, "warmup": opts.warmup,
            "record_size": RECORD_SIZE, "ring_size": _ring_size(opts.records),
            "live_ring_size": opts.live_ring, "live_batch": opts.live_batch,
            "rss_records": opts.rss_records if want_rss else None,
            "only": tokens,
        },
        "results": [results[k].to_json(ratios[k]) for k in results],
        "memory": memory,
        "import": imp,
        "targets": [*evaluate_targets(results, memory), import_target(imp)],
        "environment_notes": env_notes,
    }
    if opts.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_table(report, opts.targets))
    if opts.plot:
        render_plot(report, opts.plot)
        log(f"plot written to {opts.plot}")
    failed = [r for r in report["results"] if r["status"] == "failed"] + \
        [m for m in memory if m["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
