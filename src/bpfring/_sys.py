"""The bpf(2) system call and the kernel ABI bpfring relies on, in one place.

Everything bpfring says to the kernel without libbpf goes through here:
creating and finding maps, map and program info, pinning, element and batch
operations, BTF objects and BPF_PROG_TEST_RUN.  The kernel structures are
declared as data, not as literals scattered through the packing code:

* named constants for the commands (``enum bpf_cmd``), map and program
  types, flags and the ring buffer header bits (:data:`ENUMS` lists them
  by their C names);
* a :class:`~bpfring._layout.Layout` per structure, in
  :mod:`bpfring._layout` and re-exported here (``_sys.ATTR_TEST_RUN``,
  ``_sys.MAP_INFO``, ...): field name -> (offset, size).  The packers below
  are built from those tables;
* ``tests/test_abi.py`` checks every constant and every layout entry
  against the running kernel's BTF (``/sys/kernel/btf/vmlinux``);
* prepared argument objects (:class:`Attr`, :class:`PreparedRun`,
  :class:`PreparedUpdate`): an attribute block allocated, addressed and
  filled once, so that a hot loop (the bridge's flush, the benchmarks'
  baselines) is one system call per iteration with nothing packed by hand.

The kernel zero-extends a ``size`` shorter than its ``union bpf_attr``, so we
always pass a fixed :data:`ATTR_SIZE`-byte block, larger than every member we
fill and no larger than any kernel's union since 5.x.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform
from dataclasses import dataclass
from typing import Any, Protocol

from ._layout import *  # noqa: F403  (re-exported: the layouts are part of _sys's interface)
from ._layout import (
    ATTR_GET_ID,
    ATTR_INFO,
    ATTR_MAP_BATCH,
    ATTR_MAP_CREATE,
    ATTR_MAP_ELEM,
    ATTR_OBJ,
    ATTR_SIZE,
    ATTR_TEST_RUN,
    BTF_INFO,
    MAP_INFO,
    PROG_INFO,
)
from .errors import BPFError, BPFPermissionError, KernelTooOld

# --- commands (enum bpf_cmd) --------------------------------------------------
MAP_CREATE = 0
MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
MAP_GET_NEXT_KEY = 4
OBJ_PIN = 6
OBJ_GET = 7
PROG_TEST_RUN = 10
PROG_GET_NEXT_ID = 11
MAP_GET_NEXT_ID = 12
PROG_GET_FD_BY_ID = 13
MAP_GET_FD_BY_ID = 14
OBJ_GET_INFO_BY_FD = 15
BTF_GET_FD_BY_ID = 19
MAP_LOOKUP_BATCH = 24
MAP_UPDATE_BATCH = 26
MAP_DELETE_BATCH = 27

# --- map types (enum bpf_map_type) ---------------------------------------------
MAP_TYPE_NAMES = {
    0: "unspec", 1: "hash", 2: "array", 3: "prog_array", 4: "perf_event_array",
    5: "percpu_hash", 6: "percpu_array", 7: "stack_trace", 8: "cgroup_array",
    9: "lru_hash", 10: "lru_percpu_hash", 11: "lpm_trie", 12: "array_of_maps",
    13: "hash_of_maps", 14: "devmap", 15: "sockmap", 16: "cpumap", 17: "xskmap",
    18: "sockhash", 19: "cgroup_storage", 20: "reuseport_sockarray",
    21: "percpu_cgroup_storage", 22: "queue", 23: "stack", 24: "sk_storage",
    25: "devmap_hash", 26: "struct_ops", 27: "ringbuf", 28: "inode_storage",
    29: "task_storage", 30: "bloom_filter", 31: "user_ringbuf", 32: "cgrp_storage",
    33: "arena",
}
MAP_TYPE_HASH = 1
MAP_TYPE_ARRAY = 2
MAP_TYPE_PERF_EVENT_ARRAY = 4
MAP_TYPE_PERCPU_HASH = 5
MAP_TYPE_PERCPU_ARRAY = 6
MAP_TYPE_LRU_HASH = 9
MAP_TYPE_LRU_PERCPU_HASH = 10
MAP_TYPE_PERCPU_CGROUP_STORAGE = 21
MAP_TYPE_RINGBUF = 27
MAP_TYPE_USER_RINGBUF = 31
#: Map types whose values hold one slot per possible CPU.
PERCPU_MAP_TYPES = frozenset({MAP_TYPE_PERCPU_HASH, MAP_TYPE_PERCPU_ARRAY,
                              MAP_TYPE_LRU_PERCPU_HASH, MAP_TYPE_PERCPU_CGROUP_STORAGE})
RING_MAP_TYPES = frozenset({MAP_TYPE_RINGBUF, MAP_TYPE_USER_RINGBUF})

# --- program types (enum bpf_prog_type) -----------------------------------------
PROG_TYPE_SOCKET_FILTER = 1
PROG_TYPE_KPROBE = 2
PROG_TYPE_SCHED_CLS = 3
PROG_TYPE_TRACEPOINT = 5
PROG_TYPE_XDP = 6
PROG_TYPE_PERF_EVENT = 7
PROG_TYPE_CGROUP_SKB = 8
PROG_TYPE_RAW_TRACEPOINT = 17
PROG_TYPE_TRACING = 26
PROG_TYPE_SYSCALL = 31

# --- flags ----------------------------------------------------------------------
#: Map update flags (BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK).
ANY = 0
NOEXIST = 1
EXIST = 2
F_LOCK = 4
#: Access flags of map fds (map_create map_flags, OBJ_GET file_flags, open_flags).
F_RDONLY = 1 << 3
F_WRONLY = 1 << 4
#: map_flags: the map can be mmapped (arrays; set by libbpf for global data).
F_MMAPABLE = 1 << 10

# --- ring buffer records (the anonymous enum next to struct bpf_ringbuf_hdr) ------
RINGBUF_BUSY_BIT = 1 << 31
RINGBUF_DISCARD_BIT = 1 << 30
RINGBUF_HDR_SZ = 8

#: The enums above, by their C names, for the ABI test (C enumerator -> value).
ENUMS: dict[str | None, dict[str, int]] = {
    "bpf_cmd": {
        "BPF_MAP_CREATE": MAP_CREATE, "BPF_MAP_LOOKUP_ELEM": MAP_LOOKUP_ELEM,
        "BPF_MAP_UPDATE_ELEM": MAP_UPDATE_ELEM, "BPF_MAP_DELETE_ELEM": MAP_DELETE_ELEM,
        "BPF_MAP_GET_NEXT_KEY": MAP_GET_NEXT_KEY, "BPF_OBJ_PIN": OBJ_PIN,
        "BPF_OBJ_GET": OBJ_GET, "BPF_PROG_TEST_RUN": PROG_TEST_RUN,
        "BPF_PROG_GET_NEXT_ID": PROG_GET_NEXT_ID, "BPF_MAP_GET_NEXT_ID": MAP_GET_NEXT_ID,
        "BPF_PROG_GET_FD_BY_ID": PROG_GET_FD_BY_ID, "BPF_MAP_GET_FD_BY_ID": MAP_GET_FD_BY_ID,
        "BPF_OBJ_GET_INFO_BY_FD": OBJ_GET_INFO_BY_FD, "BPF_BTF_GET_FD_BY_ID": BTF_GET_FD_BY_ID,
        "BPF_MAP_LOOKUP_BATCH": MAP_LOOKUP_BATCH, "BPF_MAP_UPDATE_BATCH": MAP_UPDATE_BATCH,
        "BPF_MAP_DELETE_BATCH": MAP_DELETE_BATCH,
    },
    "bpf_map_type": {f"BPF_MAP_TYPE_{n.upper()}": v for v, n in MAP_TYPE_NAMES.items()},
    "bpf_prog_type": {
        "BPF_PROG_TYPE_SOCKET_FILTER": PROG_TYPE_SOCKET_FILTER,
        "BPF_PROG_TYPE_KPROBE": PROG_TYPE_KPROBE, "BPF_PROG_TYPE_SCHED_CLS": PROG_TYPE_SCHED_CLS,
        "BPF_PROG_TYPE_TRACEPOINT": PROG_TYPE_TRACEPOINT, "BPF_PROG_TYPE_XDP": PROG_TYPE_XDP,
        "BPF_PROG_TYPE_PERF_EVENT": PROG_TYPE_PERF_EVENT,
        "BPF_PROG_TYPE_CGROUP_SKB": PROG_TYPE_CGROUP_SKB,
        "BPF_PROG_TYPE_RAW_TRACEPOINT": PROG_TYPE_RAW_TRACEPOINT,
        "BPF_PROG_TYPE_TRACING": PROG_TYPE_TRACING, "BPF_PROG_TYPE_SYSCALL": PROG_TYPE_SYSCALL,
    },
    # Anonymous enums of the uapi header: found by their enumerators.
    None: {
        "BPF_ANY": ANY, "BPF_NOEXIST": NOEXIST, "BPF_EXIST": EXIST, "BPF_F_LOCK": F_LOCK,
        "BPF_F_RDONLY": F_RDONLY, "BPF_F_WRONLY": F_WRONLY, "BPF_F_MMAPABLE": F_MMAPABLE,
        "BPF_RINGBUF_BUSY_BIT": RINGBUF_BUSY_BIT,
        "BPF_RINGBUF_DISCARD_BIT": RINGBUF_DISCARD_BIT, "BPF_RINGBUF_HDR_SZ": RINGBUF_HDR_SZ,
    },
}

# Packers, built once from the tables (hot paths use them with their C methods).
_CREATE = ATTR_MAP_CREATE.struct("map_type", "key_size", "value_size", "max_entries",
                                 "map_flags")
_CREATE_NAME = ATTR_MAP_CREATE.struct("map_name")
_ELEM = ATTR_MAP_ELEM.struct("map_fd", "key", "value", "flags")
_ELEM_PTRS = ATTR_MAP_ELEM.struct("key", "value")
_NEXT_KEY = ATTR_MAP_ELEM.struct("map_fd", "key", "next_key")
_BATCH = ATTR_MAP_BATCH.struct("in_batch", "out_batch", "keys", "values", "count", "map_fd",
                               "elem_flags")
_BATCH_PTRS = ATTR_MAP_BATCH.struct("keys", "values", "count")
_BATCH_COUNT = ATTR_MAP_BATCH.struct("count")
_OBJ = ATTR_OBJ.struct("pathname", "bpf_fd", "file_flags")
_ID_START = ATTR_GET_ID.struct("start_id")
_ID_NEXT = ATTR_GET_ID.struct("next_id")
_ID_OPEN = ATTR_GET_ID.struct("map_id", "next_id", "open_flags")
_INFO = ATTR_INFO.struct("bpf_fd", "info_len", "info")
_RUN_FD = ATTR_TEST_RUN.struct("prog_fd")
_RUN_RETVAL = ATTR_TEST_RUN.struct("retval")
_RUN_DURATION = ATTR_TEST_RUN.struct("duration")
_RUN_DATA = ATTR_TEST_RUN.struct("data_size_in", "data_size_out", "data_in")
_RUN_REPEAT = ATTR_TEST_RUN.struct("repeat")
_RUN_CTX = ATTR_TEST_RUN.struct("ctx_size_in", "ctx_size_out", "ctx_in")
_RUN_CPU = ATTR_TEST_RUN.struct("flags", "cpu")
TEST_RUN_ON_CPU = 1  # BPF_F_TEST_RUN_ON_CPU (raw_tp test runs)
_MAP_INFO = MAP_INFO.struct("type", "id", "key_size", "value_size", "max_entries",
                            "map_flags", "name", "btf_id", "btf_key_type_id",
                            "btf_value_type_id")
_PROG_MAPS = PROG_INFO.struct("nr_map_ids", "map_ids")
_PROG_NR_MAPS = PROG_INFO.struct("nr_map_ids")
_PROG_BTF = PROG_INFO.struct("btf_id")
_BTF_DATA = BTF_INFO.struct("btf", "btf_size")
_BTF_SIZE = BTF_INFO.struct("btf_size")

# --------------------------------------------------------------------------------------
# The system call
# --------------------------------------------------------------------------------------

_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "i686": 357, "s390x": 351}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
# syscall(2) without argtypes, for prepared calls that pass prebuilt ctypes
# arguments: it saves the per-call argument conversion (~0.3 us).
_raw_syscall = ctypes.CDLL(None, use_errno=True).syscall
_raw_syscall.restype = ctypes.c_long


def possible_cpus() -> int:
    """Number of possible CPUs: the slot count of per-CPU map values.

    The kernel sizes per-CPU values by ``num_possible_cpus()``, which can
    exceed the online count (``os.cpu_count()``).
    """
    global _POSSIBLE
    if _POSSIBLE is None:
        try:
            with open("/sys/devices/system/cpu/possible") as f:
                spec = f.read().strip()
            n = 0
            for part in spec.split(","):
                lo, _, hi = part.partition("-")
                n = max(n, int(hi or lo) + 1)
            _POSSIBLE = n
        except OSError:
            _POSSIBLE = os.cpu_count() or 1
    return _POSSIBLE


_POSSIBLE: int | None = None


def _nr_bpf() -> int:
    machine = platform.machine()
    try:
        return _NR_BPF[machine]
    except KeyError:
        raise KernelTooOld(f"bpf() syscall number unknown for architecture {machine}") from None


NR_BPF = _nr_bpf()

PRIV_HINT = (
    "run as root, or grant CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN "
    "(kernel.unprivileged_bpf_disabled blocks unprivileged BPF)"
)
_PRIV_HINT = PRIV_HINT
#: ENOTSUPP: a kernel-internal errno that leaks out of some map operations.
ENOTSUPP = 524


def error_from_errno(err: int, what: str) -> BPFError:
    """Map an errno from the kernel to the most precise bpfring exception."""
    msg = f"{what}: {os.strerror(err)}"
    if err in (_errno.EPERM, _errno.EACCES):
        return BPFPermissionError(msg, errno=err, hint=PRIV_HINT)
    if err == _errno.ENOSYS:
        return KernelTooOld(msg, errno=err, hint="this kernel was built without CONFIG_BPF_SYSCALL")
    if err == ENOTSUPP:
        return BPFError(f"{what}: operation not supported by this map type", errno=err)
    return BPFError(msg, errno=err)


def bpf(cmd: int, attr: bytearray, what: str) -> int:
    """Issue bpf(cmd, attr); return the result or raise a :class:`BPFError`."""
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    while True:
        ret: int = _syscall(NR_BPF, cmd, ctypes.addressof(buf), len(attr))
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err != _errno.EINTR:
            raise error_from_errno(err, what)


def _attr() -> bytearray:
    return bytearray(ATTR_SIZE)


_ATTR_SIZE = ATTR_SIZE

def _addr(obj: ctypes.Array[Any] | ctypes.Structure | bytearray | memoryview) -> int:
    """Address of a ctypes object or writable buffer (caller keeps it alive)."""
    if isinstance(obj, ctypes._SimpleCData | ctypes.Array | ctypes.Structure):
        return ctypes.addressof(obj)
    return ctypes.addressof((ctypes.c_char * len(obj)).from_buffer(obj))


# --------------------------------------------------------------------------------------
# Prepared argument objects
# --------------------------------------------------------------------------------------


class SupportsFd(Protocol):
    """Anything with a BPF object's fd: :class:`~bpfring.Program`, :class:`~bpfring.Map`."""

    @property
    def fd(self) -> int: ...


def _fd_of(obj: int | SupportsFd) -> int:
    if isinstance(obj, int):
        return obj
    fd = getattr(obj, "fd", None)
    if not isinstance(fd, int):
        raise TypeError(f"expected a program/map or an fd, got {type(obj).__name__}")
    return fd


class Attr:
    """One ``union bpf_attr`` block for one command, allocated and addressed
    once: fill it with a :class:`Layout`'s packers (``buf`` is a fixed-size
    bytearray), then call it as often as needed; each call is one bpf()
    system call with prebuilt ctypes arguments.
    """

    __slots__ = ("_args", "_cbuf", "addr", "buf", "cmd", "what")

    def __init__(self, cmd: int, what: str) -> None:
        self.cmd = cmd
        self.what = what
        self.buf = bytearray(ATTR_SIZE)
        # The ctypes view pins the bytearray (it can no longer be resized) and
        # gives it a stable address for the pointers the kernel reads.
        self._cbuf = (ctypes.c_char * ATTR_SIZE).from_buffer(self.buf)
        self.addr = ctypes.addressof(self._cbuf)
        self._args = (ctypes.c_long(NR_BPF), ctypes.c_int(cmd), ctypes.c_void_p(self.addr),
                      ctypes.c_uint(ATTR_SIZE))

    def __call__(self) -> int:
        """Issue the command; return the result or raise a :class:`BPFError`."""
        ret: int = _raw_syscall(*self._args)
        return ret if ret >= 0 else self.failed(ctypes.get_errno())

    def failed(self, err: int) -> int:
        """After a call failed with ``err``: raise its error, or issue the
        command again if a signal interrupted it (EINTR)."""
        while err == _errno.EINTR:
            ret: int = _raw_syscall(*self._args)
            if ret >= 0:
                return ret
            err = ctypes.get_errno()
        raise error_from_errno(err, self.what)


class _Pinned:
    """A fixed-size bytearray with a stable address (kept as long as we are)."""

    __slots__ = ("addr", "buf", "cbuf")

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.cbuf = (ctypes.c_char * size).from_buffer(self.buf) if size else None
        self.addr = ctypes.addressof(self.cbuf) if self.cbuf is not None else 0


class PreparedRun:
    """``BPF_PROG_TEST_RUN`` of one program, prepared once and run many times.

    The attribute block, the context buffer :attr:`ctx` and the input packet
    :attr:`data` are allocated once and their addresses written into the
    attributes once, so :meth:`run` is one system call with no allocation:
    the way to drive a ``SEC("syscall")`` program from a loop.  Fill ``ctx``
    (a fixed-size bytearray, e.g. with ``struct.pack_into``) before a run; a
    syscall program's context is copied back into ``ctx`` when it returns,
    which is how such programs hand results back.

    ``program`` is a :class:`~bpfring.Program` (or anything with an ``fd``) or
    a program fd; the fd must stay open while this object is used.
    """

    __slots__ = ("_args", "_attr", "_ctx", "_data", "_retval", "ctx", "data")

    def __init__(self, program: int | SupportsFd, *, ctx_size: int = 0, data_size: int = 0,
                 repeat: int = 0, what: str | None = None) -> None:
        if ctx_size < 0 or data_size < 0 or repeat < 0:
            raise ValueError("ctx_size, data_size and repeat must be >= 0")
        fd = _fd_of(program)
        self._attr = Attr(PROG_TEST_RUN, what or f"test-running program fd {fd}")
        self._ctx = _Pinned(ctx_size)
        self._data = _Pinned(data_size)
        #: The context passed to the program (and copied back by syscall programs).
        self.ctx = self._ctx.buf
        #: The input packet, for program types that take one (XDP, TC, ...).
        self.data = self._data.buf
        buf = self._attr.buf
        _RUN_FD.pack_into(buf, _RUN_FD.offset, fd)
        _RUN_REPEAT.pack_into(buf, _RUN_REPEAT.offset, repeat)
        if ctx_size:
            _RUN_CTX.pack_into(buf, _RUN_CTX.offset, ctx_size, 0, self._ctx.addr)
        if data_size:
            _RUN_DATA.pack_into(buf, _RUN_DATA.offset, data_size, 0, self._data.addr)
        # The hot path reads these two without a lookup through the Attr.
        self._args = self._attr._args
        # retval: a u32 the program returns as a C int (the kernel's byte order).
        off = _RUN_RETVAL.offset
        self._retval = memoryview(buf)[off:off + _RUN_RETVAL.size].cast("i")

    def run(self) -> int:
        """Run the program once; return its return value (a C ``int``)."""
        if _raw_syscall(*self._args) < 0:
            self._attr.failed(ctypes.get_errno())
        ret: int = self._retval[0]
        return ret

    @property
    def retval(self) -> int:
        """The return value of the last run."""
        ret: int = self._retval[0]
        return ret

    @property
    def duration(self) -> int:
        """Nanoseconds the kernel measured for the last run (average per repeat)."""
        return int(_RUN_DURATION.unpack_from(self._attr.buf, _RUN_DURATION.offset)[0])


def _pinned_view(buf: object, what: str) -> tuple[memoryview, int]:
    """A writable C-contiguous buffer and its address (numpy arrays, bytearrays)."""
    try:
        mv = memoryview(buf)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must support the buffer protocol (a numpy array, "
                        f"bytearray, ...), not {type(buf).__name__}") from None
    if mv.readonly or not mv.c_contiguous:
        raise TypeError(f"{what} must be a writable C-contiguous buffer")
    mv = mv.cast("B")
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mv)) if mv.nbytes else 0
    return mv, addr


class PreparedUpdate:
    """Map updates from fixed arrays of packed keys and values, with the
    attribute blocks built once: :meth:`update_each` issues one
    ``BPF_MAP_UPDATE_ELEM`` per element, :meth:`update_batch` one
    ``BPF_MAP_UPDATE_BATCH`` over a range, both without copying the arrays
    (the kernel reads them where they are).

    ``keys`` and ``values`` are writable C-contiguous buffers (numpy arrays,
    bytearrays) holding ``count`` keys of the map's key size and ``count``
    values of its value size, back to back; they are used in place, so what
    is in them at the time of a call is what gets written.
    ``target`` is a :class:`~bpfring.Map` or a map fd (which must stay open).
    """

    __slots__ = ("_batch", "_elem", "_keys", "_kp", "_values", "_vp", "count", "key_size",
                 "value_size")

    def __init__(self, target: int | SupportsFd, keys: object, values: object,
                 flags: int = ANY) -> None:
        fd = _fd_of(target)
        info = map_info(fd)
        if info.type in PERCPU_MAP_TYPES:
            raise TypeError("PreparedUpdate does not support per-CPU maps")
        ks, vs = info.key_size, info.value_size
        self._keys, self._kp = _pinned_view(keys, "keys")
        self._values, self._vp = _pinned_view(values, "values")
        nk, nv = self._keys.nbytes, self._values.nbytes
        if not ks or not vs or nk % ks or nv % vs:
            raise ValueError(f"keys ({nk} bytes) and values ({nv} bytes) are not whole "
                             f"{ks}-byte keys and {vs}-byte values")
        if nk // ks != nv // vs:
            raise ValueError(f"{nk // ks} keys but {nv // vs} values")
        self.key_size, self.value_size, self.count = ks, vs, nk // ks
        self._elem = Attr(MAP_UPDATE_ELEM, "map update")
        _ELEM.pack_into(self._elem.buf, _ELEM.offset, fd, self._kp, self._vp, flags)
        self._batch = Attr(MAP_UPDATE_BATCH, "map update batch")
        _BATCH.pack_into(self._batch.buf, _BATCH.offset, 0, 0, self._kp, self._vp, 0, fd,
                         flags)

    def _range(self, start: int, n: int | None) -> int:
        if n is None:
            n = self.count - start
        if start < 0 or n < 0 or start + n > self.count:
            raise IndexError(f"elements {start}..{start + n} out of range (count {self.count})")
        return n

    def update_each(self, start: int = 0, n: int | None = None) -> None:
        """One BPF_MAP_UPDATE_ELEM for each of elements ``start .. start + n - 1``
        (default: to the end)."""
        n = self._range(start, n)
        attr = self._elem
        buf, call, args = attr.buf, _raw_syscall, attr._args
        pack, off = _ELEM_PTRS.pack_into, _ELEM_PTRS.offset
        ks, vs = self.key_size, self.value_size
        kp, vp = self._kp + ks * start, self._vp + vs * start
        for _ in range(n):
            pack(buf, off, kp, vp)
            if call(*args) < 0:
                attr.failed(ctypes.get_errno())
            kp += ks
            vp += vs

    def update_batch(self, start: int = 0, n: int | None = None) -> int:
        """One BPF_MAP_UPDATE_BATCH over elements ``start .. start + n - 1``
        (default: to the end); return how many the kernel applied (all of
        them, or it raises)."""
        n = self._range(start, n)
        buf = self._batch.buf
        _BATCH_PTRS.pack_into(buf, _BATCH_PTRS.offset, self._kp + self.key_size * start,
                              self._vp + self.value_size * start, n)
        self._batch()
        done: int = _BATCH_COUNT.unpack_from(buf, _BATCH_COUNT.offset)[0]
        return done


# --------------------------------------------------------------------------------------
# Maps
# --------------------------------------------------------------------------------------


def map_create(
    map_type: int, key_size: int, value_size: int, max_entries: int,
    flags: int = 0, name: str = "",
) -> int:
    a = _attr()
    _CREATE.pack_into(a, _CREATE.offset, map_type, key_size, value_size, max_entries, flags)
    # map_name is NUL-terminated: at most BPF_OBJ_NAME_LEN - 1 bytes of name.
    _CREATE_NAME.pack_into(a, _CREATE_NAME.offset, name.encode()[:_CREATE_NAME.size - 1])
    return bpf(MAP_CREATE, a, f"creating {MAP_TYPE_NAMES.get(map_type, map_type)} map")


@dataclass(frozen=True)
class MapInfo:
    """``struct bpf_map_info`` of one map."""

    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int

    @property
    def type_name(self) -> str:
        return MAP_TYPE_NAMES.get(self.type, str(self.type))


def _get_info(fd: int, info: bytearray, what: str) -> None:
    """BPF_OBJ_GET_INFO_BY_FD into ``info`` (its length is the size we pass)."""
    cinfo = (ctypes.c_char * len(info)).from_buffer(info)
    a = _attr()
    _INFO.pack_into(a, _INFO.offset, fd, len(info), ctypes.addressof(cinfo))
    bpf(OBJ_GET_INFO_BY_FD, a, what)
    del cinfo


def map_info(fd: int) -> MapInfo:
    info = bytearray(MAP_INFO.size)
    _get_info(fd, info, f"reading info of map fd {fd}")
    t, mid, ks, vs, me, fl, raw_name, btf_id, bk, bv = _MAP_INFO.unpack_from(
        info, _MAP_INFO.offset)
    name = raw_name.split(b"\0", 1)[0].decode(errors="replace")
    return MapInfo(t, mid, ks, vs, me, fl, name, btf_id, bk, bv)


def obj_get(path: str, flags: int = 0) -> int:
    p = ctypes.create_string_buffer(os.fsencode(path))
    a = _attr()
    _OBJ.pack_into(a, _OBJ.offset, ctypes.addressof(p), 0, flags)
    return bpf(OBJ_GET, a, f"opening pinned object {path}")


def obj_pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(os.fsencode(path))
    a = _attr()
    _OBJ.pack_into(a, _OBJ.offset, ctypes.addressof(p), fd, 0)
    bpf(OBJ_PIN, a, f"pinning fd {fd} at {path}")


def map_get_fd_by_id(map_id: int, flags: int = 0) -> int:
    a = _attr()
    _ID_OPEN.pack_into(a, _ID_OPEN.offset, map_id, 0, flags)
    return bpf(MAP_GET_FD_BY_ID, a, f"opening map id {map_id}")


def _next_id(cmd: int, start: int, what: str) -> int | None:
    a = _attr()
    _ID_START.pack_into(a, _ID_START.offset, start)
    try:
        bpf(cmd, a, what)
    except BPFError as e:
        if e.errno == _errno.ENOENT:
            return None
        raise
    return int(_ID_NEXT.unpack_from(a, _ID_NEXT.offset)[0])


def map_ids() -> list[int]:
    """All map ids on the host, in increasing order."""
    ids, cur = [], 0
    while (nxt := _next_id(MAP_GET_NEXT_ID, cur, "listing maps")) is not None:
        ids.append(nxt)
        cur = nxt
    return ids


def prog_ids() -> list[int]:
    """All program ids on the host, in increasing order."""
    ids, cur = [], 0
    while (nxt := _next_id(PROG_GET_NEXT_ID, cur, "listing programs")) is not None:
        ids.append(nxt)
        cur = nxt
    return ids


def prog_get_fd_by_id(prog_id: int) -> int:
    a = _attr()
    _ID_START.pack_into(a, _ID_START.offset, prog_id)  # prog_id shares start_id's offset
    return bpf(PROG_GET_FD_BY_ID, a, f"opening program id {prog_id}")


def prog_info(fd: int) -> tuple[list[int], int]:
    """(ids of the maps a program uses, id of its BTF object or 0), from
    ``struct bpf_prog_info``: a first call for the count, a second with room
    for the ids."""
    info = bytearray(PROG_INFO.size)
    _get_info(fd, info, "reading program info")
    n = int(_PROG_NR_MAPS.unpack_from(info, _PROG_NR_MAPS.offset)[0])
    btf_id = int(_PROG_BTF.unpack_from(info, _PROG_BTF.offset)[0])
    if n == 0:
        return [], btf_id
    ids = (ctypes.c_uint32 * n)()
    info[:] = bytes(len(info))
    _PROG_MAPS.pack_into(info, _PROG_MAPS.offset, n, ctypes.addressof(ids))
    _get_info(fd, info, "reading program map ids")
    return list(ids), btf_id


def _elem(cmd: int, fd: int, key: bytes | bytearray, value: bytes | bytearray | None,
          vlen: int, flags: int, what: str) -> tuple[bytearray, int] | None:
    """One element command with attr, key and value in a single buffer:
    one allocation and one address lookup per call (these run per map
    operation).  Returns (buffer, value offset), or None for ENOENT."""
    klen = len(key)
    buf = bytearray(ATTR_SIZE + klen + vlen)
    cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
    base = ctypes.addressof(cbuf)
    koff = ATTR_SIZE
    voff = koff + klen
    buf[koff:voff] = key
    if value is not None:
        buf[voff:voff + vlen] = value
    _ELEM.pack_into(buf, _ELEM.offset, fd, base + koff, base + voff if vlen else 0, flags)
    while True:
        ret = _syscall(NR_BPF, cmd, base, ATTR_SIZE)
        if ret >= 0:
            break
        err = ctypes.get_errno()
        if err == _errno.EINTR:
            continue
        del cbuf
        if err == _errno.ENOENT:
            return None
        raise error_from_errno(err, what)
    del cbuf
    return buf, voff


def percpu_sum(fd: int, key: int = 0) -> int:
    """Sum over CPUs of a per-CPU array's u64 slot ``key`` (0 if absent): how
    ``<bpfring/ring.bpf.h>``'s lost-record counters are read."""
    val = bytearray(8 * possible_cpus())
    if not map_lookup(fd, key.to_bytes(4, "little"), val):
        return 0
    return sum(memoryview(val).cast("Q"))


def map_lookup(fd: int, key: bytes | bytearray, value: bytearray, flags: int = 0) -> bool:
    """Look up ``key``; fill ``value`` and return True, or False when absent."""
    res = _elem(MAP_LOOKUP_ELEM, fd, key, None, len(value), flags, "map lookup")
    if res is None:
        return False
    buf, voff = res
    value[:] = buf[voff:]
    return True


def map_update(fd: int, key: bytes | bytearray, value: bytes | bytearray, flags: int = ANY) -> None:
    if _elem(MAP_UPDATE_ELEM, fd, key, value, len(value), flags, "map update") is None:
        raise error_from_errno(_errno.ENOENT, "map update")


def map_delete(fd: int, key: bytes | bytearray) -> bool:
    """Delete ``key``; return False when it was absent."""
    return _elem(MAP_DELETE_ELEM, fd, key, None, 0, 0, "map delete") is not None


def map_next_key(fd: int, key: bytes | bytearray | None, key_size: int) -> bytes | None:
    nxt = bytearray(key_size)
    a = _attr()
    if key is None:
        _NEXT_KEY.pack_into(a, _NEXT_KEY.offset, fd, 0, _addr(nxt))
    else:
        k = bytearray(key)
        _NEXT_KEY.pack_into(a, _NEXT_KEY.offset, fd, _addr(k), _addr(nxt))
    try:
        bpf(MAP_GET_NEXT_KEY, a, "map get_next_key")
    except BPFError as e:
        if e.errno == _errno.ENOENT:
            return None
        raise
    return bytes(nxt)


def map_update_batch(fd: int, keys: bytearray, values: bytearray, count: int,
                     elem_flags: int = ANY) -> int:
    """BPF_MAP_UPDATE_BATCH over packed keys/values; return how many were applied."""
    a = _attr()
    _BATCH.pack_into(a, _BATCH.offset, 0, 0, _addr(keys), _addr(values), count, fd, elem_flags)
    try:
        bpf(MAP_UPDATE_BATCH, a, "map update batch")
    except BPFError as e:
        e.applied = _BATCH_COUNT.unpack_from(a, _BATCH_COUNT.offset)[0]  # type: ignore[attr-defined]
        raise
    return int(_BATCH_COUNT.unpack_from(a, _BATCH_COUNT.offset)[0])


def map_lookup_batch(fd: int, keys: bytearray, values: bytearray, count: int,
                     in_batch: bytearray | None, out_batch: bytearray) -> tuple[int, bool]:
    """One BPF_MAP_LOOKUP_BATCH step; return (entries read, finished)."""
    a = _attr()
    _BATCH.pack_into(a, _BATCH.offset, _addr(in_batch) if in_batch is not None else 0,
                     _addr(out_batch), _addr(keys), _addr(values), count, fd, 0)
    try:
        bpf(MAP_LOOKUP_BATCH, a, "map lookup batch")
    except BPFError as e:
        if e.errno == _errno.ENOENT:
            return int(_BATCH_COUNT.unpack_from(a, _BATCH_COUNT.offset)[0]), True
        raise
    return int(_BATCH_COUNT.unpack_from(a, _BATCH_COUNT.offset)[0]), False


# --------------------------------------------------------------------------------------
# Programs and BTF
# --------------------------------------------------------------------------------------


def prog_test_run(prog_fd: int, data: bytes = b"", ctx: bytes | None = None,
                  repeat: int = 0, cpu: int | None = None) -> int:
    """BPF_PROG_TEST_RUN; return the program's return value.  ``cpu``: run on
    that CPU (BPF_F_TEST_RUN_ON_CPU; raw_tp programs only)."""
    din = bytearray(data) if data else None
    cin = bytearray(ctx) if ctx else None
    a = _attr()
    _RUN_FD.pack_into(a, _RUN_FD.offset, prog_fd)
    _RUN_REPEAT.pack_into(a, _RUN_REPEAT.offset, repeat)
    if din:
        _RUN_DATA.pack_into(a, _RUN_DATA.offset, len(din), 0, _addr(din))
    if cin:
        _RUN_CTX.pack_into(a, _RUN_CTX.offset, len(cin), 0, _addr(cin))
    if cpu is not None:
        _RUN_CPU.pack_into(a, _RUN_CPU.offset, TEST_RUN_ON_CPU, cpu)
    bpf(PROG_TEST_RUN, a, f"test-running program fd {prog_fd}")
    return int(_RUN_RETVAL.unpack_from(a, _RUN_RETVAL.offset)[0])


def btf_get_fd_by_id(btf_id: int) -> int:
    a = _attr()
    _ID_START.pack_into(a, _ID_START.offset, btf_id)  # btf_id shares start_id's offset
    return bpf(BTF_GET_FD_BY_ID, a, f"opening BTF id {btf_id}")


def btf_raw(btf_fd: int) -> bytes:
    """The raw BTF blob of a loaded BTF object (two calls: size, then data)."""
    info = bytearray(BTF_INFO.size)
    _get_info(btf_fd, info, "reading BTF info")
    size = int(_BTF_SIZE.unpack_from(info, _BTF_SIZE.offset)[0])
    blob = ctypes.create_string_buffer(size)
    info[:] = bytes(len(info))
    _BTF_DATA.pack_into(info, _BTF_DATA.offset, ctypes.addressof(blob), size)
    _get_info(btf_fd, info, "reading BTF data")
    return blob.raw[:size]
