// SPDX-License-Identifier: GPL-2.0-only
/* A small program for the uprobe and USDT tests (tests/test_attach.py).
 *
 * It waits for one byte on stdin (so the test can attach its probes to the
 * running process first), then runs N rounds of: bpfring_target(i), a
 * function the uprobe/uretprobe tests probe; bpfring_nops(), an assembler
 * function whose instruction boundaries are known (four 1-byte nops, then
 * ret) for the offset tests; getpid() from libc; and the USDT probe
 * bpfring:tick with argument i.  It prints the sum of bpfring_target's
 * results.
 *
 * The USDT note is written by hand in the format <sys/sdt.h> uses (that
 * header is in systemtap-sdt-dev, which is not installed): a .note.stapsdt
 * ELF note per probe with the probe's address, the address of the
 * .stapsdt.base section (for prelink adjustment), the semaphore address (0:
 * none), then provider, name and argument spec ("-4@%eax": a signed 4-byte
 * value in a register). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) int bpfring_target(int x)
{
	__asm__ __volatile__("" ::: "memory");
	return 2 * x + 1;
}

void bpfring_nops(void);
__asm__(".text\n"
	".globl bpfring_nops\n"
	".type bpfring_nops, @function\n"
	"bpfring_nops:\n"
	"\tnop\n\tnop\n\tnop\n\tnop\n\tret\n"
	".size bpfring_nops, .-bpfring_nops\n");

#define BPFRING_USDT1(provider, name, arg)                                      \
	__asm__ __volatile__(                                                   \
		"990:\tnop\n"                                                   \
		".pushsection .note.stapsdt,\"\",\"note\"\n"                    \
		".balign 4\n"                                                   \
		".4byte 992f-991f, 994f-993f, 3\n"                              \
		"991:\t.asciz \"stapsdt\"\n"                                    \
		"992:\t.balign 4\n"                                             \
		"993:\t.8byte 990b\n"                                           \
		".8byte _.stapsdt.base\n"                                       \
		".8byte 0\n"                                                    \
		".asciz \"" #provider "\"\n"                                    \
		".asciz \"" #name "\"\n"                                        \
		".asciz \"-4@%0\"\n"                                            \
		"994:\t.balign 4\n"                                             \
		".popsection\n"                                                 \
		".ifndef _.stapsdt.base\n"                                      \
		".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n" \
		".weak _.stapsdt.base\n"                                        \
		".hidden _.stapsdt.base\n"                                      \
		"_.stapsdt.base:\t.space 1\n"                                   \
		".size _.stapsdt.base, 1\n"                                     \
		".popsection\n"                                                 \
		".endif\n"                                                      \
		: : "r"(arg))

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	long sum = 0;
	char go;

	if (read(0, &go, 1) != 1)
		return 2;
	for (int i = 0; i < n; i++) {
		sum += bpfring_target(i);
		bpfring_nops();
		if (getpid() <= 0)
			return 3;
		BPFRING_USDT1(bpfring, tick, i);
	}
	printf("%ld\n", sum);
	return 0;
}
