// SPDX-License-Identifier: Apache-2.0
/*
 * libbpf_consume - the libbpf C baseline of `bpfring bench rings` (kernel -> user).
 *
 * Consumes the benchmark's BPF_MAP_TYPE_RINGBUF with the system libbpf's
 * ring_buffer__consume() / ring_buffer__poll(), one C callback per record
 * that counts it and adds up its seq field (as libbpf users do).
 *
 * Built by the benchmark with: cc -O2 -Wall -o <private dir>/libbpf_consume-<hash>
 *                                 libbpf_consume.c -lbpf
 * Run by the benchmark as:     libbpf_consume MAP_FD   (the fd is inherited)
 *
 * Line protocol on stdin/stdout (times are CLOCK_MONOTONIC nanoseconds, the
 * clock of Python's time.monotonic_ns() and of bpf_ktime_get_ns()):
 *   -> "ready <libbpf version>"
 *   <- "pre N"   the ring holds N records: ring_buffer__consume() them all
 *   -> "ok COUNT SEQ_SUM T_START T_END"   (T_START before the first call)
 *   <- "live N"  a producer on another CPU is about to start: ring_buffer__poll()
 *                until N records arrived
 *   -> "waiting", then "ok COUNT SEQ_SUM T_START T_END"
 *   -> "error MESSAGE" on failure
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/libbpf.h>

struct event {
	uint64_t seq;
	uint64_t ts;
	uint32_t pid;
	uint32_t cpu;
	char comm[16];
};

static uint64_t count, seq_sum;

static int on_record(void *ctx, void *data, size_t size)
{
	const struct event *e = data;

	(void)ctx;
	(void)size;
	count++;
	seq_sum += e->seq;
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct ring_buffer *rb;
	char line[128], cmd[16];
	unsigned long long n;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: %s MAP_FD\n", argv[0]);
		return 2;
	}
	fd = atoi(argv[1]);
	rb = ring_buffer__new(fd, on_record, NULL, NULL);
	if (!rb) {
		printf("error ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	printf("ready %u.%u\n", libbpf_major_version(), libbpf_minor_version());
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin)) {
		uint64_t t0, t1;
		int err = 0;

		if (sscanf(line, "%15s %llu", cmd, &n) != 2)
			continue;
		count = seq_sum = 0;
		if (!strcmp(cmd, "pre")) {
			t0 = now_ns();
			while (count < n) {
				err = ring_buffer__consume(rb);
				if (err <= 0)
					break;
			}
			t1 = now_ns();
		} else if (!strcmp(cmd, "live")) {
			printf("waiting\n");
			fflush(stdout);
			t0 = now_ns();
			while (count < n) {
				err = ring_buffer__poll(rb, 100);
				if (err == -EINTR)
					err = 0;
				if (err < 0)
					break;
			}
			t1 = now_ns();
		} else {
			continue;
		}
		if (err < 0)
			printf("error ring buffer: %s\n", strerror(-err));
		else if (count < n)
			printf("error ring ran dry after %llu of %llu records\n",
			       (unsigned long long)count, n);
		else
			printf("ok %llu %llu %llu %llu\n", (unsigned long long)count,
			       (unsigned long long)seq_sum, (unsigned long long)t0,
			       (unsigned long long)t1);
		fflush(stdout);
	}
	ring_buffer__free(rb);
	return 0;
}
