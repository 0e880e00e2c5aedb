"""The one way bpfring blocks: a deadline and waits on an epoll instance.

Every blocking path (ring poll/read/iteration, reserve/write with a timeout,
``wait_drained``, :class:`~bpfring.Poller`, the map bridge's waits for room)
is a loop "try; if nothing came, :meth:`Waiter.wait`; try again", so the
rules live here once:

* ``timeout`` None waits forever, 0 never waits, a positive value is a
  deadline on the monotonic clock; a negative one is refused.
* A user ring's fd is registered edge-triggered (``EPOLLOUT | EPOLLET``): the
  kernel reports EPOLLOUT whenever the ring is not 100% full, so a
  level-triggered wait for room would spin; with EPOLLET each wait blocks
  until the next drain wakeup.  A kernel ring's fd is level-triggered
  (``EPOLLIN``): readable while records wait.
* While a record is BUSY (a producer on another CPU holds a reservation
  open) a kernel ring's fd stays readable, so epoll would return at once:
  the caller says ``busy`` and the wait becomes a short exponential backoff.
* Some waits poll in slices (``max_wait``) because a wakeup may never come
  (a drain with ``BPF_RB_NO_WAKEUP``, a drain that read a wakeup flag
  too early), of ``max_wait`` each; or, with ``recheck``, on a bounded
  back-off: the first slice is short (``RECHECK_MIN``) and each empty one
  doubles up to ``recheck``, so a missed wakeup costs at most ``recheck`` of
  latency and a long wait only a few dozen wakeups per second.
* Closing wakes every waiter: each ring has a :class:`Gate`, an eventfd in
  its epoll set that ``close()`` writes and nobody reads, so it stays
  readable; a wait that sees it (or finds the epoll already closed) raises
  ``ValueError``, as I/O on a closed file does.  ``close()`` then waits for
  the waiters to leave before it closes the epoll: closing an fd removes it
  from an epoll set, ready or not, and a thread inside ``epoll_wait`` on a
  closed epoll is never woken, so closing at once could strand it.

:func:`readable` is the asyncio counterpart: await an fd on the running loop.
"""

from __future__ import annotations

import os
import select
import threading
import time
from typing import TYPE_CHECKING

from ._fd import OwnedFD

if TYPE_CHECKING:
    import asyncio

__all__ = ["Gate", "Waiter", "readable"]

#: First and longest sleep while a record is BUSY.
BACKOFF_MIN = 20e-6
BACKOFF_MAX = 1e-3
#: First slice of a ``max_wait`` wait (doubles while nothing happens).
RECHECK_MIN = 1e-3


class Gate:
    """The wakeup eventfd of one ring and the count of threads waiting on it."""

    __slots__ = ("_count_lock", "_fd", "waiting")

    def __init__(self, epoll: select.epoll) -> None:
        self._fd = OwnedFD(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK), "wakeup eventfd")
        try:
            epoll.register(self._fd.fileno(), select.EPOLLIN)
        except BaseException:
            self._fd.close()
            raise
        self._count_lock = threading.Lock()
        self.waiting = 0

    def fileno(self) -> int:
        return self._fd.fileno()

    def enter(self) -> None:
        with self._count_lock:
            self.waiting += 1

    def leave(self) -> None:
        with self._count_lock:
            self.waiting -= 1

    def wake_all(self, grace: float = 2.0) -> None:
        """Make the eventfd readable for good, then wait (up to ``grace``
        seconds) until no thread is inside a wait: they all return at once."""
        try:
            os.eventfd_write(self._fd.fileno(), 1)
        except (OSError, ValueError):  # already closed
            return
        end = time.monotonic() + grace
        while self.waiting and time.monotonic() < end:
            time.sleep(100e-6)

    def close(self) -> None:
        self._fd.close()


class Waiter:
    """The deadline of one blocking call and its waits on ``epoll``.

    Create it when the call starts (or when it first has to wait, if the
    timeout should count from there) and call :meth:`wait` each time the
    call's attempt came back empty.
    """

    __slots__ = ("_backoff", "_deadline", "_epoll", "_gate", "_recheck", "_slice", "_what")

    def __init__(self, epoll: select.epoll, timeout: float | None, *,
                 max_wait: float | None = None, recheck: float | None = None,
                 gate: Gate | None = None, what: str = "ring") -> None:
        """``max_wait`` caps every single wait; ``recheck`` instead caps a
        back-off from ``RECHECK_MIN`` (see the module docstring).  ``gate``
        is the ring's :class:`Gate` (its eventfd is in ``epoll``; None: no
        wakeup on close); ``what`` names the object in the "closed" error."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 or None")
        self._epoll = epoll
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._recheck = recheck
        self._slice = min(RECHECK_MIN, recheck) if recheck is not None else max_wait
        self._backoff = BACKOFF_MIN
        self._gate = gate
        self._what = what

    def _closed(self) -> ValueError:
        return ValueError(f"{self._what} was closed while waiting")

    def _poll(self, timeout: float) -> list[tuple[int, int]]:
        gate = self._gate
        if gate is None:
            return self._epoll.poll(timeout)
        gate.enter()  # close() waits for us to leave before closing the epoll
        try:
            events = self._epoll.poll(timeout)
            wakeup = gate.fileno()
        except ValueError:  # the epoll (or the gate) was closed by close()
            raise self._closed() from None
        finally:
            gate.leave()
        for fd, _ in events:
            if fd == wakeup:
                raise self._closed()
        return events

    def left(self) -> float | None:
        """Seconds until the deadline (None: no deadline), never negative."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.left() == 0.0

    def wait(self, busy: bool = False) -> list[tuple[int, int]] | None:
        """Block until the next event on the epoll, the deadline, or the end
        of ``max_wait``; with ``busy``, sleep the next backoff step instead (then
        collect pending events without blocking).

        Returns the epoll events (possibly empty: ``max_wait``, a backoff or the
        deadline ended the wait), or None without waiting once the deadline
        has passed.  Raises ``ValueError`` when the ring was closed (its
        wakeup fd fired or the epoll is gone).
        """
        left = self.left()
        if left == 0.0:
            return None
        if busy:
            nap = self._backoff
            self._backoff = min(nap * 2, BACKOFF_MAX)
            time.sleep(nap if left is None else min(nap, left))
            return self._poll(0)
        self._backoff = BACKOFF_MIN
        piece = self._slice
        if piece is not None:
            left = piece if left is None else min(left, piece)
        events = self._poll(-1 if left is None else left)
        recheck = self._recheck
        if recheck is not None and piece is not None:
            # An empty slice doubles the next one (up to ``recheck``); news
            # (a wakeup) starts the back-off over.
            self._slice = min(RECHECK_MIN, recheck) if events else min(piece * 2, recheck)
        return events


async def readable(fd: int) -> None:
    """Wait on the running event loop until ``fd`` is readable; no thread,
    nothing consumed, so a cancellation at this await loses nothing."""
    import asyncio  # only asyncio users pay for importing it

    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        loop.remove_reader(fd)
