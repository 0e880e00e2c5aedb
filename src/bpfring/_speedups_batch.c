/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fixed-size batch paths of bpfring._speedups (included by _speedups.c,
 * which provides the atomics, ring_acquire and raise_corrupted): the header
 * scan behind RingBuffer.view_array, the fused scan + copy behind
 * read_array, and the bulk writer behind UserRingBuffer.write_array.  Their
 * pure twins in bpfring._ringpure run the numpy code of bpfring._ringcore
 * (Consumer.regular_run, Producer.put_run), which is the reference;
 * tests/test_backend_contract.py runs both on the same rings.
 *
 * Memory ordering.  The header words are loaded relaxed, then one acquire
 * fence follows the whole pass: a relaxed load that reads the value the
 * kernel's commit xchg stored, followed by an acquire fence, synchronises
 * with it exactly as an acquire load would, so every payload read after the
 * fence sees what the BPF program wrote before submitting.  One fence per
 * batch instead of one ordered load per record (free on x86-64, not on arm64).
 */

#define RUN_END 0   /* end of the published data, the limit or a discarded record */
#define RUN_BUSY 1  /* a record the producer has not committed yet */
#define RUN_OTHER 2 /* a committed record of another size */

/* itemsize: an int in 0..LEN_MASK (a payload length the ring can hold). */
static int
get_itemsize(PyObject *obj, uint32_t *out)
{
    Py_ssize_t v = PyLong_AsSsize_t(obj);

    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || (uint64_t)v > LEN_MASK) {
        PyErr_Format(PyExc_ValueError, "itemsize %zd is outside 0..%u", v, (unsigned)LEN_MASK);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* The message of bpfring._ringcore.Consumer.regular_run. */
static void
raise_discard_past(uint64_t cons, uint32_t word, uint64_t prod)
{
    raise_corrupted("discarded record at position %llu claims %u bytes, past producer "
                    "position %llu", (unsigned long long)cons, (unsigned)(word & LEN_MASK),
                    (unsigned long long)prod);
}

static inline uint32_t
ld_rlx32(const unsigned char *p)
{
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
}

/* How many of the n headers from p (every `span` bytes) are exactly `want`
 * (committed, not discarded, `want` bytes long).  Blocks of 8 are judged
 * with one branch; the block that holds the first other header is walked
 * record by record to find it. */
static inline Py_ssize_t
count_regular(const unsigned char *p, uint64_t span, Py_ssize_t n, uint32_t want,
              uint32_t *stop)
{
    Py_ssize_t k = 0;

    for (; k + 8 <= n; k += 8) {
        const unsigned char *q = p + (uint64_t)k * span;
        uint32_t acc = 0;

        acc |= ld_rlx32(q) ^ want;
        acc |= ld_rlx32(q + span) ^ want;
        acc |= ld_rlx32(q + 2 * span) ^ want;
        acc |= ld_rlx32(q + 3 * span) ^ want;
        acc |= ld_rlx32(q + 4 * span) ^ want;
        acc |= ld_rlx32(q + 5 * span) ^ want;
        acc |= ld_rlx32(q + 6 * span) ^ want;
        acc |= ld_rlx32(q + 7 * span) ^ want;
        if (acc)
            break;
    }
    /* The header that ends the run is judged on the value that ended it: a
     * BUSY header loaded again may have been committed meanwhile. */
    for (; k < n; k++) {
        uint32_t w = ld_rlx32(p + (uint64_t)k * span);

        if (w != want) {
            *stop = w;
            break;
        }
    }
    return k;
}

static inline int
why_stopped(uint32_t word)
{
    return (word & BUSY_BIT) ? RUN_BUSY : (word & DISCARD_BIT) ? RUN_END : RUN_OTHER;
}

/* -------------------------------------------------------------------------- */
/* scan (view_array)                                                          */
/* -------------------------------------------------------------------------- */

PyDoc_STRVAR(scan_doc,
"scan(itemsize, limit) -> (start, n, why)\n"
"\n"
"Find the run of committed `itemsize`-byte records at consumer_pos, like\n"
"bpfring._ringcore.Consumer.regular_run over one load-acquire of\n"
"producer_pos: leading discarded records are skipped (start is the position\n"
"after them; not published), then at most `limit` records (None or -1: no\n"
"limit) are counted up to the first record that is BUSY (why=1), discarded\n"
"(why=0) or of another size (why=2); why=0 also at the end of the data.\n"
"An acquire fence orders the header loads before the caller's payload\n"
"reads.  Impossible positions raise RingCorrupted.");

static PyObject *
kr_scan(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    uint32_t itemsize, word;
    Py_ssize_t limit, n, k;
    uint64_t cons, prod, span, size, mask, avail;
    const unsigned char *base;
    int why = RUN_END;

    if (check_nargs("scan", nargs, 2) < 0)
        return NULL;
    if (get_itemsize(args[0], &itemsize) < 0 || get_limit(args[1], &limit) < 0)
        return NULL;
    if (ring_acquire(self, &r) < 0)
        return NULL;
    base = r.data.buf;
    size = r.size;
    mask = r.mask;
    span = span_of(itemsize);
    cons = ld_acq64(r.cons.buf); /* ours: only this consumer stores it */
    prod = ld_acq64(r.prod.buf); /* pairs with the kernel's store-release */
    if (prod - cons > size) {
        raise_apart(cons, prod);
        goto fail;
    }
    if (cons & 7u) {
        raise_misaligned(cons);
        goto fail;
    }
    for (;;) {
        if (cons == prod) {
            n = 0;
            goto out;
        }
        word = ld_acq32(base + (cons & mask)); /* pairs with the commit xchg */
        if ((word & FLAG_BITS) != DISCARD_BIT)
            break;
        if (span_of(word & LEN_MASK) > prod - cons) {
            raise_discard_past(cons, word, prod);
            goto fail;
        }
        cons += span_of(word & LEN_MASK); /* leading discarded record */
    }
    avail = prod - cons;
    n = (Py_ssize_t)(avail / span);
    if (limit >= 0 && n > limit)
        n = limit;
    if (n == 0) {
        why = (word & BUSY_BIT) ? RUN_BUSY : RUN_OTHER;
        goto out;
    }
    /* The data pages are mapped twice in a row: the run is contiguous even
     * when it wraps.  Each header is loaded once, so the run and the reason
     * it ends are judged on the same values. */
    k = count_regular(base + (cons & mask), span, n, itemsize, &word);
    if (k < n)
        why = why_stopped(word);
    n = k;
    /* Orders the header loads above before the payload reads of the caller
     * (see the top of this file). */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
out:
    ring_release(&r);
    return Py_BuildValue("Kni", (unsigned long long)cons, n, why);
fail:
    ring_release(&r);
    return NULL;
}

/* -------------------------------------------------------------------------- */
/* read_into (read_array)                                                     */
/* -------------------------------------------------------------------------- */

PyDoc_STRVAR(read_into_doc,
"read_into(out, itemsize, limit) -> (n, why)\n"
"\n"
"Copy the committed `itemsize`-byte records from consumer_pos into the\n"
"writable contiguous buffer `out`, back to back, at most `limit` records\n"
"(None or -1: as many as fit in `out`), and store-release consumer_pos once,\n"
"after the copies.  Discarded records are skipped (and published past);\n"
"producer_pos is loaded again when the walk reaches it.  Stops at a BUSY\n"
"record (why=1), at a committed record of another size or one that claims\n"
"more than is published (why=2, left in the ring), or at the end, the limit\n"
"or a full `out` (why=0).  Impossible positions, or a discarded record that\n"
"claims more than is published, raise RingCorrupted when nothing was\n"
"copied; else the copies are kept and the next call raises.  The same\n"
"records as bpfring._ringcore.Consumer.regular_run runs, in one pass.");

static PyObject *
kr_read_into(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    Py_buffer ob;
    uint32_t itemsize, word = 0;
    Py_ssize_t limit, cap, n = 0;
    uint64_t *consp, start, cons, prod, span, size, mask;
    const uint64_t *prodp;
    const unsigned char *base;
    unsigned char *dst;
    int why = RUN_END, failed = 0;

    if (check_nargs("read_into", nargs, 3) < 0)
        return NULL;
    if (get_itemsize(args[1], &itemsize) < 0 || get_limit(args[2], &limit) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[0], &ob, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (ring_acquire(self, &r) < 0) {
        PyBuffer_Release(&ob);
        return NULL;
    }
    cap = itemsize ? ob.len / (Py_ssize_t)itemsize : PY_SSIZE_T_MAX;
    if (limit >= 0 && limit < cap)
        cap = limit;
    base = r.data.buf;
    consp = r.cons.buf;
    prodp = r.prod.buf;
    size = r.size;
    mask = r.mask;
    span = span_of(itemsize);
    dst = ob.buf;
    cons = start = ld_acq64(consp);
    if (cap == 0)
        goto out;
    if (cons & 7u) {
        raise_misaligned(cons);
        failed = 1;
        goto out;
    }
    prod = ld_acq64(prodp); /* pairs with the kernel's store-release */
    for (;;) {
        uint64_t avail;
        Py_ssize_t run, k;

        if (cons == prod) {
            prod = ld_acq64(prodp); /* more may have come meanwhile */
            if (cons == prod)
                break;
        }
        avail = prod - cons;
        if (avail > size) {
            if (!n) {
                raise_apart(cons, prod);
                failed = 1;
            }
            break;
        }
        /* A run of regular records: headers checked in blocks, then copied. */
        run = (Py_ssize_t)(avail / span);
        if (run > cap - n)
            run = cap - n;
        k = count_regular(base + (cons & mask), span, run, itemsize, &word);
        if (k) {
            const unsigned char *src = base + (cons & mask) + HDR_SIZE;
            Py_ssize_t i;

            __atomic_thread_fence(__ATOMIC_ACQUIRE); /* headers before payloads */
            for (i = 0; i < k; i++) {
                copy_payload(dst, src, itemsize);
                dst += itemsize;
                src += span;
            }
            n += k;
            cons += (uint64_t)k * span;
        }
        if (n == cap)
            break;
        if (cons == prod)
            continue;
        /* The record after the run: discarded (skip it), BUSY or irregular. */
        word = ld_acq32(base + (cons & mask)); /* pairs with the commit xchg */
        if (word == itemsize && span <= prod - cons)
            continue; /* was BUSY in the scan, committed since: part of the run */
        if ((word & FLAG_BITS) == DISCARD_BIT) {
            if (span_of(word & LEN_MASK) > prod - cons) {
                if (!n) {
                    raise_discard_past(cons, word, prod);
                    failed = 1;
                }
                break;
            }
            cons += span_of(word & LEN_MASK);
            continue;
        }
        why = (word & BUSY_BIT) ? RUN_BUSY : RUN_OTHER;
        break;
    }
out:
    /* Release: the copies are made before the kernel may reuse the space
     * (pairs with its smp_load_acquire of consumer_pos). */
    if (cons != start && !failed)
        st_rel64(consp, cons);
    ring_release(&r);
    PyBuffer_Release(&ob);
    if (failed)
        return NULL;
    return Py_BuildValue("ni", n, why);
}

/* -------------------------------------------------------------------------- */
/* write_array (user ring)                                                    */
/* -------------------------------------------------------------------------- */

PyDoc_STRVAR(write_array_doc,
"write_array(rows, itemsize, count) -> written\n"
"\n"
"Write the contiguous buffer `rows` (exactly `count` rows of `itemsize` bytes)\n"
"as one sample per row into the user ring, as many as fit now: every header\n"
"{itemsize, 0} (final, not BUSY) and payload with plain stores (streaming\n"
"stores after the first 4 MiB of a batch), then one store-release of\n"
"producer_pos publishes the batch (bpf_user_ringbuf_drain\n"
"load-acquires producer_pos and sees all of it).  Returns the rows written,\n"
"or -1, writing nothing, when the positions are inconsistent (misaligned\n"
"producer_pos, more than a ring apart) or samples of this size cannot fit:\n"
"the caller's checked path raises.  Caller holds the producer lock.");

static PyObject *
ur_write_array(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    Py_buffer rb;
    uint32_t itemsize;
    Py_ssize_t count;
    uint64_t *prodp, cons, prod, used, span, room, rows, i;
    unsigned char *p;
    const unsigned char *src;
    long long written = -1;

    if (check_nargs("write_array", nargs, 3) < 0)
        return NULL;
    if (get_itemsize(args[1], &itemsize) < 0)
        return NULL;
    if ((count = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &rb, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (count < 0 || (itemsize && count > PY_SSIZE_T_MAX / (Py_ssize_t)itemsize) ||
        rb.len != count * (Py_ssize_t)itemsize) {
        PyBuffer_Release(&rb);
        PyErr_Format(PyExc_ValueError, "rows of %zd bytes are not %zd samples of %u bytes",
                     rb.len, count, (unsigned)itemsize);
        return NULL;
    }
    if (ring_acquire(self, &r) < 0) {
        PyBuffer_Release(&rb);
        return NULL;
    }
    prodp = r.prod.buf;
    span = span_of(itemsize);
    cons = ld_acq64((const uint64_t *)r.cons.buf); /* as in write() */
    prod = __atomic_load_n(prodp, __ATOMIC_RELAXED); /* we are its only writer */
    used = prod - cons;
    if ((prod & 7u) || used > r.size || span > r.size || itemsize > DYNPTR_MAX)
        goto out;
    room = (r.size - used) / span;
    rows = (uint64_t)count;
    if (rows > room)
        rows = room;
    /* Contiguous thanks to the double mapping, even across the wrap.  Nothing
     * is visible to the drain until producer_pos moves: plain stores, and
     * no order among them. */
    p = (unsigned char *)r.data.buf + (prod & r.mask);
    src = rb.buf;
    for (i = 0; i < rows; i++) {
        /* Headers {itemsize, 0}: final, not BUSY.  Streaming stores after
         * the first STREAM_AFTER bytes of the batch. */
        if (i * span < STREAM_AFTER)
            plain_sample(p, src, itemsize);
        else
            stream_sample(p, src, itemsize);
        p += span;
        src += itemsize;
    }
    if (rows)
        publish_batch(prodp, prod + rows * span);
    written = (long long)rows;
out:
    ring_release(&r);
    PyBuffer_Release(&rb);
    return PyLong_FromLongLong(written);
}
