// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Test program for tests/test_differential.py: the same rings are driven by
 * bpfring and by libbpf's own ring_buffer / user_ring_buffer code.
 *
 * gen:   emits numbered records of mixed sizes (some discarded) into kring.
 *        Record seq s: h = s * 2654435761 (mod 2^32); payload length
 *        8 + (h >> 8) % 1017; discarded when (h & 0xff) < 40; payload =
 *        {u32 seq, u32 len} + pattern[s & 255 ...] (pattern filled from Python).
 *        Stops at the first failed reservation; returns how many it emitted.
 * drain: drains uring, copying every sample into echo_ring; returns the
 *        bpf_user_ringbuf_drain() result.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/ring.bpf.h>

#define MAX_SAMPLE 4096
#define PATTERN_SIZE 2048

extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;

BPFRING_RINGBUF(kring, 64 * 1024);
BPFRING_USER_RINGBUF(uring, 16 * 1024);
BPFRING_RINGBUF(echo_ring, 256 * 1024);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[PATTERN_SIZE]);
} pattern SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[2 * MAX_SAMPLE]);
} scratch SEC(".maps");

/* Results the test reads back through a plain array (index: see below). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

#define STAT_ECHOED 0
#define STAT_ECHO_FAILED 1
#define STAT_TOO_BIG 2

static __always_inline void stat_add(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

struct gen_args {
	__u32 count;
	__u32 base;
};

struct gen_ctx {
	__u32 base;
	__u32 done;
};

struct rec_head {
	__u32 seq;
	__u32 len;
};

static long gen_one(__u32 i, struct gen_ctx *c)
{
	__u32 seq = c->base + i, h = seq * 2654435761u, len, n, off, zero = 0;
	struct rec_head head;
	struct bpf_dynptr dp;
	char *pat;

	pat = bpf_map_lookup_elem(&pattern, &zero);
	if (!pat)
		return 1;
	len = 8 + ((h >> 8) % 1017);
	if (bpfring_reserve_dynptr(kring, len, 0, &dp)) {
		bpf_ringbuf_discard_dynptr(&dp, 0);
		return 1; /* ring full: stop here, Python resumes at base + done */
	}
	head.seq = seq;
	head.len = len;
	bpf_dynptr_write(&dp, 0, &head, sizeof(head), 0);
	n = len - 8;
	asm volatile("" : "+r"(n));
	n &= 1023;
	off = seq & 255;
	if (n)
		bpf_dynptr_write(&dp, 8, pat + off, n, 0);
	if ((h & 0xff) < 40)
		bpf_ringbuf_discard_dynptr(&dp, 0);
	else
		bpf_ringbuf_submit_dynptr(&dp, 0);
	c->done++;
	return 0;
}

SEC("syscall")
int gen(struct gen_args *args)
{
	struct gen_ctx c = { .base = args->base };
	__u32 n = args->count; /* direct ctx read: see echo.bpf.c */

	bpf_loop(n, gen_one, &c, 0);
	return c.done;
}

static long echo_cb(struct bpf_dynptr *dynptr, void *ctx)
{
	__u32 zero = 0, len = bpf_dynptr_size(dynptr);
	char *buf;

	if (len > MAX_SAMPLE) {
		stat_add(STAT_TOO_BIG);
		return 0;
	}
	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf)
		return 1;
	asm volatile("" : "+r"(len));
	len &= 2 * MAX_SAMPLE - 1;
	if (len && bpf_dynptr_read(buf, len, dynptr, 0, 0))
		return 1;
	if (bpfring_output(echo_ring, buf, len, 0))
		stat_add(STAT_ECHO_FAILED);
	else
		stat_add(STAT_ECHOED);
	return 0;
}

SEC("syscall")
int drain(void *ctx)
{
	return bpf_user_ringbuf_drain(&uring, echo_cb, NULL, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
