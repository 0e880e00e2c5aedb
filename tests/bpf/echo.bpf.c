// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Test program: round trips through both ring types, and a kernel-side
 * producer driven by BPF_PROG_TEST_RUN. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/ring.bpf.h>

#define MAX_SAMPLE 8192

extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;

BPFRING_USER_RINGBUF(in_ring, 64 * 1024);
BPFRING_RINGBUF(out_ring, 64 * 1024);
BPFRING_RINGBUF(small_ring, 4096);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[2 * MAX_SAMPLE]);
} scratch SEC(".maps");

__u64 echoed = 0;
__u64 echo_failed = 0;
__u64 too_big = 0;
long last_drain = 0;

/* What produce() emits, controlled through its ctx. */
struct produce_args {
	__u32 count;     /* records to reserve */
	__u32 size;      /* payload bytes, <= 256 */
	__u32 discard_every; /* discard every Nth record (0: never) */
	__u32 flags;     /* submit flags: BPF_RB_NO_WAKEUP / FORCE_WAKEUP */
	__u32 small;     /* 1: write into small_ring instead of out_ring */
	__u32 seq_base;
};

__u64 produced = 0;
const volatile __u32 knob = 1; /* set from Python before load */
struct test_config {
	__u32 id;
	char label[12];
	__u64 limit;
} cfg = { .id = 7, .label = "init", .limit = 100 };

SEC("syscall")
int read_knob(void *ctx)
{
	return knob + cfg.id;
}

static long echo_cb(struct bpf_dynptr *dynptr, void *ctx)
{
	__u32 zero = 0, len = bpf_dynptr_size(dynptr);
	char *buf;

	if (len > MAX_SAMPLE) {
		too_big++;
		return 0;
	}
	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf)
		return 1;
	/* clang may test a copy of len; the mask gives the verifier a bound
	 * (the scratch value is 2 * MAX_SAMPLE so the masked range fits). */
	asm volatile("" : "+r"(len)); /* keep clang from dropping the mask */
	len &= 2 * MAX_SAMPLE - 1;
	if (len && bpf_dynptr_read(buf, len, dynptr, 0, 0))
		return 1;
	if (bpfring_output(out_ring, buf, len, 0))
		echo_failed++;
	else
		echoed++;
	return 0;
}

SEC("syscall")
int echo(void *ctx)
{
	last_drain = bpf_user_ringbuf_drain(&in_ring, echo_cb, NULL, 0);
	return last_drain;
}

/* Drain without the FORCE/NO wakeup defaults, for wakeup tests. */
SEC("syscall")
int echo_nowakeup(void *ctx)
{
	last_drain = bpf_user_ringbuf_drain(&in_ring, echo_cb, NULL, BPF_RB_NO_WAKEUP);
	return last_drain;
}

struct rec256 {
	__u32 seq;
	__u32 size;
	char pad[248];
};

static long produce_one(__u32 i, struct produce_args *args)
{
	__u64 flags = args->flags;
	struct rec256 *r;

	if (i >= args->count)
		return 1;
	if (args->small)
		r = bpfring_reserve(small_ring, sizeof(struct rec256), 0);
	else
		r = bpfring_reserve(out_ring, sizeof(struct rec256), 0);
	if (!r)
		return 0;
	r->seq = args->seq_base + i;
	r->size = args->size;
	if (args->discard_every && (i + 1) % args->discard_every == 0)
		bpf_ringbuf_discard(r, flags);
	else
		bpf_ringbuf_submit(r, flags);
	produced++;
	return 0;
}

/* Emit args->count fixed-size records (seq numbers from seq_base). */
struct rec256 _rec256_keep = {}; /* keep the record type in BTF for decoding */

SEC("syscall")
int produce(struct produce_args *args)
{
	struct produce_args a = *args;
	/* Pass the count through a fresh u32: the verifier inlines bpf_loop and
	 * compares the whole 64-bit register against BPF_MAX_LOOPS, so a u32
	 * loaded as half of an 8-byte struct copy fails with -E2BIG. */
	__u32 n = args->count;

	return bpf_loop(n, produce_one, &a, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
