"""The bpfring exception tree.

Every error bpfring raises derives from :class:`BPFError`, which is an
:class:`OSError`: where the kernel gave an errno, ``exc.errno`` carries it, so
code that already handles ``OSError`` keeps working.  Several classes also
derive from the builtin exception a Python programmer would expect
(``PermissionError``, ``TypeError``, ``ValueError``), so either style of
``except`` clause catches them.

Each error may carry a ``hint``: one sentence telling the user what to do.
The CLI prints ``message (hint: ...)`` on one line.
"""

from __future__ import annotations

import errno as _errno
from typing import Any

__all__ = [
    "AttachError",
    "BPFError",
    "BPFPermissionError",
    "BTFError",
    "BuildError",
    "KernelTooOld",
    "LibbpfNotFound",
    "LoadError",
    "MapTypeError",
    "MissingExtra",
    "NotMountedError",
    "RecordTooLarge",
    "RingCorrupted",
    "RingFull",
    "SampleError",
    "ToolNotFound",
    "TypeNotFound",
    "UserLoadError",
    "UserRuntimeError",
]


class BPFError(OSError):
    """Root of every bpfring error.

    ``errno`` is set when the failure came from a system call; ``hint`` is a
    short suggestion for the user, or ``None``.
    """

    def __init__(self, message: str, *, errno: int | None = None, hint: str | None = None) -> None:
        if errno is not None:
            super().__init__(errno, message)
        else:
            super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.errno is not None:
            text = f"{text} [{_code_name(self.errno)}]"
        if self.hint:
            text = f"{text} (hint: {self.hint})"
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # keep pickling (multiprocessing) working
        return (_rebuild, (type(self), self.message, self.errno, self.hint))


def _code_name(err: int) -> str:
    """``ENOENT`` for errnos, ``LIBBPF_ERRNO__FORMAT``-style names for
    libbpf's own codes (4000 on, named in ``_libbpf.LIBBPF_ERRNO``)."""
    name = _errno.errorcode.get(err)
    if name is None and 4000 <= err < 4100:
        import sys

        table = getattr(sys.modules.get("bpfring._libbpf"), "LIBBPF_ERRNO", {})
        name = table.get(err, (f"libbpf error {err}",))[0]
    return name or str(err)


def _rebuild(cls: type[BPFError], message: str, err: int | None, hint: str | None) -> BPFError:
    return cls(message, errno=err, hint=hint)


class BPFPermissionError(BPFError, PermissionError):
    """The kernel refused for lack of privileges (EPERM/EACCES)."""


class KernelTooOld(BPFError):
    """The running kernel lacks a feature (map type, helper, program type)."""


class NotMountedError(BPFError):
    """A pseudo file system bpfring needs (tracefs, bpffs) is not mounted."""


class LibbpfNotFound(BPFError):
    """``libbpf.so.1`` (1.1 or newer) cannot be opened; the hint names the
    package.  Raised on first use of libbpf (opening or loading an object),
    not at import."""


class BuildError(BPFError):
    """Compiling BPF C failed; ``diagnostics`` holds the compiler's output."""

    def __init__(self, message: str, *, diagnostics: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.diagnostics = diagnostics

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n{self.diagnostics}" if self.diagnostics else base


class ToolNotFound(BuildError, FileNotFoundError):
    """A required program (clang, bpftool) is missing; the hint names its package."""


class MissingExtra(BPFError):
    """An optional Python package (pyarrow, pandas, polars) is not installed;
    ``extra`` is the bpfring extra that brings it, and the hint the ``pip``
    command.  Raised before anything is consumed from a ring."""

    def __init__(self, message: str, *, extra: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.extra = extra

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_extra, (self.message, self.extra, self.hint))


def _rebuild_extra(message: str, extra: str, hint: str | None) -> MissingExtra:
    return MissingExtra(message, extra=extra, hint=hint)


class LoadError(BPFError):
    """libbpf or the verifier refused the object; ``log`` holds the verifier log."""

    def __init__(self, message: str, *, log: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.log = log

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n--- verifier/libbpf log ---\n{self.log}" if self.log else base


class AttachError(BPFError):
    """Attaching a program (tracepoint, kprobe, ...) failed."""


class MapTypeError(BPFError, TypeError):
    """A map is not of the type the operation needs (e.g. not a ring buffer)."""


class RingFull(BPFError):
    """No room in a ring buffer for the requested record (ENOSPC)."""

    def __init__(self, message: str = "ring buffer is full", **kw: Any) -> None:
        kw.setdefault("errno", _errno.ENOSPC)
        super().__init__(message, **kw)


class RecordTooLarge(BPFError, ValueError):
    """A record can never fit in the ring, whatever the consumer does (E2BIG)."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("errno", _errno.E2BIG)
        super().__init__(message, **kw)


class SampleError(BPFError, RuntimeError):
    """A reserved sample was misused: submitted or discarded twice, or used after."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("errno", _errno.EINVAL)
        super().__init__(message, **kw)


class RingCorrupted(BPFError):
    """The shared ring memory holds content the protocol forbids (bad length,
    misaligned position): another producer or consumer misbehaved."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("errno", _errno.EINVAL)
        super().__init__(message, **kw)


class BTFError(BPFError):
    """BTF data is missing or malformed."""


class TypeNotFound(BTFError, KeyError):
    """A named type is not in the BTF; the message says why and how to keep it."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return BPFError.__str__(self)


class UserLoadError(BPFError):
    """The object cannot run in user space: a malformed ELF file, or an
    instruction, relocation, helper, map type or section the runtime does not
    implement (the message names it)."""


class UserRuntimeError(BPFError):
    """A program broke the rules while running in user space: a memory access
    outside every region it may touch, a runaway loop (instruction budget), a
    call stack too deep, or a helper given a bad argument.

    ``pc`` is the instruction index in the program (as in a verifier log),
    ``insn`` its disassembly, ``program`` the program's name, ``function``
    the function (program or subprogram) holding the instruction and
    ``source`` the C line it came from (``file:line: text``, from the object's
    line info; empty without ``-g``).
    """

    def __init__(self, message: str, *, program: str = "", pc: int = -1, insn: str = "",
                 function: str = "", source: str = "", **kw: object) -> None:
        where = ""
        if pc >= 0:
            fn = f" in {function}" if function and function != program else ""
            where = f" at insn {pc}{fn} ({insn})" if insn else f" at insn {pc}{fn}"
        prog = f"program {program!r}" if program else "program"
        text = f"{prog}{where}: {message}" + (f"\n  at {source}" if source else "")
        super().__init__(text, **kw)  # type: ignore[arg-type]
        self.program = program
        self.pc = pc
        self.insn = insn
        self.function = function
        self.source = source
        self.reason = message

    def __reduce__(self):  # type: ignore[no-untyped-def]  # pickling (multiprocessing)
        return (_rebuild_runtime_error, (type(self), self.reason, self.program, self.pc, self.insn,
                           self.function, self.source, self.errno, self.hint))


def _rebuild_runtime_error(cls: type[UserRuntimeError], reason: str, program: str, pc: int,
                           insn: str, function: str, source: str, err: int | None,
                           hint: str | None) -> UserRuntimeError:
    return cls(reason, program=program, pc=pc, insn=insn, function=function, source=source,
               errno=err, hint=hint)
