"""Attachments that are not libbpf links, and the helpers every attach shares.

Three kinds of attachment exist:

* libbpf ``struct bpf_link`` objects (tracepoints, uprobes, XDP links,
  cgroups, perf events, kprobes): :class:`bpfring.Link` wraps them.
* Kernel BPF links made here with ``BPF_LINK_CREATE`` (tcx, which libbpf
  1.1 predates, and cgroups with an attach type other than the program's):
  :class:`FDLink`, closing the link fd detaches.
* Netlink attachments (XDP with an explicit mode, TC filters on clsact): the
  kernel keeps them until told otherwise, even after the process exits, so
  :class:`DetachLink` undoes them with a call on close, and at interpreter
  exit for links still attached.  Netlink acts on the *current* network
  namespace, so such a link remembers the namespace it was made in and
  detaches there, whichever namespace the closing thread is in.

TC filters need the clsact qdisc.  Our rule for it: create it when missing;
remove it when the last TC link of this process on that interface closes,
but only if this process created it and no filter is left on it (someone
else's filters keep it, and a clsact that existed before is never touched).
A clsact qdisc left empty is harmless.
"""

from __future__ import annotations

import atexit
import ctypes
import errno as _errno
import functools
import logging
import os
import socket
import struct
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from ctypes import POINTER, Structure, byref, c_int, c_size_t, c_uint8, c_uint32, c_void_p
from dataclasses import dataclass
from typing import Any, Protocol

from . import _libbpf, _sys
from ._fd import OwnedFD
from .errors import AttachError, BPFError, BPFPermissionError, KernelTooOld
from .link import Link

log = logging.getLogger("bpfring")

class Prog(Protocol):
    """What attaching needs of a program (see :class:`bpfring._attach.AttachMethods`)."""

    _ptr: int
    name: str
    section: str

    @property
    def fd(self) -> int: ...

    def _prog_fd(self) -> int: ...


# --- libbpf -------------------------------------------------------------------------


def bind(prototypes: dict[str, tuple[Any, list[Any]]]) -> Any:
    """Private libbpf function objects with the given (restype, argtypes)."""
    lib = _libbpf.lib
    ns = types.SimpleNamespace()
    for name, (restype, argtypes) in prototypes.items():
        f = lib[name]
        f.restype = restype
        f.argtypes = argtypes
        setattr(ns, name, f)
    return ns


class _XdpAttachOpts(Structure):
    _fields_ = [("sz", c_size_t), ("old_prog_fd", c_int)]


class _XdpQueryOpts(Structure):
    _fields_ = [("sz", c_size_t), ("prog_id", c_uint32), ("drv_prog_id", c_uint32),
                ("hw_prog_id", c_uint32), ("skb_prog_id", c_uint32), ("attach_mode", c_uint8)]


class _TcHook(Structure):
    _fields_ = [("sz", c_size_t), ("ifindex", c_int), ("attach_point", c_int),
                ("parent", c_uint32)]


class _TcOpts(Structure):
    _fields_ = [("sz", c_size_t), ("prog_fd", c_int), ("flags", c_uint32),
                ("prog_id", c_uint32), ("handle", c_uint32), ("priority", c_uint32)]


def libbpf_opts(cls: type[Structure], **fields: Any) -> Any:
    o = cls(**fields)
    o.sz = ctypes.sizeof(cls)
    return o


_P = c_void_p
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "bpf_program__attach_xdp": (_P, [_P, c_int]),
    "bpf_xdp_attach": (c_int, [c_int, c_int, c_uint32, POINTER(_XdpAttachOpts)]),
    "bpf_xdp_detach": (c_int, [c_int, c_uint32, POINTER(_XdpAttachOpts)]),
    "bpf_xdp_query": (c_int, [c_int, c_int, POINTER(_XdpQueryOpts)]),
    "bpf_tc_hook_create": (c_int, [POINTER(_TcHook)]),
    "bpf_tc_hook_destroy": (c_int, [POINTER(_TcHook)]),
    "bpf_tc_attach": (c_int, [POINTER(_TcHook), POINTER(_TcOpts)]),
    "bpf_tc_detach": (c_int, [POINTER(_TcHook), POINTER(_TcOpts)]),
}


@functools.cache
def _lib() -> Any:
    return bind(_PROTOTYPES)


def _detail(lines: Sequence[str]) -> str:
    """The last libbpf lines worth showing, without the "libbpf: " prefix."""
    kept = [ln.removeprefix("libbpf: ").strip() for ln in lines if ln.strip()]
    return "; ".join(kept[-2:])


def attach_error(prog: Prog, target: str, err: int, lines: Sequence[str] = (),
                 hint: str | None = None) -> BPFError:
    """The exception for a failed attach: names the program and the target,
    carries the errno, libbpf's last words and a hint."""
    what = f"attaching program {prog.name!r} (SEC(\"{prog.section}\")) to {target}"
    if target.startswith("SEC("):
        what = f"attaching program {prog.name!r} by its {target}"
    msg = f"{what}: {os.strerror(err)}"
    detail = _detail(lines)
    if detail:
        msg += f" (libbpf: {detail})"
    if err in (_errno.EPERM, _errno.EACCES):
        return BPFPermissionError(msg, errno=err, hint=hint or (
            "attaching needs root: CAP_BPF and CAP_PERFMON, CAP_NET_ADMIN for network and "
            "cgroup hooks"))
    return AttachError(msg, errno=err, hint=hint)


@contextmanager
def for_program(prog: Prog, target: str) -> Iterator[None]:
    """Name the program and the target in bpfring errors raised in the block
    (bad binary, interface, cgroup, pid: found before any attach call)."""
    try:
        yield
    except BPFError as e:
        if e.message.startswith("attaching program"):
            raise
        raise type(e)(f"attaching program {prog.name!r} to {target}: {e.message}",
                      errno=e.errno, hint=e.hint) from None


def libbpf_link(ptr: int, program: str) -> Link:
    """A :class:`Link` owning the libbpf ``struct bpf_link *`` ``ptr``."""
    return Link(ptr, program)


# --- links that are not libbpf links ------------------------------------------------


class FDLink(Link):
    """A kernel BPF link made here with ``BPF_LINK_CREATE``: closing its fd
    detaches (so does the process ending)."""

    def __init__(self, fd: OwnedFD, program: str, target: str) -> None:
        self._ptr = None  # no libbpf bpf_link behind this one
        self._link_fd = fd
        self.program = program
        self.target = target

    @property
    def fd(self) -> int:
        return self._link_fd.fileno()

    @property
    def closed(self) -> bool:
        return self._link_fd.closed

    def close(self) -> None:
        self._link_fd.close()

    detach = close

    def __repr__(self) -> str:
        return f"<Link {self.program} -> {self.target} {'closed' if self.closed else 'attached'}>"


_ATTACHED: set[DetachLink] = set()  # strong refs: detached at exit even if dropped
_ATTACHED_LOCK = threading.Lock()


class DetachLink(Link):
    """A netlink attachment (XDP with a mode, a TC filter), undone by a call.

    ``close()`` detaches once (later calls do nothing); a failure to detach
    is logged, not raised, so closing an object always completes.  Links
    still attached at interpreter exit are detached then."""

    def __init__(self, program: str, target: str, undo: Callable[[], None],
                 keep: Sequence[OwnedFD] = (), *, handle: int | None = None,
                 priority: int | None = None) -> None:
        self._ptr = None
        self.program = program
        self.target = target
        self.handle = handle
        self.priority = priority
        self._undo: Callable[[], None] | None = undo
        self._keep = list(keep)
        self._pid = os.getpid()
        with _ATTACHED_LOCK:
            _ATTACHED.add(self)

    @property
    def fd(self) -> int:
        raise BPFError(f"{self.target} is a netlink attachment: it has no BPF link fd",
                       errno=_errno.EOPNOTSUPP,
                       hint="attach_xdp() without mode and attach_tcx() make BPF links")

    @property
    def closed(self) -> bool:
        return self._undo is None

    def close(self) -> None:
        with _ATTACHED_LOCK:
            undo, self._undo = self._undo, None
            _ATTACHED.discard(self)
        if undo is None:
            return
        try:
            undo()
        except OSError as e:
            log.warning("detaching program %s from %s failed: %s", self.program, self.target, e)
        finally:
            for f in self._keep:
                f.close()

    detach = close

    def __repr__(self) -> str:
        return f"<Link {self.program} -> {self.target} {'closed' if self.closed else 'attached'}>"


@atexit.register
def _detach_all_at_exit() -> None:
    # Only in the process that attached: a forked child exiting normally must
    # not undo its parent's attachments.
    with _ATTACHED_LOCK:
        links = [link for link in _ATTACHED if link._pid == os.getpid()]
    for link in links:
        link.close()


# --- network namespaces and interfaces -------------------------------------------------

_NS_PATH = "/proc/thread-self/ns/net"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_here() -> OwnedFD:
    """The calling thread's network namespace, as an fd (keeps it alive)."""
    return OwnedFD(os.open(_NS_PATH, os.O_RDONLY | os.O_CLOEXEC), "network namespace")


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(network namespace): {os.strerror(err)}")


@contextmanager
def in_netns(ns: OwnedFD) -> Iterator[None]:
    """Run the block in network namespace ``ns`` (this thread only)."""
    want, here = os.fstat(ns.fileno()), os.stat(_NS_PATH)
    if (want.st_dev, want.st_ino) == (here.st_dev, here.st_ino):
        yield
        return
    back = netns_here()
    try:
        _setns(ns.fileno())
        try:
            yield
        finally:
            _setns(back.fileno())
    finally:
        back.close()


def interface(value: str | int) -> tuple[int, str]:
    """(ifindex, name) of a network interface of this network namespace."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"interface must be a name or an index, not {type(value).__name__}")
    try:
        if isinstance(value, int):
            return value, socket.if_indextoname(value)
        return socket.if_nametoindex(value), value
    except OSError:
        names = ", ".join(n for _, n in socket.if_nameindex())
        raise AttachError(f"no network interface {value!r} in this network namespace",
                          errno=_errno.ENODEV, hint=f"interfaces here: {names}") from None


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = os.uname().release.split("-")[0].split(".")
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return True  # unknown format: let the kernel say


# --- BPF_LINK_CREATE ----------------------------------------------------------------------

BPF_LINK_CREATE = 28
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47
# union bpf_attr, member link_create: field -> (offset, struct format).  Checked
# against the kernel's BTF by tests/test_attach.py.
LINK_CREATE_ATTR: dict[str, tuple[int, str]] = {
    "prog_fd": (0, "I"),
    "target_fd": (4, "I"),
    "target_ifindex": (4, "I"),
    "attach_type": (8, "I"),
    "flags": (12, "I"),
    "tcx.relative_fd": (16, "I"),
    "tcx.expected_revision": (24, "Q"),
}
_ATTR_SIZE = 128  # as _sys: the kernel checks that the bytes it does not know are zero


def link_create(prog: Prog, target: str, prog_fd: int, target_fd: int, attach_type: int, *,
                hint: str | None = None, **fields: int) -> OwnedFD:
    """``BPF_LINK_CREATE``; the new link fd, or the attach error."""
    attr = bytearray(_ATTR_SIZE)
    values = {"prog_fd": prog_fd, "target_fd": target_fd, "attach_type": attach_type, **fields}
    for name, value in values.items():
        off, fmt = LINK_CREATE_ATTR[name]
        struct.pack_into("<" + fmt, attr, off, value)
    try:
        fd = _sys.bpf(BPF_LINK_CREATE, attr, f"BPF_LINK_CREATE ({target})")
    except BPFError as e:
        raise attach_error(prog, target, e.errno or _errno.EINVAL, (), hint) from None
    return OwnedFD(fd, f"BPF link ({target})")


def attach_tcx(prog: Prog, ifc: str | int, direction: str) -> Link:
    types_ = {"ingress": BPF_TCX_INGRESS, "egress": BPF_TCX_EGRESS}
    if direction not in types_:
        raise ValueError(f"direction must be 'ingress' or 'egress', not {direction!r}")
    with for_program(prog, f"tcx {direction} of {ifc}"):
        ifindex, ifname = interface(ifc)
    target = f"tcx {direction} of {ifname}"
    if not _kernel_at_least(6, 6):
        raise KernelTooOld(f"attaching program {prog.name!r} to {target}: tcx needs Linux 6.6 "
                           f"or newer (this is {os.uname().release})", errno=_errno.EOPNOTSUPP,
                           hint="use attach_tc() (clsact through netlink) instead")
    fd = link_create(prog, target, prog._prog_fd(), ifindex, types_[direction],
                     hint="tcx takes SEC(\"tc\") (sched_cls) programs")
    return FDLink(fd, prog.name, target)


# --- XDP ----------------------------------------------------------------------------------

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_MODES = {"skb": 1 << 1, "generic": 1 << 1, "drv": 1 << 2, "native": 1 << 2,
             "hw": 1 << 3, "offload": 1 << 3}
_XDP_ATTACHED = {0: "none", 1: "drv", 2: "skb", 3: "hw", 4: "multi"}


def xdp_query(ifindex: int) -> dict[str, int | str]:
    """The XDP programs on an interface: ids per mode (0: none) and the mode."""
    q = libbpf_opts(_XdpQueryOpts)
    ret = _lib().bpf_xdp_query(ifindex, 0, byref(q))
    if ret < 0:
        raise OSError(-ret, f"bpf_xdp_query({ifindex}): {os.strerror(-ret)}")
    return {"prog_id": q.prog_id, "drv_prog_id": q.drv_prog_id, "skb_prog_id": q.skb_prog_id,
            "hw_prog_id": q.hw_prog_id, "mode": _XDP_ATTACHED.get(q.attach_mode, "?")}


def _xdp_busy(ifindex: int, ifname: str) -> str:
    try:
        q = xdp_query(ifindex)
    except OSError:
        return f"{ifname} already has an XDP program; detach it first"
    return (f"{ifname} already has an XDP program (id {q['prog_id']}, mode {q['mode']}); "
            f"detach it first (ip link set dev {ifname} xdp off), or close its link")


def attach_xdp(prog: Prog, ifc: str | int, mode: str | None) -> Link:
    if mode is not None and mode not in XDP_MODES:
        raise ValueError(f"XDP mode must be None, 'skb', 'drv' or 'hw', not {mode!r}")
    with for_program(prog, f"XDP on {ifc}"):
        ifindex, ifname = interface(ifc)
    prog_fd = prog._prog_fd()
    if mode is None:
        target = f"XDP on {ifname}"
        with _libbpf.capture_log() as lines:
            ptr = _lib().bpf_program__attach_xdp(prog._ptr, ifindex)
        if not ptr:
            err = ctypes.get_errno() or _errno.EINVAL
            hint = _xdp_busy(ifindex, ifname) if err in (_errno.EBUSY, _errno.EEXIST) else None
            raise attach_error(prog, target, err, lines, hint)
        return libbpf_link(ptr, prog.name)
    flag = XDP_MODES[mode]
    target = f"XDP ({mode} mode) on {ifname}"
    ns = netns_here()
    pfd = OwnedFD.dup(prog_fd, "XDP program")  # stays valid for the detach check
    with _libbpf.capture_log() as lines:
        ret = _lib().bpf_xdp_attach(ifindex, pfd.fileno(), flag | XDP_FLAGS_UPDATE_IF_NOEXIST,
                                    None)
    if ret < 0:
        err = -ret
        pfd.close()
        ns.close()
        hint = None
        if err in (_errno.EBUSY, _errno.EEXIST):
            hint = _xdp_busy(ifindex, ifname)
        elif err == _errno.EOPNOTSUPP:
            hint = (f"the driver of {ifname} does not support XDP in {mode} mode; "
                    "mode='skb' works on every interface")
        raise attach_error(prog, target, err, lines, hint)

    def undo() -> None:
        with in_netns(ns):
            # old_prog_fd: detach only while our program is the one attached
            opts = libbpf_opts(_XdpAttachOpts, old_prog_fd=pfd.fileno())
            r = _lib().bpf_xdp_detach(ifindex, flag, byref(opts))
        if r == -_errno.EEXIST:
            raise OSError(-r, "another program replaced ours; left it attached")
        if r < 0 and r != -_errno.ENODEV:  # ENODEV: the interface is gone, and ours with it
            raise OSError(-r, os.strerror(-r))

    return DetachLink(prog.name, target, undo, (pfd, ns))


# --- TC (clsact) --------------------------------------------------------------------------

TC_INGRESS = 1 << 0
TC_EGRESS = 1 << 1
_TC_DIRECTIONS = {"ingress": TC_INGRESS, "egress": TC_EGRESS}
# TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS / TC_H_MIN_EGRESS)
_TC_PARENTS = (0xFFFFFFF2, 0xFFFFFFF3)
_RTM_NEWTFILTER, _RTM_GETTFILTER = 44, 46
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300


@dataclass
class _Clsact:
    created: bool = False
    users: int = 0


# (netns dev, netns inode, ifindex) -> our use of that interface's clsact qdisc
_CLSACT: dict[tuple[int, int, int], _Clsact] = {}
_TC_LOCK = threading.RLock()


def tc_filter_count(ifindex: int) -> int:
    """How many filter records (per priority/protocol, per filter) the
    clsact ingress and egress hooks of ``ifindex`` hold: an rtnetlink
    RTM_GETTFILTER dump in the current network namespace."""
    total = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       socket.NETLINK_ROUTE) as s:
        for seq, parent in enumerate(_TC_PARENTS, 1):
            tcmsg = struct.pack("=BBHiIII", socket.AF_UNSPEC, 0, 0, ifindex, 0, parent, 0)
            s.send(struct.pack("=IHHII", 16 + len(tcmsg), _RTM_GETTFILTER,
                               _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0) + tcmsg)
            total += _count_dump(s, seq)
    return total


def _count_dump(s: socket.socket, seq: int) -> int:
    n = 0
    while True:
        data = s.recv(65536)
        off = 0
        while off + 16 <= len(data):
            length, mtype, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, off)
            if length < 16:
                raise OSError(_errno.EPROTO, "malformed netlink reply")
            if mseq == seq:
                if mtype == _NLMSG_DONE:
                    return n
                if mtype == _NLMSG_ERROR:
                    err = -struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        raise OSError(err, os.strerror(err))
                    return n
                if mtype == _RTM_NEWTFILTER:
                    n += 1
            off += (length + 3) & ~3


def _ns_key(ns: OwnedFD, ifindex: int) -> tuple[int, int, int]:
    st = os.fstat(ns.fileno())
    return st.st_dev, st.st_ino, ifindex


class _ExistsFilter(logging.Filter):
    """Drops the kernel's "Exclusivity flag on" message libbpf logs as a
    warning when the clsact qdisc we ask for exists already (normal for us)."""

    active = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(self.active, "on", False)
                    and "Exclusivity flag on" in record.getMessage())


_EXISTS_FILTER = _ExistsFilter()
logging.getLogger("bpfring.libbpf").addFilter(_EXISTS_FILTER)


def _clsact_acquire(prog: Prog, target: str, key: tuple[int, int, int], ifindex: int) -> None:
    hook = libbpf_opts(_TcHook, ifindex=ifindex, attach_point=TC_INGRESS)
    _EXISTS_FILTER.active.on = True
    try:
        ret = _lib().bpf_tc_hook_create(byref(hook))
    finally:
        _EXISTS_FILTER.active.on = False
    if ret < 0 and ret != -_errno.EEXIST:
        raise attach_error(prog, target, -ret, (), "creating the clsact qdisc failed "
                           "(the kernel needs CONFIG_NET_SCH_INGRESS)")
    entry = _CLSACT.setdefault(key, _Clsact())
    entry.created |= ret == 0
    entry.users += 1


def _clsact_release(key: tuple[int, int, int], ifindex: int) -> None:
    """One TC link of ours is gone: remove the qdisc if it is ours and empty."""
    entry = _CLSACT.get(key)
    if entry is None:
        return
    entry.users -= 1
    if entry.users > 0:
        return
    del _CLSACT[key]
    if not entry.created:
        return
    try:
        left = tc_filter_count(ifindex)
    except OSError as e:
        log.debug("not removing the clsact qdisc of ifindex %d: cannot list filters: %s",
                  ifindex, e)
        return
    if left:
        log.info("leaving the clsact qdisc of ifindex %d: other filters use it", ifindex)
        return
    both = libbpf_opts(_TcHook, ifindex=ifindex, attach_point=TC_INGRESS | TC_EGRESS)
    r = _lib().bpf_tc_hook_destroy(byref(both))
    if r < 0 and -r not in (_errno.ENOENT, _errno.ENODEV, _errno.EINVAL):
        log.warning("removing the clsact qdisc of ifindex %d failed: %s", ifindex,
                    os.strerror(-r))


def attach_tc(prog: Prog, ifc: str | int, direction: str, priority: int, handle: int) -> Link:
    if direction not in _TC_DIRECTIONS:
        raise ValueError(f"direction must be 'ingress' or 'egress', not {direction!r}")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 0xFFFF:
        raise ValueError(f"priority must be an int in [0, 65535] (0: the kernel picks), "
                         f"not {priority!r}")
    if isinstance(handle, bool) or not isinstance(handle, int) or not 0 <= handle < 1 << 32:
        raise ValueError(f"handle must be an int in [0, 2**32) (0: the kernel picks), "
                         f"not {handle!r}")
    with for_program(prog, f"TC {direction} of {ifc}"):
        ifindex, ifname = interface(ifc)
    prog_fd = prog._prog_fd()
    target = f"TC {direction} of {ifname}"
    ns = netns_here()
    key = _ns_key(ns, ifindex)
    hook = libbpf_opts(_TcHook, ifindex=ifindex, attach_point=_TC_DIRECTIONS[direction])
    opts = libbpf_opts(_TcOpts, prog_fd=prog_fd, handle=handle, priority=priority)
    with _TC_LOCK:
        try:
            _clsact_acquire(prog, target, key, ifindex)
        except BaseException:
            ns.close()
            raise
        with _libbpf.capture_log() as lines:
            ret = _lib().bpf_tc_attach(byref(hook), byref(opts))
        if ret < 0:
            _clsact_release(key, ifindex)
            ns.close()
            raise attach_error(prog, target, -ret, lines, {
                _errno.EEXIST: f"{ifname} already has a {direction} filter with priority "
                               f"{priority} and handle {handle:#x}; pick others, or 0 to let "
                               "the kernel choose",
            }.get(-ret))
    got_handle, got_priority = opts.handle, opts.priority

    def undo() -> None:
        with _TC_LOCK, in_netns(ns):
            d = libbpf_opts(_TcOpts, handle=got_handle, priority=got_priority)
            r = _lib().bpf_tc_detach(byref(hook), byref(d))
            _clsact_release(key, ifindex)
        # ENOENT/EINVAL/ENODEV: the filter, its qdisc or the interface is gone already
        if r < 0 and -r not in (_errno.ENOENT, _errno.EINVAL, _errno.ENODEV):
            raise OSError(-r, os.strerror(-r))

    return DetachLink(prog.name, f"{target} (priority {got_priority}, handle {got_handle:#x})",
                      undo, (ns,), handle=got_handle, priority=got_priority)
