"""The ``bpfring`` command line.

Exit codes: 0 success (and Ctrl-C on streaming commands), 1 a bpfring or
system error (one line on stderr, with a hint), 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .errors import BPFError

log = logging.getLogger("bpfring")


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    demo.run(count=args.count, trigger=args.trigger, as_json=args.json,
             interval=args.interval)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(args.bench_args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bpfring",
        description="Exchange data with eBPF programs through BPF ring buffers.",
    )
    p.add_argument("--version", action="version", version=f"bpfring {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log more (-v: info, -vv: debug, including libbpf)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser("demo", help="run the reference user ring buffer example",
                       description="Load the reference example (tracepoint "
                       "syscalls/sys_exit_kill drains a user ring and answers each "
                       "sample with an event) and print events as they arrive.")
    d.add_argument("--count", type=int, metavar="N", help="exit 0 after N events")
    d.add_argument("--trigger", action="store_true",
                   help="call kill(own pid, 0) periodically so the demo runs on an idle host")
    d.add_argument("--interval", type=float, default=0.1, metavar="SEC",
                   help="trigger period in seconds (default 0.1)")
    d.add_argument("--json", action="store_true", help="one JSON object per event")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("bench", help="run the benchmark suites (rings, bridge)",
                       description="Benchmarks, side by side with their baselines; "
                       "'bpfring bench SUITE --help' lists a suite's options.",
                       add_help=False)
    b.add_argument("bench_args", nargs=argparse.REMAINDER,
                   help="SUITE [options]: rings (default) or bridge")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="bpfring: %(levelname)s: %(message)s")
    # libbpf's own warnings are noisy and repeated in our errors (LoadError
    # carries the verifier log): show them only with -v.
    if args.verbose == 0:
        logging.getLogger("bpfring.libbpf").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0
    except BPFError as e:
        first = e.message.splitlines()[0] if e.message else type(e).__name__
        hint = f" (hint: {e.hint})" if e.hint else ""
        print(f"bpfring: error: {first}{hint}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"bpfring: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
