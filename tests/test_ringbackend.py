"""bpfring._ringbackend: the backend is chosen once (C unless
BPFRING_PURE_PYTHON=1), switched by the test hook, refused where pure Python
cannot order its accesses, and bound by each ring for its whole life."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import bpfring
from bpfring import _ringbackend, _ringpure
from bpfring import ringbuf as rbmod

try:
    from bpfring import _speedups as sp
except ImportError:  # not built: the pure-Python backend is all there is
    sp = None


def test_accelerator_is_built_and_chosen():
    """The accelerator is part of the product (a skip here fails under CI)."""
    if sp is None:
        pytest.skip("bpfring._speedups is not built")
    assert sp.API == _ringbackend.SPEEDUPS_API == _ringpure.API
    pure = os.environ.get("BPFRING_PURE_PYTHON") == "1"
    assert rbmod.ACCELERATED is not pure
    assert _ringbackend.ACCELERATED is not pure
    assert _ringbackend.impl is (_ringpure if pure else sp)


def test_env_var_selects_pure_python():
    code = ("import sys, bpfring, bpfring.ringbuf as r; "
            "print(r.ACCELERATED, 'bpfring._speedups' in sys.modules)")
    env = dict(os.environ, BPFRING_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "False"]
    env["BPFRING_PURE_PYTHON"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ([str(sp is not None)] * 2)


def test_hook_switches_and_the_old_name_still_works():
    assert rbmod._set_accelerated is _ringbackend.set_accelerated
    prev = _ringbackend.set_accelerated(False)
    try:
        assert _ringbackend.impl is _ringpure and not rbmod.ACCELERATED
        assert "pure-Python ring paths" in _ringbackend.accelerator_status()
        if sp is not None:
            assert _ringbackend.set_accelerated(True) is False
            assert _ringbackend.impl is sp and rbmod.ACCELERATED
            assert _ringbackend.accelerator_status() == "C accelerator: active"
    finally:
        _ringbackend.set_accelerated(prev)


def test_check_arch(monkeypatch):
    monkeypatch.setattr(_ringbackend.platform, "machine", lambda: "x86_64")
    prev = _ringbackend.set_accelerated(False)
    try:
        _ringbackend.check_arch()  # x86: pure Python is fine
        monkeypatch.setattr(_ringbackend.platform, "machine", lambda: "aarch64")
        with pytest.raises(bpfring.BPFError, match="aarch64"):
            _ringbackend.check_arch()
        with pytest.raises(bpfring.BPFError):
            _ringbackend.set_accelerated(False)
        if sp is not None:
            _ringbackend.set_accelerated(True)
            _ringbackend.check_arch()  # the accelerator provides the barriers
            with pytest.raises(bpfring.BPFError):
                _ringbackend.set_accelerated(False)  # new rings would be unordered
            assert rbmod.ACCELERATED
    finally:
        monkeypatch.setattr(_ringbackend.platform, "machine", lambda: "x86_64")
        _ringbackend.set_accelerated(prev)


def test_a_ring_keeps_the_backend_it_was_opened_with(kernel):
    """Switching backends affects rings opened afterwards; an open ring goes
    on with the backend (and the memory ordering) it started with."""
    if sp is None:
        pytest.skip("bpfring._speedups is not built")
    prev = _ringbackend.set_accelerated(True)
    try:
        with bpfring.UserRingBuffer.create(4096) as urb:
            assert type(urb._impl) is sp.UserRing
            _ringbackend.set_accelerated(False)
            urb.write(b"still C")
            assert type(urb._impl) is sp.UserRing and urb._be is sp
            with bpfring.UserRingBuffer.create(4096) as other:
                assert type(other._impl) is _ringpure.UserRing and other._be is _ringpure
                other.write(b"pure")
                assert other.pending_bytes() == urb.pending_bytes() == 16
    finally:
        _ringbackend.set_accelerated(prev)
