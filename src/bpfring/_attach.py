"""Explicit attach for every common program type, and attach-everything.

:class:`AttachMethods` is a mixin for :class:`bpfring.Program`: one
``attach_*`` method per kind of hook (tracepoint, raw tracepoint, uprobe,
USDT, XDP, TC, tcx, cgroup, perf event, kprobe).  It relies only on the
program's ``_ptr`` (libbpf ``struct bpf_program *``), ``fd``, ``name``,
``section`` and ``type``, and hands every new link to ``_adopt_link`` so the
owning object can detach it when it is closed.  :func:`attach_all` attaches
whatever a set of programs can attach by its ``SEC()`` and reports, with a
warning, what it skipped and why.

libbpf (1.1 or newer) does the work where it can; the ctypes prototypes are
private to this module and bound on first use.  Two kinds of attachment are
not libbpf ``bpf_link`` objects and get their own small :class:`Link`
subclasses: kernel links made here with ``BPF_LINK_CREATE`` (tcx, which
libbpf 1.1 predates, and cgroups with an explicit attach type), and netlink
attachments (XDP with an explicit mode, TC filters) that must be undone by a
call -- see :mod:`bpfring._netattach`.  Finding targets (binaries and
libraries, cgroups, whether kprobes exist) is in :mod:`bpfring._targets`.
"""

from __future__ import annotations

import ctypes
import difflib
import errno as _errno
import functools
import logging
import os
from collections.abc import Iterable, Sequence
from ctypes import POINTER, Structure, byref, c_bool, c_char_p, c_int, c_size_t, c_uint64, c_void_p
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _libbpf, _netattach, _perf
from ._fd import OwnedFD
from ._fs import ensure_tracefs
from ._netattach import FDLink, attach_error, for_program, libbpf_opts
from ._targets import (
    cgroup_fd,
    check_code_offset,
    check_pid,
    check_u64,
    kprobes_available,
    require_kprobes,
    resolve_binary,
)
from .errors import AttachError, BPFError, BPFPermissionError, KernelTooOld
from .link import Link

__all__ = ["AttachMethods", "AttachReport", "Skipped", "attach_all", "kprobes_available"]

log = logging.getLogger("bpfring")

# enum bpf_prog_type values this module tells apart
PROG_KPROBE = 2
PROG_SCHED_CLS = 3
PROG_SCHED_ACT = 4
PROG_TRACEPOINT = 5
PROG_XDP = 6
PROG_PERF_EVENT = 7
PROG_RAW_TRACEPOINT = 17
PROG_RAW_TRACEPOINT_WRITABLE = 24
PROG_SYSCALL = 31
# cgroup_skb, cgroup_sock, sock_ops, cgroup_device, cgroup_sock_addr, cgroup_sysctl, sockopt
CGROUP_PROG_TYPES = frozenset({8, 9, 13, 15, 18, 23, 25})

DEFAULT_FREQUENCY = 99  # Hz; off the common timer rates, so samples do not alias with them


# --- libbpf option structs (libbpf.h 1.1; ``sz`` makes them forward compatible) -----

class _UprobeOpts(Structure):
    _fields_ = [("sz", c_size_t), ("ref_ctr_offset", c_size_t), ("bpf_cookie", c_uint64),
                ("retprobe", c_bool), ("func_name", c_char_p)]


class _UsdtOpts(Structure):
    _fields_ = [("sz", c_size_t), ("usdt_cookie", c_uint64)]


class _KprobeOpts(Structure):
    _fields_ = [("sz", c_size_t), ("bpf_cookie", c_uint64), ("offset", c_size_t),
                ("retprobe", c_bool)]


class _KsyscallOpts(Structure):
    _fields_ = [("sz", c_size_t), ("bpf_cookie", c_uint64), ("retprobe", c_bool)]


class _PerfEventOpts(Structure):
    _fields_ = [("sz", c_size_t), ("bpf_cookie", c_uint64)]


_P = c_void_p
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "bpf_program__attach": (_P, [_P]),
    "bpf_program__autoload": (c_bool, [_P]),
    "bpf_program__expected_attach_type": (c_int, [_P]),
    "bpf_program__attach_tracepoint": (_P, [_P, c_char_p, c_char_p]),
    "bpf_program__attach_raw_tracepoint": (_P, [_P, c_char_p]),
    "bpf_program__attach_uprobe_opts": (_P, [_P, c_int, c_char_p, c_size_t,
                                             POINTER(_UprobeOpts)]),
    "bpf_program__attach_usdt": (_P, [_P, c_int, c_char_p, c_char_p, c_char_p,
                                      POINTER(_UsdtOpts)]),
    "bpf_program__attach_cgroup": (_P, [_P, c_int]),
    "bpf_program__attach_perf_event_opts": (_P, [_P, c_int, POINTER(_PerfEventOpts)]),
    "bpf_program__attach_kprobe_opts": (_P, [_P, c_char_p, POINTER(_KprobeOpts)]),
    "bpf_program__attach_ksyscall": (_P, [_P, c_char_p, POINTER(_KsyscallOpts)]),
    "libbpf_bpf_attach_type_str": (c_char_p, [c_int]),
    "libbpf_bpf_prog_type_str": (c_char_p, [c_int]),
}


@functools.cache
def _lib() -> Any:
    """This module's libbpf functions, prototyped on first use.

    ``CDLL[name]`` makes a new function object, so these prototypes never
    touch the ones other modules set on the shared ``_libbpf.lib``."""
    return _netattach.bind(_PROTOTYPES)


def prog_type_name(t: int) -> str:
    """libbpf's name of a program type ("xdp", "tracepoint", ...)."""
    s = _lib().libbpf_bpf_prog_type_str(t)
    return s.decode() if s else str(t)


@functools.cache
def attach_types() -> dict[str, int]:
    """Attach type names (libbpf's, e.g. ``cgroup_inet_egress``) to values."""
    out: dict[str, int] = {}
    for t in range(128):
        s = _lib().libbpf_bpf_attach_type_str(t)
        if not s:
            break
        out[s.decode()] = t
    return out


def _attach_type(value: int | str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"attach_type must be an int or a name, not {type(value).__name__}")
    if isinstance(value, int):
        return value
    names = attach_types()
    key = value.strip().lower().removeprefix("bpf_")
    for cand in (key, f"cgroup_{key}"):
        if cand in names:
            return names[cand]
    close = difflib.get_close_matches(key, names, 3)
    raise ValueError(f"unknown attach type {value!r}" + (f"; did you mean {close}?" if close
                                                          else ""))


# --- the mixin ----------------------------------------------------------------------


class AttachMethods:
    """``attach_*`` methods of :class:`bpfring.Program`.

    Every method returns a :class:`~bpfring.Link` (a list of them for
    per-CPU perf events) that detaches on ``close()`` or at the end of a
    ``with`` block, and that the owning object detaches when it is closed.
    Failures raise :class:`~bpfring.AttachError` (or
    :class:`~bpfring.BPFPermissionError`, :class:`~bpfring.KernelTooOld`)
    naming the program and the target, with a hint.
    """

    if TYPE_CHECKING:
        _ptr: int
        name: str
        section: str

        @property
        def fd(self) -> int: ...

        @property
        def type(self) -> int: ...

    def _adopt_link(self, link: Link) -> Link:
        """Register ``link`` with the owner (which detaches it on close)."""
        return link

    # helpers --------------------------------------------------------------------

    def _prog_fd(self) -> int:
        fd = self.fd
        if fd < 0:
            raise AttachError(f"program {self.name!r} is not loaded (autoload is off?)",
                              errno=_errno.EBADF,
                              hint="set autoload before load, or attach a loaded program")
        return fd

    def _require(self, types: Iterable[int], method: str) -> None:
        kinds = set(types)
        if self.type not in kinds:
            want = " or ".join(sorted(prog_type_name(t) for t in kinds))
            raise AttachError(
                f"{method}: program {self.name!r} (SEC(\"{self.section}\")) is a "
                f"{prog_type_name(self.type)} program, not {want}", errno=_errno.EINVAL,
                hint=f"{method} takes {want} programs; check the program's SEC()")

    def _libbpf_link(self, target: str, call: Any, *args: Any,
                     hints: dict[int, str] | None = None) -> Link:
        """Call a libbpf ``bpf_program__attach_*`` function and wrap its link."""
        self._prog_fd()
        with _libbpf.capture_log() as lines:
            ptr = call(self._ptr, *args)
        if not ptr:
            err = ctypes.get_errno() or _errno.EINVAL
            raise attach_error(self, target, err, lines, (hints or {}).get(err))
        return self._adopt_link(_netattach.libbpf_link(ptr, self.name))

    # tracing -------------------------------------------------------------------

    def attach(self) -> Link:
        """Attach by the program's ``SEC()`` (tracepoint, raw_tp, uprobe with a
        path, ...), as libbpf's auto-attach does; programs whose ``SEC()``
        names no target raise an :class:`AttachError` saying which
        ``attach_*`` method to call."""
        self._prog_fd()
        need = needs_target(self)
        if need:
            raise AttachError(f"program {self.name!r} (SEC(\"{self.section}\")) cannot be "
                              "attached by its section alone", errno=_errno.EOPNOTSUPP,
                              hint=need)
        missing = missing_target(self)
        if missing is not None:
            raise missing
        if self.type == PROG_TRACEPOINT:
            ensure_tracefs()
        return self._libbpf_link(f"SEC(\"{self.section}\")", _lib().bpf_program__attach, hints={
            _errno.EOPNOTSUPP: "this section type has no auto-attach; use an attach_* method",
            _errno.ENOENT: "the attach point named in SEC() does not exist on this kernel"})

    def attach_tracepoint(self, category: str, name: str) -> Link:
        """Attach to the tracepoint ``category:name`` (e.g. "syscalls",
        "sys_enter_openat"), as listed under tracefs ``events/``."""
        self._require((PROG_TRACEPOINT,), "attach_tracepoint")
        for part in (category, name):
            if not isinstance(part, str) or not part or "/" in part:
                raise ValueError(f"bad tracepoint name part {part!r}")
        target = f"tracepoint {category}:{name}"
        tracefs = ensure_tracefs()
        events = os.path.join(tracefs, "events")
        unreadable = tracefs_unreadable(self.name, target, events)
        if unreadable is not None:
            raise unreadable
        if not os.path.isdir(os.path.join(events, category, name)):
            where = os.path.join(events, category)
            pool = os.listdir(where) if os.path.isdir(where) else os.listdir(events)
            close = difflib.get_close_matches(name if os.path.isdir(where) else category,
                                              pool, 3)
            raise AttachError(
                f"attaching program {self.name!r} to {target}: no such tracepoint",
                errno=_errno.ENOENT,
                hint=(f"did you mean {close}? " if close else "")
                + f"the tracepoints are listed under {events}")
        return self._libbpf_link(target, _lib().bpf_program__attach_tracepoint,
                                 category.encode(), name.encode())

    def attach_raw_tracepoint(self, name: str) -> Link:
        """Attach to the raw tracepoint ``name`` ("sys_enter", "sched_switch")."""
        self._require((PROG_RAW_TRACEPOINT, PROG_RAW_TRACEPOINT_WRITABLE),
                      "attach_raw_tracepoint")
        if not isinstance(name, str) or not name:
            raise ValueError(f"bad raw tracepoint name {name!r}")
        return self._libbpf_link(
            f"raw tracepoint {name}", _lib().bpf_program__attach_raw_tracepoint,
            name.encode(), hints={_errno.ENOENT: "raw tracepoint names are tracepoint names "
                                  "without the category (sys_enter, sched_switch, ...)"})

    def attach_uprobe(self, binary: str | os.PathLike[str], symbol: str | None = None, *,
                      offset: int = 0, pid: int = -1, retprobe: bool = False,
                      cookie: int = 0) -> Link:
        """Attach a uprobe (``retprobe``: a uretprobe) to ``symbol`` in
        ``binary``, plus ``offset`` bytes; without ``symbol``, at file offset
        ``offset``.  ``binary`` is a path or a library name ("libc.so.6",
        resolved as the dynamic loader would, or from the maps of ``pid``);
        libbpf finds the symbol in the ELF file's symbol tables.  ``pid``
        limits the probe to one process (-1: all); ``cookie`` is what
        ``bpf_get_attach_cookie()`` returns."""
        self._require((PROG_KPROBE,), "attach_uprobe")
        if symbol is not None and (not isinstance(symbol, str) or not symbol):
            raise ValueError(f"symbol must be a non-empty str or None, not {symbol!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be an int >= 0, not {offset!r}")
        if symbol is None and offset == 0:
            raise ValueError("give a symbol, or the file offset of the instruction to probe")
        check_u64("cookie", cookie)
        kind = "uretprobe" if retprobe else "uprobe"
        with for_program(self, f"{kind} {os.fspath(binary)}:{symbol or hex(offset)}"):
            check_pid(pid)
            path = resolve_binary(binary, pid)
            if symbol is None:
                check_code_offset(path, offset)
        where = (symbol or "") + (f"+{offset:#x}" if offset else "")
        target = f"{kind} {path}:{where}" + (f" (pid {pid})" if pid >= 0 else "")
        opts = libbpf_opts(_UprobeOpts, bpf_cookie=cookie, retprobe=retprobe,
                     func_name=symbol.encode() if symbol else None)
        hints = {_errno.ESRCH: f"process {pid} is gone"}
        if symbol:
            hints[_errno.ENOENT] = (f"{path} has no function {symbol!r}: list its functions "
                                    f"with 'nm -D --defined-only {path}' (or nm for static "
                                    "ones); C++ names are mangled")
        else:
            hints[_errno.EINVAL] = "the offset must be a file offset inside a code segment"
        return self._libbpf_link(target, _lib().bpf_program__attach_uprobe_opts, pid,
                                 path.encode(), offset, byref(opts), hints=hints)

    def attach_uretprobe(self, binary: str | os.PathLike[str], symbol: str | None = None, *,
                         offset: int = 0, pid: int = -1, cookie: int = 0) -> Link:
        """:meth:`attach_uprobe` at the function's return."""
        return self.attach_uprobe(binary, symbol, offset=offset, pid=pid, retprobe=True,
                                  cookie=cookie)

    def attach_usdt(self, binary: str | os.PathLike[str], provider: str, name: str, *,
                    pid: int = -1, cookie: int = 0) -> Link:
        """Attach to the USDT probe ``provider:name`` of ``binary`` (its
        ``.note.stapsdt`` notes); the program reads arguments with
        ``bpf_usdt_arg()`` of ``<bpf/usdt.bpf.h>``, ``cookie`` with
        ``bpf_usdt_cookie()``."""
        self._require((PROG_KPROBE,), "attach_usdt")
        for part in (provider, name):
            if not isinstance(part, str) or not part:
                raise ValueError(f"bad USDT provider/name {part!r}")
        check_u64("cookie", cookie)
        with for_program(self, f"USDT {provider}:{name} in {os.fspath(binary)}"):
            check_pid(pid)
            path = resolve_binary(binary, pid)
        target = f"USDT {provider}:{name} in {path}" + (f" (pid {pid})" if pid >= 0 else "")
        opts = libbpf_opts(_UsdtOpts, usdt_cookie=cookie)
        return self._libbpf_link(
            target, _lib().bpf_program__attach_usdt, pid, path.encode(), provider.encode(),
            name.encode(), byref(opts),
            hints={_errno.ENOENT: f"{path} has no probe {provider}:{name}: list its probes "
                                  f"with 'readelf -n {path}' (NT_STAPSDT notes)",
                   _errno.EINVAL: "the program must include <bpf/usdt.bpf.h> and be "
                                  "SEC(\"usdt\")"})

    def attach_kprobe(self, function: str, *, offset: int = 0, retprobe: bool = False,
                      cookie: int = 0) -> Link:
        """Attach a kprobe (``retprobe``: kretprobe) to the kernel function
        ``function`` plus ``offset``; raises :class:`KernelTooOld` on kernels
        without kprobes."""
        self._require((PROG_KPROBE,), "attach_kprobe")
        if not isinstance(function, str) or not function:
            raise ValueError(f"bad kernel function name {function!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be an int >= 0, not {offset!r}")
        check_u64("cookie", cookie)
        target = f"{'kretprobe' if retprobe else 'kprobe'} {function}" + (
            f"+{offset:#x}" if offset else "")
        require_kprobes(self.name, target)
        opts = libbpf_opts(_KprobeOpts, bpf_cookie=cookie, offset=offset, retprobe=retprobe)
        return self._libbpf_link(
            target, _lib().bpf_program__attach_kprobe_opts, function.encode(), byref(opts),
            hints={_errno.ENOENT: "no such kernel function (see /proc/kallsyms; inlined "
                                  "functions cannot be probed)"})

    def attach_kretprobe(self, function: str, *, cookie: int = 0) -> Link:
        """:meth:`attach_kprobe` at the function's return."""
        return self.attach_kprobe(function, retprobe=True, cookie=cookie)

    def attach_ksyscall(self, name: str, retprobe: bool = False, *, cookie: int = 0) -> Link:
        """Attach a kprobe to the system call ``name`` ("openat"): libbpf
        picks the kernel's arch-specific entry symbol."""
        self._require((PROG_KPROBE,), "attach_ksyscall")
        if not isinstance(name, str) or not name:
            raise ValueError(f"bad system call name {name!r}")
        check_u64("cookie", cookie)
        target = f"{'kretsyscall' if retprobe else 'ksyscall'} {name}"
        require_kprobes(self.name, target)
        opts = libbpf_opts(_KsyscallOpts, bpf_cookie=cookie, retprobe=retprobe)
        return self._libbpf_link(
            target, _lib().bpf_program__attach_ksyscall, name.encode(), byref(opts),
            hints={_errno.ENOENT: "no such system call on this architecture"})

    def attach_perf_event(self, *, frequency: int | None = None, period: int | None = None,
                          cpus: Sequence[int] | None = None,
                          event: str = "cpu-clock") -> list[Link]:
        """Attach a ``SEC("perf_event")`` program to a sampling event on each
        CPU (default: every online CPU): ``frequency`` samples per second
        (default 99) or one sample every ``period`` events (nanoseconds for
        cpu-clock).  ``event`` is a perf event name (``bpfring._perf.EVENTS``:
        cpu-clock, page-faults, ..., hardware ones where a PMU exists).
        Returns one link per CPU."""
        self._require((PROG_PERF_EVENT,), "attach_perf_event")
        self._prog_fd()
        if event not in _perf.EVENTS:
            raise ValueError(f"unknown perf event {event!r}; known: {sorted(_perf.EVENTS)}")
        if frequency is None and period is None:
            frequency = DEFAULT_FREQUENCY
        ptype, config = _perf.EVENTS[event]
        attr = _perf.sampling_attr(ptype, config, period=period, frequency=frequency)
        cpu_list = list(_perf.online_cpus() if cpus is None else cpus)
        for cpu in cpu_list:
            if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0:
                raise ValueError(f"bad CPU number {cpu!r}")
        if not cpu_list:
            raise ValueError("no CPUs to attach to")
        rate = f"{frequency} Hz" if frequency is not None else f"period {period}"
        links: list[Link] = []
        try:
            for cpu in cpu_list:
                target = f"{event} sampling ({rate}) on cpu {cpu}"
                try:
                    pfd = OwnedFD(_perf.perf_event_open(attr, -1, cpu, what=event),
                                  f"perf event ({event}, cpu {cpu})")
                except BPFError as e:
                    raise type(e)(f"attaching program {self.name!r} to {target}: {e.message}",
                                  errno=e.errno, hint=e.hint) from None
                opts = libbpf_opts(_PerfEventOpts)
                with _libbpf.capture_log() as lines:
                    ptr = _lib().bpf_program__attach_perf_event_opts(self._ptr, pfd.fileno(),
                                                                     byref(opts))
                if not ptr:
                    err = ctypes.get_errno() or _errno.EINVAL
                    pfd.close()
                    raise attach_error(self, target, err, lines)
                pfd.detach()  # the libbpf link owns the perf fd now and closes it
                links.append(_netattach.libbpf_link(ptr, self.name))
        except BaseException:
            for link in reversed(links):
                link.close()
            raise
        return [self._adopt_link(link) for link in links]  # all or nothing

    # network and cgroups -----------------------------------------------------------

    def attach_xdp(self, interface: str | int, *, mode: str | None = None) -> Link:
        """Attach an XDP program to ``interface`` (name or index).

        ``mode=None`` makes a BPF link (the kernel picks native mode where the
        driver has it, else generic); it cannot be replaced by others and goes
        away with the process.  ``mode="skb"`` (generic), ``"drv"`` (native)
        or ``"hw"`` (offload) attach through netlink in exactly that mode,
        refusing to replace a program already there; the link detaches it on
        close (and at interpreter exit), but a killed process leaves it
        attached, as ``ip link set ... xdp`` does."""
        self._require((PROG_XDP,), "attach_xdp")
        return self._adopt_link(_netattach.attach_xdp(self, interface, mode))

    def attach_tc(self, interface: str | int, *, direction: str = "ingress",
                  priority: int = 0, handle: int = 0) -> Link:
        """Attach a TC classifier (``SEC("tc")``) to the clsact hook of
        ``interface`` in ``direction`` ("ingress" or "egress") through
        libbpf's tc hook API (netlink), in direct-action mode.

        ``priority`` and ``handle`` 0 let the kernel choose (the link's
        ``priority``/``handle`` say what it chose).  The clsact qdisc is made
        when missing; closing the link removes the filter, and removes the
        qdisc only if this process made it, no other link of this process
        uses it and no filter of anyone else is left on it."""
        self._require((PROG_SCHED_CLS, PROG_SCHED_ACT), "attach_tc")
        return self._adopt_link(_netattach.attach_tc(self, interface, direction, priority,
                                                     handle))

    def attach_tcx(self, interface: str | int, direction: str = "ingress") -> Link:
        """Attach a TC program to ``interface`` through tcx (Linux 6.6+): a
        BPF link (``BPF_LINK_CREATE``, attach type BPF_TCX_INGRESS/EGRESS),
        appended after the programs already there; no qdisc involved, and it
        goes away with the link fd (close, or the process ending)."""
        self._require((PROG_SCHED_CLS,), "attach_tcx")
        return self._adopt_link(_netattach.attach_tcx(self, interface, direction))

    def attach_cgroup(self, path_or_fd: str | os.PathLike[str] | int,
                      attach_type: int | str | None = None) -> Link:
        """Attach a cgroup program to a cgroup v2 directory (a path, or an
        open fd of it) as a BPF link.  ``attach_type`` defaults to the
        one the program's ``SEC()`` implies ("cgroup_skb/egress" ->
        ``cgroup_inet_egress``); give it (libbpf's name or the enum value) for
        sections that do not say, e.g. ``SEC("cgroup/skb")``."""
        self._require(CGROUP_PROG_TYPES, "attach_cgroup")
        prog_fd = self._prog_fd()
        with for_program(self, f"cgroup {path_or_fd}"):
            owned, fd, what = cgroup_fd(path_or_fd)
        try:
            expected = _lib().bpf_program__expected_attach_type(self._ptr)
            at = expected if attach_type is None else _attach_type(attach_type)
            names = {v: k for k, v in attach_types().items()}
            target = f"{what} ({names.get(at, at)})"
            if at == expected:
                return self._libbpf_link(target, _lib().bpf_program__attach_cgroup, fd)
            link_fd = _netattach.link_create(self, target, prog_fd, fd, at)
            return self._adopt_link(FDLink(link_fd, self.name, target))
        finally:
            if owned is not None:
                owned.close()  # the link holds its own reference to the cgroup


# --- attach everything ----------------------------------------------------------------

AUTOLOAD_OFF = "autoload off"
RUN_ONLY = "run only"
NEEDS_TARGET = "needs a target"
TARGET_MISSING = "target missing"
NO_AUTO_ATTACH = "no auto-attach"
UNSUPPORTED = "unsupported"
_ENOTSUPP = 524  # kernel-internal errno: this kernel cannot attach that kind of program

_KPROBE_HEADS = ("kprobe", "kretprobe", "ksyscall", "kretsyscall")
_NEEDS_ARG = {
    "uprobe": "give it a binary with prog.attach_uprobe(binary, symbol)",
    "uprobe.s": "give it a binary with prog.attach_uprobe(binary, symbol)",
    "uretprobe": "give it a binary with prog.attach_uretprobe(binary, symbol)",
    "uretprobe.s": "give it a binary with prog.attach_uretprobe(binary, symbol)",
    "usdt": "give it a probe with prog.attach_usdt(binary, provider, name)",
    "kprobe": "give it a kernel function with prog.attach_kprobe(function)",
    "kretprobe": "give it a kernel function with prog.attach_kretprobe(function)",
    "ksyscall": "give it a system call with prog.attach_ksyscall(name)",
    "kretsyscall": "give it a system call with prog.attach_ksyscall(name, retprobe=True)",
    "tp": "give it a tracepoint with prog.attach_tracepoint(category, name)",
    "tracepoint": "give it a tracepoint with prog.attach_tracepoint(category, name)",
    "raw_tp": "give it a raw tracepoint with prog.attach_raw_tracepoint(name)",
    "raw_tracepoint": "give it a raw tracepoint with prog.attach_raw_tracepoint(name)",
    "raw_tp.w": "give it a raw tracepoint with prog.attach_raw_tracepoint(name)",
    "raw_tracepoint.w": "give it a raw tracepoint with prog.attach_raw_tracepoint(name)",
}
_NEEDS_BY_TYPE = {
    PROG_XDP: "give it a network interface with prog.attach_xdp(interface)",
    PROG_SCHED_CLS: "give it a network interface with prog.attach_tc(interface, "
                    "direction=...) or prog.attach_tcx(interface, direction)",
    PROG_SCHED_ACT: "give it a network interface with prog.attach_tc(interface, "
                    "direction=...)",
    PROG_PERF_EVENT: "give it a sampling event with prog.attach_perf_event(frequency=...)",
    1: "socket filters attach to a socket (setsockopt SO_ATTACH_BPF with prog.fd)",
    14: "sk_skb programs attach to a sockmap/sockhash (BPF_PROG_ATTACH)",
    16: "sk_msg programs attach to a sockmap/sockhash (BPF_PROG_ATTACH)",
    22: "flow dissectors attach to a network namespace (BPF_PROG_ATTACH)",
    30: "sk_lookup programs attach to a network namespace (BPF_LINK_CREATE)",
}


def _autoload(prog: AttachMethods) -> bool:
    return bool(_lib().bpf_program__autoload(prog._ptr))


def needs_target(prog: AttachMethods) -> str | None:
    """Why ``prog`` cannot attach by its ``SEC()`` alone (which ``attach_*``
    call it needs), or None when its section names the target."""
    if prog.type in CGROUP_PROG_TYPES:
        return "give it a cgroup with prog.attach_cgroup(path)"
    if prog.type in _NEEDS_BY_TYPE:
        return _NEEDS_BY_TYPE[prog.type]
    head, _, tail = prog.section.partition("/")
    if head in _NEEDS_ARG and not tail.strip("/"):
        return _NEEDS_ARG[head]
    if head.startswith(("uprobe", "uretprobe")) and head in _NEEDS_ARG and ":" not in tail:
        # SEC("uretprobe/readline") (bcc's bashreadline): a function, but no
        # binary; libbpf cannot auto-attach it, user space finds the library.
        call = "attach_uretprobe" if head.startswith("uretprobe") else "attach_uprobe"
        return f"give it the binary or library with prog.{call}(binary, {tail.strip('/')!r})"
    return None


def tracefs_unreadable(program: str, target: str, events: str) -> BPFError | None:
    """The error when this process cannot read tracefs ``events/``: libbpf
    reads a tracepoint's id there, so CAP_BPF and CAP_PERFMON alone do not
    let a non-root user attach one (tracefs is root-only, mode 0700, by
    default)."""
    if os.access(events, os.R_OK | os.X_OK):
        return None
    return BPFPermissionError(
        f"attaching program {program!r} to {target}: cannot read {events}",
        errno=_errno.EACCES,
        hint="attaching a tracepoint reads its id from tracefs, which CAP_BPF and "
        "CAP_PERFMON do not grant: run as root, or give this user read access to tracefs "
        "(for example its gid= mount option)")


def missing_target(prog: AttachMethods) -> BPFError | None:
    """The error of a ``SEC()`` target this kernel does not have (kprobes
    without CONFIG_KPROBES, a tracepoint tracefs does not list), or None."""
    head, _, tail = prog.section.partition("/")
    if prog.type == PROG_KPROBE and head in _KPROBE_HEADS and tail and not kprobes_available():
        try:
            require_kprobes(prog.name, f"{head} {tail}")
        except KernelTooOld as e:
            return e
    if prog.type == PROG_TRACEPOINT and head in ("tp", "tracepoint") and "/" in tail:
        category, _, name = tail.partition("/")
        try:
            tracefs = ensure_tracefs()
        except BPFError as e:
            return e
        unreadable = tracefs_unreadable(prog.name, f"tracepoint {category}:{name}",
                                        os.path.join(tracefs, "events"))
        if unreadable is not None:
            return unreadable
        if not os.path.isdir(os.path.join(tracefs, "events", category, name)):
            return AttachError(f"attaching program {prog.name!r} to tracepoint "
                               f"{category}:{name}: no such tracepoint", errno=_errno.ENOENT,
                               hint=f"the tracepoints are listed under {tracefs}/events")
    return None


@dataclass(frozen=True)
class Skipped:
    """A program :func:`attach_all` did not attach: ``reason`` is one of
    "autoload off", "run only", "needs a target", "target missing",
    "no auto-attach", "unsupported"; ``detail`` says what to do about it."""

    program: str
    section: str
    reason: str
    detail: str


class AttachReport(list[Link]):
    """The links :func:`attach_all` made (it *is* that list, so code that
    treated the old return value as a list keeps working), plus ``skipped``:
    the programs it left alone and why."""

    def __init__(self, links: Iterable[Link] = (), skipped: Iterable[Skipped] = ()) -> None:
        super().__init__(links)
        self.skipped: list[Skipped] = list(skipped)

    @property
    def links(self) -> list[Link]:
        return list(self)

    def __repr__(self) -> str:
        skipped = ", ".join(f"{s.program} ({s.reason})" for s in self.skipped) or "none"
        return f"<AttachReport links={[link.program for link in self]} skipped: {skipped}>"


def attach_all(programs: Iterable[AttachMethods], *, skip_missing: bool = False) -> AttachReport:
    """Attach every program that can attach by its ``SEC()``.

    Skipped, with a log record each (INFO for programs the user turned off or
    that are only run, WARNING for the rest): programs with autoload off,
    ``SEC("syscall")`` programs, programs whose section names no target
    (XDP, TC, cgroup, perf event, a bare ``SEC("uprobe")``, ...), sections
    libbpf cannot auto-attach or this kernel cannot attach (ENOTSUPP, as
    before), and -- with ``skip_missing`` -- programs whose
    target this kernel lacks (a missing tracepoint or kernel function, no
    kprobes).  Without ``skip_missing`` such a program raises its error; the
    links this call made are then detached again, so a failed call leaves
    nothing attached.
    """
    report = AttachReport()

    def skip(prog: AttachMethods, reason: str, detail: str, level: int = logging.WARNING
             ) -> None:
        report.skipped.append(Skipped(prog.name, prog.section, reason, detail))
        log.log(level, "not attaching program %s (SEC(\"%s\")): %s: %s", prog.name,
                prog.section, reason, detail)

    try:
        for prog in programs:
            if not _autoload(prog):
                skip(prog, AUTOLOAD_OFF, "autoload is off, so it was not loaded", logging.INFO)
                continue
            if prog.type == PROG_SYSCALL:
                skip(prog, RUN_ONLY, "SEC(\"syscall\") programs are run with Program.run()",
                     logging.INFO)
                continue
            need = needs_target(prog)
            if need:
                skip(prog, NEEDS_TARGET, need)
                continue
            try:
                report.append(AttachMethods.attach(prog))
            except (AttachError, KernelTooOld) as e:
                missing = isinstance(e, KernelTooOld) or e.errno in (_errno.ENOENT,
                                                                      _errno.ESRCH)
                if missing and skip_missing:
                    skip(prog, TARGET_MISSING, str(e))
                elif e.errno == _errno.EOPNOTSUPP and not missing:
                    skip(prog, NO_AUTO_ATTACH, str(e))
                elif e.errno == _ENOTSUPP:
                    skip(prog, UNSUPPORTED, str(e))
                else:
                    if missing:
                        e.add_note("attach_all(skip_missing=True) skips programs whose "
                                   "target is missing")
                    raise
    except BaseException as e:
        if report:
            e.add_note(f"attach_all detached the {len(report)} link(s) it had made")
        for link in reversed(report):
            link.close()
        raise
    return report
