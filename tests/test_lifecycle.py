"""Ring, object and link lifecycles against the real kernel (issue 11, items
5, 6, 7, 10 and 14): re-entrant use from a callback never hangs, close()
wakes every blocked waiter, dropped objects release their fds and kernel
maps with a ResourceWarning, a writer notices BPF_RB_NO_WAKEUP drains, a
dropped reserved Sample does not block the ring.

Every blocking scenario runs in a daemon thread joined with a bound, so a
regression fails the test instead of hanging the suite."""

from __future__ import annotations

import gc
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from blocking import until_blocked
from conftest import BPF_DIR, produce_ctx

import bpfring
from bpfring import BPFError, Poller, RingBuffer, RingFull, UserRingBuffer, _sys

try:
    from bpfring import _speedups as sp
except ImportError:
    sp = None



def _bounded(fn: Callable[[], Any], limit: float = 10.0) -> Any:
    """Run ``fn`` in a daemon thread; fail (instead of hanging) if it does
    not finish within ``limit`` seconds; return its result or re-raise."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the test thread
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"{fn} still blocked after {limit} s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------------------------
# Item 5: re-entrant use from a ring's own callback
# ---------------------------------------------------------------------------------

REENTRANT: dict[str, Callable[[RingBuffer], Any]] = {
    "read": lambda rb: rb.read(),
    "read_wait": lambda rb: rb.read(timeout=None),
    "consume": lambda rb: rb.consume(lambda v: None),
    "poll": lambda rb: rb.poll(lambda v: None, timeout=None),
    "read_array": lambda rb: rb.read_array(np.dtype("V256")),
    "iterate": lambda rb: next(iter(rb)),
}


@pytest.mark.parametrize("what", sorted(REENTRANT))
def test_reading_a_ring_from_its_own_callback_raises(echo, mode, what):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(3))
    errors: list[BaseException] = []

    def cb(view: memoryview) -> None:
        try:
            REENTRANT[what](rb)
        except BaseException as e:
            errors.append(e)

    assert _bounded(lambda: rb.consume(cb)) == 3
    assert len(errors) == 3
    assert all(isinstance(e, BPFError) and "own callbacks" in str(e) for e in errors)
    assert rb.read() == []  # all three were consumed exactly once


def test_close_from_a_callback_takes_effect_when_it_returns(echo, mode):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(5))
    seen: list[bytes] = []

    def cb(view: memoryview) -> None:
        seen.append(bytes(view))
        rb.close()
        assert not rb.closed  # still usable until the callback returns

    assert _bounded(lambda: rb.poll(cb, timeout=None)) == 1
    assert len(seen) == 1 and rb.closed
    with pytest.raises(ValueError):
        rb.read()


def test_close_from_a_callback_in_a_view_array_block(echo, mode):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(2))

    def body() -> int:
        with rb.view_array(np.dtype("V256")) as arr:
            with pytest.raises(BPFError):
                rb.read()
            rb.close()  # inside the block: honoured when the block ends
            return len(arr)

    assert _bounded(body) == 2
    assert rb.closed


def test_user_ring_from_a_poller_callback_does_not_hang(echo, mode):
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    calls: list[int] = []

    def on_room(ring: UserRingBuffer) -> None:
        calls.append(ring.free)
        ring.write(b"from the callback", timeout=None)
        ring.reserve(8, timeout=1).discard()
        assert ring.write_many([b"a", b"b"], timeout=1) == 2
        assert not ring.wait_drained(timeout=0.05)  # nobody drains: a bounded False

    # The drain runs only once the first callback is done (so its "nobody
    # drains" holds, however late threads run), and wakes the poller.
    first_done = threading.Event()
    drainer = threading.Thread(target=lambda: (first_done.wait(30),
                                               echo.programs["echo"].run()), daemon=True)
    drainer.start()

    def on_room_then_drain(ring: UserRingBuffer) -> None:
        on_room(ring)
        first_done.set()

    with Poller() as p:
        p.add(urb, on_room_then_drain)
        p.add(rb, lambda v: None)
        assert _bounded(lambda: p.poll(timeout=None), limit=30) >= 1  # the echoes
    drainer.join(30)
    assert calls


def test_ring_closed_by_its_poller_callback_is_skipped(echo, mode):
    rb = echo.ring_buffer("out_ring")
    echo.programs["produce"].run(ctx=produce_ctx(4))
    seen: list[bytes] = []

    def cb(view: memoryview) -> None:
        seen.append(bytes(view))
        rb.close()

    with Poller() as p:
        p.add(rb, cb)
        assert _bounded(lambda: p.poll(timeout=1)) == 1
        assert _bounded(lambda: p.poll(timeout=0)) == 0
    assert len(seen) == 1 and rb.closed


# ---------------------------------------------------------------------------------
# Item 6: close() from another thread wakes every blocked waiter
# ---------------------------------------------------------------------------------

def _full(urb: UserRingBuffer) -> None:
    while True:
        try:
            urb.write(bytes(1016))
        except RingFull:
            return


KERNEL_WAITS: dict[str, Callable[[RingBuffer], Any]] = {
    "poll": lambda rb: rb.poll(lambda v: None, timeout=None),
    "read": lambda rb: rb.read(timeout=None),
    "read_array": lambda rb: rb.read_array(np.dtype("V256"), timeout=None),
    "iterate": lambda rb: next(iter(rb)),
}

USER_WAITS: dict[str, Callable[[UserRingBuffer], Any]] = {
    "write": lambda urb: urb.write(b"x" * 100, timeout=None),
    "reserve": lambda urb: urb.reserve(100, timeout=None),
    "write_many": lambda urb: urb.write_many([b"x" * 100], timeout=None),
    "write_array": lambda urb: urb.write_array(np.zeros(4, "V100"), timeout=None),
    "wait_drained": lambda urb: urb.wait_drained(timeout=None),
}


def _closed_while_waiting(ring: Any, wait: Callable[[Any], Any]) -> BaseException | None:
    got: list[BaseException] = []

    def waiter() -> None:
        try:
            wait(ring)
        except BaseException as e:
            got.append(e)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    until_blocked(t)
    ring.close()
    # Every wait here has no timeout: only the close can end it.
    t.join(30)
    assert not t.is_alive(), "close() did not wake the waiter"
    return got[0] if got else None


@pytest.mark.parametrize("what", sorted(KERNEL_WAITS))
def test_close_wakes_kernel_ring_waiters(echo, mode, what):
    rb = echo.ring_buffer("out_ring")
    err = _closed_while_waiting(rb, KERNEL_WAITS[what])
    assert isinstance(err, ValueError) and "closed" in str(err)


@pytest.mark.parametrize("what", sorted(USER_WAITS))
def test_close_wakes_user_ring_waiters(echo, mode, what):
    urb = echo.user_ring_buffer("in_ring")
    _full(urb)
    err = _closed_while_waiting(urb, USER_WAITS[what])
    assert isinstance(err, ValueError) and "closed" in str(err)


def test_close_wakes_several_waiters_at_once(echo, mode):
    rb = echo.ring_buffer("out_ring")
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            rb.poll(lambda v: None, timeout=None)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        until_blocked(t)
    rb.close()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 3 and all(isinstance(e, ValueError) for e in errors)


# ---------------------------------------------------------------------------------
# Item 10: BPF_RB_NO_WAKEUP drains
# ---------------------------------------------------------------------------------

def test_writer_notices_a_no_wakeup_drain(echo, mode):
    """A writer (and a wait_drained) blocked without a timeout on a full ring
    returns after a BPF_RB_NO_WAKEUP drain, which sends no notification: only
    its bounded re-checks of the consumer position can see the room."""
    urb = echo.user_ring_buffer("in_ring")
    _full(urb)
    for wait in (lambda: urb.write(b"z" * 100, timeout=None),
                 lambda: urb.wait_drained(timeout=None)):
        out: list[Any] = []
        t = threading.Thread(target=lambda w=wait, o=out: o.append(w()), daemon=True)
        t.start()
        until_blocked(t)  # really waiting when the silent drain runs
        assert echo.programs["echo_nowakeup"].run() > 0
        t.join(30)
        assert not t.is_alive(), "the waiter missed a BPF_RB_NO_WAKEUP drain"
        assert out in ([None], [True])


# ---------------------------------------------------------------------------------
# Item 14: a reserved Sample dropped without submit/discard
# ---------------------------------------------------------------------------------

def test_dropped_sample_is_discarded_with_a_warning(echo, mode):
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        urb.reserve(64)  # dropped at once
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) and "Sample" in str(x.message)
               for x in w)
    urb.write(b"after")
    # Without the discard, the BUSY sample would hold back "after" forever.
    assert echo.programs["echo"].run() == 1
    assert rb.read() == [b"after"]


# ---------------------------------------------------------------------------------
# Item 7: dropped rings, objects, links and perf buffers release everything
# ---------------------------------------------------------------------------------

def _resource_warnings(fn: Callable[[], None]) -> list[str]:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fn()
        gc.collect()
    return [str(x.message) for x in w if issubclass(x.category, ResourceWarning)]


@pytest.mark.parametrize("cls", [RingBuffer, UserRingBuffer])
def test_dropped_rings_release_fds_and_maps(kernel, mode, cls):
    gc.collect()
    fds = _fds()
    ids: list[int] = []

    def drop() -> None:
        for _ in range(200):
            ids.append(cls.create(1 << 20).map_id)  # the ring is dropped at once

    msgs = _resource_warnings(drop)
    assert len(msgs) >= 200
    assert _fds() == fds
    # The kernel frees map ids asynchronously (RCU): allow it a moment.  Only
    # our own ids are checked: other processes create maps meanwhile.
    deadline = time.monotonic() + 10
    while set(ids) & set(_sys.map_ids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(ids) & set(_sys.map_ids())


def test_dropped_object_releases_its_maps_with_a_warning(echo_path):
    gc.collect()
    fds = _fds()
    ids: list[int] = []

    def drop() -> None:
        obj = bpfring.load(echo_path)
        obj.ring_buffer("out_ring")
        ids.extend(m.id for m in obj.maps.values() if m.id)

    msgs = _resource_warnings(drop)
    assert any("BPF object" in m for m in msgs)
    assert _fds() == fds
    deadline = time.monotonic() + 5
    while set(ids) & set(_sys.map_ids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(ids) & set(_sys.map_ids())


def test_dropped_link_detaches_with_a_warning(kernel):
    from bpfring._attach import _lib
    from bpfring._netattach import libbpf_link

    path = bpfring.build(BPF_DIR / "attach_trace.bpf.c")
    with bpfring.load(path, globals={"target_tgid": os.getpid()}) as obj:
        prog = obj.programs["on_tracepoint"]
        ptr = _lib().bpf_program__attach_tracepoint(prog._ptr, b"syscalls",
                                                    b"sys_enter_getppid")
        assert ptr

        def drop() -> None:
            libbpf_link(ptr, prog.name)  # not kept by anyone

        os.getppid()
        assert obj.globals.tp_hits == 1
        msgs = _resource_warnings(drop)
        assert any("link" in m for m in msgs)
        for _ in range(5):
            os.getppid()
        assert obj.globals.tp_hits == 1  # detached


def test_dropped_perf_buffer_releases_its_fds(kernel):
    path = bpfring.build(BPF_DIR / "perf_prog.bpf.c")
    with bpfring.load(path) as obj:
        gc.collect()
        fds = _fds()
        name = next(n for n, m in obj.maps.items() if m.type == 4)

        def drop() -> None:
            bpfring.PerfBuffer(obj.maps[name].fd)

        msgs = _resource_warnings(drop)
        assert msgs
        assert _fds() == fds
