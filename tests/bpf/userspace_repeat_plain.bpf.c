// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* A program with no helper calls in an object with no rings: a repeat of it
 * runs in the C loop with no Python in between (tests/test_userspace_repeat.py
 * checks that other threads still get the GIL during a long one). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 runs;
__u64 sum;

SEC("syscall")
int spin(void *ctx)
{
	__u64 n = ++runs, s = 0;

	for (__u64 i = 0; i < 2000; i++)
		s += i ^ n;
	sum = s;
	return (int)n;
}
