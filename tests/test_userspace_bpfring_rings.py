"""bpfring's own RingBuffer and UserRingBuffer over the user-space runtime's
rings (``obj.ring_buffer()``, ``obj.user_ring_buffer()``): the same sans-IO
core, backend, waits, typed records and numpy paths as on kernel rings, and
the same records as the kernel gives for the same program and inputs."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading

import numpy as np
import pytest
from blocking import until_blocked
from conftest import BPF_DIR, produce_ctx

from bpfring import RingBuffer, RingFull, UserRingBuffer
from bpfring.errors import MapTypeError
from bpfring.userspace import load

NO_WAKEUP, FORCE_WAKEUP = 1, 2


@pytest.fixture(scope="module")
def echo_obj_path():
    import bpfring

    return bpfring.build(BPF_DIR / "echo.bpf.c")


def _seq(rec: bytes) -> int:
    return int.from_bytes(rec[:4], "little")


def test_echo_through_bpfring_rings_matches_kernel(echo_obj_path, kernel):
    """Samples written with UserRingBuffer, drained by the program in user
    space, read back with RingBuffer: the bytes the kernel gives."""
    import bpfring

    samples = [bytes([i]) * (1 + 37 * i) for i in range(12)]
    with bpfring.load(echo_obj_path) as k, load(echo_obj_path) as u:
        kin, kout = k.user_ring_buffer("in_ring"), k.ring_buffer("out_ring")
        uin, uout = u.user_ring_buffer("in_ring"), u.ring_buffer("out_ring")
        assert isinstance(uin, UserRingBuffer) and isinstance(uout, RingBuffer)
        uin.write_many(samples)
        for s in samples:
            kin.write(s)
        assert uin.free == kin.free
        assert u.programs["echo"].run() == k.programs["echo"].run()
        assert uout.available == kout.available
        assert uout.read() == kout.read()
        assert uout.read() == [] and uout.available == 0


def test_typed_records_numpy_and_iteration(echo_obj_path):
    with load(echo_obj_path) as u:
        rb = u.ring_buffer("out_ring", record="rec256")
        u.programs["produce"].run(ctx=produce_ctx(5))
        recs = rb.read()
        assert [r.seq for r in recs] == [0, 1, 2, 3, 4]
        u.programs["produce"].run(ctx=produce_ctx(6, seq_base=10, discard_every=3))
        arr = rb.read_array()
        assert arr.dtype.itemsize == 256
        assert list(arr["seq"]) == [s for s in range(10, 16) if (s - 10) % 3 != 2]
        u.programs["produce"].run(ctx=produce_ctx(4, seq_base=20))
        with rb.view_array() as view:
            assert list(np.asarray(view["seq"])) == [20, 21, 22, 23]
        assert rb.available == 0
        u.programs["produce"].run(ctx=produce_ctx(3, seq_base=30))
        assert [r.seq for r in itertools.islice(rb, 3)] == [30, 31, 32]  # iteration waits for more


@pytest.mark.parametrize("flags", [0, FORCE_WAKEUP])
def test_a_program_commit_wakes_a_blocked_poll(echo_obj_path, flags):
    """The commit's wakeup (the kernel's rule: adaptive, or forced) ends a
    poll blocked before the program ran, long before its timeout."""
    with load(echo_obj_path) as u:
        rb = u.ring_buffer("out_ring")
        got: list[int] = []
        out: list[object] = []

        def run() -> None:
            out.append(rb.poll(lambda v: got.append(_seq(bytes(v))), timeout=60))

        t = threading.Thread(target=run, daemon=True)
        t.start()
        until_blocked(t)
        u.programs["produce"].run(ctx=produce_ctx(3, flags=flags))
        t.join(30)
        assert not t.is_alive(), "the commit did not wake the poll"
        assert 1 <= out[0] <= 3  # type: ignore[operator]
        rb.consume(lambda v: got.append(_seq(bytes(v))))
        assert got == [0, 1, 2]


def test_no_wakeup_commit_is_found_at_the_timeout(echo_obj_path):
    with load(echo_obj_path) as u:
        rb = u.ring_buffer("out_ring")
        u.programs["produce"].run(ctx=produce_ctx(2, flags=NO_WAKEUP))
        assert rb.poll(lambda v: None, timeout=0.05) == 2


def test_a_drain_wakes_a_writer_waiting_for_room(echo_obj_path):
    """The user ring full: a reserve with a timeout blocks until the program
    drains it (the drain's wakeup), then succeeds."""
    with load(echo_obj_path) as u:
        urb = u.user_ring_buffer("in_ring")
        out_ring = u.ring_buffer("out_ring")
        with pytest.raises(RingFull):
            while True:  # 8-byte samples: full to the last 16 bytes
                urb.write(bytes(8), timeout=0)
        done: list[object] = []

        def writer() -> None:
            try:
                urb.write(b"late8byt", timeout=60)
                done.append(True)
            except BaseException as e:  # handed to the test thread
                done.append(e)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        until_blocked(t)
        assert not done
        u.programs["echo"].run()
        t.join(30)
        assert done == [True]
        assert len(out_ring.read()) >= 1


def test_read_async(echo_obj_path):
    with load(echo_obj_path) as u:
        rb = u.ring_buffer("out_ring")

        async def main() -> list[bytes]:
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, lambda: u.programs["produce"].run(ctx=produce_ctx(2)))
            return await asyncio.wait_for(rb.read_async(), 30)

        recs = asyncio.run(main())
        assert [_seq(r) for r in recs] in ([0], [0, 1])


def test_closing_the_object_closes_its_rings_first(echo_obj_path):
    u = load(echo_obj_path)
    rb = u.ring_buffer("out_ring")
    urb = u.user_ring_buffer("in_ring")
    u.programs["produce"].run(ctx=produce_ctx(1))
    u.close()
    assert rb.closed and urb.closed
    with pytest.raises(ValueError, match="closed"):
        rb.read()
    with pytest.raises(ValueError):
        u.ring_buffer("out_ring")


def test_a_ring_closed_first_leaves_the_map_working(echo_obj_path):
    with load(echo_obj_path) as u:
        rb = u.ring_buffer("out_ring")
        rb.close()
        u.programs["produce"].run(ctx=produce_ctx(2))
        assert [_seq(r) for r in u.maps["out_ring"].read()] == [0, 1]


def test_wrong_kind_of_map_is_refused(echo_obj_path):
    with load(echo_obj_path) as u:
        with pytest.raises(MapTypeError, match="'in_ring' is not a ring buffer map"):
            u.ring_buffer("in_ring")
        with pytest.raises(MapTypeError, match="not a user ring buffer"):
            u.user_ring_buffer("out_ring")
        with pytest.raises(MapTypeError):
            u.ring_buffer("scratch")


_READER = r"""
import os, sys
import bpfring
from bpfring.userspace import open_map
with open_map(os.path.join(sys.argv[1], "out_ring")) as m, bpfring.RingBuffer(m.pages()) as rb:
    print(*(int.from_bytes(r[:4], "little") for r in rb.read()))
"""


def test_a_pinned_ring_read_by_bpfring_in_another_process(echo_obj_path):
    """Process A's program commits into a pinned ring; process B reads it
    with bpfring's RingBuffer over the shared pages, and A sees it consumed.
    (Wakeups are per process: B reads what is there, or polls with a timeout.)"""
    import shutil
    import subprocess
    import sys
    import tempfile

    base = tempfile.mkdtemp(prefix="bpfring-rings-", dir="/dev/shm")
    try:
        pins = os.path.join(base, "maps")
        with load(echo_obj_path, pinned_maps=pins) as a:
            a.programs["produce"].run(ctx=produce_ctx(4, discard_every=2))
            proc = subprocess.run([sys.executable, "-c", _READER, pins], capture_output=True,
                                  text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.split() == ["0", "2"]  # every 2nd record discarded
            ring = a.maps["out_ring"]
            assert ring.consumer_pos == ring.producer_pos > 0
    finally:
        shutil.rmtree(base)
