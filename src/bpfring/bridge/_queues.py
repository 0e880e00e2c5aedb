"""The two ways a :class:`~bpfring.MapBridge` applies operations: through
its user ring (drained by the kernel), or, where the kernel cannot, with
bpf() system calls (the fallback).  Both keep the same counters."""

from __future__ import annotations

import errno as _errno
import logging
import mmap
import os
import select
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, TypedDict, cast

import numpy as np

from .. import _sys
from .._elements import percpu_stride
from .._ringcore import distance, record_span
from .._wait import Waiter
from ..errors import BPFError, RecordTooLarge, RingFull
from ..ringbuf import RingBuffer, UserRingBuffer
from ._wire import (
    CTL_BUDGET,
    CTL_REPORT,
    CTL_WANT_WAKEUP,
    DATA_MAX,
    ERR_FIELDS,
    EXIST,
    FALLBACK_QUEUE_MAX,
    FLUSH_CTX,
    NOEXIST,
    OP_DELETE,
    OP_HDR,
    OP_NAMES,
    OP_UPDATE,
    REC_HDR_SIZE,
    REPORT,
    RESULT,
    STATE_FIELDS,
    WAIT_SLICE,
    FlushResult,
    Mode,
    OpResult,
    byte_rows,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from . import MapBridge

log = logging.getLogger("bpfring")


class Parts(TypedDict):
    """The fds of one bridge's maps and programs (libbpf's, owned by the object)."""

    ops: int  #: the operations' user ring
    state: int  #: the counters and control words (an mmapable array)
    results: int | None  #: the per-operation results ring, if declared
    results_lost: int | None  #: its lost counter
    progs: dict[str, int]  #: "flush", "timer_on", "timer_off"


class RingQueue:
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

    def __init__(self, bridge: MapBridge, parts: Parts, mode: Mode,
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

    def _setup(self, parts: Parts, budget: int, report: str | None) -> None:
        ring = self.ring
        info = self._bridge.info
        ks, vs = info.key_size, info.value_size
        self._ks, self._vs = ks, vs
        self._size = ring.size
        #: entry size, and most entries per sample by op: up to 32 KiB of entries,
        #: and at most a quarter of the ring so that a partly full ring takes some
        self._esize = {OP_UPDATE: ks + vs, OP_DELETE: ks}
        cap = min(DATA_MAX, ring.size // 4 - REC_HDR_SIZE)
        self._per_sample = {op: max(1, cap // e) for op, e in self._esize.items()}
        self._hdr1 = {(op, fl): OP_HDR.pack(op, fl, ks, vs if op == OP_UPDATE else 0, 1, 0)
                      for op in (OP_UPDATE, OP_DELETE) for fl in range(8)}
        # Control words and counters: one mmapped array element, no syscall to read.
        self._state_mm = mmap.mmap(parts["state"], mmap.PAGESIZE, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE)
        self._st = memoryview(self._state_mm).cast("Q")
        self._ctl = memoryview(self._state_mm).cast("I")
        self._ctl[CTL_REPORT] = REPORT[report]
        self._ctl[CTL_BUDGET] = budget
        self._waiters = 0
        self._wait_lock = threading.Lock()
        self._epoll = select.epoll()
        self._epoll.register(ring.fileno(), select.EPOLLOUT | select.EPOLLET)
        self._prog_fds = parts["progs"]
        self._timer_armed = False
        # BPF_PROG_TEST_RUN of the flush program, prepared once: a flush is then
        # one syscall with no Python-side allocation.
        self._flush_run = _sys.PreparedRun(parts["progs"]["flush"], ctx_size=FLUSH_CTX.size,
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
                      max_wait=WAIT_SLICE)

    def _wait_drain(self, waiter: Waiter) -> bool:
        """Sleep until a drain wakes us (we ask for wakeups while waiting), or
        for at most a few milliseconds in case a drain read the flag too early;
        False, without waiting, once the waiter's deadline has passed."""
        if waiter.expired:
            return False
        with self._wait_lock:
            self._waiters += 1
            self._ctl[CTL_WANT_WAKEUP] = 1
        try:
            waiter.wait()
            return True
        finally:
            with self._wait_lock:
                self._waiters -= 1
                if not self._waiters:
                    self._ctl[CTL_WANT_WAKEUP] = 0

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
            hdr = OP_HDR.pack(op, flags, ks, vs, m, 0)
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
        return FLUSH_CTX.unpack(self._flush_ctx)

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
        vals = self._st[:len(STATE_FIELDS)].tolist()
        c = dict(zip(STATE_FIELDS, vals, strict=True))
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
            seq, err, op, flags, _ = RESULT.unpack_from(v)
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


class SyscallQueue:
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
        self._report = REPORT[report]
        self._lock = threading.Lock()
        self._pending: list[tuple[int, int, np.ndarray, np.ndarray | None]] = []
        self._npending = 0
        self._seq = 0
        self._c = dict.fromkeys(STATE_FIELDS, 0)
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
        krows = byte_rows(krows)
        vrows = byte_rows(vrows) if vrows is not None else None
        with self._lock:
            first = self._seq
            self._seq += len(krows)
            self._pending.append((op, flags, krows, vrows))
            self._npending += len(krows)
            if self._immediate or self._npending >= FALLBACK_QUEUE_MAX:
                self._apply()
        return first

    def _record(self, seq: int, op: int, flags: int, err: int) -> None:
        c = self._c
        c["seq"] += 1
        if err:
            c[ERR_FIELDS.get(err, "err_other")] += 1
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


