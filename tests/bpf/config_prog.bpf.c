// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Configuration between open and load, as the kernel selftests and real
 * tools need it: a ring whose size user space sets, a program variant that
 * cannot load on this kernel (to be switched off), a map-in-map whose inner
 * prototype user space supplies, and knobs from -D and from globals. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#ifndef BPFRING_TEST_EXTRA
#define BPFRING_TEST_EXTRA 0
#endif

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* no max_entries: user space decides */
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
	/* no inner map definition: user space gives the prototype */
} outer SEC(".maps");

const volatile __u32 knob = 1;
__u64 seen = 0;
__u64 extra = BPFRING_TEST_EXTRA;

/* A kfunc this kernel does not have (weak: the object still opens): the
 * verifier refuses the program calling it, so a tool ships another variant
 * and turns this one off. */
extern void bpfring_no_such_kfunc(void) __ksym __weak;

SEC("syscall")
int variant_missing(void *ctx)
{
	bpfring_no_such_kfunc();
	return 0;
}

SEC("syscall")
int lookup(void *ctx)
{
	__u32 key = 0, ikey = 0;
	__u64 *v;
	void *inner = bpf_map_lookup_elem(&outer, &key);

	if (!inner)
		return -1;
	v = bpf_map_lookup_elem(inner, &ikey);
	if (!v)
		return -2;
	seen = *v + knob;
	return 0;
}

SEC("syscall")
int fill(void *ctx)
{
	__u32 *r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);

	if (!r)
		return -1;
	*r = knob;
	bpf_ringbuf_submit(r, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
