"""The two user-space interpreters in one process, for the tests that compare
them (test_userspace_vm.py, test_userspace_repeat.py): whether the C one is
built, the module mark that skips without it, and a block run on one of them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from bpfring.userspace import _cinterp


def c_vm_available() -> bool:
    """The C interpreter (bpfring._speedups._VM) can be loaded."""
    try:
        _cinterp._load_vm()
    except ImportError:
        return False
    return True


#: A module's ``pytestmark``: skip without the C interpreter, except where the
#: accelerator is required (BPFRING_REQUIRE_ACCEL), so the tests fail there.
needs_c_vm = pytest.mark.skipif(
    not c_vm_available() and not os.environ.get("BPFRING_REQUIRE_ACCEL"),
    reason="the C accelerator is not built")


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Run the block on interpreter ``name`` ("c" or "python"), then go back
    to the one chosen before."""
    prev = _cinterp.set_backend(name)
    try:
        yield
    finally:
        _cinterp.set_backend(prev)
