"""The in-process cases: kernel -> user consumers and user -> kernel writers."""

from __future__ import annotations

import ctypes
import inspect
import itertools
import select
from collections.abc import Callable
from typing import Any

import numpy as np

from .bench import Bench
from .common import ENOSPC, EVENT, K2U, RECORD_SIZE, SLOT, U2K, _mono
from .limits import LIMIT_CONSUMERS
from .procs import LibbpfCtypes

# ------------------------------------------------------------------------------------
# kernel -> user consumers: each returns (count, seq_sum or None, t_start, t_end)
# ------------------------------------------------------------------------------------

ConsumeResult = tuple[int, int | None, int, int]


def consume_callback(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb = b.rings[mode]
    count = 0

    def cb(view: memoryview) -> None:
        nonlocal count
        count += 1

    if live:
        poll = rb.poll
        t0 = _mono()
        while count < n:
            poll(cb, 0.1)
    else:
        consume = rb.consume
        t0 = _mono()
        while count < n and consume(cb):
            pass
    return count, None, t0, _mono()


def consume_ctypes(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    lib = b.ctypes_lib.lib
    count = 0

    def on_record(ctx: int | None, data: int | None, size: int) -> int:
        nonlocal count
        count += 1
        return 0

    cb = LibbpfCtypes.CB(on_record)
    rbp = lib.ring_buffer__new(b.obj.maps[b.map_names[(K2U, mode)]].fd, cb, None, None)
    if not rbp:
        raise OSError(ctypes.get_errno(), "ring_buffer__new failed")
    try:
        if live:
            poll = lib.ring_buffer__poll
            t0 = _mono()
            while count < n:
                err = poll(rbp, 100)
                if err < 0 and err != -4:
                    raise OSError(-err, "ring_buffer__poll failed")
        else:
            consume = lib.ring_buffer__consume
            t0 = _mono()
            while count < n:
                err = consume(rbp)
                if err <= 0:
                    break
        t1 = _mono()
    finally:
        lib.ring_buffer__free(rbp)
    return count, None, t0, t1


def consume_iter(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb = b.typed_ring(mode)
    s = 0
    if b.typed_kind == "typed":
        it = itertools.islice(rb, n)
        if b.typed_attr:
            t0 = _mono()
            for rec in it:
                s += rec.seq
        else:
            t0 = _mono()
            for rec in it:
                s += rec["seq"]
    else:
        # Interim until typed iteration lands: bytes records, decoded per
        # record through a numpy dtype view.
        frombuffer, dt = np.frombuffer, EVENT
        it = itertools.islice(rb, n)
        t0 = _mono()
        for raw in it:
            s += int(frombuffer(raw, dt)[0]["seq"])
    t1 = _mono()
    return n, int(s), t0, t1


def consume_read_array(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb = b.rings[mode]
    read = rb.read_array
    timeout = 0.1 if live else 0
    count = s = 0
    t0 = _mono()
    while count < n:
        arr = read(EVENT, timeout=timeout)
        k = len(arr)
        if k:
            count += k
            s += int(arr["seq"].sum())
        elif not live:
            break
    return count, s, t0, _mono()


def consume_view_array(b: Bench, mode: str, n: int, live: bool) -> ConsumeResult:
    rb = b.rings[mode]
    view = rb.view_array
    ep = select.epoll()
    ep.register(rb.fileno(), select.EPOLLIN)
    count = s = 0
    try:
        t0 = _mono()
        while count < n:
            with view(EVENT) as arr:
                k = len(arr)
                if k:
                    s += int(arr["seq"].sum())
            if k:
                count += k
            elif live:
                ep.poll(0.1)
            else:
                break
        t1 = _mono()
    finally:
        ep.close()
    return count, s, t0, t1


IN_PROCESS_CONSUMERS: dict[str, Callable[[Bench, str, int, bool], ConsumeResult]] = {
    "callback": consume_callback,
    "libbpf-ctypes": consume_ctypes,
    "iter": consume_iter,
    "read_array": consume_read_array,
    "view_array": consume_view_array,
    **LIMIT_CONSUMERS,
}


# ------------------------------------------------------------------------------------
# user -> kernel writers: each returns (t_start, t_end)
# ------------------------------------------------------------------------------------


def _room_waiter(urb: Any) -> Callable[[], None]:
    """Wait (briefly) for a drain wakeup on a full user ring."""
    ep = select.epoll()
    ep.register(urb.fileno(), select.EPOLLOUT | select.EPOLLET)
    return lambda: ep.poll(0.001)


def write_write(b: Bench, mode: str, live: bool) -> tuple[int, int]:
    urb = b.urings[mode]
    recs = b.record_bytes
    w = urb.write
    if live:
        t0 = _mono()
        for r in recs:
            w(r, None)
    else:
        t0 = _mono()
        for r in recs:
            w(r)
    return t0, _mono()


def _takes_timeout(fn: Callable[..., Any]) -> bool:
    try:
        return "timeout" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def write_many(b: Bench, mode: str, live: bool) -> tuple[int, int]:
    urb = b.urings[mode]
    recs = b.record_bytes
    fn = urb.write_many
    n = len(recs)
    if not live:
        t0 = _mono()
        k = fn(recs)
        t1 = _mono()
        if k != n:
            raise RuntimeError(f"write_many wrote {k} of {n} records into an empty ring")
        return t0, t1
    if _takes_timeout(fn):
        t0 = _mono()
        k = fn(recs, timeout=None)
        t1 = _mono()
        if k != n:
            raise RuntimeError(f"write_many(timeout=None) wrote {k} of {n} records")
        return t0, t1
    wait = _room_waiter(urb)
    chunk = max(1, b.opts.live_ring // SLOT)
    off = 0
    t0 = _mono()
    while off < n:
        k = fn(recs[off:off + chunk])
        off += k
        if k == 0:
            wait()
    return t0, _mono()


def write_array(b: Bench, mode: str, live: bool) -> tuple[int, int]:
    urb = b.urings[mode]
    arr = b.records
    fn = urb.write_array
    n = len(arr)
    if not live:
        t0 = _mono()
        k = fn(arr)
        t1 = _mono()
        if k != n:
            raise RuntimeError(f"write_array wrote {k} of {n} records into an empty ring")
        return t0, t1
    if _takes_timeout(fn):
        t0 = _mono()
        k = fn(arr, timeout=None)
        t1 = _mono()
        if k != n:
            raise RuntimeError(f"write_array(timeout=None) wrote {k} of {n} records")
        return t0, t1
    wait = _room_waiter(urb)
    off = 0
    t0 = _mono()
    while off < n:
        k = fn(arr[off:])
        off += k
        if k == 0:
            wait()
    return t0, _mono()


def write_ctypes(b: Bench, mode: str, live: bool) -> tuple[int, int]:
    lib = b.ctypes_lib.lib
    urbp = lib.user_ring_buffer__new(b.obj.maps[b.map_names[(U2K, mode)]].fd, None)
    if not urbp:
        raise OSError(ctypes.get_errno(), "user_ring_buffer__new failed")
    recs = b.record_bytes
    submit, memmove = lib.user_ring_buffer__submit, ctypes.memmove
    size = RECORD_SIZE
    try:
        if live:
            # reserve_blocking(-1) gives up with ENOSPC after one wakeup (libbpf
            # 1.1-1.7, see libbpf_produce.c): retry like a C caller must.
            reserve = lib.user_ring_buffer__reserve_blocking
            t0 = _mono()
            for r in recs:
                while not (p := reserve(urbp, size, -1)):
                    if ctypes.get_errno() != ENOSPC:
                        raise OSError(ctypes.get_errno(), "user_ring_buffer__reserve_blocking")
                memmove(p, r, size)
                submit(urbp, p)
        else:
            reserve = lib.user_ring_buffer__reserve
            t0 = _mono()
            for r in recs:
                p = reserve(urbp, size)
                if not p:
                    raise OSError(ctypes.get_errno(), "user_ring_buffer__reserve")
                memmove(p, r, size)
                submit(urbp, p)
        t1 = _mono()
    finally:
        lib.user_ring_buffer__free(urbp)
    return t0, t1


IN_PROCESS_WRITERS: dict[str, Callable[[Bench, str, bool], tuple[int, int]]] = {
    "write": write_write,
    "write_many": write_many,
    "write_array": write_array,
    "libbpf-ctypes-write": write_ctypes,
}

#: The bpfring API each case needs, to skip cleanly while it is not there yet.
NEEDS = {
    "read_array": ("RingBuffer", "read_array"),
    "view_array": ("RingBuffer", "view_array"),
    "write_many": ("UserRingBuffer", "write_many"),
    "write_array": ("UserRingBuffer", "write_array"),
}


def _missing_api(case: str) -> str | None:
    need = NEEDS.get(case)
    if need is None:
        return None
    import bpfring

    cls = getattr(bpfring, need[0])
    if hasattr(cls, need[1]):
        return None
    return (f"{need[0]}.{need[1]}() is not in this bpfring build yet "
            "(the fast-path API has not landed)")
