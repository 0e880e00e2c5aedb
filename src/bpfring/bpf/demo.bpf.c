// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/*
 * bpfring's reference example: user space writes samples into a user ring
 * buffer; each time any process returns from kill(2), this program drains the
 * user ring and, for every sample, emits an event with the pid and comm of the
 * process that called kill into a kernel ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/ring.bpf.h>

struct user_sample {
	int i;
	char comm[16];
};

struct event {
	int pid;
	char comm[16];
};

BPFRING_USER_RINGBUF(user_ringbuf, 256 * 1024);
BPFRING_RINGBUF(kernel_ringbuf, 256 * 1024);

/* Samples drained so far (read from Python as obj.globals.read). */
__u64 read = 0;

/* Keep both record types in BTF so Python can decode them by name. */
struct user_sample _user_sample_btf = {};
struct event _event_btf = {};

static long on_sample(struct bpf_dynptr *dynptr, void *ctx)
{
	const struct user_sample *sample;
	struct event *e;

	sample = bpf_dynptr_data(dynptr, 0, sizeof(*sample));
	if (!sample)
		return 0; /* shorter than a user_sample: skip it */

	e = bpfring_reserve(kernel_ringbuf, sizeof(*e), 0);
	if (!e)
		return 0; /* counted in kernel_ringbuf__lost */
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	__sync_fetch_and_add(&read, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_kill")
int handle_kill_exit(void *ctx)
{
	bpf_user_ringbuf_drain(&user_ringbuf, on_sample, NULL, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
