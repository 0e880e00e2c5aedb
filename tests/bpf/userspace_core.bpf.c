// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* CO-RE relocations on kernel UAPI types (the kernel resolves them against its
 * BTF, user space against the object's own: same answers), for
 * tests/test_userspace_core.py. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

__u64 out[8] = {};

SEC("xdp")
int core_xdp(struct xdp_md *ctx)
{
	out[0] = bpf_core_field_exists(ctx->rx_queue_index);
	out[1] = bpf_core_field_size(ctx->egress_ifindex);
	out[2] = bpf_core_type_size(struct xdp_md);
	out[3] = bpf_core_field_offset(ctx->rx_queue_index);
	out[4] = bpf_core_type_exists(struct xdp_md);
	out[5] = bpf_core_enum_value(enum xdp_action, XDP_TX);
	out[6] = bpf_core_enum_value_exists(enum xdp_action, XDP_REDIRECT);
	out[7] = ctx->data_end - ctx->data;
	return XDP_PASS;
}
