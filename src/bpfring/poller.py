"""Serving many rings from one thread through one epoll fd."""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any

from ._wait import Waiter
from .perfbuf import PerfBuffer
from .ringbuf import RingBuffer, UserRingBuffer

_Ring = RingBuffer | UserRingBuffer | PerfBuffer

__all__ = ["Poller"]


class Poller:
    """Waits on many rings at once and dispatches to per-ring callbacks.

    * a :class:`RingBuffer` or :class:`~bpfring.PerfBuffer` is registered
      with ``callback(view)``, called per record as in :meth:`RingBuffer.poll`;
    * a :class:`UserRingBuffer` is registered with ``callback(ring)``, called
      when the kernel has drained it (room may be free again): the place to
      write more.  It may also be called once right after registration, so
      check :attr:`UserRingBuffer.free` rather than assume.

    :meth:`poll` serves every ready ring, at most ``batch`` records from each
    per round, rotating the starting ring between calls, so one busy ring
    cannot starve the others.  :meth:`fileno` is the epoll fd, to nest the
    poller in another event loop.  A callback may close its ring: the poller
    then skips it (remove it to forget it).
    """

    def __init__(self, batch: int = 256) -> None:
        if batch <= 0:
            raise ValueError("batch must be positive")
        self.batch = batch
        self._ep = select.epoll()
        self._rings: dict[int, tuple[_Ring, Callable[[Any], Any]]] = {}
        self._order: list[int] = []
        self._start = 0

    def add(self, ring: _Ring, callback: Callable[[Any], Any]) -> None:
        fd = ring.fileno()
        if fd in self._rings:
            raise ValueError("ring already registered")
        if isinstance(ring, RingBuffer | PerfBuffer):
            # A PerfBuffer's fd is its own epoll set over the per-CPU events.
            self._ep.register(fd, select.EPOLLIN)
        elif isinstance(ring, UserRingBuffer):
            # Edge-triggered: "not completely full" is almost always true, so
            # only a drain wakeup is news (see bpfring._wait).
            self._ep.register(fd, select.EPOLLOUT | select.EPOLLET)
        else:
            raise TypeError(f"cannot poll {type(ring).__name__}")
        self._rings[fd] = (ring, callback)
        self._order.append(fd)

    def remove(self, ring: _Ring) -> None:
        fd = ring.fileno()
        self._ep.unregister(fd)
        del self._rings[fd]
        self._order.remove(fd)

    def fileno(self) -> int:
        return self._ep.fileno()

    def __len__(self) -> int:
        return len(self._rings)

    def _serve_kernel_rings(self) -> tuple[int, bool]:
        """One fair pass over the kernel rings; returns (records, any busy)."""
        order = self._order
        if not order:
            return 0, False
        n = len(order)
        start = self._start % n
        self._start += 1
        total, busy = 0, False
        more = True
        while more:
            more = False
            for i in range(n):
                ring, cb = self._rings[order[(start + i) % n]]
                # A ring closed (e.g. by its own callback) is skipped: closing
                # its fd already took it out of our epoll set.
                if isinstance(ring, RingBuffer | PerfBuffer) and not ring.closed:
                    got, b = ring.consume_status(cb, self.batch)
                    total += got
                    busy |= b
                    more |= got == self.batch
        return total, busy

    def poll(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: forever, 0: no wait) for any
        ring, serve all that are ready, and return the records delivered."""
        waiter = Waiter(self._ep, timeout)
        while True:
            got, busy = self._serve_kernel_rings()
            if got:
                return got
            # A busy kernel ring stays readable: the waiter backs off instead
            # of letting epoll return at once.
            events = waiter.wait(busy)
            if events is None:
                return 0
            for fd, ev in events:
                entry = self._rings.get(fd)
                if entry is not None and ev & select.EPOLLOUT:
                    entry[1](entry[0])

    def close(self) -> None:
        self._ep.close()
        self._rings.clear()
        self._order.clear()

    def __enter__(self) -> Poller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
