"""Explicit attach against the real kernel, network and cgroup side: XDP
(link and netlink modes), TC on clsact and tcx, on a veth pair between two
private network namespaces the tests make (only their 10.199.0.x addresses
receive traffic), and cgroup programs on cgroups the tests make.  Fixtures
remove the namespaces and cgroups even when a test fails.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from attach_helpers import A, need_tool, prog_id, progs, wait_for
from conftest import BPF_DIR, REQUIRE_KERNEL

import bpfring
from bpfring import AttachError, BPFError, _netattach


@pytest.fixture(scope="module")
def all_path(kernel) -> Path:
    return bpfring.build(BPF_DIR / "attach_all.bpf.c")


# ---------------------------------------------------------------------------------
# Network hooks on a veth pair between two private network namespaces
# ---------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000
PORT = 47011


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


@contextmanager
def in_netns(path: str) -> Iterator[None]:
    """This thread in the network namespace at ``path`` for the block."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    ns = os.open(path, os.O_RDONLY)
    try:
        _setns(ns)
        try:
            yield
        finally:
            _setns(back)
    finally:
        os.close(ns)
        os.close(back)


@dataclass
class NetPair:
    """Namespaces a and b joined by veth va (10.199.0.1, in a) -- vb
    (10.199.0.2, in b).  The test thread runs in b."""

    a: str
    b: str
    ns_a: str
    ns_b: str

    def _send(self, where: str, dst: str, count: int) -> None:
        with in_netns(where):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            for i in range(count):
                s.sendto(b"bpfring %d" % i, (dst, PORT))

    def a_to_b(self, count: int) -> None:
        """Packets that arrive on vb (ingress of b's interface)."""
        self._send(self.ns_a, "10.199.0.2", count)

    def b_to_a(self, count: int) -> None:
        """Packets that leave through vb (egress of b's interface)."""
        self._send(self.ns_b, "10.199.0.1", count)

    def tc(self, *args: str) -> str:
        return subprocess.run(["tc", *args], capture_output=True, text=True,
                              check=True).stdout


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _ip_in(ns: str, *args: str) -> None:
    """``ip ARGS`` inside the network namespace ``ns``.  Only the network
    namespace is entered (nsenter), not a new mount namespace as ``ip -n``
    does: that also works where / cannot be made a slave mount (a chroot)."""
    subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "ip", *args], check=True,
                   capture_output=True, text=True)


def _until_carrier(devs: tuple[tuple[str, str], ...], limit: float = 60.0) -> None:
    """Wait until each (namespace, device) is operationally up with its real
    qdisc.  The kernel's link watcher (one work item for the whole host,
    shared with every other test run) switches a veth from the ``noop``
    qdisc, which silently drops every packet sent, only some time after
    ``ip link set up``; a packet sent before that never arrives."""
    end = time.monotonic() + limit
    pending = list(devs)
    while pending:
        ns, dev = pending[0]
        out = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "ip", "-o", "link", "show",
                              "dev", dev], capture_output=True, text=True, check=True).stdout
        if "state UP" in out and "qdisc noop" not in out:
            pending.pop(0)
            continue
        assert time.monotonic() < end, f"{dev} in {ns} never came up: {out}"
        time.sleep(0.01)


@pytest.fixture
def netpair(kernel) -> Iterator[NetPair]:
    need_tool("ip")
    need_tool("tc")
    # Namespace names are host-wide: unique per test and per run.
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:10]}"
    a, b = f"bpfring-a{tag}", f"bpfring-b{tag}"
    made: list[str] = []
    try:
        for ns in (a, b):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", "name", "va", "netns", a, "address", "02:00:00:00:00:0a", "type",
            "veth", "peer", "name", "vb", "netns", b, "address", "02:00:00:00:00:0b")
        for ns, dev, mine, peer, peer_mac in ((a, "va", "10.199.0.1", "10.199.0.2", "0b"),
                                               (b, "vb", "10.199.0.2", "10.199.0.1", "0a")):
            _ip_in(ns, "addr", "add", f"{mine}/24", "dev", dev)
            _ip_in(ns, "link", "set", "lo", "up")
            _ip_in(ns, "link", "set", dev, "up")
            # static neighbours: no ARP traffic, every test packet goes out at once
            _ip_in(ns, "neigh", "add", peer, "lladdr", f"02:00:00:00:00:{peer_mac}", "dev",
                dev, "nud", "permanent")
        _until_carrier(((a, "va"), (b, "vb")))
        pair = NetPair(a, b, f"/run/netns/{a}", f"/run/netns/{b}")
        with in_netns(pair.ns_b):
            yield pair
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture(scope="module")
def net_path(kernel) -> Path:
    return bpfring.build(BPF_DIR / "attach_net.bpf.c")


@pytest.fixture
def net(net_path):
    with bpfring.load(net_path, globals={"port": PORT}) as obj:
        yield obj


def _count(obj, name: str, want: int) -> int:
    wait_for(lambda: getattr(obj.globals, name) >= want)
    time.sleep(0.02)  # and nothing more arrives
    return getattr(obj.globals, name)


def test_xdp_link(netpair, net):
    p = progs(net)["count_xdp"]
    link = p.attach_xdp("vb")
    assert link.fd >= 0
    q = _netattach.xdp_query(socket.if_nametoindex("vb"))
    assert q["prog_id"] == prog_id(p.fd) and q["mode"] == "drv"  # veth has native XDP
    netpair.a_to_b(20)
    assert _count(net, "xdp_hits", 20) == 20
    netpair.b_to_a(5)  # egress is not XDP's business
    time.sleep(0.05)
    assert net.globals.xdp_hits == 20
    link.close()
    assert _netattach.xdp_query(socket.if_nametoindex("vb"))["prog_id"] == 0
    netpair.a_to_b(3)
    time.sleep(0.05)
    assert net.globals.xdp_hits == 20


def test_xdp_skb_mode_detaches_on_close_from_any_namespace(netpair, net):
    p = progs(net)["count_xdp"]
    ifindex = socket.if_nametoindex("vb")
    link = p.attach_xdp(ifindex, mode="skb")
    q = _netattach.xdp_query(ifindex)
    assert q["skb_prog_id"] == prog_id(p.fd) and q["mode"] == "skb"
    with pytest.raises(BPFError):
        link.fd  # noqa: B018 -- a netlink attachment has no link fd
    netpair.a_to_b(12)
    assert _count(net, "xdp_hits", 12) == 12
    # a second program in the same mode is refused, with who is there in the hint
    with pytest.raises(AttachError) as e:
        p.attach_xdp("vb", mode="skb")
    assert e.value.errno in (errno.EBUSY, errno.EEXIST) and "already has" in e.value.hint
    with pytest.raises(AttachError) as e:  # and so is a link while it is there
        p.attach_xdp("vb")
    assert e.value.errno in (errno.EBUSY, errno.EEXIST)
    # closing from another network namespace still detaches in vb's
    with in_netns(netpair.ns_a):
        link.close()
    assert link.closed
    assert _netattach.xdp_query(ifindex)["skb_prog_id"] == 0
    link.close()  # idempotent
    netpair.a_to_b(4)
    time.sleep(0.05)
    assert net.globals.xdp_hits == 12


def test_xdp_skb_mode_leaves_a_program_that_replaced_ours(netpair, net, all_path, caplog):
    ifindex = socket.if_nametoindex("vb")
    link = A(net.programs["count_xdp"]).attach_xdp("vb", mode="skb")
    with bpfring.load(all_path) as other:
        theirs = other.programs["needs_ifc"].fd
        # another tool replaces our program (plain netlink attach, no "only if none")
        assert _netattach._lib().bpf_xdp_attach(ifindex, theirs, _netattach.XDP_MODES["skb"],
                                                None) == 0
        link.close()  # must not remove theirs
        assert "replaced ours" in caplog.text
        assert _netattach.xdp_query(ifindex)["skb_prog_id"] == prog_id(theirs)
        assert _netattach._lib().bpf_xdp_detach(ifindex, _netattach.XDP_MODES["skb"],
                                                None) == 0


def test_xdp_errors(netpair, net):
    p = progs(net)
    with pytest.raises(AttachError) as e:
        p["count_xdp"].attach_xdp("nosuch0")
    assert e.value.errno == errno.ENODEV and "vb" in e.value.hint
    assert "'count_xdp'" in str(e.value)
    with pytest.raises(AttachError) as e:
        p["count_xdp"].attach_xdp("vb", mode="hw")  # veth has no offload
    assert "hw mode" in str(e.value)
    with pytest.raises(ValueError):
        p["count_xdp"].attach_xdp("vb", mode="turbo")
    with pytest.raises(AttachError):
        p["count_tc"].attach_xdp("vb")
    assert net.links == []


def _qdiscs(pair: NetPair) -> str:
    return pair.tc("qdisc", "show", "dev", "vb")


def test_tc_ingress_and_egress(netpair, net):
    p = progs(net)
    assert "clsact" not in _qdiscs(netpair)
    ing = p["count_tc"].attach_tc("vb", direction="ingress")
    eg = p["count_tc2"].attach_tc(socket.if_nametoindex("vb"), direction="egress")
    assert "clsact" in _qdiscs(netpair)
    assert ing.priority and ing.handle and eg.priority and eg.handle  # the kernel chose
    assert "count_tc" in netpair.tc("filter", "show", "dev", "vb", "ingress")
    netpair.a_to_b(9)
    netpair.b_to_a(4)
    assert _count(net, "tc_hits", 9) == 9
    assert _count(net, "tc2_hits", 4) == 4
    ing.close()
    assert "clsact" in _qdiscs(netpair)  # the egress filter still uses it
    netpair.a_to_b(3)
    time.sleep(0.05)
    assert net.globals.tc_hits == 9
    eg.close()
    eg.close()
    # we made the qdisc and nothing else is on it: it goes
    assert "clsact" not in _qdiscs(netpair)


def test_tc_keeps_a_clsact_qdisc_it_did_not_make(netpair, net):
    netpair.tc("qdisc", "add", "dev", "vb", "clsact")
    link = A(net.programs["count_tc"]).attach_tc("vb")
    netpair.a_to_b(2)
    assert _count(net, "tc_hits", 2) == 2
    link.close()
    assert "clsact" in _qdiscs(netpair)
    assert netpair.tc("filter", "show", "dev", "vb", "ingress").strip() == ""


def test_tc_close_after_the_filter_or_qdisc_went_away(netpair, net, caplog):
    p = progs(net)
    link = p["count_tc"].attach_tc("vb")
    netpair.tc("filter", "del", "dev", "vb", "ingress")  # someone removed our filter
    link.close()
    link = p["count_tc"].attach_tc("vb", direction="egress")
    netpair.tc("qdisc", "del", "dev", "vb", "clsact")  # and the qdisc, with it
    link.close()
    assert "failed" not in caplog.text  # already gone is not an error
    assert "clsact" not in _qdiscs(netpair)


def test_tc_keeps_the_qdisc_while_others_use_it(netpair, net):
    p = progs(net)
    link = p["count_tc"].attach_tc("vb", direction="egress")
    # someone else (libbpf directly, not through bpfring) adds a filter too
    other = _netattach.libbpf_opts(_netattach._TcOpts, prog_fd=p["count_tc2"].fd, priority=7,
                             handle=7)
    hook = _netattach.libbpf_opts(_netattach._TcHook, ifindex=socket.if_nametoindex("vb"),
                            attach_point=_netattach.TC_INGRESS)
    assert _netattach._lib().bpf_tc_attach(ctypes.byref(hook), ctypes.byref(other)) == 0
    assert _netattach.tc_filter_count(socket.if_nametoindex("vb")) >= 2
    link.close()
    assert "clsact" in _qdiscs(netpair)
    netpair.a_to_b(5)
    assert _count(net, "tc2_hits", 5) == 5  # their filter still works


def test_tc_errors(netpair, net):
    p = progs(net)
    first = p["count_tc"].attach_tc("vb", priority=5, handle=1)
    assert (first.priority, first.handle) == (5, 1)
    with pytest.raises(AttachError) as e:
        p["count_tc2"].attach_tc("vb", priority=5, handle=1)
    assert e.value.errno == errno.EEXIST and "priority 5" in e.value.hint
    first.close()
    assert "clsact" not in _qdiscs(netpair)  # the failed attach did not keep it alive
    for bad in (dict(direction="sideways"), dict(priority=70000), dict(handle=-1)):
        with pytest.raises(ValueError):
            p["count_tc"].attach_tc("vb", **bad)
    with pytest.raises(AttachError) as e:
        p["count_tc"].attach_tc("nosuch0")
    assert e.value.errno == errno.ENODEV
    assert [link.closed for link in net.links] == [True]


def test_tc_detaches_when_the_object_closes(netpair, net_path):
    obj = bpfring.load(net_path, globals={"port": PORT})
    p = progs(obj)
    p["count_tc"].attach_tc("vb")
    p["count_xdp"].attach_xdp("vb", mode="skb")
    assert len(obj.links) == 2
    obj.close()
    assert "clsact" not in _qdiscs(netpair)
    assert _netattach.xdp_query(socket.if_nametoindex("vb"))["skb_prog_id"] == 0


_EXIT_CHILD = """
import os, signal, sys
import bpfring
from bpfring._attach import AttachMethods

class Prog(AttachMethods):  # the mixin's default _adopt_link: the object does not own it
    def __init__(self, p):
        self._ptr, self.fd, self.name, self.section, self.type = (
            p._ptr, p.fd, p.name, p.section, p.type)

obj = bpfring.load(sys.argv[1], globals={"port": 1})
progs = obj.programs
Prog(progs["count_xdp"]).attach_xdp("vb", mode="skb")
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
Prog(progs["count_tc"]).attach_tc("vb", direction="egress")
print("attached", flush=True)
"""


def test_netlink_attachments_are_undone_at_exit(netpair, net_path):
    ifindex = socket.if_nametoindex("vb")
    out = subprocess.run([sys.executable, "-c", _EXIT_CHILD, str(net_path), "exit"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "attached\n"
    assert _netattach.xdp_query(ifindex)["skb_prog_id"] == 0
    assert "clsact" not in _qdiscs(netpair)
    # A killed process cannot detach: the kernel keeps netlink attachments
    # (as after "ip link set dev vb xdp obj ..."); XDP links would go.
    proc = subprocess.run([sys.executable, "-c", _EXIT_CHILD, str(net_path), "kill"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == -9
    assert _netattach.xdp_query(ifindex)["skb_prog_id"] != 0


def test_tcx_ingress_and_egress(netpair, net):
    p = progs(net)
    ing = p["count_tc"].attach_tcx("vb", "ingress")
    eg = p["count_tc2"].attach_tcx("vb", direction="egress")
    assert os.fstat(ing.fd) and ing.fd != eg.fd
    assert "clsact" not in _qdiscs(netpair)  # tcx needs no qdisc
    netpair.a_to_b(8)
    netpair.b_to_a(6)
    assert _count(net, "tc_hits", 8) == 8
    assert _count(net, "tc2_hits", 6) == 6
    ing.close()
    eg.close()
    assert ing.closed and eg.closed
    with pytest.raises(ValueError):
        ing.fd  # noqa: B018
    netpair.a_to_b(3)
    netpair.b_to_a(3)
    time.sleep(0.05)
    assert (net.globals.tc_hits, net.globals.tc2_hits) == (8, 6)
    with pytest.raises(ValueError):
        p["count_tc"].attach_tcx("vb", "sideways")
    with pytest.raises(AttachError):
        p["count_xdp"].attach_tcx("vb")


# ---------------------------------------------------------------------------------
# cgroups
# ---------------------------------------------------------------------------------


def _cgroup2_root() -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == "cgroup2":
                return parts[1]
    return None


@pytest.fixture
def cgroup(kernel) -> Iterator[Path]:
    root = _cgroup2_root()
    if root is None:
        if REQUIRE_KERNEL:
            pytest.fail("no cgroup2 mount")
        pytest.skip("no cgroup2 mount")
    path = Path(root) / f"bpfring-test-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    path.mkdir()
    try:
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        wait_for(lambda: not (path / "cgroup.procs").read_text().strip())
        path.rmdir()


_CHILD = """
import ctypes, os, socket, sys
sockets, packets, netns = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if netns:
    fd = os.open(netns, os.O_RDONLY)
    assert ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) == 0
for _ in range(sockets):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
if packets:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(packets):
            s.sendto(b"x", ("10.199.0.2", int(sys.argv[4])))
"""


def run_in_cgroup(cg: Path, sockets: int = 0, packets: int = 0, netns: str = "") -> None:
    def join() -> None:
        (cg / "cgroup.procs").write_text("0")

    subprocess.run([sys.executable, "-I", "-S", "-c", _CHILD, str(sockets), str(packets),
                    netns, str(PORT)], preexec_fn=join, check=True, timeout=60)


def test_cgroup_sock_create(net, cgroup):
    p = A(net.programs["count_sock_create"])
    with p.attach_cgroup(cgroup):
        run_in_cgroup(cgroup, sockets=5)
        subprocess.run([sys.executable, "-I", "-S", "-c", _CHILD, "3", "0", "", "0"],
                       check=True)  # not in the cgroup: not counted
    assert net.globals.sock_creates == 5
    run_in_cgroup(cgroup, sockets=2)
    assert net.globals.sock_creates == 5


def test_cgroup_skb_egress_by_section_and_by_explicit_type(net, cgroup, netpair):
    p = progs(net)
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        link = p["count_cg_egress"].attach_cgroup(fd)  # by fd; the SEC gives the type
    finally:
        os.close(fd)
    run_in_cgroup(cgroup, packets=7, netns=netpair.ns_a)
    assert net.globals.cg_hits == 7
    link.close()
    # SEC("cgroup/skb") names no direction: attach it at egress explicitly
    link = p["count_cg_any"].attach_cgroup(str(cgroup), attach_type="cgroup_inet_egress")
    assert isinstance(link, _netattach.FDLink) and link.fd >= 0
    run_in_cgroup(cgroup, packets=4, netns=netpair.ns_a)
    assert net.globals.cg_hits == 11
    link.close()
    run_in_cgroup(cgroup, packets=2, netns=netpair.ns_a)
    assert net.globals.cg_hits == 11


def test_cgroup_errors(net, cgroup, tmp_path):
    p = progs(net)
    with pytest.raises(AttachError) as e:
        p["count_cg_egress"].attach_cgroup(tmp_path)
    assert "not a cgroup v2 directory" in str(e.value) and "'count_cg_egress'" in str(e.value)
    with pytest.raises(AttachError) as e:
        p["count_cg_egress"].attach_cgroup(cgroup / "nosuch")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(ValueError) as v:
        p["count_cg_any"].attach_cgroup(cgroup, attach_type="inet_egres")
    assert "cgroup_inet_egress" in str(v.value)
    with pytest.raises(AttachError):
        p["count_xdp"].attach_cgroup(cgroup)
    assert net.links == []
