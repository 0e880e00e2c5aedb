"""The C interpreter backend, and the choice of interpreter (made once).

:class:`CInterpreter` has the interface of the pure-Python reference
:class:`~._interp.Interpreter` (``run``, ``call``, ``count``, ``image``,
``context``, ``mem``, ``disasm``; helpers get it as their first argument)
and runs the instructions in ``bpfring._speedups._VM`` (``_speedups_vm.c``):
the same semantics, region checks, budget, frames, tail calls and error
texts, about a hundred times faster.  The C loop calls back here for what
needs Python: helpers and kfuncs (the same table as the reference; only
``bpf_ktime_get_ns``, the loop of ``bpf_loop``, the map lookup/update/
delete helpers on array and hash maps and ``bpf_ringbuf_output``/
``_submit``/``_discard`` run in C), tail-call
targets (:meth:`_tail`), the special loads of ctx regions, and the text of
a memory fault (:meth:`_fault`, so both backends word it alike).

:func:`make_interpreter` picks the backend for new objects: the C one when
the accelerator is built (with this VM's ``_VM_API``) and
``BPFRING_PURE_PYTHON=1`` is not set, as for the rings
(:mod:`bpfring._ringbackend`); :func:`set_backend` switches it for tests
and benchmarks.
"""

from __future__ import annotations

import importlib
import os
import struct
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from ._errors import UserRuntimeError
from ._hash import HashMap
from ._helpers import (
    ktime_get_ns,
    map_delete_elem,
    map_lookup_elem,
    map_update_elem,
    ringbuf_discard,
    ringbuf_output,
    ringbuf_submit,
)
from ._helpers import loop as bpf_loop
from ._interp import (
    DEFAULT_BUDGET,
    MAX_FRAMES,
    STACK_SIZE,
    Image,
    Interpreter,
    callback_target,
    error_at,
)
from ._interp import disasm_at as _disasm_at
from ._kernel import KernelMap
from ._maps import ArrayMap
from ._memory import M64, Fault, Memory
from ._ringbuf import RingBufMap

__all__ = ["BACKENDS", "CInterpreter", "backend", "backend_status", "encode",
           "make_interpreter", "set_backend"]

#: The ``VM_API`` of the _speedups_vm.c this module was written against.
VM_API = 3
#: code, dst, src, off, (pad), imm (s32), run: struct vm_insn of _speedups_vm.c.
_SLOT = struct.Struct("<BBBxhxxiI")
_FILLER = 0xFF  # encodings the loader refuses (ALU64/JMP32 operation 0xf0)
_END_CODE = 0xFE
M32 = 0xFFFF_FFFF
BACKENDS = ("c", "python")

Helper = Callable[..., int]


def _s32(v: int) -> int:
    return ((v & M32) ^ 0x8000_0000) - 0x8000_0000


def encode(image: Image) -> bytes:
    """The 16-byte slots of ``image`` the C loop runs, then a sentinel slot
    (running off the end lands on it).

    An ld_imm64 keeps the low half of its constant and its second slot the
    high half, as in the kernel's encoding.  ``run`` is the number of
    instructions from a slot to the end of its straight run (the next jump,
    call, exit, ld_imm64 or the sentinel, included): the C loop charges the
    budget once per run."""
    insns = image.insns
    codes = [_FILLER if i.code < 0 else i.code & 0xFF for i in insns] + [_END_CODE]
    runs = [0] * len(codes)
    nxt = 0
    for k in range(len(codes) - 1, -1, -1):
        c = codes[k]
        if c in (_FILLER, _END_CODE, 0x18) or c & 7 in (5, 6):
            nxt = 1
        else:
            nxt += 1
        runs[k] = nxt
    imms = [_s32(i.imm) for i in insns]
    for k, i in enumerate(insns):
        if codes[k] == 0x18 and codes[k + 1] == _FILLER:
            imms[k + 1] = _s32((i.imm & M64) >> 32)
    pack = _SLOT.pack
    out = [pack(codes[k], i.dst & 0xFF, i.src & 0xFF, i.off, imms[k], runs[k])
           for k, i in enumerate(insns)]
    out.append(pack(_END_CODE, 0, 0, 0, 0, 1))
    return b"".join(out)


def _load_vm() -> ModuleType:
    sp = importlib.import_module("bpfring._speedups")
    if getattr(sp, "_VM_API", None) != VM_API:
        raise ImportError(f"{sp.__file__} has no VM of API {VM_API}; rebuild it "
                          "(pip install -e .)")
    return sp


class CInterpreter:
    """Runs images of one object in the C VM (see the module docstring)."""

    def __init__(self, mem: Memory, helpers: dict[int, tuple[str, Helper]],
                 tail_target: Callable[[int, int], Image | None], budget: int = DEFAULT_BUDGET
                 ) -> None:
        sp = _load_vm()
        self.mem = mem
        self.helpers = helpers
        self.tail_target = tail_target
        self.budget = budget
        self.context: Any = None
        self._stacks = [bytearray(STACK_SIZE) for _ in range(MAX_FRAMES)]
        self._stack_base = [mem.add(b, f"stack frame {i}", kind="stack")
                            for i, b in enumerate(self._stacks)]
        self._codes: dict[int, tuple[Image, bytes]] = {}
        self._given: Image | None = None  # set by the object for a call() outside a run
        ktime, loop = helpers.get(5), helpers.get(181)
        # The map helpers run in C on ArrayMap/HashMap maps (the same state,
        # rules and return codes), queue KernelMap updates/deletes through its
        # _queue, and bpf_ringbuf_output/_submit/_discard write RingBufMap
        # rings in C; anything else goes to these very helpers.
        fast = tuple(h[1] if (h := helpers.get(hid)) is not None and h[1] is fn else None
                     for hid, fn in ((1, map_lookup_elem), (2, map_update_elem),
                                     (3, map_delete_elem), (130, ringbuf_output),
                                     (132, ringbuf_submit), (133, ringbuf_discard)))
        self._vm: Any = sp._VM(self._stacks, self._stack_base, mem.regions, helpers, Fault,
                              ktime_get_ns if ktime is not None and ktime[1] is ktime_get_ns
                              else None,
                              bpf_loop if loop is not None and loop[1] is bpf_loop else None,
                              (*fast, ArrayMap, HashMap, KernelMap, RingBufMap))

    # what helpers and the object read -------------------------------------------------

    @property
    def count(self) -> int:
        """Instructions run so far in the current (or last) run."""
        return int(self._vm.count)

    @count.setter
    def count(self, value: int) -> None:
        self._vm.count = value

    @property
    def image(self) -> Image | None:
        """The image running now (during a helper: the caller's), or the one
        the object set for a :meth:`call` outside any run (a timer callback)."""
        if self._given is not None:
            return self._given
        img = self._vm.image
        return img if isinstance(img, Image) else None

    @image.setter
    def image(self, value: Image | None) -> None:
        self._given = value

    @property
    def tail_calls(self) -> int:
        return int(self._vm.tail_calls)

    @property
    def regs(self) -> list[int]:
        """r0-r10 (a copy)."""
        return list(self._vm.regs)

    # public ----------------------------------------------------------------------------

    def run(self, image: Image, r1: int, budget: int | None = None, repeat: int = 1,
            after: Callable[[], object] | None = None, always: bool = False) -> int:
        """Run ``image`` from its first instruction with ``r1``; return r0.

        ``repeat`` runs it that many times in the C loop (each with its own
        budget, registers and stack; memory persists), calling ``after()``
        once a run ended when ``always`` is true or a helper ran in Python in
        it; the first error stops.  r0 is the last run's."""
        if repeat < 1:
            raise ValueError("repeat must be at least 1")
        self._given = None  # inside a run the VM knows its image
        hit = self._codes.get(id(image))
        code = hit[1] if hit is not None and hit[0] is image else self._code(image)
        limit = self.budget if budget is None else max(budget, 0)
        try:
            return int(self._vm.run(self, image, code, r1 & M64, limit, repeat, after, always))
        except Exception as e:  # worded as the reference's loop
            err = self._convert(e, image)
            if err is e:
                raise
            raise err from (e if self._internal(e) else None)

    def call(self, func_addr: int, args: Sequence[int]) -> int:
        """Call the program's function at ``func_addr`` (a callback given to a
        helper) with up to five arguments, in a new frame; return its r0."""
        image, target = callback_target(self.image, self.mem, func_addr, self._vm.depth)
        code = self._code(image)
        try:
            return int(self._vm.call(self, image, code, target, tuple(args[:5])))
        except Exception as e:  # worded as the reference's loop
            err = self._convert(e, image)
            if err is e:
                raise
            raise err from (e if self._internal(e) else None)

    def disasm(self, image: Image, pc: int) -> str:
        return _disasm_at(image, pc, self.helper_name)

    def helper_name(self, hid: int) -> str:
        h = self.helpers.get(hid)
        return h[0] if h else ""

    # called by the C loop ----------------------------------------------------------------

    def _tail(self, table: int, index: int) -> tuple[Image, bytes] | None:
        target = self.tail_target(table, index)
        return None if target is None else (target, self._code(target))

    def _call_error(self, e: BaseException) -> BaseException:
        """The error a callback run by the C loop's bpf_loop raises, converted
        where it happened, as :meth:`call` converts it on the Python path."""
        image = self.image
        if not isinstance(e, Exception) or image is None:
            return e
        err = self._convert(e, image)
        if err is not e:
            err.__cause__ = e if self._internal(e) else None
        return err

    def _fault(self, addr: int, size: int, write: bool, misaligned: bool) -> Fault:
        """The reference's fault for an access the C loop refused."""
        mem = self.mem
        addr &= M64
        if misaligned:
            return Fault(f"misaligned atomic access of {size} bytes at {mem.describe(addr)}")
        reg = mem.regions.get(addr >> 32)
        what = "write" if write else "read"
        if reg is not None and write and not reg.writable and (addr & M32) + size <= reg.size:
            return Fault(f"{what} of {size} bytes to read-only {reg.kind} {reg.name}")
        return Fault(f"invalid {what} of {size} bytes at {mem.describe(addr)}")

    # internals ---------------------------------------------------------------------------

    def _code(self, image: Image) -> bytes:
        hit = self._codes.get(id(image))
        if hit is None or hit[0] is not image:
            hit = (image, encode(image))
            self._codes[id(image)] = hit
        return hit[1]

    @staticmethod
    def _internal(e: Exception) -> bool:
        return not isinstance(e, UserRuntimeError | Fault | RecursionError)

    def _convert(self, e: Exception, image: Image) -> Exception:
        """The exception a C entry's error ``e`` becomes: the reference loop's
        :class:`UserRuntimeError` wording (an error raised below, already
        converted, passes through; anything else propagates unchanged)."""
        if isinstance(e, UserRuntimeError):
            return e
        if isinstance(e, Fault):
            return self._error(str(e), image)
        if isinstance(e, RecursionError):
            return self._error("Python recursion limit reached", image)
        if isinstance(e, IndexError | KeyError):
            img, pc = self._where(image)
            if not 0 <= pc < len(img.insns):
                return self._error(f"the program counter left the program ({e})", image)
            return self._error(f"internal error: {type(e).__name__}: {e}", image)
        if isinstance(e, TypeError | ValueError | OverflowError | struct.error | BufferError):
            return self._error(f"internal error: {type(e).__name__}: {e}", image)
        return e

    def _where(self, image: Image) -> tuple[Image, int]:
        img = self._vm.err_image
        return (img if isinstance(img, Image) else image), int(self._vm.err_pc)

    def _error(self, message: str, image: Image) -> UserRuntimeError:
        img, pc = self._where(image)
        return error_at(img, pc, message, self.helper_name)


# the choice ----------------------------------------------------------------------------

_PURE_ENV = "BPFRING_PURE_PYTHON"
_backend = "python"
_why = ""


def set_backend(name: str) -> str:
    """Make ``"c"`` or ``"python"`` the interpreter of objects loaded from now
    on; return the previous one.  The test and benchmark hook; raises
    ImportError when the C VM is not built."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {name!r}")
    if name == "c":
        _load_vm()
    prev, _backend = _backend, name
    return prev


def backend() -> str:
    """The interpreter new user-space objects get: ``"c"`` or ``"python"``."""
    return _backend


def backend_status() -> str:
    """One line for ``bpfring --version``."""
    if _backend == "c":
        return "user-space eBPF interpreter: C"
    return f"user-space eBPF interpreter: pure Python ({_why or 'selected'})"


def make_interpreter(mem: Memory, helpers: dict[int, tuple[str, Helper]],
                     tail_target: Callable[[int, int], Image | None],
                     budget: int = DEFAULT_BUDGET) -> Interpreter | CInterpreter:
    """A new interpreter of the chosen backend for one object."""
    if _backend == "c":
        return CInterpreter(mem, helpers, tail_target, budget)
    return Interpreter(mem, helpers, tail_target, budget)


if os.environ.get(_PURE_ENV, "") == "1":
    _why = f"{_PURE_ENV}=1"
else:
    try:
        set_backend("c")
    except ImportError as e:  # not built, or a stale build
        _why = f"C accelerator not available: {e}"
