// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* The map-update case of `bpfring bench userspace`: one run writes `n`
 * entries of a hash map, keys base..base+n-1, value = key * 3.  Loaded in the
 * kernel it makes the map (and is the kernel's own figure, through a test
 * run); run in user space with the map bound to that kernel map, each update
 * goes through the map bridge's user ring instead of a bpf() call. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u64);
} table SEC(".maps");

struct args {
	__u32 base;
	__u32 n;
};

static long one(__u32 i, void *c)
{
	struct args *a = c;
	__u32 key = a->base + i;
	__u64 val = (__u64)key * 3;

	bpf_map_update_elem(&table, &key, &val, BPF_ANY);
	return 0;
}

SEC("syscall")
int fill(struct args *ctx)
{
	struct args a = *ctx;

	bpf_loop(a.n, one, &a, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
