// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Programs the kernel's verifier would refuse, for the safety tests of the
 * user-space runtime (tests/test_userspace_safety.py): each one breaks a rule
 * at run time and must raise UserRuntimeError, leaving the process and the
 * object healthy.  Never loaded into the kernel. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} ring SEC(".maps");

struct bad_args {
	__s64 off;
	__u64 n;
};

const volatile __u64 ro_knob = 1;
__u64 good_runs = 0;

SEC("syscall")
int good(struct bad_args *ctx)
{
	__u32 k = 1;
	__u64 *v = bpf_map_lookup_elem(&arr, &k), *e;

	if (v)
		*v += 1;
	e = bpf_ringbuf_reserve(&ring, 8, 0);
	if (e) {
		*e = good_runs;
		bpf_ringbuf_submit(e, 0);
	}
	good_runs++;
	return 42;
}

SEC("syscall")
int oob_ctx_read(struct bad_args *ctx)
{
	return *(__u64 *)((char *)ctx + ctx->off);
}

SEC("syscall")
int oob_map_write(struct bad_args *ctx)
{
	__u32 k = 0;
	char *v = bpf_map_lookup_elem(&arr, &k);

	if (!v)
		return 0;
	*(volatile char *)(v + ctx->off) = 1;
	return 1;
}

SEC("syscall")
int null_deref(struct bad_args *ctx)
{
	__u32 k = ctx->n;
	__u64 *v = bpf_map_lookup_elem(&arr, &k);

	return *(volatile __u64 *)v;
}

SEC("syscall")
int stack_oob(struct bad_args *ctx)
{
	volatile char buf[16] = {};

	buf[ctx->off] = 1;
	return buf[0];
}

static __noinline int recurse(int n)
{
	volatile int x = n;

	if (n <= 0)
		return 0;
	return recurse(n - 1) + x;
}

SEC("syscall")
int deep(struct bad_args *ctx)
{
	return recurse(ctx->n);
}

SEC("syscall")
int spin(struct bad_args *ctx)
{
	volatile __u64 i = 0;

	while (ctx->n)
		i++;
	return i;
}

static long noop(__u32 i, void *data)
{
	return 0;
}

SEC("syscall")
int long_loop(struct bad_args *ctx)
{
	return bpf_loop(ctx->n, noop, 0, 0);
}

SEC("syscall")
int not_a_map(struct bad_args *ctx)
{
	__u32 k = 0;

	return bpf_map_lookup_elem((void *)ctx, &k) != 0;
}

SEC("syscall")
int bad_key(struct bad_args *ctx)
{
	return bpf_map_lookup_elem(&arr, (void *)ctx->off) != 0;
}

SEC("syscall")
int double_submit(struct bad_args *ctx)
{
	__u64 *e = bpf_ringbuf_reserve(&ring, 8, 0);

	if (!e)
		return 0;
	*e = 1;
	bpf_ringbuf_submit(e, 0);
	bpf_ringbuf_submit(e, 0);
	return 1;
}

SEC("syscall")
int use_after_submit(struct bad_args *ctx)
{
	__u64 *e = bpf_ringbuf_reserve(&ring, 8, 0);

	if (!e)
		return 0;
	bpf_ringbuf_submit(e, 0);
	*(volatile __u64 *)e = 2;
	return 1;
}

SEC("syscall")
int leak(struct bad_args *ctx)
{
	__u64 *e = bpf_ringbuf_reserve(&ring, 8, 0);

	if (!e)
		return 0;
	*e = 3;
	return 1;
}

SEC("syscall")
int write_rodata(struct bad_args *ctx)
{
	*(volatile __u64 *)&ro_knob = 5;
	return 0;
}

SEC("syscall")
int bad_fmt(struct bad_args *ctx)
{
	static const char f[] = "%q %d";
	char out[8];
	__u64 a[2] = { 1, 2 };

	return bpf_snprintf(out, sizeof(out), f, a, sizeof(a));
}

SEC("syscall")
int bad_out(struct bad_args *ctx)
{
	static const char f[] = "%d";
	__u64 a[1] = { 1 };

	return bpf_snprintf((char *)ctx->off, 8, f, a, sizeof(a));
}

SEC("xdp")
int pkt_oob(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;

	return *(volatile __u32 *)(data + 64);
}

SEC("xdp")
int ctx_write(struct xdp_md *ctx)
{
	*(volatile __u32 *)&ctx->data = 0;
	return 0;
}
