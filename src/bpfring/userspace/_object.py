"""User-space BPF objects: the same API as a kernel :class:`bpfring.BPFObject`
(``maps``, ``programs``, ``globals``, ``types``, ``close``, ``with``), with
every program run by the interpreter in this process, without privileges."""

from __future__ import annotations

import errno as _errno
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._globals import GlobalsView
from ..btf import BTF
from ..errors import BPFError, MapTypeError
from . import _elf, _isa
from ._cinterp import CInterpreter, make_interpreter
from ._core import POISON
from ._ctx import make_ctx
from ._elf import LinkedProgram, ObjectImage
from ._errors import UserLoadError, UserRuntimeError
from ._helpers import HELPERS, KFUNCS, helper_name
from ._interp import DEFAULT_BUDGET, Image
from ._maps import ArrayMap, UserMap, make_map, possible_cpus
from ._memory import FUNC_TAG, M64, MAP_TAG, Fault, Memory
from ._perf import PerfEventArrayMap, UserPerfBuffer
from ._pyhook import CTX as PYCALL_CTX
from ._pyhook import MAX_ARGS as MAX_PYARGS
from ._pyhook import PythonLink, attach_python
from ._ringbuf import RingBufMap, UserRingBufMap

if TYPE_CHECKING:
    from ..ringbuf import RingBuffer, UserRingBuffer
from ._special import ProgArrayMap
from ._timers import Timers

__all__ = ["RunResult", "UserObject", "UserProgram", "load", "load_insns"]

M32 = 0xFFFF_FFFF
log = logging.getLogger("bpfring.userspace")


def _poisoned(vm: Any, *_: int) -> int:
    """The helper of a poisoned CO-RE instruction (the note names the relocation)."""
    raise Fault("reached an instruction whose CO-RE relocation found no match in the "
                "target BTF (poisoned at load, as libbpf does; guard it with "
                "bpf_core_field_exists() and friends, or load with btf=\"object\" to "
                "use the object's own types)")


#: HELPERS plus the poison helper, for objects with poisoned instructions.
_POISONED_HELPERS = {**HELPERS, POISON: ("bpf_core_poisoned", _poisoned)}


@dataclass
class RunResult:
    """What the last :meth:`UserProgram.run` left: the 32-bit return value (as
    BPF_PROG_TEST_RUN reports it), the full r0, the packet and ctx after the
    run, the instructions executed and the time per run."""

    retval: int
    r0: int
    data: bytes
    ctx: bytes
    insns: int
    duration_ns: int


class _Context:
    """Per-object state helpers reach through ``interpreter.context``."""

    def __init__(self, maps: list[UserMap], cpu: Callable[[], int], seed: int | None) -> None:
        self.maps = maps
        self.cpu = cpu
        self.rng = random.Random(seed)
        self.locks: set[int] = set()
        self.printed: list[bytes] = []
        self.timers: Timers | None = None

    def printk(self, text: bytes) -> None:
        self.printed.append(text)
        del self.printed[:-1000]


class UserProgram:
    """One program of a :class:`UserObject`."""

    def __init__(self, obj: UserObject, linked: LinkedProgram, image: Image) -> None:
        self._obj = obj
        self._linked = linked
        self.image = image
        self.name = linked.name
        self.section = linked.section
        self.type = linked.prog_type
        self.last_run: RunResult | None = None

    @property
    def insn_count(self) -> int:
        return sum(1 for i in self.image.insns if i.code != _isa.FILLER)

    @property
    def raw(self) -> bytes:
        """The linked instructions in the kernel's encoding (map references as
        ``BPF_PSEUDO_MAP_IDX``/``_IDX_VALUE`` with map indexes)."""
        return self._linked.raw

    def disasm(self) -> str:
        """A listing of the linked program, one instruction per line."""
        lines = []
        starts = {f.start: f.name for f in self.image.functions}
        for pc, ins in enumerate(self._linked.insns):
            if pc in starts:
                lines.append(f"{starts[pc]}:")
            if ins.code == _isa.FILLER:
                continue
            note = self.image.notes.get(pc, "")
            lines.append(f"{pc:5}: {_isa.disasm(ins, helper_name, note)}")
        return "\n".join(lines)

    def run(self, data: bytes = b"", ctx: bytes | None = b"", repeat: int = 1,
            budget: int | None = None) -> int:
        """Run the program (``repeat`` times) and return its return value, the low
        32 bits of r0 read as a signed int, as :meth:`bpfring.Program.run` does.

        ``data`` is the packet of XDP/TC programs, ``ctx`` the context struct's
        bytes (the ``SEC("syscall")`` program's ctx, ``xdp_md``/``__sk_buff``
        fields, raw tracepoint args).  ``budget`` overrides the object's
        instruction budget for each run.  :attr:`last_run` keeps the packet and
        ctx after the last run."""
        if repeat < 1:
            raise ValueError("repeat must be at least 1")
        return self._obj._run(self, bytes(data), None if ctx is None else bytes(ctx), repeat,
                              budget)

    def attach_python(self, func: Callable[..., Any], *, on_error: str = "raise"
                      ) -> PythonLink:
        """Run this program on each call of the Python function ``func``, with the
        call's arguments in the ctx (``struct bpfring_pycall``, see
        docs/userspace.md); returns a link that detaches on ``close()``/``with``."""
        self._obj._check_open()
        return attach_python(func, self, on_error=on_error)

    def _run_pycall(self, nargs: int, words: list[int], lens: list[int],
                    blobs: list[bytes | None]) -> int:
        """One run with a ``struct bpfring_pycall`` ctx (strings placed in memory)."""
        obj = self._obj
        with obj._lock:
            obj._check_open()
            added = []
            try:
                for i, blob in enumerate(blobs):
                    if blob is not None:
                        buf = memoryview(bytearray(blob + b"\0")).toreadonly()
                        words[i] = obj.memory.add(buf, f"python arg {i}", writable=False,
                                                  kind="python argument")
                        added.append(words[i])
                pad = MAX_PYARGS - len(words)
                ctx = PYCALL_CTX.pack(nargs, *words, *([0] * pad), *lens, *([0] * pad))
                return obj._run(self, b"", ctx, 1, None)
            finally:
                for addr in added:
                    obj.memory.remove(addr)

    def __repr__(self) -> str:
        return f"<UserProgram {self.name} SEC({self.section!r})>"


class _Globals(GlobalsView):
    """Attribute access to the object's global variables, typed from BTF (as
    :attr:`bpfring.BPFObject.globals`): ``.rodata`` is read-only once loaded."""

    _obj: UserObject

    def _btf(self) -> BTF | None:
        return self._obj.btf

    def _section_maps(self) -> Iterable[tuple[str, ArrayMap]]:
        return [(m.section, m) for m in self._obj.maps.values()
                if m.section is not None and isinstance(m, ArrayMap)]

    def _loaded(self) -> bool:
        return self._obj.loaded

    def _check(self) -> None:
        self._obj._check_open()

    def _region(self, m: ArrayMap) -> memoryview:
        return m.section_view()


class UserObject:
    """A BPF object loaded into this process.  Make one with :func:`load`."""

    def __init__(self, image: ObjectImage, *, budget: int = DEFAULT_BUDGET, cpu: int | str = 0,
                 seed: int | None = None, globals: Mapping[str, Any] | None = None,
                 kernel_maps: Mapping[str, Any] | None = None,
                 kernel_mode: str = "flush", kernel_period: float = 1e-3,
                 relay_size: int = 1 << 18,
                 pinned_maps: str | os.PathLike[str] | None = None) -> None:
        self.name = image.name
        self.license = image.license
        self.btf: BTF | None = image.btf
        #: What the CO-RE relocations were resolved against: "kernel" (the
        #: running kernel's BTF), "object" (the object's own types) or a path.
        self.core_btf = image.core_target
        self.loaded = False
        self._closed = False
        self._lock = threading.RLock()
        self._rings: list[Any] = []  # bpfring rings over our maps (ring_buffer())
        self.memory = Memory()
        ncpu = possible_cpus()
        if cpu == "current":
            cpu_fn: Callable[[], int] = _current_cpu
        elif isinstance(cpu, int) and 0 <= cpu < ncpu:
            cpu_fn = lambda: cpu  # noqa: E731
        else:
            raise ValueError(f"cpu must be 'current' or 0..{ncpu - 1}, not {cpu!r}")
        self._map_list: list[UserMap] = []
        self._after_always: bool | None = None
        self.maps: dict[str, UserMap] = {}
        self.programs: dict[str, UserProgram] = {}
        self.globals = _Globals(self)
        self._kernel_maps = dict(kernel_maps or {})
        self._kernel_mode = kernel_mode
        self._kernel_period = kernel_period
        self._relay_size = relay_size
        if kernel_mode not in ("flush", "timer"):
            raise ValueError(f"kernel_mode must be 'flush' or 'timer', not {kernel_mode!r}")
        unknown = set(self._kernel_maps) - {d.name for d in image.maps}
        if unknown:
            raise UserLoadError(f"kernel_maps names no map of the object: "
                                f"{', '.join(sorted(unknown))}")
        try:
            self._make_maps(image, ncpu, cpu_fn)
            if pinned_maps is not None:
                self._pin(pinned_maps, reuse=True)
            self._ctx = _Context(self._map_list, cpu_fn, seed)
            helpers = _POISONED_HELPERS if image.core_poisoned else HELPERS
            self._interp = make_interpreter(self.memory, helpers, self._tail_target, budget)
            self._interp.context = self._ctx
            self._ctx.timers = Timers(self._fire_timer)
            for k, v in (globals or {}).items():
                setattr(self.globals, k, v)
            for m in self._map_list:
                if m.section is not None and m.section.startswith(".rodata"):
                    m._frozen = True  # as libbpf freezes .rodata before loading programs
            for linked in image.programs.values():
                self.programs[linked.name] = UserProgram(self, linked, self._bind(linked))
            for mdef, m in zip(image.maps, self._map_list, strict=True):
                if isinstance(m, ProgArrayMap):
                    for slot, pname in mdef.init_progs.items():
                        m.update(slot, pname)
            self.loaded = True
        except BaseException:
            self.close()
            raise

    # construction ----------------------------------------------------------------------

    def _make_maps(self, image: ObjectImage, ncpu: int, cpu_fn: Callable[[], int]) -> None:
        btf = image.btf
        for d in image.maps:
            value_tid = d.value_type_id
            if d.section is not None and btf is not None:
                found = btf.find_all(d.section, "datasec")
                value_tid = found[0].id if found else 0
            kw: dict[str, Any] = dict(key_type_id=d.key_type_id, value_type_id=value_tid,
                                      section=d.section, ncpu=ncpu, cpu=cpu_fn)
            m: UserMap
            if d.name in self._kernel_maps:
                from ._kernel import bind_kernel_map

                m = bind_kernel_map(d, self._kernel_maps[d.name], self.memory, btf,
                                    self._kernel_mode, self._kernel_period,
                                    self._relay_size, **kw)
            else:
                m = make_map(d.name, d.type, d.key_size, d.value_size, d.max_entries,
                             d.flags, self.memory, btf, **kw)
            if isinstance(m, ArrayMap) and d.section is not None:
                m.initialise(d.data)
            if isinstance(m, ProgArrayMap):
                m.resolve = self._resolve_prog
            self._map_list.append(m)
            self.maps[m.name] = m

    def _pin(self, directory: str | os.PathLike[str], reuse: bool) -> list[str]:
        from ._kernel import KernelMap, KernelRingMap
        from ._share import pin_map, pinned_dir, shareable

        d = pinned_dir(directory)
        done = []
        try:
            for m in self._map_list:
                if isinstance(m, KernelMap | KernelRingMap) or not shareable(m):
                    continue
                path = os.path.join(os.fspath(directory), m.name)
                pin_map(m, d.fileno(), m.name, path, reuse)
                done.append(m.name)
        finally:
            d.close()
        return done

    def pin_maps(self, directory: str | os.PathLike[str]) -> list[str]:
        """Pin every shareable map (arrays, hashes, queues, stacks, ring buffers;
        not global data sections, prog arrays or perf event arrays) as
        ``directory/<name>``, a private directory made 0700 when missing;
        returns the names pinned.  Another process opens them with
        :func:`bpfring.userspace.open_map` or ``load(..., pinned_maps=directory)``."""
        with self._lock:
            self._check_open()
            return self._pin(directory, reuse=False)

    def _resolve_prog(self, value: Any) -> UserProgram:
        if isinstance(value, UserProgram):
            if value._obj is not self:
                raise BPFError("a prog array holds programs of its own object",
                               errno=_errno.EINVAL)
            return value
        if isinstance(value, str) and value in self.programs:
            return self.programs[value]
        raise BPFError(f"no program {value!r} in this object", errno=_errno.EBADF,
                       hint=f"programs: {', '.join(self.programs)}")

    def _bind(self, prog: LinkedProgram) -> Image:
        """Resolve pseudo ld_imm64 to tagged addresses; refuse unknown helpers."""
        insns = list(prog.insns)
        entries = frozenset(f.start for f in prog.functions)
        for pc, ins in enumerate(insns):
            if ins.code == _isa.JMP | _isa.CALL and ins.src == 0 and ins.imm not in HELPERS \
                    and not (ins.imm == POISON and pc in prog.notes):
                raise UserLoadError(f"program {prog.name!r} calls helper "
                                    f"{helper_name(ins.imm)} (#{ins.imm}) at insn {pc}, which "
                                    "the user-space runtime does not implement")
            if ins.code != _isa.LD_IMM64 or ins.src == 0:
                continue
            if ins.src == _isa.PSEUDO_MAP_IDX:
                value = MAP_TAG + (ins.imm & M32)
            elif ins.src == _isa.PSEUDO_MAP_IDX_VALUE:
                m = self._map_list[ins.imm & M32]
                if not isinstance(m, ArrayMap):
                    raise UserLoadError(f"program {prog.name!r}: direct value access to "
                                        f"{m.type_name} map {m.name!r} at insn {pc}")
                value = m.p_lookup(bytes(4)) + (ins.imm >> 32)
            elif ins.src == _isa.PSEUDO_FUNC:
                rel = ins.imm & M32
                rel = rel - (1 << 32) if rel >> 31 else rel
                target = pc + rel + 1
                if target not in entries:
                    raise UserLoadError(f"program {prog.name!r}: function address at insn "
                                        f"{pc} is not a function")
                value = FUNC_TAG + target
            else:
                raise UserLoadError(f"program {prog.name!r}: ld_imm64 source {ins.src} at "
                                    f"insn {pc} is not supported")
            insns[pc] = ins._replace(src=0, imm=value & M64)
        kfuncs = []
        for kname in prog.kfuncs:
            if kname not in KFUNCS:
                raise UserLoadError(f"program {prog.name!r} calls kfunc {kname!r}, which the "
                                    "user-space runtime does not implement")
            kfuncs.append(KFUNCS[kname])
        return Image(prog.name, insns, prog.functions, dict(prog.notes), prog, entries, kfuncs)

    def _tail_target(self, map_addr: int, index: int) -> Image | None:
        i = (map_addr - MAP_TAG) & M64
        if i >= len(self._map_list) or not isinstance(self._map_list[i], ProgArrayMap):
            raise Fault(f"bpf_tail_call: {self.memory.describe(map_addr)} is not a prog array")
        m = self._map_list[i]
        assert isinstance(m, ProgArrayMap)
        if index >= m.max_entries:
            return None
        prog = m.program(index)
        return prog.image if prog is not None else None

    # running ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("BPF object is closed")

    def _run(self, prog: UserProgram, data: bytes, ctx: bytes | None, repeat: int,
             budget: int | None) -> int:
        with self._lock:
            self._check_open()
            r0 = 0
            fr = make_ctx(prog.type, self.memory, data, ctx)
            t0 = time.perf_counter_ns()
            try:
                interp = self._interp
                if isinstance(interp, CInterpreter):
                    # The repetitions run in C; _after_run between them only
                    # when it has work (rings, kernel maps, or a helper ran).
                    r0 = interp.run(prog.image, fr.r1, budget, repeat,
                                    lambda: self._after_run(prog, None),
                                    self._after_needed())
                else:
                    for _ in range(repeat):
                        r0 = interp.run(prog.image, fr.r1, budget)
                        self._after_run(prog, None)
            except UserRuntimeError as e:
                self._after_run(prog, e)
                raise
            finally:
                for addr in fr.regions:
                    self.memory.remove(addr)
            dt = (time.perf_counter_ns() - t0) // repeat
            ret = r0 & M32
            retval = ret - (1 << 32) if ret >> 31 else ret
            prog.last_run = RunResult(retval, r0, bytes(fr.data or b""), bytes(fr.ctx or b""),
                                      self._interp.count, dt)
            return retval

    def _after_needed(self) -> bool:
        """Whether :meth:`_after_run` has work after a run in which no helper
        ran in Python (only then can a spin lock be held): the object has ring
        buffers or kernel-bound maps (its maps are fixed once loaded)."""
        if self._after_always is None:
            from ._kernel import KernelMap

            self._after_always = any(isinstance(m, KernelMap | RingBufMap)
                                     for m in self._map_list)
        return self._after_always

    def _end_run(self) -> None:
        """Write back what the run changed in copies of kernel map values."""
        from ._kernel import KernelMap

        for m in self._map_list:
            if isinstance(m, KernelMap):
                m.end_run()

    def _fire_timer(self, image: Image | None, cb: int, map_addr: int, key: bytes,
                    value: int) -> None:
        """Run a bpf_timer callback ``cb(map, key, value)`` (from the timer thread)."""
        with self._lock:
            if self._closed or image is None:
                return
            kaddr = self.memory.add(memoryview(bytearray(key)).toreadonly(), "timer key",
                                    writable=False, kind="map key")
            try:
                self._interp.image = image
                self._interp.count = 0
                self._interp.call(cb, (map_addr, kaddr, value))
            finally:
                self.memory.remove(kaddr)
                self._end_run()
                for m in self._map_list:
                    if isinstance(m, RingBufMap):
                        m.abandon()
                self._ctx.locks.clear()

    def _after_run(self, prog: UserProgram, error: UserRuntimeError | None) -> None:
        """Release what a program left behind: reserved records are discarded (so
        the ring stays readable) and held locks dropped; leaving them is an
        error, as the verifier refuses such programs."""
        self._end_run()
        left = sum(m.abandon() for m in self._map_list if isinstance(m, RingBufMap))
        locks = len(self._ctx.locks)
        for lock in list(self._ctx.locks):
            try:
                self.memory.write(lock, bytes(4))
            except Fault:
                pass
        self._ctx.locks.clear()
        if error is None and (left or locks):
            what = f"{left} reserved ring buffer record(s) (discarded now)" if left else \
                f"{locks} spin lock(s)"
            raise UserRuntimeError(f"exited still holding {what}", program=prog.name)

    # contents ----------------------------------------------------------------------------

    @property
    def types(self) -> Mapping[str, Any]:
        """Record types of the object's BTF by name (see :mod:`bpfring.btf`)."""
        if self.btf is None:
            raise BPFError(f"BPF object {self.name!r} has no BTF", hint="compile with -g")
        return self.btf.types

    def _ring_map(self, name: str, cls: type[RingBufMap], kind: str) -> RingBufMap:
        from ._kernel import KernelRingMap

        self._check_open()
        m = self.maps.get(name)
        if isinstance(m, KernelRingMap):
            raise MapTypeError(f"map {name!r} is bound to a kernel ring buffer",
                               hint="read the kernel map with bpfring.RingBuffer (its "
                                    "records include the relayed ones)")
        if type(m) is not cls:
            raise MapTypeError(f"map {name!r} is not a {kind} map",
                               hint=f"{kind} maps here: " + (", ".join(
                                   n for n, x in self.maps.items() if type(x) is cls)
                                   or "none"))
        return m

    def _adopt_ring(self, ring: Any) -> Any:
        with self._lock:
            if self._closed:
                ring.close()
                self._check_open()
            self._rings.append(ring)
        return ring

    def ring_buffer(self, name: str, **kw: Any) -> RingBuffer:
        """bpfring's own :class:`~bpfring.RingBuffer` over the user-space ring
        buffer ``name`` (the same sans-IO core, backend, waits, typed records,
        numpy and asyncio paths as on a kernel ring), closed with the object.
        ``record="event"`` decodes that type of the object's BTF.  Wakeups are
        the kernel's (the programs' commits follow its rules); a ring has one
        consumer at a time, this one or the map's own ``read()``."""
        from ..ringbuf import RingBuffer

        self._types_kw(kw)
        m = self._ring_map(name, RingBufMap, "ring buffer")
        ring: RingBuffer = self._adopt_ring(RingBuffer(m.pages(), **kw))
        return ring

    def user_ring_buffer(self, name: str, **kw: Any) -> UserRingBuffer:
        """bpfring's own :class:`~bpfring.UserRingBuffer` producing into the
        user-space user ring buffer ``name`` (drained by this object's
        programs with ``bpf_user_ringbuf_drain``), closed with the object."""
        from ..ringbuf import UserRingBuffer

        self._types_kw(kw)
        m = self._ring_map(name, UserRingBufMap, "user ring buffer")
        ring: UserRingBuffer = self._adopt_ring(UserRingBuffer(m.pages(), **kw))
        return ring

    def _types_kw(self, kw: dict[str, Any]) -> None:
        rec = kw.get("record")
        if isinstance(rec, str):
            kw["record"] = self.types[rec]

    def perf_buffer(self, name: str, **kw: Any) -> UserPerfBuffer:
        """A reader of the perf event array ``name`` with the API of
        :meth:`bpfring.BPFObject.perf_buffer` (``page_count``, ``record``,
        ``cpus``, ``lost_callback``); samples are accepted once it is open."""
        self._check_open()
        m = self.maps.get(name)
        if not isinstance(m, PerfEventArrayMap):
            raise MapTypeError(f"map {name!r} is not a perf event array")
        return UserPerfBuffer(m, **kw)

    @property
    def printed(self) -> list[bytes]:
        """The last bpf_trace_printk() lines (also logged to ``bpfring.userspace``)."""
        return list(self._ctx.printed)

    def flush(self) -> None:
        """Apply what the programs queued for kernel maps and kernel rings now:
        one ``BPF_PROG_TEST_RUN`` per bound map with queued operations and per
        bound ring (``kernel_mode="timer"`` does this periodically in the
        kernel, without system calls)."""
        from ._kernel import KernelMap, KernelPerfMap, KernelRingMap

        with self._lock:
            self._check_open()
            for m in self._map_list:
                if isinstance(m, KernelPerfMap):
                    m.flush()
                elif isinstance(m, KernelMap) and m.bridge is not None:
                    if m.bridge.pending:
                        m.bridge.flush()
                elif isinstance(m, KernelRingMap):
                    m.pump()
                    m.relay.flush()
                    m.pump()  # records that waited for room in the relay ring
                    if m.waiting:
                        m.relay.flush()

    def close(self) -> None:
        """Free the maps and regions (idempotent).  Operations and records still
        queued for kernel maps and rings are flushed first."""
        from ._kernel import KernelMap, KernelRingMap

        if self._closed:
            return
        ctx = getattr(self, "_ctx", None)
        if ctx is not None and ctx.timers is not None:
            ctx.timers.close()
        if self.loaded and any(isinstance(m, KernelMap | KernelRingMap)
                               for m in self._map_list):
            try:
                self.flush()
            except BPFError as e:
                log.warning("user-space object %s: flush at close failed: %s", self.name, e)
        with self._lock:  # not while a timer callback runs
            self._closed = True
            for ring in self._rings:  # before the maps: they read the maps' pages
                ring.close()
            self._rings.clear()
            for m in self._map_list:
                m.close()
        self.memory.regions.clear()

    def __enter__(self) -> UserObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else "loaded"
        return f"<UserObject {self.name} {state} maps={list(self.maps)} " \
               f"programs={list(self.programs)}>"


def _current_cpu() -> int:
    """The CPU this thread runs on (sched_getcpu), 0 if it cannot be told."""
    import ctypes

    cpu = ctypes.CDLL(None).sched_getcpu()
    return int(cpu) if cpu >= 0 else 0


def _looks_like_source(text: str) -> bool:
    return "\n" in text or "SEC(" in text or "#include" in text


def load(src: str | os.PathLike[str] | bytes | bytearray | memoryview, *,
         globals: Mapping[str, Any] | None = None, name: str | None = None,
         budget: int = DEFAULT_BUDGET, cpu: int | str = 0, seed: int | None = None,
         include_dirs: Any = (), defines: Mapping[str, object] | None = None,
         kernel_maps: Mapping[str, Any] | None = None, kernel_mode: str = "flush",
         kernel_period: float = 1e-3, relay_size: int = 1 << 18,
         btf: BTF | str | os.PathLike[str] | None = None,
         pinned_maps: str | os.PathLike[str] | None = None) -> UserObject:
    """Load a BPF object to run in this process, without privileges.

    ``src`` is as for :func:`bpfring.load`: a ``.bpf.c`` file (built with
    :func:`bpfring.build`), a ``.bpf.o`` file, C source text, or the bytes of
    an object file.  ``globals`` sets global variables before load (so
    ``const volatile`` knobs in ``.rodata`` take effect).  ``budget`` is the
    instruction budget of one run; ``cpu`` what ``bpf_get_smp_processor_id``
    returns and which per-CPU slot programs see (``"current"``: the CPU the
    thread runs on); ``seed`` seeds ``bpf_get_prandom_u32``.

    ``kernel_maps`` binds maps of the object to kernel maps (name -> a
    :class:`bpfring.Map`, a :class:`~bpfring.MapRef` or its string, a pinned
    path or an fd): the programs then read and write those kernel maps and
    rings (see docs/userspace.md, "Working with kernel eBPF"; needs the
    privileges of bpf() on them).  ``kernel_mode`` is how queued updates and
    relayed records reach the kernel: ``"flush"`` (:meth:`UserObject.flush`)
    or ``"timer"`` (a bpf_timer every ``kernel_period`` seconds);
    ``relay_size`` is the size of the user ring relaying records to each
    bound kernel ring.

    ``btf`` is what CO-RE relocations are resolved against: None (default)
    the running kernel's BTF (``/sys/kernel/btf/vmlinux``) when it exists,
    else the object's own; ``"kernel"`` the kernel's (a load error without
    it); ``"object"`` the object's own types (the values clang compiled in);
    a path to a BTF file or an ELF object with ``.BTF``, or a
    :class:`bpfring.btf.BTF`.

    ``pinned_maps`` is a private directory (made 0700 when missing) of
    pinned maps: each shareable map whose file ``directory/<name>`` exists
    (made by another process's ``pin_maps`` or ``pinned_maps``) uses that
    file's storage -- the same shape is required, its contents win -- and
    the others are pinned there, so the processes loading the object with
    the same directory share its maps.
    """
    if isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
        oname = name or "bpf_obj"
    else:
        from ..build import build, build_source

        text = os.fspath(src)
        if not os.path.exists(text) and _looks_like_source(text):
            path = build_source(text, name=name or "prog", include_dirs=include_dirs,
                                defines=defines)
        else:
            path = Path(text)
            if not path.exists():
                raise FileNotFoundError(_errno.ENOENT, "no such BPF source or object", text)
            if path.suffix == ".c":
                path = build(path, include_dirs=include_dirs, defines=defines)
        if name:
            oname = name
        elif os.path.exists(text):
            oname = re.sub(r"-[0-9a-f]{16,}$", "", Path(text).name.split(".")[0])
        else:
            oname = "prog"
        data = Path(path).read_bytes()
    target, target_name = _core_target(btf)
    image = _elf.parse(data, oname, target, target_name)
    return UserObject(image, budget=budget, cpu=cpu, seed=seed, globals=globals,
                      kernel_maps=kernel_maps, kernel_mode=kernel_mode,
                      kernel_period=kernel_period, relay_size=relay_size,
                      pinned_maps=pinned_maps)


def _core_target(btf: BTF | str | os.PathLike[str] | None
                 ) -> tuple[BTF | Callable[[], BTF | None] | None, str]:
    """The CO-RE target of ``load(btf=...)`` (loaded only if the object has
    relocations) and how the object reports it."""
    from ..btf import VMLINUX_PATH
    from ..btf import load as load_btf
    from ..errors import BTFError

    if isinstance(btf, BTF):
        return btf, "BTF"
    if btf == "object":
        return None, "object"

    def kernel() -> BTF | None:
        if btf is None and not os.access(VMLINUX_PATH, os.R_OK):
            log.debug("no readable %s: CO-RE against the object's own BTF", VMLINUX_PATH)
            return None
        try:
            return BTF.vmlinux()
        except (BTFError, OSError) as e:
            raise UserLoadError(f"cannot read the kernel's BTF for CO-RE relocations: {e}",
                                hint='load(..., btf="object") resolves them against the '
                                     "object's own types") from None

    if btf is None or btf == "kernel":
        return kernel, "kernel"
    path = os.fspath(btf)

    def from_path() -> BTF:
        try:
            return load_btf(path)
        except (BTFError, OSError) as e:
            raise UserLoadError(f"cannot read BTF {path!r} for CO-RE relocations: {e}") \
                from None

    return from_path, path


def load_insns(insns: bytes | bytearray | memoryview | list[_isa.Insn], *,
               prog_type: str = "syscall", name: str = "prog", budget: int = DEFAULT_BUDGET,
               cpu: int | str = 0, seed: int | None = None) -> UserObject:
    """An object with one program given as raw instructions (8-byte slots in the
    kernel's encoding, or decoded :class:`~bpfring.userspace._isa.Insn`), as
    BPF_PROG_LOAD would take it: no maps, no globals.  The program is
    ``obj.programs[name]``."""
    decoded = _isa.decode(bytes(insns)) if isinstance(insns, bytes | bytearray | memoryview) \
        else list(insns)
    linked = _elf.link_raw(decoded, name, prog_type)
    image = ObjectImage(name, "", [], {name: linked}, None)
    return UserObject(image, budget=budget, cpu=cpu, seed=seed)
