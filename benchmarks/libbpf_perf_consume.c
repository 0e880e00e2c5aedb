// SPDX-License-Identifier: Apache-2.0
/*
 * libbpf_perf_consume - the libbpf C baseline of `bpfring bench perf`.
 *
 * Reads the benchmark's BPF_MAP_TYPE_PERF_EVENT_ARRAY with the system
 * libbpf's perf_buffer__new() / perf_buffer__consume(), one C callback per
 * record that counts it and adds up its seq field (as libbpf users do).
 *
 * Run by the benchmark as:  libbpf_perf_consume MAP_FD PAGES  (fd inherited)
 * Line protocol on stdin/stdout (CLOCK_MONOTONIC nanoseconds):
 *   -> "ready <libbpf version>"   (its events are in the map now)
 *   <- "pre N"   the rings hold N records: perf_buffer__consume() them all
 *   -> "ok COUNT SEQ_SUM LOST T_START T_END"
 *   -> "error MESSAGE" on failure
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/libbpf.h>

static uint64_t count, seq_sum, lost;

static void on_sample(void *ctx, int cpu, void *data, __u32 size)
{
	(void)ctx;
	(void)cpu;
	(void)size;
	count++;
	seq_sum += *(const uint64_t *)data;
}

static void on_lost(void *ctx, int cpu, __u64 n)
{
	(void)ctx;
	(void)cpu;
	lost += n;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct perf_buffer *pb;
	char line[128], cmd[16];
	unsigned long long n;

	if (argc != 3) {
		fprintf(stderr, "usage: %s MAP_FD PAGES\n", argv[0]);
		return 2;
	}
	pb = perf_buffer__new(atoi(argv[1]), atoi(argv[2]), on_sample, on_lost, NULL, NULL);
	if (!pb) {
		printf("error perf_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	printf("ready %u.%u\n", libbpf_major_version(), libbpf_minor_version());
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin)) {
		uint64_t t0, t1;
		int err;

		if (sscanf(line, "%15s %llu", cmd, &n) != 2 || strcmp(cmd, "pre"))
			continue;
		count = seq_sum = lost = 0;
		t0 = now_ns();
		err = perf_buffer__consume(pb);
		t1 = now_ns();
		if (err < 0)
			printf("error perf_buffer__consume: %s\n", strerror(-err));
		else
			printf("ok %llu %llu %llu %llu %llu\n", (unsigned long long)count,
			       (unsigned long long)seq_sum, (unsigned long long)lost,
			       (unsigned long long)t0, (unsigned long long)t1);
		fflush(stdout);
	}
	perf_buffer__free(pb);
	return 0;
}
