"""``bpf_timer_*`` in user space.

A ``struct bpf_timer`` (16 opaque bytes in an array map value) is keyed
here by its address; ``bpf_timer_init`` (clock ``CLOCK_MONOTONIC``,
``CLOCK_REALTIME`` or ``CLOCK_BOOTTIME``; ``-EBUSY`` when initialised
already), ``bpf_timer_set_callback``, ``bpf_timer_start`` (relative ns, or
absolute with ``BPF_F_TIMER_ABS``; ``-EINVAL`` without a callback) and
``bpf_timer_cancel`` (1 when it was armed; ``-EDEADLK`` from its own
callback) return what the kernel's do.  A started timer fires once in a
daemon thread of this process, which runs ``callback(map, key, value)`` under
the object's lock, as a softirq would run it between programs; a callback
that faults is logged (``bpfring.userspace``) and the timer stays disarmed.
The object's close cancels every timer, as the kernel does when the map
goes.
"""

from __future__ import annotations

import errno as _errno
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._memory import M64, MAP_TAG, Fault

if TYPE_CHECKING:
    from ._interp import Image, Interpreter

__all__ = ["TIMER_HELPERS", "Timers"]

log = logging.getLogger("bpfring.userspace")

_CLOCKS = {0: time.CLOCK_REALTIME, 1: time.CLOCK_MONOTONIC,
           7: getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)}
F_TIMER_ABS, F_TIMER_CPU_PIN = 1, 2


def _neg(err: int) -> int:
    return (-err) & M64


class _Timer:
    def __init__(self, map_addr: int, key: bytes, value: int, clock: int) -> None:
        self.map_addr = map_addr
        self.key = key
        self.value = value
        self.clock = clock
        self.callback = 0
        self.image: Image | None = None
        self.pending: threading.Timer | None = None
        self.running = False


class Timers:
    """The timers of one object; ``run(timer, fn)`` is how a callback runs."""

    def __init__(self, fire: Any) -> None:
        self._fire = fire  # fire(image, func_addr, args) under the object's lock
        self._timers: dict[int, _Timer] = {}
        self._lock = threading.Lock()
        self.closed = False
        self.fired = 0

    def init(self, vm: Interpreter, addr: int, map_addr: int, flags: int) -> int:
        if flags not in _CLOCKS:
            return _neg(_errno.EINVAL)
        vm.mem.check(addr, 16, True)
        with self._lock:
            if addr in self._timers:
                return _neg(_errno.EBUSY)
            key, value = self._locate(vm, addr, map_addr)
            self._timers[addr] = _Timer(map_addr, key, value, _CLOCKS[flags])
        return 0

    @staticmethod
    def _locate(vm: Interpreter, addr: int, map_addr: int) -> tuple[bytes, int]:
        """The key and value address of the map element holding the timer."""
        maps = vm.context.maps
        i = (map_addr - MAP_TAG) & M64
        if i >= len(maps):
            raise Fault(f"bpf_timer_init: {vm.mem.describe(map_addr)} is not a map")
        mp = maps[i]
        base = addr & ~0xFFFF_FFFF
        for (slot, _cpu), a in getattr(mp, "_regions", {}).items():
            if a == base and mp.type_name == "array":
                return int(slot).to_bytes(4, "little"), base
        raise Fault(f"bpf_timer_init: the timer at {vm.mem.describe(addr)} is not in a value "
                    f"of array map {mp.name!r} (user-space timers live in array maps)")

    def _get(self, addr: int) -> _Timer | None:
        return self._timers.get(addr)

    def set_callback(self, vm: Interpreter, addr: int, cb: int) -> int:
        t = self._get(addr)
        if t is None:
            return _neg(_errno.EINVAL)
        t.callback = cb
        t.image = vm.image
        return 0

    def start(self, vm: Interpreter, addr: int, nsecs: int, flags: int) -> int:
        t = self._get(addr)
        if t is None or not t.callback or flags & ~(F_TIMER_ABS | F_TIMER_CPU_PIN):
            return _neg(_errno.EINVAL)
        if flags & F_TIMER_ABS:
            delay = max(0, nsecs - time.clock_gettime_ns(t.clock)) / 1e9
        else:
            delay = nsecs / 1e9
        with self._lock:
            if t.pending is not None:
                t.pending.cancel()
            if self.closed:
                return 0
            th = threading.Timer(delay, self._expire, (addr, t))
            th.daemon = True
            t.pending = th
            th.start()
        return 0

    def cancel(self, vm: Interpreter, addr: int) -> int:
        t = self._get(addr)
        if t is None:
            return _neg(_errno.EINVAL)
        if t.running and threading.current_thread() is getattr(t, "thread", None):
            return _neg(_errno.EDEADLK)
        with self._lock:
            armed = t.pending is not None
            if t.pending is not None:
                t.pending.cancel()
                t.pending = None
        return 1 if armed else 0

    def _expire(self, addr: int, t: _Timer) -> None:
        with self._lock:
            if self.closed or t.pending is None or t.pending is not threading.current_thread():
                return
            t.pending = None
        t.running = True
        t.thread = threading.current_thread()  # type: ignore[attr-defined]
        try:
            self.fired += 1
            self._fire(t.image, t.callback, t.map_addr, t.key, t.value)
        except Exception:
            log.exception("bpf_timer callback failed")
        finally:
            t.running = False

    def close(self) -> None:
        with self._lock:
            self.closed = True
            for t in self._timers.values():
                if t.pending is not None:
                    t.pending.cancel()
                    t.pending = None
            self._timers.clear()


def _timers(vm: Interpreter) -> Timers:
    return vm.context.timers  # type: ignore[no-any-return]


def timer_init(vm: Interpreter, timer: int, m: int, flags: int, *_: int) -> int:
    return _timers(vm).init(vm, timer, m, flags)


def timer_set_callback(vm: Interpreter, timer: int, cb: int, *_: int) -> int:
    return _timers(vm).set_callback(vm, timer, cb)


def timer_start(vm: Interpreter, timer: int, nsecs: int, flags: int, *_: int) -> int:
    return _timers(vm).start(vm, timer, nsecs, flags)


def timer_cancel(vm: Interpreter, timer: int, *_: int) -> int:
    return _timers(vm).cancel(vm, timer)


TIMER_HELPERS: dict[int, tuple[str, Callable[..., int]]] = {
    169: ("bpf_timer_init", timer_init),
    170: ("bpf_timer_set_callback", timer_set_callback),
    171: ("bpf_timer_start", timer_start),
    172: ("bpf_timer_cancel", timer_cancel),
}
