"""Smoke tests of ``bpfring bench rings``, and of where the benchmarks live.

The benchmark runs in a subprocess with ``--quick --json``; the test checks
the report's structure and that every case that ran reports a positive rate.
Nothing here asserts on timings: those belong to the benchmark's own output.
The suites are the checkout's ``benchmarks/`` package, not part of the
installed library: ``bpfring bench`` finds them from a checkout and says what
to do from a wheel, and they use bpfring's public API only.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
if str(ROOT) not in sys.path:  # the checkout's benchmarks package
    sys.path.insert(0, str(ROOT))

from benchmarks import rings  # noqa: E402


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_bench_rings_quick_json(checkout, kernel, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bpfring", "bench", "rings", "--quick", "--json", "-q"]
    plot = tmp_path / "rings.png"
    if _has_matplotlib():
        cmd += ["--plot", str(plot)]
    # BPFRING_CACHE_DIR (set by conftest) keeps the builds in the session's cache.
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout)

    assert report["suite"] == "rings"
    cfg = report["config"]
    assert cfg["record_size"] == 40
    assert cfg["records"] > 0 and cfg["rounds"] > 0
    for key in ("date", "cpu", "cpus", "kernel", "python", "numpy"):
        assert report["machine"][key], key

    got = {(r["case"], r["mode"]) for r in report["results"]}
    want = {(c.name, m) for c in rings.CASES for m in c.modes}
    assert got == want
    for r in report["results"]:
        what = f"{r['case']} ({r['mode']})"
        assert r["status"] in ("ok", "skipped"), f"{what}: {r['status']}: {r['reason']}"
        if r["status"] == "skipped":
            assert r["reason"], what
            assert r["median_rate"] is None
            continue
        assert len(r["rounds"]) == cfg["rounds"], what
        for rnd in r["rounds"]:
            assert rnd["records"] == cfg["records"], what
            assert rnd["seconds"] > 0 and rnd["rate"] > 0, what
        assert r["median_rate"] > 0 and r["median_gbps"] > 0, what
        assert r["min_rate"] <= r["median_rate"] <= r["max_rate"], what
        if r["mode"] == "live" and r["direction"] == "k2u":
            assert r["lost"] >= 0, what
        if r["case"] == rings.REFERENCE[r["direction"]]:
            assert r["ratio_to_reference"] == pytest.approx(1.0)

    assert {m["api"] for m in report["memory"]} == set(rings.RSS_APIS)
    for m in report["memory"]:
        assert m["status"] in ("ok", "skipped"), f"rss {m['api']}: {m['reason']}"
        if m["status"] == "ok":
            assert m["records"] > 0 and m["rate"] > 0
            assert m["rss_first"] > 0 and isinstance(m["growth"], int)

    assert report["targets"]
    for t in report["targets"]:
        assert t["met"] in (True, False, None), t
        assert t["met"] is not None or t.get("why"), t

    if _has_matplotlib():
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rings_table_from_report() -> None:
    """The human table renders from a report (no kernel needed)."""
    res = rings.Result("read_array", rings.K2U, "prefilled", "bpfring: read_array")
    res.rounds = [rings._round(1000, 1_000_000), rings._round(1000, 2_000_000)]
    ref = rings.Result("libbpf-c", rings.K2U, "prefilled", "libbpf C")
    ref.rounds = [rings._round(1000, 1_000_000)]
    skipped = rings.Result("bcc", rings.K2U, "prefilled", "BCC", status="skipped",
                           reason="no bcc here")
    limit = rings.Result("np-copy", rings.K2U, "prefilled", "numpy: strided payload copy")
    limit.rounds = [rings._round(1000, 500_000)]  # read_array's target compares with it
    results = {(r.case, r.mode): r for r in (ref, res, skipped, limit)}
    ratios = rings._ratios(results)
    assert ratios[("read_array", "prefilled")] == pytest.approx(0.75)
    report = {
        "config": {"records": 1000, "rounds": 2, "warmup": 0, "record_size": 40},
        "machine": {"date": "d", "cpu": "c", "cpus": 2, "kernel": "k", "python": "p",
                    "numpy": "n"},
        "results": [results[k].to_json(ratios[k]) for k in results],
        "memory": [],
        "targets": rings.evaluate_targets(results, []),
    }
    text = rings.render_table(report)
    assert "bpfring: read_array" in text and "0.75x" in text
    assert "SKIPPED" in text and "no bcc here" in text
    read_array_target = next(t for t in report["targets"] if t["case"] == "read_array")
    assert read_array_target["met"] is False and "short" in read_array_target["gap"]


def test_bench_rings_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        rings.main(["--only", "nosuchcase"])
    assert e.value.code == 2
    assert "unknown case" in capsys.readouterr().err


def test_bench_rings_plot_needs_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert rings.main(["--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "bpfring[plot]" in err


# --- where the benchmarks live ------------------------------------------------------------


def test_benchmarks_use_the_public_api_only() -> None:
    """No benchmark imports or reaches into a private bpfring module."""
    public_modules = {"bpfring", "bpfring.btf"}
    files = sorted(BENCH_DIR.rglob("*.py"))
    assert {p.name for p in files} >= {"__init__.py", "bridge.py", "procs.py", "cases.py"}
    bad = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                bad += [f"{where} import {a.name}" for a in node.names
                        if a.name.startswith("bpfring") and a.name not in public_modules]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bpfring"):
                if node.level or node.module not in public_modules:
                    bad.append(f"{where} from {node.module} import ...")
                bad += [f"{where} from {node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_")]
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id == "bpfring" and node.attr.startswith("_")
                  and not node.attr.startswith("__")):
                bad.append(f"{where} bpfring.{node.attr}")
    assert not bad, "private bpfring API in benchmarks/: " + ", ".join(bad)


def test_no_bench_files_in_the_package() -> None:
    pkg = ROOT / "src" / "bpfring"
    assert not (pkg / "bench").exists()
    text = (ROOT / "pyproject.toml").read_text()
    assert "bench" not in text.split("[tool.setuptools.package-data]")[1].split("[")[0]
    for c in ("rings.bpf.c", "libbpf_consume.c", "libbpf_produce.c"):
        f = BENCH_DIR / c
        assert f.is_file() and not f.is_symlink(), c


def test_bench_from_an_installed_package_says_what_to_do(tmp_path: Path) -> None:
    """bpfring imported from outside a checkout (as from a wheel): one line
    on stderr with the hint, exit status 1, no traceback."""
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "src" / "bpfring", site / "bpfring",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import bpfring.cli as c; "
            "assert c.__file__.startswith(sys.argv[1]), c.__file__; "
            "sys.exit(c.main(sys.argv[2:]))")
    for args in (["bench"], ["bench", "rings", "--quick"]):
        out = subprocess.run([sys.executable, "-c", code, str(site), *args], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("bpfring: error: the benchmarks are not installed")
        assert "(hint: in a checkout of bpfring" in lines[0] and "bench_rings.py" in lines[0]


def test_bench_entry_points_from_a_checkout(checkout) -> None:
    """``bpfring bench``, ``python -m benchmarks`` and the scripts run the same suites."""
    for suite, cmd in (("rings", ["-m", "bpfring", "bench", "rings", "--help"]),
                       ("rings", ["-m", "bpfring", "bench", "--help"]),
                       ("bridge", ["-m", "benchmarks", "bridge", "--help"]),
                       ("rings", [str(BENCH_DIR / "bench_rings.py"), "--help"]),
                       ("bridge", [str(BENCH_DIR / "bench_bridge.py"), "--help"])):
        out = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, (cmd, out.stderr)
        assert out.stdout.startswith(f"usage: bpfring bench {suite}"), (cmd, out.stdout)
    out = subprocess.run([sys.executable, "-m", "bpfring", "bench", "nosuch"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown benchmark suite 'nosuch'" in out.stderr


def test_bench_perf_quick_json(checkout, kernel) -> None:
    """The perf buffer suite runs every case it can against the kernel, each
    delivering exactly the records written (the suite checks count and seq
    sum), and reports ratios measured in the same run."""
    cmd = [sys.executable, "-m", "bpfring", "bench", "perf", "--quick", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout)
    assert set(report["rate"]) >= {"libbpf-c", "libbpf-ctypes", "callback", "typed",
                                   "read_array"}
    assert all(r > 0 for r in report["rate"].values())
    assert "callback/libbpf-c" in report["ratios"]
    assert set(report["skipped"]) <= {"bcc"}
    assert report["machine"]["cpu"]


def test_write_many_limit_rows_do_write_many_s_work(checkout) -> None:
    """objects_limits.c, the C behind the objects-read and objects-copy rows:
    read_objects reads every payload byte of the list (its sum proves it),
    copy_objects leaves exactly the samples write_many would (header
    {len, 0}, payload, zero padding to 8 bytes), and both refuse anything but
    a list of exact bytes (0)."""
    import ctypes
    import random
    import struct

    from benchmarks.rings.procs import build_baseline

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    lib = ctypes.PyDLL(str(build_baseline("objects_limits", python_lib=True)))
    read, copy = lib.read_objects, lib.copy_objects
    for fn in (read, copy):
        fn.restype = ctypes.c_uint64
    read.argtypes = [ctypes.py_object]
    copy.argtypes = [ctypes.py_object, ctypes.c_void_p]
    rnd = random.Random(3)
    items = [rnd.randbytes(rnd.choice([0, 1, 7, 8, 13, 40, 300])) for _ in range(500)]
    want_sum = 0
    for b in items:
        want_sum += len(b) + sum(struct.unpack_from(f"<{len(b) // 8}Q", b))
        want_sum += int.from_bytes(b[len(b) // 8 * 8:], "little")  # the zero-padded last word
    assert read(items) == want_sum % 2**64
    want = b"".join(struct.pack("<II", len(b), 0) + b + bytes(-len(b) % 8) for b in items)
    dst = (ctypes.c_char * (len(want) + 64)).from_buffer(bytearray(b"\xff" * (len(want) + 64)))
    assert copy(items, ctypes.addressof(dst)) == len(want)
    assert bytes(dst)[:len(want)] == want
    assert bytes(dst)[len(want):] == b"\xff" * 64
    assert read((b"a",)) == 0 and read([b"a", bytearray(b"b")]) == 0
    assert copy([b"a", "b"], ctypes.addressof(dst)) == 0
