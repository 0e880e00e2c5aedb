"""bpfring._fd.OwnedFD: close once, dup, detach, use after close, leak warning."""

from __future__ import annotations

import gc
import os
import warnings

import pytest

from bpfring import BPFError
from bpfring._fd import OwnedFD


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_close_once_and_use_after_close():
    r, w = os.pipe()
    os.close(w)
    fd = OwnedFD(r, "pipe")
    assert fd.fileno() == r and not fd.closed
    fd.close()
    assert fd.closed and not _is_open(r)
    fd.close()  # idempotent: must not close a number reused by someone else
    with pytest.raises(ValueError, match="pipe is closed"):
        fd.fileno()


def test_dup_is_private_and_above_stdio():
    r, w = os.pipe()
    try:
        with OwnedFD.dup(r, "pipe") as d:
            assert d.fileno() not in (r, w) and d.fileno() >= 3
            assert os.get_inheritable(d.fileno()) is False
            dd = d.duplicate()
            assert dd.fileno() != d.fileno()
            dd.close()
        assert d.closed and _is_open(r)
    finally:
        os.close(r)
        os.close(w)


def test_dup_of_a_bad_fd_is_a_bpferror():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(BPFError, match="cannot duplicate"):
        OwnedFD.dup(r)


def test_detach_hands_over_ownership():
    r, w = os.pipe()
    os.close(w)
    fd = OwnedFD(r)
    assert fd.detach() == r
    assert fd.closed
    del fd
    gc.collect()
    assert _is_open(r)
    os.close(r)


def test_leaked_fd_is_closed_with_a_resource_warning():
    r, w = os.pipe()
    os.close(w)
    fd = OwnedFD(r, "ring buffer map")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del fd
        gc.collect()
    assert not _is_open(r)
    assert any(issubclass(c.category, ResourceWarning) and "ring buffer map" in str(c.message)
               for c in caught)


@pytest.mark.parametrize("bad", [-1, -2, True, "3", 1.0])
def test_rejects_non_fds(bad):
    with pytest.raises(ValueError):
        OwnedFD(bad)  # type: ignore[arg-type]
