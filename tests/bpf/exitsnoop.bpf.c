// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* exitsnoop: one ring buffer record per process exit, in the style of the
 * libbpf tools (event struct in a header shared with user space, optional
 * filter set from user space before load). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "exitsnoop.h"

/* Report only children of this process (0: every process). */
const volatile int target_ppid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} exitsnoop_rb SEC(".maps");

SEC("tp/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 id = bpf_get_current_pid_tgid();
	int pid = id >> 32, tid = (__u32)id;
	struct event *e;
	int ppid;

	if (pid != tid)
		return 0; /* a thread, not the whole process */
	ppid = BPF_CORE_READ(task, real_parent, tgid);
	if (target_ppid && ppid != target_ppid)
		return 0;

	e = bpf_ringbuf_reserve(&exitsnoop_rb, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = pid;
	e->ppid = ppid;
	e->exit_code = BPF_CORE_READ(task, exit_code);
	e->status = (e->exit_code >> 8) & 0xff;
	e->sig = e->exit_code & 0x7f;
	if (e->exit_code & 0x80)
		e->kind = EXIT_CORE_DUMPED;
	else if (e->sig)
		e->kind = EXIT_SIGNALED;
	else
		e->kind = EXIT_NORMAL;
	e->times.start_ns = BPF_CORE_READ(task, start_time);
	e->times.exit_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
