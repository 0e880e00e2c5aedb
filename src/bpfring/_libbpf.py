"""ctypes binding to the system ``libbpf.so.1`` (1.1 or newer).

Used only to open, load and attach BPF objects: relocation, CO-RE, map
creation and the verifier dance are libbpf's job.  Ring buffers and map I/O do
not go through libbpf (see :mod:`bpfring.ringbuf` and :mod:`bpfring._sys`).
The library is opened on first use (see :class:`_Lib`), not at import.

libbpf's own messages are routed to ``logging.getLogger("bpfring")``; while an
object loads, they are also captured so that a :class:`~bpfring.LoadError`
can carry the verifier log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_size_t,
    c_uint,
    c_uint32,
    c_void_p,
)
from typing import Any

from .errors import LibbpfNotFound

log = logging.getLogger("bpfring")
libbpf_log = logging.getLogger("bpfring.libbpf")

#: The Debian/Ubuntu packages that provide the library, for the hint.
_APT_HINT = "apt-get install libbpf1 (or libbpf-dev, which also brings the headers)"

libc = ctypes.CDLL(None, use_errno=True)
libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
libc.vsnprintf.restype = c_int


class OpenOpts(Structure):
    """``struct bpf_object_open_opts`` as of libbpf 1.1 (``sz`` makes it forward
    compatible: newer libbpf versions accept the shorter struct)."""

    _fields_ = [
        ("sz", c_size_t),
        ("object_name", c_char_p),
        ("relaxed_maps", c_bool),
        ("pin_root_path", c_char_p),
        ("_stub", c_uint32),
        ("kconfig", c_char_p),
        ("btf_custom_path", c_char_p),
        ("kernel_log_buf", c_void_p),
        ("kernel_log_size", c_size_t),
        ("kernel_log_level", c_uint32),
    ]


obj_p = c_void_p
PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)

#: The libbpf functions bpfring calls: name -> (restype, argtypes), set on
#: the library when it is opened.
_PROTOTYPES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "bpf_object__open_mem": (obj_p, (c_void_p, c_size_t, POINTER(OpenOpts))),
    "bpf_object__open_file": (obj_p, (c_char_p, POINTER(OpenOpts))),
    "bpf_object__load": (c_int, (obj_p,)),
    "bpf_object__close": (None, (obj_p,)),
    "bpf_object__name": (c_char_p, (obj_p,)),
    "bpf_object__btf": (c_void_p, (obj_p,)),
    "btf__raw_data": (c_void_p, (c_void_p, POINTER(c_uint32))),
    "bpf_object__next_map": (c_void_p, (obj_p, c_void_p)),
    "bpf_map__name": (c_char_p, (c_void_p,)),
    "bpf_map__fd": (c_int, (c_void_p,)),
    "bpf_map__type": (c_int, (c_void_p,)),
    "bpf_map__max_entries": (c_uint32, (c_void_p,)),
    "bpf_map__set_max_entries": (c_int, (c_void_p, c_uint32)),
    "bpf_map__key_size": (c_uint32, (c_void_p,)),
    "bpf_map__value_size": (c_uint32, (c_void_p,)),
    "bpf_map__is_internal": (c_bool, (c_void_p,)),
    "bpf_map__btf_key_type_id": (c_uint32, (c_void_p,)),
    "bpf_map__btf_value_type_id": (c_uint32, (c_void_p,)),
    "bpf_map__initial_value": (c_void_p, (c_void_p, POINTER(c_size_t))),
    "bpf_map__set_pin_path": (c_int, (c_void_p, c_char_p)),
    "bpf_map__reuse_fd": (c_int, (c_void_p, c_int)),
    "bpf_map__set_type": (c_int, (c_void_p, c_int)),
    "bpf_map__set_key_size": (c_int, (c_void_p, c_uint32)),
    "bpf_map__set_value_size": (c_int, (c_void_p, c_uint32)),
    "bpf_map__map_flags": (c_uint32, (c_void_p,)),
    "bpf_map__set_map_flags": (c_int, (c_void_p, c_uint32)),
    "bpf_map__autocreate": (c_bool, (c_void_p,)),
    "bpf_map__set_autocreate": (c_int, (c_void_p, c_bool)),
    "bpf_map__pin_path": (c_char_p, (c_void_p,)),
    "bpf_map__set_inner_map_fd": (c_int, (c_void_p, c_int)),
    "bpf_map__inner_map": (c_void_p, (c_void_p,)),
    "bpf_object__next_program": (c_void_p, (obj_p, c_void_p)),
    "bpf_program__name": (c_char_p, (c_void_p,)),
    "bpf_program__section_name": (c_char_p, (c_void_p,)),
    "bpf_program__fd": (c_int, (c_void_p,)),
    "bpf_program__type": (c_int, (c_void_p,)),
    "bpf_program__autoload": (c_bool, (c_void_p,)),
    "bpf_program__set_autoload": (c_int, (c_void_p, c_bool)),
    "bpf_program__set_type": (c_int, (c_void_p, c_int)),
    "bpf_program__expected_attach_type": (c_int, (c_void_p,)),
    "bpf_program__set_expected_attach_type": (c_int, (c_void_p, c_int)),
    "bpf_program__flags": (c_uint32, (c_void_p,)),
    "bpf_program__set_flags": (c_int, (c_void_p, c_uint32)),
    "bpf_program__set_attach_target": (c_int, (c_void_p, c_int, c_char_p)),
    "bpf_program__attach": (c_void_p, (c_void_p,)),
    "bpf_link__destroy": (c_int, (c_void_p,)),
    "bpf_link__fd": (c_int, (c_void_p,)),
    "libbpf_set_print": (c_void_p, (PRINT_FN,)),
}


def _open_cdll() -> ctypes.CDLL:
    """dlopen libbpf: the soname first, then whatever the linker cache knows."""
    tried = []
    for name in ("libbpf.so.1", ctypes.util.find_library("bpf")):
        if not name or name in tried:
            continue
        tried.append(name)
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError as e:
            log.debug("cannot open %s: %s", name, e)
    raise LibbpfNotFound(
        f"libbpf.so.1 not found (tried {', '.join(tried)}): bpfring needs libbpf 1.1 or "
        "newer to open, load and attach BPF objects", hint=_APT_HINT)


class _Lib:
    """``libbpf.so.1``, opened on first use.

    ``import bpfring`` must work where libbpf is missing (``--help``, BTF
    tools, ring buffers opened by fd or pin need no libbpf), so the library is
    opened when a function is first looked up (``lib.bpf_object__load``); its
    absence then raises :class:`~bpfring.errors.LibbpfNotFound` with the
    package to install.  Opening sets every prototype and routes libbpf's
    messages to logging.  Looked-up functions are cached as attributes of
    this object, so later calls cost what a plain CDLL attribute costs.
    """

    def __init__(self) -> None:
        self._cdll: ctypes.CDLL | None = None
        self._lock = threading.Lock()

    def _open(self) -> ctypes.CDLL:
        with self._lock:
            if self._cdll is None:
                cdll = _open_cdll()
                for name, (restype, argtypes) in _PROTOTYPES.items():
                    try:
                        f = getattr(cdll, name)
                    except AttributeError:
                        raise LibbpfNotFound(
                            f"{cdll._name} has no {name}(): libbpf 1.1 or newer is needed",
                            hint=_APT_HINT) from None
                    f.restype = restype
                    f.argtypes = list(argtypes)
                cdll.libbpf_set_print(_print)
                self._cdll = cdll
            return self._cdll

    @property
    def loaded(self) -> bool:
        """Whether libbpf has been opened (for tests and diagnostics)."""
        return self._cdll is not None

    def __getitem__(self, name: str) -> Any:
        """A new function object for ``name`` (``cdll[name]``), whose
        prototype the caller sets without touching the shared attributes."""
        return (self._cdll or self._open())[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        f = getattr(self._cdll or self._open(), name)
        setattr(self, name, f)  # next time: found in the instance dict
        return f


lib = _Lib()

_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
_capture = threading.local()


def _print_line(level: int, fmt: bytes, va_list: int) -> int:
    # libbpf hands us printf-style arguments as a va_list; on the SysV x86-64
    # and AArch64 ABIs a va_list parameter is passed as a pointer, so libc's
    # vsnprintf can format it for us.
    pylevel = _LEVELS.get(level, logging.DEBUG)
    sink = getattr(_capture, "lines", None)
    if sink is None and not libbpf_log.isEnabledFor(pylevel):
        return 0
    buf = ctypes.create_string_buffer(4096)
    n = libc.vsnprintf(buf, len(buf), fmt, va_list)
    if n >= len(buf):  # long verifier log lines: format again into a bigger buffer
        # va_list cannot be reused after vsnprintf; keep the truncated text.
        pass
    text = buf.value.decode(errors="replace").rstrip("\n")
    if sink is not None and level <= 1:
        sink.append(text)
    if libbpf_log.isEnabledFor(pylevel):
        libbpf_log.log(pylevel, "%s", text)
    return 0


# The C callback, kept alive here for as long as libbpf may call it.
_print = PRINT_FN(_print_line)


class capture_log:
    """Context manager collecting libbpf's warning/info lines on this thread."""

    def __enter__(self) -> list[str]:
        self.lines: list[str] = []
        _capture.lines = self.lines
        return self.lines

    def __exit__(self, *exc: object) -> None:
        _capture.lines = None


def errno_of(ret: int) -> int:
    """libbpf returns ``-errno``; errno is also set for NULL-returning calls.
    The result may be one of libbpf's own codes (:data:`LIBBPF_ERRNO`):
    describe it with :func:`strerror`, not ``os.strerror``."""
    return -ret if ret < 0 else ctypes.get_errno()


#: libbpf's own error codes (``enum libbpf_errno`` in ``<bpf/libbpf.h>``,
#: from 4000 on), which it returns like errnos: name and meaning.
LIBBPF_ERRNO: dict[int, tuple[str, str]] = {
    4000: ("LIBBPF_ERRNO__LIBELF", "libelf failed (not a readable ELF file?)"),
    4001: ("LIBBPF_ERRNO__FORMAT", "not a valid BPF object (bad ELF format)"),
    4002: ("LIBBPF_ERRNO__KVERSION", "incorrect or missing 'version' section"),
    4003: ("LIBBPF_ERRNO__ENDIAN", "the object's endianness does not match this machine"),
    4004: ("LIBBPF_ERRNO__INTERNAL", "internal error in libbpf"),
    4005: ("LIBBPF_ERRNO__RELOC", "relocation failed"),
    4006: ("LIBBPF_ERRNO__LOAD", "loading a program failed for an unknown reason"),
    4007: ("LIBBPF_ERRNO__VERIFY", "the kernel verifier rejected a program"),
    4008: ("LIBBPF_ERRNO__PROG2BIG", "a program is too big"),
    4009: ("LIBBPF_ERRNO__KVER", "incorrect kernel version"),
    4010: ("LIBBPF_ERRNO__PROGTYPE", "the kernel does not support this program type"),
    4011: ("LIBBPF_ERRNO__WRNGPID", "wrong pid in a netlink message"),
    4012: ("LIBBPF_ERRNO__INVSEQ", "invalid netlink sequence"),
    4013: ("LIBBPF_ERRNO__NLPARSE", "netlink parsing error"),
}


def strerror(err: int) -> str:
    """The meaning of an errno or of a libbpf error code."""
    import os

    if err in LIBBPF_ERRNO:
        return LIBBPF_ERRNO[err][1]
    return os.strerror(err)


def cstr(b: bytes | None) -> str:
    # errors="replace": names come from the object file, which may be corrupt.
    return b.decode(errors="replace") if b else ""


__all__ = ["LIBBPF_ERRNO", "OpenOpts", "c_uint", "capture_log", "cstr", "errno_of", "lib",
           "libbpf_log", "strerror"]
