"""Asynchronous kernel map updates through a user ring buffer (the "map bridge").

Python queues ``update``/``delete`` operations for one BPF map by writing them
straight into the mmapped pages of a ``BPF_MAP_TYPE_USER_RINGBUF`` (no system
call per operation); a drain running in the kernel (declared by
``<bpfring/bridge.bpf.h>``) applies them with ``bpf_map_update_elem`` and
``bpf_map_delete_elem``.  Three ways to run that drain (``mode``):

``"flush"``
    :meth:`MapBridge.flush` runs the bridge's ``SEC("syscall")`` program with
    ``BPF_PROG_TEST_RUN``: one system call applies everything queued.
``"piggyback"``
    a program you already attach calls ``bpfring_bridge_drain(map)``; the
    operations are applied the next time it runs, without any system call.
``"timer"``
    a ``bpf_timer`` drains every ``period`` seconds: no system call, latency
    about one period.

Without user ring buffers (Linux < 6.1) or when the bridge is not in the
object, the same API falls back to ``BPF_MAP_UPDATE_BATCH`` and per-operation
``bpf()`` calls, and says so once in the log.  See ``docs/bridge.md``.

Typical use::

    obj = bpfring.bridge.load("limits.bpf.c")       # or bpfring.load(...)
    with MapBridge(obj, "limits", mode="timer") as br:
        br.update(42, {"rate": 1000, "burst": 50})
        br.update_many(np.arange(1000, dtype=np.uint64), values)
        br.wait_applied(1.0)
        print(br.stats.applied)
"""

from __future__ import annotations

import errno as _errno
import logging
import mmap
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from .. import _sys
from .._elements import ElementCodec, ElementSizeError
from .._fd import OwnedFD
from ..build import build_source
from ..errors import (
    BPFError,
    KernelTooOld,
    LoadError,
    MapTypeError,
    RecordTooLarge,
)
from ..mapref import MapRef
from ..maps import Map
from ..object import BPFObject, open_object
from ..object import load as _load_object
from ._queues import Parts, RingQueue, SyscallQueue
from ._wire import (
    ANY,
    ARRAY_TYPES,
    DATA_MAX,
    ERR_FIELDS,
    EXIST,
    F_LOCK,
    NOEXIST,
    OP_DELETE,
    OP_HDR,
    OP_UPDATE,
    REPORT,
    STATE_SIZE,
    SUPPORTED_MAP_TYPES,
    BridgeStats,
    FlushResult,
    Mode,
    OpResult,
)

if TYPE_CHECKING:
    from ..btf import Codec

Rows = npt.NDArray[Any]

__all__ = [
    "ANY",
    "EXIST",
    "F_LOCK",
    "NOEXIST",
    "BridgeStats",
    "FlushResult",
    "MapBridge",
    "OpResult",
    "OpSizeError",
    "kernel_supports_bridge",
    "load",
]

log = logging.getLogger("bpfring")


#: A key or value does not have the map's size (rejected before it is queued);
#: the error of the element codec that :class:`~bpfring.Map` shares.
OpSizeError = ElementSizeError


# --------------------------------------------------------------------------------------
# Feature probe, fallback logging and loading with a fallback
# --------------------------------------------------------------------------------------

_SUPPORTED: bool | None = None
# (map name, mode, reason) of every fallback already warned about: a fallback
# warns once (WARNING), its repeats log at DEBUG.
_WARNED: set[tuple[str, str, str]] = set()
_WARNED_LOCK = threading.Lock()
# Why bridge.load() built an object without its bridges, for the MapBridges
# made on it later (their own check would only see that the bridge is missing).
_COMPILED_OUT: weakref.WeakKeyDictionary[BPFObject, str] = weakref.WeakKeyDictionary()
_NO_RINGS = "this kernel has no user ring buffers (Linux 6.1+)"


def kernel_supports_bridge() -> bool:
    """True when this kernel can create user ring buffers (Linux 6.1+) for us."""
    global _SUPPORTED
    if _SUPPORTED is None:
        try:
            os.close(_sys.map_create(_sys.MAP_TYPE_USER_RINGBUF, 0, 0, mmap.PAGESIZE))
            _SUPPORTED = True
        except BPFError:
            _SUPPORTED = False
    return _SUPPORTED


def _log_fallback(what: str, mode: str, reason: str) -> None:
    """Say that a bridge uses system calls, and why: the first time for this
    map, mode and reason at WARNING (a timer or piggyback bridge that silently
    became system calls is a surprise worth a line), later at DEBUG."""
    key = (what, mode, reason)
    with _WARNED_LOCK:
        first = key not in _WARNED
        _WARNED.add(key)
    log.log(logging.WARNING if first else logging.DEBUG,
            "map bridge %s (mode %r): %s; using BPF_MAP_UPDATE_BATCH and per-operation bpf() "
            "calls instead of the user ring buffer", what, mode, reason)


def _load_failure_reason(err: BPFError) -> str:
    """Why the bridge programs did not load, in the user's terms."""
    first = err.message.splitlines()[0]
    if "GPL" in first:
        # The verifier's "cannot call GPL-restricted function from non-GPL
        # compatible program": bpf_timer_*, bpf_loop and bpf_user_ringbuf_drain
        # are GPL-only helpers.
        return ("program is not GPL: bpf_timer and bpf_user_ringbuf_drain refused (declare "
                'char LICENSE[] SEC("license") = "Dual BSD/GPL"; the kernel said: '
                + first + ")")
    return "the bridge programs did not load: " + first


def load(src: Any, **kw: Any) -> BPFObject:
    """:func:`bpfring.load` for programs that use ``<bpfring/bridge.bpf.h>``.

    On a kernel without user ring buffers, or when the object does not load
    with its bridges (for instance a program without a GPL-compatible license:
    the bridge's helpers are GPL-only), it is built again with
    ``-DBPFRING_BRIDGE_DISABLE`` (the bridges compile out and
    :class:`MapBridge` falls back to system calls, warning once with the
    reason); a failure that remains without the bridges is raised as it was.
    Only C sources can be rebuilt; a compiled object is loaded as it is.
    """
    defines = dict(kw.pop("defines", None) or {})
    is_c = isinstance(src, str | os.PathLike) and (
        not os.path.exists(os.fspath(src)) or os.fspath(src).endswith(".c"))
    if not is_c:
        return _load_object(src, defines=defines, **kw)
    off = {**defines, "BPFRING_BRIDGE_DISABLE": None}
    if not kernel_supports_bridge():
        obj = _load_object(src, defines=off, **kw)
        reason = _NO_RINGS
    else:
        try:
            return _load_object(src, defines=defines, **kw)
        except (LoadError, KernelTooOld) as first:
            try:
                obj = _load_object(src, defines=off, **kw)
            except BPFError:
                raise first from None
            reason = _load_failure_reason(first)
    _COMPILED_OUT[obj] = reason
    log.info("BPF object %r: built without its map bridges: %s", obj.name, reason)
    return obj


# --------------------------------------------------------------------------------------
# A bridge object for a map that lives outside the user's object
# --------------------------------------------------------------------------------------

_GENERIC_SRC = r"""
// Generated by bpfring.bridge: a bridge for a map given by fd (libbpf reuses it).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/bridge.bpf.h>

struct bpfring_generic_key { __u8 b[BPFRING_KEY_SIZE]; };
struct bpfring_generic_value { __u8 b[BPFRING_VALUE_SIZE]; };

struct {
	__uint(type, BPFRING_MAP_TYPE);
	__uint(max_entries, 1);
	__type(key, struct bpfring_generic_key);
	__type(value, struct bpfring_generic_value);
} target SEC(".maps");

BPFRING_BRIDGE_RESULTS(target, BPFRING_RING_SIZE, BPFRING_RESULTS_SIZE);

char LICENSE[] SEC("license") = "Dual BSD/GPL";
"""


def _generic_bridge(map_fd: int, info: _sys.MapInfo, ring_size: int,
                    results_size: int) -> BPFObject:
    """Compile and load a bridge object whose target is the existing map ``map_fd``."""
    path = build_source(_GENERIC_SRC, name="bpfring_bridge", defines={
        "BPFRING_KEY_SIZE": info.key_size, "BPFRING_VALUE_SIZE": info.value_size,
        "BPFRING_MAP_TYPE": info.type, "BPFRING_RING_SIZE": ring_size,
        "BPFRING_RESULTS_SIZE": results_size,
    })
    obj = open_object(path, name="bpfring_bridge")
    try:
        obj.maps["target"].reuse_fd(map_fd)
        obj.load()
    except BaseException:
        obj.close()
        raise
    return obj


# --------------------------------------------------------------------------------------
# The public class
# --------------------------------------------------------------------------------------

_PRODUCERS: weakref.WeakValueDictionary[int, MapBridge] = weakref.WeakValueDictionary()
_PRODUCERS_LOCK = threading.Lock()


class MapBridge:
    """Queue updates and deletes of one BPF map, applied in the kernel through a
    user ring buffer (see the module documentation for the three modes).

    ``MapBridge(obj, "name")`` uses the bridge that ``BPFRING_BRIDGE(name, ...)``
    declared in the loaded object ``obj``; ``MapBridge(map_or_fd)`` builds and
    loads a bridge for an existing map (flush and timer modes; needs clang).

    Parameters:

    ``mode``
        ``"flush"`` (apply on :meth:`flush`), ``"piggyback"`` (the user's own
        program drains) or ``"timer"`` (a bpf_timer drains every ``period`` s).
    ``on_full``
        what to do when the ring has no room: ``"wait"`` (flush mode: flush;
        other modes: wait up to ``full_timeout`` seconds, None = forever, for
        the drain, then raise :class:`RingFull`) or ``"raise"`` (raise
        :class:`RingFull` at once; a batch is then queued whole or not at all).
        Operations are never dropped silently.
    ``budget``
        most operations one timer tick or piggyback drain applies (0: all), so a
        large backlog does not stall the program that drains.
    ``report``
        ``"failures"`` or ``"all"`` sends per-operation results through the
        bridge's results ring (``BPFRING_BRIDGE_RESULTS``), read with
        :meth:`results`; None sends nothing.
    ``fallback``
        when the user ring bridge is not available, use system calls (True,
        logged once) or raise (False).
    ``ring_size``, ``results_size``
        ring sizes of the bridge built for a map given by fd (in an object,
        ``BPFRING_BRIDGE(map, size)`` sets them).

    Thread-safe: any number of threads may queue operations concurrently (a
    lock serialises writers).  One MapBridge per bridge: the ring has a single
    producer, so a second one for the same ring in this process is refused.
    """

    def __init__(self, source: BPFObject | Map | int | str, name: str | None = None, *,
                 mode: Mode = "flush", on_full: Literal["wait", "raise"] = "wait",
                 full_timeout: float | None = None, period: float = 1e-3,
                 budget: int = 16384, report: Literal["failures", "all"] | None = None,
                 fallback: bool = True, ring_size: int = 1 << 20,
                 results_size: int = 1 << 16) -> None:
        if mode not in ("flush", "piggyback", "timer"):
            raise ValueError(f"mode must be 'flush', 'piggyback' or 'timer', not {mode!r}")
        if on_full not in ("wait", "raise"):
            raise ValueError(f"on_full must be 'wait' or 'raise', not {on_full!r}")
        if report not in REPORT:
            raise ValueError(f"report must be None, 'failures' or 'all', not {report!r}")
        if not 0 <= budget < 1 << 32:
            raise ValueError("budget must be in 0..2**32-1")
        self.mode: Mode = mode
        self.on_full = on_full
        self.full_timeout = full_timeout
        self.period = period
        self._owned_obj: BPFObject | None = None
        self._impl: RingQueue | SyscallQueue | None = None
        self._registered: int | None = None
        self._map_fd: OwnedFD | None = None
        self._own_map = False
        try:
            self._setup(source, name, mode, budget, report, fallback, ring_size,
                        results_size)
        except BaseException:
            self._release()
            raise

    def _setup(self, source: BPFObject | Map | int | str, name: str | None, mode: Mode, budget: int,
               report: str | None, fallback: bool, ring_size: int, results_size: int) -> None:
        obj, parts, reason = self._locate(source, name, mode, ring_size, results_size)
        info = self.info
        self.name = name or info.name
        if info.type not in SUPPORTED_MAP_TYPES:
            raise MapTypeError(
                f"map {self.name!r} is a {info.type_name} map; bridges support hash, "
                "lru_hash, array and their per-CPU variants")
        # The map's own element codecs: keys and values are checked and encoded
        # exactly as Map does it.
        self._key: ElementCodec = self.map.key_codec
        self._value: ElementCodec = self.map.value_codec
        ks, vs = info.key_size, info.value_size
        if ks > 0xFFFF:
            raise MapTypeError(f"map {self.name!r}: keys of {ks} bytes are too large for a bridge")
        if ks + vs > DATA_MAX:
            raise MapTypeError(f"map {self.name!r}: key + value of {ks + vs} bytes exceed "
                               f"the bridge's {DATA_MAX}-byte entry limit")
        if parts is None:
            if not fallback:
                raise BPFError(f"no user ring bridge for map {self.name!r}: {reason}",
                               hint="declare BPFRING_BRIDGE(map, size) in the BPF program")
            _log_fallback(repr(self.name), mode, reason or "no bridge")
            assert self._map_fd is not None
            self._impl = SyscallQueue(self, self._map_fd.fileno(), info, mode, reason or "",
                                       report)
        else:
            impl = RingQueue(self, parts, mode, budget, report)
            self._impl = impl
            if impl.ring.max_sample_size < OP_HDR.size + ks + vs:
                raise RecordTooLarge(f"one operation on {self.name!r} does not fit its ring")
            with _PRODUCERS_LOCK:
                other = _PRODUCERS.get(impl.ring.map_id)
                if other is not None and not other.closed:
                    raise BPFError(f"bridge {self.name!r} already has a MapBridge in this "
                                   "process (a user ring has a single producer)",
                                   hint="reuse the existing MapBridge or close it first")
                _PRODUCERS[impl.ring.map_id] = self
                self._registered = impl.ring.map_id
            if mode == "timer":
                impl.start_timer(self.period)
        if obj is not None:
            obj.adopt(self)  # closed (before its maps and programs) when the object closes

    def _locate(self, source: BPFObject | Map | int | str, name: str | None, mode: Mode,
                ring_size: int, results_size: int
                ) -> tuple[BPFObject | None, Parts | None, str | None]:
        """Find the target map (sets ``map``, ``info`` and a private ``_map_fd``) and the
        bridge's parts: (object, parts, None), or (object, None, reason) when
        the bridge is not available and the fallback applies."""
        if isinstance(source, BPFObject):
            if name is None:
                raise TypeError("MapBridge(obj, name): name the map to bridge")
            if source.closed:
                raise ValueError("BPF object is closed")
            if not source.loaded:
                raise BPFError("load the object before making a bridge")
            try:
                target = source.maps[name]
            except KeyError:
                raise KeyError(f"no map named {name!r} in object {source.name!r}") from None
            self.map = target
            self._map_fd = OwnedFD.dup(target.fd, f"map {name!r}")
            self.info = _sys.map_info(self._map_fd.fileno())
            if not kernel_supports_bridge():
                return source, None, _NO_RINGS
            m, p = source.maps, source.programs
            need = [f"{name}__ops", f"{name}__bst"]
            progs = [f"{name}__flush", f"{name}__timer_on", f"{name}__timer_off"]
            if any(n not in m for n in need) or any(n not in p for n in progs):
                if source in _COMPILED_OUT:  # bridge.load() built it without: say why
                    return source, None, _COMPILED_OUT[source]
                return source, None, (
                    f"object {source.name!r} declares no BPFRING_BRIDGE({name}, ...) "
                    "(or was built with BPFRING_BRIDGE_DISABLE)")
            return source, self._parts(source, name), None
        # A map outside any object of ours: compile a bridge that reuses its fd.
        if isinstance(source, str):
            self._map_fd = MapRef.parse(source).open_owned()
        elif isinstance(source, int) and not isinstance(source, bool):
            self._map_fd = OwnedFD.dup(source, "map")
        elif isinstance(source, Map):
            self._map_fd = OwnedFD.dup(source.fd, "map")
        else:
            raise TypeError(f"cannot make a bridge from {type(source).__name__}")
        map_fd = self._map_fd.fileno()
        self.info = _sys.map_info(map_fd)
        self.map = Map(map_fd, name=name or "")  # its own duplicate, closed with us
        self._own_map = True
        if mode == "piggyback":
            raise ValueError("piggyback mode needs your own program calling "
                             "bpfring_bridge_drain(); use MapBridge(obj, name)")
        if not kernel_supports_bridge():
            return None, None, _NO_RINGS
        if self.info.type not in SUPPORTED_MAP_TYPES:
            return None, None, "unsupported map type"  # _setup raises MapTypeError
        try:
            self._owned_obj = _generic_bridge(map_fd, self.info, ring_size, results_size)
        except BPFError as e:
            return None, None, "cannot build or load a bridge: " + e.message.splitlines()[0]
        return None, self._parts(self._owned_obj, "target"), None

    @staticmethod
    def _parts(obj: BPFObject, name: str) -> Parts:
        """The fds of the bridge declared by ``BPFRING_BRIDGE(name, ...)`` in ``obj``."""
        m, p = obj.maps, obj.programs
        if m[f"{name}__bst"].value_size != STATE_SIZE:
            raise BPFError(f"bridge {name!r}: its state has {m[f'{name}__bst'].value_size} "
                           f"bytes, this bpfring expects {STATE_SIZE}",
                           hint="rebuild the BPF program with this bpfring's bridge.bpf.h")
        res, lost = m.get(f"{name}__res"), m.get(f"{name}__res__lost")
        return {
            "ops": m[f"{name}__ops"].fd, "state": m[f"{name}__bst"].fd,
            "results": res.fd if res is not None else None,
            "results_lost": lost.fd if lost is not None else None,
            "progs": {"flush": p[f"{name}__flush"].fd, "timer_on": p[f"{name}__timer_on"].fd,
                      "timer_off": p[f"{name}__timer_off"].fd},
        }

    # properties --------------------------------------------------------------------

    @property
    def fallback(self) -> str | None:
        """Why operations go through system calls instead of the ring (None: they don't)."""
        return self._q.fallback

    @property
    def key_size(self) -> int:
        return self.info.key_size

    @property
    def value_size(self) -> int:
        return self.info.value_size

    @property
    def key_type(self) -> Codec | None:
        """The BTF codec of the keys (:class:`bpfring.btf.Codec`), None: bytes only."""
        return self._key.btf_type

    @property
    def value_type(self) -> Codec | None:
        """The BTF codec of the values (one CPU's slot for per-CPU maps), or None."""
        return self._value.btf_type

    @property
    def closed(self) -> bool:
        return self._impl is None

    @property
    def _q(self) -> RingQueue | SyscallQueue:
        impl = self._impl
        if impl is None:
            raise ValueError("MapBridge is closed")
        return impl

    # queueing ----------------------------------------------------------------------

    @staticmethod
    def _check_flags(flags: int) -> int:
        if flags & ~(NOEXIST | EXIST | F_LOCK) or flags & 3 == 3:
            raise ValueError(f"flags must be ANY, NOEXIST or EXIST (| F_LOCK), not {flags}")
        return flags

    def update(self, key: Any, value: Any, flags: int = ANY) -> int:
        """Queue ``map[key] = value`` (``flags``: ANY, NOEXIST, EXIST); return the
        operation's index (its ``seq`` in :meth:`results`).

        For per-CPU maps, ``value`` is written into every CPU's slot.
        """
        self._check_flags(flags)
        k, v = self._key.encode(key), self._value.encode(value)
        return self._q.put(OP_UPDATE, flags, k, v)

    def delete(self, key: Any) -> int:
        """Queue the deletion of ``key``; return the operation's index."""
        self._check_delete()
        k = self._key.encode(key)
        return self._q.put(OP_DELETE, 0, k, b"")

    def _check_delete(self) -> None:
        if self.info.type in ARRAY_TYPES:
            raise MapTypeError(f"map {self.name!r} is an {self.info.type_name} map: its "
                               "elements cannot be deleted (update them instead)")

    def update_many(self, keys: Any, values: Any, flags: int = ANY) -> range:
        """Queue ``map[keys[i]] = values[i]`` for every i; return their indexes.

        ``keys`` and ``values`` are numpy arrays (one row per operation, numbers
        cast to the map's BTF types), bytes of n * size, or sequences of values
        :meth:`update` accepts.  On the ring they become samples of up to 32
        KiB of keys and values each (one sample for a small batch), published
        with a single producer-position store (more only when the ring fills
        up meanwhile and the call waits for room).
        """
        self._check_flags(flags)
        krows, vrows = self._key.rows(keys), self._value.rows(values)
        if len(krows) != len(vrows):
            raise ValueError(f"{len(krows)} keys but {len(vrows)} values")
        return self._put_rows(OP_UPDATE, flags, krows, vrows)

    def delete_many(self, keys: Any) -> range:
        """Queue the deletion of every key in ``keys``; return their indexes."""
        self._check_delete()
        return self._put_rows(OP_DELETE, 0, self._key.rows(keys), None)

    def _put_rows(self, op: int, flags: int, krows: np.ndarray, vrows: np.ndarray | None
                  ) -> range:
        n = len(krows)
        if n == 0:
            return range(0)
        first = self._q.put_rows(op, flags, krows, vrows)
        return range(first, first + n)

    # applying ----------------------------------------------------------------------

    def flush(self) -> FlushResult:
        """Apply everything queued now, in any mode, with one
        ``BPF_PROG_TEST_RUN`` (more only past 128 Ki queued samples, or while
        a timer or piggyback drain holds the ring); return what this call did."""
        return self._q.flush()

    def wait_applied(self, timeout: float | None = None) -> bool:
        """Wait until the kernel has consumed (applied or refused) every
        operation queued before this call; False on timeout.

        Flush mode flushes; the other modes wait for their drain (asking it
        for a wakeup while we wait).
        """
        return self._q.wait_applied(timeout)

    def start_timer(self, period: float | None = None) -> None:
        """Arm (or re-arm with a new period) the periodic drain."""
        self._q.start_timer(self.period if period is None else period)
        self.period = self.period if period is None else period

    def stop_timer(self) -> None:
        """Disarm the periodic drain (queued operations then wait for a flush)."""
        self._q.stop_timer()

    # reading -----------------------------------------------------------------------

    @property
    def stats(self) -> BridgeStats:
        """Counters, kept by the drain in an mmapped map: no system call, except
        one for ``results_lost`` when the bridge has a results ring."""
        c = self._q.counters()
        errors = {_errno.errorcode[e]: c[f] for e, f in ERR_FIELDS.items() if c[f]}
        if c["err_other"]:
            errors["other"] = c["err_other"]
        failed = sum(c[f] for f in ERR_FIELDS.values()) + c["err_other"]
        return BridgeStats(
            queued=c["queued"], consumed=c["seq"], applied=c["applied"],
            updated=c["updated"], deleted=c["deleted"], failed=failed, errors=errors,
            bad=c["bad"], batches=c["batches"], drains=c["drains"],
            drain_busy=c["drain_busy"], drain_errors=c["drain_errors"],
            last_error=c["last_error"], timer_ticks=c["timer_ticks"], pending=c["pending"],
            results_lost=c["results_lost"])

    @property
    def pending(self) -> int:
        """Operations queued by this MapBridge that the kernel has not consumed
        yet (read from the mmapped counters: no system call, cheap to poll)."""
        return self._q.pending()

    def results(self, limit: int | None = None, timeout: float | None = 0) -> list[OpResult]:
        """Per-operation results reported so far (``report=`` chooses which),
        waiting up to ``timeout`` seconds for the first one."""
        return self._q.results(limit, timeout)

    def lookup(self, key: Any) -> Any:
        """Read ``map[key]`` with one bpf() call, decoded like the values passed
        in (a list with one entry per CPU for per-CPU maps); None when absent."""
        self._q  # noqa: B018 - raises when closed
        return self.map.lookup(key)

    # lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop the timer this bridge armed, unmap the rings (idempotent).

        Operations still queued stay in the ring (the fallback applies its
        pending ones first); close the object to drop them.
        """
        if self._impl is not None or self._map_fd is not None:
            self._release()

    def _release(self) -> None:
        impl, self._impl = self._impl, None
        with _PRODUCERS_LOCK:
            if self._registered is not None and _PRODUCERS.get(self._registered) is self:
                del _PRODUCERS[self._registered]
        try:
            if impl is not None:
                impl.close()
        finally:
            if self._owned_obj is not None:
                self._owned_obj.close()
                self._owned_obj = None
            if self._map_fd is not None:
                self._map_fd.close()
                self._map_fd = None
            if self._own_map:
                self.map.close()
                self._own_map = False

    def __enter__(self) -> MapBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_map_fd", None) is not None:
            try:
                self.close()
            except Exception:  # interpreter shutdown
                pass

    def __repr__(self) -> str:
        impl = self._impl
        if impl is None:
            state = "closed"
        elif isinstance(impl, SyscallQueue):
            state = "fallback=syscalls"
        else:
            state = f"ring={impl.ring.size}"
        return f"<MapBridge {getattr(self, 'name', '?')} mode={self.mode} {state}>"

