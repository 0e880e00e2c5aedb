/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel ring's consumer side of bpfring._speedups (included by
 * _speedups.c after _speedups_decode.c): consume() with a callback per
 * record, read() into bytes and read_records() through a decoder, over the
 * committed records between consumer_pos and producer_pos.
 */

/* -------------------------------------------------------------------------- */
/* consume                                                                    */
/* -------------------------------------------------------------------------- */

PyDoc_STRVAR(consume_doc,
"consume(callback, limit, publish_each, release_views)\n"
"    -> (delivered, discarded, busy, cons)\n"
"\n"
"Deliver committed records of the kernel ring (BPF_MAP_TYPE_RINGBUF) to\n"
"callback(view), a read-only memoryview of the payload, like\n"
"bpfring._ringcore.consume_pass, in passes: producer_pos is loaded again\n"
"after each pass until it stops moving.\n"
"Stops at a BUSY record or after `limit` records (None or -1: no limit, 0:\n"
"none).  Discarded records are skipped (and published past).  consumer_pos\n"
"is stored after every record when publish_each, else once per pass.  If\n"
"callback raises, the position before that record is published and the\n"
"exception propagates (at-least-once).  A record claiming more bytes than\n"
"are published raises RingCorrupted after publishing the records before it.\n"
"release_views: release a view the callback kept once the call returns.\n"
"After halt() (a callback closing the ring) no further record is delivered.");

PyDoc_STRVAR(halt_doc,
"halt()\n"
"\n"
"Stop delivering: a consume() running now returns after the current\n"
"callback, later ones deliver nothing (the ring is being closed).");

static PyObject *
kr_halt(RingObject *self, PyObject *unused)
{
    (void)unused;
    self->halted = 1;
    Py_RETURN_NONE;
}

static PyObject *
kr_consume(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    PyObject *callback, *view = NULL, *res;
    Py_ssize_t limit, delivered = 0, discarded = 0;
    int publish_each, release_views, busy = 0, failed = 0;
    const unsigned char *base;
    uint64_t *consp, cons, prod, published, size, mask;
    const uint64_t *prodp;

    if (check_nargs("consume", nargs, 4) < 0)
        return NULL;
    callback = args[0];
    if (!PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        return NULL;
    }
    if (get_limit(args[1], &limit) < 0)
        return NULL;
    if ((publish_each = PyObject_IsTrue(args[2])) < 0)
        return NULL;
    if ((release_views = PyObject_IsTrue(args[3])) < 0)
        return NULL;
    if (ring_acquire(self, &r) < 0)
        return NULL;
    base = r.data.buf;
    consp = r.cons.buf;
    prodp = r.prod.buf;
    size = r.size;
    mask = r.mask;

    /* Only this consumer stores consumer_pos; the acquire is for symmetry. */
    cons = published = ld_acq64(consp);
    if (limit == 0 || self->halted)
        goto done;
    if (cons & 7u) {
        /* Someone else stored it (the kernel never does): headers would be
         * misaligned, and an atomic load of one may fault. */
        raise_misaligned(cons);
        failed = 1;
        goto done;
    }
    for (;;) {
        /* Pairs with the kernel's smp_store_release(&rb->producer_pos) in
         * __bpf_ringbuf_reserve: the BUSY headers it wrote before moving
         * producer_pos are visible to the header loads below. */
        prod = ld_acq64(prodp);
        if (prod == cons)
            break;
        if (prod - cons > size) {
            raise_apart(cons, prod);
            failed = 1;
            goto done;
        }
        while (cons != prod) {
            uint64_t off = cons & mask, span;
            /* Pairs with the xchg in bpf_ringbuf_commit that clears BUSY
             * (and sets DISCARD): once we see BUSY clear, the payload the
             * BPF program wrote before submitting is visible. */
            uint32_t word = ld_acq32(base + off);
            uint32_t len = word & LEN_MASK;

            span = span_of(len);
            if (word & BUSY_BIT) {
                busy = 1;
                goto done;
            }
            if (span > prod - cons) {
                raise_claims(cons, word, prod - cons);
                failed = 1;
                goto done;
            }
            if (word & DISCARD_BIT) {
                discarded++;
                cons += span;
                if (publish_each) {
                    /* Pairs with the kernel's smp_load_acquire of
                     * consumer_pos in __bpf_ringbuf_reserve. */
                    st_rel64(consp, cons);
                    published = cons;
                }
                continue;
            }
            if (view == NULL && (view = view_new(self->data)) == NULL) {
                failed = 1;
                goto done;
            }
            view_point(view, base + off + HDR_SIZE, (Py_ssize_t)len);
            res = PyObject_Vectorcall(callback, &view, 1, NULL);
            if (res == NULL) {
                /* At-least-once: this record is not consumed (cons is still
                 * its position, published below). */
                failed = 1;
                if (!view_reusable(view))
                    view_drop(&view, release_views);
                goto done;
            }
            Py_DECREF(res);
            cons += span;
            delivered++;
            if (!view_reusable(view) && view_drop(&view, release_views) < 0) {
                failed = 1; /* the record itself was delivered: it stays consumed */
                goto done;
            }
            if (publish_each) {
                /* Release: our payload reads are done before the kernel
                 * (smp_load_acquire of consumer_pos) may reuse the space. */
                st_rel64(consp, cons);
                published = cons;
            }
            /* halt() from the callback (the ring is being closed): stop
             * after the record it got, which stays consumed. */
            if (delivered == limit || self->halted)
                goto done;
        }
        if (cons != published) {
            st_rel64(consp, cons); /* once per pass: as above */
            published = cons;
        }
    }
done:
    /* Also after an error: records delivered before it stay consumed, the
     * record that failed (callback error, corruption) does not. */
    if (cons != published)
        st_rel64(consp, cons);
    Py_XDECREF(view);
    ring_release(&r);
    if (failed)
        return NULL;
    return Py_BuildValue("nnOK", delivered, discarded, busy ? Py_True : Py_False,
                         (unsigned long long)cons);
}

/* -------------------------------------------------------------------------- */
/* The walk of read() and read_records()                                      */
/* -------------------------------------------------------------------------- */

/* What a walk does with one committed record: 0, or -1 with an exception set
 * (the record is then not consumed). */
typedef int (*take_fn)(void *ctx, const unsigned char *payload, uint32_t len);

typedef struct {
    uint64_t start;  /* consumer_pos when the walk began */
    uint64_t cons;   /* the position after the records taken */
    Py_ssize_t n;    /* committed records taken */
    int busy;        /* stopped at a BUSY record */
} walk_t;

#define WALK_RAISED (-1)      /* positions or first record corrupted: nothing taken */
#define WALK_TAKE_FAILED (-2) /* take() raised at the record at w->cons */

/* Hand the committed records from consumer_pos on to take(), in passes (the
 * same walk as consume()): until a BUSY record, `limit` records (-1: no
 * limit), the ring is empty, or, with `halted` not NULL, *halted is set (a
 * close() from code take() ran; checked after each record).  Corrupted
 * positions or a record claiming more than is published end the walk at
 * the records before it (the next call raises), or raise when there are
 * none.  consumer_pos is not stored: the caller publishes w->cons once the
 * records are safe.  Always inlined, so that take() is a direct call the
 * compiler can inline too, not a call through a pointer per record. */
static inline __attribute__((always_inline)) int
walk_records(ring_t *r, Py_ssize_t limit, const int *halted, take_fn take, void *ctx,
             walk_t *w)
{
    const unsigned char *base = r->data.buf;
    const uint64_t *prodp = r->prod.buf;
    uint64_t cons, prod, size = r->size, mask = r->mask;
    Py_ssize_t n = 0;
    int rc = 0;

    w->busy = 0;
    cons = w->start = ld_acq64(r->cons.buf); /* ours: only this consumer stores it */
    if (limit == 0 || (halted != NULL && *halted))
        goto done;
    if (cons & 7u) {
        raise_misaligned(cons); /* as in consume() */
        rc = WALK_RAISED;
        goto done;
    }
    for (;;) {
        prod = ld_acq64(prodp); /* pairs with the kernel's store-release */
        if (prod == cons)
            break;
        if (prod - cons > size) {
            if (n)
                goto done;
            raise_apart(cons, prod);
            rc = WALK_RAISED;
            goto done;
        }
        while (cons != prod) {
            uint64_t off = cons & mask, span;
            uint32_t word = ld_acq32(base + off); /* pairs with the commit xchg */
            uint32_t len = word & LEN_MASK;

            span = span_of(len);
            if (word & BUSY_BIT) {
                w->busy = 1;
                goto done;
            }
            if (span > prod - cons) {
                if (n)
                    goto done; /* hand out what we have; the next call raises */
                raise_claims(cons, word, prod - cons);
                rc = WALK_RAISED;
                goto done;
            }
            if (!(word & DISCARD_BIT)) {
                if (take(ctx, base + off + HDR_SIZE, len) < 0) {
                    rc = WALK_TAKE_FAILED;
                    goto done;
                }
                n++;
            }
            cons += span;
            if (n == limit || (halted != NULL && *halted))
                goto done;
        }
    }
done:
    w->cons = cons;
    w->n = n;
    return rc;
}

/* -------------------------------------------------------------------------- */
/* read                                                                       */
/* -------------------------------------------------------------------------- */

PyDoc_STRVAR(read_doc,
"read(limit) -> (records, busy)\n"
"\n"
"Copy up to `limit` (None or -1: no limit, 0: none) committed records of the\n"
"kernel ring into a list of bytes, with the same walk as consume().\n"
"consumer_pos is stored once, when the call returns: the records are\n"
"consumed once they are in the list.  On an error nothing is consumed\n"
"(MemoryError), or, for a corrupted record, the records copied before it are\n"
"returned and consumed and the next call raises RingCorrupted.");

/* take_fn of read(): a bytes copy appended to the list `ctx`. */
static inline int
take_bytes(void *ctx, const unsigned char *payload, uint32_t len)
{
    PyObject *rec = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)len);
    int rc;

    if (rec == NULL)
        return -1;
    rc = PyList_Append((PyObject *)ctx, rec);
    Py_DECREF(rec);
    return rc;
}

static PyObject *
kr_read(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    walk_t w;
    PyObject *out;
    Py_ssize_t limit;

    if (check_nargs("read", nargs, 1) < 0)
        return NULL;
    if (get_limit(args[0], &limit) < 0)
        return NULL;
    if (ring_acquire(self, &r) < 0)
        return NULL;
    if ((out = PyList_New(0)) == NULL) {
        ring_release(&r);
        return NULL;
    }
    if (walk_records(&r, limit, NULL, take_bytes, out, &w) < 0) {
        ring_release(&r); /* nothing consumed */
        Py_DECREF(out);
        return NULL;
    }
    /* Release: the copies are made before the kernel may reuse the space
     * (pairs with its smp_load_acquire of consumer_pos). */
    if (w.cons != w.start)
        st_rel64(r.cons.buf, w.cons);
    ring_release(&r);
    return Py_BuildValue("NO", out, w.busy ? Py_True : Py_False);
}

/* -------------------------------------------------------------------------- */
/* read_records: read() decoding each payload straight from the ring          */
/* -------------------------------------------------------------------------- */

PyDoc_STRVAR(read_records_doc,
"read_records(limit, decoder, batch) -> (records, busy, raw)\n"
"\n"
"read(), with each committed payload turned into decoder(payload) instead of\n"
"bytes: a _RecordDecoder without Python ops decodes straight from the ring\n"
"(no copy), any other callable gets a bytes copy.  consumer_pos is stored\n"
"once, after the decoding.  If decoding raises, consumer_pos is stored at\n"
"that record (the ones decoded before it are consumed) and, with batch\n"
"false, the error propagates; with batch true, the records decoded before\n"
"it are returned (the error comes again from the next call), and only a\n"
"failure at the first record propagates.  raw is None, or with batch\n"
"true the bytes of the consumed area (headers included) the records came\n"
"from, so that an iterator's leftovers can still be handed out raw.");

typedef struct {
    PyObject *out, *decoder;
    dec_prog *fast; /* the decoder's program when it needs no Python, else NULL */
} decode_ctx;

/* take_fn of read_records(): decoder(payload) appended to ctx->out. */
static inline int
take_decoded(void *ctx, const unsigned char *payload, uint32_t len)
{
    decode_ctx *c = ctx;
    PyObject *rec;

    if (c->fast != NULL && (Py_ssize_t)len >= c->fast->size) {
        rec = rd_struct(c->fast, payload, Py_None, 0);
    }
    else {
        PyObject *b = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)len);
        rec = b != NULL ? PyObject_CallOneArg(c->decoder, b) : NULL;
        Py_XDECREF(b);
    }
    if (rec == NULL || PyList_Append(c->out, rec) < 0) {
        Py_XDECREF(rec);
        return -1;
    }
    Py_DECREF(rec);
    return 0;
}

static PyObject *
kr_read_records(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    walk_t w;
    decode_ctx ctx = {NULL, NULL, NULL};
    PyObject *decoder, *raw = NULL;
    Py_ssize_t limit;
    int batch, rc;

    if (check_nargs("read_records", nargs, 3) < 0)
        return NULL;
    if (get_limit(args[0], &limit) < 0)
        return NULL;
    decoder = args[1];
    if (!PyCallable_Check(decoder)) {
        PyErr_SetString(PyExc_TypeError, "decoder must be callable");
        return NULL;
    }
    if ((batch = PyObject_IsTrue(args[2])) < 0)
        return NULL;
    if (Py_IS_TYPE(decoder, &RecordDecoderType)) {
        dec_prog *top = ((RecordDecoderObject *)decoder)->top;
        if (top != NULL && !top->has_py)
            ctx.fast = top;
    }
    if (ring_acquire(self, &r) < 0)
        return NULL;
    if ((ctx.out = PyList_New(0)) == NULL) {
        ring_release(&r);
        return NULL;
    }
    /* The decoder may run Python code (a generic one, or a finalizer run by
     * the GC): keep it alive even if that code drops its last reference. */
    ctx.decoder = Py_NewRef(decoder);
    /* halted: close() from code the decoder ran; stop after that record. */
    rc = walk_records(&r, limit, &self->halted, take_decoded, &ctx, &w);
    if (rc == WALK_TAKE_FAILED) {
        /* The records before this one are consumed; it is not. */
        if (batch && w.n && PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear(); /* comes again from the next call */
        }
        else {
            if (w.cons != w.start)
                st_rel64(r.cons.buf, w.cons);
            goto fail;
        }
    }
    else if (rc < 0) {
        goto fail;
    }
    if (batch && w.cons != w.start) {
        /* The double mapping makes the consumed area contiguous. */
        raw = PyBytes_FromStringAndSize((const char *)r.data.buf + (w.start & r.mask),
                                        (Py_ssize_t)(w.cons - w.start));
        if (raw == NULL)
            goto fail; /* nothing consumed */
    }
    /* Release: the payload reads are done before the kernel may reuse the
     * space (pairs with its smp_load_acquire of consumer_pos). */
    if (w.cons != w.start)
        st_rel64(r.cons.buf, w.cons);
    ring_release(&r);
    Py_DECREF(ctx.decoder);
    return Py_BuildValue("NON", ctx.out, w.busy ? Py_True : Py_False,
                         raw ? raw : Py_NewRef(Py_None));
fail:
    ring_release(&r);
    Py_DECREF(ctx.decoder);
    Py_DECREF(ctx.out);
    return NULL;
}
