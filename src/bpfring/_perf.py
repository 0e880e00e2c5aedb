"""The perf_event_open(2) ABI that perf event buffers need: constants, the
``struct perf_event_attr`` layout (checked against the kernel's BTF in the
tests), the syscall, and the CPU lists of sysfs.

``bpf_perf_event_output()`` writes into the ring of a ``PERF_COUNT_SW_BPF_OUTPUT``
software event that user space opened on each CPU and stored in a
``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` (key: CPU index, value: event fd).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import platform
import struct

from .errors import BPFError, BPFPermissionError, KernelTooOld

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3

# ioctls: _IO('$', 0) and _IO('$', 1)
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401

# struct perf_event_attr: (offset, size) of the fields we set.  The flags
# word is a run of 1-bit fields; ``watermark`` is bit 14 and makes
# ``wakeup_events`` mean ``wakeup_watermark`` (bytes instead of events).
ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER7; older and newer kernels accept it
ATTR_FIELDS: dict[str, tuple[int, int]] = {
    "type": (0, 4),
    "size": (4, 4),
    "config": (8, 8),
    "sample_period": (16, 8),
    "sample_type": (24, 8),
    "wakeup_events": (48, 4),
}
ATTR_FLAGS_OFFSET = 40
FLAG_DISABLED = 1 << 0
FLAG_FREQ = 1 << 10  # sample_period holds sample_freq (same union, offset 16)
FLAG_WATERMARK = 1 << 14

# Events a sampling program can be attached to (perf's own names), as
# (perf type, config).  Software events exist on every kernel with perf
# events; hardware ones need a PMU, which many VMs do not expose.
EVENTS: dict[str, tuple[int, int]] = {
    "cpu-clock": (PERF_TYPE_SOFTWARE, 0),
    "task-clock": (PERF_TYPE_SOFTWARE, 1),
    "page-faults": (PERF_TYPE_SOFTWARE, 2),
    "context-switches": (PERF_TYPE_SOFTWARE, 3),
    "cpu-migrations": (PERF_TYPE_SOFTWARE, 4),
    "minor-faults": (PERF_TYPE_SOFTWARE, 5),
    "major-faults": (PERF_TYPE_SOFTWARE, 6),
    "cycles": (PERF_TYPE_HARDWARE, 0),
    "instructions": (PERF_TYPE_HARDWARE, 1),
    "cache-references": (PERF_TYPE_HARDWARE, 2),
    "cache-misses": (PERF_TYPE_HARDWARE, 3),
    "branches": (PERF_TYPE_HARDWARE, 4),
    "branch-misses": (PERF_TYPE_HARDWARE, 5),
}

_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "i686": 336,
                       "s390x": 331}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def bpf_output_attr(wakeup_events: int = 1, watermark: int | None = None) -> bytearray:
    """A ``perf_event_attr`` for a BPF output event: raw samples, one per
    ``bpf_perf_event_output`` call; the reader is woken every
    ``wakeup_events`` samples, or (``watermark`` given) once that many bytes
    are waiting."""
    attr = bytearray(ATTR_SIZE)
    put = {
        "type": PERF_TYPE_SOFTWARE,
        "size": ATTR_SIZE,
        "config": PERF_COUNT_SW_BPF_OUTPUT,
        "sample_period": 1,
        "sample_type": PERF_SAMPLE_RAW,
        "wakeup_events": wakeup_events if watermark is None else watermark,
    }
    for name, value in put.items():
        off, size = ATTR_FIELDS[name]
        struct.pack_into("<Q" if size == 8 else "<I", attr, off, value)
    if watermark is not None:
        struct.pack_into("<Q", attr, ATTR_FLAGS_OFFSET, FLAG_WATERMARK)
    return attr


def sampling_attr(perf_type: int, config: int, *, period: int | None = None,
                  frequency: int | None = None, disabled: bool = True) -> bytearray:
    """A ``perf_event_attr`` for a sampling event (what a ``SEC("perf_event")``
    program is attached to): one overflow every ``period`` events, or about
    ``frequency`` per second (the kernel adjusts the period).  ``disabled``
    events count nothing until enabled (libbpf enables them once attached)."""
    if (period is None) == (frequency is None):
        raise ValueError("give exactly one of period and frequency")
    rate = period if period is not None else frequency
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise ValueError(f"period/frequency must be a positive int, not {rate!r}")
    attr = bytearray(ATTR_SIZE)
    for name, value in (("type", perf_type), ("size", ATTR_SIZE), ("config", config),
                        ("sample_period", rate)):
        off, size = ATTR_FIELDS[name]
        struct.pack_into("<Q" if size == 8 else "<I", attr, off, value)
    flags = (FLAG_DISABLED if disabled else 0) | (FLAG_FREQ if frequency is not None else 0)
    struct.pack_into("<Q", attr, ATTR_FLAGS_OFFSET, flags)
    return attr


def perf_event_open(attr: bytearray, pid: int, cpu: int, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC, what: str = "BPF output") -> int:
    """perf_event_open(2); return the new fd or raise a :class:`BPFError`.

    ``what`` names the event in error messages."""
    try:
        nr = _NR_PERF_EVENT_OPEN[platform.machine()]
    except KeyError:
        raise KernelTooOld(f"perf_event_open() syscall number unknown for "
                           f"{platform.machine()}") from None
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    while True:
        fd = _syscall(ctypes.c_long(nr), ctypes.c_void_p(ctypes.addressof(buf)),
                      ctypes.c_int(pid), ctypes.c_int(cpu), ctypes.c_int(group_fd),
                      ctypes.c_ulong(flags))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err == _errno.EINTR:
            continue
        event = what
        what = f"perf_event_open({event}, cpu {cpu})"
        if err in (_errno.EPERM, _errno.EACCES):
            raise BPFPermissionError(
                f"{what}: {os.strerror(err)}", errno=err,
                hint="run as root or grant CAP_PERFMON; kernel.perf_event_paranoid "
                     "limits unprivileged perf events")
        if err in (_errno.ENOENT, _errno.EOPNOTSUPP):
            raise KernelTooOld(f"{what}: this kernel (or machine) has no {event} events",
                               errno=err,
                               hint="hardware events need a PMU, which many VMs lack; "
                                    "use a software event such as cpu-clock"
                               if event in EVENTS and EVENTS[event][0] == PERF_TYPE_HARDWARE
                               else None)
        if err == _errno.ENODEV:
            raise BPFError(f"{what}: no such CPU (offline?)", errno=err,
                           hint="attach to online CPUs only (see "
                                "/sys/devices/system/cpu/online)")
        if err == _errno.EMFILE:
            raise BPFError(f"{what}: too many open files", errno=err,
                           hint="raise the fd limit (ulimit -n): one fd per CPU is needed")
        raise BPFError(f"{what}: {os.strerror(err)}", errno=err)


def enable(fd: int, on: bool = True) -> None:
    fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE if on else PERF_EVENT_IOC_DISABLE, 0)


def parse_cpu_list(spec: str) -> list[int]:
    """``"0-3,5,7-8"`` -> ``[0, 1, 2, 3, 5, 7, 8]`` (the sysfs CPU list format)."""
    cpus: list[int] = []
    for part in spec.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"bad CPU list {spec!r}") from None
        if a < 0 or b < a:
            raise ValueError(f"bad CPU list {spec!r}")
        cpus.extend(range(a, b + 1))
    return cpus


def online_cpus() -> list[int]:
    """The CPUs online now (possible CPUs may be more: hotplug gaps)."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return parse_cpu_list(f.read())
    except OSError:
        return list(range(os.cpu_count() or 1))
