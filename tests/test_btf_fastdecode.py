"""The C record decoder (``_speedups._RecordDecoder``, built by ``btf._fast``)
against the reference, the generated pure-Python decoder.

Hypothesis builds random BTF structs (every int size incl. odd ones and
``__int128``, bools, chars, floats of every size, signed and unsigned enums,
pointers, 1-D and 2-D arrays, nested and anonymous structs and unions,
bitfield runs of every storage width incl. 128-bit ones) and random bytes,
and both decoders must give the same record: same class, same values of the
same types (``repr`` tells ``True`` from ``1``, an enum member from its int,
and NaNs compare as written), the same re-encoding, and the same error for
the same bad call.  Also checked: the process-wide choice
(``BPFRING_PURE_PYTHON=1`` selects the pure decoder) and the PerfBuffer and
``bpfring tail`` typed paths using whatever the codec decodes with.
"""

from __future__ import annotations

import importlib
import math
import os
import struct
from typing import Any

import pytest
from btf_support import Blob, btf_of_source
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfring.btf import BTF, INT_BOOL, INT_CHAR, INT_SIGNED, Codec, Kind, Record, _fast

EXAMPLES = int(os.environ.get("BPFRING_FUZZ_EXAMPLES", "150"))


def _factory() -> Any:
    try:
        sp = importlib.import_module("bpfring._speedups")
    except ImportError:
        pytest.skip("bpfring._speedups is not built")
    return sp._RecordDecoder


class Layout:
    """A random struct written into a :class:`Blob` with C layout rules."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.b = Blob()
        self.n = 0
        self.char = self.b.int_("char", 1, signed=True)
        self.b.types[-4:] = struct.pack("<I", (INT_CHAR | INT_SIGNED) << 24 | 8)

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def scalar(self) -> tuple[int, int, int]:
        """(type id, size, alignment) of a random non-composite type."""
        d, b = self.draw, self.b
        kind = d(st.sampled_from(["int", "int", "bool", "float", "enum", "ptr", "cstr", "odd"]))
        if kind == "int":
            size = d(st.sampled_from([1, 2, 4, 8]))
            return b.int_(self.name("i"), size, signed=d(st.booleans())), size, size
        if kind == "odd":  # sizes struct has no code for: int.from_bytes in the reference
            size = d(st.sampled_from([3, 16]))
            return b.int_(self.name("w"), size, signed=d(st.booleans())), size, min(size, 8)
        if kind == "bool":
            return b.add(self.name("b"), Kind.INT, 1, INT_BOOL << 24 | 8), 1, 1
        if kind == "float":
            size = d(st.sampled_from([2, 4, 8, 16]))
            return b.add(self.name("f"), Kind.FLOAT, size), size, min(size, 8)
        if kind == "enum":
            size = d(st.sampled_from([1, 2, 4, 8]))
            signed = d(st.booleans())
            lo = -(1 << (8 * size - 1)) if signed else 0
            hi = (1 << (8 * size - 1)) - 1 if signed else (1 << (8 * size)) - 1
            vals = d(st.lists(st.integers(lo, hi), min_size=0, max_size=4, unique=True))
            words: list[int] = []
            for k, v in enumerate(vals):
                name = b.s(f"E{self.n}_{k}")
                words += [name, v] if size <= 4 else [name, v & 0xFFFFFFFF, v >> 32]
            kind_ = Kind.ENUM if size <= 4 else Kind.ENUM64
            return (b.add(self.name("e"), kind_, size, *words, vlen=len(vals),
                          kflag=int(signed)), size, size)  # fmt: skip
        if kind == "ptr":
            return b.add("", Kind.PTR, self.char), 8, 8
        n = d(st.integers(0, 12))
        return b.add("", Kind.ARRAY, 0, self.char, self.char, n), n, 1

    def member(self, depth: int) -> tuple[int, int, int]:
        d = self.draw
        what = d(st.sampled_from(["scalar"] * 5 + ["array", "array2"] +
                                 (["struct", "union"] if depth < 3 else [])))
        if what == "scalar":
            return self.scalar()
        if what in ("array", "array2"):
            tid, size, align = self.scalar() if d(st.booleans()) or depth >= 3 else \
                self.struct(depth + 1, d(st.booleans()))
            n = d(st.integers(0, 6))
            arr = self.b.add("", Kind.ARRAY, 0, tid, self.char, n)
            if what == "array2":
                m = d(st.integers(0, 3))
                return self.b.add("", Kind.ARRAY, 0, arr, self.char, m), size * n * m, align
            return arr, size * n, align
        return self.struct(depth + 1, what == "union")

    def struct(self, depth: int = 0, union: bool = False) -> tuple[int, int, int]:
        d = self.draw
        members: list[tuple[str, int, int, int]] = []  # name, type id, bit offset, bits
        pos = 0  # bytes
        align = 1
        for k in range(d(st.integers(0 if depth else 1, 6))):
            mname = "" if depth and d(st.integers(0, 9)) == 0 else f"m{k}"
            if d(st.integers(0, 4)) == 0:  # a run of bitfields in 1/2/4/8/16-byte storage
                unit = d(st.sampled_from([1, 2, 4, 8, 16]))
                tid = self.b.int_(self.name("u"), unit, signed=d(st.booleans()))
                if d(st.booleans()):
                    tid = self.b.add(self.name("bb"), Kind.INT, 1, INT_BOOL << 24 | 8)
                    unit = 1
                start = 0 if union else -(-pos // min(unit, 8)) * min(unit, 8)
                bit = 0
                for j in range(d(st.integers(1, 4))):
                    nbits = d(st.integers(1, 8 * unit - bit)) if bit < 8 * unit else 0
                    if not nbits:
                        break
                    name = "" if d(st.integers(0, 7)) == 0 else f"{mname or 'a'}_{j}"
                    members.append((name, tid, start * 8 + bit, nbits))
                    if not union:
                        bit += nbits
                pos = max(pos, start + -(-bit // 8)) if not union else max(pos, unit)
                align = max(align, min(unit, 8))
                continue
            tid, size, al = self.member(depth)
            off = 0 if union else -(-pos // al) * al
            members.append((mname, tid, off * 8, 0))
            pos = max(pos, off + size) if not union else max(pos, size)
            align = max(align, al)
        size = -(-pos // align) * align + d(st.sampled_from([0, 0, 0, align]))
        words: list[int] = []
        for mname, tid, bit, nbits in members:
            words += [self.b.s(mname), tid, nbits << 24 | bit]
        kind = Kind.UNION if union else Kind.STRUCT
        tid = self.b.add(self.name("U" if union else "S"), kind, size, *words,
                         vlen=len(members), kflag=1)
        return tid, size, align


def canon(v: Any) -> Any:
    """Values as comparable data that keeps types apart (and NaN equal to NaN)."""
    if isinstance(v, Record):
        inner = tuple((f, canon(getattr(v, f))) for f in v._fields)
        return (type(v), inner, getattr(v, "_raw", None))
    if isinstance(v, list):
        return [canon(x) for x in v]
    if isinstance(v, float):
        return ("float", struct.pack("<d", v) if not math.isnan(v) else "nan")
    return (type(v), v)


def both(codec: Codec) -> tuple[Any, Any]:
    node = codec._node
    pure = codec._compiled.decode
    fast = _fast.record_decoder(node, pure, _factory())  # type: ignore[arg-type]
    assert fast is not None
    return fast, pure


def outcome(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return ("ok", canon(fn(*args, **kw)))
    except Exception as e:  # the very exception is what is compared
        return ("raised", type(e), str(e))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_c_decoder_matches_the_reference(data: st.DataObject) -> None:
    lay = Layout(data.draw)
    tid, size, _ = lay.struct()
    btf = BTF.from_bytes(lay.b.build())
    codec = btf.codec(tid)
    fast, pure = both(codec)
    for _ in range(3):
        raw = data.draw(st.binary(min_size=size, max_size=size + 16))
        assert outcome(fast, raw) == outcome(pure, raw)
        rec = fast(raw)
        assert repr(rec) == repr(pure(raw))
        assert rec._asdict().keys() == pure(raw)._asdict().keys()
        assert bytes(rec) == bytes(pure(raw))
        off = data.draw(st.integers(-2, 20))
        for buf in (raw, bytearray(raw), memoryview(raw)):
            assert outcome(fast, buf, off) == outcome(pure, buf, off)
            assert outcome(fast, buf, offset=off) == outcome(pure, buf, offset=off)
    assert outcome(fast, b"\0" * (size - 1) if size else 42) == \
        outcome(pure, b"\0" * (size - 1) if size else 42)


EVENT_SRC = r"""
struct inner { unsigned short port; unsigned char flags : 3, up : 1; };
enum kind { KA = 1, KB = 2 };
struct event {
    unsigned long long seq;
    int pid;
    enum kind kind;
    char comm[16];
    struct inner in[2];
    union { unsigned int u; float f; } either;
    double load;
    _Bool ok;
};
"""


@pytest.fixture(scope="module")
def event_btf(tmp_path_factory: pytest.TempPathFactory) -> BTF:
    return btf_of_source(tmp_path_factory, EVENT_SRC + "struct event anchor;\n", "event")


def test_records_behave_as_the_reference_s(event_btf: BTF) -> None:
    codec = event_btf.record("event")
    fast, pure = both(codec)
    raw = codec.encode(seq=2**64 - 1, pid=-7, kind=2, comm="bash", load=1.5, ok=True,
                       **{"in": [{"port": 80, "flags": 5, "up": 1}, {"port": 443}]},
                       either={"u": 0x3F800000})
    a, b = fast(raw), pure(raw)
    assert type(a) is type(b) and a == b and repr(a) == repr(b)
    assert a._asdict() == b._asdict() and bytes(a) == bytes(b) == raw
    assert a.comm == "bash" and a["in"][0].flags == 5 and a.kind.name == "KB"
    assert a.either.f == 1.0 and a.either._raw == b.either._raw
    a.pid = 9  # records stay mutable
    assert codec.decode(codec.encode(a)).pid == 9
    assert a._replace(seq=1).seq == 1
    assert fast.decode_list([raw, raw]) == [b, b]  # type: ignore[attr-defined]
    assert repr(fast).startswith("<RecordDecoder event")


def test_utf8_and_cut_strings(event_btf: BTF) -> None:
    codec = event_btf.record("event")
    fast, pure = both(codec)
    for comm in (b"caf\xc3\xa9", b"\xff\xfeab", b"x" * 16, b"", b"a\0b", b"\xe2\x82"):
        raw = codec.encode(comm=comm)
        assert fast(raw).comm == pure(raw).comm == comm.split(b"\0")[0].decode("utf-8", "replace")


def test_the_process_wide_choice(event_btf: BTF) -> None:
    codec = event_btf.record("event")
    pure_env = os.environ.get("BPFRING_PURE_PYTHON") == "1"
    if not pure_env:
        _factory()  # skips where the accelerator is not built
    assert _fast.accelerated() is not pure_env
    if pure_env:
        assert codec.decode is codec._compiled.decode
    else:
        assert type(codec.decode).__name__ == "_RecordDecoder"
        assert codec.decode.pure is codec._compiled.decode  # type: ignore[attr-defined]


def test_empty_inner_dimension_decodes_to_empty_rows() -> None:
    # int x[2][0] once made the reference raise (a zero step cutting the rows)
    b = Blob()
    u32 = b.int_("u32", 4)
    inner = b.add("", Kind.ARRAY, 0, u32, u32, 0)
    outer = b.add("", Kind.ARRAY, 0, inner, u32, 2)
    st_ = b.add("s", Kind.STRUCT, 4, b.s("x"), outer, 0, b.s("y"), u32, 0, vlen=2)
    codec = BTF.from_bytes(b.build()).codec(st_)
    raw = struct.pack("<I", 7)
    fast, pure = both(codec)
    assert canon(fast(raw)) == canon(pure(raw))
    assert pure(raw).x == [[], []] and pure(raw).y == 7
    assert codec.encode(pure(raw)) == raw
