"""Serving many rings from one thread through one epoll fd."""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any

from ._fd import OwnedFD
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

    The poller watches a private duplicate of each ring's fd, so a ring
    closed while registered (by its callback or by other code) is never
    confused with a later ring that reuses its fd number: the poller stops
    watching it at the next :meth:`poll`, and :meth:`remove` of a closed
    ring just forgets it.  One thread at a time uses a poller (see
    docs/threads.md).
    """

    def __init__(self, batch: int = 256) -> None:
        if batch <= 0:
            raise ValueError("batch must be positive")
        self.batch = batch
        self._ep = select.epoll()
        # Registered rings by id(ring) (we hold the ring, so the id is not
        # reused): (ring, callback, our duplicate of its fd).  _watched maps
        # the fd number of each duplicate still open (what epoll reports) to
        # the ring's key; _order is the ring keys in registration order.
        self._rings: dict[int, tuple[_Ring, Callable[[Any], Any], OwnedFD]] = {}
        self._watched: dict[int, int] = {}
        self._order: list[int] = []
        self._start = 0

    def add(self, ring: _Ring, callback: Callable[[Any], Any]) -> None:
        """Serve ``ring`` with ``callback`` (``ValueError`` if it is already
        registered or closed, ``TypeError`` for what is not a ring)."""
        if id(ring) in self._rings:
            raise ValueError("ring already registered")
        if isinstance(ring, RingBuffer | PerfBuffer):
            # A PerfBuffer's fd is its own epoll set over the per-CPU events.
            events = select.EPOLLIN
        elif isinstance(ring, UserRingBuffer):
            # Edge-triggered: "not completely full" is almost always true, so
            # only a drain wakeup is news (see bpfring._wait).
            events = select.EPOLLOUT | select.EPOLLET
        else:
            raise TypeError(f"cannot poll {type(ring).__name__}")
        # Our own duplicate: epoll keys on (file, fd number), and the ring's
        # number may be closed and reused by an unrelated ring meanwhile.
        own = OwnedFD.dup(ring.fileno(), f"poller's watch of a {type(ring).__name__}")
        try:
            self._ep.register(own.fileno(), events)
        except BaseException:
            own.close()
            raise
        key = id(ring)
        self._rings[key] = (ring, callback, own)
        self._watched[own.fileno()] = key
        self._order.append(key)

    def remove(self, ring: _Ring) -> None:
        """Stop serving ``ring``.  Removing a ring that was closed meanwhile
        just works; ``ValueError`` if it is not registered (never added, or
        removed already)."""
        entry = self._rings.get(id(ring))
        if entry is None or entry[0] is not ring:
            raise ValueError(f"{type(ring).__name__} is not registered with this poller")
        self._unwatch(id(ring))
        del self._rings[id(ring)]
        self._order.remove(id(ring))

    def _unwatch(self, key: int) -> None:
        """Stop watching a ring (idempotent): removed, or found closed.  A
        closed ring stays registered (for :meth:`remove` and ``len``) but is
        no longer watched: its level-triggered readiness would make every
        wait return at once, and our duplicate would keep its map alive."""
        own = self._rings[key][2]
        if not own.closed:
            fd = own.fileno()
            del self._watched[fd]
            self._ep.unregister(fd)
            own.close()

    def fileno(self) -> int:
        return self._ep.fileno()

    def __len__(self) -> int:
        return len(self._rings)

    def _serve_kernel_rings(self) -> tuple[int, bool]:
        """One fair pass over the kernel rings; returns (records, any busy)."""
        # A snapshot: a callback may remove rings from the poller.
        order = self._order[:]
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
                key = order[(start + i) % n]
                entry = self._rings.get(key)
                if entry is None:
                    continue
                ring, cb, _ = entry
                if ring.closed:
                    # Closed (e.g. by its own callback): skipped from now on.
                    self._unwatch(key)
                elif isinstance(ring, RingBuffer | PerfBuffer):
                    try:
                        got, b = ring.consume_status(cb, self.batch)
                    except ValueError:
                        if not ring.closed:
                            raise
                        self._unwatch(key)  # closed by another thread just now
                        continue
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
                key = self._watched.get(fd)
                if key is None or not ev & select.EPOLLOUT:
                    continue
                ring, cb, _ = self._rings[key]
                if ring.closed:
                    self._unwatch(key)
                else:
                    cb(ring)

    def close(self) -> None:
        """Forget every ring (the rings stay open) and close the epoll fd."""
        for _, _, own in self._rings.values():
            own.close()
        self._ep.close()
        self._rings.clear()
        self._watched.clear()
        self._order.clear()

    def __enter__(self) -> Poller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
