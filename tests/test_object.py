"""Loading, globals, attaching and the demo, against the real kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import BuildError, LoadError

BAD_VERIFIER = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
SEC("syscall")
int bad(void *ctx)
{
	int *p = (int *)0x1234;
	return *p;   /* the verifier must refuse this */
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_globals_before_and_after_load(echo_path):
    with bpfring.load(echo_path, globals={"knob": 42, "cfg": {"id": 3}}) as obj:
        assert obj.loaded
        assert obj.programs["read_knob"].run() == 42 + 3
        g = obj.globals
        assert g.knob == 42
        assert g.cfg.id == 3
        assert g.cfg.label == "init"  # untouched fields keep their initial values
        assert g.cfg.limit == 100
        with pytest.raises(AttributeError, match="read-only"):
            g.knob = 1
        # .data/.bss are live kernel memory after load, in both directions.
        g.cfg = {"id": 9, "label": "live", "limit": 5}
        assert obj.programs["read_knob"].run() == 42 + 9
        assert g.cfg.label == "live"
        g.echoed = 1000
        urb = obj.user_ring_buffer("in_ring")
        urb.write(b"x")
        assert obj.programs["echo"].run() == 1
        assert g.echoed == 1001
        assert "echoed" in dir(g)
        with pytest.raises(AttributeError):
            g.no_such_variable  # noqa: B018


def test_load_variants_and_errors(echo_path, tmp_path, kernel):
    data = Path(echo_path).read_bytes()
    with bpfring.load(data, name="frombytes") as obj:
        assert "echo" in obj.programs
        assert obj.maps["in_ring"].type_name == "user_ringbuf"
    with bpfring.load(BPF_DIR / "echo.bpf.c") as obj:
        assert obj.name == "echo"
    with pytest.raises(FileNotFoundError):
        bpfring.load(tmp_path / "missing.bpf.o")
    with pytest.raises(bpfring.BPFError, match="not an ELF"):
        bpfring.load(b"garbage")
    with pytest.raises(LoadError) as ei:
        bpfring.load(BAD_VERIFIER)
    text = str(ei.value)
    assert "invalid mem access" in text or "R1" in text  # the verifier's own words
    assert ei.value.log
    with pytest.raises(BuildError) as bi:
        bpfring.load("int broken( {\n")
    assert "error" in bi.value.diagnostics


def test_closing_object_closes_rings_and_links(echo_path):
    obj = bpfring.load(echo_path)
    rb = obj.ring_buffer("out_ring")
    obj.close()
    assert rb.closed
    obj.close()
    with pytest.raises(ValueError):
        obj.ring_buffer("out_ring")


def _run_cli(*args: str, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "bpfring", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_demo_end_to_end(kernel):
    proc = _run_cli("demo", "--count", "5", "--trigger")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Draining current samples..."
    assert lines[1].split() == ["TIME", "EVENT", "COMM", "PID"]
    rows = lines[2:]
    assert len(rows) == 5
    for row in rows:
        ts, event, comm, pid = row.split()
        assert len(ts) == 8 and ts.count(":") == 2
        assert event == "SIGN"
        # The comm and pid of whichever process called kill(): our own trigger,
        # or any other process on the host (the program is not filtered).
        assert comm
        assert int(pid) > 0


def test_demo_json(kernel):
    proc = _run_cli("demo", "--count", "3", "--trigger", "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(events) == 3
    assert {e["event"] for e in events} == {"SIGN"}
    assert all(e["pid"] > 0 and e["comm"] for e in events)


def _drop_bpf_capabilities() -> None:
    """In the child before exec: drop CAP_SYS_ADMIN, CAP_PERFMON and CAP_BPF
    from the bounding set, so the exec'd program runs as a root without BPF
    privileges (kernel.unprivileged_bpf_disabled then refuses bpf())."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (21, 38, 39):  # CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP failed")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop capabilities")
def test_demo_without_privileges_is_one_line(kernel):
    proc = subprocess.run([sys.executable, "-m", "bpfring", "demo", "--count", "1", "--trigger"],
                          capture_output=True, text=True, timeout=60,
                          preexec_fn=_drop_bpf_capabilities)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("bpfring: error:")
    assert "Operation not permitted" in err[0] or "permission" in err[0].lower()
    assert "hint: run as root, or grant CAP_BPF" in err[0]
    assert "Traceback" not in proc.stderr


def test_demo_ctrl_c_exits_cleanly(kernel):
    import signal
    import time

    # The child gets the default SIGINT disposition whatever ours is: under
    # nohup or a non-interactive parent SIGINT is ignored, and an ignored
    # SIGINT is inherited through exec (Python then installs no handler).
    proc = subprocess.Popen([sys.executable, "-m", "bpfring", "demo", "--trigger"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # Wait for the header: the program is loaded and attached.
        assert proc.stdout.readline().startswith("Draining")
        assert proc.stdout.readline().split() == ["TIME", "EVENT", "COMM", "PID"]
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "SIGN" in out


# --------------------------------------------------------------------------------------
# Opening, loading and what the object owns
# --------------------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_open_then_load_and_fds_before_load(echo_path):
    """open_object() + load(): before load, program and map fds are a clear
    BPFError saying to load first (no negative fd); a second load is refused."""
    with bpfring.open_object(echo_path) as obj:
        assert not obj.loaded and not obj.closed
        with pytest.raises(bpfring.BPFError, match="not loaded") as ei:
            obj.programs["echo"].fd  # noqa: B018
        assert "load" in ei.value.hint
        with pytest.raises(bpfring.BPFError, match="not loaded"):
            obj.maps["out_ring"].fd  # noqa: B018
        obj.globals.knob = 7  # the initial image, before load
        assert obj.load() is obj and obj.loaded
        assert obj.programs["echo"].fd >= 0 and obj.maps["out_ring"].fd >= 0
        assert obj.programs["read_knob"].run() == 7 + obj.globals.cfg.id
        with pytest.raises(bpfring.BPFError, match="already loaded"):
            obj.load()
    assert obj.closed
    with pytest.raises(ValueError, match="closed"):
        obj.programs["echo"].fd  # noqa: B018
    with pytest.raises(ValueError, match="closed"):
        obj.maps["out_ring"].fd  # noqa: B018
    assert obj.maps["out_ring"].closed


def test_adopted_resources_close_with_the_object(echo_path):
    """adopt(): anything with close()/closed is closed with the object, before
    it unloads; resources closed earlier are dropped from its list."""
    class Probe:
        def __init__(self, obj: bpfring.BPFObject) -> None:
            self.obj, self.closed, self.saw_open = obj, False, None

        def close(self) -> None:
            self.saw_open = not self.obj.closed and self.obj.maps["out_ring"].fd >= 0
            self.closed = True

    obj = bpfring.load(echo_path)
    early, late = Probe(obj), Probe(obj)
    assert obj.adopt(early) is early
    early.close()
    rb = obj.ring_buffer("out_ring")  # adopted by the object
    assert obj.adopt(late) is late
    assert early not in obj._adopted and rb in obj._adopted
    obj.close()
    assert late.closed and late.saw_open  # closed while the object was still open
    assert rb.closed
    with pytest.raises(ValueError, match="closed"):
        obj.adopt(Probe(obj))


def test_maps_own_their_fds(echo_path, kernel):
    """Map(fd) works on its own duplicate; maps opened by id or reference close
    their fd in close(), and a forgotten one warns as files do."""
    import gc
    import warnings

    from bpfring import Map, _sys

    with bpfring.load(echo_path) as obj:
        mid = obj.maps["out_ring"].id
        base = _open_fds()
        fd = _sys.map_get_fd_by_id(mid)
        m = Map(fd)
        os.close(fd)  # the caller's fd: the map has its own
        assert m.id == mid and m.fd != fd and not m.closed
        m.close()
        assert m.closed and _open_fds() == base
        m.close()  # idempotent
        with pytest.raises(ValueError, match="closed"):
            m.fd  # noqa: B018
        with Map.from_ref(f"id {mid}") as r, Map.from_id(mid) as i:
            assert r.name == i.name == "out_ring" and _open_fds() == base + 2
        assert _open_fds() == base
        with pytest.raises(bpfring.BPFError, match="not part of a BPF object"):
            Map.from_id(mid).reuse_fd(0)
        gc.collect()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Map.from_id(mid)  # dropped without close()
            gc.collect()
        assert any(issubclass(w.category, ResourceWarning) for w in caught)
        assert _open_fds() == base
        with pytest.raises(bpfring.BPFError, match="already loaded"):
            obj.maps["out_ring"].reuse_fd(obj.maps["in_ring"].fd)
