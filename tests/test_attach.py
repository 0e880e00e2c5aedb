"""Explicit attach against the real kernel, tracing side: tracepoints, raw
tracepoints, perf event sampling, kprobes (absent on the test machine: a
clear KernelTooOld), uprobes/uretprobes (in a C program the tests build, and
in libc), USDT, attach_all's report, and the ABI tables (bpf_attr,
perf_event_attr, libbpf's option structs) against the kernel's BTF and
libbpf.h.  Network and cgroup hooks: test_attach_net.py.

The programs are in tests/bpf/attach_*.bpf.c, the traced C program in
tests/c/attach_target.c.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from attach_helpers import A, need_tool, progs
from conftest import BPF_DIR, HERE

import bpfring
from bpfring import AttachError, BPFError, KernelTooOld, _attach, _netattach, _perf, _targets
from bpfring._attach import AttachMethods, AttachReport, attach_all
from bpfring.btf import BTF, Kind

# ---------------------------------------------------------------------------------
# ABI tables against the kernel's BTF and libbpf's headers
# ---------------------------------------------------------------------------------


def _members(btf: BTF, type_id: int, prefix: str = "", base: int = 0
             ) -> dict[str, tuple[int, int]]:
    """name -> (byte offset, size) of every member, anonymous members flattened."""
    out: dict[str, tuple[int, int]] = {}
    for m in btf.resolve(type_id).members:
        off = base + m.bit_offset // 8
        inner = btf.resolve(m.type_id)
        nested = inner.kind in (Kind.STRUCT, Kind.UNION)
        if m.name:
            out[prefix + m.name] = (off, btf.sizeof(m.type_id))
            if nested:
                out.update(_members(btf, m.type_id, prefix + m.name + ".", off))
        elif nested:
            out.update(_members(btf, m.type_id, prefix, off))
    return out


@pytest.fixture(scope="module")
def vmlinux() -> BTF:
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("the kernel exposes no BTF")
    return BTF.vmlinux()


def _enum(btf: BTF, name: str) -> dict[str, int]:
    return {e.name: e.value for e in btf.find(name, "enum").enumerators}


def test_link_create_attr_layout_matches_the_kernel(vmlinux):
    members = _members(vmlinux, vmlinux.find("bpf_attr", "union").id)
    for field, (off, fmt) in _netattach.LINK_CREATE_ATTR.items():
        assert members[f"link_create.{field}"] == (off, struct.calcsize(fmt)), field
    cmds = _enum(vmlinux, "bpf_cmd")
    assert cmds["BPF_LINK_CREATE"] == _netattach.BPF_LINK_CREATE
    types = _enum(vmlinux, "bpf_attach_type")
    assert types["BPF_TCX_INGRESS"] == _netattach.BPF_TCX_INGRESS
    assert types["BPF_TCX_EGRESS"] == _netattach.BPF_TCX_EGRESS
    prog_types = _enum(vmlinux, "bpf_prog_type")
    for name in ("KPROBE", "SCHED_CLS", "SCHED_ACT", "TRACEPOINT", "XDP", "PERF_EVENT",
                 "RAW_TRACEPOINT", "RAW_TRACEPOINT_WRITABLE", "SYSCALL"):
        assert prog_types[f"BPF_PROG_TYPE_{name}"] == getattr(_attach, f"PROG_{name}"), name
    cgroup = {prog_types[f"BPF_PROG_TYPE_{n}"] for n in (
        "CGROUP_SKB", "CGROUP_SOCK", "SOCK_OPS", "CGROUP_DEVICE", "CGROUP_SOCK_ADDR",
        "CGROUP_SYSCTL", "CGROUP_SOCKOPT")}
    assert cgroup == _attach.CGROUP_PROG_TYPES
    # libbpf's attach type names, which attach_cgroup accepts, are the enum's
    names = _attach.attach_types()
    assert names["cgroup_inet_egress"] == types["BPF_CGROUP_INET_EGRESS"]
    assert names["cgroup_inet_sock_create"] == types["BPF_CGROUP_INET_SOCK_CREATE"]


def test_perf_sampling_attr_layout_matches_the_kernel(vmlinux):
    members = _members(vmlinux, vmlinux.find("perf_event_attr", "struct").id)
    for field in ("type", "size", "config", "sample_period", "sample_type", "wakeup_events"):
        assert members[field] == _perf.ATTR_FIELDS[field], field
    assert members["sample_freq"][0] == _perf.ATTR_FIELDS["sample_period"][0]
    attr = vmlinux.find("perf_event_attr", "struct")
    bits = {m.name: vmlinux.member_bits(attr, m)[0] for m in attr.members if m.name}
    flags = _perf.ATTR_FLAGS_OFFSET * 8
    assert 1 << (bits["disabled"] - flags) == _perf.FLAG_DISABLED
    assert 1 << (bits["freq"] - flags) == _perf.FLAG_FREQ
    attr_bytes = _perf.sampling_attr(1, 0, frequency=99)
    assert struct.unpack_from("<Q", attr_bytes, 16)[0] == 99
    assert struct.unpack_from("<Q", attr_bytes, 40)[0] == _perf.FLAG_DISABLED | _perf.FLAG_FREQ
    with pytest.raises(ValueError):
        _perf.sampling_attr(1, 0, period=1, frequency=1)
    with pytest.raises(ValueError):
        _perf.sampling_attr(1, 0, period=0)


_STRUCTS = {
    "bpf_uprobe_opts": _attach._UprobeOpts, "bpf_usdt_opts": _attach._UsdtOpts,
    "bpf_kprobe_opts": _attach._KprobeOpts, "bpf_ksyscall_opts": _attach._KsyscallOpts,
    "bpf_perf_event_opts": _attach._PerfEventOpts,
    "bpf_xdp_attach_opts": _netattach._XdpAttachOpts,
    "bpf_xdp_query_opts": _netattach._XdpQueryOpts, "bpf_tc_hook": _netattach._TcHook,
    "bpf_tc_opts": _netattach._TcOpts,
}


def test_libbpf_option_structs_match_libbpf_h(tmp_path):
    gcc = need_tool("gcc")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <bpf/libbpf.h>",
             "int main(void) {"]
    for cname, cls in _STRUCTS.items():
        lines.append(f'printf("{cname} %zu\\n", sizeof(struct {cname}));')
        for field, *_ in cls._fields_:
            lines.append(f'printf("{cname}.{field} %zu\\n", offsetof(struct {cname}, {field}));')
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    subprocess.run([gcc, "-o", str(tmp_path / "layout"), str(src)], check=True)
    out = subprocess.run([str(tmp_path / "layout")], capture_output=True, text=True,
                         check=True).stdout
    c = dict(line.rsplit(" ", 1) for line in out.splitlines())
    for cname, cls in _STRUCTS.items():
        assert int(c[cname]) == ctypes.sizeof(cls), cname
        for field, *_ in cls._fields_:
            assert int(c[f"{cname}.{field}"]) == getattr(cls, field).offset, (cname, field)


# ---------------------------------------------------------------------------------
# Tracepoints, raw tracepoints, perf events, kprobes
# ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trace_path(kernel) -> Path:
    return bpfring.build(BPF_DIR / "attach_trace.bpf.c")


@pytest.fixture
def trace(trace_path):
    with bpfring.load(trace_path, globals={"target_tgid": os.getpid()}) as obj:
        yield obj


def _getppid(n: int) -> None:
    for _ in range(n):
        os.getppid()


def test_tracepoint_counts_and_detaches(trace):
    p = progs(trace)["on_tracepoint"]
    with p.attach_tracepoint("syscalls", "sys_enter_getppid") as link:
        assert not link.closed and link.fd >= 0
        _getppid(25)
        assert trace.globals.tp_hits == 25
    assert link.closed
    _getppid(5)
    assert trace.globals.tp_hits == 25
    link.close()  # idempotent


def test_raw_tracepoint_counts_and_detaches(trace):
    p = progs(trace)["on_raw_tracepoint"]
    link = p.attach_raw_tracepoint("sys_enter")
    _getppid(17)
    assert trace.globals.raw_hits == 17
    link.close()
    _getppid(3)
    assert trace.globals.raw_hits == 17


def test_links_detach_when_the_object_closes(trace_path):
    obj = bpfring.load(trace_path, globals={"target_tgid": os.getpid()})
    link = progs(obj)["on_tracepoint"].attach_tracepoint("syscalls", "sys_enter_getppid")
    assert link in obj.links
    obj.close()
    assert link.closed


def test_tracepoint_errors_name_program_and_target(trace):
    p = progs(trace)
    with pytest.raises(AttachError) as e:
        p["on_tracepoint"].attach_tracepoint("syscalls", "sys_enter_getppidd")
    assert e.value.errno == errno.ENOENT
    assert "'on_tracepoint'" in str(e.value) and "syscalls:sys_enter_getppidd" in str(e.value)
    assert "sys_enter_getppid" in e.value.hint  # a close match is suggested
    with pytest.raises(AttachError) as e:
        p["on_tracepoint"].attach_tracepoint("nosuch_category", "x")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(AttachError) as e:
        p["on_raw_tracepoint"].attach_raw_tracepoint("no_such_raw_tp")
    assert e.value.errno == errno.ENOENT and "no_such_raw_tp" in str(e.value)
    assert "without the category" in e.value.hint
    with pytest.raises(AttachError) as e:  # wrong program type for the hook
        p["on_raw_tracepoint"].attach_tracepoint("syscalls", "sys_enter_getppid")
    assert "raw_tracepoint program, not tracepoint" in str(e.value)
    with pytest.raises(ValueError):
        p["on_tracepoint"].attach_tracepoint("syscalls/x", "y")
    assert trace.links == []


def test_attach_by_section_says_which_method_to_call(trace):
    with pytest.raises(AttachError) as e:
        AttachMethods.attach(progs(trace)["on_tracepoint"])
    assert e.value.errno == errno.EOPNOTSUPP
    assert "attach_tracepoint(category, name)" in e.value.hint


def test_kprobes_report_the_missing_kernel_feature(trace):
    pmu = os.path.isdir("/sys/bus/event_source/devices/kprobe")
    events = any(os.path.exists(f"{d}/kprobe_events")
                 for d in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"))
    assert _targets.kprobes_available() == (pmu or events)
    p = progs(trace)
    if _targets.kprobes_available():  # a kernel with kprobes: they attach and count
        with p["on_kprobe"].attach_kprobe("do_nanosleep"):
            time.sleep(0.001)
        assert trace.globals.kprobe_hits >= 1
        return
    calls = [lambda: p["on_kprobe"].attach_kprobe("do_nanosleep"),
             lambda: p["on_kprobe"].attach_kretprobe("do_nanosleep"),
             lambda: p["on_kprobe"].attach_kprobe("do_nanosleep", offset=4, cookie=3),
             lambda: p["on_ksyscall"].attach_ksyscall("nanosleep"),
             lambda: p["on_ksyscall"].attach_ksyscall("nanosleep", retprobe=True)]
    for call in calls:
        with pytest.raises(KernelTooOld) as e:
            call()
        assert "this kernel has no kprobes (CONFIG_KPROBES)" in str(e.value)
        assert "'on_kprobe'" in str(e.value) or "'on_ksyscall'" in str(e.value)
        assert e.value.hint and "tracepoint" in e.value.hint
        assert isinstance(e.value, BPFError)
    assert trace.links == []


def _burn(seconds: float, cpus: list[int] | None = None) -> None:
    """Keep the CPUs busy for ``seconds``: one spinning child pinned to each
    (an idle vCPU of this VM may take no cpu-clock samples at all)."""
    code = ("import os, sys, time; os.sched_setaffinity(0, {int(sys.argv[1])}); "
            "end = time.monotonic() + float(sys.argv[2])\n"
            "while time.monotonic() < end: pass")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(c), str(seconds)])
             for c in (cpus if cpus is not None else _perf.online_cpus())]
    for p in procs:
        assert p.wait(30) == 0


def test_perf_event_sampling_on_every_cpu(trace):
    p = progs(trace)["on_sample"]
    cpus = _perf.online_cpus()
    links = p.attach_perf_event(frequency=1000)
    assert len(links) == len(cpus) and all(not link.closed for link in links)
    _burn(0.3)
    samples = list(trace.globals.samples)
    # cpu-clock ticks on every busy CPU; at 1 kHz for 0.3 s, well above 50
    assert all(samples[c] > 50 for c in cpus), samples[:len(cpus)]
    for link in links:
        link.close()
    before = list(trace.globals.samples)
    _burn(0.1)
    assert list(trace.globals.samples) == before


def test_perf_event_by_period_on_chosen_cpus(trace):
    p = progs(trace)["on_sample"]
    period = 2_000_000  # ns of cpu-clock: one sample per 2 ms of cpu 0
    t0 = time.monotonic_ns()
    links = p.attach_perf_event(period=period, cpus=[0])
    assert len(links) == 1
    _burn(0.3)
    samples = list(trace.globals.samples)
    attached = time.monotonic_ns() - t0
    # cpu-clock is an hrtimer re-armed one period ahead after each sample, so
    # the kernel takes at most one sample per period of the time the event
    # was open (plus the first); a busy cpu 0 for 0.3 s takes about 150.
    assert 50 < samples[0] <= attached // period + 1, (samples[:4], attached)
    assert sum(samples) == samples[0], samples[:4]
    links[0].close()


def test_perf_event_errors(trace):
    p = progs(trace)
    with pytest.raises(ValueError):
        p["on_sample"].attach_perf_event(frequency=10, period=10)
    with pytest.raises(ValueError):
        p["on_sample"].attach_perf_event(event="no-such-event")
    with pytest.raises(ValueError):
        p["on_sample"].attach_perf_event(cpus=[])
    with pytest.raises(BPFError) as e:
        p["on_sample"].attach_perf_event(cpus=[0, 4095])
    assert "'on_sample'" in str(e.value) and "cpu 4095" in str(e.value)
    with pytest.raises(AttachError):
        p["on_tracepoint"].attach_perf_event()
    assert trace.links == []  # the cpu 0 link made before the failure was closed again


# ---------------------------------------------------------------------------------
# uprobes and USDT
# ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def target_bin(tmp_path_factory, kernel) -> Path:
    gcc = need_tool("gcc")
    out = tmp_path_factory.mktemp("attach") / "attach_target"
    subprocess.run([gcc, "-O1", "-g", "-Wall", "-o", str(out),
                    str(HERE / "c" / "attach_target.c")], check=True)
    return out


@pytest.fixture(scope="module")
def uprobe_path(kernel) -> Path:
    return bpfring.build(BPF_DIR / "attach_uprobe.bpf.c")


@pytest.fixture
def uprobe(uprobe_path):
    with bpfring.load(uprobe_path) as obj:
        yield obj


class Target:
    """A run of attach_target: started, blocked until go()."""

    def __init__(self, binary: Path, rounds: int) -> None:
        self.rounds = rounds
        self.proc = subprocess.Popen([str(binary), str(rounds)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.pid = self.proc.pid

    def go(self) -> int:
        out, _ = self.proc.communicate(b"g", timeout=30)
        assert self.proc.returncode == 0
        return int(out)


@pytest.fixture
def run_target(target_bin):
    started: list[Target] = []

    def start(rounds: int) -> Target:
        t = Target(target_bin, rounds)
        started.append(t)
        return t

    yield start
    for t in started:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait()


def test_uprobe_and_uretprobe_on_a_function(uprobe, target_bin, run_target):
    p = progs(uprobe)
    entry = p["on_entry"].attach_uprobe(target_bin, "bpfring_target", cookie=0xC0FFEE)
    ret = p["on_return"].attach_uretprobe(str(target_bin), "bpfring_target")
    t = run_target(10)
    assert t.go() == sum(2 * i + 1 for i in range(10))
    e, r = uprobe.globals.entry, uprobe.globals.ret
    assert (e.count, e.sum, e.cookie, e.pid) == (10, sum(range(10)), 0xC0FFEE, t.pid)
    assert (r.count, r.sum, r.pid) == (10, sum(2 * i + 1 for i in range(10)), t.pid)
    entry.close()
    ret.close()
    run_target(3).go()
    assert uprobe.globals.entry.count == 10 and uprobe.globals.ret.count == 10


def test_uprobe_pid_filter(uprobe, run_target, target_bin):
    mine, other = run_target(4), run_target(6)
    with A(uprobe.programs["on_entry"]).attach_uprobe(target_bin, "bpfring_target",
                                                     pid=mine.pid):
        other.go()
        mine.go()
        hits = uprobe.globals.entry
    assert (hits.count, hits.pid) == (4, mine.pid)


def test_uprobe_on_a_shared_library_by_name(uprobe, run_target):
    t = run_target(7)
    # "libc.so.6" is found from the process's own mappings (and ld.so's cache)
    link = A(uprobe.programs["on_lib"]).attach_uprobe("libc.so.6", "getpid", pid=t.pid)
    t.go()
    assert (uprobe.globals.lib.count, uprobe.globals.lib.pid) == (7, t.pid)
    link.close()
    libc = _targets.resolve_binary("libc.so.6")
    assert os.path.isabs(libc) and Path(libc).name.startswith("libc")
    assert _targets.resolve_binary("libc.so.6", t.pid) == libc or os.path.samefile(
        _targets.resolve_binary("libc.so.6", t.pid), libc)


def _file_offset(binary: Path, symbol: str) -> int:
    """A symbol's file offset, from readelf's symbol table and LOAD segments."""
    readelf = need_tool("readelf")
    syms = subprocess.run([readelf, "-sW", str(binary)], capture_output=True, text=True,
                          check=True).stdout
    vaddr = next(int(line.split()[1], 16) for line in syms.splitlines()
                 if line.split()[-1:] == [symbol])
    segs = subprocess.run([readelf, "-lW", str(binary)], capture_output=True, text=True,
                          check=True).stdout
    for line in segs.splitlines():
        f = line.split()
        if f[:1] == ["LOAD"]:
            off, va, filesz = int(f[1], 16), int(f[2], 16), int(f[4], 16)
            if va <= vaddr < va + filesz:
                return vaddr - va + off
    raise AssertionError(f"{symbol} is in no LOAD segment")


def test_uprobe_at_an_offset(uprobe, run_target, target_bin):
    p = A(uprobe.programs["on_offset"])
    # bpfring_nops is four 1-byte nops then ret: +2 is an instruction boundary
    by_symbol = p.attach_uprobe(target_bin, "bpfring_nops", offset=2, cookie=1)
    run_target(5).go()
    assert uprobe.globals.plain.count == 5 and uprobe.globals.plain.cookie == 1
    by_symbol.close()
    by_offset = p.attach_uprobe(target_bin, offset=_file_offset(target_bin, "bpfring_nops") + 3,
                                cookie=2)
    run_target(4).go()
    assert uprobe.globals.plain.count == 9 and uprobe.globals.plain.cookie == 2
    by_offset.close()


def test_uprobe_errors_are_clear(uprobe, target_bin):
    p = A(uprobe.programs["on_entry"])
    cases = [
        (lambda: p.attach_uprobe(target_bin, "no_such_function"), errno.ENOENT,
         "no function 'no_such_function'"),
        (lambda: p.attach_uprobe("/nonexistent/prog", "main"), errno.ENOENT, "no such binary"),
        (lambda: p.attach_uprobe("libbpfring-nosuch.so.1", "f"), errno.ENOENT,
         "cannot find the library"),
        (lambda: p.attach_uprobe("bpfring-no-such-program", "f"), errno.ENOENT,
         "on PATH"),
        (lambda: p.attach_uprobe("/etc/hostname", "f"), errno.ENOEXEC, "not an ELF file"),
        (lambda: p.attach_uprobe(target_bin, offset=1), errno.EINVAL, "not in a code segment"),
        (lambda: p.attach_uprobe(target_bin, "bpfring_target", pid=2**22 + 1), errno.ESRCH,
         "no process"),
    ]
    for call, err, text in cases:
        with pytest.raises(AttachError) as e:
            call()
        assert e.value.errno == err, (text, e.value)
        msg = str(e.value)
        assert "'on_entry'" in msg and text in msg, msg
        assert e.value.hint
    with pytest.raises(ValueError):
        p.attach_uprobe(target_bin)  # neither symbol nor offset
    with pytest.raises(ValueError):
        p.attach_uprobe(target_bin, "bpfring_target", cookie=-1)
    with pytest.raises(AttachError) as e:  # a uprobe program is not an XDP program
        p.attach_xdp("lo")
    assert "kprobe program, not xdp" in str(e.value)
    assert uprobe.links == []


def test_usdt_probe(uprobe, run_target, target_bin):
    p = A(uprobe.programs["on_usdt"])
    t = run_target(6)
    link = p.attach_usdt(target_bin, "bpfring", "tick", pid=t.pid, cookie=42)
    t.go()
    u = uprobe.globals.usdt_hits
    assert (u.count, u.sum, u.cookie, u.pid) == (6, sum(range(6)), 42, t.pid)
    link.close()
    with pytest.raises(AttachError) as e:
        p.attach_usdt(target_bin, "bpfring", "no_such_probe")
    assert e.value.errno == errno.ENOENT and "bpfring:no_such_probe" in str(e.value)
    assert "readelf -n" in e.value.hint


# ---------------------------------------------------------------------------------
# attach_all
# ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_path(kernel) -> Path:
    return bpfring.build(BPF_DIR / "attach_all.bpf.c")


@pytest.fixture
def everything(all_path):
    with bpfring.load(all_path, globals={"target_tgid": os.getpid()}) as obj:
        yield obj


def test_attach_all_stops_at_a_missing_target_and_leaves_nothing_attached(everything):
    with pytest.raises(AttachError) as e:
        attach_all(progs(everything).values())
    assert e.value.errno == errno.ENOENT and "missing_tp" in str(e.value)
    assert any("skip_missing=True" in n for n in e.value.__notes__)
    assert all(link.closed for link in everything.links)
    _getppid(3)
    assert everything.globals.auto_tp_hits == 0 and everything.globals.auto_raw_hits == 0


def test_attach_all_reports_what_it_skipped(everything, caplog):
    caplog.set_level(logging.INFO, logger="bpfring")
    report = attach_all(progs(everything).values(), skip_missing=True)
    assert isinstance(report, AttachReport) and isinstance(report, list)
    assert sorted(link.program for link in report) == ["auto_raw", "auto_tp"]
    reasons = {s.program: s.reason for s in report.skipped}
    assert reasons == {
        "off": _attach.AUTOLOAD_OFF,
        "missing_tp": _attach.TARGET_MISSING,
        "kp": _attach.TARGET_MISSING,
        "needs_ifc": _attach.NEEDS_TARGET,
        "needs_tc": _attach.NEEDS_TARGET,
        "needs_binary": _attach.NEEDS_TARGET,
        "needs_cgroup": _attach.NEEDS_TARGET,
        "run_me": _attach.RUN_ONLY,
    }
    details = {s.program: s.detail for s in report.skipped}
    assert "attach_xdp" in details["needs_ifc"] and "attach_tc" in details["needs_tc"]
    assert "attach_uprobe" in details["needs_binary"]
    assert "attach_cgroup" in details["needs_cgroup"]
    assert "no kprobes" in details["kp"] and "bpfring_nosuch" in details["missing_tp"]
    # every skip was logged: warnings for the ones a user should look at
    logged = {r.getMessage().split()[3]: r.levelno for r in caplog.records
              if r.getMessage().startswith("not attaching program")}
    assert set(logged) == set(reasons)
    assert logged["needs_ifc"] == logging.WARNING and logged["missing_tp"] == logging.WARNING
    assert logged["off"] == logging.INFO and logged["run_me"] == logging.INFO
    assert "needs_tc" in repr(report)
    _getppid(6)
    assert (everything.globals.auto_tp_hits, everything.globals.auto_raw_hits) == (6, 6)
    assert everything.globals.off_hits == 0
    for link in report:
        link.close()
    _getppid(2)
    assert everything.globals.auto_tp_hits == 6
    # the run-only program is still there to run
    assert everything.programs["run_me"].run(ctx=b"\0" * 8) == 7


def test_attach_all_on_nothing():
    report = attach_all([])
    assert report == [] and report.skipped == [] and "none" in repr(report)


def test_the_mixin_only_needs_the_documented_attributes(trace):
    """The contract the lead wires into Program: _ptr, fd, name, section,
    type and _adopt_link; nothing else of Program is touched."""
    prog = trace.programs["on_tracepoint"]

    class Minimal(AttachMethods):
        __slots__ = ("_ptr", "fd", "name", "section", "type")

    m = Minimal()
    m._ptr, m.fd, m.name, m.section, m.type = (prog._ptr, prog.fd, prog.name, prog.section,
                                               prog.type)
    with m.attach_tracepoint("syscalls", "sys_enter_getppid"):
        _getppid(2)
    assert trace.globals.tp_hits == 2
    link = m.attach_tracepoint("syscalls", "sys_enter_getppid")  # _adopt_link's default
    assert re.search(r"<Link on_tracepoint attached", repr(link))
    link.close()
