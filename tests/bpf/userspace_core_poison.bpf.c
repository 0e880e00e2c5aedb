// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* A CO-RE access to a field the kernel does not have, unguarded: libbpf
 * poisons the instruction (the verifier refuses the program); user space
 * loads it and faults when the instruction is reached, naming the
 * relocation (tests/test_userspace_core.py).  Not loadable into the kernel. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct trace_event_raw_sys_exit___p {
	long ret;
	long bpfring_missing;
} __attribute__((preserve_access_index));

SEC("syscall")
int reaches(void *ctx)
{
	struct trace_event_raw_sys_exit___p *p = ctx;

	if (p->ret == 1)
		return p->bpfring_missing;
	return p->ret;
}
