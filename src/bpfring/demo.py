"""The reference example: a tracepoint program drains a user ring buffer and
answers each sample with an event in a kernel ring buffer.

Python writes a sample ``{i, comm}``; whenever some process returns from
``kill(2)``, the BPF program (``bpf/demo.bpf.c``) drains the user ring and,
for each sample, emits ``{pid, comm}`` of the process that called kill.  Each
event printed here is followed by the next sample, so the exchange continues
as long as something calls kill; ``trigger=True`` makes the demo call
``kill(own pid, 0)`` itself so that it runs on an idle machine.
"""

from __future__ import annotations

import json
import os
import sys
import time
from importlib import resources
from typing import TextIO

from .object import load


def demo_source() -> str:
    """Path of the demo's BPF C source shipped in the package."""
    return str(resources.files("bpfring") / "bpf" / "demo.bpf.c")


def run(count: int | None = None, trigger: bool = False, as_json: bool = False,
        interval: float = 0.1, out: TextIO = sys.stdout) -> int:
    """Run the demo until ``count`` events (None: until interrupted); return
    the number of events printed.

    Records are typed from the program's BTF (``struct user_sample`` and
    ``struct event``): no struct layout is written down in Python.
    """
    with load(demo_source(), name="demo") as obj:
        obj.attach()
        samples = obj.user_ring_buffer("user_ringbuf", record="user_sample")
        events = obj.ring_buffer("kernel_ringbuf", record="event")
        seq = 1
        samples.write(i=seq, comm="bpfring-demo")
        if not as_json:
            print("Draining current samples...", file=out)
            print(f"{'TIME':<8} {'EVENT':<5} {'COMM':<16} {'PID'}", file=out, flush=True)
        seen = 0
        next_kick = time.monotonic()
        while count is None or seen < count:
            if trigger and time.monotonic() >= next_kick:
                os.kill(os.getpid(), 0)  # signal 0: only the syscall, no signal sent
                next_kick = time.monotonic() + interval
            left = None if count is None else count - seen
            for ev in events.read(limit=left, timeout=interval if trigger else 1.0):
                ts = time.strftime("%H:%M:%S")
                if as_json:
                    print(json.dumps({"time": ts, "event": "SIGN", "comm": ev.comm,
                                      "pid": ev.pid}), file=out, flush=True)
                else:
                    print(f"{ts:<8} {'SIGN':<5} {ev.comm:<16} {ev.pid}", file=out, flush=True)
                seen += 1
                seq += 1
                samples.write(i=seq, comm="bpfring-demo")
        return seen
