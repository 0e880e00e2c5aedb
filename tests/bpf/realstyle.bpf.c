// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* A tool in the style of libbpf-bootstrap and bcc's libbpf-tools: vmlinux.h,
 * libbpf's tracing macros, the event struct in its own header, a ring buffer,
 * a const volatile knob set before load, and a uretprobe whose library user
 * space has to find (its SEC() names only the function). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "realstyle.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} rb SEC(".maps");

const volatile int target_pid = 0;
unsigned long long calls = 0;

SEC("tp/syscalls/sys_enter_getppid")
int handle_getppid(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct rs_event *e;
	int pid = bpf_get_current_pid_tgid() >> 32;

	if (pid != target_pid)
		return 0;
	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = BPF_CORE_READ(task, tgid);
	e->calls = ++calls;
	e->status = (e->calls & 1) ? RS_FAILED : RS_RETRY;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Uses libbpf 1.2's BPF_URETPROBE (bpfring supplies it over libbpf 1.1). */
SEC("uretprobe/rs_lookup")
int BPF_URETPROBE(rs_lookup_ret, long ret)
{
	calls += ret;
	return 0;
}
