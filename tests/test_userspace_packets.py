"""XDP and TC programs on packets, with a tail call through a prog array: the
kernel (BPF_PROG_TEST_RUN with packet data) and user space agree on return
codes and maps for hypothesis-built packets."""

from __future__ import annotations

import struct

import pytest
from conftest import BPF_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfring.errors import BPFError
from bpfring.userspace import load


@pytest.fixture(scope="module")
def xdp_path():
    import bpfring

    return bpfring.build(BPF_DIR / "userspace_xdp.bpf.c")


def eth(proto: int, payload: bytes, dst: bytes = b"\x02" * 6) -> bytes:
    return dst + b"\x04" * 6 + struct.pack(">H", proto) + payload


def ipv4(proto: int, payload: bytes, ihl: int = 5) -> bytes:
    hdr = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                      b"\x0a\0\0\1", b"\x0a\0\0\2")
    return hdr + b"\0" * (4 * ihl - 20) + payload


def udp(dport: int) -> bytes:
    return struct.pack(">HHHH", 1234, dport, 8, 0) + b"x" * 4


def tcp(flags: int) -> bytes:
    return struct.pack(">HHIIBBHHH", 1234, 80, 1, 0, 0x50, flags, 100, 0, 0)


_packets = st.one_of(
    st.builds(lambda d: eth(0x0800, ipv4(17, udp(d))), st.sampled_from([9, 53, 9999])),
    st.builds(lambda f: eth(0x0800, ipv4(6, tcp(f))), st.integers(0, 63)),
    st.builds(lambda p, n: eth(0x0800, ipv4(p, b"\0" * n)), st.integers(0, 255),
              st.integers(0, 40)),
    st.builds(lambda n: eth(0x0800, ipv4(6, tcp(2))[:n]), st.integers(0, 40)),
    st.builds(lambda ihl: eth(0x0800, ipv4(17, udp(9), ihl)), st.integers(5, 15)),
    st.builds(lambda p, b: eth(p, b), st.integers(0, 0xFFFF), st.binary(min_size=0,
                                                                        max_size=60)),
)


def _state(obj):
    return (sorted(obj.maps["protos"].items()), sorted(obj.maps["stats"].items()),
            obj.globals.last_len)


@settings(max_examples=120, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(packets=st.lists(_packets, min_size=1, max_size=6), index=st.sampled_from([1, 1, 0, 7]))
def test_xdp_matches_kernel(xdp_path, kernel, packets, index):
    import bpfring

    with bpfring.load(xdp_path) as k, load(xdp_path) as u:
        k.globals.tail_index = index
        u.globals.tail_index = index
        for pkt in packets:
            assert u.programs["parse"].run(data=pkt) == k.programs["parse"].run(data=pkt)
        assert _state(u) == _state(k)


def test_tail_call_runs_the_slot_program(xdp_path):
    with load(xdp_path) as u:
        syn = eth(0x0800, ipv4(6, tcp(0x02)))
        assert u.programs["parse"].run(data=syn) == 3  # XDP_TX from 'tcp'
        assert u.maps["stats"][2] == 1 and u.maps["stats"][3] == 0
        u.maps["jump"].delete(1)
        assert u.programs["parse"].run(data=syn) == 2  # tail call failed: XDP_PASS
        assert u.maps["stats"][3] == 1
        u.maps["jump"][1] = u.programs["tcp"]
        assert u.programs["parse"].run(data=syn) == 3
        assert u.maps["jump"][1] is u.programs["tcp"]


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pkt=_packets, dst=st.sampled_from([b"\x00" * 6, b"\xff" * 6, b"\x01\0\x5e\0\0\1",
                                          b"\x02" * 6]), mark=st.integers(0, 2**32 - 1))
def test_tc_matches_kernel(xdp_path, kernel, pkt, dst, mark):
    import bpfring

    pkt = dst + pkt[6:]
    ctx = struct.pack("<III", 0, 0, mark)
    with bpfring.load(xdp_path) as k, load(xdp_path) as u:
        try:
            want = k.programs["classify"].run(data=pkt, ctx=ctx)
        except BPFError as e:  # too short for its IP header: both refuse
            with pytest.raises(BPFError) as ei:
                u.programs["classify"].run(data=pkt, ctx=ctx)
            assert ei.value.errno == e.errno
            return
        assert u.programs["classify"].run(data=pkt, ctx=ctx) == want
        assert u.globals.last_len == k.globals.last_len == len(pkt)
    out = u.programs["classify"].last_run
    assert out is not None and len(out.ctx) == 192


def test_packet_reads_are_bounded_by_the_packet(xdp_path):
    with load(xdp_path) as u:
        with pytest.raises(BPFError, match="shorter than an Ethernet header"):
            u.programs["parse"].run(data=b"\0" * 13)
        # the packet region is exactly the packet: nothing past data_end is readable
        assert u.programs["parse"].run(data=eth(0x0800, b"")) == 1  # XDP_DROP
        before = len(u.memory.regions)
        with pytest.raises(BPFError, match="more than struct xdp_md") as ei:
            u.programs["parse"].run(ctx=b"\0" * 30, data=eth(0x0800, b""))
        assert ei.value.errno == 22 and len(u.memory.regions) == before


def test_tail_call_from_a_subprogram_returns_to_its_caller(xdp_path, kernel):
    import bpfring

    syn = eth(0x0800, ipv4(6, tcp(0x02)))
    with bpfring.load(xdp_path) as k, load(xdp_path) as u:
        assert u.programs["via_sub"].run(data=syn) == k.programs["via_sub"].run(data=syn) == 0
        k.maps["jump"][2] = k.programs["tcp"].fd
        u.maps["jump"][2] = u.programs["tcp"]
        assert u.programs["via_sub"].run(data=syn) == k.programs["via_sub"].run(data=syn) == 13
