"""The prepared bpf() argument objects (``bpfring.PreparedRun``,
``bpfring.PreparedUpdate``) and the plain ``_sys`` calls, on real maps and a
real program."""

from __future__ import annotations

import errno
import os
import struct

import numpy as np
import pytest

import bpfring
from bpfring import BPFError, PreparedRun, PreparedUpdate, _sys

_PROG = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct args {
	__u32 a;
	__u32 b;
	__s64 sum;
};

__u64 runs = 0;

/* sum = a + b, written back into the context; returns -a. */
SEC("syscall")
int add(struct args *x)
{
	__u32 a = x->a, b = x->b;

	x->sum = (__s64)a + b;
	runs++;
	return -(int)a;
}

char LICENSE[] SEC("license") = "GPL";
"""
_ARGS = struct.Struct("<IIq")


@pytest.fixture(scope="module")
def prog_obj(kernel):
    path = bpfring.build_source(_PROG, name="test_sys_add")
    with bpfring.load(path) as obj:
        yield obj


def test_prepared_run_ctx_in_and_out(prog_obj) -> None:
    prog = prog_obj.programs["add"]
    run = PreparedRun(prog, ctx_size=_ARGS.size)
    assert len(run.ctx) == _ARGS.size and len(run.data) == 0
    runs0 = prog_obj.globals.runs
    for a, b in ((1, 2), (7, 100), (2**31, 5)):
        _ARGS.pack_into(run.ctx, 0, a, b, 0)
        ret = run.run()
        assert ret == -a if a < 2**31 else ret == -(2**31)  # a C int, sign included
        assert run.retval == ret
        assert _ARGS.unpack_from(run.ctx) == (a, b, a + b)  # copied back by the kernel
    assert prog_obj.globals.runs == runs0 + 3
    # same result as the one-shot path
    assert prog.run(ctx=_ARGS.pack(3, 4, 0)) == -3
    # an fd works as well as a Program
    by_fd = PreparedRun(prog.fd, ctx_size=_ARGS.size)
    _ARGS.pack_into(by_fd.ctx, 0, 5, 6, 0)
    assert by_fd.run() == -5 and by_fd.duration >= 0
    with pytest.raises(BufferError):  # the buffer is pinned: it cannot change size
        run.ctx.extend(b"x")


def test_prepared_run_errors(prog_obj) -> None:
    prog = prog_obj.programs["add"]
    short = PreparedRun(prog, ctx_size=4, what="running add")
    with pytest.raises(BPFError) as e:  # the kernel wants the whole struct
        short.run()
    assert e.value.errno in (errno.EINVAL, errno.EACCES)
    assert "running add" in str(e.value)
    with pytest.raises(ValueError):
        PreparedRun(prog, ctx_size=-1)
    with pytest.raises(TypeError):
        PreparedRun("add", ctx_size=8)  # type: ignore[arg-type]


@pytest.fixture
def hash_fd(kernel):
    fd = _sys.map_create(_sys.MAP_TYPE_HASH, 8, 16, 256, name="test_sys")
    yield fd
    os.close(fd)


def _lookup(fd: int, key: int) -> tuple[int, int] | None:
    val = bytearray(16)
    if not _sys.map_lookup(fd, key.to_bytes(8, "little"), val):
        return None
    return struct.unpack("<QQ", val)


def test_prepared_update_each_and_batch(hash_fd: int) -> None:
    keys = np.arange(100, dtype=np.uint64)
    values = np.zeros((100, 2), dtype=np.uint64)
    values[:, 0] = keys * 10
    values[:, 1] = 7
    up = PreparedUpdate(hash_fd, keys, values)
    assert (up.count, up.key_size, up.value_size) == (100, 8, 16)
    up.update_each(0, 10)
    assert [_lookup(hash_fd, k) for k in range(10)] == [(k * 10, 7) for k in range(10)]
    assert _lookup(hash_fd, 10) is None
    assert up.update_batch(10, 40) == 40
    assert _lookup(hash_fd, 49) == (490, 7) and _lookup(hash_fd, 50) is None
    # the arrays are read where they are, at call time
    values[:, 1] = 8
    up.update_each(50)  # to the end
    assert _lookup(hash_fd, 99) == (990, 8) and _lookup(hash_fd, 0) == (0, 7)
    assert up.update_batch() == 100
    assert _lookup(hash_fd, 0) == (0, 8)
    up.update_each(0, 0)  # nothing: no call
    with pytest.raises(IndexError):
        up.update_each(95, 10)
    with pytest.raises(IndexError):
        up.update_batch(-1, 1)


def test_prepared_update_errors(hash_fd: int) -> None:
    keys = np.arange(4, dtype=np.uint64)
    values = np.ones((4, 2), dtype=np.uint64)
    PreparedUpdate(hash_fd, keys, values).update_each()
    strict = PreparedUpdate(hash_fd, keys, values, flags=_sys.NOEXIST)
    with pytest.raises(BPFError) as e:
        strict.update_each(1, 1)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(BPFError) as e:  # batch elem_flags take BPF_F_LOCK only
        strict.update_batch(0, 2)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(ValueError, match="3 keys but 4 values"):
        PreparedUpdate(hash_fd, keys[:3], values)
    with pytest.raises(ValueError, match="not whole"):
        PreparedUpdate(hash_fd, bytearray(12), bytearray(16))
    with pytest.raises(TypeError, match="writable"):
        PreparedUpdate(hash_fd, bytes(8), bytearray(16))
    with pytest.raises(TypeError, match="buffer protocol"):
        PreparedUpdate(hash_fd, [1, 2], bytearray(32))
    pcpu = _sys.map_create(_sys.MAP_TYPE_PERCPU_HASH, 8, 8, 4)
    try:
        with pytest.raises(TypeError, match="per-CPU"):
            PreparedUpdate(pcpu, bytearray(8), bytearray(8))
    finally:
        os.close(pcpu)


def test_map_create_name_and_info(kernel) -> None:
    fd = _sys.map_create(_sys.MAP_TYPE_ARRAY, 4, 24, 3, name="a_name_longer_than_15")
    try:
        info = _sys.map_info(fd)
        assert (info.type, info.key_size, info.value_size, info.max_entries) == (
            _sys.MAP_TYPE_ARRAY, 4, 24, 3)
        assert info.name == "a_name_longer_t"  # BPF_OBJ_NAME_LEN - 1 bytes
        assert info.type_name == "array" and info.id > 0
        assert info.id in _sys.map_ids()
        fd2 = _sys.map_get_fd_by_id(info.id)
        try:
            assert _sys.map_info(fd2).id == info.id
        finally:
            os.close(fd2)
    finally:
        os.close(fd)


def test_prog_info_and_btf(prog_obj) -> None:
    fd = prog_obj.programs["add"].fd
    map_ids, btf_id = _sys.prog_info(fd)
    assert map_ids  # the .bss map holding `runs`
    assert btf_id > 0
    bfd = _sys.btf_get_fd_by_id(btf_id)
    try:
        raw = _sys.btf_raw(bfd)
    finally:
        os.close(bfd)
    assert bpfring.btf.load(raw).find("args", "struct").size == _ARGS.size


def test_errno_mapping() -> None:
    assert isinstance(_sys.error_from_errno(errno.EPERM, "x"), bpfring.BPFPermissionError)
    assert isinstance(_sys.error_from_errno(errno.ENOSYS, "x"), bpfring.KernelTooOld)
    e = _sys.error_from_errno(_sys.ENOTSUPP, "map op")
    assert e.errno == _sys.ENOTSUPP and "not supported" in str(e)
