// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Maps shared between processes running the same object in user space
 * (load(..., pinned_maps=DIR)), for tests/test_userspace_share.py. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096 * 4);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16);
	__type(value, __u32);
} jobs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096 * 4);
} requests SEC(".maps");

struct args {
	__u32 key;
	__u32 add;
};

struct event {
	__u32 key;
	__u32 pid;
	__u64 value;
};

SEC("syscall")
int count(struct args *a)
{
	__u32 key = a->key, zero = 0;
	__u64 add = a->add, *v, *t;
	struct event *e;

	v = bpf_map_lookup_elem(&counts, &key);
	if (v) {
		__sync_fetch_and_add(v, add);
	} else if (bpf_map_update_elem(&counts, &key, &add, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(&counts, &key);   /* another process was first */
		if (!v)
			return -1;
		__sync_fetch_and_add(v, add);
	}
	t = bpf_map_lookup_elem(&totals, &zero);
	if (t)
		__sync_fetch_and_add(t, add);
	bpf_map_push_elem(&jobs, &key, BPF_EXIST);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return -2;
	e->key = key;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	v = bpf_map_lookup_elem(&counts, &key);
	e->value = v ? *v : 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static long add_request(struct bpf_dynptr *dynptr, void *ctx)
{
	struct args a;
	__u64 *t;
	__u32 one = 1;

	if (bpf_dynptr_read(&a, sizeof(a), dynptr, 0, 0))
		return 1;
	t = bpf_map_lookup_elem(&totals, &one);
	if (t)
		*t += a.add;
	return 0;
}

/* Samples written into the pinned user ring by another process. */
SEC("syscall")
int drain(void *ctx)
{
	return bpf_user_ringbuf_drain(&requests, add_request, NULL, 0);
}
