"""The address space of user-space BPF programs: a table of regions.

A program never holds a real pointer.  Every pointer it can obtain (its
stack, the ctx, packet data, a map value, a global section, a ring record)
is a *tagged* 64-bit address ``REGION_TAG | rid << 32 | offset``: the upper
32 bits name a region, the lower 32 bits are the offset in it.  Every load
and store looks the region up and checks ``offset + size <= region.size``
(and that the region is writable for a store), so a program can touch only
the bytes it was given, whatever arithmetic it does.

The tags are non-canonical x86-64/arm64 addresses, so they can never be
confused with a real address of the process (``bpf_probe_read_user`` treats
an address outside every region as a real one and reads it with
``process_vm_readv``, which fails cleanly where nothing is mapped).  Region
numbers are even and never reused while the table lives long enough to
matter, so running off the end or the start of a region lands in an odd,
never-mapped number instead of the neighbouring region.

Map handles (``ld_imm64`` of a map) and function addresses (callbacks) are
tagged too, with their own tags; they are not memory, so any access through
them fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["FUNC_TAG", "MAP_TAG", "REGION_TAG", "Fault", "Memory", "Region"]

M64 = (1 << 64) - 1
REGION_TAG = 0x4000_0000  # upper 32 bits of region addresses start here
MAP_TAG = 0x5000_0000_0000_0000
FUNC_TAG = 0x6000_0000_0000_0000
_MAX_RID = 0x0FFF_FFFE  # region numbers below 0x1000_0000: all tags stay in 0x4xxx...


class Fault(Exception):
    """A memory or argument violation inside the runtime; the interpreter turns
    it into :class:`~bpfring.userspace.UserRuntimeError` with the pc."""


class Region:
    """``size`` bytes of ``buf`` a program may access at address ``base``.

    ``load`` (optional) computes special loads: for a ctx whose 32-bit fields
    the kernel rewrites into 64-bit pointer loads (``xdp_md.data``), it gets
    ``(offset, size)`` and returns the value, or None for a plain load.
    """

    __slots__ = ("base", "buf", "kind", "load", "name", "size", "writable")

    def __init__(self, buf: Any, size: int, name: str, writable: bool, kind: str,
                 load: Callable[[int, int], int | None] | None = None) -> None:
        self.buf = buf
        self.size = size
        self.name = name
        self.writable = writable
        self.kind = kind
        self.load = load
        self.base = 0

    def __repr__(self) -> str:
        return f"<Region {self.name} {self.kind} {self.size}B {'rw' if self.writable else 'ro'}>"


class Memory:
    """The region table of one user-space object."""

    def __init__(self) -> None:
        self.regions: dict[int, Region] = {}
        self._next = 0

    def add(self, buf: Any, name: str, *, writable: bool = True, kind: str = "mem",
            size: int | None = None, load: Callable[[int, int], int | None] | None = None
            ) -> int:
        """Register ``buf`` (a writable buffer, or read-only for ``writable=False``)
        and return its base address."""
        n = len(buf) if size is None else size
        if n > 0xFFFF_FFFF:
            raise ValueError(f"region {name} is larger than 4 GiB")
        reg = Region(buf, n, name, writable, kind, load)
        for _ in range(_MAX_RID // 2 + 1):
            self._next = (self._next + 2) % _MAX_RID
            key = REGION_TAG + self._next
            if key not in self.regions:
                break
        else:  # pragma: no cover - 128M live regions
            raise MemoryError("the region table is full")
        self.regions[key] = reg
        reg.base = key << 32
        return reg.base

    def remove(self, base: int) -> None:
        self.regions.pop(base >> 32, None)

    def region(self, addr: int) -> Region | None:
        """The region holding ``addr`` (any byte of it), or None."""
        reg = self.regions.get((addr & M64) >> 32)
        if reg is None or (addr & 0xFFFF_FFFF) >= max(reg.size, 1):
            return None
        return reg

    def describe(self, addr: int) -> str:
        """Where ``addr`` points, for error messages."""
        addr &= M64
        reg = self.regions.get(addr >> 32)
        off = addr & 0xFFFF_FFFF
        if reg is not None:
            where = "" if off < reg.size else ", past the end of"
            return f"{addr:#x} ({reg.name}+{off}{where} {reg.kind} of {reg.size} bytes)" \
                if where else f"{addr:#x} ({reg.name}+{off}, {reg.kind} of {reg.size} bytes)"
        if addr == 0:
            return "NULL"
        if addr & 0xF000_0000_0000_0000 == MAP_TAG:
            return f"{addr:#x} (a map handle, not memory)"
        if addr & 0xF000_0000_0000_0000 == FUNC_TAG:
            return f"{addr:#x} (a function address, not memory)"
        # An odd region number is a gap: just past the end of the region below
        # (small offsets) or just before the start of the one above (offsets near 4G).
        key = addr >> 32
        if key & 1:
            below, above = self.regions.get(key - 1), self.regions.get(key + 1)
            if above is not None and (off >= 0x8000_0000 or below is None):
                return f"{addr:#x} ({0x1_0000_0000 - off} bytes before the start of {above.name})"
            if below is not None:
                return f"{addr:#x} (past the end of {below.name}, at +{off + (1 << 32)})"
        return f"{addr:#x} (no region)"

    def check(self, addr: int, size: int, write: bool) -> tuple[Region, int]:
        """The region and offset of ``size`` bytes at ``addr``; raise Fault if the
        access is not allowed."""
        addr &= M64
        reg = self.regions.get(addr >> 32)
        off = addr & 0xFFFF_FFFF
        if reg is None or off + size > reg.size:
            what = "write" if write else "read"
            raise Fault(f"invalid {what} of {size} bytes at {self.describe(addr)}")
        if write and not reg.writable:
            raise Fault(f"write of {size} bytes to read-only {reg.kind} {reg.name} "
                        f"(+{off})")
        return reg, off

    def read(self, addr: int, size: int) -> bytes:
        if size == 0:
            return b""
        reg, off = self.check(addr, size, False)
        return bytes(reg.buf[off:off + size])

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        reg, off = self.check(addr, len(data), True)
        reg.buf[off:off + len(data)] = data

    def view(self, addr: int, size: int, write: bool = False) -> memoryview:
        """A memoryview of ``size`` checked bytes (for helpers that copy)."""
        reg, off = self.check(addr, size, write)
        return memoryview(reg.buf)[off:off + size]

    def read_cstr(self, addr: int, limit: int) -> bytes | None:
        """The NUL-terminated string at ``addr`` (without the NUL), read at most
        ``limit`` bytes; None if it is not terminated inside its region."""
        addr &= M64
        reg = self.regions.get(addr >> 32)
        off = addr & 0xFFFF_FFFF
        if reg is None or off >= reg.size:
            raise Fault(f"invalid string read at {self.describe(addr)}")
        end = min(reg.size, off + limit)
        chunk = bytes(reg.buf[off:end])
        i = chunk.find(b"\0")
        return None if i < 0 else chunk[:i]
