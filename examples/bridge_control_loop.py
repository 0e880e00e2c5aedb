"""A Python control loop steering an attached BPF program through a map bridge.

The BPF program (bridge_control_loop.bpf.c) samples the getpgid() calls of a
workload process: one sample every `every` calls, read from the map `rates`.
The workload calls getpgid() at a rate that changes over time; every step the
control loop counts the samples that arrived and sets `every` so that about
--target samples per second come out.  The new setting goes through the map
bridge in timer mode: it is queued without a system call and a bpf_timer
applies it within about a millisecond.  Each sample carries the generation of
the setting it was taken under ("in force"), and "applied after" is the time
from queueing a change to the bridge's drain writing it into the map.

    sudo .venv/bin/python examples/bridge_control_loop.py [--steps N] [--target N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import bpfring
import bpfring.bridge
from bpfring.bridge import MapBridge

HERE = Path(__file__).resolve().parent


# The workload: another process calling getpgid() for a share of every 10 ms
# that changes each second (a process of its own, so that it does not compete
# with the control loop for the GIL).
WORKLOAD = """
import os, sys, time
duty = [float(x) for x in sys.argv[1:]]
start = time.monotonic()
while True:
    busy = duty[int(time.monotonic() - start) % len(duty)]
    t_busy = time.monotonic() + 0.01 * busy
    while time.monotonic() < t_busy:
        os.getpgid(0)
    time.sleep(0.01 * (1 - busy))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="control steps (default 20)")
    p.add_argument("--interval", type=float, default=0.1, help="seconds per step (0.1)")
    p.add_argument("--target", type=float, default=200, help="samples per second (200)")
    opts = p.parse_args()

    with bpfring.bridge.load(HERE / "bridge_control_loop.bpf.c") as obj:
        obj.programs["sample_calls"].attach()
        samples = obj.ring_buffer("samples")
        with MapBridge(obj, "rates", mode="timer", period=0.001) as rates:
            worker = subprocess.Popen([sys.executable, "-c", WORKLOAD, "1", "0.3", "0.6", "0.1"])
            pid = worker.pid
            every, gen = 1000, 1
            rates.update(pid, {"every": every, "generation": gen})
            changed_at = time.monotonic()
            print(f"{'step':>4} {'calls/s':>9} {'every':>6} {'samples/s':>9} "
                  f"{'in force':>8} {'applied after':>13}")
            last_calls, applied = 0, ""
            try:
                for step in range(1, opts.steps + 1):
                    deadline = time.monotonic() + opts.interval
                    got = []
                    while (left := deadline - time.monotonic()) > 0:
                        for raw in samples.read(timeout=min(left, 0.0005)):
                            s = obj.types["call_sample"].decode(raw)
                            if s.tgid == pid:
                                got.append(s)
                        # The bridge's counters are mmapped: checking is no syscall.
                        if applied == "" and rates.pending == 0:
                            applied = f"{(time.monotonic() - changed_at) * 1e3:.2f} ms"
                    calls = got[-1].calls if got else last_calls
                    rate = (calls - last_calls) / opts.interval
                    last_calls = calls
                    print(f"{step:>4} {rate:>9.0f} {every:>6} {len(got) / opts.interval:>9.0f} "
                          f"{'gen ' + str(got[-1].generation) if got else '-':>8} "
                          f"{applied:>13}", flush=True)
                    # Proportional step towards the target sample rate.
                    want = max(1, round(rate / opts.target)) if rate else every
                    if want != every:
                        every, gen = want, gen + 1
                        rates.update(pid, {"every": every, "generation": gen})  # no syscall
                        changed_at, applied = time.monotonic(), ""
                    else:
                        applied = "-"
            finally:
                worker.kill()
                worker.wait()
            rates.wait_applied(1.0)
            st = rates.stats
            print(f"bridge: {st.queued} updates queued, {st.applied} applied, "
                  f"{st.failed} failed, {st.timer_ticks} timer drains; "
                  f"samples lost: {samples.lost}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
