// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Test object for attach_all(): one program of each kind the report tells
 * apart.  auto_tp and auto_raw attach by their SEC(); off is not loaded
 * (SEC("?...")); the xdp/tc/uprobe/cgroup programs need a target; missing_tp
 * names a tracepoint this kernel does not have; kp needs kprobes (absent on
 * the test machine); run_me is SEC("syscall"), run with BPF_PROG_TEST_RUN. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define NR_GETPPID 110 /* x86_64 */

const volatile __u32 target_tgid = 0;

__u64 auto_tp_hits = 0;
__u64 auto_raw_hits = 0;
__u64 off_hits = 0;

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("tp/syscalls/sys_enter_getppid")
int auto_tp(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&auto_tp_hits, 1);
	return 0;
}

SEC("raw_tp/sys_enter")
int auto_raw(struct bpf_raw_tracepoint_args *ctx)
{
	if (mine() && ctx->args[1] == NR_GETPPID)
		__sync_fetch_and_add(&auto_raw_hits, 1);
	return 0;
}

SEC("?tp/syscalls/sys_enter_getppid")
int off(void *ctx)
{
	__sync_fetch_and_add(&off_hits, 1);
	return 0;
}

SEC("tp/bpfring_nosuch/nosuch_event")
int missing_tp(void *ctx)
{
	return 0;
}

SEC("kprobe/do_nanosleep")
int kp(struct pt_regs *ctx)
{
	return 0;
}

SEC("xdp")
int needs_ifc(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int needs_tc(struct __sk_buff *skb)
{
	return 0;
}

SEC("uprobe")
int needs_binary(struct pt_regs *ctx)
{
	return 0;
}

SEC("cgroup_skb/ingress")
int needs_cgroup(struct __sk_buff *skb)
{
	return 1;
}

SEC("syscall")
int run_me(void *ctx)
{
	return 7;
}

char LICENSE[] SEC("license") = "GPL";
