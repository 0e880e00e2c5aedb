// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/*
 * The BPF half of examples/userspace_filter.py: user-space and kernel eBPF
 * working together.
 *
 * user_filter runs in user space (bpfring's runtime), on every call of a
 * Python function handle(path, size): a request larger than `limit` puts the
 * calling process on the kernel hash map `watch` (the update goes through the
 * map bridge's user ring: no system call) and emits a "user" event into the
 * kernel ring `events` (through the relay user ring).
 *
 * kernel_watch runs in the kernel, on every getpgid() of the machine: for a
 * process on `watch` it counts the call and emits a "kernel" event into the
 * same ring.  A ring consumer reads both kinds of events from one ring.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/ring.bpf.h>

#define KIND_USER 1
#define KIND_KERNEL 2

struct event {
	__u32 kind;  /* KIND_USER or KIND_KERNEL */
	__u32 tgid;
	__u64 value; /* user: the request size; kernel: getpgid() calls seen while watched */
	char text[32]; /* user: the request path; kernel: "getpgid" */
};

struct watch_entry {
	__u64 size;  /* the request that put the process on the list */
	__u64 calls; /* getpgid() calls since, counted by the kernel */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tgid */
	__type(value, struct watch_entry);
} watch SEC(".maps");

BPFRING_RINGBUF(events, 64 * 1024);

/* Keep the record type in BTF so Python can decode events by name. */
struct event _event_btf = {};

const volatile __u64 limit = 1000;

/* The ctx of a program attached to a Python function (bpfring.userspace). */
struct bpfring_pycall {
	__u64 nargs;
	__u64 args[8];
	__u64 str_len[8];
};

SEC("syscall")
int user_filter(struct bpfring_pycall *call)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct watch_entry w = {};
	struct event ev = { .kind = KIND_USER, .tgid = tgid };

	if (call->nargs < 2 || call->args[1] <= limit)
		return 0; /* let it through */
	w.size = call->args[1];
	bpf_map_update_elem(&watch, &tgid, &w, BPF_ANY);
	ev.value = call->args[1];
	bpf_probe_read_user_str(ev.text, sizeof(ev.text), (void *)call->args[0]);
	bpfring_output(events, &ev, sizeof(ev), 0);
	return 1; /* flagged */
}

SEC("tp/syscalls/sys_enter_getpgid")
int kernel_watch(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct watch_entry *w = bpf_map_lookup_elem(&watch, &tgid);
	struct event *ev;
	__u64 calls;

	if (!w)
		return 0;
	calls = __sync_fetch_and_add(&w->calls, 1) + 1;
	ev = bpfring_reserve(events, sizeof(*ev), 0);
	if (!ev)
		return 0; /* counted in events__lost */
	ev->kind = KIND_KERNEL;
	ev->tgid = tgid;
	ev->value = calls;
	__builtin_memcpy(ev->text, "getpgid", 8);
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
