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
import struct
import sys
import time
from importlib import resources
from typing import TextIO

from .object import load

_SAMPLE = struct.Struct("<i16s")  # struct user_sample { int i; char comm[16]; }
_EVENT = struct.Struct("<i16s")  # struct event { int pid; char comm[16]; }


def demo_source() -> str:
    """Path of the demo's BPF C source shipped in the package."""
    return str(resources.files("bpfring") / "bpf" / "demo.bpf.c")


def run(count: int | None = None, trigger: bool = False, as_json: bool = False,
        interval: float = 0.1, out: TextIO = sys.stdout) -> int:
    """Run the demo until ``count`` events (None: until interrupted); return
    the number of events printed."""
    with load(demo_source(), name="demo") as obj:
        obj.attach()
        urb = obj.user_ring_buffer("user_ringbuf")
        rb = obj.ring_buffer("kernel_ringbuf")
        seq = 0

        def write_sample() -> None:
            nonlocal seq
            seq += 1
            urb.write(_SAMPLE.pack(seq, b"bpfring-demo"))

        write_sample()
        if not as_json:
            print("Draining current samples...", file=out)
            print(f"{'TIME':<8} {'EVENT':<5} {'COMM':<16} {'PID'}", file=out, flush=True)
        seen = 0

        def on_event(view: memoryview) -> None:
            nonlocal seen
            pid, comm = _EVENT.unpack_from(view)
            name = comm.split(b"\0", 1)[0].decode(errors="replace")
            ts = time.strftime("%H:%M:%S")
            if as_json:
                print(json.dumps({"time": ts, "event": "SIGN", "comm": name, "pid": pid}),
                      file=out, flush=True)
            else:
                print(f"{ts:<8} {'SIGN':<5} {name:<16} {pid}", file=out, flush=True)
            seen += 1
            write_sample()

        next_kick = time.monotonic()
        while count is None or seen < count:
            if trigger and time.monotonic() >= next_kick:
                os.kill(os.getpid(), 0)  # signal 0: only the syscall, no signal sent
                next_kick = time.monotonic() + interval
            left = None if count is None else count - seen
            rb.poll(on_event, timeout=interval if trigger else 1.0, limit=left)
        return seen
