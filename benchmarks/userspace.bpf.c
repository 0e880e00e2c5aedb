// SPDX-License-Identifier: Apache-2.0
/* The program of `bpfring bench userspace`: loop-free, straight-line mixing
 * of two u64 from the ctx (add, xor, rotate, multiply, a stack store and
 * load per block), so DPDK's validator (which refuses loops) takes it and
 * every engine runs the same instructions. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct args {
    __u64 a, b;
};

#define BLOCK(i)                                                                           \
    do {                                                                                   \
        a += b;                                                                            \
        b ^= a;                                                                            \
        a = (a << 13) | (a >> 51);                                                         \
        b *= 0x3b9aca07;                                                                   \
        slot[(i) & 3] = b;                                                                 \
        a += (i) + 1;                                                                      \
        c ^= (__u32)a;                                                                     \
        b -= c;                                                                            \
        a ^= slot[(i) & 3];                                                                \
    } while (0)
#define B4(i) BLOCK(i); BLOCK(i + 1); BLOCK(i + 2); BLOCK(i + 3)
#define B16(i) B4(i); B4(i + 4); B4(i + 8); B4(i + 12)
#define B64(i) B16(i); B16(i + 16); B16(i + 32); B16(i + 48)

SEC("syscall")
int mix(struct args *ctx)
{
    volatile __u64 slot[4];
    __u64 a = ctx->a, b = ctx->b;
    __u32 c = 0x1234;

    B64(0); B64(64); B64(128); B64(192);
    return (int)(a ^ b ^ (a >> 32) ^ (b >> 32));
}

/* The same entry with nothing to run: what a run costs around the loop. */
SEC("syscall")
int empty(struct args *ctx)
{
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
