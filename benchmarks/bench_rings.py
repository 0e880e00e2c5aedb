#!/usr/bin/env python3
"""``bpfring bench rings`` from a source checkout: the same code, the same options.

    sudo .venv/bin/python benchmarks/bench_rings.py [--quick] [--json] [--plot FILE] ...

See benchmarks/README.md for the cases and how the baselines are built.
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

from benchmarks.rings import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
