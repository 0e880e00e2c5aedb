"""Programs written the way real libbpf tools are (libbpf-bootstrap, bcc's
libbpf-tools, kernel selftests), used unmodified from Python: each test here
stands for a failure found by running such programs (see
docs/real-programs.md), with our own small program in the same style."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import btf as _btf
from bpfring.errors import BTFError, LoadError, TypeNotFound

b = importlib.import_module("bpfring.build")

REALSTYLE = BPF_DIR / "realstyle.bpf.c"
REALSTYLE_H = BPF_DIR / "realstyle.h"
CFG = BPF_DIR / "realstyle_cfg.bpf.c"

pytestmark = pytest.mark.skipif(
    not os.path.exists(b.KERNEL_BTF), reason="the kernel exposes no BTF (no vmlinux.h)"
)


def _events(obj: bpfring.BPFObject, n: int = 2) -> list:
    rb = obj.ring_buffer("rb", record="rs_event")
    for _ in range(n):
        os.getppid()  # a real syscall each time (glibc caches no ppid)
    return rb.read(timeout=5)


def _check(events: list) -> None:
    assert [e.calls for e in events] == [1, 2]
    assert all(e.pid == os.getpid() and e.comm for e in events)
    status = [e.status for e in events]
    # clang 14 writes RS_FAILED (-3) without a sign: it still decodes as itself
    assert status[0].name == "RS_FAILED" and status[0] == -3
    assert status[1].name == "RS_RETRY"


def test_real_style_tool_from_its_source(kernel) -> None:
    """bootstrap-style: header types, CO-RE read, const volatile knob; the
    uretprobe whose SEC() names only a function waits for a binary."""
    with bpfring.load(REALSTYLE, globals={"target_pid": os.getpid()}) as obj:
        report = obj.attach()
        assert [link.program for link in report] == ["handle_getppid"]
        (skipped,) = report.skipped
        assert skipped.program == "rs_lookup_ret" and skipped.reason == "needs a target"
        assert "attach_uretprobe(binary, 'rs_lookup')" in skipped.detail
        _check(_events(obj))


def test_negative_enumerator_round_trips(kernel) -> None:
    codec = bpfring.from_header(REALSTYLE_H).record("rs_event")
    raw = codec.encode(pid=1, status=-3, calls=5, comm="x")
    assert raw[4:8] == (-3).to_bytes(4, "little", signed=True)
    assert codec.decode(raw).status.name == "RS_FAILED"
    assert codec.encode(status="RS_FAILED") == codec.encode(status=-3)
    enum = _btf.load(b.build(REALSTYLE)).enum("rs_status")
    assert enum.RS_FAILED == -3 and enum.RS_RETRY == 1


def test_object_built_elsewhere_gets_its_header_types(kernel) -> None:
    """A .bpf.o from another build (no header types in its BTF): give the
    header, as a path or as BTF from bpfring.from_header()."""
    plain = b.build(REALSTYLE, keep_types="none")
    with bpfring.open(plain) as obj:
        with pytest.raises(TypeNotFound) as ei:
            obj.types["rs_event"]
        assert "headers=" in (ei.value.hint or "")
    with bpfring.load(plain, headers=[REALSTYLE_H],
                      globals={"target_pid": os.getpid()}) as obj:
        assert obj.types["rs_event"].size == 32
        assert "rs_event" in obj.types and "rb" not in obj.types
        obj.attach()
        _check(_events(obj))
    header = bpfring.from_header(REALSTYLE_H)
    with bpfring.open(plain, headers=[header]) as obj:
        assert obj.types["rs_event"] is header.record("rs_event")


def test_header_that_disagrees_with_the_object_is_refused(tmp_path: Path) -> None:
    """Same name, other layout: the object's own BTF has struct rs_event
    (bpfring kept it), the stale header says otherwise."""
    built = b.build(REALSTYLE)
    stale = tmp_path / "realstyle.h"
    stale.write_text(REALSTYLE_H.read_text().replace("unsigned long long calls;",
                                                     "unsigned int calls;"))
    with pytest.raises(BTFError, match=r"disagree on struct rs_event: 28 bytes in the "
                                       r"header, 32 in the object"):
        bpfring.open(built, headers=[stale])
    moved = tmp_path / "moved.h"
    moved.write_text(REALSTYLE_H.read_text().replace(
        "int pid;\n\tenum rs_status status;", "enum rs_status status;\n\tint pid;"))
    with pytest.raises(BTFError, match=r"struct rs_event: field 'status' is at bit offset 0 "
                                       r"in the header, 32 in the object"):
        bpfring.open(built, headers=[moved])
    with pytest.raises(TypeError, match="wrap it in a list"):
        bpfring.open(built, headers=str(REALSTYLE_H))  # type: ignore[arg-type]


def test_types_of_the_source_itself_hint_keep_all(kernel) -> None:
    with bpfring.open(CFG) as obj:
        with pytest.raises(TypeNotFound) as ei:
            obj.types["no_such_type"]
        assert "keep_types='all'" in (ei.value.hint or "")


def test_sizes_left_to_user_space_and_refused_variants(kernel) -> None:
    """Selftest style: no ring size in the program; the load error names the
    map and the setting.  Tool style: an fentry variant and a tracepoint one;
    where the kernel refuses BPF trampolines, the error names the program and
    autoload, and switching it off loads the rest."""
    with bpfring.open(CFG, globals={"target_pid": os.getpid()}) as obj:
        with pytest.raises(LoadError) as ei:
            obj.load()
        assert "map 'events'" in ei.value.message and "max_entries" in ei.value.message
        assert "obj.maps['events'].max_entries" in (ei.value.hint or "")
    with bpfring.open(CFG, globals={"target_pid": os.getpid()}) as obj:
        obj.maps["events"].max_entries = 4096
        try:
            obj.load()
        except LoadError as e:  # this kernel refuses fentry (no BPF trampolines)
            assert "program 'getppid_fentry'" in e.message and "trampoline" in e.message
            assert "obj.programs['getppid_fentry'].autoload = False" in (e.hint or "")
            refused = True
        else:
            refused = False
    if not refused:
        pytest.skip("this kernel loads fentry programs: nothing refused to test")
    with bpfring.open(CFG, globals={"target_pid": os.getpid()}) as obj:
        obj.maps["events"].max_entries = 4096
        obj.programs["getppid_fentry"].autoload = False
        obj.load()
        report = obj.attach()
        assert [s.reason for s in report.skipped] == ["autoload off"]
        rb = obj.ring_buffer("events")
        os.getppid()
        assert [bytes(s) for s in rb.read(timeout=5)] == [(2).to_bytes(4, "little")]


def test_newer_libbpf_macros_compile(tmp_path: Path) -> None:
    """bpf_ksym_exists (libbpf 1.2's bpf_helpers.h) is a macro, not an
    unknown extern libbpf then cannot resolve."""
    src = tmp_path / "ksym.bpf.c"
    src.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
                   '#include <bpf/bpf_tracing.h>\n'
                   "extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;\n"
                   'SEC("uprobe") int BPF_UPROBE(up, long a) { return a > 0; }\n'
                   'SEC("syscall") int f(void *c) { return bpf_ksym_exists(bpf_task_from_pid); }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    types = _btf.load(b.build(src))
    assert types.get("bpf_ksym_exists") is None
    assert {"up", "f"} <= {t.name for t in types.iter_types("func")}


def test_fentry_whose_function_is_missing_names_it(kernel) -> None:
    """libbpf-tools' fsdist and funclatency ship fentry programs on a dummy
    function that user space retargets before load."""
    src = ('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_tracing.h>\n'
           'SEC("fentry/bpfring_dummy_fn") int BPF_PROG(dummy_fentry) { return 0; }\n'
           'char LICENSE[] SEC("license") = "GPL";\n')
    with bpfring.open(src) as obj, pytest.raises(LoadError) as ei:
        obj.load()
    assert "this kernel has no function 'bpfring_dummy_fn'" in ei.value.message
    assert "set_attach_target" in (ei.value.hint or "")
    assert "obj.programs['dummy_fentry'].autoload = False" in (ei.value.hint or "")


def test_records_cut_short_decode_padded(tmp_path: Path) -> None:
    """execsnoop-style: the BPF side sends the header plus the used part of
    a large trailing array; ``.padded()`` decodes that, the codec alone
    refuses it."""
    h = tmp_path / "argsnoop.h"
    h.write_text("struct args_event { int pid; unsigned int args_size; char args[4096]; };\n")
    codec = bpfring.from_header(h, vmlinux=False).record("args_event")
    sample = (7).to_bytes(4, "little") + (6).to_bytes(4, "little") + b"ls\0-l\0"
    with pytest.raises(ValueError, match="need 4104 bytes"):
        codec.decode(sample)
    short = codec.padded()
    rec = short.decode(memoryview(sample))
    assert (rec.pid, rec.args_size, rec.args) == (7, 6, "ls")
    assert short.decode(b"\0" + sample, 1).pid == 7
    full = codec.encode(pid=1, args="x")
    assert short.decode(full) == codec.decode(full) and short.size == codec.size
    assert short.encode(pid=2) == codec.encode(pid=2)


def test_forcing_perf_on_a_bpf_side_that_stays_on_ringbuf(kernel) -> None:
    """bcc's compat.bpf.h picks the ring buffer whenever the kernel has one,
    so kind="perf" cannot work there: the load error says why."""
    src = ('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
           "struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); }"
           ' events SEC(".maps");\n'
           'SEC("tp/syscalls/sys_enter_getppid") int h(void *c)\n'
           "{ int *v = bpf_ringbuf_reserve(&events, 4, 0); if (v) { *v = 1;"
           " bpf_ringbuf_submit(v, 0); } return 0; }\n"
           'char LICENSE[] SEC("license") = "GPL";\n')
    with bpfring.open(src) as obj:
        assert obj.prepare_event_buffer("events", kind="perf") == "perf"
        with pytest.raises(LoadError) as ei:
            obj.load()
    assert "the BPF side still takes its ring buffer path" in ei.value.message
    assert "kind='auto'" in (ei.value.hint or "")


def test_clang14_enum_signedness_is_read_from_the_values(tmp_path: Path) -> None:
    """No kind_flag anywhere (clang 14): small negatives are negative, high
    flag bits stay unsigned."""
    h = tmp_path / "enums.h"
    h.write_text("enum neg { N_ERR = -1, N_BAD = -4096, N_OK = 5 };\n"
                 "enum flags { F_LO = 1, F_HI = 1u << 31 };\n"
                 "struct both { enum neg n; enum flags f; };\n")
    types = bpfring.from_header(h, vmlinux=False)
    assert not types.enum_signs_marked()
    neg, flags = types.enum("neg"), types.enum("flags")
    assert (neg.N_ERR, neg.N_BAD, neg.N_OK) == (-1, -4096, 5)
    assert flags.F_HI == 1 << 31
    both = types.record("both")
    rec = both.decode(both.encode(n="N_BAD", f=flags.F_HI))
    assert rec.n is neg.N_BAD and rec.f is flags.F_HI
    assert both.encode(n=-1)[:4] == b"\xff\xff\xff\xff"


def test_btf_from_header_is_the_same_function() -> None:
    """``bpfring.btf.from_header`` (where the issue's users look) gives the
    same types as ``bpfring.from_header``, and ``import bpfring.btf`` alone
    loads nothing of the toolchain (it forwards only when called)."""
    import subprocess
    import sys

    import bpfring.btf

    got = bpfring.btf.from_header(REALSTYLE_H).record("rs_event")
    want = bpfring.from_header(REALSTYLE_H).record("rs_event")
    assert got.size == want.size and got.encode(pid=7, comm="a") == want.encode(pid=7, comm="a")
    check = ("import sys, bpfring.btf; "
             "assert 'bpfring.build' not in sys.modules, 'btf imported build'")
    subprocess.run([sys.executable, "-c", check], check=True)
