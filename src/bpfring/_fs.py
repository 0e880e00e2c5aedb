"""Pseudo file systems bpfring relies on: tracefs (tracepoint ids for attaching)
and bpffs (pinning).  Neither is mounted on every host at boot; when we run as
root we mount them, otherwise we raise :class:`NotMountedError` with the
command that fixes it."""

from __future__ import annotations

import ctypes
import os

from .errors import NotMountedError

TRACEFS = "/sys/kernel/tracing"
BPFFS = "/sys/fs/bpf"
_TRACEFS_MAGIC = 0x74726163
_BPF_FS_MAGIC = 0xCAFE4A11

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]


def _fs_type(path: str) -> int | None:
    class StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]

    buf = StatFs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return None
    return int(buf.f_type) & 0xFFFFFFFF


def _ensure(path: str, fstype: str, magic: int, why: str) -> str:
    if _fs_type(path) == magic:
        return path
    if fstype == "tracefs" and _fs_type("/sys/kernel/debug/tracing") == magic:
        return "/sys/kernel/debug/tracing"
    hint = f"mount -t {fstype} {fstype if fstype != 'bpf' else 'bpffs'} {path}  (as root)"
    if os.geteuid() != 0:
        raise NotMountedError(f"{fstype} is not mounted at {path}; it is needed {why}",
                              hint=hint)
    os.makedirs(path, exist_ok=True)
    if _libc.mount(fstype.encode(), path.encode(), fstype.encode(), 0, None) != 0:
        err = ctypes.get_errno()
        raise NotMountedError(f"cannot mount {fstype} at {path}: {os.strerror(err)}",
                              errno=err, hint=hint)
    return path


def ensure_tracefs() -> str:
    """Return the tracefs mount point, mounting it when we are root."""
    return _ensure(TRACEFS, "tracefs", _TRACEFS_MAGIC, "to attach tracepoints")


def ensure_bpffs(path: str = BPFFS) -> str:
    """Return the bpffs mount point, mounting it when we are root."""
    return _ensure(path, "bpf", _BPF_FS_MAGIC, "to pin maps")


def is_bpffs(path: str) -> bool:
    return _fs_type(path) == _BPF_FS_MAGIC
