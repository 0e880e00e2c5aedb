"""What docs/threads.md promises about sharing objects between threads,
tested against the real kernel in both ring backends: two threads consuming
one ring get every record exactly once; threads writing one user ring lose
and duplicate nothing and keep each writer's order; close() from another
thread while threads use a ring ends them with ValueError (never a crash or
a hang); map elements updated and looked up from threads are never torn.

Every thread is joined with a bound, so a regression fails instead of
hanging the suite."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import produce_ctx

from bpfring import Map, PerfBuffer, UserRingBuffer, _sys
from bpfring._fd import OwnedFD

LIMIT = 60.0  # seconds any thread of a test may take (the machine is shared)


def _run(targets: list[Callable[[], Any]]) -> list[BaseException]:
    """Run the callables in threads; return what they raised (bounded)."""
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:
                errors.append(e)
        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LIMIT)
        assert not t.is_alive(), "a thread is still running"
    return errors


def _seq(view: Any) -> int:
    return int(struct.unpack_from("<I", view)[0])


def _produce_paced(echo, total: int, seen: Callable[[], int], batch: int = 100) -> None:
    """Run the kernel producer for ``total`` records in batches, never more
    than ~2 batches ahead of the consumers (out_ring holds ~248 records)."""
    prog = echo.programs["produce"]
    for base in range(0, total, batch):
        deadline = time.monotonic() + LIMIT
        while base - seen() > batch:
            assert time.monotonic() < deadline, "consumers stopped"
            time.sleep(0.0005)
        prog.run(ctx=produce_ctx(min(batch, total - base), seq_base=base))


@pytest.mark.parametrize("how", ["poll", "consume", "read"])
def test_two_consumers_get_every_record_once(echo, mode, how):
    total = 3000
    rb = echo.ring_buffer("out_ring")
    got: list[list[int]] = [[], []]
    done = threading.Event()

    def consumer(mine: list[int]) -> Callable[[], None]:
        def run() -> None:
            while not done.is_set() or rb.available:
                if how == "poll":
                    rb.poll(lambda v: mine.append(_seq(v)), timeout=0.01)
                elif how == "consume":
                    rb.consume(lambda v: mine.append(_seq(v)), limit=7)
                else:
                    mine.extend(_seq(r) for r in rb.read(limit=5, timeout=0.01))
        return run

    def producer() -> None:
        try:
            _produce_paced(echo, total, lambda: len(got[0]) + len(got[1]))
        finally:
            done.set()

    assert _run([producer, consumer(got[0]), consumer(got[1])]) == []
    assert sorted(got[0] + got[1]) == list(range(total))
    for mine in got:  # each consumer sees the records it got in ring order
        assert mine == sorted(mine)
    assert rb.lost == 0


def test_two_iterators_share_the_records(echo, mode):
    total = 2000
    rb = echo.ring_buffer("out_ring")
    got: list[list[int]] = [[], []]
    ended: list[str] = []

    def iterate(mine: list[int]) -> Callable[[], None]:
        def run() -> None:
            try:
                for rec in rb:
                    mine.append(_seq(rec))
            except ValueError:  # closed from the main thread, below
                ended.append("closed")
        return run

    def producer() -> None:
        _produce_paced(echo, total, lambda: len(got[0]) + len(got[1]))
        deadline = time.monotonic() + LIMIT
        while len(got[0]) + len(got[1]) < total and time.monotonic() < deadline:
            time.sleep(0.001)
        rb.close()  # wakes both iterators, blocked waiting for more

    assert _run([producer, iterate(got[0]), iterate(got[1])]) == []
    assert ended == ["closed", "closed"]
    assert sorted(got[0] + got[1]) == list(range(total))


def test_close_while_threads_consume(echo, mode):
    """close() from another thread while consumers are busy in callbacks:
    they finish their call or get ValueError; no crash (the pages are not
    unmapped under a walk), no hang."""
    rb = echo.ring_buffer("out_ring")
    stop = threading.Event()
    outcomes: list[str] = []

    def consumer() -> None:
        try:
            while True:
                rb.poll(lambda v: bytes(v), timeout=0.01)
        except ValueError as e:
            outcomes.append(str(e))

    def producer() -> None:
        while not stop.is_set():
            echo.programs["produce"].run(ctx=produce_ctx(50))

    threads = [threading.Thread(target=f, daemon=True) for f in (consumer, consumer, producer)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    rb.close()
    stop.set()
    for t in threads:
        t.join(LIMIT)
        assert not t.is_alive()
    assert len(outcomes) == 2 and all("closed" in o for o in outcomes)


def test_concurrent_user_ring_writers(echo, mode):
    """Four threads write one user ring (write, write_many, reserve/submit);
    a fifth drains it through the kernel (the echo program copies each sample
    into out_ring) and collects: nothing lost or duplicated, every writer's
    samples in its own order."""
    per_writer, writers = 400, 4
    urb = echo.user_ring_buffer("in_ring")
    rb = echo.ring_buffer("out_ring")
    got: list[tuple[int, int]] = []
    finished = threading.Event()

    def writer(w: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(per_writer):
                rec = struct.pack("<II", w, i)
                if w == 0:
                    urb.write(rec, timeout=LIMIT)
                elif w == 1:
                    assert urb.write_many([rec], timeout=LIMIT) == 1
                else:
                    with urb.reserve(8, timeout=LIMIT) as s:
                        s.write(rec)
        return run

    def drainer() -> None:
        def take(v: memoryview) -> None:
            got.append(struct.unpack_from("<II", v))

        while not finished.is_set() or urb.pending_bytes():
            echo.programs["echo"].run()
            rb.consume(take)
            time.sleep(0.0005)
        echo.programs["echo"].run()
        rb.consume(take)

    def writers_then_flag() -> None:
        try:
            assert _run([writer(w) for w in range(writers)]) == []
        finally:
            finished.set()

    assert _run([writers_then_flag, drainer]) == []
    assert len(got) == per_writer * writers
    for w in range(writers):
        assert [i for ww, i in got if ww == w] == list(range(per_writer))
    assert echo.globals.echo_failed == 0


def test_close_wakes_writers_waiting_for_room(kernel, mode):
    urb = UserRingBuffer.create(4096)
    while True:  # fill it (nobody drains a standalone ring)
        try:
            urb.write(bytes(504))
        except Exception:
            break
    outcomes: list[str] = []

    def blocked() -> None:
        try:
            urb.write(bytes(504), timeout=None)
        except ValueError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=blocked, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    urb.close()
    for t in threads:
        t.join(LIMIT)
        assert not t.is_alive()
    assert len(outcomes) == 3 and all("closed" in o for o in outcomes)


def test_perf_buffer_two_consumers(kernel):
    from conftest import BPF_DIR
    from test_perfbuf import emit

    import bpfring

    with bpfring.load(bpfring.build(BPF_DIR / "perf_prog.bpf.c")) as perf, \
            PerfBuffer(perf.maps["events"].fd, cpus=[0]) as pb:
        total = 600
        got: list[list[int]] = [[], []]
        done = threading.Event()

        def consumer(mine: list[int]) -> Callable[[], None]:
            def run() -> None:
                while not done.is_set() or pb.available():
                    pb.poll(lambda v: mine.append(struct.unpack_from("<Q", v)[0]),
                            timeout=0.01, limit=3)
            return run

        def producer() -> None:
            try:
                for base in range(0, total, 50):
                    while base - len(got[0]) - len(got[1]) > 100:
                        time.sleep(0.0005)
                    emit(perf, 50, 0, seq=base, cpu=0)
            finally:
                done.set()

        assert _run([producer, consumer(got[0]), consumer(got[1])]) == []
        assert sorted(got[0] + got[1]) == list(range(total))
        assert pb.lost == 0


def test_map_elements_from_threads(kernel):
    """A hash map updated and looked up by four threads: each update
    replaces the element whole (the kernel swaps in a new element), so a
    lookup never sees half of one value and half of another."""
    m = Map(OwnedFD(_sys.map_create(1, 4, 64, 1024), "test hash map"))
    keys = [struct.pack("<I", k) for k in range(16)]
    torn: list[bytes] = []

    def worker(t: int) -> Callable[[], None]:
        def run() -> None:
            value = bytes([t + 1]) * 64
            for i in range(1500):
                key = keys[i % len(keys)]
                m[key] = value
                got = m.lookup(key)
                if got is not None and len(set(got)) != 1:
                    torn.append(got)
                own = struct.pack("<I", 100 + t * 1000 + i % 50)
                m.update(own, value)
        return run

    try:
        assert _run([worker(t) for t in range(4)]) == []
        assert torn == []
        items = dict(m.items())
        assert all(len(set(v)) == 1 for v in items.values())
        assert {k for k in items if struct.unpack("<I", k)[0] >= 100} == {
            struct.pack("<I", 100 + t * 1000 + i) for t in range(4) for i in range(50)}
    finally:
        m.close()



def test_program_runs_from_threads(echo, mode):
    """Four threads run the kernel producer at once (BPF_PROG_TEST_RUN from
    each): every record arrives once."""
    rb = echo.ring_buffer("out_ring")
    got: list[int] = []
    stop = threading.Event()

    def runner(t: int) -> Callable[[], None]:
        def run() -> None:
            for k in range(10):
                while rb.available > 32 * 1024:  # keep room (the consumer is below)
                    time.sleep(0.0005)
                echo.programs["produce"].run(ctx=produce_ctx(20, seq_base=t * 1000 + k * 20))
        return run

    def consumer() -> None:
        while not stop.is_set() or rb.available:
            rb.poll(lambda v: got.append(_seq(v)), timeout=0.01)

    def runners_then_stop() -> None:
        try:
            assert _run([runner(t) for t in range(4)]) == []
        finally:
            stop.set()

    assert _run([runners_then_stop, consumer]) == []
    assert sorted(got) == sorted(t * 1000 + i for t in range(4) for i in range(200))
    assert rb.lost == 0


def test_link_closed_by_two_threads_at_once(kernel):
    import os

    from conftest import BPF_DIR

    import bpfring

    with bpfring.load(bpfring.build(BPF_DIR / "attach_trace.bpf.c"),
                      globals={"target_tgid": os.getpid()}) as obj:
        prog = obj.programs["on_tracepoint"]
        for _ in range(20):
            link = prog.attach_tracepoint("syscalls", "sys_enter_getppid")
            barrier = threading.Barrier(2)

            def close(link: Any = link, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                link.close()

            assert _run([close, close]) == []
            assert link.closed
        hits = obj.globals.tp_hits
        os.getppid()
        assert obj.globals.tp_hits == hits  # detached
