// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Test programs for user-space probes (tests/test_attach.py): uprobes and
 * uretprobes on tests/c/attach_target.c, a uprobe on a libc function, and a
 * USDT probe.  Each records how often it ran, the sum of the argument (or
 * return value) it saw, the pid of the last hit and its attach cookie. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

struct hits {
	__u64 count;
	__u64 sum;
	__u64 cookie;
	__u32 pid;
	__u32 _pad;
};

struct hits entry = {};
struct hits ret = {};
struct hits lib = {};
struct hits usdt_hits = {};
struct hits plain = {};

static __always_inline void hit(struct hits *h, __u64 value, __u64 cookie)
{
	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->sum, value);
	h->cookie = cookie;
	h->pid = bpf_get_current_pid_tgid() >> 32;
}

SEC("uprobe")
int on_entry(struct pt_regs *ctx)
{
	hit(&entry, PT_REGS_PARM1(ctx), bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("uretprobe")
int on_return(struct pt_regs *ctx)
{
	hit(&ret, PT_REGS_RC(ctx), bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("uprobe")
int on_lib(struct pt_regs *ctx)
{
	hit(&lib, 1, bpf_get_attach_cookie(ctx));
	return 0;
}

/* attached by offset, not symbol: counts, no argument */
SEC("uprobe")
int on_offset(struct pt_regs *ctx)
{
	hit(&plain, 1, bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("usdt")
int BPF_USDT(on_usdt, int value)
{
	hit(&usdt_hits, value, bpf_usdt_cookie(ctx));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
