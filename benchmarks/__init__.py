"""bpfring's benchmark suites (``bpfring bench``), kept out of the installed
package: they live in the source checkout, next to their C baselines and BPF
programs, and use bpfring's public API only.

``bpfring bench [SUITE] [options]`` (or ``python -m benchmarks``, or the
``bench_*.py`` scripts here): SUITE is ``rings`` (default; kernel -> user and
user -> kernel throughput against libbpf C, libbpf through ctypes and BCC)
or ``bridge`` (map updates through a user ring against bpf() syscalls)
or ``perf`` (perf event arrays: PerfBuffer against libbpf's perf buffer)
or ``userspace`` (the user-space eBPF interpreters against DPDK and the kernel).
Each suite module provides ``main(argv) -> int``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

# numpy's OpenBLAS starts a worker thread per CPU at import, which wakes and
# spins now and then; the cases use no BLAS at all, and the live runs need the
# second CPU for their producer or drain.  Set before the suites import numpy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

SUITES = {"rings": "benchmarks.rings", "bridge": "benchmarks.bridge", "perf": "benchmarks.perf",
          "userspace": "benchmarks.userspace"}


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    suite = "rings"
    if args and not args[0].startswith("-"):
        suite = args.pop(0)
    if suite not in SUITES:
        print(f"bpfring: error: unknown benchmark suite {suite!r} "
              f"(hint: choose one of {', '.join(SUITES)})", file=sys.stderr)
        return 2
    mod = importlib.import_module(SUITES[suite])
    return int(mod.main(args) or 0)
