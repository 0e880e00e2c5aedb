// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* CO-RE relocations on a type of the program's own (no kernel has it): user
 * space resolves them against the object's BTF with btf="object"; against
 * the kernel's BTF (the default) core_local's accesses are poisoned and
 * core_guarded sees that struct point does not exist.  For
 * tests/test_userspace_core.py.  Not loadable into the kernel. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct point {
	__u32 x;
	__u16 y;
	__u64 z;
	struct {
		__u8 tag;
		__s32 w;
	} inner;
} __attribute__((preserve_access_index));

__u64 out[8] = {};

SEC("syscall")
int core_local(struct point *p)
{
	out[0] = BPF_CORE_READ(p, z);
	out[1] = BPF_CORE_READ(p, inner.w);
	out[2] = bpf_core_field_offset(p->inner.w);
	out[3] = bpf_core_field_size(p->y);
	out[4] = bpf_core_type_size(struct point);
	out[5] = bpf_core_field_exists(p->inner.tag);
	return p->y;
}

SEC("syscall")
int core_guarded(struct point *p)
{
	if (!bpf_core_type_exists(struct point))
		return -1;
	return BPF_CORE_READ(p, y);
}
