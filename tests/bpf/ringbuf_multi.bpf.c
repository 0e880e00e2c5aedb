// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Map-in-map with ring buffers inside, in the style of the kernel selftest
 * test_ringbuf_multi: an array of ring buffers whose two slots the object
 * itself fills with two ring buffers it declares (sizes left to user space),
 * and a program that writes one record into the ring of the slot user space
 * chooses, found through the outer map at run time. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* no max_entries: user space sizes the rings (and the prototype) */
};

struct ring ring_a SEC(".maps"), ring_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct ring);
} rings SEC(".maps") = {
	.values = { [0] = &ring_a, [1] = &ring_b },
};

struct emit_args {
	__u32 slot;   /* which slot of `rings` to write to */
	__u32 value;  /* what to write */
};

__u64 emitted = 0;

SEC("syscall")
int emit(struct emit_args *args)
{
	__u32 slot = args->slot;
	void *rb = bpf_map_lookup_elem(&rings, &slot);
	__u64 *rec;

	if (!rb)
		return -1;  /* empty slot */
	rec = bpf_ringbuf_reserve(rb, sizeof(*rec), 0);
	if (!rec)
		return -2;  /* full */
	*rec = ((__u64)slot << 32) | args->value;
	bpf_ringbuf_submit(rec, 0);
	emitted++;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
