// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Kernel functions (kfuncs) called with no declaration of our own: the
 * prototypes come from the vmlinux.h that bpfring writes. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct kf_lookup_args {
	int pid;
};

int found_tgid = -1;
int found_ppid = -1;
char found_comm[16] = {};

/* Run with BPF_PROG_TEST_RUN: look a task up by pid, read it, release it. */
SEC("syscall")
int lookup_task(struct kf_lookup_args *args)
{
	struct task_struct *task;

	task = bpf_task_from_pid(args->pid);
	if (!task)
		return -1;
	found_tgid = BPF_CORE_READ(task, tgid);
	bpf_probe_read_kernel_str(found_comm, sizeof(found_comm), task->comm);
	bpf_task_release(task);
	return 0;
}

int watch_pid = 0;
int parent_seen = -1;

/* The same from a tracepoint: when watch_pid calls getppid(), look its
 * parent up under RCU. */
SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct task_struct *task, *parent;

	if (!watch_pid || (bpf_get_current_pid_tgid() >> 32) != watch_pid)
		return 0;
	task = bpf_task_from_pid(watch_pid);
	if (!task)
		return 0;
	bpf_rcu_read_lock();
	parent = task->real_parent;
	if (parent)
		parent_seen = parent->tgid;
	bpf_rcu_read_unlock();
	bpf_task_release(task);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
