/* SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause) */
/* Shared by exitlog.bpf.c and user space, as real tools do. */
#ifndef EXITLOG_H
#define EXITLOG_H

#define TASK_COMM_LEN 16

struct exit_event {
	unsigned int pid;
	int exit_code;
	unsigned long long seq;
	char comm[TASK_COMM_LEN];
};

#endif
