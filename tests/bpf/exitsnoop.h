/* SPDX-License-Identifier: Apache-2.0 */
/* exitsnoop: what the BPF side reports about each process exit.  Shared with
 * user space, as libbpf tools do; the BPF code uses these types only through
 * a pointer into the ring buffer, so clang alone would not put them in BTF. */
#ifndef EXITSNOOP_H
#define EXITSNOOP_H

#define TASK_COMM_LEN 16

/* How the process ended. */
enum exit_kind {
	EXIT_NORMAL = 0,
	EXIT_SIGNALED = 1,
	EXIT_CORE_DUMPED = 2,
};

/* When it started and when it ended, in CLOCK_MONOTONIC nanoseconds. */
typedef struct {
	unsigned long long start_ns;
	unsigned long long exit_ns;
} exit_times_t;

struct event {
	int pid;
	int ppid;
	unsigned int exit_code;   /* raw task->exit_code: status << 8 | signal */
	int status;               /* exit status, when kind == EXIT_NORMAL */
	int sig;                  /* terminating signal, otherwise */
	enum exit_kind kind;
	exit_times_t times;
	char comm[TASK_COMM_LEN];
};

/* Only declared, never defined: must not show up as a kept type. */
struct exitsnoop_private;

#endif /* EXITSNOOP_H */
