"""Debug mode for callbacks: catch a view of a record used after its callback.

A callback's view points into the ring's shared memory, which the kernel
reuses once the record is consumed: a view (or a slice, cast or numpy array
of it) kept past the call silently shows newer records after the ring wraps.
In debug mode (``debug=True`` on a ring, or ``BPFRING_DEBUG=1`` in the
environment) the callback gets a read-only view of a private copy instead,
and when the callback returns:

* the view is released, so any later use of it raises ``ValueError``
  (Python's own "operation forbidden on released memoryview object");
* if the callback kept anything derived from it (Python offers no way to
  release those), the copy is overwritten with ``0xDB`` bytes and
  :class:`CallbackKeptView` (a ``ValueError``) is raised on the spot, so
  the record is not consumed and the bug shows at its source.

It costs a copy and two checks per record: for development and tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..errors import BPFError

__all__ = ["CallbackKeptView", "debug_callback", "debug_default"]

POISON = 0xDB


class CallbackKeptView(BPFError, ValueError):
    """A ring callback kept a view of its record past the call (debug mode)."""


def debug_default(debug: bool | None) -> bool:
    """``debug`` as given, or, when None, whether ``BPFRING_DEBUG`` is set to
    something other than empty or ``0`` (read when the ring is made)."""
    if debug is not None:
        return bool(debug)
    return os.environ.get("BPFRING_DEBUG", "") not in ("", "0")


def _still_exported(copy: bytearray) -> bool:
    """Whether a view derived from ``copy`` is still alive: a bytearray with
    live buffer exports refuses to change size."""
    try:
        copy.append(0)
    except BufferError:
        return True
    copy.pop()
    return False


def debug_callback(callback: Callable[[memoryview], Any], what: str
                   ) -> Callable[[memoryview], Any]:
    """``callback`` wrapped as the module docstring describes; ``what`` names
    the ring in the error."""

    def checked(view: memoryview) -> Any:
        copy = bytearray(view)
        mine = memoryview(copy).toreadonly()
        try:
            result = callback(mine)
        finally:
            mine.release()
            kept = _still_exported(copy)
            if kept:
                copy[:] = bytes([POISON]) * len(copy)
        if kept:
            raise CallbackKeptView(
                f"{what} callback kept a view of its {len(copy)}-byte record past the "
                "call (a slice, cast or numpy array of it); that memory is reused by "
                "newer records",
                hint="copy what you keep: bytes(view[a:b]), array.copy(), or decode "
                     "the record inside the callback")
        return result

    return checked
