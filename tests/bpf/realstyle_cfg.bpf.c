// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* A selftest-style program that leaves its ring size to user space, and a
 * tool that ships two variants of one probe: an fentry one (BPF trampoline)
 * and a tracepoint fallback that user space keeps when the kernel refuses
 * the first. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
} events SEC(".maps");

const volatile int target_pid = 0;

static int emit(int how)
{
	int *v;

	if ((int)(bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	v = bpf_ringbuf_reserve(&events, sizeof(*v), 0);
	if (!v)
		return 0;
	*v = how;
	bpf_ringbuf_submit(v, 0);
	return 0;
}

SEC("fentry/__do_sys_getppid")
int BPF_PROG(getppid_fentry)
{
	return emit(1);
}

SEC("tp/syscalls/sys_enter_getppid")
int getppid_tp(void *ctx)
{
	return emit(2);
}
