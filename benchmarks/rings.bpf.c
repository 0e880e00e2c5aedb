// SPDX-License-Identifier: Apache-2.0
/* Kernel side of `bpfring bench rings`.
 *
 * kernel -> user: produce() emits `count` 40-byte struct event records with
 * bpf_loop into `events` (large enough to hold a whole round, for the
 * pre-filled runs) or `live` (512 KiB, the kernel's bench_ringbufs default,
 * for the runs with a live producer on the other CPU).  Failed reservations
 * are counted per CPU in <ring>__lost (bpfring/ring.bpf.h).
 *
 * user -> kernel: drain() drains `requests` or `live_requests` with
 * bpf_user_ringbuf_drain and adds each sample's seq to stats, so every
 * writer's output is checked by the kernel itself.
 *
 * Ring sizes come from -D defines set by the benchmark (see rings.py).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/ring.bpf.h>

#ifndef EVENTS_SIZE
#define EVENTS_SIZE (64 << 20)
#endif
#ifndef LIVE_SIZE
#define LIVE_SIZE (512 << 10)
#endif

extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;

/* The benchmark record: 40 bytes, 48 in the ring with its header. */
struct event {
	__u64 seq;
	__u64 ts;
	__u32 pid;
	__u32 cpu;
	char comm[16];
};
/* Keeps struct event in BTF (clang drops types only used through pointers
 * and sizeof), so bpfring can decode records by name: record="event". */
struct event *unused_event __attribute__((unused));

BPFRING_RINGBUF(events, EVENTS_SIZE);
BPFRING_RINGBUF(live, LIVE_SIZE);
BPFRING_USER_RINGBUF(requests, EVENTS_SIZE);
BPFRING_USER_RINGBUF(live_requests, LIVE_SIZE);

/* What drain() saw, summed over all calls until user space resets it. */
struct drain_stats {
	__u64 samples;  /* samples handed to the callback */
	__u64 seq_sum;  /* sum of their seq fields */
	__u64 bad;      /* samples that were not 40 bytes or could not be read */
	__u64 calls;    /* drain calls that returned an error */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct drain_stats);
} stats SEC(".maps");

struct produce_args {
	__u64 seq_base;  /* seq of the first record */
	__u32 count;     /* records to emit */
	__u32 live;      /* 1: into `live`, 0: into `events` */
};

struct loop_ctx {
	__u64 seq_base;
	__u64 ts;
	__u32 pid;
	__u32 cpu;
	__u32 live;
	char comm[16];
};

static long produce_one(__u32 i, struct loop_ctx *c)
{
	struct event *e;

	if (c->live)
		e = bpfring_reserve(live, sizeof(*e), 0);
	else
		e = bpfring_reserve(events, sizeof(*e), 0);
	if (!e)
		return 0; /* counted in <ring>__lost */
	e->seq = c->seq_base + i;
	e->ts = c->ts;
	e->pid = c->pid;
	e->cpu = c->cpu;
	__builtin_memcpy(e->comm, c->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("syscall")
int produce(struct produce_args *args)
{
	struct loop_ctx c = {};
	/* A direct u32 ctx read for the count: the verifier checks the whole
	 * register against BPF_MAX_LOOPS (see tests/bpf/echo.bpf.c). */
	__u32 n = args->count;

	c.seq_base = args->seq_base;
	c.live = args->live;
	c.ts = bpf_ktime_get_ns();
	c.pid = bpf_get_current_pid_tgid() >> 32;
	c.cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(c.comm, sizeof(c.comm));
	return bpf_loop(n, produce_one, &c, 0);
}

static long drain_one(struct bpf_dynptr *dynptr, void *ctx)
{
	struct drain_stats *st = ctx;
	__u64 seq;

	if (bpf_dynptr_size(dynptr) != sizeof(struct event) ||
	    bpf_dynptr_read(&seq, sizeof(seq), dynptr, 0, 0)) {
		st->bad++;
		return 0;
	}
	st->samples++;
	st->seq_sum += seq;
	return 0;
}

struct drain_args {
	__u32 live;   /* 1: drain `live_requests`, 0: `requests` */
	__u32 flags;  /* bpf_user_ringbuf_drain flags */
};

/* One drain pass (the kernel caps it at 128 Ki samples); returns the
 * helper's result: samples drained, or a negative error. */
SEC("syscall")
int drain(struct drain_args *args)
{
	struct drain_stats acc = {}; /* the callback context must be on the stack */
	__u32 zero = 0;
	struct drain_stats *st;
	long ret;

	if (args->live)
		ret = bpf_user_ringbuf_drain(&live_requests, drain_one, &acc, 0);
	else
		ret = bpf_user_ringbuf_drain(&requests, drain_one, &acc, 0);
	st = bpf_map_lookup_elem(&stats, &zero);
	if (st) {
		st->samples += acc.samples;
		st->seq_sum += acc.seq_sum;
		st->bad += acc.bad;
		if (ret < 0)
			st->calls++;
	}
	return ret;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
