// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Test programs for explicit attach (tests/test_attach.py): tracing hooks.
 *
 * Every counter only counts the test process (tgid == target_tgid, set from
 * Python before load), so other processes on the machine do not disturb the
 * counts.  The sections carry no target: the tests name it when attaching. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define NR_GETPPID 110 /* x86_64 */

const volatile __u32 target_tgid = 0;

__u64 tp_hits = 0;
__u64 raw_hits = 0;
__u64 samples[64];
__u64 kprobe_hits = 0;

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("tp")
int on_tracepoint(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&tp_hits, 1);
	return 0;
}

/* raw_tp/sys_enter: args[1] is the syscall number */
SEC("raw_tp")
int on_raw_tracepoint(struct bpf_raw_tracepoint_args *ctx)
{
	if (mine() && ctx->args[1] == NR_GETPPID)
		__sync_fetch_and_add(&raw_hits, 1);
	return 0;
}

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();

	if (cpu < 64)
		__sync_fetch_and_add(&samples[cpu], 1);
	return 0;
}

SEC("kprobe")
int on_kprobe(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&kprobe_hits, 1);
	return 0;
}

SEC("ksyscall")
int on_ksyscall(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&kprobe_hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
