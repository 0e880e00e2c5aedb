// SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)
/* ALU, JMP, load/store and atomic semantics, one instruction (or a short
 * fixed sequence) per case, for the differential test of the user-space
 * interpreter against the kernel (tests/test_userspace_isa.py).
 *
 * Every case starts with r0 = a, r1 = b, r2 = &scratch (scratch is zero) and
 * leaves its result in r0; result2 is scratch afterwards (atomics).  Cases
 * are written as instructions so the compiler cannot fold them; the ones
 * clang 14's assembler cannot spell (mod, and the ISA v4 additions: sdiv,
 * smod, movsx, ldsx, bswap, gotol) are spelled as raw 8-byte .quad words
 * (code, dst | src << 4, off, imm).  The case list is generated; keep the
 * numbering stable, the test refers to cases by their comment. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct alu_args {
	__u32 op;
	__u32 pad;
	__u64 a;
	__u64 b;
};

__u64 result = 0;
__u64 result2 = 0;
__u64 scratch = 0;

#define OP(n, body)                                                              \
	case n:                                                                  \
		asm volatile("r0 = %[a]; r1 = %[b]; r2 = %[p]; " body "; %[r] = r0"   \
			     : [r] "=r"(r)                                        \
			     : [a] "r"(a), [b] "r"(b), [p] "r"(&scratch)          \
			     : "r0", "r1", "r2", "r3", "memory");                 \
		break;

SEC("syscall")
int alu(struct alu_args *ctx)
{
	__u64 a = ctx->a, b = ctx->b, r = 0;

	scratch = 0;
	switch (ctx->op) {
	OP(0, "r0 += r1") /* add64 reg */
	OP(1, "r0 -= r1") /* sub64 reg */
	OP(2, "r0 *= r1") /* mul64 reg */
	OP(3, "r0 /= r1") /* div64 reg */
	OP(4, "r0 |= r1") /* or64 reg */
	OP(5, "r0 &= r1") /* and64 reg */
	OP(6, "r0 <<= r1") /* lsh64 reg */
	OP(7, "r0 >>= r1") /* rsh64 reg */
	OP(8, "r0 = -r0") /* neg64 */
	OP(9, ".quad 0x109f") /* mod64 reg */
	OP(10, "r0 ^= r1") /* xor64 reg */
	OP(11, "r0 = r1") /* mov64 reg */
	OP(12, "r0 s>>= r1") /* arsh64 reg */
	OP(13, "w0 += w1") /* add32 reg */
	OP(14, "w0 -= w1") /* sub32 reg */
	OP(15, "w0 *= w1") /* mul32 reg */
	OP(16, "w0 /= w1") /* div32 reg */
	OP(17, "w0 |= w1") /* or32 reg */
	OP(18, "w0 &= w1") /* and32 reg */
	OP(19, "w0 <<= w1") /* lsh32 reg */
	OP(20, "w0 >>= w1") /* rsh32 reg */
	OP(21, "w0 = -w0") /* neg32 */
	OP(22, ".quad 0x109c") /* mod32 reg */
	OP(23, "w0 ^= w1") /* xor32 reg */
	OP(24, "w0 = w1") /* mov32 reg */
	OP(25, "w0 s>>= w1") /* arsh32 reg */
	OP(26, "r0 += -1") /* 64 imm: r0 += -1 */
	OP(27, "r0 -= 2147483647") /* 64 imm: r0 -= 2147483647 */
	OP(28, "r0 *= -3") /* 64 imm: r0 *= -3 */
	OP(29, "r0 /= -3") /* 64 imm: r0 /= -3 */
	OP(30, "r0 /= 7") /* 64 imm: r0 /= 7 */
	OP(31, "r0 |= -2147483648") /* 64 imm: r0 |= -2147483648 */
	OP(32, "r0 &= 2147483632") /* 64 imm: r0 &= 2147483632 */
	OP(33, "r0 <<= 63") /* 64 imm: r0 <<= 63 */
	OP(34, "r0 >>= 1") /* 64 imm: r0 >>= 1 */
	OP(35, "r0 s>>= 63") /* 64 imm: r0 s>>= 63 */
	OP(36, "r0 ^= -1") /* 64 imm: r0 ^= -1 */
	OP(37, "r0 = -1") /* 64 imm: r0 = -1 */
	OP(38, "r0 &= 255") /* 64 imm: r0 &= 255 */
	OP(39, ".quad 0x700000097") /* mod64 imm 7 */
	OP(40, ".quad 0xfffffffd00000097") /* mod64 imm -3 */
	OP(41, "w0 += -1") /* 32 imm: w0 += -1 */
	OP(42, "w0 -= 2147483647") /* 32 imm: w0 -= 2147483647 */
	OP(43, "w0 *= -3") /* 32 imm: w0 *= -3 */
	OP(44, "w0 /= -3") /* 32 imm: w0 /= -3 */
	OP(45, "w0 /= 7") /* 32 imm: w0 /= 7 */
	OP(46, "w0 |= -2147483648") /* 32 imm: w0 |= -2147483648 */
	OP(47, "w0 &= 2147483632") /* 32 imm: w0 &= 2147483632 */
	OP(48, "w0 <<= 31") /* 32 imm: w0 <<= 31 */
	OP(49, "w0 >>= 1") /* 32 imm: w0 >>= 1 */
	OP(50, "w0 s>>= 31") /* 32 imm: w0 s>>= 31 */
	OP(51, "w0 ^= -1") /* 32 imm: w0 ^= -1 */
	OP(52, "w0 = -1") /* 32 imm: w0 = -1 */
	OP(53, "w0 &= 255") /* 32 imm: w0 &= 255 */
	OP(54, ".quad 0x700000094") /* mod32 imm 7 */
	OP(55, ".quad 0xfffffffd00000094") /* mod32 imm -3 */
	OP(56, "r0 = be16 r0") /* be16 */
	OP(57, "r0 = le16 r0") /* le16 */
	OP(58, ".quad 0x10000000d7") /* bswap16 (v4) */
	OP(59, "r0 = be32 r0") /* be32 */
	OP(60, "r0 = le32 r0") /* le32 */
	OP(61, ".quad 0x20000000d7") /* bswap32 (v4) */
	OP(62, "r0 = be64 r0") /* be64 */
	OP(63, "r0 = le64 r0") /* le64 */
	OP(64, ".quad 0x40000000d7") /* bswap64 (v4) */
	OP(65, ".quad 0x1103f") /* sdiv64 reg */
	OP(66, ".quad 0x1109f") /* smod64 reg */
	OP(67, ".quad 0x1103c") /* sdiv32 reg */
	OP(68, ".quad 0x1109c") /* smod32 reg */
	OP(69, ".quad 0xfffffffd00010037") /* sdiv64 imm -3 */
	OP(70, ".quad 0xfffffffd00010097") /* smod64 imm -3 */
	OP(71, ".quad 0xfffffffd00010034") /* sdiv32 imm -3 */
	OP(72, ".quad 0x700010094") /* smod32 imm 7 */
	OP(73, ".quad 0xffffffff00010037") /* sdiv64 imm -1 */
	OP(74, ".quad 0xffffffff00010094") /* smod32 imm -1 */
	OP(75, ".quad 0x810bf") /* movsx64 s8 */
	OP(76, ".quad 0x1010bf") /* movsx64 s16 */
	OP(77, ".quad 0x2010bf") /* movsx64 s32 */
	OP(78, ".quad 0x810bc") /* movsx32 s8 */
	OP(79, ".quad 0x1010bc") /* movsx32 s16 */
	OP(80, "*(u64 *)(r2 + 0) = r0; .quad 0x2091") /* ldxsb (v4) */
	OP(81, "*(u64 *)(r2 + 0) = r0; .quad 0x2089") /* ldxsh (v4) */
	OP(82, "*(u64 *)(r2 + 0) = r0; .quad 0x2081") /* ldxsw (v4) */
	OP(83, "*(u64 *)(r2 + 0) = r0; r0 = *(u8 *)(r2 + 0)") /* ldx u8 */
	OP(84, "*(u64 *)(r2 + 0) = r0; r0 = *(u16 *)(r2 + 0)") /* ldx u16 */
	OP(85, "*(u64 *)(r2 + 0) = r0; r0 = *(u32 *)(r2 + 0)") /* ldx u32 */
	OP(86, "*(u64 *)(r2 + 0) = r0; r0 = *(u64 *)(r2 + 0)") /* ldx u64 */
	OP(87, "*(u64 *)(r2 + 0) = r0; *(u8 *)(r2 + 1) = r1; *(u16 *)(r2 + 4) = r1; *(u32 *)(r2 + 0) = r1; r0 = *(u64 *)(r2 + 0)") /* store u8/u16/u32 then load u64 */
	OP(88, "*(u64 *)(r2 + 0) = r0; .quad 0xfffffffe00040262; .quad 0x70000026a; .quad 0xffffffff00030272; r0 = *(u64 *)(r2 + 0)") /* st imm */
	OP(89, ".quad 0xfffffffb0000027a; r0 = *(u64 *)(r2 + 0)") /* st imm dw */
	OP(90, "r3 = 1; if r0 == r1 goto +1; .quad 0x100000006; r3 = 0; r0 = r3") /* gotol (v4) */
	OP(91, "r3 = 1; if r0 == r1 goto +1; r3 = 0; r0 = r3") /* if r0 == r1 */
	OP(92, "r3 = 1; if r0 > r1 goto +1; r3 = 0; r0 = r3") /* if r0 > r1 */
	OP(93, "r3 = 1; if r0 >= r1 goto +1; r3 = 0; r0 = r3") /* if r0 >= r1 */
	OP(94, "r3 = 1; .quad 0x1104d; r3 = 0; r0 = r3") /* if r0 & r1 */
	OP(95, "r3 = 1; if r0 != r1 goto +1; r3 = 0; r0 = r3") /* if r0 != r1 */
	OP(96, "r3 = 1; if r0 s> r1 goto +1; r3 = 0; r0 = r3") /* if r0 s> r1 */
	OP(97, "r3 = 1; if r0 s>= r1 goto +1; r3 = 0; r0 = r3") /* if r0 s>= r1 */
	OP(98, "r3 = 1; if r0 < r1 goto +1; r3 = 0; r0 = r3") /* if r0 < r1 */
	OP(99, "r3 = 1; if r0 <= r1 goto +1; r3 = 0; r0 = r3") /* if r0 <= r1 */
	OP(100, "r3 = 1; if r0 s< r1 goto +1; r3 = 0; r0 = r3") /* if r0 s< r1 */
	OP(101, "r3 = 1; if r0 s<= r1 goto +1; r3 = 0; r0 = r3") /* if r0 s<= r1 */
	OP(102, "r3 = 1; if r0 == -2 goto +1; r3 = 0; r0 = r3") /* if r0 == -2 */
	OP(103, "r3 = 1; if r0 > -2 goto +1; r3 = 0; r0 = r3") /* if r0 > -2 */
	OP(104, "r3 = 1; if r0 >= -2 goto +1; r3 = 0; r0 = r3") /* if r0 >= -2 */
	OP(105, "r3 = 1; .quad 0xfffffffe00010045; r3 = 0; r0 = r3") /* if r0 & -2 */
	OP(106, "r3 = 1; if r0 != -2 goto +1; r3 = 0; r0 = r3") /* if r0 != -2 */
	OP(107, "r3 = 1; if r0 s> -2 goto +1; r3 = 0; r0 = r3") /* if r0 s> -2 */
	OP(108, "r3 = 1; if r0 s>= -2 goto +1; r3 = 0; r0 = r3") /* if r0 s>= -2 */
	OP(109, "r3 = 1; if r0 < -2 goto +1; r3 = 0; r0 = r3") /* if r0 < -2 */
	OP(110, "r3 = 1; if r0 <= -2 goto +1; r3 = 0; r0 = r3") /* if r0 <= -2 */
	OP(111, "r3 = 1; if r0 s< -2 goto +1; r3 = 0; r0 = r3") /* if r0 s< -2 */
	OP(112, "r3 = 1; if r0 s<= -2 goto +1; r3 = 0; r0 = r3") /* if r0 s<= -2 */
	OP(113, "r3 = 1; if r0 s> 2147483647 goto +1; r3 = 0; r0 = r3") /* if r0 s> 2147483647 */
	OP(114, "r3 = 1; if r0 < 2147483647 goto +1; r3 = 0; r0 = r3") /* if r0 < 2147483647 */
	OP(115, "r3 = 1; if r0 == 2147483647 goto +1; r3 = 0; r0 = r3") /* if r0 == 2147483647 */
	OP(116, "r3 = 1; if w0 == w1 goto +1; r3 = 0; r0 = r3") /* if w0 == w1 */
	OP(117, "r3 = 1; if w0 > w1 goto +1; r3 = 0; r0 = r3") /* if w0 > w1 */
	OP(118, "r3 = 1; if w0 >= w1 goto +1; r3 = 0; r0 = r3") /* if w0 >= w1 */
	OP(119, "r3 = 1; .quad 0x1104e; r3 = 0; r0 = r3") /* if w0 & w1 */
	OP(120, "r3 = 1; if w0 != w1 goto +1; r3 = 0; r0 = r3") /* if w0 != w1 */
	OP(121, "r3 = 1; if w0 s> w1 goto +1; r3 = 0; r0 = r3") /* if w0 s> w1 */
	OP(122, "r3 = 1; if w0 s>= w1 goto +1; r3 = 0; r0 = r3") /* if w0 s>= w1 */
	OP(123, "r3 = 1; if w0 < w1 goto +1; r3 = 0; r0 = r3") /* if w0 < w1 */
	OP(124, "r3 = 1; if w0 <= w1 goto +1; r3 = 0; r0 = r3") /* if w0 <= w1 */
	OP(125, "r3 = 1; if w0 s< w1 goto +1; r3 = 0; r0 = r3") /* if w0 s< w1 */
	OP(126, "r3 = 1; if w0 s<= w1 goto +1; r3 = 0; r0 = r3") /* if w0 s<= w1 */
	OP(127, "r3 = 1; if w0 == -2 goto +1; r3 = 0; r0 = r3") /* if w0 == -2 */
	OP(128, "r3 = 1; if w0 > -2 goto +1; r3 = 0; r0 = r3") /* if w0 > -2 */
	OP(129, "r3 = 1; if w0 >= -2 goto +1; r3 = 0; r0 = r3") /* if w0 >= -2 */
	OP(130, "r3 = 1; .quad 0xfffffffe00010046; r3 = 0; r0 = r3") /* if w0 & -2 */
	OP(131, "r3 = 1; if w0 != -2 goto +1; r3 = 0; r0 = r3") /* if w0 != -2 */
	OP(132, "r3 = 1; if w0 s> -2 goto +1; r3 = 0; r0 = r3") /* if w0 s> -2 */
	OP(133, "r3 = 1; if w0 s>= -2 goto +1; r3 = 0; r0 = r3") /* if w0 s>= -2 */
	OP(134, "r3 = 1; if w0 < -2 goto +1; r3 = 0; r0 = r3") /* if w0 < -2 */
	OP(135, "r3 = 1; if w0 <= -2 goto +1; r3 = 0; r0 = r3") /* if w0 <= -2 */
	OP(136, "r3 = 1; if w0 s< -2 goto +1; r3 = 0; r0 = r3") /* if w0 s< -2 */
	OP(137, "r3 = 1; if w0 s<= -2 goto +1; r3 = 0; r0 = r3") /* if w0 s<= -2 */
	OP(138, "r3 = 1; if w0 s> 2147483647 goto +1; r3 = 0; r0 = r3") /* if w0 s> 2147483647 */
	OP(139, "r3 = 1; if w0 < 2147483647 goto +1; r3 = 0; r0 = r3") /* if w0 < 2147483647 */
	OP(140, "r3 = 1; if w0 == 2147483647 goto +1; r3 = 0; r0 = r3") /* if w0 == 2147483647 */
	OP(141, "*(u64 *)(r2 + 0) = r0; .quad 0x12db; r0 = r1") /* atomic add64 */
	OP(142, "*(u64 *)(r2 + 0) = r0; .quad 0x40000012db; r0 = r1") /* atomic or64 */
	OP(143, "*(u64 *)(r2 + 0) = r0; .quad 0x50000012db; r0 = r1") /* atomic and64 */
	OP(144, "*(u64 *)(r2 + 0) = r0; .quad 0xa0000012db; r0 = r1") /* atomic xor64 */
	OP(145, "*(u64 *)(r2 + 0) = r0; .quad 0x1000012db; r0 = r1") /* atomic fetch_add64 */
	OP(146, "*(u64 *)(r2 + 0) = r0; .quad 0x41000012db; r0 = r1") /* atomic fetch_or64 */
	OP(147, "*(u64 *)(r2 + 0) = r0; .quad 0x51000012db; r0 = r1") /* atomic fetch_and64 */
	OP(148, "*(u64 *)(r2 + 0) = r0; .quad 0xa1000012db; r0 = r1") /* atomic fetch_xor64 */
	OP(149, "*(u64 *)(r2 + 0) = r0; .quad 0xe1000012db; r0 = r1") /* atomic xchg64 */
	OP(150, "*(u64 *)(r2 + 0) = r0; r0 = r1; r1 = 0x5a5a; .quad 0xf1000012db") /* cmpxchg64 */
	OP(151, "*(u64 *)(r2 + 0) = r0; .quad 0x12c3; r0 = r1") /* atomic add32 */
	OP(152, "*(u64 *)(r2 + 0) = r0; .quad 0x40000012c3; r0 = r1") /* atomic or32 */
	OP(153, "*(u64 *)(r2 + 0) = r0; .quad 0x50000012c3; r0 = r1") /* atomic and32 */
	OP(154, "*(u64 *)(r2 + 0) = r0; .quad 0xa0000012c3; r0 = r1") /* atomic xor32 */
	OP(155, "*(u64 *)(r2 + 0) = r0; .quad 0x1000012c3; r0 = r1") /* atomic fetch_add32 */
	OP(156, "*(u64 *)(r2 + 0) = r0; .quad 0x41000012c3; r0 = r1") /* atomic fetch_or32 */
	OP(157, "*(u64 *)(r2 + 0) = r0; .quad 0x51000012c3; r0 = r1") /* atomic fetch_and32 */
	OP(158, "*(u64 *)(r2 + 0) = r0; .quad 0xa1000012c3; r0 = r1") /* atomic fetch_xor32 */
	OP(159, "*(u64 *)(r2 + 0) = r0; .quad 0xe1000012c3; r0 = r1") /* atomic xchg32 */
	OP(160, "*(u64 *)(r2 + 0) = r0; r0 = r1; r1 = 0x5a5a; .quad 0xf1000012c3") /* cmpxchg32 */
	default:
		return -1;
	}
	result = r;
	result2 = scratch;
	return (int)r;
}
