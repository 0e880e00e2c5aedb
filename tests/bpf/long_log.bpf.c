// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* A program the verifier rejects only at its very end, after a long
 * straight run of instructions: its log (level 1) is far longer than 64 KiB,
 * and the reason is the last line. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

__u64 sink = 0;

SEC("syscall")
int too_far(void *ctx)
{
	__u64 acc = bpf_ktime_get_ns();

#pragma unroll
	for (int i = 0; i < 3000; i++)
		acc = acc * 31 + *(volatile __u64 *)&sink; /* one load per step: no folding */
	sink = acc;
	return *(volatile int *)(long)acc; /* dereferences a scalar: rejected */
}

char LICENSE[] SEC("license") = "GPL";
