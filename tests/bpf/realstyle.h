/* SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause) */
/* realstyle: the record a libbpf-style tool shares between its BPF side and
 * user space.  The BPF code only reaches it through the ring buffer pointer,
 * so clang alone leaves it out of the object's BTF. */
#ifndef REALSTYLE_H
#define REALSTYLE_H

#define RS_COMM_LEN 16

/* A negative enumerator: clang 14 writes it without a sign flag. */
enum rs_status {
	RS_FAILED = -3,
	RS_OK = 0,
	RS_RETRY = 1,
};

struct rs_event {
	int pid;
	enum rs_status status;
	unsigned long long calls;
	char comm[RS_COMM_LEN];
};

#endif /* REALSTYLE_H */
