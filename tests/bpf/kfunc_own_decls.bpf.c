// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* A program that declares the kfuncs it calls itself, as programs written
 * for older kernels and bpftools do.  bpf_dynptr_adjust is declared the way
 * 6.5-era programs did, without the const the kernel's signature now has:
 * in C that conflicts with the vmlinux.h prototype, and the build must let
 * the program's declaration win.  bpf_strlen is a kfunc name too, but here
 * a static function of the program's own. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern int bpf_dynptr_adjust(struct bpf_dynptr *p, __u32 start, __u32 end) __ksym;
extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;

static __always_inline int bpf_strlen(const char *s)
{
	int n = 0;

	while (n < 8 && s[n])
		n++;
	return n;
}

char buf[16] = "abcdefghijklmno";

SEC("syscall")
int adjust(void *ctx)
{
	struct bpf_dynptr d;

	if (bpf_dynptr_from_mem(buf, sizeof(buf), 0, &d))
		return -1;
	if (bpf_dynptr_adjust(&d, 2, 10))
		return -2;
	return bpf_dynptr_size(&d) * 100 + bpf_strlen(buf);
}

char LICENSE[] SEC("license") = "GPL";
