// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/*
 * The BPF half of examples/bridge_control_loop.py.
 *
 * sample_calls runs on every getpgid() of the machine.  For a process that
 * has an entry in `rates` (written by the Python control loop through the
 * map bridge), it counts the calls and emits every `every`-th of them as a
 * sample into the kernel ring `samples`, tagged with the generation of the
 * configuration it was taken under, so Python sees when a new setting took
 * effect.  The bridge's timer applies Python's updates to `rates` about once
 * a millisecond: the control loop makes no system call to change them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/bridge.bpf.h>

struct rate_cfg {
	__u32 every;      /* emit one sample every `every` calls (0: none) */
	__u32 generation; /* bumped by Python at every change */
};

struct call_sample {
	__u32 tgid;
	__u32 generation; /* of the configuration in force */
	__u64 calls;      /* calls counted so far for this process */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tgid */
	__type(value, struct rate_cfg);
} rates SEC(".maps");

BPFRING_BRIDGE(rates, 64 * 1024);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

BPFRING_RINGBUF(samples, 256 * 1024);

/* Keep the record type in BTF so Python can decode samples by name. */
struct call_sample _call_sample_btf = {};

SEC("tp/syscalls/sys_enter_getpgid")
int sample_calls(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct rate_cfg *cfg = bpf_map_lookup_elem(&rates, &tgid);
	__u64 one = 1, *n, count;
	struct call_sample *s;

	if (!cfg || !cfg->every)
		return 0;
	n = bpf_map_lookup_elem(&calls, &tgid);
	if (!n) {
		bpf_map_update_elem(&calls, &tgid, &one, BPF_NOEXIST);
		return 0;
	}
	count = __sync_fetch_and_add(n, 1) + 1;
	if (count % cfg->every)
		return 0;
	s = bpfring_reserve(samples, sizeof(*s), 0);
	if (!s)
		return 0; /* counted in samples__lost */
	s->tgid = tgid;
	s->generation = cfg->generation;
	s->calls = count;
	bpf_ringbuf_submit(s, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
