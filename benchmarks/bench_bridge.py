#!/usr/bin/env python3
"""``bpfring bench bridge`` from a source checkout: the same code, the same options.

    sudo .venv/bin/python benchmarks/bench_bridge.py [--quick] [--json] ...

Map updates through the user ring bridge against one bpf() call per update
and BPF_MAP_UPDATE_BATCH; see docs/bridge.md for the method and the numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout: `benchmarks` is importable from here
try:
    import bpfring  # noqa: F401
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(1, str(ROOT / "src"))

from benchmarks.bridge import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
