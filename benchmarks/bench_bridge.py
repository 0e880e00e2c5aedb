#!/usr/bin/env python3
"""``bpfring bench bridge`` from a source checkout: the same code, the same options.

    sudo .venv/bin/python benchmarks/bench_bridge.py [--quick] [--json] ...

Map updates through the user ring bridge against one bpf() call per update
and BPF_MAP_UPDATE_BATCH; see docs/bridge.md for the method and the numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from bpfring.bench.bridge import main
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from bpfring.bench.bridge import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
