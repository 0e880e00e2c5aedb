/* SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause) */
/*
 * bpfring/bridge.bpf.h - apply map updates queued from Python through a user
 * ring buffer (bpfring.bridge.MapBridge on the Python side).
 *
 * Python writes update/delete operations into a BPF_MAP_TYPE_USER_RINGBUF
 * with plain stores into the mmapped ring (no system call per operation); a
 * drain running in the kernel applies them to the target map with
 * bpf_map_update_elem()/bpf_map_delete_elem().  One line adds a bridge to one
 * of your own maps (declared with __type(key, ...) and __type(value, ...)):
 *
 *   #include "vmlinux.h"               // or <linux/bpf.h>: before this header
 *   #include <bpf/bpf_helpers.h>
 *   #include <bpfring/bridge.bpf.h>
 *
 *   struct {
 *           __uint(type, BPF_MAP_TYPE_HASH);
 *           __uint(max_entries, 65536);
 *           __type(key, __u64);
 *           __type(value, struct limits);
 *   } limits SEC(".maps");
 *
 *   BPFRING_BRIDGE(limits, 1 << 20);    // 1 MiB of queued operations
 *
 * and the drain runs in one of three ways, chosen from Python:
 *
 *   flush      SEC("syscall") program <map>__flush, run by MapBridge.flush()
 *              through BPF_PROG_TEST_RUN: one system call applies everything
 *              queued;
 *   piggyback  call bpfring_bridge_drain(limits) from a program you already
 *              attach (tracepoint, XDP, ...): no system call at all;
 *   timer      a bpf_timer (armed by <map>__timer_on) drains periodically:
 *              no system call, latency about one period.
 *
 * BPFRING_BRIDGE_RESULTS(map, ring_size, results_size) does the same and also
 * declares a kernel ring buffer <map>__res through which the drain reports
 * per-operation results (struct bpfring_bridge_result) when Python asks for
 * them (MapBridge(..., report="failures" | "all")).
 *
 * What one BPFRING_BRIDGE(map, ...) declares (all names start with the map's):
 *   map__ops        USER_RINGBUF of ring_size bytes: the queued operations;
 *   map__bst        1-entry BPF_F_MMAPABLE array: counters and control words
 *                   (struct bpfring_bridge_state), read by Python without a
 *                   system call;
 *   map__btm        1-entry array holding the bpf_timer;
 *   map__bsc        1-entry array: the drain's scratch buffer (64 KiB);
 *   map__flush      SEC("syscall") program: drain everything now;
 *   map__timer_on   SEC("syscall") program: arm the periodic drain;
 *   map__timer_off  SEC("syscall") program: disarm it.
 *
 * Supported targets: HASH, LRU_HASH, ARRAY, PERCPU_HASH, LRU_PERCPU_HASH and
 * PERCPU_ARRAY.  An update of a per-CPU map writes the same value into every
 * CPU's slot (one slot after the other: not atomic across CPUs).  The flush
 * and timer programs are sleepable/syscall programs, so the target must be a
 * map type sleepable programs may use (the list above is).
 *
 * Wire format (the payload of one user ring sample, little endian; see
 * docs/bridge.md): a header, then COUNT operations of the same kind, keys
 * first, then values (deletes carry keys only), all packed:
 *
 *   struct bpfring_bridge_op (16 bytes) | COUNT keys | COUNT values
 *
 * One sample holds up to BPFRING_BRIDGE_DATA_MAX bytes of keys and values, so
 * a batch from MapBridge.update_many() costs one sample, not one per
 * operation: the drain copies it into a scratch buffer with one
 * bpf_dynptr_read() and applies the operations in a bpf_loop().  A sample
 * whose sizes do not match the map, with an unknown op or flags, is consumed
 * and counted as "bad" (once per operation) without touching the map.
 *
 * Build with -DBPFRING_BRIDGE_DISABLE (bpfring.bridge.load() does it on
 * kernels without user ring buffers) to compile the bridges out: the macros
 * then declare nothing, bpfring_bridge_drain() is 0, and MapBridge falls back
 * to bpf() system calls.
 */
#ifndef __BPFRING_BRIDGE_BPF_H
#define __BPFRING_BRIDGE_BPF_H

#include <bpf/bpf_helpers.h>
#include <bpfring/ring.bpf.h>

/* Operation codes (struct bpfring_bridge_op.op). */
#define BPFRING_BRIDGE_UPDATE 1
#define BPFRING_BRIDGE_DELETE 2

/* Header of one sample: COUNT operations of the same kind follow it. */
struct bpfring_bridge_op {
	__u8 op;          /* BPFRING_BRIDGE_UPDATE or BPFRING_BRIDGE_DELETE */
	__u8 flags;       /* update: BPF_ANY, BPF_NOEXIST, BPF_EXIST (| BPF_F_LOCK) */
	__u16 key_size;   /* must equal the map's key size */
	__u32 value_size; /* update: the map's value size; delete: 0 */
	__u32 count;      /* operations in this sample, >= 1 */
	__u32 reserved;   /* 0 */
};

/* Most bytes of keys and values in one sample, and the scratch buffer they
 * are copied to (twice as large, so masked offsets stay inside for the
 * verifier). */
#define BPFRING_BRIDGE_DATA_MAX 32768
#define BPFRING_BRIDGE_SCRATCH (2 * BPFRING_BRIDGE_DATA_MAX)

/* Per-bridge counters and control words (one mmapable array element).
 * Counters are written by the drain only (one drain runs at a time: the
 * kernel serialises bpf_user_ringbuf_drain callbacks), the control words by
 * user space only.  Python reads this through mmap: keep the layout in sync
 * with bpfring/bridge.py (_STATE_FIELDS). */
struct bpfring_bridge_state {
	__u64 seq;          /* operations consumed (index of the next one) */
	__u64 applied;      /* operations that succeeded */
	__u64 updated;      /* ... of which updates */
	__u64 deleted;      /* ... of which deletes */
	__u64 err_noent;    /* failed with -ENOENT (EXIST on a missing key, delete missing) */
	__u64 err_exist;    /* failed with -EEXIST (NOEXIST on a present key) */
	__u64 err_2big;     /* failed with -E2BIG (map full, index out of range) */
	__u64 err_nomem;    /* failed with -ENOMEM */
	__u64 err_inval;    /* failed with -EINVAL (e.g. bad flags for the map type) */
	__u64 err_other;    /* failed with any other error */
	__u64 bad;          /* operations in malformed samples: map untouched */
	__u64 batches;      /* drain calls that consumed at least one sample */
	__u64 drains;       /* drain calls */
	__u64 drain_busy;   /* drain calls that found another drain running (-EBUSY) */
	__u64 drain_errors; /* drain calls that failed otherwise (corrupt ring) */
	__s64 last_error;   /* last negative errno of an operation or a drain */
	__u64 timer_ticks;  /* periodic drains run by the timer */
	__u64 reserved[7];
	/* control words, written by user space */
	__u32 want_wakeup;  /* 1: a producer waits in epoll, drain with wakeups */
	__u32 report;       /* results ring: 0 off, 1 failures, 2 every operation */
	__u32 budget;       /* timer/piggyback: operations per drain, about (0: no limit) */
	__u32 ctl_reserved[5];
};

/* One per-operation result in <map>__res. */
struct bpfring_bridge_result {
	__u64 seq;   /* index of the operation (bpfring_bridge_state.seq when drained) */
	__s32 error; /* 0 or a negative errno; -EBADMSG for a malformed sample */
	__u8 op;
	__u8 flags;
	__u16 reserved;
};

/* ctx of <map>__flush (BPF_PROG_TEST_RUN copies it back to user space). */
struct bpfring_bridge_flush {
	__s64 drained; /* operations consumed by this flush */
	__u64 applied; /* ... that succeeded */
	__u64 failed;  /* ... that failed */
	__u64 bad;     /* ... that were malformed */
	__s64 error;   /* 0, or the drain's negative errno (-EBUSY: another drain ran) */
};

/* ctx of <map>__timer_on. */
struct bpfring_bridge_timer_args {
	__u64 period_ns;
};

struct bpfring_bridge_timer {
	struct bpf_timer timer;
	__u64 period_ns; /* 0: do not re-arm */
};

#ifndef BPFRING_BRIDGE_DISABLE

#ifndef BPF_RB_NO_WAKEUP
#define BPF_RB_NO_WAKEUP (1ULL << 0)
#endif
#define BPFRING__BRIDGE_MAX_CPUS 8192
#define BPFRING__BRIDGE_CLOCK_MONOTONIC 1
#define BPFRING__BRIDGE_EBADMSG 74
#define BPFRING__BRIDGE_EBUSY 16

/* The map type, key and value sizes of a libbpf BTF-defined map, as
 * compile-time constants: __uint(type, N) declares `int (*type)[N]` and
 * __type(key, T) declares `T *key`. */
#define BPFRING__MAP_TYPE(map) (sizeof(*(map).type) / sizeof(int))
#define BPFRING__KEY_SIZE(map) sizeof(*(map).key)
#define BPFRING__VALUE_SIZE(map) sizeof(*(map).value)
#define BPFRING__IS_PERCPU(t) ((t) == 5 || (t) == 6 || (t) == 10) /* PERCPU_HASH/ARRAY, LRU_PERCPU */

/* State shared by the callbacks of one drain call (lives on the caller's stack). */
struct bpfring__bridge_dctx {
	struct bpfring_bridge_state *st;
	char *scratch;
	__u64 n;       /* operations seen by this call */
	__u64 applied;
	__u64 failed;
	__u64 bad;
	__u64 budget;  /* stop after the sample that reaches this many (0: no limit) */
};

/* State of the loop over the operations of one sample: the hot path keeps its
 * tallies here (on the stack) and folds them into the counters per sample. */
struct bpfring__bridge_ectx {
	char *scratch;
	struct bpfring_bridge_state *st;
	__u64 seq;    /* index of the sample's first operation */
	__u64 ok;     /* operations of this sample that succeeded */
	__u64 failed; /* ... that failed */
	__u32 op;
	__u32 flags;
	__u32 values; /* offset of the first value: count * key size */
};

/* ctx of the per-CPU copy loop. */
struct bpfring__bridge_pcpu {
	const void *key;
	const void *val;
};

static __always_inline void bpfring__bridge_count_error(struct bpfring_bridge_state *st, long err)
{
	switch (-err) {
	case 2: st->err_noent++; break;   /* ENOENT */
	case 17: st->err_exist++; break;  /* EEXIST */
	case 7: st->err_2big++; break;    /* E2BIG */
	case 12: st->err_nomem++; break;  /* ENOMEM */
	case 22: st->err_inval++; break;  /* EINVAL */
	default: st->err_other++; break;
	}
	st->last_error = err;
}

/* Check one sample's header and copy its keys and values into the scratch
 * buffer.  Returns the number of operations, or -EBADMSG (after counting the sample's
 * operations as bad) when the sample does not describe this map. */
static __always_inline long
bpfring__bridge_load(const struct bpf_dynptr *d, struct bpfring__bridge_dctx *c,
		     struct bpfring_bridge_op *op, const __u32 ks, const __u32 vs)
{
	struct bpfring_bridge_state *st = c->st;
	__u32 esize, len, count = 1;

	if (bpf_dynptr_read(op, sizeof(*op), d, 0, 0))
		goto bad;
	count = op->count ? op->count : 1;
	if (op->key_size != ks || op->reserved || !op->count)
		goto bad;
	if (op->op == BPFRING_BRIDGE_UPDATE) {
		if (op->value_size != vs || (op->flags & ~7))
			goto bad;
		esize = ks + vs;
	} else if (op->op == BPFRING_BRIDGE_DELETE) {
		if (op->value_size || op->flags)
			goto bad;
		esize = ks;
	} else {
		goto bad;
	}
	if (op->count > BPFRING_BRIDGE_DATA_MAX / esize)
		goto bad;
	len = op->count * esize;
	asm volatile("" : "+r"(len)); /* keep the mask: the verifier needs the bound */
	len &= BPFRING_BRIDGE_SCRATCH - 1;
	if (bpf_dynptr_read(c->scratch, len, d, sizeof(*op), 0))
		goto bad; /* shorter than the header says */
	return op->count;
bad:
	if (count > BPFRING_BRIDGE_DATA_MAX)
		count = 1;
	st->seq += count;
	st->bad += count;
	c->n += count;
	c->bad += count;
	st->last_error = -BPFRING__BRIDGE_EBADMSG;
	return -BPFRING__BRIDGE_EBADMSG;
}

/* Apply operation I of the sample in the scratch buffer (key I of KS bytes,
 * for UPDATE also value I of VS bytes after all the keys).  Sizes, map type and callbacks are
 * compile-time constants, so the verifier sees constant-size accesses and no
 * per-CPU code for other maps.  Returns 0 or the map operation's -errno. */
static __always_inline long
bpfring__bridge_apply(__u32 i, struct bpfring__bridge_ectx *e, void *map, const __u32 ks,
		      const __u32 vs, const __u32 type, void *pcpu_cb)
{
	__u32 off = i * ks, voff = e->values + i * vs;
	const char *key, *val;
	long err;

	/* No-op masks (count * (ks + vs) <= DATA_MAX) that give the verifier
	 * bounds; the asm keeps clang from folding them away. */
	asm volatile("" : "+r"(off));
	off &= BPFRING_BRIDGE_DATA_MAX - 1;
	key = e->scratch + off;
	if (e->op == BPFRING_BRIDGE_UPDATE) {
		asm volatile("" : "+r"(voff));
		voff &= BPFRING_BRIDGE_DATA_MAX - 1;
		val = e->scratch + voff;
		err = bpf_map_update_elem(map, key, val, e->flags);
		if (BPFRING__IS_PERCPU(type) && !err) {
			/* From BPF an update writes this CPU's slot only (and zeroes
			 * the others of a new hash element): copy the value into
			 * every possible CPU's slot. */
			struct bpfring__bridge_pcpu pc = { .key = key, .val = val };

			bpf_loop(BPFRING__BRIDGE_MAX_CPUS, pcpu_cb, &pc, 0);
		}
	} else {
		err = bpf_map_delete_elem(map, key);
	}
	if (err) {
		bpfring__bridge_count_error(e->st, err);
		e->failed++;
	} else {
		e->ok++;
	}
	return err;
}

/* Fold one sample's tallies into the counters (we hold the drain). */
static __always_inline void bpfring__bridge_tally(struct bpfring__bridge_dctx *c,
						   struct bpfring__bridge_ectx *e, __u32 op,
						   __u32 count)
{
	struct bpfring_bridge_state *st = c->st;

	st->seq += count;
	st->applied += e->ok;
	if (op == BPFRING_BRIDGE_UPDATE)
		st->updated += e->ok;
	else
		st->deleted += e->ok;
	c->n += count;
	c->applied += e->ok;
	c->failed += e->failed;
}

static __always_inline void bpfring__bridge_account(struct bpfring_bridge_state *st, long n)
{
	__sync_fetch_and_add(&st->drains, 1);
	if (n > 0)
		__sync_fetch_and_add(&st->batches, 1);
	else if (n == -BPFRING__BRIDGE_EBUSY)
		__sync_fetch_and_add(&st->drain_busy, 1);
	else if (n < 0) {
		__sync_fetch_and_add(&st->drain_errors, 1);
		st->last_error = n;
	}
}

/* No per-operation results: nothing to emit. */
#define BPFRING__BRIDGE_EMIT_NONE(map, st, seq_, op_, flags_, err) do { } while (0)

/* Emit a result when user space asked for it (report 1: failures, 2: all). */
#define BPFRING__BRIDGE_EMIT_RING(map, st, seq_, op_, flags_, err)                \
	do {                                                                     \
		if ((st)->report > ((err) ? 0 : 1)) {                            \
			struct bpfring_bridge_result __res = {                   \
				.seq = (seq_), .error = (err), .op = (op_),      \
				.flags = (flags_),                               \
			};                                                       \
			bpfring_output(map##__res, &__res, sizeof(__res), 0);    \
		}                                                                \
	} while (0)

#define BPFRING__BRIDGE(map, ring_size, EMIT)                                              \
	BPFRING_USER_RINGBUF(map##__ops, ring_size);                                       \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                          \
		__uint(max_entries, 1);                                                    \
		__uint(map_flags, 1024); /* BPF_F_MMAPABLE */                              \
		__type(key, __u32);                                                        \
		__type(value, struct bpfring_bridge_state);                                \
	} map##__bst SEC(".maps");                                                         \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                          \
		__uint(max_entries, 1);                                                    \
		__type(key, __u32);                                                        \
		__type(value, struct bpfring_bridge_timer);                                \
	} map##__btm SEC(".maps");                                                         \
	/* One buffer per bridge, not per CPU: drains of one ring never overlap. */       \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                          \
		__uint(max_entries, 1);                                                    \
		__type(key, __u32);                                                        \
		__type(value, char[BPFRING_BRIDGE_SCRATCH]);                               \
	} map##__bsc SEC(".maps");                                                         \
	_Static_assert(BPFRING__KEY_SIZE(map) + BPFRING__VALUE_SIZE(map) <=                \
		       BPFRING_BRIDGE_DATA_MAX, "bridge: key + value above 32 KiB");       \
                                                                                           \
	static long map##__bridge_pcpu(__u32 cpu, void *ctx)                               \
	{                                                                                  \
		struct bpfring__bridge_pcpu *pc = ctx;                                     \
		void *slot = bpf_map_lookup_percpu_elem(&map, pc->key, cpu);               \
                                                                                           \
		if (!slot)                                                                 \
			return 1; /* past the last possible CPU */                         \
		bpf_probe_read_kernel(slot, BPFRING__VALUE_SIZE(map), pc->val);            \
		return 0;                                                                  \
	}                                                                                  \
                                                                                           \
	/* One callback for updates and deletes: with a single callback the    \
	 * verifier inlines the bpf_loop (two would be merged into one call     \
	 * site by clang, which the verifier then does not inline). */          \
	static long map##__bridge_entry(__u32 i, void *ctx)                                \
	{                                                                                  \
		struct bpfring__bridge_ectx *e = ctx;                                      \
		long err = bpfring__bridge_apply(i, e, &map, BPFRING__KEY_SIZE(map),       \
						 BPFRING__VALUE_SIZE(map),                 \
						 BPFRING__MAP_TYPE(map), map##__bridge_pcpu); \
                                                                                           \
		EMIT(map, e->st, e->seq + i, e->op, e->flags, err);                        \
		return 0;                                                                  \
	}                                                                                  \
                                                                                           \
	static long map##__bridge_cb(struct bpf_dynptr *d, void *ctx)                      \
	{                                                                                  \
		struct bpfring__bridge_dctx *c = ctx;                                      \
		struct bpfring_bridge_op op;                                               \
		struct bpfring__bridge_ectx e = {                                          \
			.scratch = c->scratch, .st = c->st, .seq = c->st->seq,             \
		};                                                                         \
		long n = bpfring__bridge_load(d, c, &op, BPFRING__KEY_SIZE(map),           \
					      BPFRING__VALUE_SIZE(map));                   \
                                                                                           \
		if (n > 0) {                                                               \
			e.op = op.op;                                                      \
			e.flags = op.flags;                                                \
			e.values = n * BPFRING__KEY_SIZE(map);                             \
			bpf_loop(n, map##__bridge_entry, &e, 0);                           \
			bpfring__bridge_tally(c, &e, op.op, n);                            \
		} else {                                                                   \
			EMIT(map, c->st, c->st->seq - 1, op.op, op.flags, n);              \
		}                                                                          \
		return c->budget && c->n >= c->budget;                                     \
	}                                                                                  \
                                                                                           \
	/* One drain call with the caller's accumulator; returns the drain's result. */   \
	static __always_inline long map##__bridge_drain_into(struct bpfring__bridge_dctx *c, \
							      __u64 budget)               \
	{                                                                                  \
		__u32 zero = 0;                                                            \
		struct bpfring_bridge_state *st = bpf_map_lookup_elem(&map##__bst, &zero); \
		char *scratch = bpf_map_lookup_elem(&map##__bsc, &zero);                   \
		long n;                                                                    \
                                                                                           \
		if (!st || !scratch)                                                       \
			return 0;                                                          \
		c->st = st;                                                                \
		c->scratch = scratch;                                                      \
		c->n = 0;                                                                  \
		c->budget = budget;                                                        \
		n = bpf_user_ringbuf_drain(&map##__ops, map##__bridge_cb, c,               \
					   st->want_wakeup ? 0 : BPF_RB_NO_WAKEUP);        \
		bpfring__bridge_account(st, n);                                            \
		return n < 0 ? n : (long)c->n;                                             \
	}                                                                                  \
                                                                                           \
	/* Piggyback entry: drain up to the budget Python set (state.budget). */          \
	static __always_inline long map##__bridge_drain(void)                              \
	{                                                                                  \
		struct bpfring__bridge_dctx c = {};                                        \
		__u32 zero = 0;                                                            \
		struct bpfring_bridge_state *st = bpf_map_lookup_elem(&map##__bst, &zero); \
                                                                                           \
		return map##__bridge_drain_into(&c, st ? st->budget : 0);                  \
	}                                                                                  \
                                                                                           \
	SEC("syscall")                                                                     \
	int map##__flush(struct bpfring_bridge_flush *args)                                \
	{                                                                                  \
		struct bpfring__bridge_dctx c = {};                                        \
		long n = map##__bridge_drain_into(&c, 0);                                  \
                                                                                           \
		args->drained = c.n;                                                       \
		args->applied = c.applied;                                                 \
		args->failed = c.failed;                                                   \
		args->bad = c.bad;                                                         \
		args->error = n < 0 ? n : 0;                                               \
		return n < 0 ? n : 0;                                                      \
	}                                                                                  \
                                                                                           \
	static int map##__bridge_tick(void *m, __u32 *key, struct bpfring_bridge_timer *t) \
	{                                                                                  \
		struct bpfring__bridge_dctx c = {};                                        \
		__u32 zero = 0;                                                            \
		struct bpfring_bridge_state *st = bpf_map_lookup_elem(&map##__bst, &zero); \
                                                                                           \
		if (st) {                                                                  \
			map##__bridge_drain_into(&c, st->budget);                          \
			__sync_fetch_and_add(&st->timer_ticks, 1);                         \
		}                                                                          \
		if (t->period_ns)                                                          \
			bpf_timer_start(&t->timer, t->period_ns, 0);                       \
		return 0;                                                                  \
	}                                                                                  \
                                                                                           \
	SEC("syscall")                                                                     \
	int map##__timer_on(struct bpfring_bridge_timer_args *args)                        \
	{                                                                                  \
		__u64 period = args->period_ns;                                            \
		__u32 zero = 0;                                                            \
		struct bpfring_bridge_timer *t = bpf_map_lookup_elem(&map##__btm, &zero);  \
		long err;                                                                  \
                                                                                           \
		if (!t || !period)                                                         \
			return -22; /* EINVAL */                                           \
		err = bpf_timer_init(&t->timer, &map##__btm,                               \
				     BPFRING__BRIDGE_CLOCK_MONOTONIC);                     \
		if (err && err != -BPFRING__BRIDGE_EBUSY) /* -EBUSY: already set up */    \
			return err;                                                        \
		err = bpf_timer_set_callback(&t->timer, map##__bridge_tick);               \
		if (err)                                                                   \
			return err;                                                        \
		t->period_ns = period;                                                     \
		return bpf_timer_start(&t->timer, period, 0);                              \
	}                                                                                  \
                                                                                           \
	SEC("syscall")                                                                     \
	int map##__timer_off(void *ctx)                                                    \
	{                                                                                  \
		__u32 zero = 0;                                                            \
		struct bpfring_bridge_timer *t = bpf_map_lookup_elem(&map##__btm, &zero);  \
                                                                                           \
		if (!t)                                                                    \
			return -22;                                                        \
		t->period_ns = 0;                                                          \
		bpf_timer_cancel(&t->timer);                                               \
		return 0;                                                                  \
	}                                                                                  \
	struct bpfring__bridge_##map##_end /* swallows the caller's ';' */

/* A bridge for MAP with a user ring of RING_SIZE bytes (a power of two, at
 * least one page; a sample of n operations takes 24 + n * (key + value)
 * bytes rounded up to 8, with at most 32 KiB of keys and values). */
#define BPFRING_BRIDGE(map, ring_size) BPFRING__BRIDGE(map, ring_size, BPFRING__BRIDGE_EMIT_NONE)

/* The same, plus a kernel ring of RESULTS_SIZE bytes for per-operation results. */
#define BPFRING_BRIDGE_RESULTS(map, ring_size, results_size)                        \
	BPFRING_RINGBUF(map##__res, results_size);                                   \
	BPFRING__BRIDGE(map, ring_size, BPFRING__BRIDGE_EMIT_RING)

/* Piggyback: apply MAP's queued operations from any program; returns the
 * number of operations consumed or a negative errno (-EBUSY: another drain
 * is running and will apply them). */
#define bpfring_bridge_drain(map) map##__bridge_drain()

#else /* BPFRING_BRIDGE_DISABLE: compiled out, Python falls back to bpf() calls */

#define BPFRING_BRIDGE(map, ring_size) struct bpfring__bridge_##map##_disabled
#define BPFRING_BRIDGE_RESULTS(map, ring_size, results_size) \
	struct bpfring__bridge_##map##_disabled
#define bpfring_bridge_drain(map) ((long)0)

#endif /* BPFRING_BRIDGE_DISABLE */

#endif /* __BPFRING_BRIDGE_BPF_H */
