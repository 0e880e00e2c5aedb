"""``bpfring bench rings``: ring buffer throughput against libbpf C, libbpf
through ctypes and BCC, in one process run on one machine.

Every case moves the same records: ``struct event`` of 40 bytes (48 in the
ring with its header), ``--records`` of them per round (default 1,000,000),
``--rounds`` timed rounds (default 5) after ``--warmup`` untimed ones; the
table shows the median rate and the spread (min-max).  Rounds are run
round-robin over the cases of a section so that drift hits every case alike.

kernel -> user (the consumer runs on the first CPU of the process):

* ``prefilled``: a ``SEC("syscall")`` program (``rings.bpf.c``, run with
  BPF_PROG_TEST_RUN) fills a ring big enough for the whole round, then the
  case consumes it; timed from just before the first consume call to the
  return of the call that delivered the last record.
* ``live``: a helper process pinned to the second CPU runs the producer in
  batches of ``--live-batch`` records into a 512 KiB ring (the size
  ``bench_ringbufs`` uses) while the case consumes.  Records the producer
  could not reserve are counted (``lost``) and produced again once it is done,
  so every consumer handles exactly ``--records`` records; timed from the
  producer's first record (CLOCK_MONOTONIC, the same clock on both sides) to
  the consumer's last.

user -> kernel (the writer runs on the first CPU):

* ``empty``: the case writes every record into an empty ring big enough for
  the round; timed from the first write to the return of the last.  A BPF
  drain program then consumes them (timed: the ``drain`` row) and checks count
  and sequence numbers.
* ``live``: the helper on the second CPU drains continuously from a 512 KiB
  ring while the case writes, waiting for room when the ring is full; timed
  from the first write to the drain of the last record.

The cases, the baselines and how they are built are described in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import datetime
import hashlib
import inspect
import itertools
import json
import math
import os
import platform
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
BPF_SOURCE = HERE / "rings.bpf.c"

#: The benchmark record (``struct event`` in rings.bpf.c and the C baselines).
EVENT = np.dtype([("seq", "<u8"), ("ts", "<u8"), ("pid", "<u4"), ("cpu", "<u4"),
                  ("comm", "S16")])
RECORD_SIZE = EVENT.itemsize  # 40
SLOT = RECORD_SIZE + 8  # bytes one record occupies in a ring
assert RECORD_SIZE == 40

LIVE_RING = 512 * 1024  # bench_ringbufs' default ring size
LIVE_BATCH = 500  # bench_ringbufs' default records per producer trigger
BPF_LOOP_MAX = 1 << 22  # records per produce() run when filling (bpf_loop allows 8 Mi)
PAGE = os.sysconf("SC_PAGE_SIZE")
ENOSPC = 28

K2U, U2K = "k2u", "u2k"
DIRECTIONS = {K2U: "kernel -> user", U2K: "user -> kernel"}
MODES = {K2U: ("prefilled", "live"), U2K: ("empty", "live")}
MODE_TITLES = {
    (K2U, "prefilled"): "pre-filled ring",
    (K2U, "live"): "live kernel producer on the other CPU",
    (U2K, "empty"): "empty ring, drained afterwards",
    (U2K, "live"): "live kernel drain on the other CPU",
}
#: The case every other case of a direction is compared to.
REFERENCE = {K2U: "libbpf-c", U2K: "libbpf-c-write"}


@dataclasses.dataclass(frozen=True)
class CaseDef:
    name: str
    direction: str
    label: str
    modes: tuple[str, ...]


CASES: tuple[CaseDef, ...] = (
    CaseDef("libbpf-c", K2U, "libbpf C: ring_buffer__consume/poll", MODES[K2U]),
    CaseDef("libbpf-ctypes", K2U, "libbpf via ctypes callbacks", MODES[K2U]),
    CaseDef("bcc", K2U, "BCC: ring_buffer_consume + event()", MODES[K2U]),
    CaseDef("callback", K2U, "bpfring: consume/poll(callback)", MODES[K2U]),
    CaseDef("iter", K2U, "bpfring: typed iteration", MODES[K2U]),
    CaseDef("read_array", K2U, "bpfring: read_array", MODES[K2U]),
    CaseDef("view_array", K2U, "bpfring: view_array", MODES[K2U]),
    CaseDef("produce", K2U, "kernel producer (bpf_loop, one CPU)", ("prefilled",)),
    CaseDef("libbpf-c-write", U2K, "libbpf C: reserve/submit", MODES[U2K]),
    CaseDef("libbpf-ctypes-write", U2K, "libbpf reserve/submit via ctypes", MODES[U2K]),
    CaseDef("write", U2K, "bpfring: write", MODES[U2K]),
    CaseDef("write_many", U2K, "bpfring: write_many", MODES[U2K]),
    CaseDef("write_array", U2K, "bpfring: write_array", MODES[U2K]),
    CaseDef("drain", U2K, "kernel drain (bpf_user_ringbuf_drain)", ("empty",)),
)
CASE_BY_NAME = {c.name: c for c in CASES}
RSS_APIS = ("callback", "iter", "read_array", "view_array")

#: (case, mode, versus, minimum ratio) from the issue; ratios of medians.
RATIO_TARGETS = (
    ("read_array", "prefilled", "libbpf-c", 1.0),
    ("view_array", "prefilled", "libbpf-c", 2.0),
    ("callback", "prefilled", "libbpf-ctypes", 1.0),
    ("iter", "prefilled", "bcc", 3.0),
    ("write_array", "empty", "libbpf-c-write", 1.0),
    ("write", "empty", "libbpf-ctypes-write", 1.5),
)
RSS_GROWTH_LIMIT = 1 << 20  # bytes of RSS growth after the first round counted as "flat"


class Skip(Exception):
    """A case cannot run here; the message says why."""


def _mono() -> int:
    return time.monotonic_ns()


# ------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    case: str
    direction: str
    mode: str
    label: str
    status: str = "ok"  # ok | skipped | failed
    reason: str | None = None
    rounds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [r["rate"] for r in self.rounds]

    @property
    def median(self) -> float | None:
        """Median rate; None unless the case ran without failing."""
        if self.status != "ok" or not self.rounds:
            return None
        return statistics.median(self.rates)

    def fail(self, reason: str) -> None:
        self.status = "failed"
        self.reason = reason

    def to_json(self, ratio: float | None) -> dict[str, Any]:
        status, reason = self.status, self.reason
        if status == "ok" and not self.rounds:
            status, reason = "failed", "no round ran"
        # A failed case keeps the rounds it completed, but gets no summary.
        rates = self.rates if status == "ok" else []
        med = statistics.median(rates) if rates else None
        lost = None
        if (self.direction, self.mode) == (K2U, "live") and rates:
            lost = sum(r["lost"] for r in self.rounds)
        return {
            "case": self.case,
            "direction": self.direction,
            "mode": self.mode,
            "label": self.label,
            "status": status,
            "reason": reason,
            "records_per_round": self.rounds[0]["records"] if self.rounds else None,
            "rounds": self.rounds,
            "median_rate": med,
            "min_rate": min(rates) if rates else None,
            "max_rate": max(rates) if rates else None,
            "spread": (max(rates) - min(rates)) / med if med else None,
            "median_gbps": med * RECORD_SIZE / 1e9 if med else None,
            "ratio_to_reference": ratio if med else None,
            "reference": REFERENCE[self.direction],
            "lost": lost,
            "notes": self.notes,
        }


# ------------------------------------------------------------------------------------
# Small process and kernel helpers
# ------------------------------------------------------------------------------------


class LineProc:
    """A child process spoken to in lines over stdin/stdout (stderr kept in a file)."""

    def __init__(self, argv: Sequence[str], what: str, *, pass_fds: Sequence[int] = (),
                 env: dict[str, str] | None = None) -> None:
        self.what = what
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, pass_fds=tuple(pass_fds), env=env)
        self._fd = self.proc.stdout.fileno()
        self._buf = b""
        self.pending = 0  # commands sent and not answered yet

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        self.pending += 1

    def stderr_tail(self, n: int = 6) -> str:
        self._err.seek(0)
        lines = self._err.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-n:])

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.what} did not answer within {timeout:g} s")
            ready, _, _ = select.select([self._fd], [], [], left)
            if ready:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    self.proc.wait(5)
                    tail = self.stderr_tail()
                    raise RuntimeError(f"{self.what} exited with status {self.proc.returncode}"
                                       + (f": {tail}" if tail else ""))
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def expect(self, word: str, timeout: float, final: bool = True) -> list[str]:
        """Read the next line, which must start with ``word`` (``final``: it
        answers the last command)."""
        line = self.readline(timeout)
        fields = line.split()
        if fields and fields[0] == "error":
            self.pending = max(0, self.pending - 1)
            raise RuntimeError(f"{self.what}: {line[6:]}")
        if not fields or fields[0] != word:
            raise RuntimeError(f"{self.what}: expected {word!r}, got {line!r}")
        if final:
            self.pending = max(0, self.pending - 1)
        return fields[1:]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, force: bool = False) -> None:
        """End the process: EOF on stdin, or at once with ``force`` (mid-command)."""
        if force and self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


def _lost_counter(map_fd: int) -> Callable[[], int]:
    """Reader of the live ring's per-CPU lost-record counter (``live__lost``,
    from ``<bpfring/ring.bpf.h>``): the sum over CPUs of slot 0."""
    import bpfring

    counter = bpfring.Map(map_fd)
    key = bytes(4)

    def read() -> int:
        raw = counter.lookup_raw(key)
        return sum(memoryview(raw).cast("Q")) if raw else 0

    return read


def _helper_main() -> None:
    """The process on the other CPU: ``python -c ...helper_main() PROD DRAIN LOST CPU``.

    ``produce N BATCH``: run produce() into the live ring in batches, then
    produce again what was lost until N records were delivered; answers
    ``done T_START T_END LOST TOPPED``.
    ``drain N``: call drain() on the live user ring until N samples were
    drained; answers ``done T_START T_END DRAINED ERRORS``.
    """
    import bpfring

    prod_fd, drain_fd, lost_fd, cpu = (int(a) for a in sys.argv[1:5])
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})
    # BPF_PROG_TEST_RUN prepared once: the helper calls them in tight loops
    # (Program.run builds the attributes and the context every call).
    produce = bpfring.PreparedRun(prod_fd, ctx_size=16, what="BPF_PROG_TEST_RUN")
    drain = bpfring.PreparedRun(drain_fd, ctx_size=8, what="BPF_PROG_TEST_RUN")
    lost = _lost_counter(lost_fd)
    struct.pack_into("<II", drain.ctx, 0, 1, 0)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "produce":
            n, batch = int(args[0]), int(args[1])
            lost0 = lost()
            ctx = produce.ctx
            done = 0
            t0 = _mono()
            while done < n:
                k = min(batch, n - done)
                struct.pack_into("<QII", ctx, 0, done, k, 1)
                produce.run()
                done += k
            t1 = _mono()
            lost_main = lost() - lost0
            # Make up for the lost records, a batch at a time, pausing while
            # the ring is full, so that the consumer gets exactly n records.
            topped, seq = 0, n
            deadline = time.monotonic() + 60
            while (deficit := lost() - lost0 - topped) > 0:
                if time.monotonic() > deadline:
                    break
                k = min(batch, deficit)
                struct.pack_into("<QII", ctx, 0, seq, k, 1)
                before = lost()
                produce.run()
                seq += k
                topped += k
                if lost() != before:
                    time.sleep(20e-6)  # the ring is full: let the consumer catch up
            print(f"done {t0} {t1} {lost_main} {topped}", flush=True)
        elif cmd == "drain":
            n = int(args[0])
            total = errors = 0
            t0 = _mono()
            deadline = time.monotonic() + 120
            i = 0
            while total < n:
                r = drain.run()
                if r > 0:
                    total += r
                elif r < 0:
                    errors += 1
                i += 1
                if not i & 0xFFF and time.monotonic() > deadline:
                    break
            print(f"done {t0} {_mono()} {total} {errors}", flush=True)


class LibbpfCtypes:
    """libbpf's ring buffer API through ctypes, with BCC's callback type."""

    # bcc/libbcc.py: _RINGBUF_CB_TYPE = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int)
    CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)

    def __init__(self) -> None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        vp, ci, u32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32
        for name, res, args in (
            ("ring_buffer__new", vp, [ci, self.CB, vp, vp]),
            ("ring_buffer__consume", ci, [vp]),
            ("ring_buffer__poll", ci, [vp, ci]),
            ("ring_buffer__free", None, [vp]),
            ("user_ring_buffer__new", vp, [ci, vp]),
            ("user_ring_buffer__reserve", vp, [vp, u32]),
            ("user_ring_buffer__reserve_blocking", vp, [vp, u32, ci]),
            ("user_ring_buffer__submit", None, [vp, vp]),
            ("user_ring_buffer__free", None, [vp]),
            ("libbpf_major_version", u32, []),
            ("libbpf_minor_version", u32, []),
        ):
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        self.lib = lib

    @property
    def version(self) -> str:
        return f"{self.lib.libbpf_major_version()}.{self.lib.libbpf_minor_version()}"


# ------------------------------------------------------------------------------------
# Building the C baselines and finding BCC
# ------------------------------------------------------------------------------------


def _bench_dir() -> Path:
    """A private directory for the baseline binaries, inside bpfring's cache
    (0700, owned by us; never a shared /tmp path)."""
    import bpfring

    d = bpfring.cache_dir() / "bench"
    d.mkdir(mode=0o700, exist_ok=True)
    st = d.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise Skip(f"{d} is not private to this user")
    return d


def _find_cc() -> str | None:
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and (path := shutil.which(cand.split()[0])):
            return path
    return None


def build_baseline(name: str) -> Path:
    """Compile ``<name>.c`` (shipped next to this module) against the system
    libbpf: ``cc -O2 -Wall -o <cache>/bench/<name>-<hash> <name>.c -lbpf``."""
    src = HERE / f"{name}.c"
    if not src.exists():
        raise Skip(f"{src.name} is not installed next to {__name__}")
    cc = _find_cc()
    if cc is None:
        raise Skip("no C compiler (cc, gcc or clang) found: apt-get install gcc")
    cmd = [cc, "-O2", "-Wall", "-o", "OUT", str(src), "-lbpf"]
    key = hashlib.sha256(src.read_bytes() + "\0".join([os.path.realpath(cc), *cmd[1:3]])
                         .encode()).hexdigest()[:16]
    d = _bench_dir()
    exe = d / f"{name}-{key}"
    if exe.exists():
        return exe
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}-")
    os.close(fd)
    cmd[4] = tmp
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode:
            tail = " | ".join(out.stderr.strip().splitlines()[-4:])
            hint = " (apt-get install libbpf-dev)" if "bpf/libbpf.h" in out.stderr else ""
            raise Skip(f"building {src.name} failed{hint}: {tail}")
        os.chmod(tmp, 0o700)
        os.replace(tmp, exe)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return exe


BCC_SCRIPT = r'''
import sys, time
from bcc import BPF, __version__ as bcc_version

rings = [a.split("=", 1) for a in sys.argv[1:]]
text = ["struct event { u64 seq; u64 ts; u32 pid; u32 cpu; char comm[16]; };"]
for name, pin in rings:
    path, size = pin.rsplit(":", 1)
    # BPF_RINGBUF_OUTPUT's table, opened from a pinned map (like BPF_TABLE_PINNED).
    text.append("""
struct %(n)s_table_t {
  int key; u32 leaf;
  int (*ringbuf_output) (void *, u64, u64);
  void* (*ringbuf_reserve) (u64);
  void (*ringbuf_discard) (void *, u64);
  void (*ringbuf_submit) (void *, u64);
  u32 max_entries;
};
__attribute__((section("maps/ringbuf:%(p)s")))
struct %(n)s_table_t %(n)s = { .max_entries = %(s)s };
int %(n)s_anchor(void *ctx) {
  struct event ev = {};
  %(n)s.ringbuf_output(&ev, sizeof(ev), 0);  /* tells BCC the record type */
  return 0;
}
""" % {"n": name, "p": path, "s": size})
b = BPF(text="\n".join(text))
count = 0
seq_sum = 0

def make_cb(table):
    def cb(ctx, data, size):
        global count, seq_sum
        ev = table.event(data)
        seq_sum += ev.seq
        count += 1
    return cb

for name, _ in rings:
    table = b[name]
    table.open_ring_buffer(make_cb(table))
print("ready", bcc_version, flush=True)
for line in sys.stdin:
    cmd, n = line.split()
    n = int(n)
    count = seq_sum = 0
    if cmd == "pre":
        t0 = time.monotonic_ns()
        while count < n:
            before = count
            b.ring_buffer_consume()
            if count == before:
                break
        t1 = time.monotonic_ns()
    else:
        print("waiting", flush=True)
        t0 = time.monotonic_ns()
        while count < n:
            b.ring_buffer_poll(100)
        t1 = time.monotonic_ns()
    if count < n:
        print("error ring ran dry after %d of %d records" % (count, n), flush=True)
    else:
        print("ok", count, seq_sum, t0, t1, flush=True)
'''


def _bcc_python() -> str:
    """The interpreter that can import ``bcc``: ours, else the system's."""
    override = os.environ.get("BPFRING_BENCH_BCC_PYTHON")
    if override:
        return override
    with contextlib.suppress(ImportError):
        import bcc  # noqa: F401

        return sys.executable
    return "/usr/bin/python3"


def _bcc_kernel_source(notes: list[str]) -> dict[str, str]:
    """Environment for BCC's compiler: where kernel headers are.

    BCC compiles C at run time and needs kernel headers even for a program
    that uses no kernel type.  With none for the running kernel (custom
    kernels have no linux-headers package, CONFIG_IKHEADERS may be off), use
    the newest Debian linux-headers-*-common/-<arch> pair installed, merged
    into one tree of symlinks in the private bench directory, through
    BCC_KERNEL_SOURCE.  The benchmark program only uses BCC's own helpers, so
    a headers version other than the running kernel's does not matter.
    """
    env: dict[str, str] = {}
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return env
    release = platform.release()
    mod = Path("/lib/modules") / release
    if (mod / "build/include/linux/kconfig.h").exists() or (mod / "source").is_dir() \
            or Path("/sys/kernel/kheaders.tar.xz").exists():
        return env
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    pairs = []
    for common in Path("/usr/src").glob("linux-headers-*-common"):
        ver = common.name[len("linux-headers-"):-len("-common")]
        archdir = Path("/usr/src") / f"linux-headers-{ver}-{arch}"
        if (common / "include/linux/kconfig.h").exists() and archdir.is_dir():
            pairs.append((ver, common, archdir))
    if not pairs:
        raise Skip(f"BCC needs kernel headers and there are none for {release} "
                   "(no /lib/modules/<release>/build, no CONFIG_IKHEADERS, no "
                   "/usr/src/linux-headers-*): run benchmarks/setup_bcc.sh")

    def version_key(p: tuple[str, Path, Path]) -> list[int]:
        return [int(x) for x in p[0].replace("-", ".").split(".") if x.isdigit()]

    ver, common, archdir = max(pairs, key=version_key)
    tree = _bench_dir() / f"bcc-headers-{ver}-{arch}"
    if not (tree / "include/linux/kconfig.h").exists():
        tmp = Path(tempfile.mkdtemp(dir=tree.parent, prefix=".bcc-headers-"))
        try:
            for src in (common, archdir):  # the arch tree's generated files win
                subprocess.run(["cp", "-rsf", f"{src}/.", f"{tmp}/"], check=True,
                               capture_output=True, timeout=300)
            os.replace(tmp, tree)
        except (OSError, subprocess.SubprocessError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise Skip(f"cannot assemble kernel headers for BCC: {e}") from None
    notes.append(f"BCC compiled with linux-headers-{ver} (BCC_KERNEL_SOURCE); "
                 f"the running kernel is {release}")
    env["BCC_KERNEL_SOURCE"] = str(tree)
    return env


# ------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------


def _ring_size(records: int) -> int:
    need = records * SLOT + 16  # a kernel ring is never completely full
    size = max(PAGE, 1 << math.ceil(math.log2(need)))
    return size


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@contextlib.contextmanager
def _watchdog(seconds: float, what: str) -> Iterator[None]:
    """Raise TimeoutError in the main thread if the block runs too long."""
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{what} did not finish within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def make_records(n: int) -> np.ndarray:
    """The user -> kernel records (the same as libbpf_produce.c's)."""
    arr = np.zeros(n, EVENT)
    arr["seq"] = np.arange(n, dtype=np.uint64)
    arr["ts"] = arr["seq"] * 1000
    arr["pid"] = 4242
    arr["comm"] = b"bpfring-bench"
    return arr


class Bench:
    def __init__(self, opts: argparse.Namespace, log: Callable[[str], None]) -> None:
        import bpfring

        self.opts = opts
        self.log = log
        self.n: int = opts.records
        self.expected_sum = self.n * (self.n - 1) // 2
        self.env_notes: list[str] = []
        self.size = _ring_size(self.n)
        self.obj = bpfring.load(BPF_SOURCE, defines={"EVENTS_SIZE": self.size,
                                                     "LIVE_SIZE": opts.live_ring})
        self.rings = {"prefilled": self.obj.ring_buffer("events"),
                      "live": self.obj.ring_buffer("live")}
        self.urings = {"empty": self.obj.user_ring_buffer("requests"),
                       "live": self.obj.user_ring_buffer("live_requests")}
        self.map_names = {(K2U, "prefilled"): "events", (K2U, "live"): "live",
                          (U2K, "empty"): "requests", (U2K, "live"): "live_requests"}
        self.produce = self.obj.programs["produce"]
        self.drain = self.obj.programs["drain"]
        self.stats = self.obj.maps["stats"]
        self.cpus = sorted(os.sched_getaffinity(0))
        self.old_affinity = set(self.cpus)
        self.live_skip = None
        if len(self.cpus) < 2:
            self.live_skip = "live runs need two CPUs (one for the producer or drain)"
        else:
            os.sched_setaffinity(0, {self.cpus[0]})
        self.helper: LineProc | None = None
        self.procs: dict[str, LineProc] = {}
        self.skips: dict[str, str] = {}
        self._ctypes: LibbpfCtypes | None = None
        self._typed: Any = None
        self._records: np.ndarray | None = None
        self._record_bytes: list[bytes] | None = None
        self.pin_dir: str | None = None
        self.versions: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        for p in self.procs.values():
            p.close()
        self.procs.clear()
        if self.helper is not None:
            self.helper.close()
            self.helper = None
        if self.pin_dir:
            for name in os.listdir(self.pin_dir):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.pin_dir, name))
            with contextlib.suppress(OSError):
                os.rmdir(self.pin_dir)
            self.pin_dir = None
        self.obj.close()
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, self.old_affinity)

    def ensure_helper(self) -> LineProc:
        if self.helper is not None and self.helper.alive:
            return self.helper
        if self.helper is not None:
            self.helper.close()
        fds = [self.produce.fd, self.drain.fd, self.obj.maps["live__lost"].fd]
        # The helper imports this module and bpfring from where we found them.
        import bpfring

        paths = [str(HERE.parent), str(Path(bpfring.__file__).resolve().parent.parent)]
        code = (f"import sys; sys.path[:0] = {paths!r}; "
                "from benchmarks.rings import _helper_main; _helper_main()")
        self.helper = LineProc([sys.executable, "-c", code, *map(str, fds), str(self.cpus[1])],
                               "producer/drain helper", pass_fds=fds)
        self.helper.expect("ready", 60, final=False)
        return self.helper

    # -- kernel side ------------------------------------------------------------------

    def prefill(self) -> int:
        """Fill the pre-filled ring with the round's records; returns the nanoseconds
        the kernel took (bpf_loop in one produce() run per 4 Mi records)."""
        lost = self.rings["prefilled"].lost or 0
        done = 0
        t0 = _mono()
        while done < self.n:
            k = min(BPF_LOOP_MAX, self.n - done)
            self.produce.run(ctx=struct.pack("<QII", done, k, 0))
            done += k
        t1 = _mono()
        if (self.rings["prefilled"].lost or 0) != lost:
            raise RuntimeError("the pre-filled ring overflowed")
        return t1 - t0

    def discard(self, mode: str) -> int:
        """Throw away whatever a failed round left in a kernel ring."""
        n = 0
        rb = self.rings[mode]
        while True:
            k = rb.consume(_ignore)
            if self._typed is not None:
                with contextlib.suppress(Exception):
                    k += len(self._typed[mode].read(None, 0))
            n += k
            if k == 0 and rb.available == 0:
                return n
            if k == 0:
                time.sleep(0.001)

    def read_stats(self) -> tuple[int, int, int, int]:
        raw = self.stats.lookup_raw(b"\0\0\0\0")
        return struct.unpack("<4Q", raw)

    def reset_stats(self) -> None:
        self.stats.update_raw(b"\0\0\0\0", bytes(32))

    def drain_all(self, mode: str) -> int:
        """Drain the user ring from this process (CPU 0); returns samples."""
        ctx = struct.pack("<II", 1 if mode == "live" else 0, 0)
        total = 0
        while True:
            r = self.drain.run(ctx=ctx)
            if r < 0:
                raise RuntimeError(f"bpf_user_ringbuf_drain failed: {os.strerror(-r)}")
            if r == 0:
                return total
            total += r

    # -- lazily prepared consumers and writers ---------------------------------------

    @property
    def ctypes_lib(self) -> LibbpfCtypes:
        if self._ctypes is None:
            self._ctypes = LibbpfCtypes()
        return self._ctypes

    def c_proc(self, name: str, mapname: str) -> LineProc:
        """The C baseline ``name`` running on map ``mapname`` (built and
        started on first use; one process per map)."""
        if name in self.skips:
            raise Skip(self.skips[name])
        key = f"{name}:{mapname}"
        p = self.procs.get(key)
        if p is not None and p.alive:
            return p
        if p is not None:
            p.close()
        try:
            exe = build_baseline(name)
        except Skip as e:
            self.skips[name] = str(e)
            raise
        fd = self.obj.maps[mapname].fd
        p = LineProc([str(exe), str(fd)], f"{name} ({mapname})", pass_fds=[fd])
        self.procs[key] = p
        self.versions["libbpf"] = p.expect("ready", 30, final=False)[0]
        return p

    def bcc_proc(self) -> LineProc:
        if "bcc" in self.skips:
            raise Skip(self.skips["bcc"])
        p = self.procs.get("bcc")
        if p is not None and p.alive:
            return p
        try:
            p = self._start_bcc()
        except Skip as e:
            self.skips["bcc"] = str(e)
            raise
        self.procs["bcc"] = p
        return p

    def _start_bcc(self) -> LineProc:
        py = _bcc_python()
        if not (os.path.isabs(py) and os.path.exists(py)) and not shutil.which(py):
            raise Skip(f"no interpreter {py} to run BCC with")
        chk = subprocess.run([py, "-c", "import bcc"], capture_output=True, text=True,
                             timeout=60)
        if chk.returncode:
            raise Skip(f"the bcc module does not import under {py} "
                       "(apt-get install python3-bpfcc; see benchmarks/setup_bcc.sh)")
        notes: list[str] = []
        env = dict(os.environ, **_bcc_kernel_source(notes))
        if not os.path.ismount("/sys/fs/bpf"):
            raise Skip("BCC opens the ring through a pin and bpffs is not mounted on /sys/fs/bpf")
        if self.pin_dir is None:
            self.pin_dir = tempfile.mkdtemp(prefix="bpfring-bench-", dir="/sys/fs/bpf")
        args = []
        for mapname in ("events", "live"):
            path = os.path.join(self.pin_dir, mapname)
            if not os.path.exists(path):
                self.obj.maps[mapname].pin(path)
            args.append(f"{mapname}={path}:{self.obj.maps[mapname].max_entries}")
        p = LineProc([py, "-c", BCC_SCRIPT, *args], "BCC consumer", env=env)
        try:
            self.versions["bcc"] = p.expect("ready", 300, final=False)[0]
        except (RuntimeError, TimeoutError) as e:
            p.close()
            raise Skip(f"BCC could not compile its program: {e}") from None
        self.env_notes.extend(notes)
        return p

    def typed_ring(self, mode: str) -> Any:
        """The typed-iteration ring for ``mode`` and the label to show for it."""
        if self._typed is None:
            self._typed = {}
            name = {"prefilled": "events", "live": "live"}
            try:
                for m in ("prefilled", "live"):
                    self._typed[m] = self.obj.ring_buffer(name[m], record="event")
                self.typed_kind = "typed"
            except Exception as e:  # TypeError: no record=; BPFError: no BTF decoding
                self._typed = {m: self.rings[m] for m in ("prefilled", "live")}
                self.typed_kind = "interim"
                self.typed_reason = f"{type(e).__name__}: {e}"
            else:
                # Learn how a record exposes its fields (one probe record).
                self.produce.run(ctx=struct.pack("<QII", 0, 1, 0))
                rec = next(iter(self._typed["prefilled"]))
                self.typed_attr = hasattr(rec, "seq")
        return self._typed[mode]

    @property
    def record_bytes(self) -> list[bytes]:
        if self._record_bytes is None:
            self._record_bytes = [r.tobytes() for r in self.records]
        return self._record_bytes

    @property
    def records(self) -> np.ndarray:
        if self._records is None:
            self._records = make_records(self.n)
        return self._records


def _round(records: int, ns: int, **extra: Any) -> dict[str, Any]:
    seconds = max(ns, 1) / 1e9
    return {"records": records, "seconds": seconds, "rate": records / seconds, **extra}


# ------------------------------------------------------------------------------------
# kernel -> user consumers: each returns (count, seq_sum or None, t_start, t_end)
# ------------------------------------------------------------------------------------

ConsumeResult = tuple[int, int | None, int, int]


def consume_callback(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb = b.rings[mode]
    count = 0

    def cb(view: memoryview) -> None:
        nonlocal count
        count += 1

    if live:
        poll = rb.poll
        t0 = _mono()
        while count < n:
            poll(cb, 0.1)
    else:
        consume = rb.consume
        t0 = _mono()
        while count < n and consume(cb):
            pass
    return count, None, t0, _mono()


def consume_ctypes(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    lib = b.ctypes_lib.lib
    count = 0

    def on_record(ctx: int | None, data: int | None, size: int) -> int:
        nonlocal count
        count += 1
        return 0

    cb = LibbpfCtypes.CB(on_record)
    rbp = lib.ring_buffer__new(b.obj.maps[b.map_names[(K2U, mode)]].fd, cb, None, None)
    if not rbp:
        raise OSError(ctypes.get_errno(), "ring_buffer__new failed")
    try:
        if live:
            poll = lib.ring_buffer__poll
            t0 = _mono()
            while count < n:
                err = poll(rbp, 100)
                if err < 0 and err != -4:
                    raise OSError(-err, "ring_buffer__poll failed")
        else:
            consume = lib.ring_buffer__consume
            t0 = _mono()
            while count < n:
                err = consume(rbp)
                if err <= 0:
                    break
        t1 = _mono()
    finally:
        lib.ring_buffer__free(rbp)
    return count, None, t0, t1


def consume_iter(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb = b.typed_ring(mode)
    s = 0
    if b.typed_kind == "typed":
        it = itertools.islice(rb, n)
        if b.typed_attr:
            t0 = _mono()
            for rec in it:
                s += rec.seq
        else:
            t0 = _mono()
            for rec in it:
                s += rec["seq"]
    else:
        # Interim until typed iteration lands: bytes records, decoded per
        # record through a numpy dtype view.
        frombuffer, dt = np.frombuffer, EVENT
        it = itertools.islice(rb, n)
        t0 = _mono()
        for raw in it:
            s += int(frombuffer(raw, dt)[0]["seq"])
    t1 = _mono()
    return n, int(s), t0, t1


def consume_read_array(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb = b.rings[mode]
    read = rb.read_array
    timeout = 0.1 if live else 0
    count = s = 0
    t0 = _mono()
    while count < n:
        arr = read(EVENT, timeout=timeout)
        k = len(arr)
        if k:
            count += k
            s += int(arr["seq"].sum())
        elif not live:
            break
    return count, s, t0, _mono()


def consume_view_array(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb = b.rings[mode]
    view = rb.view_array
    ep = select.epoll()
    ep.register(rb.fileno(), select.EPOLLIN)
    count = s = 0
    try:
        t0 = _mono()
        while count < n:
            with view(EVENT) as arr:
                k = len(arr)
                if k:
                    s += int(arr["seq"].sum())
            if k:
                count += k
            elif live:
                ep.poll(0.1)
            else:
                break
        t1 = _mono()
    finally:
        ep.close()
    return count, s, t0, t1


IN_PROCESS_CONSUMERS: dict[str, Callable[[Bench, str, int, bool], ConsumeResult]] = {
    "callback": consume_callback,
    "libbpf-ctypes": consume_ctypes,
    "iter": consume_iter,
    "read_array": consume_read_array,
    "view_array": consume_view_array,
}


# ------------------------------------------------------------------------------------
# user -> kernel writers: each returns (t_start, t_end)
# ------------------------------------------------------------------------------------


def _room_waiter(urb: Any) -> Callable[[], None]:
    """Wait (briefly) for a drain wakeup on a full user ring."""
    ep = select.epoll()
    ep.register(urb.fileno(), select.EPOLLOUT | select.EPOLLET)
    return lambda: ep.poll(0.001)


def write_write(b: Bench, mode: str, live: bool) -> tuple[int, int]:
    urb = b.urings[mode]
    recs = b.record_bytes
    w = urb.write
    if live:
        t0 = _mono()
        for r in recs:
            w(r, None)
    else:
        t0 = _mono()
        for r in recs:
            w(r)
    return t0, _mono()


def _takes_timeout(fn: Callable[..., Any]) -> bool:
    try:
        return "timeout" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def write_many(b: Bench, mode: str, live: bool) -> tuple[int, int]:
    urb = b.urings[mode]
    recs = b.record_bytes
    fn = urb.write_many
    n = len(recs)
    if not live:
        t0 = _mono()
        k = fn(recs)
        t1 = _mono()
        if k != n:
            raise RuntimeError(f"write_many wrote {k} of {n} records into an empty ring")
        return t0, t1
    if _takes_timeout(fn):
        t0 = _mono()
        k = fn(recs, timeout=None)
        t1 = _mono()
        if k != n:
            raise RuntimeError(f"write_many(timeout=None) wrote {k} of {n} records")
        return t0, t1
    wait = _room_waiter(urb)
    chunk = max(1, b.opts.live_ring // SLOT)
    off = 0
    t0 = _mono()
    while off < n:
        k = fn(recs[off:off + chunk])
        off += k
        if k == 0:
            wait()
    return t0, _mono()


def write_array(b: Bench, mode: str, live: bool) -> tuple[int, int]:
    urb = b.urings[mode]
    arr = b.records
    fn = urb.write_array
    n = len(arr)
    if not live:
        t0 = _mono()
        k = fn(arr)
        t1 = _mono()
        if k != n:
            raise RuntimeError(f"write_array wrote {k} of {n} records into an empty ring")
        return t0, t1
    if _takes_timeout(fn):
        t0 = _mono()
        k = fn(arr, timeout=None)
        t1 = _mono()
        if k != n:
            raise RuntimeError(f"write_array(timeout=None) wrote {k} of {n} records")
        return t0, t1
    wait = _room_waiter(urb)
    off = 0
    t0 = _mono()
    while off < n:
        k = fn(arr[off:])
        off += k
        if k == 0:
            wait()
    return t0, _mono()


def write_ctypes(b: Bench, mode: str, live: bool) -> tuple[int, int]:
    lib = b.ctypes_lib.lib
    urbp = lib.user_ring_buffer__new(b.obj.maps[b.map_names[(U2K, mode)]].fd, None)
    if not urbp:
        raise OSError(ctypes.get_errno(), "user_ring_buffer__new failed")
    recs = b.record_bytes
    submit, memmove = lib.user_ring_buffer__submit, ctypes.memmove
    size = RECORD_SIZE
    try:
        if live:
            # reserve_blocking(-1) gives up with ENOSPC after one wakeup (libbpf
            # 1.1-1.7, see libbpf_produce.c): retry like a C caller must.
            reserve = lib.user_ring_buffer__reserve_blocking
            t0 = _mono()
            for r in recs:
                while not (p := reserve(urbp, size, -1)):
                    if ctypes.get_errno() != ENOSPC:
                        raise OSError(ctypes.get_errno(), "user_ring_buffer__reserve_blocking")
                memmove(p, r, size)
                submit(urbp, p)
        else:
            reserve = lib.user_ring_buffer__reserve
            t0 = _mono()
            for r in recs:
                p = reserve(urbp, size)
                if not p:
                    raise OSError(ctypes.get_errno(), "user_ring_buffer__reserve")
                memmove(p, r, size)
                submit(urbp, p)
        t1 = _mono()
    finally:
        lib.user_ring_buffer__free(urbp)
    return t0, t1


IN_PROCESS_WRITERS: dict[str, Callable[[Bench, str, bool], tuple[int, int]]] = {
    "write": write_write,
    "write_many": write_many,
    "write_array": write_array,
    "libbpf-ctypes-write": write_ctypes,
}

#: The bpfring API each case needs, to skip cleanly while it is not there yet.
NEEDS = {
    "read_array": ("RingBuffer", "read_array"),
    "view_array": ("RingBuffer", "view_array"),
    "write_many": ("UserRingBuffer", "write_many"),
    "write_array": ("UserRingBuffer", "write_array"),
}


def _missing_api(case: str) -> str | None:
    need = NEEDS.get(case)
    if need is None:
        return None
    import bpfring

    cls = getattr(bpfring, need[0])
    if hasattr(cls, need[1]):
        return None
    return (f"{need[0]}.{need[1]}() is not in this bpfring build yet "
            "(the fast-path API has not landed)")


# ------------------------------------------------------------------------------------
# Rounds
# ------------------------------------------------------------------------------------


def _ignore(view: memoryview) -> None:
    pass


def k2u_round(b: Bench, case: str, mode: str) -> dict[str, Any]:
    n = b.n
    live = mode == "live"
    rb = b.rings[mode]
    if rb.available:
        b.log(f"  ({b.discard(mode)} records left over from an earlier round discarded)")
    if case == "produce":
        ns = b.prefill()
        b.discard(mode)
        return _round(n, ns)
    proc = None
    if case == "libbpf-c":
        proc = b.c_proc("libbpf_consume", b.map_names[(K2U, mode)])
    elif case == "bcc":
        proc = b.bcc_proc()
    extra: dict[str, Any] = {}
    if not live:
        b.prefill()
        if proc is not None:
            proc.send(f"pre {n}")
            count, s, t0, t1 = (int(x) for x in proc.expect("ok", b.opts.timeout))
        else:
            count, s, t0, t1 = IN_PROCESS_CONSUMERS[case](b, mode, n, False)
        ns = t1 - t0
    else:
        helper = b.ensure_helper()
        if proc is not None:
            proc.send(f"live {n}")
            proc.expect("waiting", 30, final=False)
            helper.send(f"produce {n} {b.opts.live_batch}")
            count, s, _, t1 = (int(x) for x in proc.expect("ok", b.opts.timeout))
        else:
            helper.send(f"produce {n} {b.opts.live_batch}")
            count, s, _, t1 = IN_PROCESS_CONSUMERS[case](b, mode, n, True)
        p0, p1, lost, topped = (int(x) for x in helper.expect("done", b.opts.timeout))
        ns = t1 - p0
        extra = {"lost": lost, "topped_up": topped,
                 "producer_rate": n / max(p1 - p0, 1) * 1e9}
    if count != n:
        raise RuntimeError(f"consumed {count} records, expected {n}")
    if s is not None and not live and s != b.expected_sum:
        raise RuntimeError(f"sum of seq is {s}, expected {b.expected_sum}: records were "
                           "lost, repeated or misread")
    if rb.available:
        raise RuntimeError(f"{rb.available} bytes still in the ring after the round")
    return _round(n, ns, **extra)


def u2k_round(b: Bench, case: str, mode: str) -> dict[str, Any]:
    n = b.n
    live = mode == "live"
    urb = b.urings[mode]
    if urb.pending_bytes():
        b.drain_all(mode)
    b.reset_stats()
    extra: dict[str, Any] = {}
    if case == "drain":
        # Fill with the fastest writer there is (untimed), time the drain.
        if _missing_api("write_array") is None:
            urb.write_array(b.records)
        else:
            for r in b.record_bytes:
                urb.write(r)
        t0 = _mono()
        b.drain_all(mode)
        t1 = _mono()
    else:
        proc = None
        if case == "libbpf-c-write":
            proc = b.c_proc("libbpf_produce", b.map_names[(U2K, mode)])
        if live:
            helper = b.ensure_helper()
            helper.send(f"drain {n}")
        if proc is not None:
            proc.send(f"{'live' if live else 'write'} {n}")
            _, _, t0, t1 = (int(x) for x in proc.expect("ok", b.opts.timeout))
        else:
            t0, t1 = IN_PROCESS_WRITERS[case](b, mode, live)
        if live:
            _, d1, _, errors = (int(x) for x in helper.expect("done", b.opts.timeout))
            extra = {"write_seconds": (t1 - t0) / 1e9, "drain_errors": errors}
            t1 = d1
        else:
            b.drain_all(mode)
    samples, seq_sum, bad, errs = b.read_stats()
    if samples != n or bad or errs:
        raise RuntimeError(f"the kernel drained {samples} samples of {n} ({bad} malformed, "
                           f"{errs} drain errors)")
    if seq_sum != b.expected_sum:
        raise RuntimeError(f"the kernel saw a seq sum of {seq_sum}, expected {b.expected_sum}")
    return _round(n, t1 - t0, **extra)


def _select(opts: argparse.Namespace) -> list[tuple[CaseDef, str]]:
    """(case, mode) pairs chosen by --only, in table order."""
    tokens = opts.only
    names = {t for t in tokens if t in CASE_BY_NAME}
    modes = {t for t in tokens if t in ("prefilled", "empty", "live")}
    dirs = {t for t in tokens if t in DIRECTIONS}
    if tokens and not (names or modes or dirs):
        return []  # only "rss"
    out = []
    for direction in DIRECTIONS:
        for mode in MODES[direction]:
            for c in CASES:
                if c.direction != direction or mode not in c.modes:
                    continue
                if names and c.name not in names:
                    continue
                if modes and mode not in modes:
                    continue
                if dirs and direction not in dirs:
                    continue
                out.append((c, mode))
    return out


def _why_not(b: Bench, case: str, mode: str) -> str | None:
    """Why ``case`` cannot run in ``mode`` here (None: it can)."""
    why = _missing_api(case)
    if why is None and mode == "live" and b.live_skip:
        why = b.live_skip
    if why is not None:
        return why
    try:
        if case == "libbpf-c":
            b.c_proc("libbpf_consume", b.map_names[(K2U, mode)])
        elif case == "libbpf-c-write":
            b.c_proc("libbpf_produce", b.map_names[(U2K, mode)])
        elif case == "bcc":
            if "bcc" not in b.procs:
                b.log("  starting BCC (it compiles its program at run time)")
            b.bcc_proc()
    except Skip as e:
        return str(e)
    except (RuntimeError, TimeoutError, OSError) as e:
        return f"could not start: {e}"
    return None


def run_section(b: Bench, direction: str, mode: str, cases: list[CaseDef],
                results: dict[tuple[str, str], Result]) -> None:
    opts = b.opts
    active: list[Result] = []
    for c in cases:
        r = results[(c.name, mode)]
        why = _why_not(b, c.name, mode)
        if why is not None:
            r.status, r.reason = "skipped", why
            continue
        if c.name == "iter":
            b.typed_ring(mode)
            if b.typed_kind != "typed":
                r.label = "bpfring: iteration + numpy decode (interim)"
                r.notes.append("interim: typed iteration (ring_buffer(..., record=)) is not "
                               f"available ({b.typed_reason}); bytes records decoded with "
                               "np.frombuffer(rec, dtype)[0]")
        if c.name == "drain" and _missing_api("write_array") is not None:
            r.notes.append("ring filled with write() (write_array not available)")
        active.append(r)
    run = k2u_round if direction == K2U else u2k_round
    for i in range(opts.warmup + opts.rounds):
        for r in active:
            if r.status != "ok":
                continue
            if i < opts.warmup:
                what = f"{r.case} ({mode}) warm-up"
            else:
                what = f"{r.case} ({mode}) round {i + 1 - opts.warmup}/{opts.rounds}"
            b.log(f"  {what}")
            try:
                with _watchdog(opts.timeout, what):
                    rnd = run(b, r.case, mode)
            except Skip as e:
                r.status, r.reason = "skipped", str(e)
                continue
            except Exception as e:
                r.fail(f"{type(e).__name__}: {e}")
                b.log(f"  FAILED: {r.reason}")
                _recover(b, direction, mode)
                continue
            if i >= opts.warmup:
                r.rounds.append(rnd)
    for r in active:
        if r.status == "ok" and r.rounds and r.rounds[0].get("lost") is not None:
            lost = [x["lost"] for x in r.rounds]
            if any(lost):
                r.notes.append(f"{sum(lost):,} records lost in {sum(1 for x in lost if x)} of "
                               f"{len(lost)} rounds (produced again afterwards)")
            rates = [x["producer_rate"] for x in r.rounds]
            r.notes.append(f"producer ran at {statistics.median(rates) / 1e6:.1f} M/s")


def _recover(b: Bench, direction: str, mode: str) -> None:
    """After a failed round: stop children that are mid-command, empty the rings."""
    if b.helper is not None and b.helper.pending:
        b.helper.close(force=True)
        b.helper = None
    for key, p in list(b.procs.items()):
        if p.pending:
            p.close(force=True)
            del b.procs[key]
    with contextlib.suppress(Exception):
        if direction == K2U:
            b.discard(mode)
        else:
            b.drain_all(mode)


def run_rss(b: Bench, api: str) -> dict[str, Any]:
    """Consume --rss-records through ``api`` in rounds of --records from a
    pre-filled ring; RSS after every round."""
    out: dict[str, Any] = {"api": api, "status": "ok", "reason": None}
    why = _missing_api(api)
    if why:
        out.update(status="skipped", reason=why)
        return out
    if api == "iter":
        b.typed_ring("prefilled")
        if b.typed_kind != "typed":
            out["note"] = "interim iteration + numpy decode"
    rounds = max(1, math.ceil(b.opts.rss_records / b.n))
    fn = IN_PROCESS_CONSUMERS[api]
    samples = []
    busy_ns = 0
    try:
        for i in range(rounds):
            with _watchdog(b.opts.timeout, f"rss {api} round {i + 1}"):
                b.prefill()
                count, _, t0, t1 = fn(b, "prefilled", b.n, False)
            if count != b.n:
                raise RuntimeError(f"consumed {count} records, expected {b.n}")
            busy_ns += t1 - t0
            samples.append(_rss())
            if i == 0 or (i + 1) % 20 == 0 or i + 1 == rounds:
                b.log(f"  rss {api}: {(i + 1) * b.n:,} records, RSS {samples[-1] / 2**20:.1f} MiB")
    except Exception as e:
        out.update(status="failed", reason=f"{type(e).__name__}: {e}")
        _recover(b, K2U, "prefilled")
        return out
    growth = max(samples[1:], default=samples[0]) - samples[0]
    out.update(records=rounds * b.n, rounds=rounds, rss_first=samples[0],
               rss_max=max(samples), rss_last=samples[-1], growth=growth,
               flat=growth <= RSS_GROWTH_LIMIT, rate=rounds * b.n / max(busy_ns, 1) * 1e9,
               samples=samples)
    return out


# ------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------


def _ratios(results: dict[tuple[str, str], Result]) -> dict[tuple[str, str], float | None]:
    out: dict[tuple[str, str], float | None] = {}
    for (case, mode), r in results.items():
        ref = results.get((REFERENCE[r.direction], mode))
        if r.case in ("produce", "drain"):
            ref = None  # kernel-side rates: nothing to compare with
        if ref is None or ref.median is None or r.median is None:
            out[(case, mode)] = None
        else:
            out[(case, mode)] = r.median / ref.median
    return out


def evaluate_targets(results: dict[tuple[str, str], Result],
                     rss: list[dict[str, Any]]) -> list[dict[str, Any]]:
    targets = []
    for case, mode, versus, want in RATIO_TARGETS:
        a, v = results.get((case, mode)), results.get((versus, mode))
        t: dict[str, Any] = {"target": f"{case} >= {want:g}x {versus} ({mode})",
                             "case": case, "mode": mode, "versus": versus, "threshold": want,
                             "value": None, "met": None}
        if a is None or v is None:
            t["why"] = "not run (--only)"
        elif a.median is None or v.median is None:
            missing = a if a.median is None else v
            t["why"] = f"{missing.case} {missing.status}: {missing.reason}"
        else:
            ratio = a.median / v.median
            t["value"] = ratio
            t["met"] = ratio >= want
            if not t["met"]:
                t["gap"] = f"{(want / ratio - 1) * 100:.0f}% short"
        targets.append(t)
    for case in ("read_array", "view_array"):
        r = results.get((case, "live"))
        t = {"target": f"{case} (live): no lost records", "case": case, "mode": "live",
             "threshold": 0, "value": None, "met": None}
        if r is None:
            t["why"] = "not run (--only)"
        elif r.median is None:
            t["why"] = f"{r.status}: {r.reason}"
        else:
            lost = sum(x.get("lost", 0) for x in r.rounds)
            t["value"], t["met"] = lost, lost == 0
            rates = [x["producer_rate"] for x in r.rounds]
            t["producer_rate"] = statistics.median(rates)
        targets.append(t)
    for m in rss:
        t = {"target": f"RSS flat after the first round ({m['api']})", "case": m["api"],
             "mode": "prefilled", "threshold": RSS_GROWTH_LIMIT, "value": None, "met": None}
        if m["status"] != "ok":
            t["why"] = f"{m['status']}: {m['reason']}"
        else:
            t["value"], t["met"] = m["growth"], m["flat"]
            t["records"] = m["records"]
        targets.append(t)
    return targets


def _fmt_ratio(x: float) -> str:
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.3f}x"


def _fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e6:.2f} M/s" if x < 1e9 else f"{x / 1e9:.2f} G/s"


def render_table(report: dict[str, Any]) -> str:
    cfg, m = report["config"], report["machine"]
    lines = [
        f"bpfring bench rings: {cfg['records']:,} records of {cfg['record_size']} B per "
        f"round, {cfg['rounds']} rounds (+{cfg['warmup']} warm-up); median, [min-max]",
        f"{m['date']}  {m['cpu']} ({m['cpus']} CPUs)  Linux {m['kernel']}  "
        f"Python {m['python']}  numpy {m['numpy']}  libbpf {m.get('libbpf', '?')}"
        + (f"  bcc {m['bcc']}" if m.get("bcc") else ""),
    ]
    by_section: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in report["results"]:
        by_section.setdefault((r["direction"], r["mode"]), []).append(r)
    for (direction, mode), rows in by_section.items():
        ref = REFERENCE[direction]
        lines += ["", f"{DIRECTIONS[direction]}, {MODE_TITLES[(direction, mode)]}",
                  f"  {'case':<44} {'records/s':>11} {'[min-max] M/s':>15} {'GB/s':>6} "
                  f"{'vs ' + ref:>16}"]
        for r in rows:
            if r["median_rate"] is None:
                lines.append(f"  {r['label']:<44} {r['status'].upper():>11}  {r['reason']}")
                continue
            span = f"[{r['min_rate'] / 1e6:.2f}-{r['max_rate'] / 1e6:.2f}]"
            ratio = _fmt_ratio(r["ratio_to_reference"]) if r["ratio_to_reference"] else "-"
            lines.append(f"  {r['label']:<44} {_fmt_rate(r['median_rate']):>11} {span:>15} "
                         f"{r['median_gbps']:>6.2f} {ratio:>16}")
            for note in r["notes"]:
                lines.append(f"  {'':<6}note: {note}")
    if report.get("memory"):
        lines += ["", "memory: RSS while consuming from a pre-filled ring"]
        for mm in report["memory"]:
            if mm["status"] != "ok":
                lines.append(f"  {mm['api']:<12} {mm['status'].upper()}  {mm['reason']}")
                continue
            lines.append(f"  {mm['api']:<12} {mm['records']:>13,} records  RSS after round 1 "
                         f"{mm['rss_first'] / 2**20:7.1f} MiB, max {mm['rss_max'] / 2**20:7.1f}"
                         f" MiB, growth {mm['growth'] / 2**10:+8.0f} KiB "
                         f"({_fmt_rate(mm['rate'])})")
    lines += ["", "targets"]
    for t in report["targets"]:
        if t["met"] is None:
            state, val = "n/a ", t.get("why", "")
        else:
            state = "MET " if t["met"] else "MISS"
            if t["target"].startswith("RSS"):
                val = f"growth {t['value'] / 2**10:+.0f} KiB over {t['records']:,} records"
            elif "lost" in t["target"]:
                val = (f"{t['value']} lost, producer at "
                       f"{t['producer_rate'] / 1e6:.1f} M/s")
            else:
                val = f"{t['value']:.2f}x" + (f" ({t['gap']})" if t.get("gap") else "")
        lines.append(f"  [{state}] {t['target']:<52} {val}")
    if report.get("environment_notes"):
        lines += [""] + [f"note: {n}" for n in report["environment_notes"]]
    return "\n".join(lines)


def check_plot_support() -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return ("--plot needs matplotlib, which is not installed: "
                "pip install 'bpfring[plot]'")
    return None


def render_plot(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in report["results"]:
        sections.setdefault((r["direction"], r["mode"]), []).append(r)
    if not any(r["median_rate"] for rows in sections.values() for r in rows):
        raise ValueError("nothing to plot: no case ran")
    heights = [len(rows) for rows in sections.values()]
    fig, axes = plt.subplots(len(sections), 1, squeeze=False,
                             figsize=(10, 1.2 * len(sections) + 0.42 * sum(heights)),
                             gridspec_kw={"height_ratios": heights})
    for ax, ((direction, mode), all_rows) in zip(axes[:, 0], sections.items(), strict=True):
        all_rows = all_rows[::-1]
        rows = [r for r in all_rows if r["median_rate"]]
        y = [i for i, r in enumerate(all_rows) if r["median_rate"]]
        med = [r["median_rate"] / 1e6 for r in rows]
        lo = [m - r["min_rate"] / 1e6 for m, r in zip(med, rows, strict=True)]
        hi = [r["max_rate"] / 1e6 - m for m, r in zip(med, rows, strict=True)]
        colors = ["#888888" if r["case"] in (REFERENCE[direction], "produce", "drain")
                  else ("#4c72b0" if not r["case"].startswith(("libbpf", "bcc"))
                        else "#dd8452") for r in rows]
        ax.barh(y, med, xerr=[lo, hi], color=colors, capsize=2)
        ax.set_yticks(range(len(all_rows)), [r["label"] for r in all_rows], fontsize=8)
        ax.set_xscale("log")
        left = min(med, default=1) / 2
        for yi, r in enumerate(all_rows):
            if not r["median_rate"]:
                why = f"{r['status']}: {r['reason'] or ''}"
                ax.text(left, yi, " " + (why if len(why) < 90 else why[:87] + "..."),
                        va="center", fontsize=7, color="#aa0000")
        ax.set_title(f"{DIRECTIONS[direction]}, {MODE_TITLES[(direction, mode)]}", fontsize=9)
        for yi, r, mv in zip(y, rows, med, strict=True):
            txt = f" {mv:.2f} M/s"
            if r["ratio_to_reference"]:
                txt += f"  ({_fmt_ratio(r['ratio_to_reference'])})"
            ax.text(r["max_rate"] / 1e6 * 1.05, yi, txt, va="center", fontsize=7)
        ax.set_xlim(left=left, right=max((r["max_rate"] for r in rows), default=1e6) / 1e6 * 12)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel("million 40-byte records per second (log scale); "
                           "ratio to libbpf C in parentheses", fontsize=8)
    cfg, m = report["config"], report["machine"]
    fig.suptitle(f"bpfring bench rings: {cfg['records']:,} records/round, median of "
                 f"{cfg['rounds']}; {m['cpu']} x{m['cpus']}, Linux {m['kernel']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine_info(b: Bench | None) -> dict[str, Any]:
    import bpfring

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "bpfring": bpfring.__version__,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError):
        info["libbpf"] = LibbpfCtypes().version
    cc = _find_cc()
    if cc:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10)
            info["cc"] = out.stdout.splitlines()[0] if out.stdout else cc
    if b is not None:
        info.update(b.versions)
        if len(b.cpus) >= 2:
            info["consumer_cpu"], info["helper_cpu"] = b.cpus[0], b.cpus[1]
    return info


# ------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------


FULL = {"records": 1_000_000, "rounds": 5, "warmup": 1, "rss_records": 100_000_000}
QUICK = {"records": 20_000, "rounds": 2, "warmup": 0, "rss_records": 100_000}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bpfring bench rings",
        description="Ring buffer throughput (kernel -> user and user -> kernel) of bpfring "
        "against libbpf C, libbpf through ctypes and BCC, on this machine.",
        epilog="cases: " + ", ".join(c.name for c in CASES) + ", rss; also "
        "k2u, u2k, prefilled, empty, live (selectors combine)",
    )
    p.add_argument("--records", type=int, metavar="N",
                   help="records per round (default 1,000,000)")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="timed rounds per case (default 5)")
    p.add_argument("--warmup", type=int, metavar="N",
                   help="untimed rounds per case first (default 1)")
    p.add_argument("--quick", action="store_true",
                   help="small numbers for smoke tests (20,000 records, 2 rounds, no warm-up, "
                        "RSS over 100,000 records); explicit options still win")
    p.add_argument("--only", metavar="CASES", default="",
                   help="comma-separated cases and selectors to run (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--plot", metavar="FILE", help="write a PNG bar chart (needs matplotlib)")
    p.add_argument("--rss-records", type=int, metavar="N",
                   help="records consumed per API for the RSS check (default 100,000,000)")
    p.add_argument("--live-batch", type=int, default=LIVE_BATCH, metavar="N",
                   help=f"records per producer run in live mode (default {LIVE_BATCH}, "
                        "as bench_ringbufs)")
    p.add_argument("--live-ring", type=int, default=LIVE_RING, metavar="BYTES",
                   help=f"ring size for live runs (default {LIVE_RING})")
    p.add_argument("--timeout", type=float, default=300, metavar="SEC",
                   help="give up on a round after SEC seconds (default 300)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    opts = parser.parse_args(list(argv))
    defaults = QUICK if opts.quick else FULL
    for k, v in defaults.items():
        if getattr(opts, k) is None:
            setattr(opts, k, v)
    tokens = [t.strip() for t in opts.only.split(",") if t.strip()]
    known = set(CASE_BY_NAME) | {"rss", "prefilled", "empty", "live", *DIRECTIONS}
    bad = [t for t in tokens if t not in known]
    if bad:
        parser.error(f"unknown case or selector {', '.join(bad)} (choose from "
                     f"{', '.join(sorted(known))})")
    opts.only = tokens
    if opts.records < 1 or opts.records > 20_000_000:
        parser.error("--records must be between 1 and 20,000,000 (the ring is sized for a round)")
    if opts.rounds < 1 or opts.warmup < 0 or opts.live_batch < 1:
        parser.error("--rounds and --live-batch must be >= 1, --warmup >= 0")
    if opts.live_ring < PAGE or opts.live_ring & (opts.live_ring - 1):
        parser.error("--live-ring must be a power of two of at least one page")
    if opts.plot and (why := check_plot_support()):
        print(f"bpfring: error: {why}", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        if not opts.quiet:
            print(msg, file=sys.stderr, flush=True)

    selected = _select(opts)
    want_rss = not tokens or "rss" in tokens
    if tokens and all(t == "rss" for t in tokens):
        selected = []
    results: dict[tuple[str, str], Result] = {
        (c.name, mode): Result(c.name, c.direction, mode, c.label) for c, mode in selected}

    load_start = [round(x, 2) for x in os.getloadavg()]
    log(f"bpfring bench rings: loading {BPF_SOURCE.name} "
        f"(ring of {_ring_size(opts.records) >> 20 or 1} MiB for {opts.records:,} records)")
    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through b.close(): unpins, ends children

    old_term = signal.signal(signal.SIGTERM, terminate)
    try:
        b = Bench(opts, log)
    except BaseException:
        signal.signal(signal.SIGTERM, old_term)
        raise
    memory: list[dict[str, Any]] = []
    try:
        sections: dict[tuple[str, str], list[CaseDef]] = {}
        for c, mode in selected:
            sections.setdefault((c.direction, mode), []).append(c)
        for (direction, mode), cases in sections.items():
            log(f"{DIRECTIONS[direction]}, {MODE_TITLES[(direction, mode)]}")
            run_section(b, direction, mode, cases, results)
        if want_rss:
            log("memory: RSS while consuming")
            for api in RSS_APIS:
                memory.append(run_rss(b, api))
        machine = machine_info(b)
        machine["loadavg_start"] = load_start
        env_notes = list(dict.fromkeys(b.env_notes))
        if load_start[0] > 0.5:
            env_notes.append(f"the machine was busy when the run started (load average "
                             f"{load_start[0]}): numbers may be noisy")
    finally:
        b.close()
        signal.signal(signal.SIGTERM, old_term)

    ratios = _ratios(results)
    report = {
        "suite": "rings",
        "format": 1,
        "machine": machine,
        "config": {
            "records": opts.records, "rounds": opts.rounds, "warmup": opts.warmup,
            "record_size": RECORD_SIZE, "ring_size": _ring_size(opts.records),
            "live_ring_size": opts.live_ring, "live_batch": opts.live_batch,
            "rss_records": opts.rss_records if want_rss else None,
            "only": tokens,
        },
        "results": [results[k].to_json(ratios[k]) for k in results],
        "memory": memory,
        "targets": evaluate_targets(results, memory),
        "environment_notes": env_notes,
    }
    if opts.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_table(report))
    if opts.plot:
        render_plot(report, opts.plot)
        log(f"plot written to {opts.plot}")
    failed = [r for r in report["results"] if r["status"] == "failed"] + \
        [m for m in memory if m["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
