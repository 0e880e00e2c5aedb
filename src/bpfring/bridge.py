"""Asynchronous kernel map updates through a user ring buffer (the "map bridge").

Python queues ``update``/``delete`` operations for one BPF map by writing them
straight into the mmapped pages of a ``BPF_MAP_TYPE_USER_RINGBUF`` (no system
call per operation); a drain running in the kernel (declared by
``<bpfring/bridge.bpf.h>``) applies them with ``bpf_map_update_elem`` and
``bpf_map_delete_elem``.  Three ways to run that drain (``mode``):

``"flush"``
    :meth:`MapBridge.flush` runs the bridge's ``SEC("syscall")`` program with
    ``BPF_PROG_TEST_RUN``: one system call applies everything queued.
``"piggyback"``
    a program you already attach calls ``bpfring_bridge_drain(map)``; the
    operations are applied the next time it runs, without any system call.
``"timer"``
    a ``bpf_timer`` drains every ``period`` seconds: no system call, latency
    about one period.

Without user ring buffers (Linux < 6.1) or when the bridge is not in the
object, the same API falls back to ``BPF_MAP_UPDATE_BATCH`` and per-operation
``bpf()`` calls, and says so once in the log.  See ``docs/bridge.md``.

Typical use::

    obj = bpfring.bridge.load("limits.bpf.c")       # or bpfring.load(...)
    with MapBridge(obj, "limits", mode="timer") as br:
        br.update(42, {"rate": 1000, "burst": 50})
        br.update_many(np.arange(1000, dtype=np.uint64), values)
        br.wait_applied(1.0)
        print(br.stats.applied)
"""

from __future__ import annotations

import errno as _errno
import logging
import mmap
import os
import select
import struct
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypedDict, cast

import numpy as np
import numpy.typing as npt

from . import _sys
from ._elements import ElementCodec, ElementSizeError, percpu_stride
from ._fd import OwnedFD
from ._ringcore import HDR_SIZE, distance, record_span
from ._wait import Waiter
from .build import build_source
from .errors import (
    BPFError,
    KernelTooOld,
    LoadError,
    MapTypeError,
    RecordTooLarge,
    RingFull,
)
from .mapref import MapRef
from .maps import Map
from .object import BPFObject, open_object
from .object import load as _load_object
from .ringbuf import RingBuffer, UserRingBuffer

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from .btf import Codec

_Rows = npt.NDArray[Any]

__all__ = [
    "ANY",
    "EXIST",
    "F_LOCK",
    "NOEXIST",
    "BridgeStats",
    "FlushResult",
    "MapBridge",
    "OpResult",
    "OpSizeError",
    "kernel_supports_bridge",
    "load",
]

log = logging.getLogger("bpfring")

#: Update flags (``BPF_ANY``, ``BPF_NOEXIST``, ``BPF_EXIST``, ``BPF_F_LOCK``).
ANY, NOEXIST, EXIST, F_LOCK = 0, 1, 2, 4

OP_UPDATE = 1
OP_DELETE = 2
OP_NAMES = {OP_UPDATE: "update", OP_DELETE: "delete"}

#: ``struct bpfring_bridge_op``: op, flags, key_size, value_size, count, reserved.
_OP_HDR = struct.Struct("<BBHIII")
#: A sample's ring header (8 bytes) and op header: the overhead of every sample.
_REC_HDR_SIZE = HDR_SIZE + _OP_HDR.size  # 24
#: ``BPFRING_BRIDGE_DATA_MAX``: entry bytes in one sample.
_DATA_MAX = 32768
#: ``struct bpfring_bridge_result``.
_RESULT = struct.Struct("<QiBBH")
#: ``struct bpfring_bridge_flush``.
_FLUSH_CTX = struct.Struct("<qQQQq")

#: ``struct bpfring_bridge_state``: the u64 counters, in order, then u32 control words.
_STATE_FIELDS = (
    "seq", "applied", "updated", "deleted", "err_noent", "err_exist", "err_2big",
    "err_nomem", "err_inval", "err_other", "bad", "batches", "drains", "drain_busy",
    "drain_errors", "last_error", "timer_ticks",
)
_STATE_SIZE = 24 * 8 + 8 * 4
_CTL_WANT_WAKEUP = 48  # u32 index of want_wakeup
_CTL_REPORT = 49
_CTL_BUDGET = 50
_ERR_FIELDS = {
    _errno.ENOENT: "err_noent", _errno.EEXIST: "err_exist", _errno.E2BIG: "err_2big",
    _errno.ENOMEM: "err_nomem", _errno.EINVAL: "err_inval",
}
_REPORT = {None: 0, "failures": 1, "all": 2}

#: Map types a bridge can target (see the header for why these).
SUPPORTED_MAP_TYPES = frozenset({
    _sys.MAP_TYPE_HASH, _sys.MAP_TYPE_ARRAY, _sys.MAP_TYPE_PERCPU_HASH,
    _sys.MAP_TYPE_PERCPU_ARRAY, _sys.MAP_TYPE_LRU_HASH, _sys.MAP_TYPE_LRU_PERCPU_HASH,
})
_ARRAY_TYPES = frozenset({_sys.MAP_TYPE_ARRAY, _sys.MAP_TYPE_PERCPU_ARRAY})
_WAIT_SLICE = 0.005  # longest single epoll wait: a missed wakeup costs at most this
_FALLBACK_QUEUE_MAX = 65536  # operations the fallback keeps before applying them anyway

Mode = Literal["flush", "piggyback", "timer"]


#: A key or value does not have the map's size (rejected before it is queued);
#: the error of the element codec that :class:`~bpfring.Map` shares.
OpSizeError = ElementSizeError


class OpResult(NamedTuple):
    """Outcome of one queued operation, from the results ring (``report=...``)."""

    seq: int  #: index of the operation, as returned by update()/delete()
    op: str  #: "update", "delete" or "bad"
    flags: int  #: the update flags it carried
    errno: int  #: 0 on success, else the positive errno (EEXIST, ENOENT, E2BIG, ...)

    @property
    def ok(self) -> bool:
        return self.errno == 0


class FlushResult(NamedTuple):
    """What one :meth:`MapBridge.flush` did."""

    drained: int  #: operations consumed
    applied: int  #: ... that succeeded
    failed: int  #: ... that the map refused (counted by errno in :attr:`MapBridge.stats`)
    bad: int  #: ... that were malformed (never happens with MapBridge as the producer)


@dataclass(frozen=True)
class BridgeStats:
    """Counters of one bridge (kept by the kernel drain; in Python on the fallback)."""

    queued: int  #: operations this MapBridge queued since it was created
    consumed: int  #: operations the drain consumed since the bridge was loaded
    applied: int
    updated: int
    deleted: int
    failed: int
    errors: dict[str, int] = field(default_factory=dict)  #: failures by errno name
    bad: int = 0
    batches: int = 0  #: drains (or fallback flushes) that applied at least one operation
    drains: int = 0
    drain_busy: int = 0  #: drains that found another drain running
    drain_errors: int = 0
    last_error: int = 0  #: last negative errno seen
    timer_ticks: int = 0
    pending: int = 0  #: operations queued by this MapBridge and not consumed yet
    results_lost: int = 0  #: per-operation results that did not fit in the results ring


# --------------------------------------------------------------------------------------
# Keys and values: bytes, or typed from the map's BTF (bpfring._elements
# encodes them, for Map and MapBridge alike); here only rows of bytes
# --------------------------------------------------------------------------------------

def _byte_rows(a: _Rows) -> _Rows:
    """Rows from :meth:`ElementCodec.rows` as an (n, size) uint8 array (a view)."""
    return a.view(np.uint8).reshape(len(a), -1)


# --------------------------------------------------------------------------------------
# Feature probe, fallback logging and loading with a fallback
# --------------------------------------------------------------------------------------

_SUPPORTED: bool | None = None
_FALLBACK_LOGGED = False
_FALLBACK_LOCK = threading.Lock()


def kernel_supports_bridge() -> bool:
    """True when this kernel can create user ring buffers (Linux 6.1+) for us."""
    global _SUPPORTED
    if _SUPPORTED is None:
        try:
            os.close(_sys.map_create(_sys.MAP_TYPE_USER_RINGBUF, 0, 0, mmap.PAGESIZE))
            _SUPPORTED = True
        except BPFError:
            _SUPPORTED = False
    return _SUPPORTED


def _log_fallback(what: str, reason: str) -> None:
    """Say once per process (WARNING) that bridges use system calls; later: DEBUG."""
    global _FALLBACK_LOGGED
    with _FALLBACK_LOCK:
        first = not _FALLBACK_LOGGED
        _FALLBACK_LOGGED = True
    log.log(logging.WARNING if first else logging.DEBUG,
            "map bridge %s: %s; using BPF_MAP_UPDATE_BATCH and per-operation bpf() calls "
            "instead of the user ring buffer", what, reason)


def load(src: Any, **kw: Any) -> BPFObject:
    """:func:`bpfring.load` for programs that use ``<bpfring/bridge.bpf.h>``.

    On a kernel without user ring buffers, or when the object does not load
    with its bridges, it is built again with ``-DBPFRING_BRIDGE_DISABLE`` (the
    bridges compile out and :class:`MapBridge` falls back to system calls); a
    failure that remains without the bridges is raised as it was.  Only C
    sources can be rebuilt; a compiled object is loaded as it is.
    """
    defines = dict(kw.pop("defines", None) or {})
    is_c = isinstance(src, str | os.PathLike) and (
        not os.path.exists(os.fspath(src)) or os.fspath(src).endswith(".c"))
    if not is_c:
        return _load_object(src, defines=defines, **kw)
    off = {**defines, "BPFRING_BRIDGE_DISABLE": None}
    if not kernel_supports_bridge():
        _log_fallback("(all)", "this kernel has no user ring buffers (Linux 6.1+)")
        return _load_object(src, defines=off, **kw)
    try:
        return _load_object(src, defines=defines, **kw)
    except (LoadError, KernelTooOld) as first:
        try:
            obj = _load_object(src, defines=off, **kw)
        except BPFError:
            raise first from None
        _log_fallback("(all)", "the bridge programs did not load: "
                      + first.message.splitlines()[0])
        return obj


# --------------------------------------------------------------------------------------
# A bridge object for a map that lives outside the user's object
# --------------------------------------------------------------------------------------

_GENERIC_SRC = r"""
// Generated by bpfring.bridge: a bridge for a map given by fd (libbpf reuses it).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/bridge.bpf.h>

struct bpfring_generic_key { __u8 b[BPFRING_KEY_SIZE]; };
struct bpfring_generic_value { __u8 b[BPFRING_VALUE_SIZE]; };

struct {
	__uint(type, BPFRING_MAP_TYPE);
	__uint(max_entries, 1);
	__type(key, struct bpfring_generic_key);
	__type(value, struct bpfring_generic_value);
} target SEC(".maps");

BPFRING_BRIDGE_RESULTS(target, BPFRING_RING_SIZE, BPFRING_RESULTS_SIZE);

char LICENSE[] SEC("license") = "Dual BSD/GPL";
"""


def _generic_bridge(map_fd: int, info: _sys.MapInfo, ring_size: int,
                    results_size: int) -> BPFObject:
    """Compile and load a bridge object whose target is the existing map ``map_fd``."""
    path = build_source(_GENERIC_SRC, name="bpfring_bridge", defines={
        "BPFRING_KEY_SIZE": info.key_size, "BPFRING_VALUE_SIZE": info.value_size,
        "BPFRING_MAP_TYPE": info.type, "BPFRING_RING_SIZE": ring_size,
        "BPFRING_RESULTS_SIZE": results_size,
    })
    obj = open_object(path, name="bpfring_bridge")
    try:
        obj.maps["target"].reuse_fd(map_fd)
        obj.load()
    except BaseException:
        obj.close()
        raise
    return obj


# --------------------------------------------------------------------------------------
# The two ways of applying operations: the user ring, or system calls
# --------------------------------------------------------------------------------------


class _Parts(TypedDict):
    """The fds of one bridge's maps and programs (libbpf's, owned by the object)."""

    ops: int  #: the operations' user ring
    state: int  #: the counters and control words (an mmapable array)
    results: int | None  #: the per-operation results ring, if declared
    results_lost: int | None  #: its lost counter
    progs: dict[str, int]  #: "flush", "timer_on", "timer_off"


class _RingQueue:
    """Operations go into the user ring; the kernel drain applies them.

    Samples are written through :class:`UserRingBuffer` (``write`` for one
    operation, ``write_many`` for a batch: one producer-position store), so
    the ring's own memory ordering applies; the bridge adds the operation
    indexes, what to do when the ring is full, and the drain control.
    """

    fallback = None
    # Set as _setup goes; close() releases whatever exists.
    _timer_armed = False
    _epoll: select.epoll | None = None
    _state_mm: mmap.mmap | None = None
    _results: RingBuffer | None = None

    def __init__(self, bridge: MapBridge, parts: _Parts, mode: Mode,
                 budget: int, report: str | None) -> None:
        self._bridge = bridge
        self._mode = mode
        if report is not None and parts.get("results") is None:
            raise BPFError("report= needs a results ring: declare the bridge with "
                           "BPFRING_BRIDGE_RESULTS(map, ring_size, results_size)")
        self._closed = False
        self._lock = threading.Lock()
        self.ring = UserRingBuffer(parts["ops"])
        try:
            self._setup(parts, budget, report)
        except BaseException:
            self.close()
            raise

    def _setup(self, parts: _Parts, budget: int, report: str | None) -> None:
        ring = self.ring
        info = self._bridge.info
        ks, vs = info.key_size, info.value_size
        self._ks, self._vs = ks, vs
        self._size = ring.size
        #: entry size, and most entries per sample by op: up to 32 KiB of entries,
        #: and at most a quarter of the ring so that a partly full ring takes some
        self._esize = {OP_UPDATE: ks + vs, OP_DELETE: ks}
        cap = min(_DATA_MAX, ring.size // 4 - _REC_HDR_SIZE)
        self._per_sample = {op: max(1, cap // e) for op, e in self._esize.items()}
        self._hdr1 = {(op, fl): _OP_HDR.pack(op, fl, ks, vs if op == OP_UPDATE else 0, 1, 0)
                      for op in (OP_UPDATE, OP_DELETE) for fl in range(8)}
        # Control words and counters: one mmapped array element, no syscall to read.
        self._state_mm = mmap.mmap(parts["state"], mmap.PAGESIZE, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE)
        self._st = memoryview(self._state_mm).cast("Q")
        self._ctl = memoryview(self._state_mm).cast("I")
        self._ctl[_CTL_REPORT] = _REPORT[report]
        self._ctl[_CTL_BUDGET] = budget
        self._waiters = 0
        self._wait_lock = threading.Lock()
        self._epoll = select.epoll()
        self._epoll.register(ring.fileno(), select.EPOLLOUT | select.EPOLLET)
        self._prog_fds = parts["progs"]
        self._timer_armed = False
        # BPF_PROG_TEST_RUN of the flush program, prepared once: a flush is then
        # one syscall with no Python-side allocation.
        self._flush_run = _sys.PreparedRun(parts["progs"]["flush"], ctx_size=_FLUSH_CTX.size,
                                           what=f"flushing bridge {self._bridge.name!r}")
        self._flush_ctx = self._flush_run.ctx
        results = parts["results"]
        if results is not None:
            self._results = RingBuffer(results, lost_map=parts["results_lost"])
        # Operations a previous producer left queued are applied first, so that
        # our indexes start where the kernel's count stands.
        if ring.pending_bytes():
            self.flush()
        self._seq = self._seq0 = self._st[0]

    # writing -----------------------------------------------------------------------

    def _room(self, need: int) -> bool:
        return self.ring.free >= need

    def _make_room(self, need: int) -> None:
        """Called with the lock held when ``need`` bytes do not fit: flush (flush
        mode), wait for a drain, or raise :class:`RingFull` (``on_full``)."""
        b = self._bridge
        if b.on_full == "raise":
            raise RingFull(f"bridge ring for map {b.name!r} is full "
                           f"({self.ring.free} of {self._size} bytes free, {need} needed)",
                           hint="flush, wait_applied, or use on_full='wait'")
        waiter = self._waiter(b.full_timeout)
        while not self._room(need):
            if self._mode == "flush":
                self._flush_once()
                if self._room(need):
                    return
            if not self._wait_drain(waiter):
                raise RingFull(f"bridge ring for map {b.name!r} stayed full for "
                               f"{b.full_timeout} s", hint="is the drain running?")

    def _waiter(self, timeout: float | None) -> Waiter:
        if self._epoll is None:
            raise ValueError("MapBridge is closed")
        # A negative timeout means "do not wait", as it always did here.
        return Waiter(self._epoll, None if timeout is None else max(0.0, timeout),
                      max_wait=_WAIT_SLICE)

    def _wait_drain(self, waiter: Waiter) -> bool:
        """Sleep until a drain wakes us (we ask for wakeups while waiting), or
        for at most a few milliseconds in case a drain read the flag too early;
        False, without waiting, once the waiter's deadline has passed."""
        if waiter.expired:
            return False
        with self._wait_lock:
            self._waiters += 1
            self._ctl[_CTL_WANT_WAKEUP] = 1
        try:
            waiter.wait()
            return True
        finally:
            with self._wait_lock:
                self._waiters -= 1
                if not self._waiters:
                    self._ctl[_CTL_WANT_WAKEUP] = 0

    def put(self, op: int, flags: int, key: bytes, value: bytes) -> int:
        payload = self._hdr1[op, flags] + key + value
        with self._lock:
            if self._closed:
                raise ValueError("MapBridge is closed")
            try:
                self.ring.write(payload)
            except RingFull:
                self._make_room(record_span(len(payload)))
                self.ring.write(payload)
            seq = self._seq
            self._seq = seq + 1
        return seq

    def _samples(self, op: int, flags: int, krows: np.ndarray, vrows: np.ndarray | None
                 ) -> list[bytes]:
        """The batch as sample payloads: header, then the keys, then the values."""
        ks, per, n = self._ks, self._per_sample[op], len(krows)
        vs = self._vs if op == OP_UPDATE else 0
        out = []
        for i in range(0, n, per):
            m = min(per, n - i)
            hdr = _OP_HDR.pack(op, flags, ks, vs, m, 0)
            k = krows if m == n else krows[i:i + m]  # C-contiguous rows: one buffer
            # (numpy arrays are buffers; numpy's stubs say so only for Python 3.12+)
            if vrows is None:
                out.append(b"".join((hdr, cast("Buffer", k))))
            else:
                v = vrows if m == n else vrows[i:i + m]
                out.append(b"".join((hdr, cast("Buffer", k), cast("Buffer", v))))
        return out

    def put_rows(self, op: int, flags: int, krows: np.ndarray, vrows: np.ndarray | None) -> int:
        """Write the operations (rows of key and value bytes) as samples of up
        to 32 KiB each, published with one producer-position store (one more
        per wait when the ring fills up meanwhile)."""
        samples = self._samples(op, flags, krows, vrows)
        with self._lock:
            if self._closed:
                raise ValueError("MapBridge is closed")
            if self._bridge.on_full == "raise":
                total = sum(record_span(len(s)) for s in samples)
                if total > self._size:
                    raise RecordTooLarge(
                        f"{len(krows)} operations take {total} bytes, more than the whole "
                        f"{self._size}-byte ring", hint="split the batch or use on_full='wait'")
                if not self._room(total):
                    self._make_room(total)  # raises: all or nothing
            if len(samples) == 1:  # write() is the cheaper call for one sample
                try:
                    self.ring.write(samples[0])
                except RingFull:
                    self._make_room(record_span(len(samples[0])))
                    self.ring.write(samples[0])
            else:
                done = 0
                while True:
                    done += self.ring.write_many(samples[done:] if done else samples)
                    if done == len(samples):
                        break
                    self._make_room(record_span(len(samples[done])))
            first = self._seq
            self._seq = first + len(krows)
            return first

    # draining ----------------------------------------------------------------------

    def _flush_once(self) -> tuple[int, int, int, int, int]:
        """Run the flush program once; return (drained, applied, failed, bad, error)."""
        self._flush_run.run()
        return _FLUSH_CTX.unpack(self._flush_ctx)

    def flush(self) -> FlushResult:
        target = self.ring.producer_pos  # what was queued when the flush began
        d, a, f, b, error = self._flush_once()
        if not error and self._consumed(target):  # the usual case: one call did it all
            return FlushResult(d, a, f, b)
        return self._flush_more(target, d, a, f, b, error)

    def _flush_more(self, target: int, drained: int, applied: int, failed: int, bad: int,
                    error: int) -> FlushResult:
        while True:
            if error < 0 and error != -_errno.EBUSY:
                raise BPFError(f"draining bridge {self._bridge.name!r} failed: "
                               f"{os.strerror(-error)}", errno=-error,
                               hint="another process wrote malformed data into the ring?")
            if self._consumed(target):
                break
            if error:
                # Another drain (timer, piggyback) holds the ring; it may stop at
                # its budget, so try again once it is done.
                time.sleep(20e-6)
            # else: more than one drain call's worth of samples (128 Ki): go on
            d, a, f, b, error = self._flush_once()
            drained, applied, failed, bad = drained + d, applied + a, failed + f, bad + b
        return FlushResult(drained, applied, failed, bad)

    def _consumed(self, target: int) -> bool:
        pending = distance(self.ring.consumer_pos, target)
        return pending == 0 or pending > self._size  # consumer at or past target

    def wait_consumed(self, target: int, timeout: float | None) -> bool:
        waiter = self._waiter(timeout)
        while not self._consumed(target):
            if not self._wait_drain(waiter):
                return False
        return True

    def wait_applied(self, timeout: float | None) -> bool:
        target = self.ring.producer_pos
        if self._mode == "flush" and not self._consumed(target):
            self.flush()
        return self.wait_consumed(target, timeout)

    # timer -------------------------------------------------------------------------

    def start_timer(self, period: float) -> None:
        ns = int(period * 1e9)
        if ns <= 0:
            raise ValueError("period must be > 0")
        ret = _sys.prog_test_run(self._prog_fds["timer_on"], ctx=struct.pack("<Q", ns))
        if ret < 0:
            raise _sys.error_from_errno(-ret, f"arming the drain timer of {self._bridge.name!r}")
        self._timer_armed = True

    def stop_timer(self) -> None:
        _sys.prog_test_run(self._prog_fds["timer_off"])
        self._timer_armed = False

    # reading -----------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        vals = self._st[:len(_STATE_FIELDS)].tolist()
        c = dict(zip(_STATE_FIELDS, vals, strict=True))
        if c["last_error"] >= 1 << 63:  # an s64 in a u64 view
            c["last_error"] -= 1 << 64
        c["queued"] = self._seq - self._seq0
        c["pending"] = max(0, self._seq - c["seq"])
        # (the results ring's lost counter is a per-CPU map: one bpf() call)
        c["results_lost"] = (self._results.lost or 0) if self._results is not None else 0
        return c

    def pending(self) -> int:
        return max(0, self._seq - self._st[0])

    def results(self, limit: int | None, timeout: float | None) -> list[OpResult]:
        if self._results is None:
            raise BPFError("this bridge has no results ring: declare it with "
                           "BPFRING_BRIDGE_RESULTS(map, ring_size, results_size)")
        out: list[OpResult] = []

        def take(v: memoryview) -> None:
            seq, err, op, flags, _ = _RESULT.unpack_from(v)
            name = "bad" if err == -_errno.EBADMSG else OP_NAMES.get(op, "bad")
            out.append(OpResult(seq, name, flags, -err))

        self._results.poll(take, timeout=timeout, limit=limit)
        return out

    def close(self) -> None:
        """Stop the timer we armed, release the mappings and rings (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._timer_armed:
            try:
                self.stop_timer()
            except BPFError as e:  # the object may already be gone
                log.debug("stopping the drain timer: %s", e)
        if self._epoll is not None:
            self._epoll.close()
        if self._state_mm is not None:
            self._st.release()
            self._ctl.release()
            self._state_mm.close()
        if self._results is not None:
            self._results.close()
        self.ring.close()


class _SyscallQueue:
    """Fallback: the same operations applied with bpf() system calls.

    In ``flush`` mode operations wait in Python until :meth:`flush` (or until
    64 Ki of them wait), which applies runs of updates with one
    ``BPF_MAP_UPDATE_BATCH`` each (deletes and NOEXIST/EXIST updates one by
    one); in the other modes each call applies at once.  A failing operation
    is counted and the rest of the batch still runs, as with the ring.
    """

    def __init__(self, bridge: MapBridge, map_fd: int, info: _sys.MapInfo, mode: Mode,
                 reason: str, report: str | None) -> None:
        self._bridge = bridge
        self._fd = map_fd  # the MapBridge's private duplicate: it closes it
        self._open = True
        self._info = info
        self._immediate = mode != "flush"
        self.fallback = reason
        self._report = _REPORT[report]
        self._lock = threading.Lock()
        self._pending: list[tuple[int, int, np.ndarray, np.ndarray | None]] = []
        self._npending = 0
        self._seq = 0
        self._c = dict.fromkeys(_STATE_FIELDS, 0)
        self._results: deque[OpResult] = deque()
        self._ncpu = _sys.possible_cpus() if info.type in _sys.PERCPU_MAP_TYPES else 0

    def _values(self, vrows: np.ndarray) -> np.ndarray:
        """Per-CPU maps take one 8-byte-aligned slot per possible CPU from bpf()."""
        if not self._ncpu:
            return vrows
        n, vs = vrows.shape
        stride = percpu_stride(vs)
        out = np.zeros((n, self._ncpu, stride), np.uint8)
        out[:, :, :vs] = vrows[:, None, :]
        return out.reshape(n, -1)

    def put(self, op: int, flags: int, key: bytes, value: bytes) -> int:
        k = np.frombuffer(key, np.uint8).reshape(1, -1)
        v = np.frombuffer(value, np.uint8).reshape(1, -1) if op == OP_UPDATE else None
        return self.put_rows(op, flags, k, v)

    def put_rows(self, op: int, flags: int, krows: np.ndarray, vrows: np.ndarray | None) -> int:
        krows = _byte_rows(krows)
        vrows = _byte_rows(vrows) if vrows is not None else None
        with self._lock:
            first = self._seq
            self._seq += len(krows)
            self._pending.append((op, flags, krows, vrows))
            self._npending += len(krows)
            if self._immediate or self._npending >= _FALLBACK_QUEUE_MAX:
                self._apply()
        return first

    def _record(self, seq: int, op: int, flags: int, err: int) -> None:
        c = self._c
        c["seq"] += 1
        if err:
            c[_ERR_FIELDS.get(err, "err_other")] += 1
            c["last_error"] = -err
        else:
            c["applied"] += 1
            c["updated" if op == OP_UPDATE else "deleted"] += 1
        if self._report > (0 if err else 1):
            self._results.append(OpResult(seq, OP_NAMES[op], flags, err))

    def _apply(self) -> FlushResult:
        """Apply the pending operations in order (lock held)."""
        c = self._c
        applied0 = c["applied"]
        seq = self._seq - self._npending
        for op, flags, krows, vrows in self._pending:
            if op == OP_UPDATE and not flags & (NOEXIST | EXIST):
                assert vrows is not None  # updates carry values
                self._update_batch(seq, flags, krows, vrows)
            else:  # the batch command takes no NOEXIST/EXIST: one call each
                for i in range(len(krows)):
                    v = vrows[i:i + 1] if vrows is not None else None
                    self._record(seq + i, op, flags, self._one(op, flags, krows[i], v))
            seq += len(krows)
        n = self._npending
        self._pending.clear()
        self._npending = 0
        if n:
            c["batches"] += 1
            c["drains"] += 1
        applied = c["applied"] - applied0
        return FlushResult(n, applied, n - applied, 0)

    def _one(self, op: int, flags: int, key: np.ndarray, value: np.ndarray | None) -> int:
        """Apply one operation with one bpf() call; return 0 or the errno."""
        try:
            if op == OP_DELETE:
                return 0 if _sys.map_delete(self._fd, key.tobytes()) else _errno.ENOENT
            assert value is not None
            _sys.map_update(self._fd, key.tobytes(), self._values(value).tobytes(), flags)
            return 0
        except BPFError as e:
            return e.errno or _errno.EINVAL

    def _update_batch(self, seq: int, flags: int, krows: np.ndarray, vrows: np.ndarray) -> None:
        """Updates through BPF_MAP_UPDATE_BATCH: it stops at the first failing
        element and reports how many it applied; count that one and go on."""
        n = len(krows)
        keys = bytearray(krows.tobytes())
        vals = bytearray(self._values(vrows).tobytes())
        ks, vs = krows.shape[1], len(vals) // n
        i = 0
        while i < n:
            try:
                done = _sys.map_update_batch(self._fd, _tail(keys, i * ks), _tail(vals, i * vs),
                                             n - i, flags)
                err = 0
            except BPFError as e:
                done, err = getattr(e, "applied", 0), e.errno or _errno.EINVAL
                if done >= n - i:  # refused as a whole (count untouched): one by one
                    for j in range(i, n):
                        self._record(seq + j, OP_UPDATE, flags,
                                     self._one(OP_UPDATE, flags, krows[j], vrows[j:j + 1]))
                    return
            for j in range(done):
                self._record(seq + i + j, OP_UPDATE, flags, 0)
            i += done
            if err:
                self._record(seq + i, OP_UPDATE, flags, err)
                i += 1

    def flush(self) -> FlushResult:
        with self._lock:
            return self._apply()

    def wait_applied(self, timeout: float | None) -> bool:
        self.flush()
        return True

    def start_timer(self, period: float) -> None:
        self._immediate = True

    def stop_timer(self) -> None:
        pass

    def counters(self) -> dict[str, int]:
        with self._lock:
            c = dict(self._c)
            c["queued"] = self._seq
            c["pending"] = self._npending
            c["results_lost"] = 0
        return c

    def pending(self) -> int:
        return self._npending

    def results(self, limit: int | None, timeout: float | None) -> list[OpResult]:
        out: list[OpResult] = []
        while self._results and (limit is None or len(out) < limit):
            out.append(self._results.popleft())
        return out

    def close(self) -> None:
        with self._lock:
            if self._open:
                if self._pending:
                    self._apply()
                self._open = False


def _tail(buf: bytearray, start: int) -> bytearray:
    """The part of ``buf`` from ``start`` as a bytearray (a copy only if start > 0)."""
    return buf if start == 0 else bytearray(memoryview(buf)[start:])


# --------------------------------------------------------------------------------------
# The public class
# --------------------------------------------------------------------------------------

_PRODUCERS: weakref.WeakValueDictionary[int, MapBridge] = weakref.WeakValueDictionary()
_PRODUCERS_LOCK = threading.Lock()


class MapBridge:
    """Queue updates and deletes of one BPF map, applied in the kernel through a
    user ring buffer (see the module documentation for the three modes).

    ``MapBridge(obj, "name")`` uses the bridge that ``BPFRING_BRIDGE(name, ...)``
    declared in the loaded object ``obj``; ``MapBridge(map_or_fd)`` builds and
    loads a bridge for an existing map (flush and timer modes; needs clang).

    Parameters:

    ``mode``
        ``"flush"`` (apply on :meth:`flush`), ``"piggyback"`` (the user's own
        program drains) or ``"timer"`` (a bpf_timer drains every ``period`` s).
    ``on_full``
        what to do when the ring has no room: ``"wait"`` (flush mode: flush;
        other modes: wait up to ``full_timeout`` seconds, None = forever, for
        the drain, then raise :class:`RingFull`) or ``"raise"`` (raise
        :class:`RingFull` at once; a batch is then queued whole or not at all).
        Operations are never dropped silently.
    ``budget``
        most operations one timer tick or piggyback drain applies (0: all), so a
        large backlog does not stall the program that drains.
    ``report``
        ``"failures"`` or ``"all"`` sends per-operation results through the
        bridge's results ring (``BPFRING_BRIDGE_RESULTS``), read with
        :meth:`results`; None sends nothing.
    ``fallback``
        when the user ring bridge is not available, use system calls (True,
        logged once) or raise (False).
    ``ring_size``, ``results_size``
        ring sizes of the bridge built for a map given by fd (in an object,
        ``BPFRING_BRIDGE(map, size)`` sets them).

    Thread-safe: any number of threads may queue operations concurrently (a
    lock serialises writers).  One MapBridge per bridge: the ring has a single
    producer, so a second one for the same ring in this process is refused.
    """

    def __init__(self, source: BPFObject | Map | int | str, name: str | None = None, *,
                 mode: Mode = "flush", on_full: Literal["wait", "raise"] = "wait",
                 full_timeout: float | None = None, period: float = 1e-3,
                 budget: int = 16384, report: Literal["failures", "all"] | None = None,
                 fallback: bool = True, ring_size: int = 1 << 20,
                 results_size: int = 1 << 16) -> None:
        if mode not in ("flush", "piggyback", "timer"):
            raise ValueError(f"mode must be 'flush', 'piggyback' or 'timer', not {mode!r}")
        if on_full not in ("wait", "raise"):
            raise ValueError(f"on_full must be 'wait' or 'raise', not {on_full!r}")
        if report not in _REPORT:
            raise ValueError(f"report must be None, 'failures' or 'all', not {report!r}")
        if not 0 <= budget < 1 << 32:
            raise ValueError("budget must be in 0..2**32-1")
        self.mode: Mode = mode
        self.on_full = on_full
        self.full_timeout = full_timeout
        self.period = period
        self._owned_obj: BPFObject | None = None
        self._impl: _RingQueue | _SyscallQueue | None = None
        self._registered: int | None = None
        self._map_fd: OwnedFD | None = None
        self._own_map = False
        try:
            self._setup(source, name, mode, budget, report, fallback, ring_size,
                        results_size)
        except BaseException:
            self._release()
            raise

    def _setup(self, source: BPFObject | Map | int | str, name: str | None, mode: Mode, budget: int,
               report: str | None, fallback: bool, ring_size: int, results_size: int) -> None:
        obj, parts, reason = self._locate(source, name, mode, ring_size, results_size)
        info = self.info
        self.name = name or info.name
        if info.type not in SUPPORTED_MAP_TYPES:
            raise MapTypeError(
                f"map {self.name!r} is a {info.type_name} map; bridges support hash, "
                "lru_hash, array and their per-CPU variants")
        # The map's own element codecs: keys and values are checked and encoded
        # exactly as Map does it.
        self._key: ElementCodec = self.map.key_codec
        self._value: ElementCodec = self.map.value_codec
        ks, vs = info.key_size, info.value_size
        if ks > 0xFFFF:
            raise MapTypeError(f"map {self.name!r}: keys of {ks} bytes are too large for a bridge")
        if ks + vs > _DATA_MAX:
            raise MapTypeError(f"map {self.name!r}: key + value of {ks + vs} bytes exceed "
                               f"the bridge's {_DATA_MAX}-byte entry limit")
        if parts is None:
            if not fallback:
                raise BPFError(f"no user ring bridge for map {self.name!r}: {reason}",
                               hint="declare BPFRING_BRIDGE(map, size) in the BPF program")
            _log_fallback(repr(self.name), reason or "no bridge")
            assert self._map_fd is not None
            self._impl = _SyscallQueue(self, self._map_fd.fileno(), info, mode, reason or "",
                                       report)
        else:
            impl = _RingQueue(self, parts, mode, budget, report)
            self._impl = impl
            if impl.ring.max_sample_size < _OP_HDR.size + ks + vs:
                raise RecordTooLarge(f"one operation on {self.name!r} does not fit its ring")
            with _PRODUCERS_LOCK:
                other = _PRODUCERS.get(impl.ring.map_id)
                if other is not None and not other.closed:
                    raise BPFError(f"bridge {self.name!r} already has a MapBridge in this "
                                   "process (a user ring has a single producer)",
                                   hint="reuse the existing MapBridge or close it first")
                _PRODUCERS[impl.ring.map_id] = self
                self._registered = impl.ring.map_id
            if mode == "timer":
                impl.start_timer(self.period)
        if obj is not None:
            obj.adopt(self)  # closed (before its maps and programs) when the object closes

    def _locate(self, source: BPFObject | Map | int | str, name: str | None, mode: Mode,
                ring_size: int, results_size: int
                ) -> tuple[BPFObject | None, _Parts | None, str | None]:
        """Find the target map (sets ``map``, ``info`` and a private ``_map_fd``) and the
        bridge's parts: (object, parts, None), or (object, None, reason) when
        the bridge is not available and the fallback applies."""
        if isinstance(source, BPFObject):
            if name is None:
                raise TypeError("MapBridge(obj, name): name the map to bridge")
            if source.closed:
                raise ValueError("BPF object is closed")
            if not source.loaded:
                raise BPFError("load the object before making a bridge")
            try:
                target = source.maps[name]
            except KeyError:
                raise KeyError(f"no map named {name!r} in object {source.name!r}") from None
            self.map = target
            self._map_fd = OwnedFD.dup(target.fd, f"map {name!r}")
            self.info = _sys.map_info(self._map_fd.fileno())
            if not kernel_supports_bridge():
                return source, None, "this kernel has no user ring buffers (Linux 6.1+)"
            m, p = source.maps, source.programs
            need = [f"{name}__ops", f"{name}__bst"]
            progs = [f"{name}__flush", f"{name}__timer_on", f"{name}__timer_off"]
            if any(n not in m for n in need) or any(n not in p for n in progs):
                return source, None, (
                    f"object {source.name!r} declares no BPFRING_BRIDGE({name}, ...) "
                    "(or was built with BPFRING_BRIDGE_DISABLE)")
            return source, self._parts(source, name), None
        # A map outside any object of ours: compile a bridge that reuses its fd.
        if isinstance(source, str):
            self._map_fd = MapRef.parse(source).open_owned()
        elif isinstance(source, int) and not isinstance(source, bool):
            self._map_fd = OwnedFD.dup(source, "map")
        elif isinstance(source, Map):
            self._map_fd = OwnedFD.dup(source.fd, "map")
        else:
            raise TypeError(f"cannot make a bridge from {type(source).__name__}")
        map_fd = self._map_fd.fileno()
        self.info = _sys.map_info(map_fd)
        self.map = Map(map_fd, name=name or "")  # its own duplicate, closed with us
        self._own_map = True
        if mode == "piggyback":
            raise ValueError("piggyback mode needs your own program calling "
                             "bpfring_bridge_drain(); use MapBridge(obj, name)")
        if not kernel_supports_bridge():
            return None, None, "this kernel has no user ring buffers (Linux 6.1+)"
        if self.info.type not in SUPPORTED_MAP_TYPES:
            return None, None, "unsupported map type"  # _setup raises MapTypeError
        try:
            self._owned_obj = _generic_bridge(map_fd, self.info, ring_size, results_size)
        except BPFError as e:
            return None, None, "cannot build or load a bridge: " + e.message.splitlines()[0]
        return None, self._parts(self._owned_obj, "target"), None

    @staticmethod
    def _parts(obj: BPFObject, name: str) -> _Parts:
        """The fds of the bridge declared by ``BPFRING_BRIDGE(name, ...)`` in ``obj``."""
        m, p = obj.maps, obj.programs
        if m[f"{name}__bst"].value_size != _STATE_SIZE:
            raise BPFError(f"bridge {name!r}: its state has {m[f'{name}__bst'].value_size} "
                           f"bytes, this bpfring expects {_STATE_SIZE}",
                           hint="rebuild the BPF program with this bpfring's bridge.bpf.h")
        res, lost = m.get(f"{name}__res"), m.get(f"{name}__res__lost")
        return {
            "ops": m[f"{name}__ops"].fd, "state": m[f"{name}__bst"].fd,
            "results": res.fd if res is not None else None,
            "results_lost": lost.fd if lost is not None else None,
            "progs": {"flush": p[f"{name}__flush"].fd, "timer_on": p[f"{name}__timer_on"].fd,
                      "timer_off": p[f"{name}__timer_off"].fd},
        }

    # properties --------------------------------------------------------------------

    @property
    def fallback(self) -> str | None:
        """Why operations go through system calls instead of the ring (None: they don't)."""
        return self._q.fallback

    @property
    def key_size(self) -> int:
        return self.info.key_size

    @property
    def value_size(self) -> int:
        return self.info.value_size

    @property
    def key_type(self) -> Codec | None:
        """The BTF codec of the keys (:class:`bpfring.btf.Codec`), None: bytes only."""
        return self._key.btf_type

    @property
    def value_type(self) -> Codec | None:
        """The BTF codec of the values (one CPU's slot for per-CPU maps), or None."""
        return self._value.btf_type

    @property
    def closed(self) -> bool:
        return self._impl is None

    @property
    def _q(self) -> _RingQueue | _SyscallQueue:
        impl = self._impl
        if impl is None:
            raise ValueError("MapBridge is closed")
        return impl

    # queueing ----------------------------------------------------------------------

    @staticmethod
    def _check_flags(flags: int) -> int:
        if flags & ~(NOEXIST | EXIST | F_LOCK) or flags & 3 == 3:
            raise ValueError(f"flags must be ANY, NOEXIST or EXIST (| F_LOCK), not {flags}")
        return flags

    def update(self, key: Any, value: Any, flags: int = ANY) -> int:
        """Queue ``map[key] = value`` (``flags``: ANY, NOEXIST, EXIST); return the
        operation's index (its ``seq`` in :meth:`results`).

        For per-CPU maps, ``value`` is written into every CPU's slot.
        """
        self._check_flags(flags)
        k, v = self._key.encode(key), self._value.encode(value)
        return self._q.put(OP_UPDATE, flags, k, v)

    def delete(self, key: Any) -> int:
        """Queue the deletion of ``key``; return the operation's index."""
        self._check_delete()
        k = self._key.encode(key)
        return self._q.put(OP_DELETE, 0, k, b"")

    def _check_delete(self) -> None:
        if self.info.type in _ARRAY_TYPES:
            raise MapTypeError(f"map {self.name!r} is an {self.info.type_name} map: its "
                               "elements cannot be deleted (update them instead)")

    def update_many(self, keys: Any, values: Any, flags: int = ANY) -> range:
        """Queue ``map[keys[i]] = values[i]`` for every i; return their indexes.

        ``keys`` and ``values`` are numpy arrays (one row per operation, numbers
        cast to the map's BTF types), bytes of n * size, or sequences of values
        :meth:`update` accepts.  On the ring they become samples of up to 32
        KiB of keys and values each (one sample for a small batch), published
        with a single producer-position store (more only when the ring fills
        up meanwhile and the call waits for room).
        """
        self._check_flags(flags)
        krows, vrows = self._key.rows(keys), self._value.rows(values)
        if len(krows) != len(vrows):
            raise ValueError(f"{len(krows)} keys but {len(vrows)} values")
        return self._put_rows(OP_UPDATE, flags, krows, vrows)

    def delete_many(self, keys: Any) -> range:
        """Queue the deletion of every key in ``keys``; return their indexes."""
        self._check_delete()
        return self._put_rows(OP_DELETE, 0, self._key.rows(keys), None)

    def _put_rows(self, op: int, flags: int, krows: np.ndarray, vrows: np.ndarray | None
                  ) -> range:
        n = len(krows)
        if n == 0:
            return range(0)
        first = self._q.put_rows(op, flags, krows, vrows)
        return range(first, first + n)

    # applying ----------------------------------------------------------------------

    def flush(self) -> FlushResult:
        """Apply everything queued now, in any mode, with one
        ``BPF_PROG_TEST_RUN`` (more only past 128 Ki queued samples, or while
        a timer or piggyback drain holds the ring); return what this call did."""
        return self._q.flush()

    def wait_applied(self, timeout: float | None = None) -> bool:
        """Wait until the kernel has consumed (applied or refused) every
        operation queued before this call; False on timeout.

        Flush mode flushes; the other modes wait for their drain (asking it
        for a wakeup while we wait).
        """
        return self._q.wait_applied(timeout)

    def start_timer(self, period: float | None = None) -> None:
        """Arm (or re-arm with a new period) the periodic drain."""
        self._q.start_timer(self.period if period is None else period)
        self.period = self.period if period is None else period

    def stop_timer(self) -> None:
        """Disarm the periodic drain (queued operations then wait for a flush)."""
        self._q.stop_timer()

    # reading -----------------------------------------------------------------------

    @property
    def stats(self) -> BridgeStats:
        """Counters, kept by the drain in an mmapped map: no system call, except
        one for ``results_lost`` when the bridge has a results ring."""
        c = self._q.counters()
        errors = {_errno.errorcode[e]: c[f] for e, f in _ERR_FIELDS.items() if c[f]}
        if c["err_other"]:
            errors["other"] = c["err_other"]
        failed = sum(c[f] for f in _ERR_FIELDS.values()) + c["err_other"]
        return BridgeStats(
            queued=c["queued"], consumed=c["seq"], applied=c["applied"],
            updated=c["updated"], deleted=c["deleted"], failed=failed, errors=errors,
            bad=c["bad"], batches=c["batches"], drains=c["drains"],
            drain_busy=c["drain_busy"], drain_errors=c["drain_errors"],
            last_error=c["last_error"], timer_ticks=c["timer_ticks"], pending=c["pending"],
            results_lost=c["results_lost"])

    @property
    def pending(self) -> int:
        """Operations queued by this MapBridge that the kernel has not consumed
        yet (read from the mmapped counters: no system call, cheap to poll)."""
        return self._q.pending()

    def results(self, limit: int | None = None, timeout: float | None = 0) -> list[OpResult]:
        """Per-operation results reported so far (``report=`` chooses which),
        waiting up to ``timeout`` seconds for the first one."""
        return self._q.results(limit, timeout)

    def lookup(self, key: Any) -> Any:
        """Read ``map[key]`` with one bpf() call, decoded like the values passed
        in (a list with one entry per CPU for per-CPU maps); None when absent."""
        self._q  # noqa: B018 - raises when closed
        return self.map.lookup(key)

    # lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop the timer this bridge armed, unmap the rings (idempotent).

        Operations still queued stay in the ring (the fallback applies its
        pending ones first); close the object to drop them.
        """
        if self._impl is not None or self._map_fd is not None:
            self._release()

    def _release(self) -> None:
        impl, self._impl = self._impl, None
        with _PRODUCERS_LOCK:
            if self._registered is not None and _PRODUCERS.get(self._registered) is self:
                del _PRODUCERS[self._registered]
        try:
            if impl is not None:
                impl.close()
        finally:
            if self._owned_obj is not None:
                self._owned_obj.close()
                self._owned_obj = None
            if self._map_fd is not None:
                self._map_fd.close()
                self._map_fd = None
            if self._own_map:
                self.map.close()
                self._own_map = False

    def __enter__(self) -> MapBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_map_fd", None) is not None:
            try:
                self.close()
            except Exception:  # interpreter shutdown
                pass

    def __repr__(self) -> str:
        impl = self._impl
        if impl is None:
            state = "closed"
        elif isinstance(impl, _SyscallQueue):
            state = "fallback=syscalls"
        else:
            state = f"ring={impl.ring.size}"
        return f"<MapBridge {getattr(self, 'name', '?')} mode={self.mode} {state}>"

