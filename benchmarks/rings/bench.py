"""The loaded benchmark program, its rings and the children serving it."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .common import BPF_LOOP_MAX, BPF_SOURCE, EVENT, HERE, K2U, PAGE, SLOT, U2K, Skip, _mono
from .procs import (
    BCC_SCRIPT,
    LibbpfCtypes,
    LineProc,
    _bcc_kernel_source,
    _bcc_python,
    build_baseline,
)

# ------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------


def _ignore(view: memoryview) -> None:
    pass


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
        self._objects_lib: ctypes.PyDLL | None = None
        self._objects_dst: tuple[mmap.mmap, int] | None = None
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
                "from benchmarks.rings.procs import _helper_main; _helper_main()")
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

    def objects_limit(self, which: str) -> Callable[[list[bytes]], int]:
        """write_many's limits from objects_limits.c (built on first use):
        ``read`` reads the list's bytes objects; ``copy`` also writes them
        as ring samples into a private buffer of the ring's size (4 KiB
        pages, as the ring's, touched once here so that no round times page
        faults)."""
        if self._objects_lib is None:
            if "objects_limits" in self.skips:
                raise Skip(self.skips["objects_limits"])
            try:
                lib = ctypes.PyDLL(str(build_baseline("objects_limits", python_lib=True)))
            except Skip as e:
                self.skips["objects_limits"] = str(e)
                raise
            for name in ("read_objects", "copy_objects"):
                fn = getattr(lib, name)
                fn.restype = ctypes.c_uint64
                fn.argtypes = [ctypes.py_object] + ([ctypes.c_void_p] * (name == "copy_objects"))
            self._objects_lib = lib
        lib = self._objects_lib
        if which == "read":
            return lib.read_objects  # type: ignore[no-any-return]
        if self._objects_dst is None:
            m = mmap.mmap(-1, self.size)
            if hasattr(mmap, "MADV_NOHUGEPAGE"):
                m.madvise(mmap.MADV_NOHUGEPAGE)
            m.write(b"\1" * self.size)
            self._objects_dst = (m, ctypes.addressof(ctypes.c_char.from_buffer(m)))
        copy, addr = lib.copy_objects, self._objects_dst[1]
        return lambda recs: copy(recs, addr)  # type: ignore[no-any-return]

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
