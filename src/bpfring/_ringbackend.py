"""Chooses the ring backend, once, for the whole process.

Two modules export the same types and functions over a ring's memory (see
:class:`RingBackend`): the C accelerator ``bpfring._speedups`` (built from
``_speedups.c`` at install time when a C compiler is present) and the
pure-Python :mod:`bpfring._ringpure`, both built on the protocol of the
sans-IO core :mod:`bpfring._ringcore`.  At import this module picks the C one
unless ``BPFRING_PURE_PYTHON=1`` is set or it is not built; :data:`impl` is
the chosen one.  Each ring of the I/O layer (:mod:`bpfring.ringbuf`) takes
:data:`impl` when it is opened and, for its whole life, makes every access
to the shared memory through it (its ``KernelRing``/``UserRing`` binding for
the hot paths, the single loads, stores and fence for the others), never
testing which backend it is.  :func:`set_accelerated` switches for the rings
opened afterwards, for tests and benchmarks.

Memory ordering
---------------
The kernel pairs its position and header accesses with acquire/release
semantics (``smp_load_acquire``/``smp_store_release`` and ``xchg`` in
kernel/bpf/ringbuf.c).

* The C backend accesses positions and headers with real ``__atomic``
  acquire loads, release stores and a compare-exchange for the user-ring
  header commit, each paired with the kernel's access, and
  ``acquire_fence`` is a real fence.  The fixed-size batch paths (``scan``,
  ``read_into``) load a run's headers relaxed and then issue one acquire
  fence before any payload is read, which synchronises with the kernel's
  commits as per-header acquire loads would.  With it, rings may be opened
  on any architecture.
* The pure-Python backend reads and writes positions through ``'Q'`` views
  and headers through ``'I'`` views; CPython performs each item access as one
  fixed-size ``memcpy`` of an aligned address, a single aligned load or
  store, and the interpreter issues them in program order (each is an opaque
  C call, so no compiler reordering across them).  On x86-64 (TSO) every
  aligned load already has acquire and every aligned store release
  semantics, which is exactly what the protocol needs.  Weakly ordered CPUs
  (arm64, riscv, ppc) need real barriers, which pure Python cannot issue: the
  pure backend is refused there (:func:`check_arch`).

The batch paths of both backends (``scan``, ``read_into``, ``write_array``)
return what the sans-IO core's numpy runs return (the pure backend runs
them; tests/test_backend_batch.py compares both with a record-by-record
walk).  The paths with no C twin (reserve/submit headers, the ``pending``
walk) use the sans-IO core directly with plain accesses, and the backend's
loads, stores and fence around them.  Code that touches a ring's
memory directly instead of going through the ring classes has to do its own
ordering.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

from . import _ringpure
from .errors import BPFError

if TYPE_CHECKING:
    from collections import deque

    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["ACCELERATED", "RingBackend", "accelerator_status", "check_arch", "impl",
           "set_accelerated"]

log = logging.getLogger("bpfring")

_TSO_MACHINES = frozenset({"x86_64", "amd64", "i686", "i386"})
#: The ``API`` number of the _speedups.c this package was written against.
SPEEDUPS_API = _ringpure.API
_PURE_ENV = "BPFRING_PURE_PYTHON"


class _BoundRing(Protocol):
    @property
    def size(self) -> int: ...

    def consumer_pos(self) -> int: ...

    def producer_pos(self) -> int: ...

    def publish(self, pos: int, /) -> None: ...


class KernelRing(_BoundRing, Protocol):
    """A backend's binding of one kernel ring's memory (``BPF_MAP_TYPE_RINGBUF``)."""

    def consume(self, callback: Callable[[memoryview], object], limit: int | None,
                publish_each: object, release_views: object, /
                ) -> tuple[int, int, bool, int]: ...

    def read(self, limit: int | None, /) -> tuple[list[bytes], bool]: ...

    def read_records(self, limit: int | None, decoder: Callable[[bytes], Any], batch: object,
                     /) -> tuple[list[Any], bool, bytes | None]: ...

    def halt(self) -> None: ...

    def scan(self, itemsize: int, limit: int | None, /) -> tuple[int, int, int]: ...

    def read_into(self, out: WriteableBuffer, itemsize: int, limit: int | None, /
                  ) -> tuple[int, int]: ...


class UserRing(_BoundRing, Protocol):
    """A backend's binding of one user ring's memory (``BPF_MAP_TYPE_USER_RINGBUF``)."""

    def write(self, payload: object, /) -> bool: ...

    def write_many(self, iterator: Iterator[Any], first: tuple[Any, ...], /
                   ) -> tuple[int, tuple[Any, ...]]: ...

    def write_list(self, items: list[Any] | tuple[Any, ...], start: int, /) -> int: ...

    def commit(self, offset: int, discard: object, /) -> int: ...

    def write_array(self, rows: ReadableBuffer, itemsize: int, count: int, /) -> int: ...


class RingBackend(Protocol):
    """What both backends export, with the same semantics and errors
    (documented in ``_speedups.c`` and :mod:`bpfring._ringpure`)."""

    API: int
    HDR_SIZE: int
    DYNPTR_MAX: int

    def KernelRing(self, data: ReadableBuffer, cons_page: WriteableBuffer,
                   prod_page: ReadableBuffer, size: int, /) -> KernelRing: ...

    def UserRing(self, data: WriteableBuffer, cons_page: ReadableBuffer,
                 prod_page: WriteableBuffer, size: int, /) -> UserRing: ...

    def load_acquire_u64(self, buf: ReadableBuffer, index: int, /) -> int: ...

    def store_release_u64(self, buf: WriteableBuffer, index: int, value: int, /) -> None: ...

    def acquire_fence(self) -> None: ...

    def backlog_iter(self, backlog: deque[Any], fill: Callable[[], object], /
                     ) -> Iterator[Any]: ...

    def perf_walk(self, meta: memoryview, data: memoryview,
                  callback: Callable[[memoryview], object], limit: int | None,
                  on_lost: Callable[[int], object] | None, halt: bytearray | None,
                  /) -> tuple[int, int]: ...

    def perf_read(self, meta: memoryview, data: memoryview, decoder: Callable[[bytes], Any],
                  limit: int | None, on_lost: Callable[[int], object] | None,
                  halt: bytearray | None, /) -> tuple[list[Any], int]: ...

    def perf_take(self, meta: memoryview, data: memoryview, decoder: Callable[[bytes], Any],
                  limit: int | None, on_lost: Callable[[int], object] | None,
                  halt: bytearray | None, want_raw: object, /
                  ) -> tuple[list[Any], int, bytes | None]: ...

    def perf_read_array(self, meta: memoryview, data: memoryview, out: WriteableBuffer,
                        itemsize: int, limit: int | None,
                        on_lost: Callable[[int], object] | None, halt: bytearray | None, /
                        ) -> tuple[int, int, int]: ...


#: The active backend: ``bpfring._speedups`` or :mod:`bpfring._ringpure`.
#: Read it when a ring is opened, not at import: :func:`set_accelerated`
#: replaces it.
impl: RingBackend = _ringpure
#: True while the C accelerator is the active backend.
ACCELERATED: bool = False


def _is_tso() -> bool:
    return platform.machine().lower() in _TSO_MACHINES


def _load_speedups() -> RingBackend:
    sp = importlib.import_module(f"{__package__}._speedups")
    if getattr(sp, "API", None) != SPEEDUPS_API:
        raise ImportError(f"{sp.__file__} was built from another version of "
                          "_speedups.c; rebuild it (pip install -e .)")
    return cast(RingBackend, sp)


def set_accelerated(enabled: bool) -> bool:
    """Make the C backend (``True``) or the pure-Python one (``False``) the
    backend of the rings opened from now on; return the previous state.

    The test and benchmark hook (also ``bpfring.ringbuf._set_accelerated``).
    Rings already open keep theirs.  Raises ``ImportError`` when the
    extension is not built (or was built from another version of
    ``_speedups.c``), and :class:`BPFError` when asked for pure Python on a
    CPU that needs barriers.
    """
    global ACCELERATED, impl
    prev = ACCELERATED
    if enabled:
        impl = _load_speedups()
    else:
        if not _is_tso():
            raise BPFError(f"the pure-Python ring paths cannot run on {platform.machine()}",
                           hint="keep the C accelerator enabled")
        impl = _ringpure
    ACCELERATED = enabled
    return prev


def check_arch() -> None:
    """Refuse to open a ring when the active backend cannot order its
    accesses on this CPU (pure Python on a weakly ordered one)."""
    if ACCELERATED or _is_tso():
        return
    machine = platform.machine()
    if os.environ.get(_PURE_ENV, "") == "1":
        hint = f"unset {_PURE_ENV}: the C accelerator provides the barriers"
    else:
        hint = ("install bpfring with a C compiler and the Python headers present, so that "
                "its C accelerator (bpfring._speedups) is built, or use an x86-64 host")
    raise BPFError(
        f"ring buffer access needs acquire/release barriers on {machine}, which only "
        "bpfring's C accelerator provides, and it is not available",
        hint=hint,
    )


def accelerator_status() -> str:
    """One line for ``bpfring --version``: is the C accelerator running the
    hot paths, and if not, why."""
    if ACCELERATED:
        return "C accelerator: active"
    if os.environ.get(_PURE_ENV, "") == "1":
        return f"C accelerator: off ({_PURE_ENV}=1), pure-Python ring paths"
    try:
        importlib.import_module(f"{__package__}._speedups")
    except ImportError as e:
        return f"C accelerator: not available ({e}), pure-Python ring paths"
    return "C accelerator: built but unused, pure-Python ring paths"


# The choice, made once at import.
if os.environ.get(_PURE_ENV, "") != "1":
    try:
        set_accelerated(True)
    except ModuleNotFoundError as e:  # not built (no compiler at install time): pure Python
        if e.name != f"{__package__}._speedups":
            raise
    except ImportError as e:  # built but unusable (stale build, failed to load)
        log.warning("bpfring's C accelerator is not used: %s", e)
