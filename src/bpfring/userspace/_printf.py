"""The format language of ``bpf_trace_printk`` and ``bpf_snprintf``, with the
kernel's rules (``bpf_bprintf_prepare`` in kernel/bpf/helpers.c).

Accepted: printable ASCII and white space; ``%%``; conversions ``d i u x X``
with an optional ``l``/``ll`` (64-bit; without it the argument is taken as a
32-bit int), ``c``, ``s``, ``p``/``pK``/``px`` and ``pi4``/``pI4``; flags
``0 + - space`` and a width.  No precision, no ``h``, no other ``%p``
extensions: those, a conversion without an argument or a non-printable byte
make the whole call fail with ``-EINVAL``, as in the kernel.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["FormatError", "bprintf"]

M32 = 0xFFFF_FFFF
M64 = (1 << 64) - 1


class FormatError(Exception):
    """The format is one the kernel refuses (-EINVAL)."""


def _printable(c: int) -> bool:
    return 0x20 <= c < 0x7F or c in (0x09, 0x0A, 0x0B, 0x0C, 0x0D)


def bprintf(fmt: bytes, args: list[int], read_str: Callable[[int], bytes],
            read_mem: Callable[[int, int], bytes | None]) -> bytes:
    """Format ``fmt`` (without its NUL) with the raw 64-bit ``args``.

    ``read_str(addr)`` gives the string for ``%s`` (empty when unreadable, as
    the kernel prints a faulting string); ``read_mem(addr, n)`` the bytes
    behind ``%pI4`` (None when unreadable)."""
    out = bytearray()
    i, n, argi = 0, len(fmt), 0
    while i < n:
        c = fmt[i]
        if not _printable(c):
            raise FormatError(f"byte {c:#x} at {i} is not printable")
        if c != 0x25:  # '%'
            out.append(c)
            i += 1
            continue
        if i + 1 < n and fmt[i + 1] == 0x25:
            out.append(0x25)
            i += 2
            continue
        if argi >= len(args):
            raise FormatError("more conversions than arguments")
        arg = args[argi]
        argi += 1
        i += 1
        start = i
        while i < n and fmt[i] in b"0+- ":
            i += 1
        if i < n and 0x31 <= fmt[i] <= 0x39:
            i += 1
            while i < n and 0x30 <= fmt[i] <= 0x39:
                i += 1
        spec = fmt[start:i]
        if i >= n:
            raise FormatError("format ends inside a conversion")
        conv = fmt[i]
        if conv == 0x70:  # 'p'
            i += 1
            nxt = fmt[i] if i < n else 0
            if nxt in (0x69, 0x49) and i + 1 < n and fmt[i + 1] == 0x34:  # pi4 / pI4
                raw = read_mem(arg, 4)
                ip = ".".join(str(b) for b in raw) if raw else "(efault)"
                out += (b"%" + spec + b"s") % ip.encode()
                i += 2
                continue
            if nxt in (0x4B, 0x78):  # 'K' or 'x'
                i += 1
            elif nxt and not (nxt in b" \t\n" or (0x21 <= nxt <= 0x2F) or
                              (0x3A <= nxt <= 0x40) or (0x5B <= nxt <= 0x60) or
                              (0x7B <= nxt <= 0x7E)):
                raise FormatError(f"unsupported %p extension {chr(nxt)!r}")
            out += (b"%" + spec + b"s") % f"{arg & M64:016x}".encode()
            continue
        if conv == 0x63:  # 'c'
            out += (b"%" + spec + b"c") % (arg & 0xFF)
            i += 1
            continue
        if conv == 0x73:  # 's'
            out += (b"%" + spec + b"s") % read_str(arg)
            i += 1
            continue
        wide = False
        if conv == 0x6C:  # 'l'
            wide = True
            i += 1
            if i < n and fmt[i] == 0x6C:
                i += 1
        if i >= n:
            raise FormatError("format ends inside a conversion")
        conv = fmt[i]
        i += 1
        if conv in (0x64, 0x69):  # d i
            v = arg & (M64 if wide else M32)
            bits = 64 if wide else 32
            if v >> (bits - 1):
                v -= 1 << bits
            out += (b"%" + spec + b"d") % v
        elif conv == 0x75:  # u
            out += (b"%" + spec + b"d") % (arg & (M64 if wide else M32))
        elif conv in (0x78, 0x58):  # x X
            out += (b"%" + spec + bytes([conv])) % (arg & (M64 if wide else M32))
        else:
            raise FormatError(f"unsupported conversion {chr(conv)!r}")
    return bytes(out)
