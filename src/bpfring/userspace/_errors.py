"""Errors of the user-space runtime.

Both derive from :class:`bpfring.BPFError`.  They live here until the lead
moves them into :mod:`bpfring.errors`; import them from
:mod:`bpfring.userspace`.
"""

from __future__ import annotations

from ..errors import BPFError

__all__ = ["UserLoadError", "UserRuntimeError"]


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
        return (_rebuild, (type(self), self.reason, self.program, self.pc, self.insn,
                           self.function, self.source, self.errno, self.hint))


def _rebuild(cls: type[UserRuntimeError], reason: str, program: str, pc: int, insn: str,
             function: str, source: str, err: int | None, hint: str | None
             ) -> UserRuntimeError:
    return cls(reason, program=program, pc=pc, insn=insn, function=function, source=source,
               errno=err, hint=hint)
