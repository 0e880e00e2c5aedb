"""Stress and failure-injection tests against the real kernel.

BPF side: ``tests/bpf/stress_prog.bpf.c``.  ``produce`` emits 16-byte records
``{u32 id, u32 cpu, u64 seq}`` numbered per producer id by a counter kept in
the ``next_seq`` array map; it stops at the first failed reservation (counted
in ``events__lost``) and returns how many it emitted, so callers resume and
nothing is ever lost.  ``drain`` drains a user ring into the ``out`` kernel
ring, at most ``max`` samples per run, and returns the drain's result.

Child processes are forked (multiprocessing "fork" context) and open the
rings themselves by pin path or map id, as an unrelated process would.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import random
import signal
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BPF_DIR

import bpfring
from bpfring import RingBuffer, RingCorrupted, RingFull, UserRingBuffer
from bpfring._ringcore import (
    BUSY_BIT,
    DISCARD_BIT,
    DYNPTR_MAX,
    HDR_SIZE,
    check_drain,
    record_span,
)

PAGE = mmap.PAGESIZE
NO_WAKEUP = 1
REC = np.dtype([("id", "<u4"), ("cpu", "<u4"), ("seq", "<u8")])
MP = multiprocessing.get_context("fork")


@pytest.fixture(scope="module")
def stress_path(kernel):
    return bpfring.build(BPF_DIR / "stress_prog.bpf.c")


@pytest.fixture
def stress(stress_path):
    with bpfring.load(stress_path) as obj:
        yield obj


@pytest.fixture
def pin_dir(kernel):
    """A private directory on the bpffs for pins, removed afterwards."""
    from bpfring._fs import ensure_bpffs

    ensure_bpffs()
    d = Path(f"/sys/fs/bpf/bpfring-stress-{os.getpid()}-{time.monotonic_ns()}")
    d.mkdir()
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


def produce_ctx(count: int, producer: int, flags: int = 0) -> bytes:
    return struct.pack("<III", count, producer, flags)


def drain_ctx(max_samples: int = 1 << 20, huge: bool = False) -> bytes:
    return struct.pack("<II", max_samples, int(huge))


def produce_all(prog, count: int, producer: int, flags: int = 0) -> None:
    """Emit ``count`` records now (the ring must have room for them)."""
    done = 0
    while done < count:
        want = min(50_000, count - done)
        n = prog.run(ctx=produce_ctx(want, producer, flags))
        assert n == want, "ring full while pre-producing"
        done += n


def seqs(records) -> list[int]:
    return [struct.unpack_from("<Q", r, 8)[0] for r in records]


# ---------------------------------------------------------------------------------
# Kernel producers on both CPUs, one Python consumer
# ---------------------------------------------------------------------------------

STRESS_RECORDS = 10_000_000  # in total, split between the two producers
STRESS_BUDGET = 45.0  # seconds; the test fails rather than run longer


@pytest.mark.slow
@pytest.mark.parametrize("batch_publish", [False, True], ids=["publish-each", "batch-publish"])
def test_two_cpu_producers_ten_million_records(stress, batch_publish, record_property):
    """Two Python threads, each pinned to its own CPU, run the kernel producer
    (50k records per run) as producers 0 and 1, while the main thread consumes
    with rb.poll.  Both sequences arrive complete, in order, without
    duplicates; a producer that finds the ring full stops, backs off and
    resumes, and every such stop is exactly one count in events__lost."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    cpus = cpus[:2]
    rb = stress.ring_buffer("events", batch_publish=batch_publish)
    prog = stress.programs["produce"]
    per_producer = STRESS_RECORDS // 2
    stops = [0, 0]
    emitted = [0, 0]
    errors: list[BaseException] = []
    stop_flag = threading.Event()

    def producer(pid: int) -> None:
        try:
            os.sched_setaffinity(threading.get_native_id(), {cpus[pid]})
            while emitted[pid] < per_producer and not stop_flag.is_set():
                want = min(50_000, per_producer - emitted[pid])
                n = prog.run(ctx=produce_ctx(want, pid))
                assert 0 <= n <= want
                emitted[pid] += n
                if n < want:  # ring full: let the consumer catch up
                    stops[pid] += 1
                    time.sleep(0.002)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=producer, args=(i,), daemon=True) for i in (0, 1)]
    buf = bytearray()
    nxt = [0, 0]
    total = 0
    switches = 0
    last_id = -1
    cpus_seen: list[set[int]] = [set(), set()]

    def check(buf: bytearray) -> int:
        nonlocal switches, last_id
        a = np.frombuffer(buf, dtype=REC)
        ids = a["id"]
        assert np.isin(ids, (0, 1)).all(), "record from an unknown producer"
        if len(a):
            switches += int(np.count_nonzero(ids[1:] != ids[:-1])) + (ids[0] != last_id)
            last_id = int(ids[-1])
        for pid in (0, 1):
            mine = a[ids == pid]
            s = mine["seq"]
            want = np.arange(nxt[pid], nxt[pid] + len(s), dtype=np.uint64)
            if not np.array_equal(s, want):
                bad = int(np.argmax(s != want))
                raise AssertionError(f"producer {pid}: expected seq {int(want[bad])}, "
                                     f"got {int(s[bad])} (lost, duplicated or reordered)")
            nxt[pid] += len(s)
            cpus_seen[pid].update(int(c) for c in np.unique(mine["cpu"]))
        return len(a)

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for t in threads:
        t.start()
    try:
        while total < STRESS_RECORDS:
            rb.poll(buf.extend, timeout=0.05)
            if len(buf) >= 16 * 250_000 or not all(t.is_alive() for t in threads):
                total += check(buf)
                buf.clear()
                if errors:
                    raise errors[0]
                if not any(t.is_alive() for t in threads) and rb.available == 0:
                    break
            if time.perf_counter() - t0 > STRESS_BUDGET:
                pytest.fail(f"only {total + len(buf) // 16} of {STRESS_RECORDS} records "
                            f"in {STRESS_BUDGET} s")
        total += check(buf)
    finally:
        stop_flag.set()
        for t in threads:
            t.join(10)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if errors:
        raise errors[0]
    rate = total / elapsed
    record_property("records_per_second", round(rate))
    print(f"\n{total} records in {elapsed:.2f} s = {rate / 1e6:.2f} M records/s "
          f"(batch_publish={batch_publish}, process CPU {cpu:.2f} s, ring-full stops "
          f"{stops}, producer id switches {switches})")

    assert total == STRESS_RECORDS
    assert nxt == emitted == [per_producer, per_producer]
    assert rb.available == 0
    # Every failed reservation was one early stop, and nothing else failed.
    assert rb.lost == sum(stops)
    # The BPF-side counters agree with what arrived.
    for pid in (0, 1):
        raw = stress.maps["next_seq"].lookup_raw(struct.pack("<I", pid))
        assert struct.unpack("<Q", raw)[0] == per_producer
    # The producers really ran on both CPUs, each on its own, concurrently
    # enough that their records interleave in the ring.
    assert cpus_seen == [{cpus[0]}, {cpus[1]}]
    assert switches > 100


# ---------------------------------------------------------------------------------
# A producer in another process writing a user ring while we drain it
# ---------------------------------------------------------------------------------


_PATTERN = bytes(range(256)) * 9


def ipc_sample(i: int) -> tuple[bool, bytes]:
    """(discarded, payload) of the i-th sample the child writes: 0..2000
    bytes, starting with (a prefix of) the sample number."""
    n = (i * 7919) % 2001
    head = struct.pack("<I", i)[:n]
    off = i & 255
    return i % 11 == 5, head + _PATTERN[off:off + n - len(head)]


def _child_writer(source: str, count: int, conn, waits) -> None:
    """Write the ``count`` samples of :func:`ipc_sample`; every time the ring
    is full, count it in the shared ``waits`` (before blocking for room)."""
    try:
        urb = UserRingBuffer(source)
        for i in range(count):
            discard, payload = ipc_sample(i)
            mode = i % 3
            if mode == 0 and not discard:
                try:
                    urb.write(payload)
                except RingFull:
                    with waits.get_lock():
                        waits.value += 1
                    urb.write(payload, timeout=60)
                continue
            try:
                s = urb.reserve(len(payload))
            except RingFull:
                with waits.get_lock():
                    waits.value += 1
                s = urb.reserve(len(payload), timeout=60)
            s.write(payload)
            if mode == 2:
                time.sleep(0)  # let the drain see a BUSY header now and then
            if discard:
                s.discard()
            else:
                s.submit()
        conn.send(("ok", waits.value, urb.producer_pos))
    except BaseException as e:
        conn.send(("error", repr(e)))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["id", "pinned"])
def test_user_ring_producer_in_another_process(stress, pin_dir, how):
    """A forked process opens the 16 KiB user ring (by map id or pin path) and
    writes 40000 samples of 0..2000 bytes (write(), reserve/submit, discards),
    blocking whenever the ring is full, while this process keeps draining it
    through the kernel into a kernel ring.  Every submitted sample arrives
    exactly once and in order; the ring was full many times (backpressure
    from our drains really reached the writer).

    The back-pressure does not depend on who is faster: for the first
    ``PAUSED`` rounds this process does not drain until the writer has found
    the ring full once more (it counts that in shared memory before it
    blocks), then drains once, while the writer waits; afterwards it drains
    as fast as it can."""
    count = 40_000
    paused = 101
    urb_map = stress.maps["uring"]
    if how == "pinned":
        urb_map.pin(pin_dir / "uring")
        source = f"pinned {pin_dir / 'uring'}"
    else:
        source = f"id {urb_map.id}"
    out = stress.ring_buffer("out")
    drain = stress.programs["drain"]
    expected = [p for d, p in (ipc_sample(i) for i in range(count)) if not d]
    got: list[bytes] = []
    drains_while_alive = 0
    rx, tx = MP.Pipe(duplex=False)
    waits = MP.Value("l", 0)
    child = MP.Process(target=_child_writer, args=(source, count, tx, waits))
    child.start()
    try:
        deadline = time.monotonic() + 120  # a hang guard, not a speed bound
        rounds = 0
        while len(got) < len(expected) and time.monotonic() < deadline:
            if rounds < paused:
                # Wait for the writer to be blocked on a full ring again.
                if waits.value <= rounds and child.is_alive():
                    time.sleep(0.0005)
                    continue
                rounds += 1
            # At most 64 samples (<= 64 * 2016 bytes) per run, all read back
            # at once: the 256 KiB kernel ring can never overflow.
            n = drain.run(ctx=drain_ctx(64))
            assert n >= 0, f"drain failed: {n}"
            if n:
                got.extend(out.read())
                if child.is_alive():
                    drains_while_alive += 1
            else:
                time.sleep(0.0002)
        assert rx.poll(10), "writer did not report"
        status = rx.recv()
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert status[0] == "ok", status
    _, waits_seen, child_prod = status
    assert child.exitcode == 0
    assert len(got) == len(expected)
    assert got == expected
    assert out.lost == 0
    urb = stress.user_ring_buffer("uring")
    assert urb.producer_pos == child_prod
    assert urb.pending_bytes() == 0
    print(f"\nwriter found the ring full {waits_seen} times; {drains_while_alive} drains ran "
          "while it was writing")
    # Each paused round drained only after one more full ring, while the
    # writer was blocked (so alive): both counts are certain, whatever the load.
    assert rounds == paused
    assert waits_seen >= paused > 50
    assert drains_while_alive >= paused > 100


# ---------------------------------------------------------------------------------
# A consumer killed with SIGKILL, and its successor
# ---------------------------------------------------------------------------------


def _child_consumer(pin: str, report: str) -> None:
    rb = RingBuffer.open(pin)
    fd = os.open(report, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def cb(v: memoryview) -> None:
        # Reported before the callback returns, i.e. before the position store.
        os.write(fd, bytes(v[8:16]))

    while True:
        rb.poll(cb, timeout=1)


def _read_report(path: Path) -> list[int]:
    data = path.read_bytes() if path.exists() else b""
    assert len(data) % 8 == 0
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


def test_killed_consumer_is_resumed_exactly(stress, pin_dir, tmp_path):
    """Four consumer processes in turn open a pinned kernel ring holding
    120000 records and are each SIGKILLed mid-stream; then a fifth consumer
    reads the rest.  Each consumer reports every record from its callback,
    before bpfring stores the new consumer position.

    What is provable, and checked: a successor starts exactly at the record
    after the last one whose position its predecessor published.  So nothing
    is ever skipped, and the only possible duplicate is the predecessor's
    last reported record (killed between its report and the position
    store); every record is seen at least once and at most twice, the second
    time only at a hand-over."""
    total = 120_000
    ring = stress.maps["events"]
    pin = str(pin_dir / "events")
    ring.pin(pin)
    produce_all(stress.programs["produce"], total, 0)
    parts: list[list[int]] = []
    for round_ in range(4):
        report = tmp_path / f"consumer{round_}.bin"
        child = MP.Process(target=_child_consumer, args=(pin, str(report)))
        child.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if report.exists() and report.stat().st_size >= 8 * 15_000:
                    break
                time.sleep(0.0005)
            else:
                pytest.fail("consumer made no progress")
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.is_alive():
                child.kill()  # also on failure: the consumer loops forever
            child.join(10)
        assert child.exitcode == -signal.SIGKILL
        parts.append(_read_report(report))
    with RingBuffer.open(pin) as rb:
        rest = seqs(rb.read())
        assert rb.available == 0
    assert rest, "the killed consumers must not have read everything"
    parts.append(rest)

    combined: list[int] = []
    duplicates = 0
    for part in parts:
        assert part, "every consumer read something"
        assert part == list(range(part[0], part[0] + len(part)))  # no gap inside a run
        if combined:
            # Exactly after the predecessor's last record, or that record again.
            assert part[0] in (combined[-1] + 1, combined[-1])
            if part[0] == combined[-1]:
                duplicates += 1
                part = part[1:]
        combined.extend(part)
    assert combined == list(range(total))
    print(f"\nconsumers read {[len(p) for p in parts]} records; {duplicates} of 4 kills "
          "fell between a report and its position store")
    assert duplicates <= 4


# ---------------------------------------------------------------------------------
# Ctrl-C during a blocking poll
# ---------------------------------------------------------------------------------


def _child_sigint(pin: str, total: int, conn) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rb = RingBuffer.open(pin)
    got: list[int] = []
    interrupts = 0
    conn.send(("progress", 0))
    while len(got) < total:
        try:
            rb.poll(lambda v: got.append(struct.unpack_from("<Q", v, 8)[0]), timeout=None)
            conn.send(("progress", len(got)))
        except KeyboardInterrupt:
            interrupts += 1
            conn.send(("interrupted", len(got)))
    conn.send(("done", got, interrupts))


def _blocked_in_epoll(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/wchan") as f:
            wchan = f.read()
    except OSError:
        return False
    return state == "S" and wchan in ("do_epoll_wait", "ep_poll", "0")


def _recv(conn, timeout: float = 10):
    assert conn.poll(timeout), "child did not answer"
    return conn.recv()


def test_ctrl_c_during_blocking_poll_loses_nothing(stress, pin_dir):
    """A child process blocks in rb.poll(timeout=None).  Each round, records
    are produced with BPF_RB_NO_WAKEUP (the child stays asleep), then SIGINT
    arrives: KeyboardInterrupt leaves poll with nothing consumed, the child
    catches it and drains the records that were waiting.  After three rounds
    the child has every record exactly once, in order."""
    per_round, rounds = 1000, 3
    pin = str(pin_dir / "events")
    stress.maps["events"].pin(pin)
    prog = stress.programs["produce"]
    rx, tx = MP.Pipe(duplex=False)
    child = MP.Process(target=_child_sigint, args=(pin, per_round * (rounds + 1), tx))
    child.start()
    try:
        assert _recv(rx) == ("progress", 0)
        for r in range(rounds):
            deadline = time.monotonic() + 10
            while not _blocked_in_epoll(child.pid):
                assert time.monotonic() < deadline, "child never blocked in epoll_wait"
                time.sleep(0.005)
            produce_all(prog, per_round, 0, flags=NO_WAKEUP)
            time.sleep(0.1)
            assert not rx.poll(0), "a NO_WAKEUP submit woke the child"
            assert _blocked_in_epoll(child.pid)
            os.kill(child.pid, signal.SIGINT)
            # Interrupted with nothing consumed, then the waiting records.
            assert _recv(rx) == ("interrupted", r * per_round)
            assert _recv(rx) == ("progress", (r + 1) * per_round)
        produce_all(prog, per_round, 0)  # normal wakeup for the last batch
        msg = _recv(rx)
        while msg[0] == "progress":
            msg = _recv(rx)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert msg[0] == "done"
    _, got, interrupts = msg
    assert interrupts == rounds
    assert got == list(range(per_round * (rounds + 1)))
    assert child.exitcode == 0
    with RingBuffer.open(pin) as rb:
        assert rb.available == 0


# ---------------------------------------------------------------------------------
# Malformed ring content from a misbehaving co-producer / co-consumer
# ---------------------------------------------------------------------------------


class CoProducer:
    """A misbehaving second producer: its own mappings of a user ring map."""

    def __init__(self, map_fd: int, size: int) -> None:
        self.size = size
        self._cons = mmap.mmap(map_fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
        self._mm = mmap.mmap(map_fd, PAGE + 2 * size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE, offset=PAGE)
        self.data = memoryview(self._mm)[PAGE:]

    @property
    def cons(self) -> int:
        return struct.unpack_from("<Q", self._cons, 0)[0]

    @property
    def prod(self) -> int:
        return struct.unpack_from("<Q", self._mm, 0)[0]

    @prod.setter
    def prod(self, pos: int) -> None:
        struct.pack_into("<Q", self._mm, 0, pos)

    def header(self, pos: int, word: int) -> None:
        struct.pack_into("<II", self.data, pos & (self.size - 1), word, 0)

    def close(self) -> None:
        self.data.release()
        self._mm.close()
        self._cons.close()


# Each case: what the co-producer does after bpfring wrote one good sample.
# Returns nothing; check_drain and the kernel must then agree.
def _misaligned_prod(co: CoProducer) -> None:
    co.prod += 4


def _len_past_prod(co: CoProducer) -> None:
    co.header(co.prod, 100)  # claims 100 bytes, only 8 published after the header
    co.prod += 16


def _longer_than_ring(co: CoProducer) -> None:
    co.header(co.prod, co.size)  # header + payload > ring, all of it "published"
    co.prod += record_span(co.size)


def _over_dynptr_limit(co: CoProducer) -> None:
    co.header(co.prod, DYNPTR_MAX + 1)
    co.prod += record_span(DYNPTR_MAX + 1)


def _discard_and_busy(co: CoProducer) -> None:
    co.header(co.prod, 24 | DISCARD_BIT | BUSY_BIT)  # DISCARD wins: skipped
    co.prod += record_span(24)
    co.header(co.prod, 0)  # then a good empty sample
    co.prod += HDR_SIZE


def _busy_then_good(co: CoProducer) -> None:
    co.header(co.prod, 24 | BUSY_BIT)  # stops the drain, no error
    co.prod += record_span(24)
    co.header(co.prod, 0)
    co.prod += HDR_SIZE


@pytest.mark.parametrize(("corrupt", "ring", "errno_"), [
    (_misaligned_prod, "uring", 22),
    (_len_past_prod, "uring", 22),
    (_longer_than_ring, "uring", 7),
    (_over_dynptr_limit, "huge_uring", 7),
    (_discard_and_busy, "uring", 0),
    (_busy_then_good, "uring", 0),
], ids=lambda v: getattr(v, "__name__", str(v)).strip("_"))
def test_malformed_user_ring_drain_matches_check_drain(stress, corrupt, ring, errno_):
    """A co-producer scribbles on the user ring behind bpfring's back.  The
    kernel's drain result (its return value: samples or -errno), where it
    leaves consumer_pos, and what it delivered all match what
    bpfring._ringcore.check_drain predicts from the same memory.  Afterwards
    the ring is repaired (producer_pos put back at consumer_pos) and works."""
    urb = stress.user_ring_buffer(ring)
    out = stress.ring_buffer("out")
    drain = stress.programs["drain"]
    huge = ring == "huge_uring"
    co = CoProducer(stress.maps[ring].fd, urb.size)
    try:
        # Move off position 0 first, so offsets are not trivially zero.
        urb.write(b"warm-up")
        assert drain.run(ctx=drain_ctx(huge=huge)) == 1
        assert out.read() == [b"warm-up"]
        urb.write(b"good")
        corrupt(co)
        cons0 = urb.consumer_pos
        predicted = check_drain(co.data, co.size, cons0, co.prod)
        assert predicted.errno == errno_
        ret = drain.run(ctx=drain_ctx(huge=huge))
        assert ret == (-predicted.errno if predicted.errno else predicted.samples)
        assert urb.consumer_pos == predicted.cons
        delivered = out.read()
        # What was drained: bpfring's good sample, then the empty sample
        # some cases add after their bad one.
        assert delivered == [b"good", b""][:predicted.samples]
        # A second drain: errors are sticky until the producer side is fixed.
        again = check_drain(co.data, co.size, urb.consumer_pos, co.prod)
        ret2 = drain.run(ctx=drain_ctx(huge=huge))
        assert ret2 == (-again.errno if again.errno else again.samples)
        out.read()
        # Repair: everything not yet consumed is dropped.
        co.prod = urb.consumer_pos
        urb.write(b"after repair")
        assert drain.run(ctx=drain_ctx(huge=huge)) == 1
        assert out.read() == [b"after repair"]
    finally:
        co.close()


@pytest.mark.parametrize("prod", [13, 20])
def test_user_ring_refuses_to_write_at_misaligned_producer_pos(stress, prod):
    """A co-producer left producer_pos misaligned (the kernel's drain now
    fails with -EINVAL on every call).  bpfring must not add samples behind
    it: with producer_pos 13 a header would land at byte 12, outside the
    sample's own space.  It should raise RingCorrupted, as it already does
    for a producer_pos more than a ring ahead, and leave the memory alone."""
    urb = stress.user_ring_buffer("uring")
    co = CoProducer(stress.maps["uring"].fd, urb.size)
    try:
        co.prod = prod
        before = bytes(co.data[:64])
        with pytest.raises(RingCorrupted):
            urb.write(b"hello")
        with pytest.raises(RingCorrupted):
            urb.reserve(5)
        assert co.prod == prod
        assert bytes(co.data[:64]) == before
    finally:
        co.prod = urb.consumer_pos
        co.close()


def _coconsumer(obj, ring: str) -> mmap.mmap:
    """A misbehaving co-consumer's own (writable) consumer page of a kernel ring."""
    return mmap.mmap(obj.maps[ring].fd, PAGE, mmap.MAP_SHARED,
                     mmap.PROT_READ | mmap.PROT_WRITE, offset=0)


def _emit_fake_header_record(stress, fake_len: int) -> tuple[RingBuffer, int]:
    """One 64-byte kernel record whose payload starts like a record header
    claiming ``fake_len`` bytes; returns the ring and the record's position."""
    urb = stress.user_ring_buffer("uring")
    out = stress.ring_buffer("out")
    urb.write(b"first")
    assert stress.programs["drain"].run(ctx=drain_ctx()) == 1
    assert out.read() == [b"first"]
    pos = out.consumer_pos
    urb.write(struct.pack("<II", fake_len, 0) + bytes(range(56)))
    assert stress.programs["drain"].run(ctx=drain_ctx()) == 1
    assert out.producer_pos == pos + record_span(64)
    return out, pos


def _in_child(fn, timeout: float = 3.0):
    """Run ``fn()`` in a forked child (it may hang); return ("ok", value),
    ("raised", exception type name, message) or ("timeout",)."""
    rx, tx = MP.Pipe(duplex=False)

    def target() -> None:
        try:
            tx.send(("ok", fn()))
        except BaseException as e:
            tx.send(("raised", type(e).__name__, str(e)))

    p = MP.Process(target=target)
    p.start()
    try:
        if not rx.poll(timeout):
            return ("timeout",)
        return rx.recv()
    finally:
        if p.is_alive():
            p.kill()
        p.join(5)


@pytest.mark.parametrize("flag", [0, DISCARD_BIT], ids=["committed", "discarded"])
def test_consumer_never_reads_past_producer_pos_on_fake_header(stress, flag):
    """A co-consumer moves consumer_pos into a record's payload, onto bytes
    that look like a header claiming more than is published (a committed or
    a discarded record).  bpfring refuses with RingCorrupted, delivers
    nothing, and leaves consumer_pos alone: skipping the fake record would
    store a consumer_pos past producer_pos."""
    out, pos = _emit_fake_header_record(stress, 100 | flag)
    prod = out.producer_pos
    co = _coconsumer(stress, "out")
    try:
        struct.pack_into("<Q", co, 0, pos + HDR_SIZE)
        got: list[bytes] = []
        with pytest.raises(RingCorrupted):
            out.consume(lambda v: got.append(bytes(v)))
        assert got == []
        assert out.consumer_pos == pos + HDR_SIZE
        assert out.producer_pos == prod
    finally:
        struct.pack_into("<Q", co, 0, prod)  # put things right again
        co.close()


def test_fake_header_ending_exactly_at_producer_pos_is_a_record(stress):
    """A fake header that claims exactly what is published up to
    producer_pos is a valid record as far as any consumer can tell: its
    payload, read up to producer_pos and not one byte further, is delivered."""
    out, pos = _emit_fake_header_record(stress, 56)  # 8 + 56 = the 64 published
    co = _coconsumer(stress, "out")
    try:
        struct.pack_into("<Q", co, 0, pos + HDR_SIZE)
        assert out.read() == [bytes(range(56))]
        assert out.consumer_pos == out.producer_pos
    finally:
        co.close()


def test_pending_never_walks_past_producer_pos(stress):
    """Same fake header as above: RingBuffer.pending() (also used by the
    asyncio wait) must stop at producer_pos, as consume() does: raise
    RingCorrupted or report what lies before producer_pos.  Run in a child
    process because a walk past producer_pos never finds it again."""
    out, pos = _emit_fake_header_record(stress, 100)
    co = _coconsumer(stress, "out")
    try:
        struct.pack_into("<Q", co, 0, pos + HDR_SIZE)
        result = _in_child(out.pending)
    finally:
        co.close()
    assert result[0] != "timeout", "pending() walked past producer_pos and never returned"
    assert result in (("ok", (0, 0, 0)), ("raised", "RingCorrupted", result[-1]))


STALE = np.dtype([("seq", "<u8"), ("a", "<u8"), ("b", "<u8")])  # 24 bytes: 32 per record


def _wrapped_out_ring(stress) -> tuple[RingBuffer, int]:
    """Send 24-byte numbered records through `out` until it has gone more
    than once around, consuming everything; return the ring and the first
    sequence number not sent.  The memory past producer_pos then holds the
    previous lap's records, at the offsets where the next ones will go."""
    urb = stress.user_ring_buffer("uring")
    out = stress.ring_buffer("out")
    drain = stress.programs["drain"]
    per_lap = out.size // 32
    seq = 0
    while seq < per_lap + 300:
        for s in range(seq, seq + 400):
            urb.write(struct.pack("<QQQ", s, 0, 0))
        assert drain.run(ctx=drain_ctx()) == 400
        assert [struct.unpack_from("<Q", r)[0] for r in out.read()] == \
            list(range(seq, seq + 400))
        seq += 400
    return out, seq


def _read_list(out: RingBuffer) -> list[int]:
    return [struct.unpack_from("<Q", r)[0] for r in out.read(limit=5)]


def _read_array_list(out: RingBuffer) -> list[int]:
    return out.read_array(STALE, limit=5)["seq"].tolist()


def _view_array_list(out: RingBuffer) -> list[int]:
    with out.view_array(STALE, limit=5) as arr:
        return arr["seq"].tolist()


def _pending_list(out: RingBuffer) -> list[int]:
    return [] if out.pending() == (0, 0, 0) else list(out.pending())


@pytest.mark.parametrize("method", [_read_list, _read_array_list, _view_array_list,
                                    _pending_list],
                         ids=lambda f: f.__name__.strip("_").removesuffix("_list"))
def test_consumer_ahead_of_producer_delivers_nothing(stress, method):
    """A co-consumer stores a consumer_pos one record past producer_pos (the
    kernel lets it: it only uses the value for space accounting).  Nothing
    was published there; the memory holds the previous lap's records.
    bpfring must deliver none of them (libbpf's ``while (cons < prod)``
    delivers nothing either) and count none as pending; raising
    RingCorrupted is fine too.  Each call runs in a child process (bounded
    by limit=5 and a timeout) because a walk past producer_pos never meets
    it again."""
    out, seq = _wrapped_out_ring(stress)
    prod = out.producer_pos
    co = _coconsumer(stress, "out")
    try:
        struct.pack_into("<Q", co, 0, prod + 32)
        result = _in_child(lambda: method(out))
    finally:
        struct.pack_into("<Q", co, 0, prod)
        co.close()
    assert result[0] != "timeout", "walked past producer_pos and never returned"
    if result[0] == "raised":
        assert result[1] == "RingCorrupted", result
    else:
        stale = result[1]
        assert stale == [], f"records {stale} (sent before {seq}) read past producer_pos"


# ---------------------------------------------------------------------------------
# Blocking reserve does not spin
# ---------------------------------------------------------------------------------


def test_blocking_reserve_does_not_spin(stress):
    """The user ring is full except for 64 bytes; reserve(4000, timeout=1.0)
    waits while another thread drains one 16-byte sample every 100 ms (each
    drain wakes the waiter, never enough room).  It raises RingFull after
    ~1 s having used almost no CPU.  Then a full drain lets a second waiting
    reserve succeed promptly, again without spinning."""
    urb = stress.user_ring_buffer("uring")
    drain = stress.programs["drain"]
    out = stress.ring_buffer("out")
    while urb.free > 64:
        urb.write(b"12345678")
    assert urb.free == 64
    stop = threading.Event()
    drained = []

    def trickle() -> None:
        while not stop.wait(0.1):
            drained.append(drain.run(ctx=drain_ctx(1)))
            out.read()

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        wall0, cpu0 = time.monotonic(), time.thread_time()
        with pytest.raises(RingFull):
            urb.reserve(4000, timeout=1.0)
        wall, cpu = time.monotonic() - wall0, time.thread_time() - cpu0
    finally:
        stop.set()
        t.join(5)
    assert 0.95 <= wall < 30  # its timeout (the upper bound is a hang guard)
    assert cpu < 0.1 * wall, f"waiting used {cpu:.3f} s CPU in {wall:.3f} s"
    assert len(drained) >= 5 and all(n == 1 for n in drained)
    assert 64 < urb.free < 4008

    print(f"\nreserve timed out after {wall:.3f} s using {cpu * 1e3:.1f} ms CPU")

    timer = threading.Timer(0.3, lambda: drain.run(ctx=drain_ctx()))
    timer.start()
    wall0, cpu0 = time.monotonic(), time.thread_time()
    s = urb.reserve(4000, timeout=60)
    wall, cpu = time.monotonic() - wall0, time.thread_time() - cpu0
    timer.join()
    s.discard()
    print(f"reserve succeeded after {wall:.3f} s using {cpu * 1e3:.1f} ms CPU")
    assert 0.25 <= wall < 30  # woken by the drain, long before its 60 s timeout
    assert cpu < 0.1 * wall, f"waiting used {cpu:.3f} s CPU in {wall:.3f} s"


@pytest.mark.parametrize("how", ["list", "tuple", "iterator", "array"])
def test_large_batches_reach_the_kernel_drain_intact(stress, how):
    """A batch of over 4 MiB (past the point where the C writers switch to
    streaming stores, fenced before producer_pos moves) written into the
    32 MiB user ring by write_many (list, tuple, iterator) or write_array,
    twice, so that the second batch wraps: the kernel's
    bpf_user_ringbuf_drain delivers every sample, in order, byte for byte."""
    urb = stress.user_ring_buffer("huge_uring")
    out = stress.ring_buffer("out")
    drain = stress.programs["drain"]
    rnd = random.Random(11)
    for rnd_round in range(2):
        if how == "array":
            rows = np.frombuffer(rnd.randbytes(45 * 200_000), np.dtype("V45"))
            expected = [r.tobytes() for r in rows]
            assert urb.write_array(rows) == len(rows)
        else:
            expected = [rnd.randbytes(rnd.choice([0, 1, 13, 40, 333, 4096]))
                        for _ in range(12_000)]
            src = {"list": expected, "tuple": tuple(expected),
                   "iterator": iter(expected)}[how]
            assert urb.write_many(src) == len(expected)
        assert urb.producer_pos - urb.consumer_pos > 4 << 20
        got: list[bytes] = []
        while len(got) < len(expected):
            # `out` (256 KiB) takes at most 60 samples of 4 KiB per run.
            n = drain.run(ctx=drain_ctx(max_samples=60, huge=True))
            assert n > 0, f"drain stopped after {len(got)} of {len(expected)} samples"
            got.extend(out.read())
        assert got == expected, f"round {rnd_round}"
        assert urb.consumer_pos == urb.producer_pos
