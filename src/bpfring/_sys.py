"""The bpf(2) system call and its attribute layouts (cf. cilium/ebpf's internal/sys).

Only what bpfring needs is here: creating and finding maps, map info, pinning,
element and batch operations, BTF objects and BPF_PROG_TEST_RUN.  Attributes are
packed with :mod:`struct` at the offsets of ``union bpf_attr`` in
``include/uapi/linux/bpf.h``; the kernel zero-extends a shorter ``size`` so we
pass a fixed 128-byte block (smaller than every kernel's union since 5.x).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform
import struct
from dataclasses import dataclass

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
MAP_TYPE_RINGBUF = 27
MAP_TYPE_USER_RINGBUF = 31
PERCPU_MAP_TYPES = frozenset({5, 6, 10, 21})

# --- flags ----------------------------------------------------------------------
F_RDONLY = 1 << 3
F_WRONLY = 1 << 4
ANY = 0
NOEXIST = 1
EXIST = 2

_ATTR_SIZE = 128
_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "i686": 357, "s390x": 351}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]


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

_PRIV_HINT = (
    "run as root, or grant CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN "
    "(kernel.unprivileged_bpf_disabled blocks unprivileged BPF)"
)


def error_from_errno(err: int, what: str) -> BPFError:
    """Map an errno from the kernel to the most precise bpfring exception."""
    msg = f"{what}: {os.strerror(err)}"
    if err in (_errno.EPERM, _errno.EACCES):
        return BPFPermissionError(msg, errno=err, hint=_PRIV_HINT)
    if err == _errno.ENOSYS:
        return KernelTooOld(msg, errno=err, hint="this kernel was built without CONFIG_BPF_SYSCALL")
    if err == 524:  # ENOTSUPP: kernel-internal errno that leaks out of some map ops
        return BPFError(f"{what}: operation not supported by this map type", errno=err)
    return BPFError(msg, errno=err)


def bpf(cmd: int, attr: bytearray, what: str) -> int:
    """Issue bpf(cmd, attr); return the result or raise a :class:`BPFError`."""
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    while True:
        ret = _syscall(NR_BPF, cmd, ctypes.addressof(buf), len(attr))
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err != _errno.EINTR:
            raise error_from_errno(err, what)


def _attr() -> bytearray:
    return bytearray(_ATTR_SIZE)


def _addr(obj) -> int:
    """Address of a ctypes object or writable buffer (caller keeps it alive)."""
    if isinstance(obj, ctypes._SimpleCData | ctypes.Array | ctypes.Structure):
        return ctypes.addressof(obj)
    return ctypes.addressof((ctypes.c_char * len(obj)).from_buffer(obj))


# --- maps ---------------------------------------------------------------------------


def map_create(
    map_type: int, key_size: int, value_size: int, max_entries: int,
    flags: int = 0, name: str = "",
) -> int:
    a = _attr()
    struct.pack_into("<5I", a, 0, map_type, key_size, value_size, max_entries, flags)
    a[28:28 + 15] = name.encode()[:15].ljust(15, b"\0")
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


def map_info(fd: int) -> MapInfo:
    info = bytearray(104)
    cinfo = (ctypes.c_char * len(info)).from_buffer(info)
    a = _attr()
    struct.pack_into("<IIQ", a, 0, fd, len(info), ctypes.addressof(cinfo))
    bpf(OBJ_GET_INFO_BY_FD, a, f"reading info of map fd {fd}")
    t, mid, ks, vs, me, fl = struct.unpack_from("<6I", info, 0)
    name = bytes(info[24:40]).split(b"\0", 1)[0].decode(errors="replace")
    btf_id, bk, bv = struct.unpack_from("<3I", info, 64)
    return MapInfo(t, mid, ks, vs, me, fl, name, btf_id, bk, bv)


def obj_get(path: str, flags: int = 0) -> int:
    p = ctypes.create_string_buffer(os.fsencode(path))
    a = _attr()
    struct.pack_into("<QII", a, 0, ctypes.addressof(p), 0, flags)
    return bpf(OBJ_GET, a, f"opening pinned object {path}")


def obj_pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(os.fsencode(path))
    a = _attr()
    struct.pack_into("<QII", a, 0, ctypes.addressof(p), fd, 0)
    bpf(OBJ_PIN, a, f"pinning fd {fd} at {path}")


def map_get_fd_by_id(map_id: int, flags: int = 0) -> int:
    a = _attr()
    struct.pack_into("<III", a, 0, map_id, 0, flags)
    return bpf(MAP_GET_FD_BY_ID, a, f"opening map id {map_id}")


def _next_id(cmd: int, start: int, what: str) -> int | None:
    a = _attr()
    struct.pack_into("<I", a, 0, start)
    try:
        bpf(cmd, a, what)
    except BPFError as e:
        if e.errno == _errno.ENOENT:
            return None
        raise
    return struct.unpack_from("<I", a, 4)[0]


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
    struct.pack_into("<I", a, 0, prog_id)
    return bpf(PROG_GET_FD_BY_ID, a, f"opening program id {prog_id}")


def prog_info(fd: int) -> tuple[list[int], int]:
    """(ids of the maps a program uses, id of its BTF object or 0), from
    ``struct bpf_prog_info`` (``nr_map_ids``/``map_ids`` at 52/56,
    ``btf_id`` at 128)."""
    info = bytearray(136)
    cinfo = (ctypes.c_char * len(info)).from_buffer(info)
    a = _attr()
    struct.pack_into("<IIQ", a, 0, fd, len(info), ctypes.addressof(cinfo))
    bpf(OBJ_GET_INFO_BY_FD, a, "reading program info")
    n = struct.unpack_from("<I", info, 52)[0]
    btf_id = struct.unpack_from("<I", info, 128)[0]
    if n == 0:
        return [], btf_id
    ids = (ctypes.c_uint32 * n)()
    info[:] = bytes(len(info))
    struct.pack_into("<IQ", info, 52, n, ctypes.addressof(ids))
    struct.pack_into("<IIQ", a, 0, fd, len(info), ctypes.addressof(cinfo))
    bpf(OBJ_GET_INFO_BY_FD, a, "reading program map ids")
    return list(ids), btf_id


def _elem(cmd: int, fd: int, key: bytes | bytearray, value: bytes | bytearray | None,
          vlen: int, flags: int, what: str) -> tuple[bytearray, int] | None:
    """One element command with attr, key and value in a single buffer:
    one allocation and one address lookup per call (these run per map
    operation).  Returns (buffer, value offset), or None for ENOENT."""
    klen = len(key)
    buf = bytearray(_ATTR_SIZE + klen + vlen)
    cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
    base = ctypes.addressof(cbuf)
    koff = _ATTR_SIZE
    voff = koff + klen
    buf[koff:voff] = key
    if value is not None:
        buf[voff:voff + vlen] = value
    struct.pack_into("<IIQQQ", buf, 0, fd, 0, base + koff, base + voff if vlen else 0, flags)
    while True:
        ret = _syscall(NR_BPF, cmd, base, _ATTR_SIZE)
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
        struct.pack_into("<IIQQ", a, 0, fd, 0, 0, _addr(nxt))
    else:
        k = bytearray(key)
        struct.pack_into("<IIQQ", a, 0, fd, 0, _addr(k), _addr(nxt))
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
    struct.pack_into("<QQQQIIQ", a, 0, 0, 0, _addr(keys), _addr(values), count, fd,
                     elem_flags)
    try:
        bpf(MAP_UPDATE_BATCH, a, "map update batch")
    except BPFError as e:
        e.applied = struct.unpack_from("<I", a, 32)[0]  # type: ignore[attr-defined]
        raise
    return struct.unpack_from("<I", a, 32)[0]


def map_lookup_batch(fd: int, keys: bytearray, values: bytearray, count: int,
                     in_batch: bytearray | None, out_batch: bytearray) -> tuple[int, bool]:
    """One BPF_MAP_LOOKUP_BATCH step; return (entries read, finished)."""
    a = _attr()
    struct.pack_into("<QQQQII", a, 0, _addr(in_batch) if in_batch is not None else 0,
                     _addr(out_batch), _addr(keys), _addr(values), count, fd)
    try:
        bpf(MAP_LOOKUP_BATCH, a, "map lookup batch")
    except BPFError as e:
        if e.errno == _errno.ENOENT:
            return struct.unpack_from("<I", a, 32)[0], True
        raise
    return struct.unpack_from("<I", a, 32)[0], False


# --- programs and BTF --------------------------------------------------------------


def prog_test_run(prog_fd: int, data: bytes = b"", ctx: bytes | None = None,
                  repeat: int = 0) -> int:
    """BPF_PROG_TEST_RUN; return the program's return value."""
    din = bytearray(data) if data else None
    cin = bytearray(ctx) if ctx else None
    a = _attr()
    struct.pack_into("<IIIIQQII", a, 0, prog_fd, 0, len(din) if din else 0, 0,
                     _addr(din) if din else 0, 0, repeat, 0)
    struct.pack_into("<IIQQ", a, 40, len(cin) if cin else 0, 0, _addr(cin) if cin else 0, 0)
    bpf(PROG_TEST_RUN, a, f"test-running program fd {prog_fd}")
    return struct.unpack_from("<i", a, 4)[0]


def btf_get_fd_by_id(btf_id: int) -> int:
    a = _attr()
    struct.pack_into("<I", a, 0, btf_id)
    return bpf(BTF_GET_FD_BY_ID, a, f"opening BTF id {btf_id}")


def btf_raw(btf_fd: int) -> bytes:
    """The raw BTF blob of a loaded BTF object (two calls: size, then data)."""
    info = bytearray(40)
    cinfo = (ctypes.c_char * len(info)).from_buffer(info)
    a = _attr()
    struct.pack_into("<IIQ", a, 0, btf_fd, len(info), ctypes.addressof(cinfo))
    bpf(OBJ_GET_INFO_BY_FD, a, "reading BTF info")
    size = struct.unpack_from("<I", info, 8)[0]
    blob = ctypes.create_string_buffer(size)
    info[:] = bytes(40)
    struct.pack_into("<QI", info, 0, ctypes.addressof(blob), size)
    struct.pack_into("<IIQ", a, 0, btf_fd, len(info), ctypes.addressof(cinfo))
    bpf(OBJ_GET_INFO_BY_FD, a, "reading BTF data")
    return blob.raw[:size]
