"""An owned file descriptor: one small type that maps, rings, links and
objects hold instead of a bare ``int``.

Why a type: a bare int invites ``-1``/``-2`` sentinels, double closes (which
may close an unrelated fd that reused the number) and leaks when the owner
is dropped without ``close()``.  :class:`OwnedFD` closes exactly once, raises
a clear error when used after close, and, like a file object, closes the fd
with a :class:`ResourceWarning` when it is garbage-collected while still open.
"""

from __future__ import annotations

import fcntl
import os
import warnings
import weakref

from .errors import BPFError

__all__ = ["OwnedFD"]


def _close_leaked(fd: int, what: str) -> None:
    # Runs from the garbage collector (or at exit): warn as files do, then close.
    warnings.warn(f"unclosed {what} (fd {fd}); close it or use 'with'", ResourceWarning,
                  stacklevel=2)
    try:
        os.close(fd)
    except OSError:
        pass


class OwnedFD:
    """A file descriptor this process owns and closes exactly once.

    ``what`` names the object in messages ("ring buffer map", "link", ...).
    """

    __slots__ = ("__weakref__", "_fd", "_finalizer", "what")

    def __init__(self, fd: int, what: str = "file descriptor") -> None:
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            raise ValueError(f"not a file descriptor: {fd!r}")
        self._fd = fd
        self.what = what
        self._finalizer = weakref.finalize(self, _close_leaked, fd, what)
        self._finalizer.atexit = False  # the kernel closes everything at exit anyway

    @classmethod
    def dup(cls, fd: int, what: str = "file descriptor") -> OwnedFD:
        """Own a private duplicate of ``fd`` (close-on-exec, number >= 3, so it
        never lands on stdin/stdout/stderr); the caller keeps ``fd``."""
        try:
            new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        except OSError as e:
            raise BPFError(f"cannot duplicate fd {fd} ({what}): {e.strerror}",
                           errno=e.errno, hint="pass an open file descriptor") from None
        return cls(new, what)

    def fileno(self) -> int:
        """The descriptor; :class:`ValueError` once closed (as for files)."""
        if not self._finalizer.alive:
            raise ValueError(f"{self.what} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self._finalizer.detach() is not None:
            os.close(self._fd)

    def detach(self) -> int:
        """Give up ownership: return the descriptor without closing it."""
        fd = self.fileno()
        self._finalizer.detach()
        return fd

    def duplicate(self) -> OwnedFD:
        """A new :class:`OwnedFD` for the same open file."""
        return OwnedFD.dup(self.fileno(), self.what)

    def __enter__(self) -> OwnedFD:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<OwnedFD {self.what} {state}>"
