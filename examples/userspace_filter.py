"""User-space and kernel eBPF together: a user-space eBPF filter on a Python
function steering a kernel tracepoint program, one ring for both.

The same object (userspace_filter.bpf.c) is loaded twice:

* into the kernel, where kernel_watch is attached to the getpgid() syscall
  tracepoint; it reads the kernel hash map `watch`;
* into bpfring's user-space runtime, with its maps `watch` and `events` bound
  to the kernel object's maps, where user_filter runs on every call of the
  Python function handle(path, size) (attach_python).

A call with a large size makes the user-space filter put this process on
`watch` (queued through the map bridge's user ring, applied by a bpf_timer
in the kernel: no system call) and emit a "user" event; the kernel program
then emits a "kernel" event for each getpgid() of this process.  One
consumer reads both from the kernel ring `events`.

    sudo .venv/bin/python examples/userspace_filter.py [--limit N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import bpfring

HERE = Path(__file__).resolve().parent
KINDS = {1: "user", 2: "kernel"}


def handle(path: str, size: int) -> str:
    """The application's function: the filter runs on every call of it."""
    return f"served {path} ({size} bytes)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=1000, help="size that gets a process watched")
    opts = p.parse_args()
    src = HERE / "userspace_filter.bpf.c"

    with bpfring.load(src, globals={"limit": opts.limit}) as kobj:
        kobj.programs["kernel_watch"].attach()
        ring = kobj.ring_buffer("events", record=kobj.types["event"])
        with bpfring.load(src, runtime="user", globals={"limit": opts.limit},
                          kernel_maps={"watch": kobj.maps["watch"],
                                       "events": kobj.maps["events"]},
                          kernel_mode="timer", kernel_period=0.001) as uobj, \
                uobj.programs["user_filter"].attach_python(handle) as link:
            # handle is called as usual: on Python 3.12+ sys.monitoring fires the
            # filter, before that the module's `handle` is the link's wrapper.
            for path, size in [("/index.html", 512), ("/upload", 4096), ("/about", 100)]:
                print(handle(path, size))
            # The bridge's timer applies the update within about a millisecond.
            deadline = time.monotonic() + 5
            while os.getpid() not in kobj.maps["watch"] and time.monotonic() < deadline:
                time.sleep(0.001)
            for _ in range(3):
                os.getpgid(0)  # seen by the kernel program
            time.sleep(0.05)  # the relay's timer moves the user events into the ring
            events = ring.read(timeout=1.0)
            events += ring.read()
            flagged = link.last_retval
            calls = link.calls
        for ev in events:
            print(f"{KINDS.get(ev.kind, ev.kind):6} tgid={ev.tgid} value={ev.value} "
                  f"text={ev.text}")
        kinds = {KINDS.get(ev.kind) for ev in events}
        print(f"{calls} calls filtered in user space (last verdict {flagged}), "
              f"{len(events)} events from one ring: {sorted(k for k in kinds if k)}")
        return 0 if kinds == {"user", "kernel"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
