#!/usr/bin/env python3
"""``bpfring bench rings`` from a source checkout: the same code, the same options.

    sudo .venv/bin/python benchmarks/bench_rings.py [--quick] [--json] [--plot FILE] ...

See benchmarks/README.md for the cases and how the baselines are built.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from bpfring.bench.rings import main
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from bpfring.bench.rings import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
