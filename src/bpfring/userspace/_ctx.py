"""The context (r1) a program gets in user space, per program type, modelled on
what BPF_PROG_TEST_RUN gives it in the kernel.

* ``syscall``: ``ctx`` bytes, readable and writable (copied back out);
* ``xdp``: packet ``data`` and a ``struct xdp_md`` whose ``data``,
  ``data_end`` and ``data_meta`` loads yield pointers into the packet (the
  kernel's verifier rewrites those 32-bit loads into 64-bit pointer loads;
  here the ctx region computes them);
* ``sched_cls``/``sched_act`` (TC): packet ``data`` starting at the Ethernet
  header and a ``struct __sk_buff`` with ``len``, ``protocol`` and
  ``pkt_type`` set as ``eth_type_trans`` on the loopback device would
  (an IPv4/IPv6 packet must hold its IP header, as the kernel requires),
  ``ifindex`` 1, ``data``/``data_end``/``data_meta`` pointers, and the fields
  test runs accept from ``ctx`` (mark, priority, cb, ...);
* anything else (raw_tp, tracepoint, kprobe, ...): ``ctx`` bytes, read-only.

Packet data is one region of exactly the packet's bytes, so a program can
never read past ``data_end`` even if it skips the bounds check the verifier
would demand.
"""

from __future__ import annotations

import errno as _errno
import struct
from dataclasses import dataclass, field

from ..errors import BPFError
from ._memory import Memory

__all__ = ["RunFrame", "make_ctx"]

ETH_HLEN = 14
XDP_MD_SIZE = 24
SKB_SIZE = 192
PACKET_TYPES = ("xdp", "sched_cls", "sched_act", "socket_filter", "cgroup_skb",
                "flow_dissector", "sk_skb")
_SKB_CTX_IN = (8, 12, 32, 36, 40, 44, 48, 52, 56, 60, 64, 152, 160, 164, 176, 184)


@dataclass
class RunFrame:
    """r1 for a run, the regions made for it, and the buffers to read back."""

    r1: int = 0
    regions: list[int] = field(default_factory=list)
    ctx: bytearray | None = None
    data: bytearray | None = None


def make_ctx(prog_type: str, mem: Memory, data: bytes, ctx: bytes | None) -> RunFrame:
    """The regions and r1 of one run; on bad input nothing stays registered."""
    fr = RunFrame()
    try:
        return _make(fr, prog_type, mem, data, ctx)
    except BaseException:
        for addr in fr.regions:
            mem.remove(addr)
        raise


def _make(fr: RunFrame, prog_type: str, mem: Memory, data: bytes, ctx: bytes | None
          ) -> RunFrame:
    if prog_type == "xdp":
        return _xdp(fr, mem, data, ctx)
    if prog_type in ("sched_cls", "sched_act"):
        return _skb(fr, mem, data, ctx)
    if data:
        raise BPFError(f"{prog_type} programs take no packet data; pass ctx=...",
                       errno=_errno.EINVAL)
    if ctx:
        fr.ctx = bytearray(ctx)
        writable = prog_type == "syscall"
        buf = fr.ctx if writable else memoryview(fr.ctx).toreadonly()
        fr.r1 = mem.add(buf, "ctx", writable=writable, kind="ctx")
        fr.regions.append(fr.r1)
    return fr


def _packet(fr: RunFrame, mem: Memory, data: bytes) -> int:
    if len(data) < ETH_HLEN:
        raise BPFError(f"packet data of {len(data)} bytes is shorter than an Ethernet "
                       f"header ({ETH_HLEN})", errno=_errno.EINVAL,
                       hint="BPF_PROG_TEST_RUN refuses it too")
    fr.data = bytearray(data)
    base = mem.add(fr.data, "packet", kind="packet")
    fr.regions.append(base)
    return base


def _xdp(fr: RunFrame, mem: Memory, data: bytes, ctx: bytes | None) -> RunFrame:
    base = _packet(fr, mem, data)
    md = bytearray(XDP_MD_SIZE)
    if ctx:
        if len(ctx) > XDP_MD_SIZE:
            raise BPFError(f"xdp ctx is {len(ctx)} bytes, more than struct xdp_md",
                           errno=_errno.EINVAL)
        md[:len(ctx)] = ctx
        md[0:12] = bytes(12)  # pointers are computed, not taken from the caller
    end = base + len(fr.data or b"")

    def load(off: int, size: int) -> int | None:
        if size == 4 and off in (0, 8):
            return base
        if size == 4 and off == 4:
            return end
        return None

    fr.ctx = md
    fr.r1 = mem.add(memoryview(md).toreadonly(), "xdp_md", writable=False, kind="ctx",
                    load=load)
    fr.regions.append(fr.r1)
    return fr


def _skb(fr: RunFrame, mem: Memory, data: bytes, ctx: bytes | None) -> RunFrame:
    base = _packet(fr, mem, data)
    skb = bytearray(SKB_SIZE)
    if ctx:
        if len(ctx) > SKB_SIZE:
            raise BPFError(f"skb ctx is {len(ctx)} bytes, more than struct __sk_buff",
                           errno=_errno.EINVAL)
        given = bytearray(ctx).ljust(SKB_SIZE, b"\0")
        for off in _SKB_CTX_IN:
            size = 8 if off in (152, 184) else 4
            skb[off:off + size] = given[off:off + size]
    pkt = fr.data or b""
    dst = bytes(pkt[0:6])
    if dst == b"\xff" * 6:
        pkt_type = 1  # PACKET_BROADCAST
    elif dst[0] & 1:
        pkt_type = 2  # PACKET_MULTICAST
    elif dst != bytes(6):
        pkt_type = 3  # PACKET_OTHERHOST: not the loopback device's all-zero address
    else:
        pkt_type = 0
    proto = struct.unpack_from(">H", pkt, 12)[0]
    need = {0x0800: 20, 0x86DD: 40}.get(proto, 0)  # the test run pulls the IP header
    if len(pkt) < ETH_HLEN + need:
        raise BPFError(f"{'IPv4' if proto == 0x0800 else 'IPv6'} packet of {len(pkt)} bytes has "
                       f"no room for its IP header", errno=_errno.EINVAL,
                       hint="BPF_PROG_TEST_RUN refuses it too")
    if proto < 0x600:  # 802.3 length field: eth_type_trans's ETH_P_802_3 / 802_2
        proto = 0x0001 if pkt[14:16] == b"\xff\xff" else 0x0004
    struct.pack_into("<I", skb, 0, len(pkt))
    struct.pack_into("<I", skb, 4, pkt_type)
    struct.pack_into("<I", skb, 16, int.from_bytes(proto.to_bytes(2, "big"), "little"))
    if not struct.unpack_from("<I", skb, 40)[0]:
        struct.pack_into("<I", skb, 40, 1)  # the loopback device
    end = base + len(pkt)

    def load(off: int, size: int) -> int | None:
        if size == 4 and off in (76, 140):
            return base
        if size == 4 and off == 80:
            return end
        return None

    fr.ctx = skb
    fr.r1 = mem.add(skb, "__sk_buff", writable=True, kind="ctx", load=load)
    fr.regions.append(fr.r1)
    return fr
