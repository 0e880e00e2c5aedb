// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Typed map access: the kernel reads what Python wrote and writes back. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

enum color { RED = 1, GREEN = 2, BLUE = 40 };

struct mkey {
	__u32 ip;
	__u16 port;
	__u8 proto;
	__u8 flags;
};

struct mval {
	__u64 count;
	char name[8];
	enum color color;
	__s16 delta;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct mkey);
	__type(value, struct mval);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct mval);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__type(key, __u64);
	__type(value, __u64);
} lru SEC(".maps");

/* Copy flows[{10.0.0.1:80/6}] into slots[1], bumping count and delta. */
SEC("syscall")
int copy_flow(void *ctx)
{
	struct mkey k = { .ip = 0x0100000a, .port = 80, .proto = 6 };
	struct mval *v = bpf_map_lookup_elem(&flows, &k), out;
	__u32 one = 1;

	if (!v)
		return -1;
	out = *v;
	out.count += 1;
	out.delta -= 1;
	bpf_map_update_elem(&slots, &one, &out, BPF_ANY);
	return (int)v->count;
}

char LICENSE[] SEC("license") = "GPL";
