"""Issue 11, item 5 (Poller side): removing a ring that was closed meanwhile
just works; a closed ring is never confused with a later ring that got its
fd number; a ring closed while registered stops being watched (its
level-triggered readiness does not make poll() spin)."""

from __future__ import annotations

import time

import pytest
from conftest import produce_ctx

from bpfring import Poller, RingBuffer, UserRingBuffer


@pytest.mark.parametrize("kind", ["kernel", "user"])
def test_remove_a_closed_ring(kernel, kind):
    cls = RingBuffer if kind == "kernel" else UserRingBuffer
    with Poller() as p:
        ring = cls.create(4096)
        p.add(ring, lambda _: None)
        ring.close()
        p.remove(ring)  # no error
        assert len(p) == 0
        with pytest.raises(ValueError, match="not registered"):
            p.remove(ring)
        other = cls.create(4096)
        with pytest.raises(ValueError, match="not registered"):
            p.remove(other)
        other.close()


def test_closed_ring_is_not_confused_with_a_new_one_on_its_fd_number(echo):
    seen: dict[str, int] = {"old": 0, "new": 0}
    with Poller() as p:
        old = echo.ring_buffer("small_ring")
        p.add(old, lambda v: seen.__setitem__("old", seen["old"] + 1))
        number = old.fileno()
        old.close()
        new = echo.ring_buffer("out_ring")
        assert new.fileno() == number  # the kernel reuses the lowest free number
        p.add(new, lambda v: seen.__setitem__("new", seen["new"] + 1))
        echo.programs["produce"].run(ctx=produce_ctx(3))
        assert p.poll(timeout=1) == 3
        assert seen == {"old": 0, "new": 3}
        p.remove(old)
        p.remove(new)
        assert len(p) == 0


def test_a_ring_closed_while_registered_does_not_make_poll_spin(echo):
    # small_ring holds records (readable, level-triggered) and its map stays
    # alive through the object: a watch of it would report ready forever.
    rb = echo.ring_buffer("small_ring")
    echo.programs["produce"].run(ctx=produce_ctx(2, small=True))
    with Poller() as p:
        p.add(rb, lambda v: None)
        rb.close()
        t0, cpu0 = time.monotonic(), time.thread_time()
        assert p.poll(timeout=0.3) == 0
        assert time.monotonic() - t0 >= 0.25
        assert time.thread_time() - cpu0 < 0.1  # slept, did not spin
        p.remove(rb)


def test_remove_from_a_callback(echo):
    a = echo.ring_buffer("out_ring")
    b = echo.ring_buffer("small_ring")
    echo.programs["produce"].run(ctx=produce_ctx(2))
    echo.programs["produce"].run(ctx=produce_ctx(2, small=True))
    removed: list[RingBuffer] = []

    def on_a(v: memoryview) -> None:
        if not removed:
            p.remove(b)
            removed.append(b)

    with Poller() as p:
        p.add(a, on_a)
        p.add(b, lambda v: None)
        assert p.poll(timeout=0) == 2  # a's two records; b is gone before its turn
        assert len(p) == 1 and b.available


def test_ring_closed_by_another_thread_while_the_poller_serves(echo):
    """Another thread closes a ring while the poller serves it: the poller
    goes on with the others (no ValueError out of poll)."""
    import threading

    a = echo.ring_buffer("out_ring")
    b = echo.ring_buffer("small_ring")
    served = {"a": 0, "b": 0}
    with Poller(batch=1) as p:
        p.add(a, lambda v: served.__setitem__("a", served["a"] + 1))
        p.add(b, lambda v: served.__setitem__("b", served["b"] + 1))
        stop = threading.Event()

        def produce() -> None:
            while not stop.is_set():
                echo.programs["produce"].run(ctx=produce_ctx(20))
                echo.programs["produce"].run(ctx=produce_ctx(5, small=True))
                time.sleep(0.001)

        t = threading.Thread(target=produce, daemon=True)
        t.start()
        closer = threading.Timer(0.2, a.close)
        closer.start()
        end = time.monotonic() + 0.6
        try:
            while time.monotonic() < end:
                p.poll(timeout=0.01)
        finally:
            stop.set()
            t.join(30)
            closer.join(30)
        assert a.closed and served["a"] > 0 and served["b"] > 0
        before = served["b"]
        p.poll(timeout=0.05)
        assert served["b"] >= before
        p.remove(a)
        assert len(p) == 1
