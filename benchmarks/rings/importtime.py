"""``import bpfring`` time: ``python -X importtime -c "import bpfring"`` in
fresh processes (the same interpreter as the benchmark), the cumulative time
of the ``bpfring`` line, median of a few runs; the slowest modules it pulls in
are listed from the median run."""

from __future__ import annotations

import statistics
import subprocess
import sys
from typing import Any

#: The issue's target, in seconds.
IMPORT_TARGET = 0.1
RUNS = 7


def _one() -> tuple[float, list[tuple[float, str]]]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import bpfring"],
                         capture_output=True, text=True, timeout=60, check=True)
    total = None
    mods: list[tuple[float, str]] = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = [p.strip() for p in line[len("import time:"):].split("|")]
        if len(parts) != 3:
            continue
        _, cum_us, name = parts
        try:
            cum = int(cum_us) / 1e6
        except ValueError:
            continue  # the header line
        mods.append((cum, name))
        if name == "bpfring":
            total = cum
    if total is None:
        raise RuntimeError("no 'bpfring' line in the -X importtime output")
    return total, mods


def measure_import() -> dict[str, Any]:
    runs = [_one() for _ in range(RUNS)]
    times = sorted(t for t, _ in runs)
    med = statistics.median(times)
    _, mods = min(runs, key=lambda r: abs(r[0] - med))
    top = sorted(mods, reverse=True)[:6]
    return {"status": "ok", "seconds": med, "min": times[0], "max": times[-1], "runs": RUNS,
            "slowest": [{"module": n, "cumulative_s": c} for c, n in top]}


def import_target(imp: dict[str, Any] | None) -> dict[str, Any]:
    t: dict[str, Any] = {"target": f"import bpfring < {IMPORT_TARGET:g} s", "case": "import",
                         "mode": "fresh process", "threshold": IMPORT_TARGET,
                         "value": None, "met": None}
    if imp is None:
        t["why"] = "not run (--only)"
    elif imp["status"] != "ok":
        t["why"] = f"{imp['status']}: {imp.get('reason')}"
    else:
        t["value"], t["met"] = imp["seconds"], imp["seconds"] < IMPORT_TARGET
    return t


def render_import(imp: dict[str, Any]) -> list[str]:
    if imp["status"] != "ok":
        return ["", f"import bpfring: {imp['status'].upper()}  {imp.get('reason')}"]
    slow = ", ".join(f"{m['module']} {m['cumulative_s'] * 1e3:.1f} ms" for m in imp["slowest"])
    return ["", f"import bpfring (python -X importtime, fresh process, median of "
                f"{imp['runs']}): {imp['seconds'] * 1e3:.1f} ms "
                f"[{imp['min'] * 1e3:.1f}-{imp['max'] * 1e3:.1f}]",
            f"  cumulative: {slow}"]
