"""Finding what a program attaches to: the ELF file of a uprobe or USDT
probe (a path, a library name looked up as the dynamic loader would, a
program on PATH), code offsets in it, cgroup v2 directories, and whether
this kernel can make kprobes at all.  Errors are :class:`AttachError` with a
hint; the attach methods prefix them with the program and the target."""

from __future__ import annotations

import errno as _errno
import os
import shutil
import struct
import subprocess
import sys

from . import _fs
from ._fd import OwnedFD
from ._fs import ensure_tracefs
from .errors import AttachError, BPFError, KernelTooOld

CGROUP2_SUPER_MAGIC = 0x63677270


def kprobes_available() -> bool:
    """Whether this kernel can make kprobes (CONFIG_KPROBES + kprobe events).

    Judged from the system, not from an errno: the ``kprobe`` perf PMU under
    /sys/bus/event_source/devices (CONFIG_KPROBE_EVENTS with perf events), or
    the legacy ``kprobe_events`` file of tracefs."""
    if os.path.isdir("/sys/bus/event_source/devices/kprobe"):
        return True
    try:
        tracefs = ensure_tracefs()
    except BPFError:
        tracefs = "/sys/kernel/tracing"
    return os.path.exists(os.path.join(tracefs, "kprobe_events"))


def require_kprobes(program: str, target: str) -> None:
    """Raise :class:`KernelTooOld` when this kernel cannot make kprobes."""
    if not kprobes_available():
        raise KernelTooOld(
            f"attaching program {program!r} to {target}: this kernel has no kprobes "
            "(CONFIG_KPROBES)", errno=_errno.EOPNOTSUPP,
            hint="use a tracepoint (SEC(\"tp/...\")) or raw tracepoint (SEC(\"raw_tp/...\")) "
                 "instead, or a kernel built with CONFIG_KPROBES and CONFIG_KPROBE_EVENTS")


def _ld_library_path() -> list[str]:
    return [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]


def _system_lib_dirs() -> list[str]:
    multiarch = f"{os.uname().machine}-linux-gnu"
    return [f"/lib/{multiarch}", f"/usr/lib/{multiarch}", "/lib64", "/usr/lib64", "/lib",
            "/usr/lib", "/usr/local/lib"]


def _elf_ident(path: str) -> bytes | None:
    """The first 20 bytes of an ELF file (class, data, machine), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    return head if head[:4] == b"\x7fELF" else None


def _same_abi(path: str) -> bool:
    ours, theirs = _elf_ident(sys.executable), _elf_ident(path)
    if theirs is None:
        return False
    # class (32/64-bit), byte order, machine: what ld.so matches on
    return ours is None or (ours[4:6], ours[18:20]) == (theirs[4:6], theirs[18:20])


def _mapped_library(name: str, pid: int) -> str | None:
    """The file of a library ``name`` mapped into process ``pid``."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                path = fields[5].strip() if len(fields) == 6 else ""
                base = os.path.basename(path)
                if path.startswith("/") and (base == name or base.startswith(name + ".")):
                    return path
    except OSError:
        pass
    return None


def _ldconfig_library(name: str) -> str | None:
    """The library ``name`` from ld.so's cache (``ldconfig -p``)."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=False,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        entry, sep, path = line.strip().partition(" => ")
        soname = entry.split(" (")[0]
        if sep and (soname == name or soname.startswith(name + ".")) and _same_abi(path):
            return path
    return None


def find_library(name: str, pid: int) -> str | None:
    """Where the library ``name`` ("libc.so.6", "libssl.so") is, looked up as
    the dynamic loader would: mapped in process ``pid`` (when given), in
    LD_LIBRARY_PATH, in ld.so's cache, in the system directories; the first
    file of the right ABI wins."""
    if pid > 0 and (path := _mapped_library(name, pid)):
        return path
    for d in _ld_library_path():
        p = os.path.join(d, name)
        if os.path.isfile(p) and _same_abi(p):
            return p
    if path := _ldconfig_library(name):
        return path
    for d in _system_lib_dirs():
        p = os.path.join(d, name)
        if os.path.isfile(p) and _same_abi(p):
            return p
    return None


def resolve_binary(binary: str | os.PathLike[str], pid: int = -1) -> str:
    """The ELF file a uprobe or USDT probe goes into: a path as given, a
    library by name ("libc.so.6"), or a program found on PATH."""
    text = os.fspath(binary)
    if not isinstance(text, str) or not text:
        raise TypeError(f"binary must be a path or a library name, not {binary!r}")
    if "/" in text:
        path: str | None = os.path.abspath(text)
        if not os.path.exists(text):
            raise AttachError(f"no such binary: {text}", errno=_errno.ENOENT,
                              hint="give the path of an executable or shared library")
    elif ".so" in text or text.startswith("lib"):
        path = find_library(text, pid)
        if path is None and ".so" not in text:
            path = shutil.which(text)  # "libtool" is a program, not a library
        if path is None:
            raise AttachError(f"cannot find the library {text!r}", errno=_errno.ENOENT,
                              hint="give its full path, or its soname as 'ldconfig -p' lists "
                                   "it (e.g. libc.so.6)")
    else:
        path = shutil.which(text)
        if path is None:
            raise AttachError(f"cannot find the program {text!r} on PATH", errno=_errno.ENOENT,
                              hint="give the path of the executable")
    assert path is not None
    if _elf_ident(path) is None:
        raise AttachError(f"{path} is not an ELF file", errno=_errno.ENOEXEC,
                          hint="uprobes and USDT probes go into executables and shared "
                               "libraries (a script's interpreter, not the script)")
    return path


def _code_ranges(path: str) -> list[tuple[int, int]]:
    """File offset ranges of the executable PT_LOAD segments of an ELF file."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError:
        return []
    if len(data) < 52 or data[:4] != b"\x7fELF":
        return []
    bo = "<" if data[5] == 1 else ">"
    is64 = data[4] == 2
    if is64:
        phoff, = struct.unpack_from(bo + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(bo + "HH", data, 54)
    else:
        phoff, = struct.unpack_from(bo + "I", data, 28)
        phentsize, phnum = struct.unpack_from(bo + "HH", data, 42)
    out = []
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + phentsize > len(data):
            break
        if is64:
            ptype, pflags, poff, _va, _pa, filesz = struct.unpack_from(bo + "IIQQQQ", data, at)
        else:
            ptype, poff, _va, _pa, filesz, _msz, pflags = struct.unpack_from(bo + "7I", data,
                                                                             at)
        if ptype == 1 and pflags & 1:  # PT_LOAD, PF_X
            out.append((poff, poff + filesz))
    return out


def check_code_offset(path: str, offset: int) -> None:
    ranges = _code_ranges(path)
    if ranges and not any(lo <= offset < hi for lo, hi in ranges):
        where = ", ".join(f"{lo:#x}-{hi:#x}" for lo, hi in ranges)
        raise AttachError(f"file offset {offset:#x} is not in a code segment of {path}",
                          errno=_errno.EINVAL,
                          hint=f"its code is at file offsets {where}; or give symbol= (and "
                               "offset= inside the function)")


def check_pid(pid: int) -> None:
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if pid > 0 and not os.path.exists(f"/proc/{pid}"):
        raise AttachError(f"no process with pid {pid}", errno=_errno.ESRCH,
                          hint="pid=-1 probes every process")


def check_u64(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ValueError(f"{name} must be an int in [0, 2**64), not {value!r}")


def cgroup_fd(path_or_fd: str | os.PathLike[str] | int) -> tuple[OwnedFD | None, int, str]:
    """(fd we opened or None, fd to use, description) of a cgroup v2 directory."""
    if isinstance(path_or_fd, bool):
        raise TypeError("cgroup must be a path or an open fd")
    if isinstance(path_or_fd, int):
        fd, what, owned = path_or_fd, f"cgroup fd {path_or_fd}", None
        probe = f"/proc/self/fd/{fd}"
    else:
        path = os.fspath(path_or_fd)
        try:
            owned = OwnedFD(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC),
                            "cgroup")
        except OSError as e:
            raise AttachError(f"cannot open cgroup {path}: {e.strerror}", errno=e.errno,
                              hint="give a directory of the cgroup v2 hierarchy, e.g. "
                                   f"{cgroup2_mount() or '/sys/fs/cgroup'}/...") from None
        fd, what, probe = owned.fileno(), f"cgroup {path}", path
    if _fs._fs_type(probe) != CGROUP2_SUPER_MAGIC:
        if owned is not None:
            owned.close()
        raise AttachError(f"{what} is not a cgroup v2 directory", errno=_errno.EINVAL,
                          hint=f"cgroup2 is mounted at {cgroup2_mount() or '(nowhere)'}; "
                               "BPF cgroup programs attach to cgroup v2 only")
    return owned, fd, what


def cgroup2_mount() -> str | None:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return parts[1]
    except OSError:
        pass
    return None
