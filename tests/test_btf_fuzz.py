"""Fuzzing the public BTF API with mutated blobs (issue 11).

Seeds: slices of the running kernel's BTF, the BTF of the object the BTF tests
compile (tests/bpf/btf_types.c), and hand-built blobs (every kind, deep
nesting, cycles).  Mutations: truncation, byte flips, 32-bit words replaced by
values that matter to BTF (huge sizes, vlen, nelems, string offsets past the
end, type ids pointing back at the record itself, kind/info words).  Whatever
comes out of ``BTF.from_bytes``, lookups, ``types``, ``record()``,
``codec()``, ``dtype`` and the codecs' decode/encode, only :class:`BTFError`
may escape, within a time and memory bound per blob.

``BPFRING_FUZZ_EXAMPLES`` sets the number of blobs (default small, so that
``make test`` stays within seconds); set it to thousands for a real run.
"""

from __future__ import annotations

import os
import resource
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from btf_support import Blob, all_kinds_blob, fixture_built
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfring.btf import BTF, VMLINUX_PATH, BTFError, Kind

EXAMPLES = int(os.environ.get("BPFRING_FUZZ_EXAMPLES", "40"))
TIME_LIMIT = 5.0  # seconds per blob (the machine running CI is shared and slow)
MEMORY_LIMIT = 128 << 20  # bytes the process's peak RSS may grow by for one blob
MAX_TYPES = 300  # type ids exercised per blob
CODEC_BYTES = 4096  # decode/encode codecs up to this size


def max_rss() -> int:
    """Peak resident set size of this process so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def header_of(data: bytes) -> tuple[int, int, int, int, int]:
    _m, _v, _f, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", data
    )
    return hdr_len, type_off, type_len, str_off, str_len


def record_offsets(types: bytes) -> list[int]:
    """Byte offsets of the type records of a well-formed type section (plus its end)."""
    # The same arithmetic as the reader's index, written out so that the test does
    # not trust the code under test to cut its seeds.
    fixed = {1: 1, 3: 3, 14: 1, 17: 1}
    per = {4: 3, 5: 3, 6: 2, 13: 2, 15: 3, 19: 3}
    out, i = [], 0
    while i < len(types):
        out.append(i)
        info = struct.unpack_from("<I", types, i + 4)[0]
        kind = (info >> 24) & 0x1F
        i += 12 + 4 * (fixed.get(kind, 0) + per.get(kind, 0) * (info & 0xFFFF))
    out.append(i)
    return out


def rebuild(hdr: bytes, types: bytes, strs: bytes) -> bytes:
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                       len(strs)) + types + strs  # fmt: skip


def vmlinux_slices() -> list[bytes]:
    if not os.path.exists(VMLINUX_PATH):
        if os.environ.get("BPFRING_REQUIRE_KERNEL"):
            raise AssertionError(f"{VMLINUX_PATH} is missing")
        return []
    data = Path(VMLINUX_PATH).read_bytes()
    hdr_len, type_off, type_len, str_off, str_len = header_of(data)
    types = data[hdr_len + type_off : hdr_len + type_off + type_len]
    strs = data[hdr_len + str_off : hdr_len + str_off + str_len]
    offs = record_offsets(types)
    task = BTF.vmlinux().find("task_struct", "struct").id
    out = []
    for first in (1, task - 40, len(offs) // 2):
        lo, hi = offs[first - 1], offs[min(first + 120, len(offs) - 1)]
        # ids inside a slice point at the wrong types or past the end: all fair game
        out.append(rebuild(data[:24], types[lo:hi], strs))
    return out


def deep_blob(n: int) -> bytes:
    b = Blob()
    prev = b.int_("u8", 1)
    u32 = b.int_("u32", 4)
    for k in range(n):
        prev = b.add(f"s{k}", Kind.STRUCT, 1, b.s("m"), prev, 0, vlen=1) if k % 2 else (
            b.add("", Kind.ARRAY, 0, prev, u32, 1)
        )
    return b.build()


def cycle_blob() -> bytes:
    b = Blob()
    u32 = b.int_("u32", 4)
    b.add("loop", Kind.STRUCT, 8, b.s("a"), 3, 0, b.s("n"), u32, 32, vlen=2)  # 2
    b.add("loop_t", Kind.TYPEDEF, 4)  # 3
    b.add("", Kind.ARRAY, 0, 2, u32, 1000)  # 4
    b.add("", Kind.PTR, 5)  # 5
    b.add("", Kind.FUNC_PROTO, 6, b.s("x"), 6, b.s("y"), 5, vlen=2)  # 6
    b.add("fn", Kind.FUNC, 6)
    return b.build()


class Seeds(list[bytes]):
    """The seed blobs; a short repr, since hypothesis prints its test's arguments."""

    def __repr__(self) -> str:
        return f"<{len(self)} seed blobs of {', '.join(str(len(b)) for b in self)} bytes>"


@pytest.fixture(scope="session")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    out = Seeds([all_kinds_blob(), deep_blob(300), cycle_blob(), *vmlinux_slices()])
    try:
        built = fixture_built(tmp_path_factory)
    except pytest.skip.Exception:
        pass
    else:
        out.append(BTF.from_elf(built["obj"]).raw)
    return out


def exercise(data: bytes) -> None:
    """Every public BTF operation on one blob; only BTFError may come out."""
    try:
        btf = BTF.from_bytes(data)
    except BTFError:
        return
    repr(btf)
    last = min(len(btf), MAX_TYPES + 1)
    for tid in range(0, last):
        try:
            t = btf.type_by_id(tid)
            btf.type_str(tid)
            if t.name:
                btf.find_all(t.name)
                btf.get(t.name)
            btf.sizeof(tid)
        except BTFError:
            pass
        try:
            c = btf.codec(tid)
            c.dtype  # noqa: B018
            c.bitfields  # noqa: B018
        except BTFError:
            continue
        if c.size <= CODEC_BYTES:
            zero = c.decode(bytes(c.size))
            c.encode(zero)
            c.encode(None)
            ones = c.decode(b"\xa5" * c.size)
            c.encode(ones)
            try:
                c.decode_array(bytes(2 * c.size), count=2)
            except BTFError:
                assert c.size == 0
    for name in ("pair", "loop", "loop_t", "event", "e", "task_struct", "s1", ".data"):
        try:
            btf.record(name)
        except BTFError:
            pass
        try:
            btf.datasec(name)
            btf.datasec_codec(name)
        except BTFError:
            pass
    try:
        for name in list(btf.types)[:50]:
            try:
                btf.types[name]
            except BTFError:
                pass
        btf.datasecs()
    except BTFError:
        pass


INTERESTING = st.sampled_from([
    0, 1, 2, 3, 4, 7, 8, 0xFF, 0xFFFF, 0x10000, 0xFFFFFF, 0x1000000, 0x7FFFFFFF,
    0x80000000, 0xFFFFFFFE, 0xFFFFFFFF,
])  # fmt: skip
INFO = st.builds(lambda kf, k, v: (kf << 31) | (k << 24) | v, st.integers(0, 1),
                 st.integers(0, 31), st.sampled_from([0, 1, 2, 3, 0xFFFF]))  # fmt: skip
OPS = st.one_of(
    st.tuples(st.just("trunc"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("word"), st.floats(0, 1),
              st.one_of(INTERESTING, INFO, st.integers(0, 40), st.integers(0, 2**32 - 1))),
    st.tuples(st.just("self"), st.floats(0, 1)),  # a word becomes "its own type id"
    st.tuples(st.just("str"), st.floats(0, 1), st.integers(-8, 64)),  # near the end
)  # fmt: skip


def mutate(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    buf = bytearray(data)
    hdr_len, type_off, type_len, _so, str_len = header_of(data)
    ntypes_words = type_len // 4
    for op in ops:
        if not buf:
            break
        if op[0] == "trunc":
            del buf[int(op[1] * len(buf)) :]
        elif op[0] == "flip":
            buf[min(int(op[1] * len(buf)), len(buf) - 1)] ^= op[2] or 1
        elif ntypes_words and len(buf) >= hdr_len + type_off + 4 * ntypes_words:
            k = min(int(op[1] * ntypes_words), ntypes_words - 1)
            pos = hdr_len + type_off + 4 * k
            if op[0] == "word":
                value = op[2]
            elif op[0] == "self":
                value = 1 + sum(1 for o in record_offsets_safe(buf, hdr_len + type_off, k))
            else:
                value = max(0, str_len + op[2])
            struct.pack_into("<I", buf, pos, value & 0xFFFFFFFF)
    return bytes(buf)


def record_offsets_safe(buf: bytearray, start: int, word: int) -> list[int]:
    """Records starting before ``word`` (for "its own id"; tolerant of garbage)."""
    try:
        offs = record_offsets(bytes(buf[start : start + 4 * word + 4]))
    except struct.error:
        return []
    return [o for o in offs[:-1] if o < 4 * word]


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(data=st.data())
def test_mutated_btf_raises_only_btferror(seeds: list[bytes], data: st.DataObject) -> None:
    seed = seeds[data.draw(st.integers(0, len(seeds) - 1), label="seed")]
    ops = data.draw(st.lists(OPS, min_size=1, max_size=4), label="ops")
    blob = mutate(seed, ops)
    before = max_rss()
    t0 = time.perf_counter()
    exercise(blob)
    elapsed = time.perf_counter() - t0
    assert elapsed < TIME_LIMIT, f"{elapsed:.1f} s for one blob"
    # the high-water mark: a blob that made the process grow by more fails
    grown = max_rss() - before
    assert grown < MEMORY_LIMIT, f"RSS grew by {grown >> 20} MiB for one blob"


def test_seeds_are_valid_and_exercised(seeds: list[bytes]) -> None:
    """The unmutated seeds parse (the fuzzer starts from real BTF)."""
    for blob in seeds:
        exercise(blob)
    assert len(seeds) >= 3
    assert BTF.from_bytes(seeds[0]).record("pair").size == 8
    with pytest.raises(BTFError, match="nested too deep"):
        BTF.from_bytes(seeds[1]).codec(len(BTF.from_bytes(seeds[1])) - 1)
    with pytest.raises(BTFError, match="cycle"):
        BTF.from_bytes(seeds[2]).record("loop")
