"""Run BPF objects in user space: the same object file, in this process,
without privileges or kernel BPF support.

::

    from bpfring import userspace

    with userspace.load("prog.bpf.c") as obj:        # or a .bpf.o, C text, ELF bytes
        rc = obj.programs["handler"].run(ctx=bytes(16))
        obj.maps["counts"][0], obj.globals.hits       # same API as bpfring.load()

The object's ELF file is read here (:mod:`._elf`), its maps live in memfd
memory with the kernel's element semantics and, for ring buffers, the
kernel's memory layout (:mod:`._maps`, :mod:`._ringbuf`), and its programs
run in an interpreter of the full eBPF instruction set -- the C one of the
accelerator, or the pure-Python reference (:mod:`._interp`); :mod:`._cinterp`
chooses -- that checks every memory access against the regions the
program was given and stops runaway loops with an instruction budget.  A
misbehaving program raises :class:`UserRuntimeError` naming the instruction;
an object using something not implemented raises :class:`UserLoadError`
naming it.  See docs/userspace.md.
"""

from __future__ import annotations

from ._errors import UserLoadError, UserRuntimeError
from ._interp import DEFAULT_BUDGET
from ._kernel import KernelArrayMap, KernelMap, KernelRingMap
from ._maps import UserMap
from ._object import RunResult, UserObject, UserProgram, load, load_insns
from ._perf import UserPerfBuffer
from ._pyhook import CTX as PYCALL_CTX
from ._pyhook import PythonLink, attach_python
from ._ringbuf import RingBufMap
from ._share import open_map

__all__ = [
    "DEFAULT_BUDGET",
    "PYCALL_CTX",
    "KernelArrayMap",
    "KernelMap",
    "KernelRingMap",
    "PythonLink",
    "RingBufMap",
    "RunResult",
    "UserLoadError",
    "UserMap",
    "UserObject",
    "UserPerfBuffer",
    "UserProgram",
    "UserRuntimeError",
    "attach_python",
    "load",
    "load_insns",
    "open_map",
]
