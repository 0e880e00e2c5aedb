"""BPF objects: open, load and attach compiled BPF C with libbpf, then reach
their maps, programs, global variables and ring buffers from Python.

Ownership: a :class:`BPFObject` owns libbpf's ``struct bpf_object`` and with
it every map and program fd (libbpf closes them in ``bpf_object__close``).
It also owns what was made from it and registered with :meth:`BPFObject.adopt`
(ring buffers, links, map bridges): closing the object closes those first.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import logging
import mmap
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import _keeptypes, _libbpf, _sys
from ._attach import AttachMethods, AttachReport, attach_all
from ._elfcheck import check_object, check_object_file
from ._globals import GlobalsView
from ._libbpf import capture_log, cstr, lib, strerror
from .build import build, build_source, header_btf_info
from .errors import BPFError, BTFError, LoadError, MapTypeError
from .link import Link
from .maps import Map
from .perfbuf import PerfBuffer
from .ringbuf import RingBuffer, UserRingBuffer

if TYPE_CHECKING:
    from .btf import BTF, Codec

__all__ = ["BPFObject", "Closeable", "Program", "load", "open_object"]

log = logging.getLogger("bpfring")

_EVENT_TYPES = (_sys.MAP_TYPE_RINGBUF, _sys.MAP_TYPE_USER_RINGBUF,
                _sys.MAP_TYPE_PERF_EVENT_ARRAY)
# The kernel's verifier log can be long (complex programs: megabytes); it is
# kept in rotating mode, so a bounded buffer still holds its end, the reason.
_LOG_BUF_SIZE = 16 << 20
_MAP_IN_MAP = (12, 13)  # BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS
# Sections of programs the kernel attaches through a BPF trampoline.
_TRAMPOLINE_SECTIONS = frozenset({"fentry", "fexit", "fmod_ret", "lsm", "freplace"})
# Trailing verifier lines that are statistics, not the reason for a rejection.
_LOG_NOISE = re.compile(r"^(processed \d+ insns|verification time|stack depth|"
                        r"-- END PROG LOAD LOG|mark_read|max_states_per_insn)")


def verifier_reason(log_text: str) -> str:
    """The verifier's last meaningful line: what it rejected."""
    for line in reversed(log_text.splitlines()):
        line = line.strip()
        if line and not _LOG_NOISE.match(line):
            return line
    return ""


def kernel_has_ringbuf() -> bool:
    """Whether this kernel has BPF ring buffers (5.8+): try to make one."""
    try:
        fd = _sys.map_create(_sys.MAP_TYPE_RINGBUF, 0, 0, mmap.PAGESIZE)
    except BPFError:
        return False
    os.close(fd)
    return True


class Closeable(Protocol):
    """What :meth:`BPFObject.adopt` takes: anything with ``close()`` and ``closed``."""

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...


_C = TypeVar("_C", bound=Closeable)


class Program(AttachMethods):
    """One BPF program of a :class:`BPFObject`."""

    def __init__(self, obj: BPFObject, ptr: int) -> None:
        self._obj = obj
        self._ptr = ptr
        self.name = cstr(lib.bpf_program__name(ptr))
        self.section = cstr(lib.bpf_program__section_name(ptr))

    @property
    def fd(self) -> int:
        """The program's fd (libbpf's; valid while the object is open).

        :class:`BPFError` before the object is loaded, or when the program
        was not loaded (autoload off); :class:`ValueError` once closed."""
        obj = self._obj
        obj._check_open()
        fd = int(lib.bpf_program__fd(self._ptr))
        if fd < 0:
            if not obj.loaded:
                raise BPFError(f"program {self.name!r} has no fd yet: BPF object "
                               f"{obj.name!r} is not loaded",
                               hint="load it first (obj.load(), or bpfring.load() instead "
                                    "of open_object())")
            raise BPFError(f"program {self.name!r} was not loaded (autoload is off)",
                           hint="leave autoload on for programs you want to run or attach")
        return fd

    # Configuration before load (libbpf's bpf_program__set_*): a tool that
    # ships variants for different kernels turns off the ones whose attach
    # point is missing, or retargets a program.

    @property
    def type(self) -> int:
        """The program type (``BPF_PROG_TYPE_*``), settable before load."""
        return int(lib.bpf_program__type(self._ptr))

    @type.setter
    def type(self, value: int) -> None:
        self._set("type", lib.bpf_program__set_type, int(value))

    @property
    def expected_attach_type(self) -> int:
        """``BPF_*`` attach type the verifier checks the program against."""
        return int(lib.bpf_program__expected_attach_type(self._ptr))

    @expected_attach_type.setter
    def expected_attach_type(self, value: int) -> None:
        self._set("expected_attach_type", lib.bpf_program__set_expected_attach_type,
                  int(value))

    @property
    def autoload(self) -> bool:
        """Whether :meth:`BPFObject.load` loads this program (set before load)."""
        return bool(lib.bpf_program__autoload(self._ptr))

    @autoload.setter
    def autoload(self, value: bool) -> None:
        self._set("autoload", lib.bpf_program__set_autoload, bool(value))

    @property
    def flags(self) -> int:
        """``prog_flags`` for the load (``BPF_F_SLEEPABLE``, ...)."""
        return int(lib.bpf_program__flags(self._ptr))

    @flags.setter
    def flags(self, value: int) -> None:
        self._set("flags", lib.bpf_program__set_flags, int(value))

    def set_attach_target(self, function: str | None, program_fd: int = 0) -> None:
        """Retarget a ``fentry``/``fexit``/``tp_btf``/``freplace``-style
        program before load: ``function`` in the kernel (``program_fd`` 0) or
        in the BPF program ``program_fd``."""
        name = None if function is None else function.encode()
        self._obj._check_open()
        self._preload_check("the attach target")
        ret = int(lib.bpf_program__set_attach_target(self._ptr, program_fd, name))
        if ret < 0:
            raise _sys.error_from_errno(-ret, f"setting the attach target of program "
                                              f"{self.name!r} to {function!r}")

    def _preload_check(self, what: str) -> None:
        if self._obj.loaded:
            raise BPFError(f"program {self.name!r}: cannot set {what} after load",
                           hint=f"open with bpfring.open(), set {what}, then call obj.load()")

    def _set(self, what: str, setter: Any, value: object) -> None:
        self._obj._check_open()
        self._preload_check(what)
        ret = int(setter(self._ptr, value))
        if ret < 0:
            raise _sys.error_from_errno(-ret, f"setting {what} of program {self.name!r} "
                                              f"to {value!r}")

    def _adopt_link(self, link: Link) -> Link:
        """Keep ``link`` with the object: closing the object detaches it."""
        self._obj._check_open()
        self._obj._links.append(link)
        return link

    def run(self, data: bytes = b"", ctx: bytes | None = None) -> int:
        """Run the program once with BPF_PROG_TEST_RUN and return its return value.

        For ``SEC("syscall")`` programs ``ctx`` is the context struct as bytes;
        other program types that support test runs take packet ``data``.
        """
        return _sys.prog_test_run(self.fd, data, ctx)

    def __repr__(self) -> str:
        return f"<Program {self.name} SEC({self.section!r})>"


class _Globals(GlobalsView):
    """Attribute access to an object's global variables (``.bss``, ``.data``,
    ``.rodata`` and custom ``.data.*`` sections), typed from BTF.

    Before load, assignments change the initial image libbpf will load; after
    load, ``.bss``/``.data`` read and write the live kernel memory through
    our own mmap of the section's map, while ``.rodata`` is frozen and read-only.
    """

    _obj: BPFObject

    def _btf(self) -> BTF | None:
        return self._obj.btf

    def _section_maps(self) -> Iterable[tuple[str, Map]]:
        return [(m.section, m) for m in self._obj.maps.values() if m.section is not None]

    def _loaded(self) -> bool:
        return self._obj.loaded

    def _region(self, m: Map) -> memoryview:
        """The bytes of a global section: libbpf's initial image before load,
        the kernel map itself (mmapped) after load.

        libbpf 1.1 re-points its image at the kernel map only in the skeleton
        path (``bpf_object__load_skeleton``), so after a plain
        ``bpf_object__load`` we map the internal array map ourselves (libbpf
        creates it with BPF_F_MMAPABLE); ``.rodata`` is frozen, hence read-only.
        """
        obj = self._obj
        obj._check_open()
        if not obj.loaded:
            return m.initial_value()
        view = obj._global_views.get(m.name)
        if view is None:
            length = (m.value_size + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)
            ro = (m.section or "").startswith(".rodata")
            prot = mmap.PROT_READ | (0 if ro else mmap.PROT_WRITE)
            mm = mmap.mmap(m.fd, length, flags=mmap.MAP_SHARED, prot=prot)
            view = memoryview(mm)[:m.value_size]
            obj._global_views[m.name] = view
            obj._global_mms.append(mm)
        return view


class BPFObject:
    """A BPF object file opened (and usually loaded) through libbpf.

    Use :func:`load` to make one (or :func:`open_object`, then :meth:`load`).
    Closing the object (or leaving its ``with`` block) closes what it adopted
    (its ring buffers, bridges), detaches its links and unloads it.
    """

    def __init__(self, ptr: int, name: str, *, log_buf: ctypes.Array[ctypes.c_char] | None = None
                 ) -> None:
        self._ptr: int | None = ptr
        self.name = name
        self.loaded = False
        # Where libbpf has the kernel write verifier logs (see open_object);
        # must live as long as libbpf may load from this object.
        self._log_buf = log_buf
        self._links: list[Link] = []
        self._adopted: list[Closeable] = []
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        m = lib.bpf_object__next_map(ptr, None)
        while m:
            mp = Map._from_libbpf(self, m)
            self.maps[mp.name] = mp
            m = lib.bpf_object__next_map(ptr, m)
        p = lib.bpf_object__next_program(ptr, None)
        while p:
            prog = Program(self, p)
            self.programs[prog.name] = prog
            p = lib.bpf_object__next_program(ptr, p)
        self._btf: BTF | None = None
        self._headers: list[tuple[str, BTF]] = []
        # How bpfring's build kept header types ("headers", "all", "none"), or
        # None when the object was not compiled by bpfring here.
        self._keep_mode: str | None = None
        self._global_views: dict[str, memoryview] = {}
        self._global_mms: list[mmap.mmap] = []
        self.globals = _Globals(self)

    # lifecycle ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _check_open(self) -> int:
        ptr = self._ptr
        if ptr is None:
            raise ValueError("BPF object is closed")
        return ptr

    def load(self) -> BPFObject:
        """Load the opened object into the kernel (maps created, programs
        verified); returns the object.  Globals set before are what the
        programs see; a map may first :meth:`Map.reuse_fd` an existing one.

        Raises :class:`LoadError` with the verifier log when the kernel refuses.
        """
        ptr = self._check_open()
        if self.loaded:
            raise BPFError(f"BPF object {self.name!r} is already loaded",
                           hint="an object loads once; open it again for another copy")
        with capture_log() as lines:
            ret = lib.bpf_object__load(ptr)
        if ret < 0:
            err = -ret
            # The kernel wrote the failing program's verifier log into our own
            # buffer (open_object passes it as kernel_log_buf), whole: libbpf
            # then neither truncates it to its 4 KiB message buffer nor prints it.
            verifier = self._log_buf.value.decode(errors="replace") if self._log_buf else ""
            text = "\n".join([*lines, verifier] if verifier else lines)
            what = f"loading BPF object {self.name!r}"
            culprit = self._culprit(err, lines, verifier)
            if err in (_errno.EPERM, _errno.EACCES) and not verifier and culprit is None:
                raise _sys.error_from_errno(err, what)
            reason = verifier_reason(verifier) or next(
                (ln for ln in reversed(lines) if "failed to load object" not in ln), "")
            hint = ("read the verifier log (exc.log); its last lines say what it rejected")
            if culprit is not None:
                extra, hint = culprit
                reason = f"{reason}: {extra}" if reason else extra
            raise LoadError(f"{what} failed: {strerror(err)}"
                            + (f": {reason}" if reason else ""), errno=err, log=text,
                            hint=hint)
        self.loaded = True
        for mp in self.maps.values():
            mp._object_loaded()
        return self

    def _culprit(self, err: int, lines: list[str], verifier: str = ""
                 ) -> tuple[str, str] | None:
        """(explanation, hint) naming the map or program a failed load stopped
        at and the setting to change, when libbpf's messages say which it was;
        None otherwise.  The explanation follows libbpf's own line."""
        text = "\n".join(lines)
        if re.search(r"cannot pass map_type 4 into func bpf_ringbuf_", verifier):
            return ("a perf event array reached bpf_ringbuf_*(): the BPF side still takes its "
                    "ring buffer path (libbpf-tools' compat.bpf.h picks it with "
                    "bpf_core_type_exists(struct bpf_ringbuf), which is true on this kernel)",
                    "keep the ring buffer: obj.prepare_event_buffer(name) with kind='auto' "
                    "chooses it where the kernel has ring buffers")
        m = re.search(r"map '([^']+)': failed to create", text)
        mp = self.maps.get(m.group(1)) if m else None
        if mp is not None and err == _errno.EINVAL:
            sizes = (f"{mp.type_name}, key_size {mp.key_size}, value_size {mp.value_size}, "
                     f"max_entries {mp.max_entries}")
            sizeless = (_sys.MAP_TYPE_RINGBUF, _sys.MAP_TYPE_USER_RINGBUF,
                        _sys.MAP_TYPE_PERF_EVENT_ARRAY)  # no value size; perf: 0 entries = CPUs
            zero = [k for k in ("max_entries", "value_size") if getattr(mp, k) == 0
                    and mp.type != _sys.MAP_TYPE_PERF_EVENT_ARRAY
                    and not (k == "value_size" and mp.type in sizeless)]
            if zero:
                return (f"the kernel refused to create map {mp.name!r} ({sizes}): the program "
                        f"leaves its {' and '.join(zero)} to user space",
                        f"open with bpfring.open(), set obj.maps[{mp.name!r}]."
                        f"{zero[0]} = N, then obj.load()")
            if mp.type in (_sys.MAP_TYPE_RINGBUF, _sys.MAP_TYPE_USER_RINGBUF):
                n = mp.max_entries
                if n % mmap.PAGESIZE or n & (n - 1):
                    return (f"the kernel refused to create ring buffer map {mp.name!r} "
                            f"({sizes}): its size must be a power of 2 and a multiple of "
                            f"the page size ({mmap.PAGESIZE})",
                            f"set obj.maps[{mp.name!r}].max_entries before obj.load()")
            if mp.type in _MAP_IN_MAP:
                inner = "its inner map prototype" if "failed to create inner map" in text \
                    else "it has no inner map prototype"
                return (f"map-in-map {mp.name!r} ({sizes}): {inner} cannot be created",
                        f"before obj.load(), set obj.maps[{mp.name!r}].inner_map to a Map of "
                        "the inner kind and size")
            return (f"the kernel refused to create map {mp.name!r} ({sizes})",
                    f"check its settings; set obj.maps[{mp.name!r}].max_entries, "
                    ".value_size or .type between bpfring.open() and obj.load()")
        m = re.search(r"prog '([^']+)': failed to load", text)
        prog = self.programs.get(m.group(1)) if m else None
        if prog is None:
            return None
        head = prog.section.split("/", 1)[0].split(".", 1)[0]
        off = f"obj.programs[{prog.name!r}].autoload = False"
        if head in _TRAMPOLINE_SECTIONS and err in (_errno.EPERM, _errno.EACCES) \
                and os.geteuid() == 0:
            return (f"program {prog.name!r} (SEC(\"{prog.section}\")): this kernel refuses "
                    f"BPF trampoline programs (fentry/fexit/fmod_ret/lsm/freplace), even as "
                    f"root",
                    f"open with bpfring.open() and set {off} before obj.load(); tools that "
                    "ship a kprobe or tracepoint variant of it work with that one")
        if err == _errno.ESRCH and "failed to find kernel BTF type ID" in text:
            target = prog.section.split("/", 1)[1] if "/" in prog.section else "?"
            return (f"program {prog.name!r} (SEC(\"{prog.section}\")): this kernel has no "
                    f"function {target!r} to attach it to",
                    f"retarget it with prog.set_attach_target(function), or set {off}, "
                    "between bpfring.open() and obj.load()")
        return None

    def adopt(self, resource: _C) -> _C:
        """Close ``resource`` (a ring, bridge, ... made from this object) when
        the object closes, before its links and maps go; returns it.

        What is adopted must not outlive the object's fds anyway: this makes
        ``with load(...) as obj:`` clean up everything made from it.
        """
        self._check_open()
        self._adopted = [r for r in self._adopted if not r.closed]
        self._adopted.append(resource)
        return resource

    def close(self) -> None:
        """Close adopted rings and bridges, detach links, unload (idempotent)."""
        if self._ptr is None:
            return
        for r in self._adopted:
            r.close()
        for link in reversed(self._links):
            link.close()
        self._adopted.clear()
        self._links.clear()
        for view in self._global_views.values():
            view.release()
        for mm in self._global_mms:
            try:
                mm.close()
            except BufferError:
                log.warning("a view of a global section is still referenced")
        self._global_views.clear()
        self._global_mms.clear()
        lib.bpf_object__close(self._ptr)
        self._ptr = None

    def __enter__(self) -> BPFObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # __del__ rather than weakref.finalize: maps, programs and adopted
        # rings point back at the object, so it goes with the cycle collector,
        # and close() must run first on the adopted resources, then the links,
        # then bpf_object__close, in that order.
        if getattr(self, "_ptr", None) is not None:
            try:
                warnings.warn(f"unclosed BPF object {self.name!r}; close it or use 'with'",
                              ResourceWarning, stacklevel=2)
                self.close()
            except Exception:  # interpreter shutdown
                pass

    # contents ----------------------------------------------------------------------

    @property
    def btf(self) -> BTF | None:
        """The object's BTF (:class:`bpfring.btf.BTF`), or None if it has none."""
        if self._btf is None and self._ptr is not None:
            from .btf import BTF

            bp = lib.bpf_object__btf(self._ptr)
            if bp:
                size = ctypes.c_uint32()
                raw = lib.btf__raw_data(bp, ctypes.byref(size))
                self._btf = BTF.from_bytes(ctypes.string_at(raw, size.value))
        return self._btf

    @property
    def types(self) -> Mapping[str, Codec]:
        """Record types by name (see :mod:`bpfring.btf`): the object's BTF
        first, then the BTF of the headers given to :func:`open_object`
        (``headers=``).  When bpfring compiled the program, the types of its
        own headers are in the object's BTF already (``keep_types``)."""
        from .btf import TypeChain

        btf = self.btf
        btfs = [b for _, b in self._headers]
        if btf is None and not btfs:
            raise BPFError(f"BPF object {self.name!r} has no BTF", hint="compile with -g")
        hint = None
        if self._keep_mode == "headers":
            hint = ("a type declared in the .bpf.c file itself (not in a header) is kept "
                    "with keep_types='all'")
        elif self._keep_mode is None:
            hint = ("for an object built elsewhere, give its header: "
                    "bpfring.open(obj, headers=['events.h'])")
        return TypeChain([*([btf] if btf is not None else []), *btfs], hint=hint)

    def _add_headers(self, headers: Iterable[tuple[str, BTF, tuple[str, ...] | None]]) -> None:
        """Add header BTFs to :attr:`types` after checking that every type
        they share with the object's BTF has the same layout there."""
        from .btf import layout_conflicts

        own = self.btf
        for label, hbtf, names in headers:
            if own is not None:
                bad = layout_conflicts(own, hbtf, names)
                if bad:
                    raise BTFError(
                        f"BPF object {self.name!r} and header {label} disagree on "
                        + "; ".join(bad),
                        hint="the object was built from another version of the header (or "
                             "with other defines): rebuild it, or pass the matching header")
            self._headers.append((label, hbtf))

    def attach(self, *, skip_missing: bool = False) -> AttachReport:
        """Attach every loaded program whose ``SEC()`` names its target.

        Returns the links made, a list with a ``.skipped`` list of what was
        not attached and why (autoload off, needs a target such as an
        interface or binary: use ``prog.attach_xdp(...)`` and the like,
        run-only programs); skips are logged.  A program whose target is
        missing on this kernel raises, after detaching what this call
        attached, unless ``skip_missing`` is true.
        """
        self._check_open()
        return attach_all(self.programs.values(), skip_missing=skip_missing)

    @property
    def links(self) -> list[Link]:
        return list(self._links)

    def _ring_map(self, name: str, want: int) -> Map:
        self._check_open()
        try:
            m = self.maps[name]
        except KeyError:
            rings = [n for n, mp in self.maps.items() if mp.type in _EVENT_TYPES]
            raise KeyError(f"no map named {name!r}; ring and perf maps here: {rings}") from None
        if m.type != want:
            hint = None
            if m.type == _sys.MAP_TYPE_PERF_EVENT_ARRAY:
                hint = "use obj.perf_buffer(name), or obj.event_buffer(name) for either kind"
            elif m.type == _sys.MAP_TYPE_RINGBUF and want == _sys.MAP_TYPE_PERF_EVENT_ARRAY:
                hint = "use obj.ring_buffer(name), or obj.event_buffer(name) for either kind"
            raise MapTypeError(
                f"map {name!r} is a {_sys.MAP_TYPE_NAMES.get(m.type, m.type)} map, not a "
                f"{_sys.MAP_TYPE_NAMES[want]} map", hint=hint)
        return m

    def _record(self, kw: dict[str, Any]) -> None:
        rec = kw.get("record")
        if isinstance(rec, str):
            kw["record"] = self.types[rec]

    def ring_buffer(self, name: str, **kw: Any) -> RingBuffer:
        """A :class:`RingBuffer` consumer for the object's RINGBUF map ``name``,
        closed with the object.

        ``record="event"`` decodes records as that type of the object's BTF.
        """
        self._record(kw)
        m = self._ring_map(name, _sys.MAP_TYPE_RINGBUF)
        lost = self.maps.get(f"{name}__lost")
        if lost is not None and "lost_map" not in kw:
            kw["lost_map"] = lost.fd
        return self.adopt(RingBuffer(m.fd, **kw))

    def perf_buffer(self, name: str, **kw: Any) -> PerfBuffer:
        """A :class:`~bpfring.perfbuf.PerfBuffer` for the object's
        PERF_EVENT_ARRAY map ``name`` (one event per online CPU), closed
        with the object; ``record="event"`` decodes that type of the BTF."""
        self._record(kw)
        m = self._ring_map(name, _sys.MAP_TYPE_PERF_EVENT_ARRAY)
        return self.adopt(PerfBuffer(m.fd, **kw))

    def event_buffer(self, name: str, **kw: Any) -> RingBuffer | PerfBuffer:
        """A consumer for the events map ``name``, whichever kind it is (ring
        buffer or perf event array, e.g. after :meth:`prepare_event_buffer`
        chose); keyword arguments go to that consumer."""
        self._check_open()
        m = self.maps.get(name)
        if m is not None and m.type == _sys.MAP_TYPE_PERF_EVENT_ARRAY:
            return self.perf_buffer(name, **kw)
        return self.ring_buffer(name, **kw)

    def prepare_event_buffer(self, name: str = "events", kind: str = "auto",
                             heap: str | None = "heap") -> str:
        """Choose, before load, how the events map ``name`` reaches user
        space, the way libbpf-tools' ``bpf_buffer__new`` does: a ring buffer
        where the kernel has them (``kind="auto"``), else a perf event array.

        Ring buffer: the per-CPU scratch map ``heap`` (only the perf path
        uses it) is not created.  Perf event array: the map's type, key and
        value sizes and entry count are switched (4-byte keys and values, one
        slot per CPU).  The BPF side picks its path itself (for example with
        ``bpf_core_type_exists(struct bpf_ringbuf)``).  Returns the kind
        chosen, ``"ringbuf"`` or ``"perf"``.
        """
        self._check_open()
        if kind not in ("auto", "ringbuf", "perf"):
            raise ValueError(f"kind must be 'auto', 'ringbuf' or 'perf', not {kind!r}")
        try:
            m = self.maps[name]
        except KeyError:
            raise KeyError(f"no map named {name!r} in BPF object {self.name!r}") from None
        if kind == "auto":
            kind = "ringbuf" if kernel_has_ringbuf() else "perf"
        if kind == "ringbuf":
            if m.type != _sys.MAP_TYPE_RINGBUF:
                raise MapTypeError(f"map {name!r} is a {m.type_name} map; the ring buffer path "
                                   "needs it declared as BPF_MAP_TYPE_RINGBUF")
            if heap is not None and heap in self.maps:
                self.maps[heap].autocreate = False
        else:
            m.type = _sys.MAP_TYPE_PERF_EVENT_ARRAY
            m.key_size = 4
            m.value_size = 4
            m.max_entries = 0
        return kind

    def user_ring_buffer(self, name: str, **kw: Any) -> UserRingBuffer:
        """A :class:`UserRingBuffer` producer for the object's USER_RINGBUF map
        ``name``, closed with the object.

        ``record="sample"`` lets :meth:`UserRingBuffer.write` encode that BTF type.
        """
        self._record(kw)
        m = self._ring_map(name, _sys.MAP_TYPE_USER_RINGBUF)
        return self.adopt(UserRingBuffer(m.fd, **kw))

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else ("closed" if self._ptr is None else "opened")
        return f"<BPFObject {self.name} {state} maps={list(self.maps)} " \
               f"programs={list(self.programs)}>"


def _looks_like_source(text: str) -> bool:
    return "\n" in text or "SEC(" in text or "#include" in text


Defines = Mapping[str, object] | None
IncludeDirs = Iterable[str | os.PathLike[str]]


def open_object(src: str | os.PathLike[str] | bytes | bytearray | memoryview, *,
                name: str | None = None, include_dirs: IncludeDirs = (),
                defines: Defines = None, cflags: Iterable[str] = (),
                globals: Mapping[str, Any] | None = None,
                btf_custom_path: str | os.PathLike[str] | None = None,
                keep_types: str | bool | None = None,
                headers: Iterable[str | os.PathLike[str] | BTF] = ()) -> BPFObject:
    """Open (not load) a BPF object from a .bpf.c path, .o path, C text or ELF
    bytes: ``bpfring.open()``.

    C is compiled with :func:`bpfring.build` on the way, with ``include_dirs``,
    ``defines`` and extra ``cflags`` (the toolchain layer sits below the
    objects, see ``docs/design.md``).  Between this and :meth:`BPFObject.load`
    the object can be configured: map sizes and types (``obj.maps[n].max_entries
    = ...``), programs' ``autoload``, ``globals`` (also given here), a map's
    :meth:`~bpfring.Map.reuse_fd`.  ``btf_custom_path`` makes libbpf resolve
    CO-RE relocations against that BTF file instead of the running kernel's.
    ``keep_types`` is :func:`bpfring.build`'s (``"headers"`` by default:
    types of the program's own headers are kept in its BTF; ``"all"`` also
    those of the ``.bpf.c`` file; ``"none"``).

    ``headers`` are C headers (paths, compiled with
    :func:`bpfring.from_header` and the same ``include_dirs``,
    ``defines`` and ``cflags``) or :class:`~bpfring.btf.BTF` objects whose
    types :attr:`BPFObject.types` (and so ``record="event"``) also finds,
    after the object's own: for a ``.bpf.o`` built elsewhere, whose BTF lacks
    the ``struct event`` it only used through a pointer.  A type both
    declare must have the same layout in both, else :class:`BTFError`
    names it.
    """
    kept: dict[str, Any] = {} if keep_types is None else {"keep_types": keep_types}
    opts = _libbpf.OpenOpts()
    opts.sz = ctypes.sizeof(opts)
    log_buf = ctypes.create_string_buffer(_LOG_BUF_SIZE)
    opts.kernel_log_buf = ctypes.cast(log_buf, ctypes.c_void_p)
    opts.kernel_log_size = _LOG_BUF_SIZE
    opts.kernel_log_level = 0  # libbpf asks for the log (level 1) only on failure
    custom = None
    if btf_custom_path is not None:
        custom = os.fsencode(btf_custom_path)
        if not os.path.exists(custom):
            raise FileNotFoundError(_errno.ENOENT, "no such BTF file", os.fsdecode(custom))
        opts.btf_custom_path = custom
    dirs = list(include_dirs)
    flags = list(cflags)
    if isinstance(headers, str | bytes | os.PathLike):
        raise TypeError("headers must be a list of header paths or BTF objects, not a "
                        f"single {type(headers).__name__} (wrap it in a list)")
    header_list = list(headers)
    built_mode: str | None = None
    if isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
        if not data.startswith(b"\x7fELF"):
            raise LoadError("object bytes are not an ELF file",
                            hint="pass a compiled .bpf.o image, or a path to a .bpf.c file")
        oname = name or "bpf_obj"
        opts.object_name = oname.encode()
        check_object(data, "object bytes")  # what libbpf 1.1 would crash on
        buf = ctypes.create_string_buffer(data, len(data))
        with capture_log() as lines:
            ptr = lib.bpf_object__open_mem(buf, len(data), ctypes.byref(opts))
        what = "object bytes"
    else:
        text = os.fspath(src)
        if not os.path.exists(text) and _looks_like_source(text):
            path = build_source(text, name=name or "prog", include_dirs=dirs, defines=defines,
                                cflags=flags, **kept)
            built_mode = _keeptypes.resolve_mode(keep_types)
        else:
            path = Path(text)
            if not path.exists():
                raise FileNotFoundError(_errno.ENOENT, "no such BPF source or object", text)
            if path.is_dir():
                raise LoadError(f"{text} is a directory, not a BPF object", errno=_errno.EISDIR,
                                hint="pass a .bpf.o file or a .bpf.c source")
            if path.suffix == ".c":
                path = build(path, include_dirs=dirs, defines=defines, cflags=flags, **kept)
                built_mode = _keeptypes.resolve_mode(keep_types)
        if name:
            oname = name
        elif os.path.exists(text):
            # "echo.bpf.c" and the cached "echo-<hash>.bpf.o" both name "echo".
            oname = re.sub(r"-[0-9a-f]{16,}$", "", Path(text).name.split(".")[0])
        else:
            oname = "prog"
        opts.object_name = oname.encode()
        check_object_file(path)  # what libbpf 1.1 would crash on
        with capture_log() as lines:
            ptr = lib.bpf_object__open_file(os.fsencode(path), ctypes.byref(opts))
        what = str(path)
    if not ptr:
        err = ctypes.get_errno() or _errno.EINVAL
        said = f" (libbpf: {lines[-1].removeprefix('libbpf: ')})" if lines else ""
        raise LoadError(f"libbpf cannot open {what}: {strerror(err)}{said}", errno=err,
                        log="\n".join(lines) if len(lines) > 1 else "",
                        hint="pass an object compiled with clang -target bpf (a .bpf.o)")
    obj = BPFObject(ptr, oname, log_buf=log_buf)
    obj._keep_mode = built_mode
    try:
        obj._add_headers(_header_btfs(header_list, dirs, defines, flags))
        for k, v in (globals or {}).items():
            setattr(obj.globals, k, v)
    except BaseException:
        obj.close()
        raise
    return obj


def _header_btfs(headers: list[str | os.PathLike[str] | BTF], include_dirs: list[Any],
                 defines: Defines, cflags: list[str]
                 ) -> list[tuple[str, BTF, tuple[str, ...] | None]]:
    """(label, BTF, spellings to check or None for all) of each ``headers=`` entry."""
    from .btf import BTF

    out: list[tuple[str, BTF, tuple[str, ...] | None]] = []
    for h in headers:
        if isinstance(h, BTF):
            out.append((repr(h), h, None))
        elif isinstance(h, str | os.PathLike):
            hbtf, names = header_btf_info(h, include_dirs=include_dirs, defines=defines,
                                          cflags=cflags)
            out.append((os.fspath(h), hbtf, names))
        else:
            raise TypeError(f"headers: expected a header path or a bpfring.btf.BTF, not "
                            f"{type(h).__name__}")
    return out


def load(src: str | os.PathLike[str] | bytes | bytearray | memoryview, *,
         globals: Mapping[str, Any] | None = None, name: str | None = None,
         include_dirs: IncludeDirs = (), defines: Defines = None,
         cflags: Iterable[str] = (),
         btf_custom_path: str | os.PathLike[str] | None = None,
         keep_types: str | bool | None = None,
         headers: Iterable[str | os.PathLike[str] | BTF] = ()) -> BPFObject:
    """Open and load a BPF object: :func:`open_object` then :meth:`BPFObject.load`.

    ``src`` is a ``.bpf.c`` file (compiled with :func:`bpfring.build` first), a
    compiled ``.bpf.o`` file, C source text, or the bytes of an object file.
    ``globals`` sets ``.rodata``/``.data``/``.bss`` variables by name before
    the programs are verified (so ``const volatile`` knobs take effect); the
    build options are those of :func:`open_object`.
    """
    obj = open_object(src, name=name, include_dirs=include_dirs, defines=defines,
                      cflags=cflags, globals=globals, btf_custom_path=btf_custom_path,
                      keep_types=keep_types, headers=headers)
    try:
        obj.load()
    except BaseException:
        obj.close()
        raise
    return obj
