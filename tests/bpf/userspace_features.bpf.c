// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* Helpers, subprograms, callbacks, rings and globals, for the differential
 * test of the user-space runtime against the kernel
 * (tests/test_userspace_features.py).  Results go to 'out' (.bss). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} vals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct event {
	__u32 seq;
	__u32 kind;
	__u64 value;
	char tag[8];
};

struct args {
	__u64 a;
	__u64 b;
	__u64 c;
};

const volatile __u32 knob = 3;
const char greeting[] = "hello";
__u64 out[8] = {};
char text[64] = {};
char small[8] = {};
char comm[16] = {};
__u32 calls_made = 100; /* .data */

/* --- bpf_loop ------------------------------------------------------------------ */

struct loop_ctx {
	__u64 sum;
	__u64 stop;
};

static long loop_cb(__u32 i, void *data)
{
	struct loop_ctx *c = data;

	c->sum += (__u64)i * knob;
	return i == c->stop;
}

SEC("syscall")
int loops(struct args *ctx)
{
	struct loop_ctx c = { .sum = 0, .stop = ctx->a };
	long n = bpf_loop(ctx->b, loop_cb, &c, 0);

	out[0] = n;
	out[1] = c.sum;
	out[2] = bpf_loop(1 << 24, loop_cb, &c, 0);
	out[3] = bpf_loop(1, loop_cb, &c, 1);
	return n;
}

/* --- bpf-to-bpf calls ---------------------------------------------------------- */

static __noinline __u64 leaf(__u64 x)
{
	volatile __u64 buf[8];
	__u64 s = 0;

	for (int i = 0; i < 8; i++)
		buf[i] = x * i;
	for (int i = 0; i < 8; i++)
		s += buf[i] ^ i;
	return s;
}

static __noinline __u64 mid(__u64 x)
{
	volatile __u64 local[4] = { x, x + 1, x + 2, x + 3 };

	return leaf(local[x & 3]) + local[0];
}

__noinline __u64 global_fn(__u64 x)
{
	return mid(x) * 2 + 1;
}

SEC("syscall")
int calls(struct args *ctx)
{
	out[0] = global_fn(ctx->a);
	out[1] = mid(ctx->b);
	calls_made++;
	return out[0] + out[1];
}

/* --- bpf_for_each_map_elem ------------------------------------------------------- */

struct each_ctx {
	__u64 sum;
	__u64 n;
	__u64 limit;
};

static long each_cb(struct bpf_map *map, __u32 *key, __u64 *val, struct each_ctx *c)
{
	c->sum += *val + *key * 1000;
	c->n++;
	*val += 1;
	return *val > c->limit;
}

SEC("raw_tp") /* for_each_map_elem: not in sleepable (syscall) programs */
int each(struct args *ctx)
{
	struct each_ctx c = { .limit = ctx->b };
	__u64 v;

	__u32 k;

	for (int i = 0; i < 8; i++) {
		k = i;
		v = i * ctx->a;
		bpf_map_update_elem(&vals, &k, &v, 0);
	}
	for (int i = 1; i <= 16; i++) {
		if (i > ctx->c)
			break;
		k = i;
		v = i * 3;
		bpf_map_update_elem(&counts, &k, &v, 0);
	}
	out[0] = bpf_for_each_map_elem(&vals, each_cb, &c, 0);
	out[1] = c.sum;
	out[2] = c.n;
	c.sum = 0;
	c.n = 0;
	c.limit = ~0ULL;
	out[3] = bpf_for_each_map_elem(&counts, each_cb, &c, 0);
	out[4] = c.sum;
	out[5] = bpf_for_each_map_elem(&counts, each_cb, &c, 1);
	return out[0];
}

/* --- ring buffer ----------------------------------------------------------------- */

SEC("syscall")
int ring(struct args *ctx)
{
	struct event *e, ev = {};
	__u32 n = ctx->a;
	int lost = 0;

	for (__u32 i = 0; i < n && i < 200; i++) {
		if (i % 3 == 2) {
			ev.seq = i;
			ev.kind = 1;
			ev.value = ctx->b + i;
			__builtin_memcpy(ev.tag, "output", 7);
			if (bpf_ringbuf_output(&events, &ev, sizeof(ev), 0))
				lost++;
			continue;
		}
		e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			lost++;
			continue;
		}
		e->seq = i;
		e->kind = 2;
		e->value = ctx->b * i;
		__builtin_memcpy(e->tag, "reserve", 8);
		if (i % 4 == 3)
			bpf_ringbuf_discard(e, 0);
		else
			bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	}
	out[0] = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	out[1] = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	out[2] = bpf_ringbuf_query(&events, BPF_RB_CONS_POS);
	out[3] = bpf_ringbuf_query(&events, BPF_RB_PROD_POS);
	e = bpf_ringbuf_reserve(&events, 8, 1); /* bad flags: NULL */
	if (e)
		bpf_ringbuf_discard(e, 0);
	out[4] = e != 0;
	out[5] = bpf_ringbuf_output(&events, &ev, sizeof(ev), 4); /* bad flags */
	out[6] = lost;
	return lost;
}

/* --- formatting ------------------------------------------------------------------ */

SEC("syscall")
int fmt(struct args *ctx)
{
	static const char f[] = "a=%d b=%u x=%x lx=%lx ld=%ld s=%s c=%c %% |%5d|%-5d|%05u|% d|%+d|";
	__u64 args[12] = { ctx->a, ctx->a, ctx->b, ctx->b, ctx->c, (__u64)greeting, 'Z',
			   ctx->a, ctx->a, ctx->c, ctx->a, ctx->a };

	out[0] = bpf_snprintf(text, sizeof(text), f, args, sizeof(args));
	out[1] = bpf_snprintf(small, sizeof(small), f, args, sizeof(args));
	out[2] = bpf_snprintf(0, 0, f, args, sizeof(args)); /* length only */
	out[5] = bpf_strncmp(text, 3, "a=1");
	out[6] = bpf_strncmp(text, 2, "a=");
	out[7] = bpf_strncmp(greeting, sizeof(greeting), "hellp");
	return out[0];
}

SEC("syscall")
int printk(struct args *ctx)
{
	return bpf_printk("printk %d %s", (int)ctx->a, greeting);
}

/* --- current task, user memory (raw_tp: the tracing helpers) --------------------- */

SEC("raw_tp")
int ids(__u64 *ctx)
{
	char buf[16] = {};

	out[0] = bpf_get_current_pid_tgid();
	out[1] = bpf_get_current_uid_gid();
	out[2] = bpf_get_current_comm(comm, sizeof(comm));
	out[3] = bpf_probe_read_user(&out[4], 8, (void *)ctx[0]);
	out[5] = bpf_probe_read_user_str(buf, sizeof(buf), (void *)ctx[1]);
	__builtin_memcpy(small, buf, 8);
	out[6] = bpf_probe_read_user(&out[7], 8, (void *)8); /* unmapped: -EFAULT, zeroed */
	return bpf_get_smp_processor_id();
}

SEC("syscall")
int clock(struct args *ctx)
{
	__u64 t0 = bpf_ktime_get_ns(), b0 = bpf_ktime_get_boot_ns();

	out[0] = t0;
	out[1] = bpf_ktime_get_ns() - t0;
	out[2] = b0;
	out[3] = bpf_get_prandom_u32();
	return 0;
}
