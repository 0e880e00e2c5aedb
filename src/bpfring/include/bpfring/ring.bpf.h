/* SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause) */
/*
 * bpfring/ring.bpf.h - ring buffer helpers for BPF programs used with bpfring.
 *
 * The kernel cannot tell user space that a bpf_ringbuf_reserve() or
 * bpf_ringbuf_output() failed for lack of room: the record is simply lost.
 * Declare the ring with BPFRING_RINGBUF() and reserve with bpfring_reserve()
 * or bpfring_output(): every failure is counted in a per-CPU array named
 * <ring>__lost that bpfring's RingBuffer.lost sums up.
 *
 *   BPFRING_RINGBUF(events, 256 * 1024);
 *   struct event *e = bpfring_reserve(events, sizeof(*e), 0);
 *   if (!e) return 0;          // already counted as lost
 *   ...; bpf_ringbuf_submit(e, 0);
 */
#ifndef __BPFRING_RING_BPF_H
#define __BPFRING_RING_BPF_H

#include <bpf/bpf_helpers.h>

#ifndef BPF_RB_NO_WAKEUP
#define BPF_RB_NO_WAKEUP (1ULL << 0)
#define BPF_RB_FORCE_WAKEUP (1ULL << 1)
#endif

/* A kernel -> user ring of SIZE bytes plus its lost-record counter. */
#define BPFRING_RINGBUF(name, size)                                  \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                  \
		__uint(max_entries, (size));                         \
	} name SEC(".maps");                                         \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);             \
		__uint(max_entries, 1);                              \
		__type(key, __u32);                                  \
		__type(value, __u64);                                \
	} name##__lost SEC(".maps")

/* A user -> kernel ring of SIZE bytes. */
#define BPFRING_USER_RINGBUF(name, size)                             \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_USER_RINGBUF);             \
		__uint(max_entries, (size));                         \
	} name SEC(".maps")

static __always_inline void bpfring__count_lost(void *lost_map)
{
	__u32 zero = 0;
	__u64 *cnt = bpf_map_lookup_elem(lost_map, &zero);

	if (cnt)
		*cnt += 1; /* per-CPU slot: no atomics needed */
}

/* bpf_ringbuf_reserve() that counts failures; SIZE must be a constant. */
#define bpfring_reserve(ring, size, flags)                                   \
	({                                                                   \
		void *__rec = bpf_ringbuf_reserve(&ring, (size), (flags));   \
		if (!__rec)                                                  \
			bpfring__count_lost(&ring##__lost);                  \
		__rec;                                                       \
	})

/* bpf_ringbuf_output() that counts failures; returns the helper's result. */
#define bpfring_output(ring, data, size, flags)                              \
	({                                                                   \
		long __ret = bpf_ringbuf_output(&ring, (data), (size), (flags)); \
		if (__ret)                                                   \
			bpfring__count_lost(&ring##__lost);                  \
		__ret;                                                       \
	})

/* bpf_ringbuf_reserve_dynptr() that counts failures (variable-size records). */
#define bpfring_reserve_dynptr(ring, size, flags, dynptr)                    \
	({                                                                   \
		long __ret = bpf_ringbuf_reserve_dynptr(&ring, (size), (flags), (dynptr)); \
		if (__ret)                                                   \
			bpfring__count_lost(&ring##__lost);                  \
		__ret;                                                       \
	})

#endif /* __BPFRING_RING_BPF_H */
