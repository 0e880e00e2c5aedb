// SPDX-License-Identifier: Apache-2.0
/*
 * objects_limits - the memory limits of `write_many` in `bpfring bench rings`.
 *
 * write_many(list_of_bytes) must at least read every bytes object of the
 * list (its header for type and size, then its payload) and write every
 * sample (8-byte header, payload, padding) into the ring.  One walk over the
 * same list, in two versions, does only that, with no checks, no Python
 * calls, no reference counts and no ring protocol:
 *
 *   read_objects(list)       reads every object and payload and writes
 *                            nothing (the size and the payload's 8-byte
 *                            words, the last one zero-padded, are summed so
 *                            the loads cannot be dropped): the floor of
 *                            any writer that takes Python bytes objects;
 *   copy_objects(list, dst)  also writes each sample as the ring holds it,
 *                            {len, 0} then the payload, 8-byte aligned, into
 *                            `dst` (a private buffer of the ring's size) with
 *                            the stores write_many uses for a large batch:
 *                            8-byte streaming stores on x86-64, then sfence;
 *                            plain stores elsewhere.
 *
 * Built by the benchmark as a shared object against this Python's headers:
 *   cc -O2 -Wall -shared -fPIC -I<python include> -o <private dir>/objects_limits-<hash>.so
 * and called through ctypes.PyDLL (the GIL is held: nothing changes the list).
 * Both return 0 for anything but a list of exact bytes objects.
 */
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

uint64_t read_objects(PyObject *list);
uint64_t copy_objects(PyObject *list, unsigned char *dst);

static inline void put_word(unsigned char *at, uint64_t w)
{
#if defined(__x86_64__)
	_mm_stream_si64((long long *)at, (long long)w);
#else
	memcpy(at, &w, 8);
#endif
}

/* The one walk behind both: with dst NULL it only reads (and sums), else it
 * also writes each sample.  Inlined into each with dst constant, so neither
 * pays for the other's branch. */
static inline __attribute__((always_inline)) uint64_t walk(PyObject *list, unsigned char *dst)
{
	uint64_t sum = 0, pos = 0;
	Py_ssize_t i, n;

	if (!PyList_Check(list))
		return 0;
	n = PyList_GET_SIZE(list);
	for (i = 0; i < n; i++) {
		PyObject *item = PyList_GET_ITEM(list, i);
		const char *p;
		Py_ssize_t len, k;

		if (!PyBytes_CheckExact(item))
			return 0;
		p = PyBytes_AS_STRING(item);
		len = PyBytes_GET_SIZE(item);
		sum += (uint64_t)len;
		if (dst)
			put_word(dst + pos, (uint32_t)len); /* {len, pg_off 0} */
		for (k = 0; k + 8 <= len; k += 8) {
			uint64_t w;

			memcpy(&w, p + k, 8);
			if (dst)
				put_word(dst + pos + 8 + k, w);
			else
				sum += w;
		}
		if (k < len) {
			uint64_t w = 0;

			memcpy(&w, p + k, (size_t)(len - k));
			if (dst)
				put_word(dst + pos + 8 + k, w);
			else
				sum += w;
		}
		pos += ((uint64_t)len + 15) & ~(uint64_t)7;
	}
	if (!dst)
		return sum;
#if defined(__x86_64__)
	_mm_sfence();
#endif
	return pos;
}

uint64_t read_objects(PyObject *list)
{
	return walk(list, NULL);
}

uint64_t copy_objects(PyObject *list, unsigned char *dst)
{
	return walk(list, dst);
}
