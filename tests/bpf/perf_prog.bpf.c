// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Test program for perf event buffers: a raw tracepoint program, run with
 * BPF_PROG_TEST_RUN on a chosen CPU, that emits numbered records through
 * bpf_perf_event_output() into a BPF_MAP_TYPE_PERF_EVENT_ARRAY. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

/* One record: a sequence number, the CPU it was written on, its payload
 * size, then filler bytes derived from the sequence number. */
struct perf_rec {
	__u64 seq;
	__u32 cpu;
	__u32 size;
	__u8 fill[240];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct perf_rec);
} heap SEC(".maps");

__u64 emitted = 0;
__u64 failed = 0;

struct emit_ctx {
	void *ctx;
	struct perf_rec *r;
	__u64 seq;
	__u32 size;
};

static long emit_one(__u64 i, struct emit_ctx *c)
{
	struct perf_rec *r = c->r;
	__u64 seq = c->seq + i;
	__u32 n = c->size ? c->size : 16 + (seq * 37) % 241;

	if (n < 16 || n > sizeof(*r))
		return 1;
	r->seq = seq;
	r->cpu = bpf_get_smp_processor_id();
	r->size = n;
#pragma unroll
	for (__u32 j = 0; j < sizeof(r->fill); j++)
		r->fill[j] = (__u8)(seq + j);
	if (bpf_perf_event_output(c->ctx, &events, BPF_F_CURRENT_CPU, r, n & 0x1ff))
		__sync_fetch_and_add(&failed, 1);
	else
		__sync_fetch_and_add(&emitted, 1);
	return 0;
}

/* ctx->args: [0] records to emit, [1] payload size (16..256, or 0: vary
 * 16..256 with the sequence number), [2] first sequence number. */
SEC("raw_tp")
int emit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct emit_ctx c = {
		.ctx = ctx, .seq = ctx->args[2], .size = ctx->args[1],
	};

	c.r = bpf_map_lookup_elem(&heap, &zero);
	if (!c.r)
		return 1;
	bpf_loop((__u32)ctx->args[0], emit_one, &c, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
