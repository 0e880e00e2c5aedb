// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* CO-RE relocations on kernel types, some through local flavours whose
 * layouts differ from the kernel's (___local): the kernel resolves them
 * against its BTF at load, user space against /sys/kernel/btf/vmlinux; both
 * must write the same out[] for the same ctx bytes (tests/test_userspace_core.py). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* The kernel's layout: ent@0 {type@0 u16, flags, preempt_count, pid@4}, id@8, ret@16. */
struct trace_entry___local {
	int pid;
	unsigned short type;
} __attribute__((preserve_access_index));

struct trace_event_raw_sys_exit___local {
	long ret;
	long id;
	struct trace_entry___local ent;
	long nope;                      /* not in the kernel's */
} __attribute__((preserve_access_index));

/* The kernel's tcphdr has doff at bit 100, syn at 105, ack at 108. */
struct tcphdr___local {
	__be16 source;
	__be16 dest;
	__u16 syn: 1;
	__u16 doff: 4;
	__u16 ack: 1;
} __attribute__((preserve_access_index));

struct task_struct___x {
	int tgid;
	int pid;
	char comm[16];
	long no_such_field;
} __attribute__((preserve_access_index));

enum bpf_map_type___local {
	BPF_MAP_TYPE_RINGBUF___local = 1,
	BPF_MAP_TYPE_NO_SUCH___local = 2,
};

struct trace_entry___m {                /* bpf_core_type_matches: yes */
	int pid;
} __attribute__((preserve_access_index));

struct bpfring_no_such_type {
	int x;
};

__u64 out[24] = {};

SEC("syscall")
int core_kernel(void *ctx)
{
	struct trace_event_raw_sys_exit___local *p = ctx;
	struct task_struct___x *t = 0;
	struct tcphdr___local *th;
	__u64 hdr[3];

	/* the verifier refuses loads through a moved ctx pointer: a stack copy */
	hdr[0] = *(__u64 *)(ctx + 24);
	hdr[1] = *(__u64 *)(ctx + 32);
	hdr[2] = *(__u64 *)(ctx + 40);
	th = (void *)hdr;

	out[0] = p->ret;
	out[1] = p->id;
	out[2] = p->ent.pid;
	out[3] = p->ent.type;
	out[4] = bpf_core_field_offset(p->ret);
	out[5] = bpf_core_field_exists(p->nope);
	out[6] = bpf_core_type_exists(struct task_struct);
	out[7] = bpf_core_type_exists(struct bpfring_no_such_type);
	out[8] = bpf_core_type_size(struct task_struct);
	out[9] = bpf_core_field_offset(struct task_struct___x, pid);
	out[10] = bpf_core_field_exists(struct task_struct___x, no_such_field);
	out[11] = bpf_core_enum_value(enum bpf_map_type___local, BPF_MAP_TYPE_RINGBUF___local);
	out[12] = bpf_core_enum_value_exists(enum bpf_map_type___local,
					     BPF_MAP_TYPE_NO_SUCH___local);
	out[13] = bpf_core_enum_value(enum bpf_func_id, BPF_FUNC_ringbuf_output);
	out[14] = bpf_core_type_id_kernel(struct task_struct);
	out[15] = bpf_core_field_size(p->ent.pid);
	out[16] = BPF_CORE_READ_BITFIELD(th, doff);
	out[17] = BPF_CORE_READ_BITFIELD(th, syn);
	out[18] = BPF_CORE_READ_BITFIELD(th, ack);
	if (bpf_core_field_exists(p->nope))
		out[19] = p->nope;      /* poisoned in both, never reached */
	else
		out[19] = 77;
	out[20] = bpf_core_field_offset(t->comm[3]);
	out[21] = bpf_core_field_exists(struct task_struct___x, tgid);
	out[22] = bpf_core_type_size(struct bpfring_no_such_type);
	out[23] = bpf_core_field_exists(struct trace_entry___m, pid);
	return p->ent.type;
}
