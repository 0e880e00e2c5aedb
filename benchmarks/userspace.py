"""``bpfring bench userspace``: the user-space eBPF interpreters against DPDK's
librte_bpf interpreter and the kernel, on one loop-free program, in one run.

The program (``benchmarks/userspace.bpf.c``, 4,105 instructions) mixes two
u64 from a 16-byte ctx through 256 unrolled blocks of ALU instructions with a
stack store and load each: straight-line code, so DPDK's validator (which
refuses loops) takes it, and every engine runs exactly the same
instructions (DPDK gets the bytes of the linked program).

* ``c``: bpfring's C interpreter, ``bpfring.load(path, runtime="user")`` then
  ``prog.run(ctx=..., repeat=--runs)``: M insn/s and ns per run, the Python
  per-run overhead included;
* ``dpdk``: ``rte_bpf_exec_burst`` of librte_bpf (Debian ``librte-bpf23``,
  DPDK 22.11, through ctypes, no EAL init: rte_bpf needs none), the ctx
  pointer repeated ``--burst`` times so the ctypes call is amortised; its own
  validator and interpreter, no JIT.  Measured in the same process as ``c``,
  rounds interleaved, so ``c_vs_dpdk`` is a ratio from one run;
* ``pure``: the pure-Python reference interpreter (a child process with
  ``BPFRING_PURE_PYTHON=1``, as ``make test-pure``), M insn/s;
* ``kernel``: the same program loaded in the kernel (``SEC("syscall")``),
  one ``BPF_PROG_TEST_RUN`` per ``prog.run`` from Python: what a run costs a
  Python caller, ns (needs root).

``c-empty`` runs the object's ``empty`` program the same way: the cost of
a run around the interpreter loop (ctx setup, the call into C, the
object's bookkeeping), and ``c-loop`` = ``c`` - ``c-empty`` is the loop alone,
the figure to hold against DPDK's (whose burst call has no such cost).

``maps``: kernel map updates from a user-space program
(``benchmarks/userspace_maps.bpf.c``: one run writes 4,096 entries of a hash
map through ``bpf_loop``).  ``user-maps`` runs it in the C interpreter with
the map bound to the kernel's (``kernel_maps=``), so every update is queued
in the map bridge's user ring, then ``obj.flush()`` has the kernel apply
them; ``bpf-calls`` makes the same updates from Python, one
``BPF_MAP_UPDATE_ELEM`` each (``kmap[key] = value``); ``kernel-maps`` is the
program itself run in the kernel (one test run), the kernel's own cost;
``local-maps`` runs it in the C interpreter on its own (memfd) hash map,
the cost of the map helper itself.
The map's contents are checked after each.  ns per update.

Every engine's return value is checked against the kernel's (or the C
interpreter's) before timing.  Times are the thread's CPU time (user and
system), not wall-clock time, so that preemption on a shared machine does
not count.  The table shows medians over ``--rounds``;

"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import bpfring

SRC = Path(__file__).with_name("userspace.bpf.c")
MAPS_SRC = Path(__file__).with_name("userspace_maps.bpf.c")
MAP_UPDATES = 4096
CTX = struct.pack("<QQ", 0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210)


# DPDK librte_bpf (22.11: rte_bpf.h) ---------------------------------------------------

class _Arg(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("size", ctypes.c_size_t),
                ("buf_size", ctypes.c_size_t)]


class _Prm(ctypes.Structure):
    _fields_ = [("ins", ctypes.c_void_p), ("nb_ins", ctypes.c_uint32),
                ("xsym", ctypes.c_void_p), ("nb_xsym", ctypes.c_uint32),
                ("prog_arg", _Arg)]


RTE_BPF_ARG_PTR = 0x10


class Dpdk:
    """One program loaded in librte_bpf."""

    def __init__(self, raw: bytes, ctx_size: int) -> None:
        name = ctypes.util.find_library("rte_bpf") or "librte_bpf.so.23"
        self.lib = lib = ctypes.CDLL(name)
        lib.rte_bpf_load.restype = ctypes.c_void_p
        lib.rte_bpf_load.argtypes = [ctypes.POINTER(_Prm)]
        lib.rte_bpf_exec.restype = ctypes.c_uint64
        lib.rte_bpf_exec.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.rte_bpf_exec_burst.restype = ctypes.c_uint32
        lib.rte_bpf_exec_burst.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                           ctypes.POINTER(ctypes.c_uint64), ctypes.c_uint32]
        lib.rte_bpf_destroy.argtypes = [ctypes.c_void_p]
        self._insns = ctypes.create_string_buffer(raw, len(raw))
        prm = _Prm(ctypes.addressof(self._insns), len(raw) // 8, None, 0,
                   _Arg(RTE_BPF_ARG_PTR, ctx_size, ctx_size))
        self.bpf = lib.rte_bpf_load(ctypes.byref(prm))
        if not self.bpf:
            errno_loc = ctypes.CDLL(None).__errno_location
            errno_loc.restype = ctypes.POINTER(ctypes.c_int)
            raise OSError(errno_loc()[0], "rte_bpf_load refused the program")

    def burst(self, ctx: ctypes.Array[ctypes.c_char], n: int) -> Callable[[], int]:
        ptrs = (ctypes.c_void_p * n)(*([ctypes.addressof(ctx)] * n))
        rcs = (ctypes.c_uint64 * n)()
        fn, bpf = self.lib.rte_bpf_exec_burst, self.bpf

        def run() -> int:
            fn(bpf, ptrs, rcs, n)
            return int(rcs[0])
        return run

    def close(self) -> None:
        if self.bpf:
            self.lib.rte_bpf_destroy(self.bpf)
            self.bpf = None


# the run -------------------------------------------------------------------------------

def _time(fn: Callable[[], Any], reps: int) -> float:
    """ns per call of ``fn`` over ``reps`` calls, in this thread's CPU time
    (user + system: the kernel's test run counts), so that time the thread
    spends preempted on a loaded machine is not charged to the engine."""
    t0 = time.thread_time_ns()
    for _ in range(reps):
        fn()
    return (time.thread_time_ns() - t0) / reps


def _engine(name: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one in-process engine ("c" with "dpdk", or "pure"): medians in
    ns per run, the instruction count and the return value."""
    obj = bpfring.load(path, runtime="user")
    prog = obj.programs["mix"]
    rc = prog.run(ctx=CTX)
    ninsn = prog.last_run.insns
    runs = args.runs if name == "c" else max(1, args.runs // 100)
    empty = obj.programs["empty"]
    cases: dict[str, Callable[[], float]] = {
        name: lambda: _time(lambda: prog.run(ctx=CTX, repeat=runs), 1) / runs,
        f"{name}-empty": lambda: _time(lambda: empty.run(ctx=CTX, repeat=runs), 1) / runs}
    notes = []
    dpdk = None
    if name == "c":
        try:
            dpdk = Dpdk(prog.raw, len(CTX))
        except OSError as e:
            notes.append(f"dpdk: not run ({e}; apt-get install librte-bpf23)")
    if dpdk is not None:
        cbuf = ctypes.create_string_buffer(CTX, len(CTX))
        burst = dpdk.burst(cbuf, args.burst)
        got = burst() & 0xFFFF_FFFF
        if got != rc & 0xFFFF_FFFF:
            raise SystemExit(f"DPDK's interpreter returned {got:#x}, ours {rc:#x}")
        cases["dpdk"] = lambda: _time(burst, 1) / args.burst
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for k, fn in cases.items():
            samples[k].append(fn())
    if dpdk is not None:
        dpdk.close()
    obj.close()
    return {"ns_per_run": {k: statistics.median(v) for k, v in samples.items()},
            "best_ns_per_run": {k: min(v) for k, v in samples.items()},
            "insns": ninsn, "retval": rc, "notes": notes}


def _map_updates(rounds: int) -> dict[str, float]:
    """ns per kernel map update: through the user-space runtime's bridge
    (queue + flush), as one bpf() call each from Python, and in the kernel."""
    from bpfring import userspace

    path = bpfring.build(MAPS_SRC)
    ctx = struct.pack("<II", 0, MAP_UPDATES)
    want = {i: i * 3 for i in range(MAP_UPDATES)}
    with bpfring.load(path) as kobj:
        kmap = kobj.maps["table"]
        with userspace.load(path, kernel_maps={"table": kmap}) as uobj:
            uprog = uobj.programs["fill"]

            def user() -> None:
                uprog.run(ctx=ctx)
                uobj.flush()

            def calls() -> None:
                for k in range(MAP_UPDATES):
                    kmap[k] = k * 3

            kprog = kobj.programs["fill"]
            lobj = userspace.load(path)
            lmap = lobj.maps["table"]
            cases: dict[str, Callable[[], Any]] = {
                "user-maps": user, "bpf-calls": calls,
                "kernel-maps": lambda: kprog.run(ctx=ctx),
                "local-maps": lambda: lobj.programs["fill"].run(ctx=ctx)}
            samples: dict[str, list[float]] = {k: [] for k in cases}
            for _ in range(rounds):
                for name, fn in cases.items():
                    m = lmap if name == "local-maps" else kmap
                    for k in list(m.keys()):  # every case inserts into an empty map
                        del m[k]
                    samples[name].append(_time(fn, 1) / MAP_UPDATES)
                    got = {int.from_bytes(k, "little") if isinstance(k, bytes) else k:
                           int.from_bytes(v, "little") if isinstance(v, bytes) else v
                           for k, v in m.items()}
                    if got != want:
                        raise SystemExit(f"{name}: the kernel map holds {len(got)} entries, "
                                         f"not the {MAP_UPDATES} written")
            lobj.close()
    return {k: statistics.median(v) for k, v in samples.items()}


def _child(name: str, args: argparse.Namespace, pure: bool) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("BPFRING_PURE_PYTHON", None)
    if pure:
        env["BPFRING_PURE_PYTHON"] = "1"
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "benchmarks.userspace", "--engine", name, "--rounds",
           str(args.rounds), "--runs", str(args.runs), "--burst", str(args.burst)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                         cwd=root)
    if out.returncode:
        raise SystemExit(f"the {name} engine failed:\n{out.stderr}")
    return dict(json.loads(out.stdout))


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="bpfring bench userspace", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--burst", type=int, default=200, help="runs per DPDK burst call")
    ap.add_argument("--runs", type=int, default=200, help="runs per C/kernel round "
                    "(the pure interpreter does 1/100 of them)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--engine", choices=("c", "pure"), help=argparse.SUPPRESS)
    args = ap.parse_args(list(argv))

    path = bpfring.build(SRC)
    if args.engine:  # a child: one engine, JSON on stdout
        print(json.dumps(_engine(args.engine, path, args)))
        return 0

    c = _child("c", args, pure=False)
    p = _child("pure", args, pure=True)
    med: dict[str, float] = {**c["ns_per_run"], **p["ns_per_run"]}
    best: dict[str, float] = {**c["best_ns_per_run"], **p["best_ns_per_run"]}
    notes: list[str] = c["notes"] + p["notes"]
    if p["retval"] != c["retval"] or p["insns"] != c["insns"]:
        raise SystemExit("the C and pure-Python interpreters disagree")
    ninsn = int(c["insns"])
    try:
        with bpfring.load(path) as kobj:
            kprog = kobj.programs["mix"]
            if kprog.run(ctx=CTX) != c["retval"]:
                raise SystemExit("the kernel and the user-space interpreters disagree")
            ks = [_time(lambda: kprog.run(ctx=CTX), args.runs) for _ in range(args.rounds)]
            med["kernel"] = statistics.median(ks)
            best["kernel"] = min(ks)
    except OSError as e:
        notes.append(f"kernel: not run ({e})")
    try:
        med.update(_map_updates(args.rounds))
    except OSError as e:
        notes.append(f"maps: not run ({e})")
    # The interpreter loops alone: a run of the program less a run of `empty`.
    for d in (med, best):
        d["c-loop"] = d["c"] - d["c-empty"]

    ratios: dict[str, float] = {}
    if "dpdk" in med:
        ratios["c_vs_dpdk"] = med["dpdk"] / med["c"]
        ratios["c_vs_dpdk_best"] = best["dpdk"] / best["c"]
        ratios["c_loop_vs_dpdk"] = med["dpdk"] / med["c-loop"]
    if "kernel" in med:
        ratios["kernel_run_vs_c_run"] = med["kernel"] / med["c"]
    ratios["c_vs_pure"] = med["pure"] / med["c"]
    if "user-maps" in med:
        ratios["user_maps_vs_bpf_calls"] = med["bpf-calls"] / med["user-maps"]
    res: dict[str, Any] = {
        "suite": "userspace", "insns_per_run": ninsn, "ns_per_run": med,
        "best_ns_per_run": best,
        "minsn_per_s": {k: ninsn / v * 1e3 for k, v in med.items()
                        if k in ("c", "c-loop", "dpdk", "pure")},
        "ratios": ratios, "notes": notes}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"one loop-free program of {ninsn} instructions (ctx 16 bytes), "
          f"median of {args.rounds} rounds")
    labels = {"c": "bpfring C interpreter (prog.run, Python overhead included)",
              "c-empty": "the same, a program of 2 instructions (the cost around the loop)",
              "c-loop": "c less c-empty: the C interpreter's loop",
              "dpdk": "DPDK librte_bpf interpreter (rte_bpf_exec_burst)",
              "pure": "bpfring pure-Python interpreter",
              "pure-empty": "the same, a program of 2 instructions",
              "kernel": "kernel BPF_PROG_TEST_RUN, one prog.run per run from Python"}
    print(f"{'engine':<11} {'ns/run':>10} {'best':>10} {'M insn/s':>9}")
    for k in ("c", "c-empty", "c-loop", "dpdk", "pure", "pure-empty", "kernel"):
        if k in med:
            mi = (f"{ninsn / med[k] * 1e3:9.1f}" if k in ("c", "c-loop", "dpdk", "pure")
                  else f"{'-':>9}")
            print(f"{k:<11} {med[k]:10.0f} {best[k]:10.0f} {mi}   {labels[k]}")
    if "user-maps" in med:
        print(f"kernel map updates ({MAP_UPDATES} per run, hash map), ns per update:")
        for k, label in (("user-maps", "user-space program, bound map: bridge queue + flush"),
                         ("bpf-calls", "Python, one BPF_MAP_UPDATE_ELEM per update"),
                         ("kernel-maps", "the program in the kernel (one test run)"),
                         ("local-maps", "user-space program, its own hash map (memfd)")):
            print(f"  {k:<11} {med[k]:10.0f}   {label}")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
