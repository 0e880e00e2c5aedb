"""Links: the attachment of a BPF program to a hook (tracepoint, kprobe, ...).

A link keeps its program attached until it is closed; the BPF object closes
its links when it is closed.  The link's fd belongs to libbpf's ``struct
bpf_link`` (``bpf_link__destroy`` closes it), so a :class:`Link` holds that
handle rather than an fd of its own, and exposes the fd only while attached."""

from __future__ import annotations

import warnings
import weakref

from ._libbpf import lib

__all__ = ["Link"]


def _destroy_leaked(ptr: int, program: str) -> None:
    # From the garbage collector: warn as files do, then detach.
    warnings.warn(f"unclosed link of {program!r}; close it or use 'with'", ResourceWarning,
                  stacklevel=2)
    lib.bpf_link__destroy(ptr)


class Link:
    """An attached program.  Close it to detach (idempotent).

    A link dropped without :meth:`close` is detached when garbage-collected,
    with a :class:`ResourceWarning` (the BPF object keeps the links it
    attached, so this happens with the object or for links made by hand)."""

    _finalizer: weakref.finalize[[int, str], Link] | None = None

    def __init__(self, ptr: int, program: str) -> None:
        self._ptr: int | None = ptr
        self.program = program
        self._finalizer = weakref.finalize(self, _destroy_leaked, ptr, program)
        # At exit the kernel detaches everything; libbpf may be gone by then.
        self._finalizer.atexit = False

    @property
    def fd(self) -> int:
        """The link's fd (libbpf's); :class:`ValueError` once closed."""
        if self._ptr is None:
            raise ValueError(f"link of {self.program!r} is closed")
        return int(lib.bpf_link__fd(self._ptr))

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def close(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is None:
            return
        # The finalizer may already have run (the link went with a garbage
        # cycle, its weakref callback before the owner's __del__): destroy once.
        fin = self._finalizer
        if fin is None or fin.detach() is not None:
            lib.bpf_link__destroy(ptr)

    detach = close

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Link {self.program} {'closed' if self._ptr is None else 'attached'}>"
