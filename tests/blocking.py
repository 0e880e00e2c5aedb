"""Waiting, in tests, until another thread really blocks in a wait.

A test that wants to show that something wakes a blocked waiter must act
only once the waiter is blocked; a fixed sleep cannot promise that on a
loaded machine.  Every bpfring wait is an epoll wait, and Linux shows the
system call a thread is blocked in (``/proc/self/task/TID/syscall``)."""

from __future__ import annotations

import threading
import time

# epoll_wait, epoll_pwait, epoll_pwait2 on x86-64
EPOLL_WAITS = {"232", "281", "441"}


def until_blocked(t: threading.Thread, limit: float = 30.0) -> None:
    """Return once thread ``t`` sits in an epoll wait; fail (AssertionError)
    if it returns first, or after ``limit`` seconds (a hang guard)."""
    end = time.monotonic() + limit
    while t.native_id is None:  # not started running yet
        assert time.monotonic() < end, f"thread {t.name} never started"
        time.sleep(0.001)
    path = f"/proc/self/task/{t.native_id}/syscall"
    while time.monotonic() < end:
        assert t.is_alive(), "the wait returned before the test acted"
        try:
            with open(path) as f:
                if f.read().split(" ", 1)[0] in EPOLL_WAITS:
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    raise AssertionError(f"thread {t.name} never blocked in epoll_wait")
