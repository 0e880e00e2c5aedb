// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* User-space and kernel eBPF together (tests/test_userspace_kernel.py): the
 * same object is loaded into the kernel and run in user space with its maps
 * bound to the kernel object's maps. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} limits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY); /* not mmapable: lookups are copies */
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32); /* 4-byte values: the kernel's stride is 8 */
} knobs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} small SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf SEC(".maps");

struct rec {
	__u32 src;
	__u32 seq;
	__u8 pad[56];
};

struct upd_args {
	__u32 op;
	__u32 key;
	__u64 val;
};

long last_rc;
__u64 seen;
__u32 next_seq;
__u32 fails;

SEC("syscall")
int upd(struct upd_args *a)
{
	__u32 key = a->key;
	__u64 val = a->val, *p;
	__u32 *q;

	last_rc = 0;
	seen = 0;
	switch (a->op) {
	case 0:
		last_rc = bpf_map_update_elem(&limits, &key, &val, BPF_ANY);
		break;
	case 1:
		last_rc = bpf_map_delete_elem(&limits, &key);
		break;
	case 2:
		p = bpf_map_lookup_elem(&counts, &key);
		if (!p)
			return 1;
		seen = *p;
		*p += val;
		break;
	case 3:
		q = bpf_map_lookup_elem(&knobs, &key);
		if (!q)
			return 1;
		seen = *q;
		*q += val;
		break;
	case 4:
		p = bpf_map_lookup_elem(&limits, &key);
		if (!p)
			return 1;
		seen = *p;
		*p += val;
		break;
	case 5:
		last_rc = bpf_map_update_elem(&knobs, &key, &val, BPF_NOEXIST);
		break;
	case 6:
		last_rc = bpf_map_update_elem(&counts, &key, &val, BPF_ANY);
		break;
	}
	return 0;
}

struct emit_args {
	__u32 ring; /* 0: events, 1: small */
	__u32 n;
	__u32 src;
	__u32 via; /* 0: output, 1: reserve + submit, 2: reserve, discard odd seq */
};

static long emit_one(__u32 i, void *ctx)
{
	struct emit_args *a = ctx;
	struct rec r = { .src = a->src, .seq = next_seq };
	void *ring = a->ring == 1 ? (void *)&small : (void *)&events;
	struct rec *rp;
	long rc;

	if (a->via == 0) {
		rc = bpf_ringbuf_output(ring, &r, sizeof(r), 0);
	} else {
		rp = bpf_ringbuf_reserve(ring, sizeof(r), 0);
		if (!rp) {
			rc = -1;
		} else {
			rp->src = a->src;
			rp->seq = next_seq;
			if (a->via == 2 && (next_seq & 1))
				bpf_ringbuf_discard(rp, 0);
			else
				bpf_ringbuf_submit(rp, 0);
			rc = 0;
		}
	}
	if (rc)
		fails++;
	next_seq++;
	return 0;
}

SEC("syscall")
int emit(struct emit_args *a)
{
	struct emit_args copy = *a;

	bpf_loop(copy.n, emit_one, &copy, 0);
	return 0;
}

/* Perf event arrays are not for sleepable (syscall) programs: a raw_tp one,
 * ctx u64 args[2] = { n, src }. */
SEC("raw_tp")
int pemit(__u64 *ctx)
{
	__u64 n = ctx[0], i;
	struct rec r = { .src = ctx[1] };

	for (i = 0; i < n && i < 64; i++) {
		r.seq = next_seq++;
		if (bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, &r, sizeof(r)))
			fails++;
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
