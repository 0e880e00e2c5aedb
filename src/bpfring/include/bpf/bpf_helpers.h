/* SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause) */
/*
 * bpfring: the system's <bpf/bpf_helpers.h>, plus what newer libbpf releases
 * added there and programs written against them use (see bpf_tracing.h next
 * to this file).  Defined only when the real header did not.
 */
#include_next <bpf/bpf_helpers.h>

#ifndef bpf_ksym_exists
/* Whether a __weak __ksym (a kernel variable or kfunc) resolved at load:
 * libbpf sets an unresolved weak ksym to 0. */
#define bpf_ksym_exists(sym) (!!(sym))
#endif
