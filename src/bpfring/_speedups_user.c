/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The user ring's producer side of bpfring._speedups (included by
 * _speedups.c after _speedups_access.c): write() and write_many() put whole
 * samples and publish them with one store-release of producer_pos;
 * commit() submits or discards a sample reserved in place.
 */

/* -------------------------------------------------------------------------- */
/* write / write_many (user ring: we produce, bpf_user_ringbuf_drain consumes) */
/* -------------------------------------------------------------------------- */

/* Room for a `len`-byte sample between cons and prod? */
static inline int
fits(uint64_t size, uint64_t cons, uint64_t prod, Py_ssize_t len)
{
    uint64_t used = prod - cons, maxlen = size - HDR_SIZE;

    if (maxlen > DYNPTR_MAX)
        maxlen = DYNPTR_MAX;
    /* A misaligned producer_pos (another producer's doing) or positions more
     * than a ring apart: refuse; the checked path raises RingCorrupted. */
    if (len < 0 || (uint64_t)len > maxlen || used > size || (prod & 7u))
        return 0;
    return span_of((uint32_t)len) <= size - used;
}

/* Payload first, then the final (not BUSY) header; nothing is visible to
 * the drain until producer_pos moves, so plain stores suffice here. */
static inline uint64_t
put_sample(unsigned char *base, uint64_t mask, uint64_t prod, const void *src, Py_ssize_t len)
{
    unsigned char *hdr = base + (prod & mask);

    copy_payload(hdr + HDR_SIZE, src, (uint32_t)len); /* double mapping: never split */
    __atomic_store_n((uint32_t *)(hdr + 4), 0u, __ATOMIC_RELAXED); /* pg_off */
    __atomic_store_n((uint32_t *)hdr, (uint32_t)len, __ATOMIC_RELAXED);
    return prod + span_of((uint32_t)len);
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
    if (ring_acquire(self, &r) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[0], &pb, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* the checked path reports it */
        ring_release(&r);
        Py_RETURN_FALSE;
    }
    prodp = r.prod.buf;
    /* Pairs with the kernel's smp_store_release of consumer_pos in
     * __bpf_user_ringbuf_sample_release: the drain has finished reading the
     * space we are about to overwrite. */
    cons = ld_acq64((const uint64_t *)r.cons.buf);
    /* We are the only writer of producer_pos (under the producer lock). */
    prod = __atomic_load_n(prodp, __ATOMIC_RELAXED);
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
"Write `first` (unless None) and then the items of `iterator` as samples\n"
"while they fit, and publish them with one store-release of producer_pos.\n"
"Returns how many were written and the item that stopped the batch (did\n"
"not fit now, can never fit, or is not a contiguous buffer), or None when\n"
"the iterator is exhausted.  An exception from the iterator propagates after\n"
"the samples written so far are published.  Caller holds the producer lock.");

static PyObject *
ur_write_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    Py_buffer pb;
    PyObject *it, *item;
    Py_ssize_t written = 0;
    uint64_t *prodp, cons, prod, start;
    unsigned char *base;

    if (check_nargs("write_many", nargs, 2) < 0)
        return NULL;
    it = args[0];
    if (!PyIter_Check(it)) {
        PyErr_SetString(PyExc_TypeError, "write_many() needs an iterator");
        return NULL;
    }
    if (ring_acquire(self, &r) < 0)
        return NULL;
    base = r.data.buf;
    prodp = r.prod.buf;
    cons = ld_acq64((const uint64_t *)r.cons.buf); /* as in write() */
    prod = start = __atomic_load_n(prodp, __ATOMIC_RELAXED);
    item = args[1];
    if (item == Py_None)
        item = PyIter_Next(it);
    else
        Py_INCREF(item);
    while (item != NULL) {
        if (PyBytes_CheckExact(item)) {
            /* The common case, without the buffer protocol's acquire and
             * release per sample: bytes are immutable and we hold a reference. */
            Py_ssize_t len = PyBytes_GET_SIZE(item);

            if (!fits(r.size, cons, prod, len))
                break;
            prod = put_sample(base, r.mask, prod, PyBytes_AS_STRING(item), len);
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
        prod = put_sample(base, r.mask, prod, pb.buf, pb.len);
        PyBuffer_Release(&pb);
        Py_DECREF(item);
        written++;
        item = PyIter_Next(it);
    }
    /* One release store publishes the batch (pairs with the drain's
     * smp_load_acquire of producer_pos), also when the iterator raised. */
    if (prod != start)
        st_rel64(prodp, prod);
    ring_release(&r);
    if (item == NULL) {
        if (PyErr_Occurred())
            return NULL;
        item = Py_NewRef(Py_None);
    }
    return Py_BuildValue("nN", written, item);
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
