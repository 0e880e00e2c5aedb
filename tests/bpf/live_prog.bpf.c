// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Test program for tests/test_live_producer.py: a kernel producer as fast as
 * it can go, like the kernel's bench_ringbufs producer.
 *
 * produce: ctx.count reservation attempts of 40-byte records into `events`
 *          with bpf_loop.  A failed reservation (ring full) is counted in
 *          events__lost (bpfring_reserve) and the loop goes on: nothing
 *          waits for the consumer.  Every discard_every-th successful
 *          reservation is discarded; the others get the next number of
 *          next_seq[0] and a payload derived from it, so the consumer can
 *          tell a lost, repeated or corrupted record from a good one.
 *          next_seq[1] counts the discarded ones.  Returns the records
 *          committed by this run.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/ring.bpf.h>

#ifndef LIVE_RING_SIZE
#define LIVE_RING_SIZE (8 << 20)
#endif

BPFRING_RINGBUF(events, LIVE_RING_SIZE);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} next_seq SEC(".maps"); /* [0]: the next seq (= records committed), [1]: discarded */

/* 40 bytes: what the consumer checks (see CHECK_MUL in the test). */
struct rec {
	__u64 seq;
	__u64 check; /* seq * 0x9E3779B97F4A7C15 */
	__u64 inv;   /* ~seq */
	__u64 next;  /* seq + 1 */
	__u32 cpu;
	__u32 magic; /* 0x5EC0DE */
};
struct rec *unused_rec __attribute__((unused));

struct produce_args {
	__u32 count;
	__u32 discard_every; /* 0: never */
};

struct pctx {
	__u64 seq;
	__u64 discarded;
	__u32 discard_every;
	__u32 reserved;
	__u32 cpu;
	__u32 done;
};

static long emit_one(__u32 i, struct pctx *c)
{
	struct rec *r = bpfring_reserve(events, sizeof(struct rec), 0);

	if (!r)
		return 0; /* lost (counted), and on at full rate */
	c->reserved++;
	if (c->discard_every && c->reserved % c->discard_every == 0) {
		bpf_ringbuf_discard(r, 0);
		c->discarded++;
		return 0;
	}
	r->seq = c->seq;
	r->check = c->seq * 0x9E3779B97F4A7C15ULL;
	r->inv = ~c->seq;
	r->next = c->seq + 1;
	r->cpu = c->cpu;
	r->magic = 0x5EC0DE;
	bpf_ringbuf_submit(r, 0);
	c->seq++;
	c->done++;
	return 0;
}

SEC("syscall")
int produce(struct produce_args *args)
{
	__u32 n = args->count; /* direct ctx reads: see echo.bpf.c */
	__u32 every = args->discard_every;
	__u32 zero = 0, one = 1;
	struct pctx c = {};
	__u64 *seq, *discarded;

	seq = bpf_map_lookup_elem(&next_seq, &zero);
	discarded = bpf_map_lookup_elem(&next_seq, &one);
	if (!seq || !discarded)
		return -1;
	c.seq = *seq;
	c.discard_every = every;
	c.cpu = bpf_get_smp_processor_id();
	bpf_loop(n, emit_one, &c, 0);
	*seq = c.seq;
	*discarded += c.discarded;
	return c.done;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
