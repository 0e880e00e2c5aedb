"""bpfring._wait: the one deadline + epoll wait every blocking path uses."""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time

import pytest

from bpfring._wait import BACKOFF_MAX, BACKOFF_MIN, Waiter, readable


@pytest.fixture
def pipe_epoll():
    """An epoll watching the read end of a pipe (level-triggered EPOLLIN)."""
    r, w = os.pipe()
    ep = select.epoll()
    ep.register(r, select.EPOLLIN)
    yield ep, r, w
    ep.close()
    os.close(r)
    os.close(w)


def test_timeouts(pipe_epoll):
    ep, _, _ = pipe_epoll
    with pytest.raises(ValueError, match="timeout"):
        Waiter(ep, -0.1)
    assert Waiter(ep, 0).wait() is None  # 0: never waits
    assert Waiter(ep, 0).expired
    forever = Waiter(ep, None)
    assert forever.left() is None and not forever.expired
    t0 = time.monotonic()
    w2 = Waiter(ep, 0.15)
    assert w2.wait() == []  # nothing happened: the deadline ended the wait
    assert time.monotonic() - t0 >= 0.14
    assert w2.wait() is None and w2.expired and w2.left() == 0.0


def test_wakes_on_the_event(pipe_epoll):
    ep, r, w = pipe_epoll
    threading.Timer(0.05, os.write, (w, b"x")).start()
    t0 = time.monotonic()
    events = Waiter(ep, 60).wait()
    assert time.monotonic() - t0 < 30  # woken by the event, not the 60 s deadline
    assert events == [(r, select.EPOLLIN)]


def test_max_wait_slices_a_long_wait(pipe_epoll):
    ep, _, _ = pipe_epoll
    waiter = Waiter(ep, None, max_wait=0.02)
    t0 = time.monotonic()
    assert waiter.wait() == []
    assert 0.015 <= time.monotonic() - t0 < 5  # one slice, not forever (loaded machine)
    short = Waiter(ep, 0.01, max_wait=30)  # the deadline wins over a longer slice
    t0 = time.monotonic()
    assert short.wait() == []
    assert time.monotonic() - t0 < 15


def test_busy_backs_off_instead_of_spinning(pipe_epoll):
    """A readable fd while busy: epoll would return at once; the waiter
    sleeps a doubling backoff instead, and still reports pending events."""
    ep, r, w = pipe_epoll
    os.write(w, b"x")  # readable from now on (level-triggered)
    waiter = Waiter(ep, None)
    cpu0 = time.thread_time()
    t0 = time.monotonic()
    naps = 0
    while time.monotonic() - t0 < 0.1:
        assert waiter.wait(busy=True) == [(r, select.EPOLLIN)]
        naps += 1
    # 20 us doubling to 1 ms: about 100 naps in 0.1 s, not a spin.
    assert naps < 400
    assert time.thread_time() - cpu0 < 0.05
    assert waiter._backoff == BACKOFF_MAX
    assert waiter.wait() == [(r, select.EPOLLIN)]  # not busy: backoff starts over
    assert waiter._backoff == BACKOFF_MIN
    capped = Waiter(ep, 0.01)
    capped._backoff = 10.0
    t0 = time.monotonic()
    capped.wait(busy=True)  # never sleeps past the deadline (not the 10 s backoff)
    assert time.monotonic() - t0 < 5


def test_readable_awaits_the_fd(pipe_epoll):
    _, r, w = pipe_epoll

    async def main() -> float:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, os.write, w, b"x")
        t0 = time.monotonic()
        await readable(r)
        # Cancelled while waiting: the reader is removed, nothing is left behind.
        os.read(r, 1)
        task = asyncio.ensure_future(readable(r))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - t0

    assert asyncio.run(main()) < 2
