"""CLI items of the data-ecosystem work: ``tail --header`` (types for a
prebuilt object whose BTF lacks them), ``bench --help`` listing every suite,
and the project's performance targets shown only with ``--targets``."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BPF_DIR

import bpfring

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the checkout's benchmarks package
    sys.path.insert(0, str(ROOT))

b = importlib.import_module("bpfring.build")


def _bpfring(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bpfring", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.skipif(not os.path.exists(b.KERNEL_BTF), reason="the kernel exposes no BTF")
def test_tail_header_types_for_a_prebuilt_object(kernel, tmp_path):
    """An object built without the header's types (as another build would):
    --type event alone fails; with --header exitsnoop.h the records decode."""
    plain = b.build_info(BPF_DIR / "exitsnoop.bpf.c", keep_types=False).path
    me = os.getpid()
    with bpfring.load(plain, globals={"target_ppid": me}) as obj:
        obj.attach()
        assert "event" not in obj.types
        p = subprocess.Popen(["sh", "-c", "exit 5"])
        p.wait()
        # By map id: another process may have a map of the same name.
        base = ["tail", "id", str(obj.maps["exitsnoop_rb"].id), "--type", "event", "--count", "1",
                "--timeout", "20", "--json", "--no-stats"]
        proc = _bpfring(*base)
        assert proc.returncode == 1 and "event" in proc.stderr, proc.stderr
        proc = _bpfring(*base, "--header", str(BPF_DIR / "exitsnoop.h"), "-I", str(BPF_DIR))
        assert proc.returncode == 0, proc.stderr
        rec = json.loads(proc.stdout)
        assert rec["pid"] == p.pid and rec["ppid"] == me and rec["comm"] == "sh"
        assert rec["status"] == 5 and rec["times"]["start_ns"] <= rec["times"]["exit_ns"]
        for extra, msg in ((["--header", str(tmp_path / "none.h")], "no such header"),
                           (["--header", str(BPF_DIR / "exitsnoop.h"), "--btf", plain],
                            "not both")):
            proc = _bpfring(*base, *extra)
            assert proc.returncode == 2 and msg in proc.stderr, proc.stderr


def test_bench_help_lists_every_suite():
    from benchmarks import SUITES

    proc = _bpfring("bench", "--help")
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("suites (", 1)[1]
    for name in SUITES:
        assert f"\n  {name} " in listed, (name, listed)
    assert "``" not in listed and ":class:" not in listed
    assert "--targets" in proc.stdout


def test_targets_only_with_the_option():
    from benchmarks import bridge, rings

    res = rings.Result("read_array", rings.K2U, "prefilled", "bpfring: read_array")
    res.rounds = [rings._round(1000, 1_000_000)]
    ref = rings.Result("libbpf-c", rings.K2U, "prefilled", "libbpf C")
    ref.rounds = [rings._round(1000, 1_000_000)]
    results = {(r.case, r.mode): r for r in (ref, res)}
    ratios = rings._ratios(results)
    report = {
        "config": {"records": 1000, "rounds": 1, "warmup": 0, "record_size": 40},
        "machine": {"date": "d", "cpu": "c", "cpus": 2, "kernel": "k", "python": "p",
                    "numpy": "n"},
        "results": [results[k].to_json(ratios[k]) for k in results],
        "memory": [],
        "targets": rings.evaluate_targets(results, []),
    }
    assert report["targets"]
    plain = rings.render_table(report)
    assert "\ntargets" not in plain and "MET" not in plain and "MISS" not in plain
    shown = rings.render_table(report, True)
    # Every target row is there, evaluated (MET / NOT MET) or not run here (n/a).
    assert "\ntargets" in shown and ("MET" in shown or "n/a" in shown)
    assert "--targets" in bridge.build_parser().format_help()
