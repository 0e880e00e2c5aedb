// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Test programs for network hooks (tests/test_attach.py): count IPv4 UDP
 * packets to port `port` (set from Python before load) seen by XDP, by a TC
 * classifier (clsact or tcx) and by a cgroup_skb program.  Everything else
 * passes untouched. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define IPPROTO_UDP 17
#define TC_ACT_OK 0

const volatile __u16 port = 0;

__u64 xdp_hits = 0;
__u64 tc_hits = 0;
__u64 tc2_hits = 0;
__u64 cg_hits = 0;
__u64 sock_creates = 0;

/* 1 when [data, end) holds an Ethernet + IPv4 + UDP header to `port` */
static __always_inline int is_ours(void *data, void *end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	if (ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return 0;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return 0;
	return udp->dest == bpf_htons(port);
}

SEC("xdp")
int count_xdp(struct xdp_md *ctx)
{
	if (is_ours((void *)(long)ctx->data, (void *)(long)ctx->data_end))
		__sync_fetch_and_add(&xdp_hits, 1);
	return XDP_PASS;
}

SEC("tc")
int count_tc(struct __sk_buff *skb)
{
	if (is_ours((void *)(long)skb->data, (void *)(long)skb->data_end))
		__sync_fetch_and_add(&tc_hits, 1);
	return TC_ACT_OK;
}

SEC("tc")
int count_tc2(struct __sk_buff *skb)
{
	if (is_ours((void *)(long)skb->data, (void *)(long)skb->data_end))
		__sync_fetch_and_add(&tc2_hits, 1);
	return TC_ACT_OK;
}

/* cgroup_skb sees the packet from the IP header on */
static __always_inline int cg_ours(struct __sk_buff *skb)
{
	__u8 proto;
	__be16 dport;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (bpf_skb_load_bytes(skb, 9, &proto, 1) || proto != IPPROTO_UDP)
		return 0;
	if (bpf_skb_load_bytes(skb, 20 + 2, &dport, 2))
		return 0;
	return dport == bpf_htons(port);
}

SEC("cgroup_skb/egress")
int count_cg_egress(struct __sk_buff *skb)
{
	if (cg_ours(skb))
		__sync_fetch_and_add(&cg_hits, 1);
	return 1;
}

/* "cgroup/skb" has no direction: the tests attach it with an explicit type */
SEC("cgroup/skb")
int count_cg_any(struct __sk_buff *skb)
{
	if (cg_ours(skb))
		__sync_fetch_and_add(&cg_hits, 1);
	return 1;
}

SEC("cgroup/sock_create")
int count_sock_create(struct bpf_sock *sk)
{
	__sync_fetch_and_add(&sock_creates, 1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
