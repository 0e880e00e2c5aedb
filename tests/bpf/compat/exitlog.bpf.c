// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* A tool in the libbpf-tools compat style: the events map is declared as a
 * ring buffer; user space switches it to a perf event array before load on
 * kernels without ring buffers, and the BPF side picks its path with
 * bpf_core_type_exists(struct bpf_ringbuf).  "emit" is a raw tracepoint
 * program driven by test runs; ctx->args[0] is the sequence number. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "exitlog.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exit_event);
} heap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

static __always_inline void *reserve_event(void)
{
	__u32 zero = 0;

	if (bpf_core_type_exists(struct bpf_ringbuf))
		return bpf_ringbuf_reserve(&events, sizeof(struct exit_event), 0);
	return bpf_map_lookup_elem(&heap, &zero);
}

static __always_inline void submit_event(void *ctx, struct exit_event *e)
{
	if (bpf_core_type_exists(struct bpf_ringbuf))
		bpf_ringbuf_submit(e, 0);
	else
		bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, e, sizeof(*e));
}

SEC("raw_tp")
int emit(struct bpf_raw_tracepoint_args *ctx)
{
	struct exit_event *e = reserve_event();

	if (!e)
		return 1;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->exit_code = -7;
	e->seq = ctx->args[0];
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	submit_event(ctx, e);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
