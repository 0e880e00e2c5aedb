"""Tests of bpfring.build with the real clang and bpftool (no mocks).

Every test gets its own cache directory through BPFRING_CACHE_DIR, so cache
hits and misses are those of the test alone.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import logging
import os
import shutil
import stat
import struct
from pathlib import Path

import pytest

from bpfring.errors import BPFError, BTFError, BuildError, ToolNotFound

# The package re-exports the function ``build``, which shadows the submodule as
# an attribute of ``bpfring``; fetch the module itself.
b = importlib.import_module("bpfring.build")

pytestmark = pytest.mark.skipif(
    shutil.which("clang") is None, reason="clang is not installed (apt-get install clang)"
)

EM_BPF = 247

PROG = """\
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "knobs.h"

struct event {
\t__u32 pid;
\tchar comm[16];
};
struct event _event_btf = {};

SEC("tp/syscalls/sys_enter_kill")
int on_kill(void *ctx)
{
\treturn KNOB;
}

char LICENSE[] SEC("license") = "GPL";
"""


def _elf_sections(path: Path) -> tuple[int, list[str]]:
    """(e_machine, section names) of a little-endian ELF64 file."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF", "not an ELF file"
    assert data[4] == 2 and data[5] == 1, "not ELF64 little-endian"
    (machine,) = struct.unpack_from("<H", data, 18)
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple[int, int]:
        base = shoff + i * shentsize
        (name,) = struct.unpack_from("<I", data, base)
        (offset,) = struct.unpack_from("<Q", data, base + 0x18)
        return name, offset

    strtab = header(shstrndx)[1]
    names = []
    for i in range(shnum):
        name_off = header(i)[0]
        end = data.index(b"\0", strtab + name_off)
        names.append(data[strtab + name_off:end].decode())
    return machine, names


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("BPFRING_CACHE_DIR", str(path))
    monkeypatch.delenv("BPFRING_CLANG", raising=False)
    monkeypatch.delenv("BPFRING_BPFTOOL", raising=False)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A program in tmp/src that includes a header from tmp/inc."""
    src = tmp_path / "src"
    inc = tmp_path / "inc"
    src.mkdir()
    inc.mkdir()
    (src / "prog.bpf.c").write_text(PROG)
    (inc / "knobs.h").write_text("#ifndef KNOB\n#define KNOB 0\n#endif\n")
    return src / "prog.bpf.c"


needs_btf = pytest.mark.skipif(
    not os.path.exists(b.KERNEL_BTF), reason="the kernel exposes no BTF (no vmlinux.h)"
)


def _build(project: Path, **kw) -> b.BuildResult:
    return b.build_info(project, include_dirs=[project.parent.parent / "inc"], **kw)


# --------------------------------------------------------------------------
# Building and caching


@needs_btf
def test_build_produces_bpf_elf_with_btf(cache: Path, project: Path) -> None:
    result = _build(project)
    assert not result.cached
    assert result.path.is_file()
    assert result.path.is_relative_to(cache)
    machine, sections = _elf_sections(result.path)
    assert machine == EM_BPF
    assert ".BTF" in sections
    assert "tp/syscalls/sys_enter_kill" in sections
    # The public wrapper returns the same cached object.
    assert b.build(project, include_dirs=[project.parent.parent / "inc"]) == result.path


@needs_btf
def test_dependencies_come_from_clang(cache: Path, project: Path) -> None:
    result = _build(project)
    names = {p.name for p in result.dependencies}
    assert {"prog.bpf.c", "vmlinux.h", "bpf_helpers.h", "knobs.h"} <= names
    assert all(p.is_absolute() for p in result.dependencies)
    cmd = result.command
    assert "-target" in cmd and cmd[cmd.index("-target") + 1] == "bpf"
    assert f"-D__TARGET_ARCH_{b.target_arch()}" in cmd
    assert {"-O2", "-g", "-Wall"} <= set(cmd)
    # Include order: user dirs, source dir, vmlinux.h, bpfring's headers.
    incs = [a[2:] for a in cmd if a.startswith("-I")]
    assert incs[0] == str(project.parent.parent / "inc")
    assert incs[1] == str(project.parent)
    assert Path(incs[2], "vmlinux.h").is_file()
    assert incs[3] == str(b.INCLUDE_DIR)


@needs_btf
def test_second_build_is_a_fast_cache_hit(cache: Path, project: Path) -> None:
    cold = _build(project)
    made = cold.path.stat()
    warm = _build(project)
    assert warm.cached and not cold.cached
    assert warm.path == cold.path
    assert warm.key == cold.key
    # A hit runs no compiler: the object is the same file, untouched (no
    # timing: the machine running the suite may be arbitrarily loaded).
    again = warm.path.stat()
    assert (again.st_ino, again.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    assert warm.elapsed >= 0 and cold.elapsed > 0


@needs_btf
def test_source_change_rebuilds(cache: Path, project: Path) -> None:
    first = _build(project)
    project.write_text(PROG.replace("return KNOB;", "return KNOB + 1;"))
    second = _build(project)
    assert not second.cached
    assert second.path != first.path


@needs_btf
def test_define_change_rebuilds(cache: Path, project: Path) -> None:
    base = _build(project, defines={"KNOB": 1})
    assert _build(project, defines={"KNOB": 1}).cached
    other = _build(project, defines={"KNOB": 2})
    assert not other.cached and other.path != base.path
    bare = _build(project, defines={"UNUSED_FLAG": None})
    assert not bare.cached
    assert "-DUNUSED_FLAG" in bare.command


@needs_btf
def test_included_header_change_rebuilds(cache: Path, project: Path) -> None:
    header = project.parent.parent / "inc" / "knobs.h"
    first = _build(project)
    header.write_text("#define KNOB 7\n")
    second = _build(project)
    assert not second.cached
    assert second.path != first.path
    assert _build(project).cached
    # Going back to the first header finds the first object again.
    header.write_text("#ifndef KNOB\n#define KNOB 0\n#endif\n")
    third = _build(project)
    assert third.cached and third.path == first.path


@needs_btf
def test_removed_header_is_not_a_hit(cache: Path, project: Path) -> None:
    _build(project)
    (project.parent.parent / "inc" / "knobs.h").unlink()
    with pytest.raises(BuildError, match=r"knobs\.h"):
        _build(project)


@needs_btf
def test_tampered_object_is_rebuilt(cache: Path, project: Path, caplog) -> None:
    first = _build(project)
    good = first.path.read_bytes()
    first.path.write_bytes(good[:-16] + b"\0" * 16)
    with caplog.at_level(logging.WARNING, logger="bpfring"):
        again = _build(project)
    assert not again.cached
    assert "does not match its recorded SHA-256" in caplog.text
    assert again.path.read_bytes() == good
    assert _build(project).cached


@needs_btf
def test_deleted_object_is_rebuilt(cache: Path, project: Path) -> None:
    first = _build(project)
    first.path.unlink()
    again = _build(project)
    assert not again.cached and again.path.is_file()


@needs_btf
def test_corrupt_manifest_is_ignored(cache: Path, project: Path) -> None:
    first = _build(project)
    manifest = first.path.parent / f"{first.key}.json"
    manifest.write_text("{not json")
    assert not _build(project).cached
    assert _build(project).cached


@needs_btf
def test_no_temporary_files_left_behind(cache: Path, project: Path) -> None:
    _build(project)
    bad = project.parent / "bad.bpf.c"
    bad.write_text("int x = ;\n")
    with pytest.raises(BuildError):
        b.build(bad)
    assert list((cache / "tmp").iterdir()) == []
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


@needs_btf
def test_concurrent_builds_agree(cache: Path, project: Path) -> None:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _build(project), range(4)))
    assert len({r.path for r in results}) == 1
    assert _elf_sections(results[0].path)[0] == EM_BPF
    assert _build(project).cached


def test_kernel_headers_without_vmlinux(cache: Path, tmp_path: Path) -> None:
    """<linux/bpf.h> needs <asm/types.h> from the multiarch directory."""
    src = tmp_path / "uapi.bpf.c"
    src.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        'SEC("xdp") int pass(struct xdp_md *ctx) { return XDP_PASS; }\n'
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    result = b.build_info(src)
    assert _elf_sections(result.path)[0] == EM_BPF
    assert any(p.parts[-2:] == ("asm", "types.h") for p in result.dependencies)


def test_bpfring_headers_are_on_the_include_path(cache: Path, tmp_path: Path) -> None:
    src = tmp_path / "ring.bpf.c"
    src.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        "#include <bpfring/ring.bpf.h>\n"
        "BPFRING_RINGBUF(events, 4096);\n"
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    assert _elf_sections(b.build(src))[0] == EM_BPF


# --------------------------------------------------------------------------
# Diagnostics


def test_compile_error_carries_diagnostics(cache: Path, tmp_path: Path) -> None:
    src = tmp_path / "broken.bpf.c"
    src.write_text(
        "#include <linux/bpf.h>\n"
        "#include <bpf/bpf_helpers.h>\n"
        'SEC("xdp") int f(struct xdp_md *ctx)\n'
        "{\n"
        "\treturn undeclared_thing;\n"
        "}\n"
    )
    with pytest.raises(BuildError) as info:
        b.build(src)
    err = info.value
    assert not isinstance(err, ToolNotFound)
    assert str(src) in err.message
    assert f"{src}:5:" in err.diagnostics
    assert "undeclared_thing" in err.diagnostics
    assert "undeclared_thing" in str(err)


def test_libc_header_gets_a_hint(cache: Path, tmp_path: Path) -> None:
    src = tmp_path / "libc.bpf.c"
    src.write_text("#include <stdint.h>\nint x;\n")
    with pytest.raises(BuildError) as info:
        b.build(src)
    assert info.value.hint and "C library" in info.value.hint


def test_warnings_are_logged(cache: Path, tmp_path: Path, caplog) -> None:
    src = tmp_path / "warn.bpf.c"
    src.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        'SEC("xdp") int f(struct xdp_md *ctx) { int x; return x; }\n'
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    with caplog.at_level(logging.WARNING, logger="bpfring"):
        result = b.build_info(src)
    assert "-Wuninitialized" in result.warnings
    records = [r for r in caplog.records if r.name == "bpfring" and "warn.bpf.c" in r.message]
    assert records and records[0].levelno == logging.WARNING
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bpfring"):
        again = b.build_info(src)
    assert again.cached and again.warnings == result.warnings
    assert caplog.records == []


def test_missing_source(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        b.build(tmp_path / "nope.bpf.c")


def test_bad_arguments(cache: Path, tmp_path: Path) -> None:
    src = tmp_path / "x.bpf.c"
    src.write_text("int x;\n")
    with pytest.raises(TypeError):
        b.build(src, cflags="-O1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        b.build(src, defines={"A=B": 1})


def test_clang_missing_raises_tool_not_found(
    cache: Path, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolNotFound) as info:
        b.build(project)
    err = info.value
    assert isinstance(err, BuildError) and isinstance(err, FileNotFoundError)
    assert err.hint == "apt-get install clang"
    assert "apt-get install clang" in str(err)


def test_clang_override(cache: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPFRING_CLANG", "/nonexistent/clang-99")
    with pytest.raises(ToolNotFound, match="BPFRING_CLANG"):
        b.build(project)


@needs_btf
def test_bpftool_missing(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPFRING_BPFTOOL", str(tmp_path / "no-bpftool"))
    with pytest.raises(ToolNotFound) as info:
        b.vmlinux_header()
    assert info.value.hint == "apt-get install bpftool"
    # Programs that do not need vmlinux.h still build ...
    plain = tmp_path / "plain.bpf.c"
    plain.write_text("#include <linux/bpf.h>\nint x;\n")
    assert b.build(plain).is_file()
    # ... those that do say why it is missing.
    needy = tmp_path / "needy.bpf.c"
    needy.write_text('#include "vmlinux.h"\nint x;\n')
    with pytest.raises(ToolNotFound) as info:
        b.build(needy)
    assert info.value.hint == "apt-get install bpftool"
    assert "vmlinux.h" in info.value.diagnostics


# --------------------------------------------------------------------------
# vmlinux.h


@needs_btf
def test_vmlinux_header_is_generated_and_cached(cache: Path) -> None:
    header = b.vmlinux_header()
    assert header.is_relative_to(cache)
    text = header.read_text()
    assert "struct task_struct {" in text
    made = header.stat()
    assert b.vmlinux_header() == header
    again = header.stat()  # the second call reused the file (no timing: see above)
    assert (again.st_ino, again.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    mtime = header.stat().st_mtime_ns
    assert b.vmlinux_header().stat().st_mtime_ns == mtime  # not regenerated


@needs_btf
def test_tampered_vmlinux_header_is_regenerated(cache: Path, caplog) -> None:
    header = b.vmlinux_header()
    good = header.read_bytes()
    header.write_bytes(good + b"\n#define EVIL 1\n")
    with caplog.at_level(logging.WARNING, logger="bpfring"):
        assert b.vmlinux_header() == header
    assert header.read_bytes() == good
    assert "regenerating" in caplog.text


@needs_btf
def test_vmlinux_header_explicit_cache_dir(tmp_path: Path) -> None:
    header = b.vmlinux_header(cache_dir=tmp_path / "elsewhere")
    assert header.is_relative_to(tmp_path / "elsewhere")
    assert stat.S_IMODE((tmp_path / "elsewhere").stat().st_mode) == 0o700


# --------------------------------------------------------------------------
# build_source


@needs_btf
def test_build_source_text(cache: Path) -> None:
    text = PROG.replace('#include "knobs.h"\n', "#define KNOB 3\n")
    first = b.build_source_info(text, name="mytext")
    assert not first.cached
    assert first.source.name == "mytext.bpf.c"
    assert first.source.is_relative_to(cache)
    assert _elf_sections(first.path)[0] == EM_BPF
    again = b.build_source_info(text, name="mytext")
    assert again.cached and again.path == first.path
    assert b.build_source(text, name="mytext") == first.path
    other = b.build_source_info(text.replace("KNOB 3", "KNOB 4"), name="mytext")
    assert not other.cached and other.path != first.path


def test_build_source_rejects_bad_names(cache: Path) -> None:
    with pytest.raises(ValueError):
        b.build_source("int x;\n", name="../escape")
    with pytest.raises(TypeError):
        b.build_source(b"int x;\n")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# The cache directory


def test_cache_dir_is_created_private(cache: Path) -> None:
    assert not cache.exists()
    assert b.cache_dir() == cache
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert cache.stat().st_uid == os.geteuid()


def test_cache_dir_env_is_read_on_every_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BPFRING_CACHE_DIR", str(tmp_path / "one"))
    assert b.cache_dir() == tmp_path / "one"
    monkeypatch.setenv("BPFRING_CACHE_DIR", str(tmp_path / "two"))
    assert b.cache_dir() == tmp_path / "two"
    monkeypatch.delenv("BPFRING_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert b.cache_dir() == tmp_path / "xdg" / "bpfring"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert b.cache_dir() == tmp_path / "home" / ".cache" / "bpfring"


def test_cache_dir_mode_is_tightened(cache: Path) -> None:
    cache.mkdir()
    cache.chmod(0o777)
    assert b.cache_dir() == cache
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another uid")
def test_cache_dir_owned_by_someone_else_is_refused(cache: Path, project: Path) -> None:
    cache.mkdir()
    os.chown(cache, 65534, 65534)  # nobody
    cache.chmod(0o777)
    with pytest.raises(BPFError, match="owned by uid 65534") as info:
        b.cache_dir()
    assert info.value.hint
    with pytest.raises(BPFError, match="owned by uid 65534"):
        b.build(project)
    # Nothing was written into it, and its mode was left alone.
    assert list(cache.iterdir()) == []
    assert stat.S_IMODE(cache.stat().st_mode) == 0o777


def test_cache_dir_that_is_a_file_is_refused(cache: Path) -> None:
    cache.write_text("")
    with pytest.raises(BPFError, match="not a directory"):
        b.cache_dir()


# --------------------------------------------------------------------------
# Helpers


def test_target_arch_mapping() -> None:
    assert b.target_arch("x86_64") == "x86"
    assert b.target_arch("aarch64") == "arm64"
    assert b.target_arch("riscv64") == "riscv"
    assert b.target_arch("s390x") == "s390"
    assert b.target_arch("ppc64le") == "powerpc"
    assert b.target_arch("armv7l") == "arm"
    assert b.target_arch("loongarch64") == "loongarch"
    assert b.target_arch("pdp11") is None


def test_parse_depfile_handles_make_escapes() -> None:
    text = "obj: /a/my\\ file.c /usr/include/x.h \\\n  rel/y.h /b/c\\#d.h /e/$$f.h\n"
    deps = b._parse_depfile(text, "/cwd")
    assert deps == ["/a/my file.c", "/usr/include/x.h", "/cwd/rel/y.h", "/b/c#d.h", "/e/$f.h"]


def test_btf_error_without_kernel_btf(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(b, "KERNEL_BTF", "/nonexistent/btf/vmlinux")
    with pytest.raises(BTFError, match=r"does not exist"):
        b.vmlinux_header()
