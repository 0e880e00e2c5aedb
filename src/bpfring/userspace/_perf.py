"""``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` in user space: a ring per CPU.

In the kernel each slot of a perf event array holds a perf event whose
mmapped ring a reader (:class:`bpfring.PerfBuffer`) consumes;
``bpf_perf_event_output`` appends a sample to the ring of the slot it names
(``BPF_F_CURRENT_CPU``: this CPU's), ``-ENOENT`` when no reader opened that
slot, ``-E2BIG`` past ``max_entries``, and a full ring drops the sample and
counts it in the next ``PERF_RECORD_LOST``.  Here each slot is a bounded
FIFO of samples with the same capacity rule (``page_count`` pages of data,
each sample taking its perf record size: 8-byte header, u32 size, data,
rounded up to 8 bytes) and a lost counter; :class:`UserPerfBuffer`, made by
``obj.perf_buffer(name)``, reads them with the API of
:class:`bpfring.PerfBuffer`.
"""

from __future__ import annotations

import errno as _errno
import mmap
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ._maps import UserMap

__all__ = ["PerfEventArrayMap", "UserPerfBuffer"]

CURRENT_CPU = 0xFFFF_FFFF
INDEX_MASK = 0xFFFF_FFFF
CTXLEN_MASK = 0xF_FFFF << 32


def _record_size(n: int) -> int:
    return (8 + 4 + n + 7) & ~7  # struct perf_event_header, u32 size, data, aligned


class _Slot:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.samples: deque[bytes] = deque()
        self.lost = 0


class PerfEventArrayMap(UserMap):
    """A perf event array; slots get rings when a :class:`UserPerfBuffer` opens."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        if self.max_entries <= 0:
            self.max_entries = self._ncpu  # libbpf: 0 means one slot per possible CPU
        self._slots: dict[int, _Slot] = {}
        self._cond = threading.Condition()
        self.reader: UserPerfBuffer | None = None

    def output(self, index: int, data: bytes) -> int:
        """bpf_perf_event_output into slot ``index``: 0, -E2BIG or -ENOENT; a
        full ring counts the sample as lost and returns -ENOSPC, as
        perf_event_output does."""
        if index >= self.max_entries:
            return -_errno.E2BIG
        slot = self._slots.get(index)
        if slot is None:
            return -_errno.ENOENT
        size = _record_size(len(data))
        with self._cond:
            if slot.used + size > slot.capacity:
                slot.lost += 1
                return -_errno.ENOSPC
            slot.samples.append(bytes(data))
            slot.used += size
            self._cond.notify_all()
        return 0

    def _open(self, cpus: list[int], capacity: int) -> None:
        with self._cond:
            self._slots = {c: _Slot(capacity) for c in cpus}

    def _close_reader(self) -> None:
        with self._cond:
            self._slots = {}
            self.reader = None

    def _raw_keys(self) -> Iterator[bytes]:
        return iter(())


class UserPerfBuffer:
    """Reads a user-space perf event array as :class:`bpfring.PerfBuffer` reads
    a kernel one: ``read``/``read_with_cpu``/``consume``/``poll``/iteration,
    ``lost``/``lost_per_cpu``, ``cpus``, ``close``/``with``.  One reader per
    map (a second one replaces the first, as in the kernel)."""

    def __init__(self, m: PerfEventArrayMap, *, page_count: int = 16, record: Any = None,
                 cpus: list[int] | None = None,
                 lost_callback: Callable[[int, int], object] | None = None) -> None:
        if page_count < 1 or page_count & (page_count - 1):
            raise ValueError(f"page_count must be a power of two >= 1, not {page_count}")
        self._closed = False
        self._map = m
        self.record = record
        self._lost_cb = lost_callback
        self._cpus = list(range(m.max_entries)) if cpus is None else list(cpus)
        bad = [c for c in self._cpus if not 0 <= c < m.max_entries]
        if bad:
            raise ValueError(f"cpus {bad} are not slots of perf event array {m.name!r}")
        if m.reader is not None:
            m.reader._closed = True
        m._open(self._cpus, page_count * mmap.PAGESIZE)
        m.reader = self
        self._reported: dict[int, int] = dict.fromkeys(self._cpus, 0)
        self._lost_total: dict[int, int] = dict.fromkeys(self._cpus, 0)

    @property
    def cpus(self) -> list[int]:
        return list(self._cpus)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise ValueError("perf buffer is closed")

    def _losses(self) -> None:
        for c, slot in list(self._map._slots.items()):
            new = slot.lost - self._reported.get(c, 0)
            if new > 0:
                self._reported[c] = slot.lost
                self._lost_total[c] = self._lost_total.get(c, 0) + new
                if self._lost_cb is not None:
                    self._lost_cb(c, new)

    @property
    def lost(self) -> int:
        """Samples dropped because a CPU's ring was full (reported so far)."""
        self._losses()
        return sum(self._lost_total.values())

    @property
    def lost_per_cpu(self) -> dict[int, int]:
        self._losses()
        return {c: n for c, n in self._lost_total.items() if n}

    @property
    def available(self) -> int:
        """Samples waiting, over all CPUs."""
        return sum(len(s.samples) for s in self._map._slots.values())

    def _take(self, limit: int | None) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        with self._map._cond:
            for c in self._cpus:
                slot = self._map._slots.get(c)
                while slot is not None and slot.samples and (limit is None or len(out) < limit):
                    data = slot.samples.popleft()
                    slot.used -= _record_size(len(data))
                    out.append((c, data))
        self._losses()
        return out

    def _wait(self, timeout: float | None) -> None:
        if timeout == 0 or self.available:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._map._cond:
            while not any(s.samples for s in self._map._slots.values()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                self._map._cond.wait(left)

    def _decode(self, data: bytes) -> Any:
        return self.record.decode(data) if self.record is not None else data

    def consume(self, callback: Callable[[memoryview], Any], limit: int | None = None) -> int:
        """Hand every waiting sample (a memoryview) to ``callback``; return the count."""
        self._check()
        got = self._take(limit)
        for _, data in got:
            callback(memoryview(data))
        return len(got)

    def poll(self, callback: Callable[[memoryview], Any], timeout: float | None = None,
             limit: int | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: forever) for samples, then consume."""
        self._check()
        self._wait(timeout)
        return self.consume(callback, limit)

    def read(self, limit: int | None = None, timeout: float | None = 0) -> list[Any]:
        """The waiting samples (bytes, or decoded with ``record``)."""
        self._check()
        self._wait(timeout)
        return [self._decode(d) for _, d in self._take(limit)]

    def read_with_cpu(self, limit: int | None = None, timeout: float | None = 0
                      ) -> list[tuple[int, Any]]:
        """(cpu, sample) pairs."""
        self._check()
        self._wait(timeout)
        return [(c, self._decode(d)) for c, d in self._take(limit)]

    def __iter__(self) -> Iterator[Any]:
        while not self._closed:
            yield from self.read(timeout=None)

    def fileno(self) -> int:
        raise OSError(_errno.ENOTSUP, "a user-space perf buffer has no fd to poll; use "
                      "poll()/read(timeout=...)")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._map.reader is self:
                self._map._close_reader()

    def __enter__(self) -> UserPerfBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

