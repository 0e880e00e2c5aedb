"""User-space BPF objects: the same API as a kernel :class:`bpfring.BPFObject`
(``maps``, ``programs``, ``globals``, ``types``, ``close``, ``with``), with
every program run by the interpreter in this process, without privileges."""

from __future__ import annotations

import errno as _errno
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._globals import GlobalsView
from ..btf import BTF
from ..errors import BPFError
from . import _elf, _isa
from ._cinterp import make_interpreter
from ._ctx import make_ctx
from ._elf import LinkedProgram, ObjectImage
from ._errors import UserLoadError, UserRuntimeError
from ._helpers import HELPERS, KFUNCS, helper_name
from ._interp import DEFAULT_BUDGET, Image
from ._maps import ArrayMap, UserMap, make_map, possible_cpus
from ._memory import FUNC_TAG, M64, MAP_TAG, Fault, Memory
from ._ringbuf import RingBufMap
from ._special import ProgArrayMap

__all__ = ["RunResult", "UserObject", "UserProgram", "load", "load_insns"]

M32 = 0xFFFF_FFFF


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
                 seed: int | None = None, globals: Mapping[str, Any] | None = None) -> None:
        self.name = image.name
        self.license = image.license
        self.btf: BTF | None = image.btf
        self.loaded = False
        self._closed = False
        self._lock = threading.RLock()
        self.memory = Memory()
        ncpu = possible_cpus()
        if cpu == "current":
            cpu_fn: Callable[[], int] = _current_cpu
        elif isinstance(cpu, int) and 0 <= cpu < ncpu:
            cpu_fn = lambda: cpu  # noqa: E731
        else:
            raise ValueError(f"cpu must be 'current' or 0..{ncpu - 1}, not {cpu!r}")
        self._map_list: list[UserMap] = []
        self.maps: dict[str, UserMap] = {}
        self.programs: dict[str, UserProgram] = {}
        self.globals = _Globals(self)
        try:
            self._make_maps(image, ncpu, cpu_fn)
            self._ctx = _Context(self._map_list, cpu_fn, seed)
            self._interp = make_interpreter(self.memory, HELPERS, self._tail_target, budget)
            self._interp.context = self._ctx
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
            m = make_map(d.name, d.type, d.key_size, d.value_size, d.max_entries, d.flags,
                         self.memory, btf, key_type_id=d.key_type_id, value_type_id=value_tid,
                         section=d.section, ncpu=ncpu, cpu=cpu_fn)
            if isinstance(m, ArrayMap) and d.section is not None:
                m.initialise(d.data)
            if isinstance(m, ProgArrayMap):
                m.resolve = self._resolve_prog
            self._map_list.append(m)
            self.maps[m.name] = m

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
            if ins.code == _isa.JMP | _isa.CALL and ins.src == 0 and ins.imm not in HELPERS:
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
                for _ in range(repeat):
                    r0 = self._interp.run(prog.image, fr.r1, budget)
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

    def _after_run(self, prog: UserProgram, error: UserRuntimeError | None) -> None:
        """Release what a program left behind: reserved records are discarded (so
        the ring stays readable) and held locks dropped; leaving them is an
        error, as the verifier refuses such programs."""
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

    @property
    def printed(self) -> list[bytes]:
        """The last bpf_trace_printk() lines (also logged to ``bpfring.userspace``)."""
        return list(self._ctx.printed)

    def close(self) -> None:
        """Free the maps and regions (idempotent)."""
        if self._closed:
            return
        self._closed = True
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
         include_dirs: Any = (), defines: Mapping[str, object] | None = None) -> UserObject:
    """Load a BPF object to run in this process, without privileges.

    ``src`` is as for :func:`bpfring.load`: a ``.bpf.c`` file (built with
    :func:`bpfring.build`), a ``.bpf.o`` file, C source text, or the bytes of
    an object file.  ``globals`` sets global variables before load (so
    ``const volatile`` knobs in ``.rodata`` take effect).  ``budget`` is the
    instruction budget of one run; ``cpu`` what ``bpf_get_smp_processor_id``
    returns and which per-CPU slot programs see (``"current"``: the CPU the
    thread runs on); ``seed`` seeds ``bpf_get_prandom_u32``.
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
    image = _elf.parse(data, oname)
    return UserObject(image, budget=budget, cpu=cpu, seed=seed, globals=globals)


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
