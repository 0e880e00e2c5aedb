// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Programs whose runs differ from one repetition to the next (a counter in
 * .bss, in an array map, in the ctx), for prog.run(repeat=N) on both
 * interpreters (tests/test_userspace_repeat.py): the n-th run loops longer,
 * reads further, takes a lock or leaks a ring record, so a budget, a bounds
 * check or the end-of-run check fails in the middle of a repeat. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 runs;
__u64 sum;

struct locked {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct locked);
} guarded SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} ring SEC(".maps");

/* Run n loops 16 * n times (no helper call: the C loop repeats alone). */
SEC("syscall")
int grow(void *ctx)
{
	__u64 n = ++runs, s = 0;

	for (__u64 i = 0; i < n * 16 && i < 4096; i++)
		s += i ^ n;
	sum += s;
	return (int)n;
}

/* Run n reads the ctx byte at 8 * n: out of bounds once past its end. */
SEC("syscall")
int reach(void *ctx)
{
	__u64 n = ++runs;

	return *(volatile __u8 *)((__u8 *)ctx + 8 * n) + (int)n;
}

/* The ctx's first u64 counts the runs (the ctx persists between them). */
SEC("syscall")
int bump_ctx(__u64 *ctx)
{
	ctx[0] += 1;
	return (int)ctx[0];
}

/* A helper every run; the third run leaves the spin lock held. */
SEC("syscall")
int lock_third(void *ctx)
{
	__u32 key = 0;
	struct locked *l = bpf_map_lookup_elem(&guarded, &key);

	if (!l)
		return -1;
	bpf_spin_lock(&l->lock);
	l->n += 1;
	if (l->n != 3)
		bpf_spin_unlock(&l->lock);
	return (int)l->n;
}

/* A ring record every run; the second run reserves one and leaks it. */
SEC("syscall")
int leak_second(void *ctx)
{
	__u64 n = ++runs;
	__u64 *e = bpf_ringbuf_reserve(&ring, 8, 0);

	if (!e)
		return 0;
	*e = n;
	if (n != 2)
		bpf_ringbuf_submit(e, 0);
	return (int)n;
}

struct loop_args {
	__u64 bad_at;  /* the iteration that reads out of bounds (or never) */
	__u64 stop_at; /* the iteration that returns 1 */
	__u64 seen;
};

static long step(__u32 i, void *c)
{
	struct loop_args *a = c;

	a->seen += i + 1;
	if (i == a->bad_at)
		return *(volatile __u8 *)((__u8 *)c + 4096);
	return i == a->stop_at;
}

/* bpf_loop with the ctx's count and flags: the callback stops, faults or
 * runs the budget out at the iteration the ctx says. */
SEC("syscall")
int looped(__u64 *ctx)
{
	struct loop_args a = {ctx[2], ctx[3], 0};
	long n = bpf_loop(ctx[0], step, &a, ctx[1]);

	ctx[4] = a.seen;
	return (int)n;
}

/* bpf_loop with a callback address that is not a function of the program. */
SEC("syscall")
int looped_bad_cb(__u64 *ctx)
{
	long (*cb)(__u32, void *) = step;

	asm volatile("%0 += 8" : "+r"(cb));
	return (int)bpf_loop(4, cb, 0, 0);
}
