"""Ratios, targets, the table, the plot and the machine description."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import subprocess
from typing import Any

import numpy as np

from .bench import Bench
from .common import (
    DIRECTIONS,
    MODE_TITLES,
    NO_LOSS_CASES,
    RATIO_TARGETS,
    REFERENCE,
    RSS_GROWTH_LIMIT,
    Result,
)
from .procs import LibbpfCtypes, _find_cc

# ------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------


def _ratios(results: dict[tuple[str, str], Result]) -> dict[tuple[str, str], float | None]:
    out: dict[tuple[str, str], float | None] = {}
    for (case, mode), r in results.items():
        ref = results.get((REFERENCE[r.direction], mode))
        if r.case in ("produce", "drain"):
            ref = None  # kernel-side rates: nothing to compare with
        if ref is None or ref.median is None or r.median is None:
            out[(case, mode)] = None
        else:
            out[(case, mode)] = r.median / ref.median
    return out


def evaluate_targets(results: dict[tuple[str, str], Result],
                     rss: list[dict[str, Any]]) -> list[dict[str, Any]]:
    targets = []
    for case, mode, versus, want in RATIO_TARGETS:
        a, v = results.get((case, mode)), results.get((versus, mode))
        t: dict[str, Any] = {"target": f"{case} >= {want:g}x {versus} ({mode})",
                             "case": case, "mode": mode, "versus": versus, "threshold": want,
                             "value": None, "met": None}
        if a is None or v is None:
            t["why"] = "not run (--only)"
        elif a.median is None or v.median is None:
            missing = a if a.median is None else v
            t["why"] = f"{missing.case} {missing.status}: {missing.reason}"
        else:
            ratio = a.median / v.median
            t["value"] = ratio
            t["met"] = ratio >= want
            if not t["met"]:
                t["gap"] = f"{(want / ratio - 1) * 100:.0f}% short"
        targets.append(t)
    for case in NO_LOSS_CASES:
        r = results.get((case, "live"))
        t = {"target": f"{case} (live): no lost records", "case": case, "mode": "live",
             "threshold": 0, "value": None, "met": None}
        if r is None:
            t["why"] = "not run (--only)"
        elif r.median is None:
            t["why"] = f"{r.status}: {r.reason}"
        else:
            lost = sum(x.get("lost", 0) for x in r.rounds)
            t["value"], t["met"] = lost, lost == 0
            rates = [x["producer_rate"] for x in r.rounds]
            t["producer_rate"] = statistics.median(rates)
        targets.append(t)
    for m in rss:
        t = {"target": f"RSS flat after the first round ({m['api']})", "case": m["api"],
             "mode": "prefilled", "threshold": RSS_GROWTH_LIMIT, "value": None, "met": None}
        if m["status"] != "ok":
            t["why"] = f"{m['status']}: {m['reason']}"
        else:
            t["value"], t["met"] = m["growth"], m["flat"]
            t["records"] = m["records"]
        targets.append(t)
    return targets


def _fmt_ratio(x: float) -> str:
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.3f}x"


def _fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e6:.2f} M/s" if x < 1e9 else f"{x / 1e9:.2f} G/s"


def render_table(report: dict[str, Any], targets: bool = False) -> str:
    cfg, m = report["config"], report["machine"]
    lines = [
        f"bpfring bench rings: {cfg['records']:,} records of {cfg['record_size']} B per "
        f"round, {cfg['rounds']} rounds (+{cfg['warmup']} warm-up); median, [min-max]",
        f"{m['date']}  {m['cpu']} ({m['cpus']} CPUs)  Linux {m['kernel']}  "
        f"Python {m['python']}  numpy {m['numpy']}  libbpf {m.get('libbpf', '?')}"
        + (f"  bcc {m['bcc']}" if m.get("bcc") else ""),
    ]
    by_section: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in report["results"]:
        by_section.setdefault((r["direction"], r["mode"]), []).append(r)
    for (direction, mode), rows in by_section.items():
        ref = REFERENCE[direction]
        lines += ["", f"{DIRECTIONS[direction]}, {MODE_TITLES[(direction, mode)]}",
                  f"  {'case':<44} {'records/s':>11} {'[min-max] M/s':>15} {'GB/s':>6} "
                  f"{'vs ' + ref:>16}"]
        for r in rows:
            if r["median_rate"] is None:
                lines.append(f"  {r['label']:<44} {r['status'].upper():>11}  {r['reason']}")
                continue
            span = f"[{r['min_rate'] / 1e6:.2f}-{r['max_rate'] / 1e6:.2f}]"
            ratio = _fmt_ratio(r["ratio_to_reference"]) if r["ratio_to_reference"] else "-"
            lines.append(f"  {r['label']:<44} {_fmt_rate(r['median_rate']):>11} {span:>15} "
                         f"{r['median_gbps']:>6.2f} {ratio:>16}")
            for note in r["notes"]:
                lines.append(f"  {'':<6}note: {note}")
    if report.get("memory"):
        lines += ["", "memory: RSS while consuming from a pre-filled ring"]
        for mm in report["memory"]:
            if mm["status"] != "ok":
                lines.append(f"  {mm['api']:<12} {mm['status'].upper()}  {mm['reason']}")
                continue
            lines.append(f"  {mm['api']:<12} {mm['records']:>13,} records  RSS after round 1 "
                         f"{mm['rss_first'] / 2**20:7.1f} MiB, max {mm['rss_max'] / 2**20:7.1f}"
                         f" MiB, growth {mm['growth'] / 2**10:+8.0f} KiB "
                         f"({_fmt_rate(mm['rate'])})")
    if report.get("import"):
        from .importtime import render_import

        lines += render_import(report["import"])
    if targets:  # the project's own goals: shown with --targets (always in --json)
        lines += ["", "targets"]
    for t in report["targets"] if targets else ():
        if t["met"] is None:
            state, val = "n/a    ", t.get("why", "")
        else:
            state = "MET    " if t["met"] else "NOT MET"
            if t["target"].startswith("RSS"):
                val = f"growth {t['value'] / 2**10:+.0f} KiB over {t['records']:,} records"
            elif t["target"].startswith("import"):
                val = f"{t['value'] * 1e3:.1f} ms"
            elif "lost" in t["target"]:
                val = (f"{t['value']} lost, producer at "
                       f"{t['producer_rate'] / 1e6:.1f} M/s")
            else:
                val = f"{t['value']:.2f}x" + (f" ({t['gap']})" if t.get("gap") else "")
        lines.append(f"  [{state}] {t['target']:<52} {val}")
    if report.get("environment_notes"):
        lines += [""] + [f"note: {n}" for n in report["environment_notes"]]
    return "\n".join(lines)


def check_plot_support() -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return ("--plot needs matplotlib, which is not installed: "
                "pip install 'bpfring[plot]'")
    return None


def render_plot(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in report["results"]:
        sections.setdefault((r["direction"], r["mode"]), []).append(r)
    if not any(r["median_rate"] for rows in sections.values() for r in rows):
        raise ValueError("nothing to plot: no case ran")
    heights = [len(rows) for rows in sections.values()]
    fig, axes = plt.subplots(len(sections), 1, squeeze=False,
                             figsize=(10, 1.2 * len(sections) + 0.42 * sum(heights)),
                             gridspec_kw={"height_ratios": heights})
    for ax, ((direction, mode), all_rows) in zip(axes[:, 0], sections.items(), strict=True):
        all_rows = all_rows[::-1]
        rows = [r for r in all_rows if r["median_rate"]]
        y = [i for i, r in enumerate(all_rows) if r["median_rate"]]
        med = [r["median_rate"] / 1e6 for r in rows]
        lo = [m - r["min_rate"] / 1e6 for m, r in zip(med, rows, strict=True)]
        hi = [r["max_rate"] / 1e6 - m for m, r in zip(med, rows, strict=True)]
        colors = ["#888888" if r["case"] in (REFERENCE[direction], "produce", "drain")
                  else ("#4c72b0" if not r["case"].startswith(("libbpf", "bcc"))
                        else "#dd8452") for r in rows]
        ax.barh(y, med, xerr=[lo, hi], color=colors, capsize=2)
        ax.set_yticks(range(len(all_rows)), [r["label"] for r in all_rows], fontsize=8)
        ax.set_xscale("log")
        left = min(med, default=1) / 2
        for yi, r in enumerate(all_rows):
            if not r["median_rate"]:
                why = f"{r['status']}: {r['reason'] or ''}"
                ax.text(left, yi, " " + (why if len(why) < 90 else why[:87] + "..."),
                        va="center", fontsize=7, color="#aa0000")
        ax.set_title(f"{DIRECTIONS[direction]}, {MODE_TITLES[(direction, mode)]}", fontsize=9)
        for yi, r, mv in zip(y, rows, med, strict=True):
            txt = f" {mv:.2f} M/s"
            if r["ratio_to_reference"]:
                txt += f"  ({_fmt_ratio(r['ratio_to_reference'])})"
            ax.text(r["max_rate"] / 1e6 * 1.05, yi, txt, va="center", fontsize=7)
        ax.set_xlim(left=left, right=max((r["max_rate"] for r in rows), default=1e6) / 1e6 * 12)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel("million 40-byte records per second (log scale); "
                           "ratio to libbpf C in parentheses", fontsize=8)
    cfg, m = report["config"], report["machine"]
    fig.suptitle(f"bpfring bench rings: {cfg['records']:,} records/round, median of "
                 f"{cfg['rounds']}; {m['cpu']} x{m['cpus']}, Linux {m['kernel']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine_info(b: Bench | None) -> dict[str, Any]:
    import bpfring

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "bpfring": bpfring.__version__,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError):
        info["libbpf"] = LibbpfCtypes().version
    cc = _find_cc()
    if cc:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10)
            info["cc"] = out.stdout.splitlines()[0] if out.stdout else cc
    if b is not None:
        info.update(b.versions)
        if len(b.cpus) >= 2:
            info["consumer_cpu"], info["helper_cpu"] = b.cpus[0], b.cpus[1]
    return info
