// SPDX-License-Identifier: Apache-2.0
/*
 * libbpf_produce - the libbpf C baseline of `bpfring bench rings` (user -> kernel).
 *
 * Writes the benchmark's 40-byte records into its BPF_MAP_TYPE_USER_RINGBUF
 * with the system libbpf: user_ring_buffer__reserve(), memcpy() from an
 * array prepared before the clock starts, user_ring_buffer__submit().
 *
 * Built by the benchmark with: cc -O2 -Wall -o <private dir>/libbpf_produce-<hash>
 *                                 libbpf_produce.c -lbpf
 * Run by the benchmark as:     libbpf_produce MAP_FD   (the fd is inherited)
 *
 * Line protocol on stdin/stdout (CLOCK_MONOTONIC nanoseconds):
 *   -> "ready <libbpf version>"
 *   <- "write N"  the ring is empty and large enough: reserve/submit N records
 *   <- "live N"   a BPF drain runs on another CPU: user_ring_buffer__reserve_blocking()
 *                 (timeout -1, retried on ENOSPC) for each of N records
 *   -> "ok COUNT 0 T_START T_END"  or  "error MESSAGE"
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

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The same records as the Python side's (rings.py: make_records). */
static void fill(struct event *recs, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		memset(&recs[i], 0, sizeof(recs[i]));
		recs[i].seq = i;
		recs[i].ts = i * 1000;
		recs[i].pid = 4242;
		recs[i].cpu = 0;
		memcpy(recs[i].comm, "bpfring-bench", 13);
	}
}

int main(int argc, char **argv)
{
	struct user_ring_buffer *rb;
	struct event *recs = NULL;
	uint64_t nrecs = 0;
	char line[128], cmd[16];
	unsigned long long n;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: %s MAP_FD\n", argv[0]);
		return 2;
	}
	fd = atoi(argv[1]);
	rb = user_ring_buffer__new(fd, NULL);
	if (!rb) {
		printf("error user_ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	printf("ready %u.%u\n", libbpf_major_version(), libbpf_minor_version());
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin)) {
		uint64_t t0, t1, i;
		int live;

		if (sscanf(line, "%15s %llu", cmd, &n) != 2)
			continue;
		if (!strcmp(cmd, "write"))
			live = 0;
		else if (!strcmp(cmd, "live"))
			live = 1;
		else
			continue;
		if (n > nrecs) {
			free(recs);
			recs = malloc(n * sizeof(*recs));
			if (!recs) {
				printf("error out of memory\n");
				fflush(stdout);
				return 1;
			}
			fill(recs, n);
			nrecs = n;
		}
		t0 = now_ns();
		for (i = 0; i < n; i++) {
			void *p;

			if (live) {
				/* timeout -1 does not block for good in libbpf (1.1 to
				 * at least 1.7): after one epoll wakeup it makes a last
				 * attempt and fails with ENOSPC, so retry. */
				do
					p = user_ring_buffer__reserve_blocking(rb, sizeof(*recs), -1);
				while (!p && errno == ENOSPC);
			} else {
				p = user_ring_buffer__reserve(rb, sizeof(*recs));
			}
			if (!p)
				break;
			memcpy(p, &recs[i], sizeof(*recs));
			user_ring_buffer__submit(rb, p);
		}
		t1 = now_ns();
		if (i < n)
			printf("error reserve failed after %llu records: %s\n",
			       (unsigned long long)i, strerror(errno));
		else
			printf("ok %llu 0 %llu %llu\n", (unsigned long long)n,
			       (unsigned long long)t0, (unsigned long long)t1);
		fflush(stdout);
	}
	free(recs);
	user_ring_buffer__free(rb);
	return 0;
}
