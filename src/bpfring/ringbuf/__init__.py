"""Ring buffers between Python and BPF programs, implemented natively over mmap.

* :class:`RingBuffer` (:mod:`.kernel`) consumes a ``BPF_MAP_TYPE_RINGBUF``
  (kernel -> user).
* :class:`UserRingBuffer` and its :class:`Sample` (:mod:`.user`) produce into
  a ``BPF_MAP_TYPE_USER_RINGBUF`` (user -> kernel), drained by
  ``bpf_user_ringbuf_drain()``.
* :mod:`._mapped` is what both share: the owned fd, the mappings, the epoll.

The protocol lives in :mod:`bpfring._ringcore` (sans-IO) and in the two
backends behind the same functions, the C accelerator ``bpfring._speedups``
and the pure-Python :mod:`bpfring._ringpure`, of which
:mod:`bpfring._ringbackend` picks one at import (``BPFRING_PURE_PYTHON=1``:
pure Python); its docstring explains the memory ordering.  This package maps
the ring's pages, locks, waits (:mod:`bpfring._wait`) and glues on numpy and
asyncio.

``ACCELERATED`` tells whether the C backend is active, for the rings opened
from now on (read it as ``bpfring.ringbuf.ACCELERATED``: the test hook
``bpfring._ringbackend.set_accelerated``, also ``_set_accelerated`` here,
switches backends at run time).
"""

from __future__ import annotations

from typing import Any

from .. import _ringbackend
from .._fd import OwnedFD
from .._ringbackend import accelerator_status
from ._mapped import PAGE_SIZE, MapSource
from .kernel import RingBuffer
from .user import Sample, UserRingBuffer

__all__ = ["ACCELERATED", "PAGE_SIZE", "MapSource", "RingBuffer", "Sample", "UserRingBuffer",
           "accelerator_status"]

#: The test hook, kept here under its old name.
_set_accelerated = _ringbackend.set_accelerated


def _dup(fd: int) -> int:
    """A private close-on-exec duplicate of ``fd`` (>= 3) that the caller owns.

    Kept for callers outside the ring package; new code holds an
    :class:`~bpfring._fd.OwnedFD` (``OwnedFD.dup``) instead."""
    return OwnedFD.dup(fd).detach()


def __getattr__(name: str) -> Any:
    # ACCELERATED follows the active backend (module attribute, PEP 562).
    if name == "ACCELERATED":
        return _ringbackend.ACCELERATED
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

