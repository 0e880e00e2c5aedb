"""The bpfring command line, run in subprocesses against real maps."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
from conftest import produce_ctx

from bpfring._fs import ensure_bpffs


def cli(*args: str, stdin: str | None = None, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "bpfring", *args], capture_output=True,
                          text=True, input=stdin, timeout=timeout)


def _one_line_error(proc, code: int = 1) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bpfring: error:")
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_everywhere():
    for cmd in ([], ["demo"], ["list"], ["info"], ["tail"], ["write"]):
        proc = cli(*cmd, "--help")
        assert proc.returncode == 0
        assert "usage: bpfring" in proc.stdout


def test_version_names_the_accelerator_state():
    from conftest import REQUIRE_ACCEL

    import bpfring

    proc = cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"bpfring {bpfring.__version__} (C accelerator: ")
    pure = os.environ.get("BPFRING_PURE_PYTHON") == "1"
    if pure:
        assert "off (BPFRING_PURE_PYTHON=1)" in proc.stdout
    elif REQUIRE_ACCEL:
        assert "C accelerator: active)" in proc.stdout
    env = dict(os.environ, BPFRING_PURE_PYTHON="1")
    off = subprocess.run([sys.executable, "-m", "bpfring", "--version"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert "C accelerator: off" in off.stdout


def test_list_and_info(echo):
    rb = echo.ring_buffer("out_ring")
    urb = echo.user_ring_buffer("in_ring")
    urb.write(b"12345678")
    ensure_bpffs()
    pin = f"/sys/fs/bpf/bpfring-cli-{os.getpid()}"
    from bpfring import _sys

    _sys.obj_pin(urb.fileno(), pin)
    try:
        proc = cli("list", "--json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)  # one JSON document, as bpftool prints
        assert isinstance(doc, list)
        rings = {r["id"]: r for r in doc}
        assert rings[urb.map_id]["type"] == "user_ringbuf"
        assert rings[urb.map_id]["pending"] == 16
        assert rings[urb.map_id]["pinned"] == [pin]
        assert rings[rb.map_id]["lost"] == 0  # found through the program using both maps
        table = cli("list").stdout.splitlines()
        assert table[0].split()[:4] == ["ID", "NAME", "TYPE", "SIZE"]
        assert any(line.split()[0] == str(urb.map_id) and "in_ring" in line for line in table)

        echo.programs["produce"].run(ctx=produce_ctx(100, small=True))
        small = echo.ring_buffer("small_ring")
        info = json.loads(cli("info", "id", str(small.map_id), "--json").stdout)
        assert info["lost"] == 85 and info["pending"] == 15 * 264
        text = cli("info", "pinned", pin).stdout
        assert "user_ringbuf" in text and "pending bytes:  16" in text
    finally:
        os.unlink(pin)


def test_tail_hex_json_and_typed(echo):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(3, seq_base=40))
    proc = cli("tail", "id", str(rb.map_id), "--count", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr and "consumes" in proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [struct.unpack_from("<I", bytes.fromhex(r["data"]))[0] for r in recs] == [40, 41]
    assert all(r["size"] == 256 for r in recs)
    # Typed, with the type found in the BTF of the program that uses the map.
    proc = cli("tail", "id", str(rb.map_id), "--count", "1", "--type", "rec256")
    assert proc.returncode == 0, proc.stderr
    assert "rec256(" in proc.stdout and "seq=42" in proc.stdout
    # --timeout ends a tail that sees nothing.
    proc = cli("tail", "id", str(rb.map_id), "--timeout", "0.2")
    assert proc.returncode == 0 and proc.stdout == ""


def test_write_hex_json_stdin(echo, echo_path):
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    ref = ["id", str(urb.map_id)]
    assert cli("write", *ref, "--hex", "01 02 ff").returncode == 0
    proc = cli("write", *ref, "--type", "test_config", "--json",
               '{"id": 5, "label": "hi", "limit": 9}')
    assert proc.returncode == 0, proc.stderr
    proc = cli("write", *ref, "-", "--type", "test_config", "--btf", str(echo_path),
               stdin='{"id": 6}\n{"label": "x"}\n')
    assert proc.returncode == 0, proc.stderr
    assert cli("write", *ref, "-", stdin="aabb\n\"ccdd\"\n").returncode == 0
    assert echo.programs["echo"].run() == 6
    got = rb.read()
    assert got[0] == b"\x01\x02\xff"
    assert got[1] == struct.pack("<I12sQ", 5, b"hi", 9)
    assert got[2] == struct.pack("<I12sQ", 6, b"", 0)
    assert got[3] == struct.pack("<I12sQ", 0, b"x", 0)
    assert got[4:] == [b"\xaa\xbb", b"\xcc\xdd"]


def test_write_types_from_a_header(echo, tmp_path):
    """``write --type T --header FILE``, the counterpart of ``tail --header``:
    the echo object has no ``struct cmd``; the header (which includes another
    from an -I directory) gives it."""
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    ref = ["id", str(urb.map_id)]
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "ops.h").write_text(
        "#pragma once\nenum bpfring_op { BPFRING_OP_NONE, BPFRING_OP_SET = 3 };\n")
    header = tmp_path / "cmd.h"
    header.write_text('#pragma once\n#include "ops.h"\n'
                      "struct cmd { enum bpfring_op op; __u64 arg; char tag[8]; };\n")
    typed = ["--type", "cmd", "--json", '{"op": "BPFRING_OP_SET", "arg": 7, "tag": "hi"}']
    err = _one_line_error(cli("write", *ref, *typed))
    assert "cmd" in err  # not in the object's BTF
    proc = cli("write", *ref, *typed, "--header", str(header), "-I", str(tmp_path / "inc"))
    assert proc.returncode == 0, proc.stderr
    proc = cli("write", *ref, "-", "--type", "cmd", "--header", str(header), "-I",
               str(tmp_path / "inc"), stdin='{"arg": 9}\n')
    assert proc.returncode == 0, proc.stderr
    assert echo.programs["echo"].run() == 2
    assert rb.read() == [struct.pack("<I4xQ8s", 3, 7, b"hi"), struct.pack("<I4xQ8s", 0, 9, b"")]
    err = _one_line_error(cli("write", *ref, *typed, "--header", str(tmp_path / "none.h")),
                          code=2)
    assert "no such header" in err
    err = _one_line_error(cli("write", *ref, *typed, "--header", str(header), "--btf",
                              str(header)), code=2)
    assert "not both" in err
    err = _one_line_error(cli("write", *ref, *typed, "--header", str(header)))
    assert "ops.h" in err  # the include directory was needed
    assert echo.programs["echo"].run() == 0  # none of the failures wrote anything


def test_cli_errors_are_one_line(echo):
    urb = echo.user_ring_buffer("in_ring")
    err = _one_line_error(cli("tail", "id", "999999999", "--count", "1"))
    assert "hint:" in err
    err = _one_line_error(cli("tail", "id", str(urb.map_id), "--count", "1"))
    assert "user_ringbuf" in err and "hint: use UserRingBuffer" in err
    err = _one_line_error(cli("write", "id", str(urb.map_id), "--hex", "zz"), code=2)
    assert "not hex" in err
    err = _one_line_error(cli("write", "id", str(urb.map_id)), code=2)
    assert "nothing to write" in err
    err = _one_line_error(cli("write", "id", str(urb.map_id), "-", stdin="00" * urb.size))
    assert "can never fit" in err
    err = _one_line_error(cli("write", "id", str(urb.map_id), "--type", "no_such_type",
                              "--json", "{}"))
    assert "no_such_type" in err and "typed global" in err
    proc = cli("info", "bogus", "1")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


@pytest.mark.parametrize("cmd", [["list"], ["info", "name", "in_ring"]])
def test_commands_exit_zero(echo, cmd):
    echo.user_ring_buffer("in_ring")
    proc = cli(*cmd)
    # "name in_ring" may match several maps while other tests run: either it
    # works, or it says so in one line.
    if proc.returncode:
        assert "matches several maps" in _one_line_error(proc)
    else:
        assert proc.stdout
