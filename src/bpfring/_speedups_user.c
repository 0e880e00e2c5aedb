/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The user ring's producer side of bpfring._speedups (included by
 * _speedups.c after _speedups_access.c): write(), write_many() and
 * write_list() put whole samples and publish them with one store-release of
 * producer_pos;
 * commit() submits or discards a sample reserved in place.
 */

/* -------------------------------------------------------------------------- */
/* write / write_many (user ring: we produce, bpf_user_ringbuf_drain consumes) */
/* -------------------------------------------------------------------------- */

/* The largest sample a ring of `size` bytes takes (one sample alone, and
 * the kernel's dynptr limit). */
static inline uint64_t
max_sample(uint64_t size)
{
    return size - HDR_SIZE < DYNPTR_MAX ? size - HDR_SIZE : DYNPTR_MAX;
}

/* Room for a `len`-byte sample between cons and prod? */
static inline int
fits(uint64_t size, uint64_t cons, uint64_t prod, Py_ssize_t len)
{
    uint64_t used = prod - cons, maxlen = max_sample(size);

    /* A misaligned producer_pos (another producer's doing) or positions more
     * than a ring apart: refuse; the checked path raises RingCorrupted. */
    if (len < 0 || (uint64_t)len > maxlen || used > size || (prod & 7u))
        return 0;
    return span_of((uint32_t)len) <= size - used;
}

/* One sample at `at`: payload first, then the final (not BUSY) header;
 * nothing is visible to the drain until producer_pos moves, so plain stores
 * suffice here. */
static inline void
plain_sample(unsigned char *at, const void *src, Py_ssize_t len)
{
    copy_payload(at + HDR_SIZE, src, (uint32_t)len);
    __atomic_store_n((uint32_t *)(at + 4), 0u, __ATOMIC_RELAXED); /* pg_off */
    __atomic_store_n((uint32_t *)at, (uint32_t)len, __ATOMIC_RELAXED);
}

/* plain_sample() at ring position `prod`; returns the next position. */
static inline uint64_t
put_sample(unsigned char *base, uint64_t mask, uint64_t prod, const void *src, Py_ssize_t len)
{
    plain_sample(base + (prod & mask), src, len); /* double mapping: never split */
    return prod + span_of((uint32_t)len);
}

/* A batch writer's first STREAM_AFTER bytes go through the cache (a small
 * batch is read soon by a drain on another CPU, from the shared cache); the
 * rest of a larger batch is written with streaming stores, which skip the
 * read-for-ownership of every cold ring line (a plain store to it costs a
 * read and a write) and would be evicted from any cache before the drain
 * got there anyway.  glibc's memcpy makes the same trade for large copies. */
#define STREAM_AFTER ((uint64_t)4 << 20)

/* BPFRING_NO_STREAM_STORES builds the portable path on x86 too (to test it). */
#if defined(__x86_64__) && !defined(BPFRING_NO_STREAM_STORES)
#include <immintrin.h>
/* plain_sample() with 8-byte streaming stores, header included (the header
 * word's order no longer matters: nothing is visible before producer_pos
 * moves).  The tail word is built in a register: the span is 8-byte padded,
 * so the padding is ours to write, and the source is never read past len. */
static inline void
stream_sample(unsigned char *at, const void *src, Py_ssize_t len)
{
    long long *dst = (long long *)at;
    const unsigned char *s = src;
    Py_ssize_t i = 0;

    _mm_stream_si64(dst++, (long long)(uint32_t)len); /* {len, pg_off 0} */
    for (; i + 8 <= len; i += 8) {
        long long w;

        memcpy(&w, s + i, 8);
        _mm_stream_si64(dst++, w);
    }
    if (i < len) {
        long long w = 0;

        memcpy(&w, s + i, (size_t)(len - i));
        _mm_stream_si64(dst, w);
    }
}

static inline uint64_t
put_sample_stream(unsigned char *base, uint64_t mask, uint64_t prod, const void *src,
                  Py_ssize_t len)
{
    stream_sample(base + (prod & mask), src, len); /* double mapping: never split */
    return prod + span_of((uint32_t)len);
}

/* Streaming stores are weakly ordered, also against the release store that
 * follows: sfence makes them globally visible first. */
static inline void
publish_batch(uint64_t *prodp, uint64_t prod)
{
    _mm_sfence();
    st_rel64(prodp, prod); /* pairs with the drain's smp_load_acquire of producer_pos */
}
#else
#define stream_sample plain_sample
#define put_sample_stream put_sample
static inline void
publish_batch(uint64_t *prodp, uint64_t prod)
{
    st_rel64(prodp, prod); /* pairs with the drain's smp_load_acquire of producer_pos */
}
#endif

/* The batch writers' put: plain stores for the first STREAM_AFTER bytes of
 * the batch that began at `start`, streaming stores after them. */
static inline uint64_t
put_in_batch(unsigned char *base, uint64_t mask, uint64_t start, uint64_t prod,
             const void *src, Py_ssize_t len)
{
    if (prod - start < STREAM_AFTER)
        return put_sample(base, mask, prod, src, len);
    return put_sample_stream(base, mask, prod, src, len);
}

/* A batch writer's start, under the producer lock: the ring's buffers,
 * consumer_pos and our own producer_pos. */
static inline int
batch_begin(RingObject *self, ring_t *r, uint64_t *cons, uint64_t *prod)
{
    if (ring_acquire(self, r) < 0)
        return -1;
    /* Pairs with the kernel's smp_store_release of consumer_pos in
     * __bpf_user_ringbuf_sample_release: the drain has finished reading the
     * space we are about to overwrite. */
    *cons = ld_acq64((const uint64_t *)r->cons.buf);
    /* We are the only writer of producer_pos (under the producer lock). */
    *prod = __atomic_load_n((uint64_t *)r->prod.buf, __ATOMIC_RELAXED);
    return 0;
}

PyDoc_STRVAR(write_doc,
"write(payload) -> bool\n"
"\n"
"Write one sample into the user ring (BPF_MAP_TYPE_USER_RINGBUF) if it fits\n"
"now: payload, header {len, 0}, then a store-release of producer_pos.\n"
"Returns False, writing nothing, when it does not fit (ring full, sample\n"
"too large, inconsistent or misaligned positions) or payload is not a\n"
"contiguous buffer: the caller's checked path then raises or waits.  The\n"
"caller must hold the ring's producer lock.");

static PyObject *
ur_write(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    Py_buffer pb;
    uint64_t *prodp, cons, prod;
    int ok = 0;

    if (check_nargs("write", nargs, 1) < 0)
        return NULL;
    if (batch_begin(self, &r, &cons, &prod) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[0], &pb, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* the checked path reports it */
        ring_release(&r);
        Py_RETURN_FALSE;
    }
    prodp = r.prod.buf;
    if (fits(r.size, cons, prod, pb.len)) {
        prod = put_sample(r.data.buf, r.mask, prod, pb.buf, pb.len);
        /* Pairs with the drain's smp_load_acquire of producer_pos: payload
         * and header are visible before the sample is. */
        st_rel64(prodp, prod);
        ok = 1;
    }
    PyBuffer_Release(&pb);
    ring_release(&r);
    return PyBool_FromLong(ok);
}

PyDoc_STRVAR(write_many_doc,
"write_many(iterator, first) -> (written, pending)\n"
"\n"
"Write the item in `first` (a tuple: () or (item,)) and then the items of\n"
"`iterator` as samples while they fit, and publish them with one\n"
"store-release of producer_pos.  Returns how many were written and, as\n"
"(item,), the item that stopped the batch (did not fit now, can never fit,\n"
"or is not a contiguous buffer: None among them), or () when the iterator\n"
"is exhausted.  An exception from the iterator propagates after the\n"
"samples written so far are published.  Caller holds the producer lock.");

static PyObject *
ur_write_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    Py_buffer pb;
    PyObject *it, *item;
    Py_ssize_t written = 0;
    uint64_t cons, prod, start;

    if (check_nargs("write_many", nargs, 2) < 0)
        return NULL;
    it = args[0];
    if (!PyIter_Check(it)) {
        PyErr_SetString(PyExc_TypeError, "write_many() needs an iterator");
        return NULL;
    }
    if (!PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) > 1) {
        PyErr_SetString(PyExc_TypeError, "write_many() first must be () or (item,)");
        return NULL;
    }
    if (batch_begin(self, &r, &cons, &prod) < 0)
        return NULL;
    start = prod;
    if (PyTuple_GET_SIZE(args[1]))
        item = Py_NewRef(PyTuple_GET_ITEM(args[1], 0));
    else
        item = PyIter_Next(it);
    while (item != NULL) {
        if (PyBytes_CheckExact(item)) {
            /* The common case, without the buffer protocol's acquire and
             * release per sample: bytes are immutable and we hold a reference. */
            Py_ssize_t len = PyBytes_GET_SIZE(item);

            if (!fits(r.size, cons, prod, len))
                break;
            prod = put_in_batch(r.data.buf, r.mask, start, prod, PyBytes_AS_STRING(item), len);
            Py_DECREF(item);
            written++;
            item = PyIter_Next(it);
            continue;
        }
        if (PyObject_GetBuffer(item, &pb, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            break; /* returned as pending: the caller's checked path reports it */
        }
        if (!fits(r.size, cons, prod, pb.len)) {
            PyBuffer_Release(&pb);
            break;
        }
        prod = put_in_batch(r.data.buf, r.mask, start, prod, pb.buf, pb.len);
        PyBuffer_Release(&pb);
        Py_DECREF(item);
        written++;
        item = PyIter_Next(it);
    }
    /* One release store publishes the batch (pairs with the drain's
     * smp_load_acquire of producer_pos), also when the iterator raised. */
    if (prod != start)
        publish_batch(r.prod.buf, prod);
    ring_release(&r);
    if (item == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return Py_BuildValue("n()", written);
    }
    return Py_BuildValue("n(N)", written, item);
}

PyDoc_STRVAR(write_list_doc,
"write_list(items, start) -> written\n"
"\n"
"Write items[start:] of the list or tuple `items` as samples while they\n"
"fit, and publish them with one store-release of producer_pos; return how\n"
"many were written.  It stops at the first item that does not fit now, can\n"
"never fit or is not a contiguous buffer (the caller's checked path reports\n"
"it), or at the end.  Exact bytes items are read in place, without taking a\n"
"reference (no Python code runs between them, so the sequence cannot\n"
"change): their memory is only read, never written, which halves the\n"
"memory traffic of a large batch.  Caller holds the producer lock.");

static PyObject *
ur_write_list(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    Py_buffer pb;
    PyObject *list, *item;
    Py_ssize_t i, written = 0;
    uint64_t cons, prod, start, room, maxlen;

    if (check_nargs("write_list", nargs, 2) < 0)
        return NULL;
    list = args[0];
    if (!PyList_Check(list) && !PyTuple_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "write_list() needs a list or a tuple");
        return NULL;
    }
    i = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "write_list() start must be >= 0");
        return NULL;
    }
    if (batch_begin(self, &r, &cons, &prod) < 0)
        return NULL;
    start = prod;
    /* Positions another producer left inconsistent: write nothing here, the
     * caller's checked path raises RingCorrupted (as fits() refuses). */
    if ((prod & 7u) || prod - cons > r.size)
        goto out;
    room = r.size - (prod - cons);
    maxlen = max_sample(r.size);
    for (;;) {
        /* A run of exact bytes objects: nothing in it runs Python code, so
         * the items array and its size stay valid for the whole run. */
        Py_ssize_t n = PySequence_Fast_GET_SIZE(list);
        PyObject **items = PySequence_Fast_ITEMS(list);
        uint64_t span;

        for (; i < n && PyBytes_CheckExact(items[i]); i++) {
            Py_ssize_t len = PyBytes_GET_SIZE(items[i]);

            if ((uint64_t)len > maxlen || (span = span_of((uint32_t)len)) > room)
                goto out;
            prod = put_in_batch(r.data.buf, r.mask, start, prod, PyBytes_AS_STRING(items[i]), len);
            room -= span;
            written++;
        }
        if (i >= n)
            break;
        /* Any other buffer: the buffer protocol may run Python code that
         * changes the sequence, so hold the item and look again after it. */
        item = Py_NewRef(items[i]);
        if (PyObject_GetBuffer(item, &pb, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            Py_DECREF(item);
            break; /* the caller's checked path reports it */
        }
        if ((uint64_t)pb.len > maxlen || (span = span_of((uint32_t)pb.len)) > room) {
            PyBuffer_Release(&pb);
            Py_DECREF(item);
            break;
        }
        prod = put_in_batch(r.data.buf, r.mask, start, prod, pb.buf, pb.len);
        room -= span;
        PyBuffer_Release(&pb);
        Py_DECREF(item);
        written++;
        i++;
    }
out:
    /* One release store publishes the batch (pairs with the drain's
     * smp_load_acquire of producer_pos). */
    if (prod != start)
        publish_batch(r.prod.buf, prod);
    ring_release(&r);
    return PyLong_FromSsize_t(written);
}

PyDoc_STRVAR(commit_doc,
"commit(offset, discard) -> int\n"
"\n"
"Submit (or discard) the user-ring sample whose header is at byte `offset`\n"
"of the data: atomically replace a BUSY header word with its length (plus\n"
"DISCARD).  Returns the previous word; if it was not BUSY nothing is\n"
"written (the caller reports a double submit).");

static PyObject *
ur_commit(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    void *p;
    Py_ssize_t offset;
    int discard;
    uint32_t old, want;
    PyObject *idx, *fwd[2];

    if (check_nargs("commit", nargs, 2) < 0)
        return NULL;
    offset = PyNumber_AsSsize_t(args[0], PyExc_IndexError);
    if (offset == -1 && PyErr_Occurred())
        return NULL;
    if ((discard = PyObject_IsTrue(args[1])) < 0)
        return NULL;
    if (offset < 0 || offset & 3) {
        PyErr_SetString(PyExc_ValueError, "header offset must be a non-negative multiple of 4");
        return NULL;
    }
    if ((idx = PyLong_FromSsize_t(offset / 4)) == NULL)
        return NULL;
    fwd[0] = self->data;
    fwd[1] = idx;
    if (word_ptr(fwd, &view, 1, 4, &p) < 0) {
        Py_DECREF(idx);
        return NULL;
    }
    Py_DECREF(idx);
    old = __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
    do {
        if (!(old & BUSY_BIT))
            break;
        want = (old & LEN_MASK) | (discard ? DISCARD_BIT : 0u);
        /* Release (acq_rel): the payload written through the sample's view
         * is visible before the cleared BUSY bit; pairs with the drain's
         * smp_load_acquire of the header in __bpf_user_ringbuf_peek. */
    } while (!__atomic_compare_exchange_n((uint32_t *)p, &old, want, 0, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(old);
}
