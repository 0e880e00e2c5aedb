"""CLI conventions (bpftool-style JSON, stdin after options, tail on the
other map types, --where, --stats), in subprocesses against real maps."""

from __future__ import annotations

import json
import struct
import sys

import pytest
from conftest import BPF_DIR, produce_ctx
from test_cli import _one_line_error, cli
from test_cli_errors import _popen, _wait_blocked

import bpfring


def test_list_json_is_one_document(echo):
    urb = echo.user_ring_buffer("in_ring")
    proc = cli("list", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert isinstance(doc, list) and urb.map_id in {r["id"] for r in doc}
    assert len(proc.stdout.strip().splitlines()) == 1


def test_tail_json_stays_json_lines(echo):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(3, seq_base=7))
    proc = cli("tail", "id", str(rb.map_id), "--count", "3", "--json", "--type", "rec256")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["seq"] for line in proc.stdout.splitlines()] == [7, 8, 9]


def test_write_stdin_dash_after_options(echo):
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    proc = cli("write", "id", str(urb.map_id), "--type", "test_config", "--timeout", "1", "-",
               stdin='{"id": 3}\n')
    assert proc.returncode == 0, proc.stderr
    assert echo.programs["echo"].run() == 1
    assert rb.read() == [struct.pack("<I12sQ", 3, b"", 0)]
    proc = cli("write", "id", str(urb.map_id), "--hex", "00", "-", "extra")
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr


def test_tail_on_user_ring_says_use_write(echo):
    urb = echo.user_ring_buffer("in_ring")
    err = _one_line_error(cli("tail", "id", str(urb.map_id), "--count", "1"))
    assert "this is a user ring buffer (user → kernel); use write" in err
    assert f"bpfring write id {urb.map_id}" in err
    assert "no ringbuf map named" not in err


def test_tail_perf_event_array(kernel):
    from test_perfbuf import emit

    with bpfring.load(bpfring.build(BPF_DIR / "perf_prog.bpf.c")) as obj:
        mid = obj.maps["events"].id
        proc = _popen("tail", "id", str(mid), "--count", "2", "--json", "--type", "perf_rec",
                      "--where", "seq >= 101 and cpu == 0")
        _wait_blocked(proc, "tail on a perf event array")
        emit(obj, 3, 256, seq=100, cpu=0)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [101, 102]


def test_where_filters_records(echo):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(6, seq_base=40))
    proc = cli("tail", "id", str(rb.map_id), "--type", "rec256", "--json", "--timeout", "1",
               "--where", "(seq == 41 or seq > 43) and not seq in (45,) and size == 256")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["seq"] for line in proc.stdout.splitlines()] == [41, 44]


@pytest.mark.parametrize("expr, why", [
    ("__import__('os').system('true')", "not allowed"),
    ("seq.__class__ == 1", "not allowed"),
    ("seq == (lambda: 1)()", "not allowed"),
    ("[x for x in ()]", "not allowed"),
    ("nosuch == 1", "no field 'nosuch'"),
    ("seq ==", "not an expression"),
    ("seq is None", "'is' is not supported"),
])
def test_where_refuses_anything_but_the_whitelist(echo, expr, why):
    rb = echo.ring_buffer("out_ring")
    err = _one_line_error(cli("tail", "id", str(rb.map_id), "--type", "rec256", "--where", expr,
                              "--timeout", "0.1"), code=2)
    assert why in err and "hint:" in err


def test_where_compares_mismatched_types_in_one_line(echo):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(1))
    proc = cli("tail", "id", str(rb.map_id), "--type", "rec256", "--where", "seq < 'x'",
               "--timeout", "1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # after tail's one warning line
    assert last.startswith("bpfring: error: --where") and "not supported" in last


def test_stats_on_stderr(echo):
    rb = echo.ring_buffer("small_ring")
    echo.programs["produce"].run(ctx=produce_ctx(100, small=True))  # 85 lost
    proc = cli("tail", "id", str(rb.map_id), "--stats", "--timeout", "1.5")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 15
    stats = [ln for ln in proc.stderr.splitlines() if "/s" in ln]
    assert stats and "15 records" in stats[-1] and "lost 85" in stats[-1]
    # Not a terminal: no statistics unless asked.
    echo.programs["produce"].run(ctx=produce_ctx(1, small=True))
    proc = cli("tail", "id", str(rb.map_id), "--timeout", "1.5")
    assert not [ln for ln in proc.stderr.splitlines() if "/s" in ln]


def test_stats_default_on_a_terminal(echo):
    import os
    import pty
    import subprocess

    rb = echo.ring_buffer("out_ring")
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "bpfring", "tail", "id", str(rb.map_id),
                               "--timeout", "1.2"], stdout=slave, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    assert any("/s" in ln and "lost" in ln for ln in proc.stderr.splitlines())


def test_build_writes_a_loadable_object(kernel, tmp_path):
    out = tmp_path / "echo.bpf.o"
    proc = cli("build", str(BPF_DIR / "echo.bpf.c"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert out.read_bytes()[:4] == b"\x7fELF"
    with bpfring.load(out) as obj:
        assert "in_ring" in obj.maps and obj.name == "echo"
    bad = tmp_path / "bad.bpf.c"
    bad.write_text("int f(void) { return undeclared; }\n")
    err = _one_line_error(cli("build", str(bad), "-o", str(tmp_path / "bad.o")))
    assert "undeclared" in err
    assert not (tmp_path / "bad.o").exists()
    err = _one_line_error(cli("build", str(tmp_path / "nosuch.bpf.c")), code=2)
    assert "no such BPF C source" in err


def test_list_shows_programs_and_pids(echo):
    import os

    rb = echo.ring_buffer("out_ring")
    from bpfring import _sys

    progs = set()
    for name in ("echo", "produce"):
        with open(f"/proc/self/fdinfo/{echo.programs[name].fd}") as f:
            progs.add(next(int(ln.split()[1]) for ln in f if ln.startswith("prog_id:")))
    assert progs and _sys.prog_ids()
    proc = cli("list", "--json")
    assert proc.returncode == 0, proc.stderr
    ring = {r["id"]: r for r in json.loads(proc.stdout)}[rb.map_id]
    assert os.getpid() in ring["pids"]
    users = {p["id"]: p["pids"] for p in ring["programs"]}
    assert progs <= set(users)
    assert all(os.getpid() in users[p] for p in progs)
    table = cli("list").stdout.splitlines()
    assert "PROGRAMS(PIDS)" in table[0]
    row = next(line for line in table if line.split()[0] == str(rb.map_id))
    assert all(f"{p}(" in row and str(os.getpid()) in row for p in progs)
    info = cli("info", "id", str(rb.map_id)).stdout
    assert f"held by pids:   {os.getpid()}" in info


def test_bench_help_lists_every_suite(checkout):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("_suites", root / "benchmarks" / "__init__.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    proc = cli("bench", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: bpfring bench rings")  # the default suite first
    for suite in mod.SUITES:
        assert any(line.split()[:1] == [suite] for line in proc.stdout.splitlines()), suite


def test_tail_by_a_name_two_rings_share_lists_their_ids(kernel):
    """Two kernel rings of one name: tail says the name is ambiguous and
    gives the ids (it used to report the last kind it tried: "no user_ringbuf
    map named ..."), and a name nobody has is "no ... map named" once."""
    name = f"amb{__import__('os').getpid() % 100000}"
    a = bpfring.RingBuffer.create(4096, name=name)
    b = bpfring.RingBuffer.create(4096, name=name)
    try:
        err = _one_line_error(cli("tail", "name", name, "--count", "1", "--timeout", "0"))
        assert "matches several maps" in err and str(a.map_id) in err and str(b.map_id) in err
        assert "user_ringbuf map named" not in err
        err = _one_line_error(cli("tail", "name", name + "x", "--count", "1"))
        assert "no ringbuf, perf_event_array or user_ringbuf map named" in err
    finally:
        a.close()
        b.close()
