"""BPF helpers for user-space programs: id -> (name, implementation).

Each implementation takes the :class:`~._interp.Interpreter` and r1-r5 and
returns r0, with the kernel's semantics and return codes (cited per helper).
Pointers are checked against the region table: a pointer the kernel's
verifier would have refused (not a map, not a reserved record, memory
outside every region) raises :class:`~._memory.Fault`, which the interpreter
reports as :class:`~bpfring.userspace.UserRuntimeError`; conditions the
kernel reports at run time (a full ring, a missing key, a bad flag) are
return codes, as there.

``HELPERS`` is the table both backends share; an object calling an id not in
it is refused at load with the helper's name.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._maps import UserMap
from ._memory import M64, MAP_TAG, Fault
from ._printf import FormatError, bprintf
from ._timers import TIMER_HELPERS

if TYPE_CHECKING:
    from ._interp import Interpreter

__all__ = ["HELPERS", "KFUNCS", "helper_name"]

log = logging.getLogger("bpfring.userspace")

MAX_BPRINTF_VARARGS = 12
MAX_TRACE_PRINTK_VARARGS = 3
MAX_BPRINTF_BUF = 512
BPF_MAX_LOOPS = 1 << 23
TASK_COMM_LEN = 16


def _neg(err: int) -> int:
    return (-err) & M64


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_vm_readv = _libc.process_vm_readv
_vm_readv.restype = ctypes.c_ssize_t
_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong,
                      ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.c_ulong]


def read_process(addr: int, size: int) -> bytes | None:
    """``size`` bytes at the real address ``addr`` of this process, or None when
    any of them is not mapped readable (process_vm_readv never faults)."""
    if size == 0:
        return b""
    buf = ctypes.create_string_buffer(size)
    local = _IOVec(ctypes.cast(buf, ctypes.c_void_p), size)
    remote = _IOVec(addr, size)
    got = _vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if got != size:
        return None
    return buf.raw


def _map(vm: Interpreter, addr: int, what: str = "map") -> UserMap:
    maps: list[UserMap] = vm.context.maps
    i = (addr - MAP_TAG) & M64
    if i >= len(maps):
        raise Fault(f"{what} argument {vm.mem.describe(addr)} is not a map")
    return maps[i]


def _read(vm: Interpreter, addr: int, size: int, what: str) -> bytes:
    mem = vm.mem
    reg = mem.regions.get((addr & M64) >> 32)
    off = addr & 0xFFFF_FFFF
    if reg is not None and size > 0 and off + size <= reg.size:
        return bytes(reg.buf[off:off + size])  # Memory.read's allowed case, inlined (hot)
    try:
        return mem.read(addr, size)
    except Fault as e:
        raise Fault(f"{what}: {e}") from None


# maps -------------------------------------------------------------------------------


def map_lookup_elem(vm: Interpreter, m: int, key: int, *_: int) -> int:
    mp = _map(vm, m)
    return mp.p_lookup(_read(vm, key, mp.key_size, "key"))


def map_lookup_percpu_elem(vm: Interpreter, m: int, key: int, cpu: int, *_: int) -> int:
    """The value of ``cpu``'s slot of a per-CPU map; NULL for a CPU that does not exist."""
    mp = _map(vm, m)
    if not mp.percpu:
        raise Fault(f"bpf_map_lookup_percpu_elem on {mp.type_name} map {mp.name!r}, which is "
                    "not per-CPU")
    k = _read(vm, key, mp.key_size, "key")
    cpu &= 0xFFFF_FFFF
    if cpu >= mp._ncpu:
        return 0
    return mp.p_lookup(k, cpu)


def map_update_elem(vm: Interpreter, m: int, key: int, value: int, flags: int, *_: int) -> int:
    mp = _map(vm, m)
    k = _read(vm, key, mp.key_size, "key")
    v = _read(vm, value, mp.value_size, "value")
    return mp.p_update(k, v, flags) & M64


def map_delete_elem(vm: Interpreter, m: int, key: int, *_: int) -> int:
    mp = _map(vm, m)
    return mp.p_delete(_read(vm, key, mp.key_size, "key")) & M64


def for_each_map_elem(vm: Interpreter, m: int, cb: int, ctx: int, flags: int, *_: int) -> int:
    """Calls ``cb(map, key, value, ctx)`` per element until it returns nonzero;
    returns the number of elements visited (bpf_for_each_array_elem /
    bpf_for_each_hash_elem)."""
    mp = _map(vm, m)
    if flags:
        return _neg(_errno.EINVAL)
    n = 0
    for kaddr, vaddr in mp.p_items():
        n += 1
        if vm.call(cb, (m, kaddr, vaddr, ctx)):
            break
    return n


def _queue(vm: Interpreter, m: int) -> Any:
    from ._special import QueueStackMap

    mp = _map(vm, m)
    if not isinstance(mp, QueueStackMap):
        raise Fault(f"map {mp.name!r} is a {mp.type_name} map, not a queue or stack")
    return mp


def map_push_elem(vm: Interpreter, m: int, value: int, flags: int, *_: int) -> int:
    mp = _queue(vm, m)
    return mp.p_push(_read(vm, value, mp.value_size, "value"), flags) & M64  # type: ignore[no-any-return]


def _pop_peek(vm: Interpreter, m: int, value: int, delete: bool) -> int:
    mp = _queue(vm, m)
    vm.mem.check(value, mp.value_size, True)
    ret, raw = mp.p_get(delete)
    vm.mem.write(value, raw)
    return int(ret) & M64


def map_pop_elem(vm: Interpreter, m: int, value: int, *_: int) -> int:
    return _pop_peek(vm, m, value, True)


def map_peek_elem(vm: Interpreter, m: int, value: int, *_: int) -> int:
    return _pop_peek(vm, m, value, False)


# rings ------------------------------------------------------------------------------


def _ring(vm: Interpreter, addr: int) -> Any:
    from ._ringbuf import RingBufMap

    mp = _map(vm, addr, "ring buffer")
    if not isinstance(mp, RingBufMap) or mp.type != 27:
        raise Fault(f"map {mp.name!r} is a {mp.type_name} map, not a ring buffer")
    return mp


def user_ringbuf_drain(vm: Interpreter, m: int, cb: int, ctx: int, flags: int, *_: int) -> int:
    """``cb(dynptr, ctx)`` per sample of a user ring; the dynptr (and the sample
    it points to) is read-only and valid only during the call."""
    from ._ringbuf import UserRingBufMap

    mp = _map(vm, m, "user ring buffer")
    if not isinstance(mp, UserRingBufMap):
        raise Fault(f"map {mp.name!r} is a {mp.type_name} map, not a user ring buffer")

    def one(addr: int, size: int) -> int:
        dp = bytearray(_DYNPTR.pack(addr, size | _DYNPTR_LOCAL, 0))
        dpa = vm.mem.add(memoryview(dp).toreadonly(), "dynptr", writable=False, kind="dynptr")
        try:
            return vm.call(cb, (dpa, ctx))
        finally:
            vm.mem.remove(dpa)

    return int(mp.drain(one, flags)) & M64


# dynptrs: struct bpf_dynptr_kern { void *data; u32 size (24 bits) | type << 28 |
# rdonly << 31; u32 offset; } -----------------------------------------------------------

_DYNPTR = struct.Struct("<QII")
_DYNPTR_LOCAL = 1 << 28
_DYNPTR_RDONLY = 1 << 31
_DYNPTR_SIZE = (1 << 24) - 1


def _dynptr(vm: Interpreter, addr: int) -> tuple[int, int, int, bool]:
    """(data, size, offset, read-only) of the dynptr at ``addr``."""
    data, info, off = _DYNPTR.unpack(_read(vm, addr, 16, "dynptr"))
    reg = vm.mem.region(data) if data else None
    rdonly = bool(info & _DYNPTR_RDONLY) or (reg is not None and not reg.writable)
    return data, info & _DYNPTR_SIZE, off, rdonly


def dynptr_read(vm: Interpreter, dst: int, length: int, src: int, offset: int, flags: int
                ) -> int:
    length &= 0xFFFF_FFFF
    offset &= 0xFFFF_FFFF
    data, size, off, _ro = _dynptr(vm, src)
    if flags or not data:
        return _neg(_errno.EINVAL)
    if offset > size or length > size - offset:
        return _neg(_errno.E2BIG)
    vm.mem.write(dst, _read(vm, data + off + offset, length, "dynptr data") if length else b"")
    return 0


def dynptr_write(vm: Interpreter, dst: int, offset: int, src: int, length: int, flags: int
                 ) -> int:
    length &= 0xFFFF_FFFF
    offset &= 0xFFFF_FFFF
    data, size, off, ro = _dynptr(vm, dst)
    if flags or not data or ro:
        return _neg(_errno.EINVAL)
    if offset > size or length > size - offset:
        return _neg(_errno.E2BIG)
    vm.mem.write(data + off + offset, _read(vm, src, length, "src"))
    return 0


def dynptr_data(vm: Interpreter, ptr: int, offset: int, length: int, *_: int) -> int:
    """A pointer to ``length`` bytes at ``offset`` of the dynptr's data, or NULL."""
    length &= 0xFFFF_FFFF
    offset &= 0xFFFF_FFFF
    data, size, off, _ro = _dynptr(vm, ptr)
    if not data or offset > size or length > size - offset:
        return 0
    return (data + off + offset) & M64


def _set_dynptr(vm: Interpreter, addr: int, data: int, size: int, kind: int) -> None:
    vm.mem.write(addr, _DYNPTR.pack(data, size | kind << 28 if data else 0, 0))


def ringbuf_reserve_dynptr(vm: Interpreter, ring: int, size: int, flags: int, ptr: int,
                           *_: int) -> int:
    """A record as a ringbuf dynptr; on failure the dynptr is set to null (and the
    program must still discard it, as the verifier demands)."""
    mp = _ring(vm, ring)
    size &= 0xFFFF_FFFF
    vm.mem.check(ptr, 16, True)
    if size > _DYNPTR_SIZE:
        _set_dynptr(vm, ptr, 0, 0, 0)
        return _neg(_errno.E2BIG)
    if flags:
        _set_dynptr(vm, ptr, 0, 0, 0)
        return _neg(_errno.EINVAL)
    addr = mp.reserve(size)
    if not addr:
        _set_dynptr(vm, ptr, 0, 0, 0)
        return _neg(_errno.EAGAIN)
    _set_dynptr(vm, ptr, addr, size, 2)  # BPF_DYNPTR_TYPE_RINGBUF
    return 0


def _dynptr_commit(vm: Interpreter, ptr: int, flags: int, discard: bool) -> int:
    data, _size, _off, _ro = _dynptr(vm, ptr)
    if data:  # a null dynptr (failed reserve) is a no-op
        _record_owner(vm, data).commit(data, flags, discard)
        _set_dynptr(vm, ptr, 0, 0, 0)
    return 0


def ringbuf_submit_dynptr(vm: Interpreter, ptr: int, flags: int, *_: int) -> int:
    return _dynptr_commit(vm, ptr, flags, False)


def ringbuf_discard_dynptr(vm: Interpreter, ptr: int, flags: int, *_: int) -> int:
    return _dynptr_commit(vm, ptr, flags, True)


def kfunc_dynptr_size(vm: Interpreter, ptr: int, *_: int) -> int:
    return _dynptr(vm, ptr)[1]


def _record_owner(vm: Interpreter, addr: int) -> Any:
    from ._ringbuf import RingBufMap

    for mp in vm.context.maps:
        if isinstance(mp, RingBufMap) and mp.is_record(addr):
            return mp
    raise Fault(f"{vm.mem.describe(addr)} is not a reserved ring buffer record "
                "(submitted or discarded already?)")


def ringbuf_output(vm: Interpreter, ring: int, data: int, size: int, flags: int,
                   *_: int) -> int:
    mp = _ring(vm, ring)
    payload = _read(vm, data, size, "data")
    return mp.output(payload, flags) & M64  # type: ignore[no-any-return]


def perf_event_output(vm: Interpreter, ctx: int, m: int, flags: int, data: int, size: int
                      ) -> int:
    """bpf_perf_event_output: into the slot ``flags & BPF_F_INDEX_MASK`` (or this
    CPU's) of a perf event array; into the relay of one bound to a kernel ring or
    kernel perf event array."""
    from ._kernel import KernelPerfMap, KernelRingMap
    from ._perf import CTXLEN_MASK, CURRENT_CPU, INDEX_MASK, PerfEventArrayMap

    mp = _map(vm, m, "perf event array")
    size &= 0xFFFF_FFFF
    payload = _read(vm, data, size, "data")
    if flags & ~(INDEX_MASK | CTXLEN_MASK) or flags & CTXLEN_MASK:
        return _neg(_errno.EINVAL)  # BPF_F_CTXLEN_MASK is for skb programs only
    if isinstance(mp, KernelRingMap):
        return mp.output(payload, 0) & M64
    if not isinstance(mp, PerfEventArrayMap | KernelPerfMap):
        raise Fault(f"map {mp.name!r} is a {mp.type_name} map, not a perf event array")
    index = flags & INDEX_MASK
    if index == CURRENT_CPU:
        index = int(vm.context.cpu())
    return mp.output(index, payload) & M64


def ringbuf_reserve(vm: Interpreter, ring: int, size: int, flags: int, *_: int) -> int:
    mp = _ring(vm, ring)
    if flags:
        return 0
    return mp.reserve(size)  # type: ignore[no-any-return]


def ringbuf_submit(vm: Interpreter, sample: int, flags: int, *_: int) -> int:
    _record_owner(vm, sample).commit(sample, flags, False)
    return 0


def ringbuf_discard(vm: Interpreter, sample: int, flags: int, *_: int) -> int:
    _record_owner(vm, sample).commit(sample, flags, True)
    return 0


def ringbuf_query(vm: Interpreter, ring: int, flags: int, *_: int) -> int:
    return _ring(vm, ring).query(flags) & M64  # type: ignore[no-any-return]


# control flow -----------------------------------------------------------------------


def loop(vm: Interpreter, nr: int, cb: int, ctx: int, flags: int, *_: int) -> int:
    """bpf_loop: ``cb(i, ctx)`` for i < nr until it returns nonzero; returns the
    number of calls made (the stopping one included).

    With flags 0 the verifier inlines the loop (inline_bpf_loop): it compares
    all 64 bits of nr with BPF_MAX_LOOPS and sets -E2BIG with a 32-bit move,
    so r0 is 0xfffffff9, not -7.  That is what programs see; the helper body
    (flags != 0) returns a 64-bit -EINVAL."""
    if flags:
        return _neg(_errno.EINVAL)
    if nr > BPF_MAX_LOOPS:
        return (-_errno.E2BIG) & 0xFFFF_FFFF
    for i in range(nr):
        if vm.call(cb, (i, ctx)):
            return i + 1
    return nr


def tail_call(vm: Interpreter, *_: int) -> int:  # pragma: no cover - done by the loop
    raise Fault("bpf_tail_call is run by the interpreter loop")


# time, ids, randomness --------------------------------------------------------------


def ktime_get_ns(vm: Interpreter, *_: int) -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def ktime_get_boot_ns(vm: Interpreter, *_: int) -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def ktime_get_coarse_ns(vm: Interpreter, *_: int) -> int:
    return time.clock_gettime_ns(getattr(time, "CLOCK_MONOTONIC_COARSE", 6))


def ktime_get_tai_ns(vm: Interpreter, *_: int) -> int:
    return time.clock_gettime_ns(getattr(time, "CLOCK_TAI", 11))


def get_prandom_u32(vm: Interpreter, *_: int) -> int:
    return int(vm.context.rng.getrandbits(32))


def get_smp_processor_id(vm: Interpreter, *_: int) -> int:
    return int(vm.context.cpu())


def get_numa_node_id(vm: Interpreter, *_: int) -> int:
    return 0


def get_current_pid_tgid(vm: Interpreter, *_: int) -> int:
    return (os.getpid() << 32) | threading.get_native_id()


def get_current_uid_gid(vm: Interpreter, *_: int) -> int:
    return (os.getgid() << 32) | os.getuid()


def _comm() -> bytes:
    try:
        with open("/proc/thread-self/comm", "rb") as f:
            return f.read().rstrip(b"\n")[:TASK_COMM_LEN - 1]
    except OSError:
        return os.path.basename(sys.executable).encode()[:TASK_COMM_LEN - 1]


def get_current_comm(vm: Interpreter, buf: int, size: int, *_: int) -> int:
    """strscpy_pad(buf, current->comm, size): NUL-terminated, zero-padded."""
    size &= 0xFFFF_FFFF
    if size == 0:
        return _neg(_errno.EINVAL)
    comm = _comm()[:size - 1]
    vm.mem.check(buf, size, True)
    vm.mem.write(buf, comm.ljust(size, b"\0"))
    return 0


# memory -----------------------------------------------------------------------------


def _probe(vm: Interpreter, dst: int, size: int, src: int, user: bool) -> int:
    size &= 0xFFFF_FFFF
    if size:
        vm.mem.check(dst, size, True)
    reg = vm.mem.region(src)
    data: bytes | None
    if reg is not None:
        try:
            data = vm.mem.read(src, size)
        except Fault:
            data = None
    else:
        data = read_process(src, size) if user and src else None
    if data is None:
        vm.mem.write(dst, bytes(size))
        return _neg(_errno.EFAULT)
    vm.mem.write(dst, data)
    return 0


def _probe_str(vm: Interpreter, dst: int, size: int, src: int, user: bool) -> int:
    size &= 0xFFFF_FFFF
    if size == 0:
        return 0
    vm.mem.check(dst, size, True)
    reg = vm.mem.region(src)
    text: bytes | None = None
    if reg is not None:
        off = src & 0xFFFF_FFFF
        avail = bytes(reg.buf[off:min(reg.size, off + size - 1)])
        cut = avail.find(b"\0")
        if cut >= 0:
            text = avail[:cut]
        elif len(avail) == size - 1:
            text = avail  # truncated to size - 1
    elif user and src:
        got = bytearray()
        addr = src
        while len(got) < size - 1:
            step = min(size - 1 - len(got), 4096 - (addr & 4095))
            chunk = read_process(addr, step)
            if chunk is None:
                break
            cut = chunk.find(b"\0")
            if cut >= 0:
                got += chunk[:cut]
                text = bytes(got)
                break
            got += chunk
            addr += step
        else:
            text = bytes(got)
    if text is None:
        vm.mem.write(dst, bytes(size))
        return _neg(_errno.EFAULT)
    vm.mem.write(dst, text + b"\0")
    return len(text) + 1


def probe_read_user(vm: Interpreter, dst: int, size: int, src: int, *_: int) -> int:
    return _probe(vm, dst, size, src, True)


def probe_read_kernel(vm: Interpreter, dst: int, size: int, src: int, *_: int) -> int:
    """'Kernel' memory in user space is what the program was given: its regions."""
    return _probe(vm, dst, size, src, False)


def probe_read_user_str(vm: Interpreter, dst: int, size: int, src: int, *_: int) -> int:
    return _probe_str(vm, dst, size, src, True)


def probe_read_kernel_str(vm: Interpreter, dst: int, size: int, src: int, *_: int) -> int:
    return _probe_str(vm, dst, size, src, False)


def _const_str(vm: Interpreter, addr: int, what: str) -> bytes:
    """A string the verifier would accept as ARG_PTR_TO_CONST_STR: read-only map
    memory, NUL-terminated inside it."""
    reg = vm.mem.region(addr)
    if reg is None:
        raise Fault(f"{what} {vm.mem.describe(addr)} is not readable")
    if reg.writable:
        raise Fault(f"{what} must be a constant string (in .rodata), not {reg.kind} "
                    f"{reg.name}")
    s = vm.mem.read_cstr(addr, reg.size)
    if s is None:
        raise Fault(f"{what} is not NUL-terminated")
    return s


def _fmt(vm: Interpreter, fmt: bytes, args: list[int]) -> bytes | None:
    mem = vm.mem

    def read_str(a: int) -> bytes:
        try:
            s = mem.read_cstr(a, MAX_BPRINTF_BUF)
        except Fault:
            return b""
        return s if s is not None else b""

    def read_mem(a: int, n: int) -> bytes | None:
        try:
            return mem.read(a, n)
        except Fault:
            return None

    try:
        return bprintf(fmt, args, read_str, read_mem)
    except FormatError:
        return None


def trace_printk(vm: Interpreter, fmt: int, fmt_size: int, a1: int, a2: int, a3: int) -> int:
    fmt_size &= 0xFFFF_FFFF
    raw = _read(vm, fmt, fmt_size, "fmt")
    cut = raw.find(b"\0")
    if cut < 0:
        return _neg(_errno.EINVAL)
    text = _fmt(vm, raw[:cut], [a1, a2, a3])
    if text is None:
        return _neg(_errno.EINVAL)
    text = text[:MAX_BPRINTF_BUF - 1]
    prog = vm.image.name if vm.image is not None else "?"
    log.info("%s: %s", prog, text.decode("utf-8", "replace").rstrip("\n"))
    vm.context.printk(text)
    return len(text)


def snprintf(vm: Interpreter, out: int, size: int, fmt: int, data: int, data_len: int) -> int:
    size &= 0xFFFF_FFFF
    data_len &= 0xFFFF_FFFF
    if data_len % 8 or data_len > MAX_BPRINTF_VARARGS * 8 or (data_len and not data):
        return _neg(_errno.EINVAL)
    f = _const_str(vm, fmt, "fmt")
    raw = _read(vm, data, data_len, "data") if data_len else b""
    args = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, data_len, 8)]
    text = _fmt(vm, f, args)
    if text is None:
        return _neg(_errno.EINVAL)
    if size:
        vm.mem.check(out, size, True)
        part = text[:size - 1]
        vm.mem.write(out, part + b"\0")
    return len(text) + 1


def strncmp(vm: Interpreter, s1: int, s1_sz: int, s2: int, *_: int) -> int:
    s1_sz &= 0xFFFF_FFFF
    a = _read(vm, s1, s1_sz, "s1")
    b = _const_str(vm, s2, "s2") + b"\0"
    for i in range(s1_sz):
        c1, c2 = a[i], b[i] if i < len(b) else 0
        if c1 != c2:
            return 1 if c1 > c2 else _neg(1)
        if c1 == 0:
            break
    return 0


def spin_lock(vm: Interpreter, lock: int, *_: int) -> int:
    held: set[int] = vm.context.locks
    vm.mem.check(lock, 4, True)
    if lock in held:
        raise Fault("bpf_spin_lock on a lock this program already holds (deadlock)")
    held.add(lock)
    vm.mem.write(lock, (1).to_bytes(4, "little"))
    return 0


def spin_unlock(vm: Interpreter, lock: int, *_: int) -> int:
    held: set[int] = vm.context.locks
    vm.mem.check(lock, 4, True)
    if lock not in held:
        raise Fault("bpf_spin_unlock of a lock that is not held")
    held.discard(lock)
    vm.mem.write(lock, bytes(4))
    return 0


HELPERS: dict[int, tuple[str, Callable[..., int]]] = {
    1: ("bpf_map_lookup_elem", map_lookup_elem),
    2: ("bpf_map_update_elem", map_update_elem),
    3: ("bpf_map_delete_elem", map_delete_elem),
    4: ("bpf_probe_read", probe_read_kernel),
    5: ("bpf_ktime_get_ns", ktime_get_ns),
    6: ("bpf_trace_printk", trace_printk),
    7: ("bpf_get_prandom_u32", get_prandom_u32),
    8: ("bpf_get_smp_processor_id", get_smp_processor_id),
    12: ("bpf_tail_call", tail_call),
    14: ("bpf_get_current_pid_tgid", get_current_pid_tgid),
    15: ("bpf_get_current_uid_gid", get_current_uid_gid),
    16: ("bpf_get_current_comm", get_current_comm),
    25: ("bpf_perf_event_output", perf_event_output),
    42: ("bpf_get_numa_node_id", get_numa_node_id),
    45: ("bpf_probe_read_str", probe_read_kernel_str),
    87: ("bpf_map_push_elem", map_push_elem),
    88: ("bpf_map_pop_elem", map_pop_elem),
    89: ("bpf_map_peek_elem", map_peek_elem),
    93: ("bpf_spin_lock", spin_lock),
    94: ("bpf_spin_unlock", spin_unlock),
    112: ("bpf_probe_read_user", probe_read_user),
    113: ("bpf_probe_read_kernel", probe_read_kernel),
    114: ("bpf_probe_read_user_str", probe_read_user_str),
    115: ("bpf_probe_read_kernel_str", probe_read_kernel_str),
    125: ("bpf_ktime_get_boot_ns", ktime_get_boot_ns),
    130: ("bpf_ringbuf_output", ringbuf_output),
    131: ("bpf_ringbuf_reserve", ringbuf_reserve),
    132: ("bpf_ringbuf_submit", ringbuf_submit),
    133: ("bpf_ringbuf_discard", ringbuf_discard),
    134: ("bpf_ringbuf_query", ringbuf_query),
    160: ("bpf_ktime_get_coarse_ns", ktime_get_coarse_ns),
    164: ("bpf_for_each_map_elem", for_each_map_elem),
    165: ("bpf_snprintf", snprintf),
    181: ("bpf_loop", loop),
    182: ("bpf_strncmp", strncmp),
    195: ("bpf_map_lookup_percpu_elem", map_lookup_percpu_elem),
    198: ("bpf_ringbuf_reserve_dynptr", ringbuf_reserve_dynptr),
    199: ("bpf_ringbuf_submit_dynptr", ringbuf_submit_dynptr),
    200: ("bpf_ringbuf_discard_dynptr", ringbuf_discard_dynptr),
    201: ("bpf_dynptr_read", dynptr_read),
    202: ("bpf_dynptr_write", dynptr_write),
    203: ("bpf_dynptr_data", dynptr_data),
    208: ("bpf_ktime_get_tai_ns", ktime_get_tai_ns),
    209: ("bpf_user_ringbuf_drain", user_ringbuf_drain),
    **TIMER_HELPERS,
}

#: kfuncs by name (a kfunc call names its function through an extern symbol).
KFUNCS: dict[str, Callable[..., int]] = {
    "bpf_dynptr_size": kfunc_dynptr_size,
}

_ALL_NAMES: dict[int, str] | None = None


def helper_name(hid: int) -> str:
    """The kernel's name of helper ``hid`` (from libbpf's bpf_helper_defs.h when
    installed, for helpers this runtime does not implement), or ``helper#id``."""
    global _ALL_NAMES
    if hid in HELPERS:
        return HELPERS[hid][0]
    if _ALL_NAMES is None:
        _ALL_NAMES = {}
        import re

        try:
            with open("/usr/include/bpf/bpf_helper_defs.h") as f:
                for m in re.finditer(r"\(\*(bpf_\w+)\)\(.*?\) = \(void \*\) (\d+);", f.read()):
                    _ALL_NAMES[int(m.group(2))] = m.group(1)
        except OSError:
            pass
    return _ALL_NAMES.get(hid, f"helper#{hid}")
