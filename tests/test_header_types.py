"""Types from the program's own headers end up in its BTF (real clang, real kernel).

The program under test, tests/bpf/exitsnoop.bpf.c, is written like the libbpf
tools: its event struct (with an enum and a typedef'd anonymous struct) lives
in exitsnoop.h, shared with user space, and the BPF code only touches it
through the pointer bpf_ringbuf_reserve() returns, so clang alone leaves the
types out of the object's BTF.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import btf as _btf
from bpfring.errors import BuildError

b = importlib.import_module("bpfring.build")
kt = importlib.import_module("bpfring._keeptypes")

EXITSNOOP = BPF_DIR / "exitsnoop.bpf.c"
EXITSNOOP_TYPES = ("enum exit_kind", "exit_times_t", "struct event")

needs_btf = pytest.mark.skipif(
    not os.path.exists(b.KERNEL_BTF), reason="the kernel exposes no BTF (no vmlinux.h)"
)
pytestmark = needs_btf


def _sections(path: Path) -> dict[str, bytes]:
    """Section name -> contents of a little-endian ELF64 file."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple[int, int, int, int]:
        base = shoff + i * shentsize
        name, stype = struct.unpack_from("<II", data, base)
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, stype, offset, size

    strtab = header(shstrndx)[2]
    out = {}
    for i in range(1, shnum):
        name_off, stype, offset, size = header(i)
        end = data.index(b"\0", strtab + name_off)
        name = data[strtab + name_off:end].decode()
        out[name] = b"" if stype == 8 else data[offset:offset + size]  # 8: SHT_NOBITS
    return out


@pytest.fixture(scope="module")
def kept() -> b.BuildResult:
    return b.build_info(EXITSNOOP)


@pytest.fixture(scope="module")
def plain() -> b.BuildResult:
    return b.build_info(EXITSNOOP, keep_types=False)


def _spawn_exits() -> list[tuple[int, str, int, int]]:
    """Three children that end differently: (pid, comm, status, signal)."""
    done = []
    p = subprocess.run(["sh", "-c", "exit 3"], check=False)
    assert p.returncode == 3
    done.append((None, "sh", 3, 0))
    p2 = subprocess.Popen(["true"])
    p2.wait()
    done.append((p2.pid, "true", 0, 0))
    p3 = subprocess.Popen(["sleep", "30"])
    p3.send_signal(signal.SIGKILL)
    p3.wait()
    done.append((p3.pid, "sleep", 0, signal.SIGKILL))
    return done


# --------------------------------------------------------------------------
# The object's BTF


def test_header_types_are_in_the_object_btf(kept: b.BuildResult,
                                            plain: b.BuildResult) -> None:
    assert kept.kept_types == EXITSNOOP_TYPES
    types = _btf.load(kept.path)
    event = types.record("event")
    assert [m.name for m in types.find("event", "struct").members] == [
        "pid", "ppid", "exit_code", "status", "sig", "kind", "times", "comm"]
    assert event.size == 56
    times = types.record("exit_times_t")
    assert times.size == 16 and types.find("exit_times_t").kind == _btf.Kind.TYPEDEF
    kinds = types.enum("exit_kind")
    assert {k.name: int(k) for k in kinds} == {
        "EXIT_NORMAL": 0, "EXIT_SIGNALED": 1, "EXIT_CORE_DUMPED": 2}
    # A type the header only declares is not made up.
    assert types.get("exitsnoop_private") is None
    # Without the option, clang alone leaves all three out: this is the problem solved.
    assert plain.kept_types == ()
    bare = _btf.load(plain.path)
    for name in ("event", "exit_times_t", "exit_kind"):
        assert bare.get(name) is None, name


def test_nothing_else_in_the_object_changes(kept: b.BuildResult,
                                            plain: b.BuildResult) -> None:
    a, k = _sections(plain.path), _sections(kept.path)
    assert set(k) - set(a) == {".bpfring.keep"}
    assert set(a) <= set(k)
    # Code, its relocations, maps, license and read-only data are byte for byte the same.
    for name in a:
        if name.startswith((".BTF", ".rel.BTF", ".debug", ".rel.debug", ".symtab",
                            ".strtab", ".llvm")):
            continue
        assert a[name] == k[name], name
    assert "tp/sched/sched_process_exit" in a and ".maps" in a
    # Function and line info too: clang handles the anchors (globals) after
    # the functions, so even the string offsets .BTF.ext uses stay put.
    assert a[".BTF.ext"] == k[".BTF.ext"]
    # Every named type of the plain object is still there.
    pb, kb = _btf.load(plain.path), _btf.load(kept.path)
    names = {(t.kind, t.name) for t in pb.iter_types() if t.name}
    assert names <= {(t.kind, t.name) for t in kb.iter_types() if t.name}


def test_loaded_object_has_the_same_maps_and_programs(kernel, kept: b.BuildResult,
                                                      plain: b.BuildResult) -> None:
    def shape(obj: bpfring.BPFObject) -> tuple[object, ...]:
        maps = sorted((n, m.type, m.key_size, m.value_size, m.max_entries)
                      for n, m in obj.maps.items())
        progs = sorted((n, p.type, p.section) for n, p in obj.programs.items())
        return maps, progs

    with bpfring.load(plain.path) as p, bpfring.load(kept.path) as k:
        assert shape(p) == shape(k)
        assert "exitsnoop_rb" in k.maps and any(n.endswith(".rodata") for n in k.maps)
        assert "event" in k.types and "event" not in p.types
        assert k.types["event"].size == 56


def test_kernel_holds_the_header_types(kernel, kept: b.BuildResult) -> None:
    """The BTF the kernel keeps for the loaded program (what `bpfring tail
    --type` reads, found through the program's btf_id) has them too."""
    from bpfring.discovery import map_btf

    with bpfring.load(kept.path) as obj:
        raw = map_btf(obj.maps["exitsnoop_rb"].id)
        assert raw is not None
        loaded = _btf.BTF.from_bytes(raw)
        assert loaded.record("event").size == obj.types["event"].size
        assert loaded.record("exit_times_t").size == 16
        assert [e.name for e in loaded.find("exit_kind", "enum").enumerators] == [
            "EXIT_NORMAL", "EXIT_SIGNALED", "EXIT_CORE_DUMPED"]
        # libbpf gave the anchors' section real offsets (the kernel checks them).
        sec = loaded.find(kt.SECTION, _btf.Kind.DATASEC)
        assert sec.size == 8 * len(EXITSNOOP_TYPES)
        assert sorted(si.offset for si in sec.secinfos) == [0, 8, 16]


# --------------------------------------------------------------------------
# Real events


def test_ring_buffer_decodes_real_exits(kernel, kept: b.BuildResult) -> None:
    me = os.getpid()
    with bpfring.load(kept.path, globals={"target_ppid": me}) as obj:
        obj.attach()
        rb = obj.ring_buffer("exitsnoop_rb", record="event")
        t0 = time.monotonic_ns()
        expected = _spawn_exits()
        got: list = []
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            got += rb.read(timeout=0.2)
        assert len(got) == 3, got
        exit_kind = _btf.load(kept.path).enum("exit_kind")
        for rec, (pid, comm, status, sig) in zip(got, expected, strict=True):
            assert rec.ppid == me
            if pid is not None:
                assert rec.pid == pid
            assert rec.comm == comm
            assert rec.status == status and rec.sig == sig
            assert rec.exit_code == (status << 8 | sig)
            assert rec.kind == (exit_kind.EXIT_SIGNALED if sig else exit_kind.EXIT_NORMAL)
            assert rec.kind.name == ("EXIT_SIGNALED" if sig else "EXIT_NORMAL")
            assert t0 <= rec.times.start_ns <= rec.times.exit_ns <= time.monotonic_ns()


def test_cli_tail_decodes_real_exits(kernel, kept: b.BuildResult) -> None:
    me = os.getpid()
    with bpfring.load(kept.path, globals={"target_ppid": me}) as obj:
        obj.attach()
        expected = _spawn_exits()
        # The records wait in the ring; the CLI finds the type in the BTF the
        # kernel holds for the program using the map.
        proc = subprocess.run(
            # By map id: another process may have a map of the same name.
            [sys.executable, "-m", "bpfring", "tail", "id", str(obj.maps["exitsnoop_rb"].id),
             "--type",
             "event", "--count", "3", "--json", "--timeout", "30"],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        recs = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(recs) == 3, proc.stdout
        for rec, (pid, comm, status, sig) in zip(recs, expected, strict=True):
            assert rec["ppid"] == me and rec["comm"] == comm
            if pid is not None:
                assert rec["pid"] == pid
            assert rec["status"] == status and rec["sig"] == sig
            assert rec["times"]["start_ns"] <= rec["times"]["exit_ns"]
            # An IntEnum: JSON gives the number (a name would be fine too).
            assert rec["kind"] in ((1, "EXIT_SIGNALED") if sig else (0, "EXIT_NORMAL"))


# --------------------------------------------------------------------------
# The build cache


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of exitsnoop in a fresh directory, with a private cache."""
    monkeypatch.setenv("BPFRING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BPFRING_KEEP_TYPES", raising=False)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("exitsnoop.bpf.c", "exitsnoop.h"):
        (src / name).write_bytes((BPF_DIR / name).read_bytes())
    return src / "exitsnoop.bpf.c"


def test_cache_keeps_header_types_and_dependencies(project: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    first = b.build_info(project)
    assert first.kept_types == EXITSNOOP_TYPES and not first.cached
    # The dependencies are the program's, not the generated wrapper's.
    names = {p.name for p in first.dependencies}
    assert {"exitsnoop.bpf.c", "exitsnoop.h", "vmlinux.h", "bpf_helpers.h"} <= names
    assert not any("keep" in n for n in names)
    assert str(project) in first.command
    assert not any("keep.c" in a for a in first.command)
    hit = b.build_info(project)
    assert hit.cached and hit.path == first.path and hit.kept_types == EXITSNOOP_TYPES
    # The option is part of the key: off is another object, and cached too.
    off = b.build_info(project, keep_types="none")
    assert not off.cached and off.key != first.key and off.kept_types == ()
    assert b.build_info(project, keep_types=False).cached
    # ... and so is the environment default.
    with monkeypatch.context() as m:
        m.setenv("BPFRING_KEEP_TYPES", "none")
        assert b.build_info(project).key == off.key
    # A header change rebuilds and keeps the new type.
    header = project.parent / "exitsnoop.h"
    header.write_text(header.read_text().replace(
        "#endif /* EXITSNOOP_H */", "struct extra { int x; };\n#endif /* EXITSNOOP_H */"))
    second = b.build_info(project)
    assert not second.cached
    assert second.kept_types == (*EXITSNOOP_TYPES, "struct extra")
    assert _btf.load(second.path).record("extra").size == 4
    # Tampering with the cached object is noticed as before.
    data = second.path.read_bytes()
    second.path.write_bytes(data[:-8] + b"\0" * 8)
    again = b.build_info(project)
    assert not again.cached and again.path.read_bytes() == data


def test_keep_types_option_is_checked(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="keep_types"):
        b.build_info(project, keep_types="everything")
    with monkeypatch.context() as m:
        m.setenv("BPFRING_KEEP_TYPES", "sometimes")
        with pytest.raises(ValueError, match=r"\$BPFRING_KEEP_TYPES"):
            b.build_info(project)
    assert kt.normalize_mode(True) == "headers"
    assert kt.normalize_mode("ALL") == "all"
    assert kt.normalize_mode("0") == kt.normalize_mode(None) == "none"


# --------------------------------------------------------------------------
# Real-world header shapes

TRICKY_H = r"""
#ifndef TRICKY_H
#define TRICKY_H
#include "more/shapes.h"

/** A documented type: the user's record, with an apostrophe in the comment. */
struct documented { int d; };

typedef struct { int a; long b; } pair_t;              /* anonymous, typedef'd */
typedef struct named_s { pair_t p; } named_t, *named_p; /* two declarators */
typedef enum { ST_RUN = 1, ST_STOP = 2 } state_t;
enum __attribute__((packed)) small { SMALL_A, SMALL_B = 200 };
struct __attribute__((packed)) packed_s { char c; int i; };
union value { __u64 u; __s64 s; char bytes[8]; };
struct outer {
	struct inner { int z; } in;
	union { int x; unsigned int y; };
} __attribute__((aligned(8)));
typedef int (*handler_fn)(void *ctx, int arg);

#define DECLARE_PAIR(name, t) struct name { t first; t second; }
DECLARE_PAIR(upair, unsigned int);

struct opaque;                         /* forward only */
typedef struct opaque opaque_t;        /* typedef of an incomplete struct */
enum forward_enum;                     /* forward only */
typedef enum forward_enum fwd_enum_t;  /* caught by the compiler check */
typedef unsigned int open_arr_t[];     /* incomplete array */
typedef unsigned int u32;              /* redeclares vmlinux.h's u32 */
typedef __u32 my_u32;

struct later;                          /* declared first, defined below */
typedef struct later later_t;
struct later { int q; };

static inline int helper(int x)
{
	struct local_only { int v; } l = { x };  /* inside a function: not kept */

	return l.v;
}
#endif
"""

SHAPES_H = """
#pragma once
enum shape { CIRCLE, SQUARE };
struct sized_shape { enum shape kind; __u32 size; };
"""

TRICKY_C = """
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tricky.h"

struct in_source { int s; };          /* kept only with keep_types="all" */
typedef struct { int t; } src_anon_t;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

SEC("tp/syscalls/sys_enter_getpid")
int emit(void *ctx)
{
	struct documented *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);

	if (!e)
		return 0;
	e->d = helper(1);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

TRICKY_KEPT = (
    "enum shape", "struct sized_shape", "struct documented", "pair_t", "struct named_s",
    "named_t", "named_p", "state_t", "enum small", "struct packed_s", "union value",
    "struct outer", "handler_fn", "struct upair", "my_u32", "later_t", "struct later",
)


@pytest.fixture
def tricky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BPFRING_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "tool"
    (src / "more").mkdir(parents=True)
    (src / "tricky.h").write_text(TRICKY_H)
    (src / "more" / "shapes.h").write_text(SHAPES_H)
    (src / "tricky.bpf.c").write_text(TRICKY_C)
    return src / "tricky.bpf.c"


def test_real_world_header_shapes(tricky: Path) -> None:
    result = b.build_info(tricky)
    assert result.kept_types == TRICKY_KEPT
    types = _btf.load(result.path)
    assert types.record("pair_t").size == 16
    assert types.record("named_t").size == 16
    assert types.find("named_p").kind == _btf.Kind.TYPEDEF
    assert {m.name for m in types.enum("state_t")} == {"ST_RUN", "ST_STOP"}
    assert types.record("small").size == 1
    assert types.record("packed_s").size == 5
    assert types.record("value").size == 8
    assert types.record("outer").size == 8
    assert types.record("inner").size == 4   # nested: comes with its outer struct
    assert types.record("upair").size == 8   # made by a macro
    assert types.record("later_t").size == 4
    assert types.record("sized_shape").size == 8
    for name in ("opaque", "opaque_t", "forward_enum", "fwd_enum_t", "open_arr_t",
                 "local_only", "in_source", "src_anon_t"):
        assert types.get(name) is None, name
    # u32 is vmlinux.h's, not re-anchored from the header (it may be in BTF anyway).
    assert "u32" not in result.kept_types


def test_keep_all_adds_the_source_types(tricky: Path) -> None:
    result = b.build_info(tricky, keep_types="all")
    assert result.kept_types[:len(TRICKY_KEPT)] == TRICKY_KEPT
    assert result.kept_types[len(TRICKY_KEPT):] == ("struct in_source", "src_anon_t")
    types = _btf.load(result.path)
    assert types.record("in_source").size == 4 and types.record("src_anon_t").size == 4


def test_program_with_header_types_loads_and_runs(kernel, tricky: Path) -> None:
    with bpfring.load(tricky) as obj:
        assert obj.types["later_t"].size == 4
        obj.attach()
        rb = obj.ring_buffer("rb", record="documented")
        os.getpid()  # glibc caches nothing here since 2.25: a real getpid syscall
        got = rb.read(timeout=5)
        assert got and all(r.d == 1 for r in got)


def test_header_without_types_costs_nothing(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPFRING_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "knobs.h").write_text("#define KNOB 3\n")
    src = tmp_path / "k.bpf.c"
    src.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include "knobs.h"\n'
                   'SEC("syscall") int f(void *c) { return KNOB; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    result = b.build_info(src)
    assert result.kept_types == ()
    assert ".bpfring.keep" not in _sections(result.path)


def test_wrapper_failure_keeps_the_plain_object(tmp_path: Path, project: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A clang that refuses the wrapper (a stand-in for any unforeseen
    failure) must not fail a build that compiled."""
    import shutil

    real = shutil.which("clang")
    assert real
    fake = tmp_path / "clang"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *keep.c*) echo 'keep.c:1:1: error: refused' >&2;"
                    f" exit 1;; esac\nexec {real} \"$@\"\n")
    fake.chmod(0o755)
    monkeypatch.setenv("BPFRING_CLANG", str(fake))
    with caplog.at_level(logging.WARNING, logger="bpfring"):
        result = b.build_info(project)
    assert result.kept_types == ()
    assert "could not keep the header types" in caplog.text and "refused" in caplog.text
    assert _btf.load(result.path).get("event") is None
    assert "handle_exit" in {t.name for t in _btf.load(result.path).iter_types("func")}


def test_which_files_are_the_programs_own() -> None:
    deps = [
        "/p/tool.bpf.c", "/p/tool.h", "/p/inc/common.h", "/c/vmlinux/x/vmlinux.h",
        "/p/vmlinux/x86/vmlinux_601.h", "/usr/include/bpf/bpf_helpers.h",
        "/p/.output/bpf/bpf_helpers.h", "/p/.output/bpf/bpf_tracing.h",
        "/p/.output/bpf/usdt.bpf.h", "/p/uapi/linux/bpf.h", "/p/uapi/asm/types.h",
        "/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h", "/opt/bpfring/include/x.h",
        "/p/bpf/my_maps.h",
    ]
    own = kt.user_files(deps, "/p/tool.bpf.c", "headers", exclude_dirs=["/c/vmlinux",
                                                                      "/opt/bpfring/include"])
    assert own == ["/p/tool.h", "/p/inc/common.h", "/p/bpf/my_maps.h"]
    assert kt.user_files(deps, "/p/tool.bpf.c", "all")[0] == "/p/tool.bpf.c"
    assert kt.user_files(deps, "/p/tool.bpf.c", "none") == []


# --------------------------------------------------------------------------
# Objects built elsewhere: types from their header


def test_header_btf_for_an_object_built_elsewhere(tmp_path: Path, plain: b.BuildResult,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    types = b.header_btf(BPF_DIR / "exitsnoop.h")
    event = types.record("event")
    # Same layout as the header types of the object bpfring built.
    assert event.size == _btf.load(b.build(EXITSNOOP)).record("event").size == 56
    assert types.record("exit_times_t").size == 16
    # Decodes a record of the plain object's layout.
    raw = struct.pack("<iiIiiiQQ16s", 7, 1, 768, 3, 0, 0, 5, 6, b"sh")
    rec = event.decode(raw)
    assert (rec.pid, rec.status, rec.comm, rec.times.exit_ns) == (7, 3, "sh", 6)
    # Headers written for user space (no kernel types) work without vmlinux.h.
    h = tmp_path / "plain.h"
    h.write_text("struct sample { unsigned int seq; char tag[4]; };\n"
                 "typedef struct sample sample_t;\n")
    assert b.header_btf(h, vmlinux=False).record("sample_t").size == 8
    bad = tmp_path / "bad.h"
    bad.write_text("struct broken { int x }\n")
    with pytest.raises(BuildError):
        b.header_btf(bad)
    with pytest.raises(FileNotFoundError):
        b.header_btf(tmp_path / "missing.h")


def test_ast_dump_parsing_follows_the_printed_files() -> None:
    """The text dump names a file only when it changes; quoted types that
    mention a file (``unnamed struct at ...``) do not change it."""
    dump = "\n".join([
        "TranslationUnitDecl 0x1 <<invalid sloc>> <invalid sloc>",
        "|-TypedefDecl 0x2 <<invalid sloc>> <invalid sloc> implicit __int128_t '__int128'",
        "|-RecordDecl 0x3 </k/vmlinux.h:1:1, line:3:1> line:1:8 struct task definition",
        "| `-FieldDecl 0x4 <line:2:2, col:6> col:6 x 'int'",
        "|-TypedefDecl 0x5 <line:4:1, col:20> col:20 u32 'unsigned int'",
        "|-EnumDecl 0x6 <./ev.h:1:1, line:3:1> line:1:6 kind",
        "| |-PackedAttr 0x7 <col:20>",
        "| `-EnumConstantDecl 0x8 <line:2:2> col:2 K_A 'int'",
        "|-VarDecl 0x9 <line:4:1, col:40> col:40 v 'struct (unnamed struct at /k/vmlinux.h:9:1)'",
        "|-RecordDecl 0xa <line:5:1, col:20> col:8 struct event definition",
        "| `-FieldDecl 0xb <col:10, col:14> col:14 k 'enum kind':'enum kind'",
        "|-EnumDecl 0xc <line:6:1, col:10> col:6 fwd",
        "|-RecordDecl 0xd <line:7:1, col:8> col:8 struct fwd_only",
        "|-TypedefDecl 0xe prev 0x5 <line:8:1, col:20> col:20 u32 'unsigned int'",
        "|-RecordDecl 0xf <line:9:9, col:30> col:9 struct definition",
        "|-TypedefDecl 0x10 <col:1, col:32> col:32 referenced pair_t 'struct pair_t':'pair_t'",
        "|-TypedefDecl 0x11 <line:10:1, col:30> col:30 opaque_t 'struct fwd_only'",
        "|-TypedefDecl 0x12 <line:11:1, col:30> col:30 arr_t 'int[]'",
        "|-FunctionDecl 0x13 <p.bpf.c:1:1, line:3:1> line:1:5 f 'int (void)'",
        "| `-CompoundStmt 0x14 <col:9, line:3:1>",
        "|   `-DeclStmt 0x15 <line:2:2, col:30>",
        "|     `-RecordDecl 0x16 <col:2, col:28> col:9 struct local definition",
        "`-RecordDecl 0x17 <./ev.h:12:1, col:20> col:8 struct last definition",
        "",
    ])
    spellings = {"/k/vmlinux.h": "/k/vmlinux.h", "./ev.h": "/w/ev.h", "p.bpf.c": "/w/p.bpf.c"}
    got = kt.parse_ast(dump, spellings, {"/w/ev.h"})
    assert [a.spelling for a in got] == ["enum kind", "struct event", "pair_t", "struct last"]
    assert [a.typedef for a in got] == [False, False, True, False]
    # The vmlinux.h part and the program's own file are attributed correctly too.
    assert [a.spelling for a in kt.parse_ast(dump, spellings, {"/k/vmlinux.h"})] == [
        "struct task", "u32"]
    assert kt.parse_ast(dump, spellings, {"/w/p.bpf.c"}) == []


def test_wrapper_text() -> None:
    anchors = [kt.Anchor("struct event", "event", False), kt.Anchor("pair_t", "pair_t", True)]
    text, owner = kt.wrapper("/w/p.bpf.c", anchors)
    lines = text.splitlines()
    assert lines[2] == '#include "/w/p.bpf.c"'
    assert "#ifndef event" in lines and "#ifndef pair_t" in lines
    tag = kt._tag("/w/p.bpf.c")
    first = next(i for i, ln in enumerate(lines, 1) if ln.startswith("struct event *"))
    assert lines[first - 1] == (f"struct event *__bpfring_keep_{tag}_0 "
                                '__attribute__((section(".bpfring.keep"), used));')
    assert owner[first] == 0
    assert {i for i, ln in enumerate(lines, 1) if "pair_t" in ln and "#ifndef" not in ln} == {
        k for k, v in owner.items() if v == 1}
    assert kt._tag("/w/other.bpf.c") != tag
