"""User-space and kernel eBPF together: user-space programs whose maps are
kernel maps (kernel_maps=), whose map updates reach the kernel through the
map bridge's user ring and whose ring records reach a kernel ring through
the relay (tests/bpf/userspace_coop.bpf.c, loaded in the kernel and in user
space).  Also the Python-call trigger and user-space perf event arrays."""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import BPF_DIR

from bpfring.errors import MapTypeError
from bpfring.userspace import (
    PYCALL_CTX,
    KernelArrayMap,
    KernelMap,
    KernelRingMap,
    UserLoadError,
    UserRuntimeError,
    attach_python,
    load,
)

SRC = BPF_DIR / "userspace_coop.bpf.c"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REC = 64  # struct rec
BOUND = ("limits", "counts", "knobs", "events", "small")


@pytest.fixture(scope="module")
def coop_path(kernel):
    import bpfring

    return bpfring.build(SRC)


@pytest.fixture
def pair(coop_path):
    """(kernel object, user-space object bound to its maps)."""
    import bpfring

    k = bpfring.load(coop_path)
    u = load(coop_path, kernel_maps={n: k.maps[n] for n in BOUND})
    yield k, u
    u.close()
    k.close()


def _upd(u, op, key, val=0):
    u.programs["upd"].run(ctx=struct.pack("<IIQ", op, key, val))
    return u.globals.last_rc, u.globals.seen


def _emit(obj, n, src, ring=0, via=0):
    obj.programs["emit"].run(ctx=struct.pack("<IIII", ring, n, src, via))


def _recs(ring):
    return [struct.unpack_from("<II", r) for r in ring.read()]


# --- maps ---------------------------------------------------------------------------


def test_bound_maps_are_the_kernel_kinds(pair):
    k, u = pair
    assert isinstance(u.maps["limits"], KernelMap) and u.maps["limits"].bridge is not None
    assert isinstance(u.maps["knobs"], KernelArrayMap)        # BPF_F_MMAPABLE: mmapped
    assert isinstance(u.maps["events"], KernelRingMap)
    assert not isinstance(u.maps["userspac.bss"], KernelMap)      # globals stay in user space
    assert u.maps["limits"].kernel_info.id == k.maps["limits"].info.id


def test_updates_are_queued_then_visible_after_flush(pair):
    k, u = pair
    for key in range(20):
        assert _upd(u, 0, key, key * 10)[0] == 0
    assert _upd(u, 1, 3)[0] == 0                              # delete, queued after
    assert len(k.maps["limits"]) == 0                         # nothing applied yet
    br = u.maps["limits"].bridge
    assert br.pending == 21
    u.flush()
    assert br.pending == 0
    assert dict(k.maps["limits"].items()) == {i: i * 10 for i in range(20) if i != 3}
    assert br.stats.applied == 21 and br.stats.failed == 0
    # the user-space object reads the kernel map from Python too
    assert u.maps["limits"][7] == 70 and 3 not in u.maps["limits"]


def test_updates_wait_in_the_ring_until_the_flush(pair):
    k, u = pair
    for key in range(100):
        _upd(u, 0, key, 1)
    assert u.maps["limits"].bridge.pending == 100
    assert len(k.maps["limits"]) == 0
    u.flush()
    assert len(k.maps["limits"]) == 100


_STRACED = textwrap.dedent("""
    import os, struct, sys
    import bpfring
    from bpfring import userspace

    k = bpfring.load(sys.argv[1])
    u = userspace.load(sys.argv[1], kernel_maps={"limits": k.maps["limits"],
                                                 "events": k.maps["events"]})
    upd, emit = u.programs["upd"], u.programs["emit"]
    upd.run(ctx=struct.pack("<IIQ", 0, 0, 0))  # warm up (lazy imports, first writes)
    emit.run(ctx=struct.pack("<IIII", 0, 1, 1, 0))
    u.flush()
    os.write(2, b"BEGIN-UPDATES\\n")
    for key in range(50):
        upd.run(ctx=struct.pack("<IIQ", 0, key, key))
        emit.run(ctx=struct.pack("<IIII", 0, 2, 1, 1))
    os.write(2, b"END-UPDATES\\n")
    u.flush()
    print(len(k.maps["limits"]), len(k.ring_buffer("events").read()))
    u.close()
    k.close()
""")


@pytest.mark.skipif(not os.path.exists("/usr/bin/strace"), reason="needs strace")
def test_no_system_call_per_update_or_record(coop_path, tmp_path):
    """Counted with strace: between the markers, 50 map updates and 100 ring
    records from user-space programs make no bpf() call (and no other
    system call than the markers' writes); one flush applies them."""
    trace = tmp_path / "trace"
    proc = subprocess.run(["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=all",
                           sys.executable, "-c", _STRACED, str(coop_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["50", "101"]
    lines = trace.read_text().splitlines()
    begin = next(i for i, ln in enumerate(lines) if "BEGIN-UPDATES" in ln)
    end = next(i for i, ln in enumerate(lines) if "END-UPDATES" in ln)
    between = [ln.split(None, 1)[1] for ln in lines[begin + 1:end]]
    assert not [ln for ln in between if ln.startswith("bpf(")]
    assert len(between) < 5, between  # e.g. no futex or mmap churn per operation


def test_lookup_reads_the_kernel_map(pair):
    k, u = pair
    k.maps["limits"][5] = 123
    k.maps["counts"][2] = 40
    assert _upd(u, 4, 5, 1)[1] == 123
    assert _upd(u, 2, 2, 2)[1] == 40
    assert _upd(u, 4, 6, 1) == (0, 0)                         # absent key: NULL, ret 1
    assert u.programs["upd"].last_run.retval == 1


def test_writes_through_a_lookup_are_written_back(pair):
    k, u = pair
    k.maps["limits"][5] = 100
    k.maps["counts"][2] = 40
    _upd(u, 4, 5, 7)                                          # *p += 7 on a hash value
    _upd(u, 2, 2, 2)                                          # ... on a copied array value
    assert k.maps["limits"][5] == 100                         # queued, not applied
    assert u.maps["limits"].write_backs == 1
    u.flush()
    assert k.maps["limits"][5] == 107
    assert k.maps["counts"][2] == 42


def test_write_back_does_not_resurrect_a_deleted_key(pair):
    """The write-back is an update with BPF_EXIST: a key the kernel deleted
    meanwhile stays deleted (the bridge counts the ENOENT)."""
    k, u = pair
    k.maps["limits"][9] = 1
    _upd(u, 4, 9, 1)
    del k.maps["limits"][9]
    u.flush()
    assert 9 not in k.maps["limits"]
    assert u.maps["limits"].bridge.stats.errors == {"ENOENT": 1}


def test_mmapable_array_is_the_kernel_memory(pair):
    k, u = pair
    k.maps["knobs"][3] = 5
    assert _upd(u, 3, 3, 4)[1] == 5                           # read through the mapping
    assert k.maps["knobs"][3] == 9                            # written directly, no flush
    assert k.maps["knobs"][2] == 0 and k.maps["knobs"][4] == 0  # the kernel's 8-byte stride
    assert _upd(u, 5, 1, 77)[0] == -17                        # BPF_NOEXIST on an array: -EEXIST
    assert _upd(u, 5, 8, 77)[0] == -7                         # index out of range: -E2BIG


def test_array_updates_go_through_the_bridge(pair):
    k, u = pair
    assert _upd(u, 6, 4, 11)[0] == 0
    assert k.maps["counts"][4] == 0
    u.flush()
    assert k.maps["counts"][4] == 11
    assert u.maps["counts"].bridge.stats.updated == 1


def test_binding_accepts_refs_fds_and_pinned_paths(coop_path, tmp_path):
    import bpfring
    from bpfring import MapRef

    k = bpfring.load(coop_path)
    pinned = f"/sys/fs/bpf/bpfring_coop_{os.getpid()}"
    k.maps["limits"].pin(pinned)
    try:
        refs = {"limits": pinned, "counts": k.maps["counts"].fd,
                "knobs": MapRef.parse(f"id {k.maps['knobs'].info.id}"),
                "events": f"id {k.maps['events'].info.id}"}
        with load(coop_path, kernel_maps=refs) as u:
            _upd(u, 0, 1, 2)
            _upd(u, 6, 0, 3)
            u.flush()
        assert k.maps["limits"][1] == 2 and k.maps["counts"][0] == 3
        assert k.maps["counts"][0] == 3  # the caller's fd stayed open and usable
    finally:
        os.unlink(pinned)
        k.close()


def test_incompatible_bindings_are_refused(coop_path):
    import bpfring

    with bpfring.load(coop_path) as k:
        with pytest.raises(UserLoadError, match=r"counts.*kernel map is hash"):
            load(coop_path, kernel_maps={"counts": k.maps["limits"]})
        with pytest.raises(UserLoadError, match="ring buffer"):
            load(coop_path, kernel_maps={"limits": k.maps["events"]})
        with pytest.raises(UserLoadError, match="global variables"):
            load(coop_path, kernel_maps={"userspac.bss": k.maps["counts"]})
        with pytest.raises(UserLoadError, match=r"no map of the object: nope"):
            load(coop_path, kernel_maps={"nope": k.maps["counts"]})
        with pytest.raises(TypeError, match="Map, MapRef"):
            load(coop_path, kernel_maps={"limits": 1.5})


def test_timer_mode_applies_without_flush(coop_path):
    import bpfring

    with bpfring.load(coop_path) as k, \
            load(coop_path, kernel_maps={"limits": k.maps["limits"], "events": k.maps["events"]},
                 kernel_mode="timer", kernel_period=1e-3) as u:
        for key in range(10):
            _upd(u, 0, key, key)
        _emit(u, 5, 1)
        deadline = time.monotonic() + 5
        while (len(k.maps["limits"]) < 10 or u.maps["events"].relayed < 5) \
                and time.monotonic() < deadline:
            time.sleep(0.005)
        assert dict(k.maps["limits"].items()) == {i: i for i in range(10)}
        assert _recs(k.ring_buffer("events")) == [(1, i) for i in range(5)]


# --- rings --------------------------------------------------------------------------


def test_user_and_kernel_events_in_one_ring_in_order(pair):
    k, u = pair
    _emit(k, 3, 0)                                  # kernel: seq 0..2 (kernel .bss)
    _emit(u, 4, 1)                                  # user space: seq 0..3, relayed
    _emit(u, 4, 1, via=1)                           # reserve/submit: seq 4..7
    _emit(u, 4, 1, via=2)                           # odd seqs discarded: 8, 10
    assert _recs(k.ring_buffer("events")) == [(0, 0), (0, 1), (0, 2)]  # not flushed yet
    u.flush()
    _emit(k, 2, 0)
    got = _recs(k.ring_buffer("events"))
    assert got == [(1, i) for i in range(8)] + [(1, 8), (1, 10)] + [(0, 3), (0, 4)]
    ev = u.maps["events"]
    assert ev.relayed == 10 and ev.lost == 0 and ev.refused == 0
    with pytest.raises(MapTypeError, match="kernel ring"):
        ev.read()


def test_lost_counts_when_the_kernel_ring_overflows(pair):
    k, u = pair
    n = 100
    _emit(u, n, 1, ring=1)                         # into the 4096-byte kernel ring
    u.flush()
    fit = (4096 - 1) // (REC + 8)                  # the kernel's rule: used <= mask
    sm = u.maps["small"]
    assert (sm.relayed, sm.lost, sm.refused) == (fit, n - fit, 0)
    assert u.globals.fails == 0                    # the user-space helper succeeded ...
    assert _recs(k.ring_buffer("small")) == [(1, i) for i in range(fit)]  # ... first ones kept
    _emit(u, 3, 1, ring=1)                         # room again after the read
    u.flush()
    assert _recs(k.ring_buffer("small")) == [(1, n + i) for i in range(3)]
    assert sm.lost == n - fit


def test_perf_event_output_into_a_kernel_ring(coop_path):
    """A user-space perf event array bound to a kernel ring buffer: the
    records of bpf_perf_event_output are relayed like ring records."""
    import bpfring

    with bpfring.load(coop_path) as k, \
            load(coop_path, kernel_maps={"perf": k.maps["events"]}) as u:
        assert isinstance(u.maps["perf"], KernelRingMap)
        u.programs["pemit"].run(ctx=struct.pack("<QQ", 3, 9))
        assert u.globals.fails == 0
        u.flush()
        assert _recs(k.ring_buffer("events")) == [(9, 0), (9, 1), (9, 2)]


def test_full_relay_ring_is_back_pressure_not_a_silent_drop(coop_path):
    """Relay ring of one page: records wait in the local ring; when that is
    full too, the helper fails as on a full kernel ring, and is counted."""
    import bpfring

    with bpfring.load(coop_path) as k, load(coop_path, kernel_maps={"small": k.maps["small"]},
              relay_size=4096) as u:
        n = 200
        _emit(u, n, 1, ring=1, via=1)
        sm = u.maps["small"]
        fails = u.globals.fails
        assert fails > 0 and sm.refused == fails
        accepted = n - fails
        assert sm.waiting > 0                  # some wait locally for relay room
        got: list[tuple[int, int]] = []
        rb = k.ring_buffer("small")
        for _ in range(10):
            u.flush()
            got += _recs(rb)
            if len(got) == accepted:
                break
        assert got == [(1, i) for i in range(accepted)]   # in order, none lost
        assert sm.lost == 0 and sm.waiting == 0


# --- perf event arrays and the Python trigger ---------------------------------------


def test_perf_event_array_in_user_space(coop_path):
    with load(coop_path, cpu=1 if os.cpu_count() and os.cpu_count() > 1 else 0) as u:
        prog = u.programs["pemit"]
        prog.run(ctx=struct.pack("<QQ", 2, 5))
        assert u.globals.fails == 2                # no reader opened: -ENOENT, as the kernel
        lost: list[tuple[int, int]] = []
        with u.perf_buffer("perf", page_count=1,
                           lost_callback=lambda c, n: lost.append((c, n))) as pb:
            prog.run(ctx=struct.pack("<QQ", 3, 5))
            cpu = u.programs["pemit"]._obj._ctx.cpu()
            got = pb.read_with_cpu()
            assert [(c, struct.unpack_from("<II", r)) for c, r in got] == \
                [(cpu, (5, 2)), (cpu, (5, 3)), (cpu, (5, 4))]
            prog.run(ctx=struct.pack("<QQ", 64, 5))  # 64 * 80 bytes > one page
            fit = 4096 // 80
            assert len(pb.read()) == fit
            assert pb.lost == 64 - fit and lost == [(cpu, 64 - fit)]


def test_attach_python_runs_the_program_per_call(coop_path):
    src = r'''
    #include "vmlinux.h"
    #include <bpf/bpf_helpers.h>
    struct bpfring_pycall { __u64 nargs; __u64 args[8]; __u64 str_len[8]; };
    __u64 calls, sum, nargs, slen;
    char text[16];
    SEC("raw_tp") int on_call(struct bpfring_pycall *c)
    {
        calls++;
        nargs = c->nargs;
        sum += c->args[0];
        if (c->nargs > 1 && c->str_len[1]) {
            slen = c->str_len[1];
            bpf_probe_read_user_str(text, sizeof(text), (void *)c->args[1]);
        }
        return 0;
    }
    char LICENSE[] SEC("license") = "GPL";
    '''
    assert PYCALL_CTX.size == 136
    with load(src) as u:
        def target(a, b=None, *rest):
            return a
        link = u.programs["on_call"].attach_python(target)
        with link:
            f = link.wrapper
            assert f(5, "hello") == 5
            assert f(-1) == -1
            f(2, b"raw", 3, 4)
            assert u.globals.nargs == 4                # a, b and *rest (3, 4)
            f(7, b=b"kw")                              # keyword: in signature order
            assert (u.globals.nargs, u.globals.text, u.globals.sum) == (2, "kw", 13)
            f(-7)                                      # b's default (None) counts: nargs 2
            assert u.globals.nargs == 2
        assert u.globals.calls == 5
        assert u.globals.sum == (5 - 1 + 2 + 7 - 7) & (2**64 - 1)
        assert (u.globals.text, u.globals.slen) == ("kw", 2)
        f(100)                                      # detached: no run
        assert u.globals.calls == 5 and link.calls == 5 and link.closed


_MODULE_CALLS: list[int] = []


def module_level_target(x):
    _MODULE_CALLS.append(x)
    return x + 1


def test_attach_python_patches_where_defined_and_restores():
    src = r'''
    #include "vmlinux.h"
    #include <bpf/bpf_helpers.h>
    __u64 seen;
    SEC("syscall") int on_call(__u64 *c) { seen = c[1]; return c[1] == 13 ? 0 : 1; }
    char LICENSE[] SEC("license") = "GPL";
    '''
    import sys

    mod = sys.modules[__name__]
    original = mod.module_level_target
    with load(src) as u:
        with attach_python(module_level_target, u.programs["on_call"]) as link:
            assert mod.module_level_target is link.wrapper or sys.version_info >= (3, 12)
            assert mod.module_level_target(41) == 42   # the call itself is unchanged
            assert u.globals.seen == 41 and link.last_retval == 1
        assert mod.module_level_target is original
        mod.module_level_target(13)
        assert u.globals.seen == 41


def test_attach_python_program_errors_reach_the_caller():
    src = r'''
    #include "vmlinux.h"
    #include <bpf/bpf_helpers.h>
    SEC("syscall") int bad(__u64 *c) { return *(volatile __u64 *)(c[1] + 1); }
    char LICENSE[] SEC("license") = "GPL";
    '''
    with load(src) as u:
        def f(x):
            return x
        with u.programs["bad"].attach_python(f) as link, pytest.raises(UserRuntimeError):
            link.wrapper(0)
        with u.programs["bad"].attach_python(f, on_error="log") as link:
            assert link.wrapper(7) == 7 and link.errors == 1


# --- bridge programs and timers in user space, unprivileged --------------------------

_BRIDGE_CHILD = textwrap.dedent("""
    import json, struct, sys, time
    import bpfring
    from bpfring import userspace
    from bpfring.bridge._wire import FLUSH_CTX, OP_DELETE, OP_HDR, OP_UPDATE
    from bpfring.errors import BPFPermissionError

    paths = json.loads(sys.argv[1])
    out = {}
    try:
        bpfring.load(paths["example"])
        out["kernel"] = "loaded"
    except BPFPermissionError:
        out["kernel"] = "refused"
    with userspace.load(paths["example"]) as u:
        vs = u.maps["rates"].value_size
        def op(kind, key, val=b""):
            return OP_HDR.pack(kind, 0, 4, len(val), 1, 0) + struct.pack("<I", key) + val
        ops = u.maps["rates__ops"]
        ops.write(op(OP_UPDATE, 7, struct.pack("<II", 3, 1)))
        ops.write(op(OP_UPDATE, 8, struct.pack("<II", 5, 1)))
        ops.write(op(OP_DELETE, 8))
        flush = u.programs["rates__flush"]
        out["flush_rc"] = flush.run(ctx=bytes(FLUSH_CTX.size))
        out["flushed"] = list(FLUSH_CTX.unpack(flush.last_run.ctx))
        out["rates"] = [[k, list(struct.unpack("<II", v))] for k, v in
                        ((k, u.maps["rates"].lookup_raw(struct.pack("<I", k))) for k in (7, 8))
                        if v is not None]
        # timer mode: the bridge's own bpf_timer drains, no flush
        out["timer_on"] = u.programs["rates__timer_on"].run(ctx=struct.pack("<Q", 1_000_000))
        ops.write(op(OP_UPDATE, 9, struct.pack("<II", 2, 4)))
        deadline = time.monotonic() + 5
        while u.maps["rates"].lookup_raw(struct.pack("<I", 9)) is None \\
                and time.monotonic() < deadline:
            time.sleep(0.002)
        out["timer_applied"] = list(struct.unpack("<II", u.maps["rates"].lookup_raw(
            struct.pack("<I", 9))))
        out["timer_off"] = u.programs["rates__timer_off"].run(ctx=bytes(8))
    print(json.dumps(out))
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop capabilities")
def test_bridge_programs_run_unprivileged_in_user_space(kernel):
    """The bridge's flush and timer programs (examples/bridge_control_loop.bpf.c),
    in user space, in a process without CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN."""
    from test_userspace_safety import _drop_bpf_capabilities

    import bpfring

    paths = {"example": str(bpfring.build(EXAMPLES / "bridge_control_loop.bpf.c"))}
    proc = subprocess.run([sys.executable, "-c", _BRIDGE_CHILD, json.dumps(paths)],
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=_drop_bpf_capabilities)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["kernel"] == "refused"                       # really unprivileged
    assert out["flush_rc"] == 0
    assert out["flushed"] == [3, 3, 0, 0, 0]                # drained, applied, failed, bad, error
    assert out["rates"] == [[7, [3, 1]]]                    # 8 updated, then deleted
    assert out["timer_on"] == 0 and out["timer_off"] == 0
    assert out["timer_applied"] == [2, 4]


def test_timer_helpers_mirror_the_kernel(kernel):
    src = r'''
    #include "vmlinux.h"
    #include <bpf/bpf_helpers.h>
    struct elem { struct bpf_timer t; __u64 fired; };
    struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2);
             __type(key, __u32); __type(value, struct elem); } tm SEC(".maps");
    long r_init, r_init2, r_badclock, r_start_nocb, r_cb, r_start, r_cancel, r_cancel2;
    __u32 cb_key;
    static int cb(void *map, __u32 *key, struct elem *e) { e->fired++; cb_key = *key; return 0; }
    SEC("syscall") int arm(__u64 *ctx)
    {
        __u32 k = 1;
        struct elem *e = bpf_map_lookup_elem(&tm, &k);
        if (!e) return 1;
        r_badclock = bpf_timer_init(&e->t, &tm, 3);
        r_init = bpf_timer_init(&e->t, &tm, 1);
        r_init2 = bpf_timer_init(&e->t, &tm, 1);
        r_start_nocb = bpf_timer_start(&e->t, 1000000000, 0);  /* re-armed below */
        r_cb = bpf_timer_set_callback(&e->t, cb);
        r_start = bpf_timer_start(&e->t, ctx[0], 0);
        if (ctx[1]) {
            r_cancel = bpf_timer_cancel(&e->t);
            r_cancel2 = bpf_timer_cancel(&e->t);
        }
        return 0;
    }
    char LICENSE[] SEC("license") = "GPL";
    '''
    import bpfring

    names = ("r_badclock", "r_init", "r_init2", "r_start_nocb", "r_cb", "r_start", "r_cancel",
             "r_cancel2")
    with bpfring.load(src) as k:
        k.programs["arm"].run(ctx=struct.pack("<QQ", 10**9, 1))
        in_kernel = [getattr(k.globals, n) for n in names]
    assert in_kernel == [-22, 0, -16, -22, 0, 0, 1, 0]
    with load(src) as u:
        u.programs["arm"].run(ctx=struct.pack("<QQ", 10**9, 1))    # armed, then cancelled
        g = u.globals
        assert [getattr(g, n) for n in names] == in_kernel
        # Now the first start arms (the callback is set): 1 s, re-armed at once
        # by the second to ~1 us, so the callback runs exactly once.
        u.programs["arm"].run(ctx=struct.pack("<QQ", 1000, 0))
        deadline = time.monotonic() + 5
        while u.maps["tm"][1]["fired"] == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        assert u.maps["tm"][1]["fired"] == 1 and g.cb_key == 1
        assert u.maps["tm"][0]["fired"] == 0


def test_userspace_filter_example(kernel):
    """examples/userspace_filter.py: user-space filter on a Python function ->
    kernel hash map -> kernel tracepoint program; both kinds of events in one ring."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / "userspace_filter.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == ["served /index.html (512 bytes)", "served /upload (4096 bytes)",
                         "served /about (100 bytes)"]
    user = [ln for ln in lines if ln.startswith("user ")]
    pid = user[0].split("tgid=")[1].split()[0] if user else "?"
    kern = [ln for ln in lines if ln.startswith("kernel ")]
    assert user == [f"user   tgid={pid} value=4096 text=/upload"]   # only the large request
    assert kern[:3] == [f"kernel tgid={pid} value={i} text=getpgid" for i in (1, 2, 3)]
    assert lines[-1].startswith("3 calls filtered in user space (last verdict 0)")
    assert lines[-1].endswith("['kernel', 'user']")


# --- binding to a kernel perf event array -------------------------------------------


def _perf_recs(pb):
    return [(c, struct.unpack_from("<II", r)) for c, r in pb.read_with_cpu()]


@pytest.fixture
def on_cpu0():
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    yield
    os.sched_setaffinity(0, before)


def test_perf_event_output_into_a_kernel_perf_event_array(coop_path, on_cpu0):
    """User-space samples relayed into the kernel map arrive in a bpfring
    PerfBuffer on it, in order, interleaved with the kernel's own samples
    (kernel program run on CPU 0, the user-space object's CPU 0)."""
    import bpfring
    from bpfring.userspace._kernel import KernelPerfMap

    with bpfring.load(coop_path) as k, \
            load(coop_path, cpu=0, kernel_maps={"perf": k.maps["perf"]}) as u, \
            k.perf_buffer("perf") as pb:
        um = u.maps["perf"]
        assert isinstance(um, KernelPerfMap)
        kprog, uprog = k.programs["pemit"], u.programs["pemit"]
        kprog.run(ctx=struct.pack("<QQ", 2, 1))            # kernel: seq 0, 1
        uprog.run(ctx=struct.pack("<QQ", 3, 2))            # user space: seq 0, 1, 2
        assert u.globals.fails == 0 and um.pending == 3
        assert _perf_recs(pb) == [(0, (1, 0)), (0, (1, 1))]  # queued, not emitted yet
        u.flush()                                          # one raw_tp test run on CPU 0
        kprog.run(ctx=struct.pack("<QQ", 1, 1))            # kernel: seq 2
        assert _perf_recs(pb) == [(0, (2, 0)), (0, (2, 1)), (0, (2, 2)), (0, (1, 2))]
        assert (um.relayed, um.lost, um.failed, um.pending) == (3, 0, 0, 0)
        assert pb.lost == 0


def test_perf_relay_slots_batches_and_back_pressure(coop_path):
    """Samples for another CPU's slot are emitted on that CPU; more samples
    than one relay run carries go in several runs, in order; a relay ring of
    one page is flushed when full, not dropped."""
    import bpfring

    ncpu = len(os.sched_getaffinity(0))
    cpu = 1 if ncpu > 1 else 0
    with bpfring.load(coop_path) as k, \
            load(coop_path, cpu=cpu, relay_size=4096,
                 kernel_maps={"perf": k.maps["perf"]}) as u, \
            k.perf_buffer("perf", page_count=64) as pb:
        um = u.maps["perf"]
        n = 200                                            # > PERF_BATCH, > one page
        for _ in range(n // 50):
            u.programs["pemit"].run(ctx=struct.pack("<QQ", 50, 7))
        assert u.globals.fails == 0 and um.refused == 0
        u.flush()
        got = _perf_recs(pb)
        assert got == [(cpu, (7, i)) for i in range(n)]    # in order, on the slot's CPU
        assert (um.relayed, um.lost, um.failed) == (n, 0, 0)


def test_perf_relay_counts_a_full_reader_ring_as_lost(coop_path, on_cpu0):
    import bpfring

    with bpfring.load(coop_path) as k, \
            load(coop_path, cpu=0, kernel_maps={"perf": k.maps["perf"]}) as u:
        um = u.maps["perf"]
        u.programs["pemit"].run(ctx=struct.pack("<QQ", 5, 3))
        u.flush()                                          # no reader: -ENOENT, counted
        assert (um.relayed, um.failed) == (0, 5)
        assert um.relay.counters()["last_error"] == -errno.ENOENT
        with k.perf_buffer("perf", page_count=1) as pb:
            for _ in range(2):
                u.programs["pemit"].run(ctx=struct.pack("<QQ", 64, 3))
            u.flush()
            got = pb.read()
            assert len(got) + um.lost == 128 and um.lost > 0
            seqs = [struct.unpack_from("<II", r)[1] for r in got]
            assert seqs == sorted(seqs)
            # perf writes its PERF_RECORD_LOST before the next sample that fits
            u.programs["pemit"].run(ctx=struct.pack("<QQ", 1, 3))
            u.flush()
            assert len(pb.read()) == 1
            assert pb.lost == um.lost                      # the reader saw them as lost


def test_perf_event_array_binding_is_checked(coop_path):
    import bpfring

    with bpfring.load(coop_path) as k:
        with pytest.raises(UserLoadError, match="perf event array"):
            load(coop_path, kernel_maps={"events": k.maps["perf"]})
        with pytest.raises(UserLoadError, match="the kernel map is hash"):
            load(coop_path, kernel_maps={"perf": k.maps["limits"]})
