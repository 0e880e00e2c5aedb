"""Helpers shared by the attach tests (test_attach.py, test_attach_net.py).

Until Program inherits AttachMethods, the tests call the mixin through a
small adapter that gives it exactly the attributes it may rely on (_ptr, fd,
name, section, type, _adopt_link).
"""

from __future__ import annotations

import ctypes
import shutil
import struct
import time
from collections.abc import Callable

import pytest
from conftest import REQUIRE_KERNEL

from bpfring import _sys
from bpfring._attach import AttachMethods


class _Adapter(AttachMethods):
    """A Program seen through the mixin's contract; links are registered
    with the program's object, so closing the object detaches them."""

    def __init__(self, prog) -> None:
        self._prog = prog
        self._ptr = prog._ptr
        self.name = prog.name
        self.section = prog.section

    fd = property(lambda self: self._prog.fd)
    type = property(lambda self: self._prog.type)

    def _adopt_link(self, link):
        self._prog._obj._links.append(link)
        return link


def A(prog) -> AttachMethods:
    return prog if isinstance(prog, AttachMethods) else _Adapter(prog)


def progs(obj) -> dict[str, AttachMethods]:
    return {n: A(p) for n, p in obj.programs.items()}


def wait_for(pred: Callable[[], bool], timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def prog_id(fd: int) -> int:
    """``bpf_prog_info.id`` of a program fd."""
    info = bytearray(64)
    cinfo = (ctypes.c_char * len(info)).from_buffer(info)
    attr = bytearray(128)
    struct.pack_into("<IIQ", attr, 0, fd, len(info), ctypes.addressof(cinfo))
    _sys.bpf(_sys.OBJ_GET_INFO_BY_FD, attr, "reading program info")
    del cinfo
    return struct.unpack_from("<I", info, 4)[0]


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (scripts/setup-system.sh installs it)"
        if REQUIRE_KERNEL:
            pytest.fail(msg)
        pytest.skip(msg)
    return path
