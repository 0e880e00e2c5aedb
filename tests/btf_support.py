"""Shared test material for the bpfring.btf tests (tests/test_btf_reader.py and
tests/test_btf_codec.py).

tests/bpf/btf_types.c is compiled twice: by clang for the BPF target (the BTF
under test) and by the host C compiler into a program that prints the layout
truth (sizeof/offsetof of every member, bitfield masks, instances filled with
known values).  Codecs built from BTF must agree with it byte for byte.
:class:`Blob` builds BTF by hand for what clang 14 cannot emit (ENUM64,
old-style bitfields, split BTF) and for malformed input.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bpfring.btf import BTF, Kind

FIXTURE = Path(__file__).parent / "bpf" / "btf_types.c"


# --------------------------------------------------------------------------------------
# Building the fixture
# --------------------------------------------------------------------------------------


class CTruth:
    """What the host C compiler says about the fixture's types."""

    def __init__(self, output: str) -> None:
        self.sizes: dict[str, int] = {}
        self.offsets: dict[str, tuple[str, int, int]] = {}
        self.hexes: dict[str, bytes] = {}
        for line in output.splitlines():
            tag, rest = line.split(" ", 1)
            if tag == "SIZE":
                name, n = rest.rsplit(" ", 1)
                self.sizes[name] = int(n)
            elif tag == "OFF":
                path, off, size = rest.rsplit(" ", 2)
                tname, member = path.split(".", 1)
                self.offsets[path] = (tname, int(off), int(size))
                assert member
            elif tag == "HEX":
                name, data = rest.rsplit(" ", 1)
                self.hexes[name] = bytes.fromhex(data)


# One build per session, shared by the test modules' session fixtures (each
# module declares the few fixtures it uses; see fixture_* below).
_SESSION: dict[str, Any] = {}


def fixture_built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The fixture compiled for BPF (``obj``) and the host's layout truth (``truth``)."""
    if "built" not in _SESSION:
        clang, cc = shutil.which("clang"), shutil.which("cc") or shutil.which("gcc")
        if not clang or not cc:
            pytest.skip("clang and a host C compiler are needed")
        out = tmp_path_factory.mktemp("btf")
        obj, host = out / "btf_types.o", out / "btf_types_host"
        subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-c", str(FIXTURE), "-o",
                        str(obj)], check=True)  # fmt: skip
        subprocess.run([cc, "-O0", "-o", str(host), str(FIXTURE)], check=True)
        truth = CTruth(
            subprocess.run([str(host)], check=True, capture_output=True, text=True).stdout
        )
        _SESSION["built"] = {"obj": obj, "truth": truth, "dir": out}
    built: dict[str, Any] = _SESSION["built"]
    return built


def fixture_btf(built: dict[str, Any]) -> BTF:
    """The fixture's BTF, parsed once per session."""
    if "btf" not in _SESSION:
        _SESSION["btf"] = BTF.from_elf(built["obj"])
    btf: BTF = _SESSION["btf"]
    return btf


def fixture_linked(built: dict[str, Any]) -> Path:
    """The object after libbpf's static linker, which fills in DATASEC offsets."""
    if "linked" not in _SESSION:
        bpftool = shutil.which("bpftool")
        if not bpftool:
            pytest.skip("bpftool is needed to link the object")
        out = built["dir"] / "linked.o"
        subprocess.run([bpftool, "gen", "object", str(out), str(built["obj"])], check=True)
        _SESSION["linked"] = out
    linked: Path = _SESSION["linked"]
    return linked


# --------------------------------------------------------------------------------------
# Hand-built blobs
# --------------------------------------------------------------------------------------


class Blob:
    """A tiny BTF writer, to build blobs with exactly the records a test needs."""

    def __init__(self, start_id: int = 1, str_start: int = 0) -> None:
        self.strs = bytearray(b"" if str_start else b"\0")
        self.str_start = str_start
        self.types = bytearray()
        self.next_id = start_id

    def s(self, text: str) -> int:
        if not text:
            return 0
        off = self.str_start + len(self.strs)
        self.strs += text.encode() + b"\0"
        return off

    def add(self, name: str, kind: Kind, su: int, *words: int, vlen: int = 0,
            kflag: int = 0) -> int:  # fmt: skip
        info = (kflag << 31) | (int(kind) << 24) | vlen
        self.types += struct.pack("<III", self.s(name), info, su)
        self.types += struct.pack(f"<{len(words)}I", *(w & 0xFFFFFFFF for w in words))
        self.next_id += 1
        return self.next_id - 1

    def int_(self, name: str, size: int, signed: bool = False, bits: int = 0, off: int = 0) -> int:
        encoding = (int(signed) << 24) | (off << 16) | (bits or size * 8)
        return self.add(name, Kind.INT, size, encoding)

    def build(self, magic: int = 0xEB9F) -> bytes:
        hdr = struct.pack("<HBBIIIII", magic, 1, 0, 24, 0, len(self.types), len(self.types),
                          len(self.strs))  # fmt: skip
        return hdr + bytes(self.types) + bytes(self.strs)


def all_kinds_blob() -> bytes:
    b = Blob()
    u32 = b.int_("u32", 4)
    s8 = b.int_("s8", 1, signed=True)
    ptr = b.add("", Kind.PTR, u32)
    arr = b.add("", Kind.ARRAY, 0, u32, u32, 3)
    st = b.add("pair", Kind.STRUCT, 8, b.s("x"), u32, 0, b.s("y"), s8, 32, vlen=2)
    b.add("either", Kind.UNION, 4, b.s("x"), u32, 0, b.s("y"), s8, 0, vlen=2)
    b.add("e", Kind.ENUM, 4, b.s("A"), 1, b.s("B"), -3, vlen=2, kflag=1)
    b.add("fwd_u", Kind.FWD, 0, kflag=1)
    b.add("pair_t", Kind.TYPEDEF, st)
    vol = b.add("", Kind.VOLATILE, u32)
    const = b.add("", Kind.CONST, vol)
    b.add("", Kind.RESTRICT, ptr)
    proto = b.add("", Kind.FUNC_PROTO, u32, b.s("a"), u32, 0, 0, vlen=2)
    b.add("fn", Kind.FUNC, proto, vlen=2)
    var = b.add("gv", Kind.VAR, arr, 1)
    b.add(".data", Kind.DATASEC, 12, var, 0, 12, vlen=1)
    b.add("f32", Kind.FLOAT, 4)
    b.add("tag", Kind.DECL_TAG, st, 1)
    b.add("user", Kind.TYPE_TAG, const)
    b.add("big", Kind.ENUM64, 8, b.s("HUGE"), 0, 0x80000000, b.s("ONE"), 1, 0, vlen=2)
    b.add("sbig", Kind.ENUM64, 8, b.s("MINUS"), 0xFFFFFFFE, 0xFFFFFFFF, vlen=1, kflag=1)
    return b.build()


def btf_of_source(tmp_path_factory: pytest.TempPathFactory, src: str, name: str = "t") -> BTF:
    """The BTF of a small C translation unit compiled for the BPF target
    (types appear only where the source uses them: give each an instance)."""
    if shutil.which("clang") is None:
        pytest.skip("clang is needed")
    d = tmp_path_factory.mktemp(name)
    (d / f"{name}.c").write_text(src)
    subprocess.run(["clang", "-g", "-O2", "-target", "bpf", "-c", str(d / f"{name}.c"),
                    "-o", str(d / f"{name}.o")], check=True)
    return BTF.from_elf(d / f"{name}.o")


def fake_perf_ring(codec: Any, rnd: Any, size: int,
                   sizes: tuple[int, ...] = (40, 40, 44, 100, 8, 0)) -> tuple[Any, bytearray]:
    """A perf ring's metadata page and data area filled with samples of
    ``codec`` (struct ev: seq, pid, comm) of mixed sizes (``sizes``, some too
    short for the struct), lost reports, some wrapping the end."""
    from bpfring import _perfcore

    meta = memoryview(bytearray(4096)).cast("Q")
    data = bytearray(size)
    head = tail = rnd.randrange(0, 10 * size, 8)
    while True:
        if rnd.random() < 0.1:
            rec = _perfcore.lost_record(rnd.randrange(1, 9))
        else:
            n = rnd.choice(sizes)
            payload = (codec.encode(seq=rnd.randrange(1 << 64), pid=rnd.randrange(99),
                                    comm=rnd.choice(["a", "bash", "caf\u00e9"]))
                       + rnd.randbytes(max(0, n - 40)))[:n]
            rec = _perfcore.sample_record(payload)
        if head + len(rec) - tail > size:
            break
        for i, b in enumerate(rec):
            data[(head + i) % size] = b
        head += len(rec)
    meta[_perfcore.DATA_HEAD // 8] = head
    meta[_perfcore.DATA_TAIL // 8] = tail
    return meta, data
