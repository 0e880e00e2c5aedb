"""Fuzzing ``bpfring.open(bytes)`` and ``bpfring.load(bytes)`` with mutated
ELF objects (issue 11).

Seeds: objects the tests build from tests/bpf (echo, maps, perf_prog).
Mutations: truncation, byte flips and 32/64-bit words set to values that
matter (0, all ones, the file size, offsets just past an end) in the ELF
header, the section table, the symbol table, the relocations, ``.BTF``,
``.BTF.ext`` and the string tables, and string offsets pushed out of range.
Whatever the mutation, open and load either succeed or raise a clean
:class:`~bpfring.LoadError`, within a time bound, and never kill the process.

libbpf 1.1 crashes (SIGSEGV) on some of these inputs, so every example runs in
a worker process: a crash fails the test with the offending bytes saved,
instead of taking the test run down.  ``BPFRING_FUZZ_EXAMPLES`` sets the number
of examples (default small, so ``make test`` stays within seconds).
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import BPF_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bpfring

EXAMPLES = int(os.environ.get("BPFRING_FUZZ_EXAMPLES", "40"))
TIME_LIMIT = 20.0  # seconds per example (open + load; the CI machine is shared and slow)
SEEDS = ("echo", "maps", "perf_prog")

# The worker: reads length-prefixed objects on stdin, opens and loads each,
# answers one JSON line per object.  Anything but success or LoadError is
# reported with its traceback.
_WORKER = r"""
import json, struct, sys, traceback
import bpfring
from bpfring import LoadError
inp, out = sys.stdin.buffer, sys.stdout
while True:
    head = inp.read(4)
    if len(head) < 4:
        break
    data = inp.read(struct.unpack("<I", head)[0])
    try:
        obj = bpfring.open(data)
        try:
            obj.load()
            res = {"ok": "loaded"}
        except LoadError as e:
            res = {"ok": "LoadError at load", "msg": str(e)[:200]}
        finally:
            obj.close()
    except LoadError as e:
        res = {"ok": "LoadError at open", "msg": str(e)[:200]}
    except BaseException as e:
        res = {"bad": type(e).__name__, "tb": traceback.format_exc()}
    out.write(json.dumps(res) + "\n")
    out.flush()
"""


def sections(data: bytes) -> dict[str, tuple[int, int, int, int]]:
    """name -> (index, sh_type, offset, size) of a well-formed seed (the
    test's own reader: it does not trust the code under test)."""
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    hdrs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + 64 * i) for i in range(shnum)]
    names = hdrs[shstrndx][4]
    out = {}
    for i, h in enumerate(hdrs):
        end = data.index(b"\0", names + h[0])
        out[data[names + h[0]:end].decode()] = (i, h[1], h[4], h[5])
    out["<ehdr>"] = (-1, 0, 0, 64)
    out["<shdrs>"] = (-1, 0, shoff, 64 * shnum)
    return out


class Seed:
    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data
        secs = sections(data)
        # The regions worth mutating, by name.
        self.regions = {k: (off, size) for k, (_i, t, off, size) in secs.items()
                        if size and t != 8 and (k.startswith((".BTF", ".rel", ".symtab",
                                                              ".strtab", "<", ".maps")))}
        self.btf = secs[".BTF"][2:]
        self.ext = secs.get(".BTF.ext", (0, 0, 0, 0))[2:]

    def name_offsets(self) -> list[int]:
        """File offsets of every name_off word of the .BTF type records."""
        off, _size = self.btf
        hdr_len, type_off, type_len = struct.unpack_from("<III", self.data, off + 4)
        start = off + hdr_len + type_off
        fixed = {1: 1, 3: 3, 14: 1, 17: 1}
        per = {4: 3, 5: 3, 6: 2, 13: 2, 15: 3, 19: 3}
        out, i = [], 0
        while i < type_len:
            out.append(start + i)
            info = struct.unpack_from("<I", self.data, start + i + 4)[0]
            kind = (info >> 24) & 0x1F
            i += 12 + 4 * (fixed.get(kind, 0) + per.get(kind, 0) * (info & 0xFFFF))
        return out


@pytest.fixture(scope="module")
def seeds(kernel) -> list[Seed]:
    return [Seed(n, bpfring.build(BPF_DIR / f"{n}.bpf.c").read_bytes()) for n in SEEDS]


class Worker:
    """The subprocess that opens and loads objects; restarted after a crash."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return self.proc

    def run(self, data: bytes) -> dict[str, Any]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(struct.pack("<I", len(data)) + data)
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([proc.stdout], [], [], TIME_LIMIT)
        if not ready:
            proc.kill()
            proc.wait()
            return {"bad": f"no answer within {TIME_LIMIT} s"}
        line = proc.stdout.readline()
        if not line:
            code = proc.wait()
            return {"bad": f"worker died (exit status {code})"}
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(30)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


def check(worker: Worker, data: bytes, how: str) -> dict[str, Any]:
    res = worker.run(data)
    if "bad" in res:
        fd, path = tempfile.mkstemp(prefix="bpfring-elf-fuzz-", suffix=".o")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        pytest.fail(f"{how}: {res['bad']} (object saved to {path})\n{res.get('tb', '')}")
    return res


_INTERESTING = [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 24, 64, 4096]


@st.composite
def mutations(draw: st.DrawFn, seeds: list[Seed]) -> tuple[bytes, str]:
    seed = draw(st.sampled_from(seeds))
    data = bytearray(seed.data)
    kind = draw(st.sampled_from(["truncate", "flip", "word", "qword", "btf_name", "ext_word"]))
    if kind == "truncate":
        at = draw(st.integers(0, len(data) - 1))
        return bytes(data[:at]), f"{seed.name} truncated to {at} bytes"
    if kind == "btf_name":
        where = draw(st.sampled_from(seed.name_offsets()))
        value = draw(st.sampled_from([seed.btf[1], 0x7FFFFFFF, 0xFFFFFFFF, 1 << 24]))
        struct.pack_into("<I", data, where, value)
        return bytes(data), f"{seed.name} .BTF name_off at {where:#x} = {value:#x}"
    if kind == "ext_word" and seed.ext[1] >= 8:
        off, size = seed.ext
        where = off + 4 * draw(st.integers(0, size // 4 - 1))
        value = draw(st.sampled_from([*_INTERESTING, seed.btf[1], size]))
        struct.pack_into("<I", data, where, value)
        return bytes(data), f"{seed.name} .BTF.ext word at {where:#x} = {value:#x}"
    region = draw(st.sampled_from(sorted(seed.regions)))
    off, size = seed.regions[region]
    if kind in ("word", "qword", "ext_word"):
        width = 8 if kind == "qword" else 4
        if size < width:
            return bytes(data), f"{seed.name} unchanged"
        where = off + width * draw(st.integers(0, size // width - 1))
        value = draw(st.sampled_from([*_INTERESTING, len(data), len(data) + 1]))
        struct.pack_into("<Q" if width == 8 else "<I", data, where, value)
        return bytes(data), f"{seed.name} {region} word at {where:#x} = {value:#x}"
    flips = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)),
                          min_size=1, max_size=8))
    for i, b in flips:
        data[off + i] = b
    return bytes(data), f"{seed.name} {region} bytes {[(hex(off + i), b) for i, b in flips]}"


def test_seeds_load_cleanly(seeds, worker):
    for seed in seeds:
        assert check(worker, seed.data, seed.name)["ok"] == "loaded"
        bpfring.load(seed.data).close()  # the check passes what clang makes


def test_mutated_objects_fail_cleanly(seeds, worker):
    results: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize="CI" in os.environ,
              suppress_health_check=list(HealthCheck))
    @given(mutations(seeds))
    def fuzz(case: tuple[bytes, str]) -> None:
        data, how = case
        res = check(worker, data, how)
        results[res["ok"]] = results.get(res["ok"], 0) + 1

    fuzz()
    assert sum(results.values()) >= 1


def test_known_libbpf_crashers_are_refused(seeds, worker):
    """Inputs that made libbpf 1.1.2 die with SIGSEGV before bpfring checked
    objects (found by this fuzzer): a .BTF name offset past the strings (for
    the types libbpf looks up by name: map definitions, variables, ...; it
    passes the NULL name to strcmp), a member type id past the types."""
    echo = seeds[0]
    cases = []
    for tid, where in enumerate(echo.name_offsets(), 1):
        bad = bytearray(echo.data)
        struct.pack_into("<I", bad, where, 0x7FFFFFFF)
        cases.append((bytes(bad), f"name offset of type {tid}"))
    bad = bytearray(echo.data)  # the member type of the first struct with members
    for start in echo.name_offsets():
        info = struct.unpack_from("<I", echo.data, start + 4)[0]
        if (info >> 24) & 0x1F == 4 and info & 0xFFFF:
            struct.pack_into("<I", bad, start + 12 + 4, 0x00DC0000)
            break
    cases.append((bytes(bad), "member type"))
    for data, what in cases:
        res = check(worker, data, what)
        assert res["ok"] == "LoadError at open", (what, res)
        assert "not a valid BPF object" in res["msg"] and "LIBBPF_ERRNO__FORMAT" in res["msg"]
    with pytest.raises(bpfring.LoadError, match="name offset"):
        bpfring.open(cases[0][0])
    p = Path(tempfile.mkdtemp()) / "bad.bpf.o"
    p.write_bytes(cases[0][0])
    try:
        with pytest.raises(bpfring.LoadError, match=str(p)):
            bpfring.load(p)  # a file gets the same check
    finally:
        p.unlink()
        p.parent.rmdir()


@pytest.mark.parametrize("junk", [b"", b"\x7f", b"\x7fEL", b"ELF\x7f" * 20])
def test_not_an_elf_at_all(kernel, junk):
    with pytest.raises(bpfring.LoadError):
        bpfring.load(junk)
