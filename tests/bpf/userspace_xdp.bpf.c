// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* A small packet parser with a tail call, for the XDP/TC differential test of
 * the user-space runtime (tests/test_userspace_packets.py).  Counts packets
 * per IP protocol, drops UDP to port 9, tail-calls into 'tcp' for TCP. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} protos SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

int tcp(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int(struct xdp_md *));
} jump SEC(".maps") = {
	.values = { [1] = (void *)&tcp },
};

__u64 last_len = 0;
__u32 tail_index = 1;

static void bump(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("xdp")
int tcp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct tcphdr *th;

	bump(2);
	if ((void *)(ip + 1) > end)
		return XDP_ABORTED;
	th = (void *)ip + ip->ihl * 4;
	if ((void *)(th + 1) > end)
		return XDP_ABORTED;
	if (th->syn && !th->ack)
		return XDP_TX;
	return XDP_PASS;
}

SEC("xdp")
int parse(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *uh;
	__u32 proto;
	__u64 one = 1, *cnt;

	last_len = end - data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP)) {
		bump(0);
		return XDP_PASS;
	}
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return XDP_DROP;
	proto = ip->protocol;
	cnt = bpf_map_lookup_elem(&protos, &proto);
	if (cnt)
		*cnt += 1;
	else
		bpf_map_update_elem(&protos, &proto, &one, BPF_NOEXIST);
	if (proto == IPPROTO_TCP) {
		bpf_tail_call(ctx, &jump, tail_index);
		bump(3); /* only when the tail call failed */
		return XDP_PASS;
	}
	if (proto != IPPROTO_UDP)
		return XDP_PASS;
	uh = (void *)ip + ip->ihl * 4;
	if ((void *)(uh + 1) > end)
		return XDP_DROP;
	bump(1);
	return uh->dest == bpf_htons(9) ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int classify(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	last_len = skb->len;
	if ((void *)(eth + 1) > end)
		return 2; /* TC_ACT_SHOT */
	skb->mark = skb->protocol ^ 0x55;
	if (skb->pkt_type == 3)
		return 1; /* otherhost: TC_ACT_RECLASSIFY? just a code */
	return skb->protocol == bpf_htons(ETH_P_IP) ? 0 : 2;
}

/* A tail call from a subprogram: the slot program replaces do_tail, and its
 * exit returns to via_sub (r + 10); a missing slot leaves do_tail's 7. */
volatile int fallback = 7; /* opaque: keeps clang from folding do_tail's result */

static __noinline int do_tail(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jump, 2);
	return fallback;
}

SEC("xdp")
int via_sub(struct xdp_md *ctx)
{
	int r = do_tail(ctx);

	return r == 7 ? XDP_ABORTED : r + 10;
}
