/* SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause) */
/*
 * bpfring: the system's <bpf/bpf_tracing.h>, plus the few macros that newer
 * libbpf releases added and that programs written against them use
 * (Debian 12 ships libbpf 1.1, which has none of these).  Each is defined
 * only when the real header did not define it, so a newer libbpf's own
 * definition always wins; a program that ships its own bpf/ headers in an
 * include directory never sees this file.
 */
#include_next <bpf/bpf_tracing.h>

#ifndef BPF_UPROBE
/* A uprobe's arguments are read like a kprobe's (same pt_regs). */
#define BPF_UPROBE(name, args...) BPF_KPROBE(name, ##args)
#endif
#ifndef BPF_URETPROBE
#define BPF_URETPROBE(name, args...) BPF_KRETPROBE(name, ##args)
#endif
