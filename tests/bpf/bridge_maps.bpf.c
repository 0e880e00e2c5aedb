// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Test program: one bridge per supported map type, a bridge with a results
 * ring, a bridge with a small ring (ring-full tests), and a tracepoint that
 * piggybacks drains on getpgid() calls of one process. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/bridge.bpf.h>

struct val16 {
	__u64 a;
	__u64 b;
};

struct rec12 {
	__u32 x;
	char name[8];
};

struct key3 {
	__u8 b[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, struct val16);
} hmap SEC(".maps");
BPFRING_BRIDGE_RESULTS(hmap, 256 * 1024, 64 * 1024);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096); /* far above the keys used: no eviction */
	__type(key, struct key3);
	__type(value, __u64);
} lru SEC(".maps");
BPFRING_BRIDGE(lru, 64 * 1024);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct rec12);
} arr SEC(".maps");
BPFRING_BRIDGE(arr, 64 * 1024);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} pch SEC(".maps");
BPFRING_BRIDGE(pch, 64 * 1024);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct val16);
} pca SEC(".maps");
BPFRING_BRIDGE(pca, 64 * 1024);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} lpch SEC(".maps");
BPFRING_BRIDGE(lpch, 64 * 1024);

/* A 4 KiB ring holds 128 operations of 32 bytes (u32 key and value). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} small SEC(".maps");
BPFRING_BRIDGE(small, 4096);

/* Piggyback: getpgid() calls of process piggy_tgid drain hmap and small. */
__u32 piggy_tgid = 0;
__u64 piggy_runs = 0;

SEC("tp/syscalls/sys_enter_getpgid")
int piggyback(void *ctx)
{
	if (!piggy_tgid || piggy_tgid != (bpf_get_current_pid_tgid() >> 32))
		return 0;
	bpfring_bridge_drain(hmap);
	bpfring_bridge_drain(small);
	__sync_fetch_and_add(&piggy_runs, 1);
	return 0;
}

/* System calls made by thread count_tid (to show that queueing makes none). */
__u32 count_tid = 0;
__u64 syscalls = 0;

SEC("tp/raw_syscalls/sys_enter")
int count_syscalls(void *ctx)
{
	if (count_tid && count_tid == (__u32)bpf_get_current_pid_tgid())
		__sync_fetch_and_add(&syscalls, 1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
