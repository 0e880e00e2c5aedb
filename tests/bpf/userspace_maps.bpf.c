// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Map helpers driven from the ctx, for the differential test of user-space
 * maps against kernel maps (tests/test_userspace_maps.py).  Every op returns
 * the helper's return code; lookups store the value in 'found'. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} pcpu_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} pcpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} lru SEC(".maps");

struct flow {
	__u32 saddr;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct stats {
	__u64 packets;
	__u64 bytes;
	char tag[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct flow);
	__type(value, struct stats);
} flows SEC(".maps");

struct map_args {
	__u32 map;   /* 0 hash, 1 array, 2 pcpu_array, 3 pcpu_hash, 4 lru */
	__u32 op;    /* 0 lookup, 1 update, 2 delete, 3 add in place */
	__u32 key;
	__u32 flags;
	__u64 value;
};

__u64 found = 0;

static void *pick(__u32 n)
{
	switch (n) {
	case 0: return &hash;
	case 1: return &array;
	case 2: return &pcpu_array;
	case 3: return &pcpu_hash;
	default: return &lru;
	}
}

SEC("syscall")
int map_op(struct map_args *ctx)
{
	__u32 key = ctx->key;
	__u64 value = ctx->value;
	void *m = pick(ctx->map);
	__u64 *v;

	found = 0;
	switch (ctx->op) {
	case 0:
		v = bpf_map_lookup_elem(m, &key);
		if (!v)
			return -2;
		found = *v;
		return 0;
	case 1:
		return bpf_map_update_elem(m, &key, &value, ctx->flags);
	case 2:
		return bpf_map_delete_elem(m, &key);
	case 3:
		v = bpf_map_lookup_elem(m, &key);
		if (!v)
			return -2;
		__sync_fetch_and_add(v, value);
		found = *v;
		return 1;
	}
	return -100;
}

/* Count a "packet" of ctx->value bytes for flow (key, port, proto): typed keys
 * and values written by the program, read from Python through BTF. */
SEC("syscall")
int count_flow(struct map_args *ctx)
{
	struct flow f = { .saddr = ctx->key, .port = ctx->flags & 0xffff, .proto = 6 };
	struct stats *s = bpf_map_lookup_elem(&flows, &f);

	if (!s) {
		struct stats init = { .packets = 1, .bytes = ctx->value, .tag = "new" };
		return bpf_map_update_elem(&flows, &f, &init, BPF_NOEXIST);
	}
	s->packets++;
	s->bytes += ctx->value;
	__builtin_memcpy(s->tag, "seen", 5);
	return 1;
}

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4);
	__type(value, __u64);
} fifo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 4);
	__type(value, __u64);
} lifo SEC(".maps");

/* op 0 push(value, flags), 1 pop, 2 peek on fifo (map 0) or lifo (map 1);
 * 'found' gets the popped/peeked value (zeroed when empty). */
SEC("raw_tp") /* queue and stack maps are not for sleepable programs */
int qs_op(struct map_args *ctx)
{
	void *m = ctx->map ? (void *)&lifo : (void *)&fifo;
	__u64 v = ctx->value;
	long rc;

	switch (ctx->op) {
	case 0:
		return bpf_map_push_elem(m, &v, ctx->flags);
	case 1:
		rc = bpf_map_pop_elem(m, &v);
		break;
	default:
		rc = bpf_map_peek_elem(m, &v);
		break;
	}
	found = v;
	return rc;
}

struct locked {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct locked);
} guarded SEC(".maps");

/* n += value under the element's spin lock; BPF_F_LOCK updates accepted. */
SEC("syscall")
int locked_add(struct map_args *ctx)
{
	__u32 key = ctx->key;
	struct locked *l = bpf_map_lookup_elem(&guarded, &key);

	if (!l)
		return -2;
	bpf_spin_lock(&l->lock);
	l->n += ctx->value;
	bpf_spin_unlock(&l->lock);
	return 0;
}

/* found = pcpu_array[key] on CPU ctx->flags (bpf_map_lookup_percpu_elem). */
SEC("syscall")
int percpu_get(struct map_args *ctx)
{
	__u32 key = ctx->key;
	__u64 *v = bpf_map_lookup_percpu_elem(&pcpu_array, &key, ctx->flags);

	found = v ? *v : 0;
	return v ? 0 : -2;
}
