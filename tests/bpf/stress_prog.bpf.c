// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Test program for tests/test_stress.py.
 *
 * produce: emits ctx.count 16-byte records {u32 id, u32 cpu, u64 seq} into
 *          `events`, tagged with producer id ctx.id and numbered from the
 *          per-producer counter next_seq[id].  Stops at the first failed
 *          reservation (counted in events__lost by bpfring_reserve) and
 *          returns how many it emitted, so the caller can resume: nothing is
 *          lost, sequence numbers stay gap-free.  ctx.flags are the submit
 *          flags.
 * drain:   drains `uring` (or `huge_uring`), copying each sample into `out`;
 *          stops after ctx.max samples; returns the bpf_user_ringbuf_drain()
 *          result (negative errno on a malformed ring).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/ring.bpf.h>

#define MAX_SAMPLE 4096
#define MAX_PRODUCERS 16

extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;

BPFRING_RINGBUF(events, 4 << 20);
BPFRING_USER_RINGBUF(uring, 16 * 1024);
BPFRING_USER_RINGBUF(huge_uring, 32 << 20);
BPFRING_RINGBUF(out, 256 * 1024);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_PRODUCERS);
	__type(key, __u32);
	__type(value, __u64);
} next_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[2 * MAX_SAMPLE]);
} scratch SEC(".maps");

struct rec {
	__u32 id;
	__u32 cpu;
	__u64 seq;
};

struct produce_args {
	__u32 count;
	__u32 id;
	__u32 flags; /* submit flags: BPF_RB_NO_WAKEUP / BPF_RB_FORCE_WAKEUP */
};

struct pctx {
	__u64 seq;
	__u64 flags;
	__u32 id;
	__u32 done;
};

static long emit_one(__u32 i, struct pctx *c)
{
	struct rec *r = bpfring_reserve(events, sizeof(struct rec), 0);

	if (!r)
		return 1;
	r->id = c->id;
	r->cpu = bpf_get_smp_processor_id();
	r->seq = c->seq;
	bpf_ringbuf_submit(r, c->flags);
	c->seq++;
	c->done++;
	return 0;
}

SEC("syscall")
int produce(struct produce_args *args)
{
	__u32 n = args->count; /* direct ctx read: see echo.bpf.c */
	__u32 id = args->id;
	struct pctx c = {};
	__u64 *seq;

	seq = bpf_map_lookup_elem(&next_seq, &id);
	if (!seq)
		return -1;
	c.seq = *seq;
	c.id = id;
	c.flags = args->flags;
	bpf_loop(n, emit_one, &c, 0);
	*seq = c.seq;
	return c.done;
}

struct drain_args {
	__u32 max;
	__u32 huge;
};

struct dctx {
	__u32 n;
	__u32 max;
};

static long echo_cb(struct bpf_dynptr *dynptr, struct dctx *c)
{
	__u32 zero = 0, len = bpf_dynptr_size(dynptr);
	char *buf;

	c->n++;
	if (len > MAX_SAMPLE)
		return 1;
	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf)
		return 1;
	asm volatile("" : "+r"(len));
	len &= 2 * MAX_SAMPLE - 1;
	if (len && bpf_dynptr_read(buf, len, dynptr, 0, 0))
		return 1;
	bpfring_output(out, buf, len, 0);
	return c->n >= c->max ? 1 : 0;
}

SEC("syscall")
int drain(struct drain_args *args)
{
	struct dctx c = {};

	c.max = args->max;
	if (args->huge)
		return bpf_user_ringbuf_drain(&huge_uring, echo_cb, &c, 0);
	return bpf_user_ringbuf_drain(&uring, echo_cb, &c, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
