"""libbpf's own error codes are translated, and its last message is kept."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import bpfring
from bpfring import _libbpf
from bpfring.errors import BPFError, LoadError


def test_table_matches_libbpf_header():
    header = "/usr/include/bpf/libbpf.h"
    if not os.path.exists(header):
        pytest.skip("libbpf headers not installed")
    text = Path(header).read_text()
    body = text[text.index("enum libbpf_errno"):]
    body = body[:body.index("};")]
    names = re.findall(r"\b(LIBBPF_ERRNO__[A-Z0-9]+)\b", body)
    assert names
    assert [n for _, (n, _m) in sorted(_libbpf.LIBBPF_ERRNO.items())] == names
    assert min(_libbpf.LIBBPF_ERRNO) == 4000


@pytest.mark.parametrize("code", sorted(_libbpf.LIBBPF_ERRNO))
def test_every_code_has_a_meaning(code):
    meaning = _libbpf.strerror(code)
    assert meaning and "Unknown error" not in meaning
    assert _libbpf.LIBBPF_ERRNO[code][0] in str(BPFError("x", errno=code))


def test_errnos_still_use_the_system_text():
    assert _libbpf.strerror(2) == os.strerror(2)
    assert "[ENOENT]" in str(BPFError("x", errno=2))


@pytest.mark.parametrize("junk", [b"\x7fELF" + bytes(range(256)) * 2, b"\x7fELF" + b"\0" * 64])
def test_bad_elf_bytes(kernel, junk):
    with pytest.raises(LoadError) as ei:
        bpfring.load(junk)
    e = ei.value
    assert e.errno == 4001
    text = str(e)
    assert "Unknown error" not in text
    assert "not a valid BPF object" in text and "LIBBPF_ERRNO__FORMAT" in text
    assert "libbpf: " in e.message and "ELF" in e.message  # libbpf's own last message
    assert e.hint


def test_bad_elf_file(kernel, tmp_path):
    p = tmp_path / "bogus.bpf.o"
    p.write_bytes(b"not an object at all\n" * 10)
    with pytest.raises(LoadError) as ei:
        bpfring.load(p)
    assert "Unknown error" not in str(ei.value)
    assert "not a valid BPF object" in str(ei.value) and str(p) in str(ei.value)


def test_directory(kernel, tmp_path):
    with pytest.raises(LoadError) as ei:
        bpfring.load(tmp_path)
    assert "is a directory" in str(ei.value) and "Unknown error" not in str(ei.value)
    assert ei.value.hint


@pytest.mark.parametrize("size", [4096.0, "4096", True, None])
def test_ring_create_size_type(kernel, size):
    from bpfring import RingBuffer, UserRingBuffer

    for cls in (RingBuffer, UserRingBuffer):
        with pytest.raises(TypeError, match="ring size must be an int"):
            cls.create(size)


# Run as uid nobody with exactly CAP_BPF and CAP_PERFMON (after importing
# bpfring as root: the interpreter may live where nobody cannot read).
_AS_NOBODY = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
import bpfring, bpfring.object, bpfring._attach, bpfring._api, bpfring.btf
bpfring.load  # everything imported now: as nobody the checkout may be unreadable (/root)
libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
class Hdr(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [("eff", ctypes.c_uint32), ("perm", ctypes.c_uint32), ("inh", ctypes.c_uint32)]
caps = (1 << (38 - 32)) | (1 << (39 - 32))  # CAP_PERFMON, CAP_BPF
if libc.capset(ctypes.byref(Hdr(0x20080522, 0)), (Data * 2)(Data(0, 0, 0), Data(caps, caps, 0))):
    raise OSError(ctypes.get_errno(), "capset")
obj = bpfring.load(sys.argv[1])
prog = obj.programs["handle_kill_exit"]
for attach in (prog.attach, lambda: prog.attach_tracepoint("syscalls", "sys_exit_kill")):
    try:
        attach()
        print("attached")
    except Exception as e:
        print(type(e).__name__, e)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody")
def test_attach_without_tracefs_access_says_so(kernel):
    import shutil
    import stat
    import subprocess
    import sys
    import tempfile

    from bpfring._fs import ensure_tracefs

    if os.stat(ensure_tracefs()).st_mode & stat.S_IROTH:
        pytest.skip("tracefs is world-readable here")
    root_mode = stat.S_IMODE(os.stat("/").st_mode)
    with tempfile.TemporaryDirectory(dir="/tmp") as where:  # nobody must reach the object
        obj = Path(where) / "demo.bpf.o"
        shutil.copy(bpfring.build(Path(bpfring.__file__).parent / "bpf" / "demo.bpf.c"), obj)
        Path(where).chmod(0o755)
        obj.chmod(0o644)
        try:
            if not root_mode & stat.S_IXOTH:
                # A chroot unpacked into a mktemp directory (the fresh-Debian
                # check) has a 0700 root, where nobody reaches no file at all;
                # a real system's / is 0755. Give it that for the child's run.
                os.chmod("/", root_mode | 0o055)
            proc = subprocess.run([sys.executable, "-c", _AS_NOBODY, str(obj)],
                                  capture_output=True, text=True, timeout=120)
        finally:
            if not root_mode & stat.S_IXOTH:
                os.chmod("/", root_mode)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    for line in lines:
        assert line.startswith("BPFPermissionError"), line
        assert "tracefs" in line and "cannot read" in line
        assert "needs root: CAP_BPF and CAP_PERFMON" not in line
