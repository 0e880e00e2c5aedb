"""Benchmark suites behind ``bpfring bench`` (same code as ``benchmarks/``).

``bpfring bench [SUITE] [options]``: SUITE is ``rings`` (default; kernel ->
user and user -> kernel throughput against libbpf C, libbpf through ctypes
and BCC) or ``bridge`` (map updates through a user ring against bpf()
syscalls).  Each suite module provides ``main(argv) -> int``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

SUITES = {"rings": "bpfring.bench.rings", "bridge": "bpfring.bench.bridge"}


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    suite = "rings"
    if args and not args[0].startswith("-"):
        suite = args.pop(0)
    if suite not in SUITES:
        print(f"bpfring: error: unknown benchmark suite {suite!r} "
              f"(hint: choose one of {', '.join(SUITES)})", file=sys.stderr)
        return 2
    try:
        mod = importlib.import_module(SUITES[suite])
    except ModuleNotFoundError as e:
        if e.name == SUITES[suite]:
            print(f"bpfring: error: benchmark suite {suite!r} is not available",
                  file=sys.stderr)
            return 2
        raise
    return int(mod.main(args) or 0)
