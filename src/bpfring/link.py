"""Links: the attachment of a BPF program to a hook (tracepoint, kprobe, ...).

A link keeps its program attached until it is closed; the BPF object closes
its links when it is closed.  The link's fd belongs to libbpf's ``struct
bpf_link`` (``bpf_link__destroy`` closes it), so a :class:`Link` holds that
handle rather than an fd of its own, and exposes the fd only while attached."""

from __future__ import annotations

from ._libbpf import lib

__all__ = ["Link"]


class Link:
    """An attached program.  Close it to detach (idempotent)."""

    def __init__(self, ptr: int, program: str) -> None:
        self._ptr: int | None = ptr
        self.program = program

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
        if self._ptr is not None:
            lib.bpf_link__destroy(self._ptr)
            self._ptr = None

    detach = close

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Link {self.program} {'closed' if self._ptr is None else 'attached'}>"
