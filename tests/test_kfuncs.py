"""Kfunc prototypes in the generated vmlinux.h (real clang, real kernel BTF).

Programs call kernel functions (kfuncs) through ``extern ... __ksym``
declarations; bpfring writes them into vmlinux.h from the kernel BTF's
``bpf_kfunc`` decl tags, so programs need not declare them themselves.
"""

from __future__ import annotations

import importlib
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import btf as _btf

b = importlib.import_module("bpfring.build")
kf = importlib.import_module("bpfring._kfuncs")

pytestmark = pytest.mark.skipif(
    not os.path.exists(b.KERNEL_BTF), reason="the kernel exposes no BTF (no vmlinux.h)"
)


def _kernel_tags_kfuncs() -> bool:
    return any(t.name == "bpf_kfunc" for t in _btf.BTF.vmlinux().iter_types("decl_tag"))


needs_tags = pytest.mark.skipif(
    os.path.exists(b.KERNEL_BTF) and not _kernel_tags_kfuncs(),
    reason="this kernel's BTF has no bpf_kfunc decl tags (pahole < 1.25)",
)


# --------------------------------------------------------------------------
# Writing prototypes (from BTF that clang makes here, independent of the kernel)

SYNTHETIC = r"""
#define __kf __attribute__((btf_decl_tag("bpf_kfunc")))
typedef unsigned int u32;
struct item { int x; };
__kf struct item *kf_ret_ptr(u32 id) { return 0; }
__kf int kf_fnptr(int (*cb)(void *, int *), const struct item *const it) { return 0; }
__kf void kf_void(void) {}
__kf int kf_arrptr(int (*rows)[4], char **argv, volatile unsigned long *v) { return 0; }
__kf int (*kf_ret_fnptr(int k))(int) { return 0; }
__kf int kf_anon(struct { int a; } *p) { return 0; }
int not_a_kfunc(int x) { return x; }
"""

EXPECTED = {
    "kf_arrptr": "extern int kf_arrptr(int (*)[4], char **, volatile unsigned long *)",
    "kf_fnptr": "extern int kf_fnptr(int (*)(void *, int *), const struct item *const)",
    "kf_ret_fnptr": "extern int (*kf_ret_fnptr(int))(int)",
    "kf_ret_ptr": "extern struct item *kf_ret_ptr(u32)",
    "kf_void": "extern void kf_void(void)",
}
ATTRS = ' __attribute__((weak)) __attribute__((section(".ksyms")));'


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _btf.BTF]:
    d = tmp_path_factory.mktemp("kfuncs")
    (d / "syn.c").write_text(SYNTHETIC)
    subprocess.run(["clang", "-target", "bpf", "-g", "-O2", "-w", "-c", str(d / "syn.c"),
                    "-o", str(d / "syn.o")], check=True)
    return d, _btf.load(d / "syn.o")


def test_prototypes_are_written_as_c_declarators(synthetic) -> None:
    _, types = synthetic
    assert [f.name for f in kf.kfuncs(types)] == sorted([*EXPECTED, "kf_anon"])
    block = kf.prototypes(types)
    decls = {m.group(1): m.group(0) for m in re.finditer(r"^extern .*?\b(kf_\w+)\(.*$",
                                                          block, re.M)}
    assert decls == {name: text + ATTRS for name, text in EXPECTED.items()}
    assert "not_a_kfunc" not in block
    assert "kf_anon" not in block  # an anonymous struct has no C spelling
    for name in EXPECTED:
        assert f"#ifndef {kf.SKIP_MACRO_PREFIX}{name}\n" in block
    assert block.count("#ifndef BPF_NO_KFUNC_PROTOTYPES") == 1


def test_prototypes_agree_with_the_definitions(synthetic) -> None:
    """Redeclaring the functions with the written prototypes after their
    definitions is valid C only if every type matches exactly."""
    d, types = synthetic
    tu = d / "agree.c"
    tu.write_text(SYNTHETIC + kf.prototypes(types))
    # (-w: attributes after a definition only warn; conflicting types are errors.)
    proc = subprocess.run(["clang", "-target", "bpf", "-fsyntax-only", "-w", str(tu)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # And a deliberately different one is caught (the check can fail).
    tu.write_text(SYNTHETIC + "extern int kf_void(void);\n")
    proc = subprocess.run(["clang", "-target", "bpf", "-fsyntax-only", "-w", str(tu)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "conflicting types" in proc.stderr


def test_insert_stays_inside_the_include_guard() -> None:
    header = (b"#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\nstruct a;\n"
              b"#endif /* __VMLINUX_H__ */\n")
    out = kf.insert(header, "\n#ifndef BPF_NO_KFUNC_PROTOTYPES\nextern void f(void);\n#endif\n")
    assert out.endswith(b"extern void f(void);\n#endif\n\n#endif /* __VMLINUX_H__ */\n")
    assert out.startswith(header[:-len(b"#endif /* __VMLINUX_H__ */\n")])
    assert kf.insert(header, "") == header
    assert kf.insert(b"struct a;\n", "extern void f(void);\n") == (
        b"struct a;\nextern void f(void);\n")


# --------------------------------------------------------------------------
# The kernel's kfuncs in vmlinux.h


@needs_tags
def test_vmlinux_header_declares_the_kernels_kfuncs(tmp_path: Path) -> None:
    header = b.vmlinux_header(cache_dir=tmp_path / "cache").read_text()
    for line in (
        "extern struct task_struct *bpf_task_from_pid(s32)",
        "extern void bpf_task_release(struct task_struct *)",
        "extern void bpf_rcu_read_lock(void)",
        "extern struct bpf_cpumask *bpf_cpumask_create(void)",
    ):
        assert f"\n{line}{ATTRS}\n" in header, line
    kernel = _btf.BTF.vmlinux()
    written = set(re.findall(r"^#ifndef " + kf.SKIP_MACRO_PREFIX + r"(\w+)$", header, re.M))
    tagged = {f.name for f in kf.kfuncs(kernel)}
    assert written <= tagged and len(written) >= 0.9 * len(tagged)
    # Only kfuncs: a plain kernel function with BTF (do_exit) is not declared.
    assert kernel.get("do_exit", "func") is not None and "do_exit(" not in header
    # Inside the include guard, after the types.
    assert header.rstrip().endswith("#endif /* __VMLINUX_H__ */")
    assert header.index("bpf_task_from_pid(") > header.index("struct task_struct {")


@needs_tags
def test_unused_prototypes_leave_no_trace(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPFRING_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "plain.bpf.c"
    src.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
                   'SEC("syscall") int f(void *c) { return 1; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    result = b.build_info(src)
    types = _btf.load(result.path)
    assert {t.name for t in types.iter_types("func")} == {"f"}
    assert ".ksyms" not in types.datasecs()
    assert not any("KFUNC" in a for a in result.command)


@needs_tags
def test_program_calling_kfuncs_compiles_loads_and_runs(kernel) -> None:
    """task_kfuncs.bpf.c calls bpf_task_from_pid, bpf_task_release and
    bpf_rcu_read_lock/unlock without declaring any of them."""
    src = BPF_DIR / "task_kfuncs.bpf.c"
    assert "__ksym" not in src.read_text()
    result = b.build_info(src)
    assert not any("KFUNC" in a for a in result.command)
    ksyms = {_btf.load(result.path).type(si.type_id).name
             for si in _btf.load(result.path).find(".ksyms", "datasec").secinfos}
    assert ksyms == {"bpf_task_from_pid", "bpf_task_release", "bpf_rcu_read_lock",
                     "bpf_rcu_read_unlock"}
    with bpfring.load(result.path) as obj:
        prog = obj.programs["lookup_task"]
        assert prog.run(ctx=struct.pack("<i", os.getpid())) == 0
        assert obj.globals.found_tgid == os.getpid()
        with open(f"/proc/{os.getpid()}/comm") as f:
            assert obj.globals.found_comm == f.read().strip()[:15]
        assert prog.run(ctx=struct.pack("<i", 0x3FFFFFFF)) == -1  # no such task
        # From a tracepoint too.
        obj.globals.watch_pid = os.getpid()
        obj.attach()
        os.getppid()
        assert obj.globals.parent_seen == os.getppid()


@needs_tags
def test_own_conflicting_declarations_win(kernel, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """kfunc_own_decls.bpf.c declares bpf_dynptr_adjust without const and
    defines a static bpf_strlen: both clash with vmlinux.h prototypes, which
    are left out for this program only."""
    monkeypatch.setenv("BPFRING_CACHE_DIR", str(tmp_path / "cache"))
    src = BPF_DIR / "kfunc_own_decls.bpf.c"
    result = b.build_info(src)
    skips = [a for a in result.command if kf.SKIP_MACRO_PREFIX in a]
    assert skips == [f"-D{kf.SKIP_MACRO_PREFIX}bpf_dynptr_adjust",
                     f"-D{kf.SKIP_MACRO_PREFIX}bpf_strlen"]
    hit = b.build_info(src)
    assert hit.cached and [a for a in hit.command if kf.SKIP_MACRO_PREFIX in a] == skips
    with bpfring.load(result.path) as obj:
        # size 8 after adjust(2, 10), times 100, plus our own strlen (8 chars max).
        assert obj.programs["adjust"].run() == 808
    # The global opt-out: with BPF_NO_KFUNC_PROTOTYPES nothing clashes, no retry.
    opted = b.build_info(src, defines={"BPF_NO_KFUNC_PROTOTYPES": None})
    assert not any(kf.SKIP_MACRO_PREFIX in a for a in opted.command)


def test_conflicts_are_read_from_clang_diagnostics(tmp_path: Path) -> None:
    header = tmp_path / "vmlinux.h"
    header.write_text("struct x;\n#ifndef BPF_NO_KFUNC_PROTOTYPES\n"
                      f"#ifndef {kf.SKIP_MACRO_PREFIX}bpf_a\nextern int bpf_a(void);\n#endif\n"
                      f"#ifndef {kf.SKIP_MACRO_PREFIX}bpf_b\nextern int bpf_b(void);\n#endif\n"
                      "#endif\n")
    stderr = (f"prog.c:9:5: error: conflicting types for 'bpf_b'\n"
              f"{header}:7:12: note: previous declaration is here\n"
              f"prog.c:1:1: error: unrelated\n"
              f"{tmp_path}/other/vmlinux.h:4:1: note: not ours\n"
              f"{header}:1:1: error: not a prototype line\n")
    assert kf.conflicts(stderr, header) == {"bpf_b"}
    rel = os.path.relpath(header)
    assert kf.conflicts(f"{rel}:4:12: error: redefinition of 'bpf_a'\n", header) == {"bpf_a"}
    assert kf.conflicts("prog.c:1:1: error: x\n", header) == set()
    assert kf.skip_flags({"b", "a"}) == [f"-D{kf.SKIP_MACRO_PREFIX}a",
                                          f"-D{kf.SKIP_MACRO_PREFIX}b"]


def test_genuine_errors_still_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kfunc clash plus a real error: the retry drops the prototype, then
    the real error is what the user sees."""
    monkeypatch.setenv("BPFRING_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "broken.bpf.c"
    src.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
                   "extern void *bpf_task_from_pid(int pid) __ksym;\n"
                   'SEC("syscall") int f(void *c) { return undefined_thing; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    with pytest.raises(bpfring.BuildError) as info:
        b.build_info(src)
    assert "undefined_thing" in str(info.value)
    assert "bpf_task_from_pid" not in str(info.value)

