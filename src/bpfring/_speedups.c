/* SPDX-License-Identifier: Apache-2.0
 *
 * bpfring._speedups: the C ring backend, with real acquire/release atomics.
 * bpfring._ringpure is its pure-Python twin: the same types, functions,
 * results and errors; bpfring._ringbackend picks one of the two at import,
 * and the sans-IO bpfring._ringcore is the reference for the protocol.
 *
 * KernelRing(data, cons_page, prod_page, size) and UserRing(...) bind the
 * memory of one ring (the memoryviews of the mmaps that bpfring.ringbuf
 * keeps, or bytearrays in tests), never raw addresses; the arguments are
 * checked once, when the object is made.  Every call acquires the buffers
 * again for its duration, so a ring that was closed (its views released)
 * makes the call raise ValueError instead of touching unmapped memory.
 *
 *   data       the data area, mapped twice in a row: exactly 2 * size bytes,
 *              8-byte aligned (a bytearray of 2 * size bytes stands in for
 *              the double mapping in tests: wrapped payloads must then be
 *              written to both halves by the test)
 *   cons_page  a buffer whose first 8 bytes are consumer_pos
 *   prod_page  a buffer whose first 8 bytes are producer_pos
 *   size       the data size: a power of two
 *
 * Record format (kernel/bpf/ringbuf.c, include/uapi/linux/bpf.h): an 8-byte
 * header {u32 len; u32 pg_off} at data + (pos & (size - 1)), where len holds
 * the payload length in bits 0-29, DISCARD in bit 30 and BUSY in bit 31; the
 * record occupies round_up(len + 8, 8) bytes.
 *
 * Memory ordering.  The kernel publishes and consumes with
 * smp_load_acquire/smp_store_release and xchg; the matching accesses here are
 * __atomic loads/stores with ACQUIRE/RELEASE and an atomic compare-exchange.
 * On x86-64 they compile to plain moves (plus a compiler barrier); on arm64
 * to ldar/stlr, which is what makes bpfring correct on weakly ordered CPUs.
 * Each access below says which kernel access it pairs with.
 *
 * Our own code, written from the protocol description; nothing is copied
 * from libbpf or the kernel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define HDR_SIZE 8u
#define BUSY_BIT 0x80000000u
#define DISCARD_BIT 0x40000000u
#define FLAG_BITS (BUSY_BIT | DISCARD_BIT)
#define LEN_MASK (DISCARD_BIT - 1u)
/* Largest payload bpf_user_ringbuf_drain accepts (DYNPTR_MAX_SIZE). */
#define DYNPTR_MAX ((1u << 24) - 1u)

static PyObject *str_release; /* "release", interned at module init */

/* -------------------------------------------------------------------------- */
/* Atomics                                                                    */
/* -------------------------------------------------------------------------- */

static inline uint64_t
ld_acq64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void
st_rel64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline uint32_t
ld_acq32(const unsigned char *p)
{
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}

static inline uint64_t
span_of(uint32_t len)
{
    return ((uint64_t)len + HDR_SIZE + 7u) & ~(uint64_t)7u;
}

/* Copy one payload of `len` bytes.  Payloads start 8-byte aligned in the
 * ring; for the usual small sizes, fixed 8-byte moves beat a memcpy call. */
static inline void
copy_payload(unsigned char *dst, const unsigned char *src, uint32_t len)
{
    if (len <= 64) {
        uint32_t i = 0;

        for (; i + 8 <= len; i += 8)
            memcpy(dst + i, src + i, 8);
        for (; i < len; i++)
            dst[i] = src[i];
    }
    else {
        memcpy(dst, src, len);
    }
}

/* -------------------------------------------------------------------------- */
/* Argument helpers                                                           */
/* -------------------------------------------------------------------------- */

typedef struct {
    Py_buffer data, cons, prod;
    int held; /* bit 0: data, 1: cons, 2: prod */
    uint64_t size, mask;
} ring_t;

static void
ring_release(ring_t *r)
{
    if (r->held & 1)
        PyBuffer_Release(&r->data);
    if (r->held & 2)
        PyBuffer_Release(&r->cons);
    if (r->held & 4)
        PyBuffer_Release(&r->prod);
    r->held = 0;
}

static int
get_size(PyObject *obj, uint64_t *out)
{
    unsigned long long v;

    if (!PyLong_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "size must be an int");
        return -1;
    }
    v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    /* At least one header plus one 8-byte record; the kernel also requires a
     * multiple of the page size, which is not our business here. */
    if (v < 16 || (v & (v - 1)) || v > ((uint64_t)PY_SSIZE_T_MAX >> 2)) {
        PyErr_Format(PyExc_ValueError, "ring size %llu is not a power of two >= 16", v);
        return -1;
    }
    *out = v;
    return 0;
}

static int
get_pos_buffer(PyObject *obj, Py_buffer *view, int writable, const char *what)
{
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len < 8 || ((uintptr_t)view->buf & 7u)) {
        PyErr_Format(PyExc_ValueError, "%s must be an 8-byte aligned buffer of at least 8 bytes",
                     what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Acquire the three ring buffers; on failure nothing stays acquired. */
static int
ring_open(ring_t *r, PyObject *data, PyObject *cons, PyObject *prod, uint64_t size,
          int data_writable, int cons_writable, int prod_writable)
{
    r->held = 0;
    r->size = size;
    r->mask = r->size - 1;
    if (PyObject_GetBuffer(data, &r->data, data_writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    r->held |= 1;
    if ((uint64_t)r->data.len != 2 * r->size || ((uintptr_t)r->data.buf & 7u)) {
        PyErr_Format(PyExc_ValueError,
                     "data must be the double-mapped data area: 2 * size = %llu bytes, "
                     "8-byte aligned (got %zd bytes)",
                     (unsigned long long)(2 * r->size), r->data.len);
        goto fail;
    }
    if (get_pos_buffer(cons, &r->cons, cons_writable, "cons_page") < 0)
        goto fail;
    r->held |= 2;
    if (get_pos_buffer(prod, &r->prod, prod_writable, "prod_page") < 0)
        goto fail;
    r->held |= 4;
    return 0;
fail:
    ring_release(r);
    return -1;
}

/* -------------------------------------------------------------------------- */
/* The ring objects                                                           */
/* -------------------------------------------------------------------------- */

/* KernelRing (we consume: the consumer page is written, the rest read) and
 * UserRing (we produce: the producer page and the data are written). */
typedef struct {
    PyObject_HEAD
    PyObject *data, *cons, *prod;
    uint64_t size;
    int producer;
    int halted; /* halt() was called: consume() delivers nothing more */
} RingObject;

static PyTypeObject KernelRing_Type, UserRing_Type;

static int
ring_acquire(RingObject *self, ring_t *r)
{
    return ring_open(r, self->data, self->cons, self->prod, self->size, self->producer,
                     !self->producer, self->producer);
}

static PyObject *
ring_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *data, *cons, *prod, *size_obj;
    RingObject *self;
    ring_t r;
    uint64_t size;

    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", type->tp_name);
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, type->tp_name, 4, 4, &data, &cons, &prod, &size_obj))
        return NULL;
    if (get_size(size_obj, &size) < 0)
        return NULL;
    self = (RingObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->data = Py_NewRef(data);
    self->cons = Py_NewRef(cons);
    self->prod = Py_NewRef(prod);
    self->size = size;
    self->producer = type == &UserRing_Type;
    /* Check the buffers now (types, sizes, alignment, writability), so that
     * a bad ring fails where it is made; every call checks them again. */
    if (ring_acquire(self, &r) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    ring_release(&r);
    return (PyObject *)self;
}

static void
ring_dealloc(RingObject *self)
{
    Py_XDECREF(self->data);
    Py_XDECREF(self->cons);
    Py_XDECREF(self->prod);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
ring_get_size(RingObject *self, void *unused)
{
    return PyLong_FromUnsignedLongLong(self->size);
}

static PyGetSetDef ring_getset[] = {
    {"size", (getter)ring_get_size, NULL, "the data size in bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* limit: None or -1 -> unlimited (returned as -1), else an int >= 0. */
static int
get_limit(PyObject *obj, Py_ssize_t *out)
{
    Py_ssize_t v;

    if (obj == Py_None) {
        *out = -1;
        return 0;
    }
    v = PyLong_AsSsize_t(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < -1) {
        PyErr_SetString(PyExc_ValueError, "limit must be None, -1 (no limit) or >= 0");
        return -1;
    }
    *out = v;
    return 0;
}

static int
check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)", name,
                     want, nargs);
        return -1;
    }
    return 0;
}

/* Raise bpfring.errors.RingCorrupted(message), imported lazily. */
static void
raise_corrupted(const char *fmt, ...)
{
    PyObject *mod, *cls, *msg, *exc;
    va_list ap;

    va_start(ap, fmt);
    msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg == NULL)
        return;
    mod = PyImport_ImportModule("bpfring.errors");
    if (mod == NULL) {
        Py_DECREF(msg);
        return;
    }
    cls = PyObject_GetAttrString(mod, "RingCorrupted");
    Py_DECREF(mod);
    if (cls == NULL) {
        Py_DECREF(msg);
        return;
    }
    exc = PyObject_CallOneArg(cls, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject(cls, exc);
        Py_DECREF(exc);
    }
    Py_DECREF(cls);
}

static void
raise_apart(uint64_t cons, uint64_t prod)
{
    raise_corrupted("positions cons=%llu prod=%llu are more than a ring apart",
                    (unsigned long long)cons, (unsigned long long)prod);
}

static void
raise_claims(uint64_t cons, uint32_t word, uint64_t avail)
{
    raise_corrupted("%srecord at position %llu claims %u bytes but only %lld are published",
                    (word & DISCARD_BIT) ? "discarded " : "", (unsigned long long)cons,
                    (unsigned)(word & LEN_MASK), (long long)avail - (long long)HDR_SIZE);
}

static void
raise_misaligned(uint64_t cons)
{
    raise_corrupted("consumer position %llu is not 8-byte aligned", (unsigned long long)cons);
}

/* -------------------------------------------------------------------------- */
/* The callback's view                                                        */
/* -------------------------------------------------------------------------- */

/*
 * The callback gets a read-only 1-D memoryview of the payload.  It is a view
 * of the `data` object (PyMemoryView_FromObject registers it with data's
 * managed buffer), so while anyone holds it the mmap cannot be unmapped
 * under it: a view or a numpy array the callback keeps stays valid memory,
 * as in the pure-Python path.
 *
 * Allocating and freeing a memoryview per record would cost more than the
 * rest of the loop, so the view is recycled: after the call, if nothing else
 * can reach it (refcount 1, no buffer exports, no weak references, not
 * released), it is re-pointed at the next payload.  No one can observe the
 * difference from a fresh view.  Otherwise it is released (release_views)
 * and dropped, and the next record gets a new one.
 */
static PyObject *
view_new(PyObject *data_obj)
{
    PyObject *v = PyMemoryView_FromObject(data_obj);
    PyMemoryViewObject *mv;

    if (v == NULL)
        return NULL;
    mv = (PyMemoryViewObject *)v;
    if (mv->view.ndim != 1 || mv->view.itemsize != 1 || mv->view.suboffsets != NULL ||
        mv->view.strides == NULL || mv->view.strides[0] != 1 || mv->view.shape == NULL) {
        Py_DECREF(v);
        PyErr_SetString(PyExc_ValueError, "data must be a 1-D contiguous byte buffer");
        return NULL;
    }
    mv->view.readonly = 1;
    return v;
}

static inline void
view_point(PyObject *v, const unsigned char *p, Py_ssize_t len)
{
    PyMemoryViewObject *mv = (PyMemoryViewObject *)v;

    mv->view.buf = (void *)p;
    mv->view.len = len;
    mv->view.shape[0] = len;
    mv->hash = -1;
}

static inline int
view_reusable(PyObject *v)
{
#ifdef Py_GIL_DISABLED
    /* Free-threaded builds: a reference count of 1 proves nothing about
     * other threads; always hand out a fresh view. */
    return 0;
#else
    PyMemoryViewObject *mv = (PyMemoryViewObject *)v;

    return Py_REFCNT(v) == 1 && mv->exports == 0 && mv->weakreflist == NULL &&
           !(mv->flags & _Py_MEMORYVIEW_RELEASED);
#endif
}

/* Save and restore a pending exception around a call (PyErr_Fetch and
 * PyErr_Restore are deprecated from 3.12 on). */
#if PY_VERSION_HEX >= 0x030C0000
typedef PyObject *saved_exc_t;
static inline void exc_save(saved_exc_t *s) { *s = PyErr_GetRaisedException(); }
static inline int exc_pending(const saved_exc_t *s) { return *s != NULL; }
static inline void exc_restore(saved_exc_t *s)
{
    if (*s != NULL)
        PyErr_SetRaisedException(*s);
}
#else
typedef struct {
    PyObject *type, *value, *tb;
} saved_exc_t;
static inline void exc_save(saved_exc_t *s) { PyErr_Fetch(&s->type, &s->value, &s->tb); }
static inline int exc_pending(const saved_exc_t *s) { return s->type != NULL; }
static inline void exc_restore(saved_exc_t *s) { PyErr_Restore(s->type, s->value, s->tb); }
#endif

/* Drop the view after a call that kept it; release it first if asked.  A
 * view the callback re-exported (np.frombuffer) cannot be released: it stays
 * valid, as in the pure-Python path.  Keeps any pending exception. */
static int
view_drop(PyObject **vp, int release)
{
    PyObject *v = *vp, *r;
    saved_exc_t pending;

    *vp = NULL;
    if (!release || (((PyMemoryViewObject *)v)->flags & _Py_MEMORYVIEW_RELEASED)) {
        Py_DECREF(v);
        return 0;
    }
    exc_save(&pending);
    r = PyObject_CallMethodNoArgs(v, str_release);
    Py_DECREF(v);
    if (r != NULL) {
        Py_DECREF(r);
    }
    else if (PyErr_ExceptionMatches(PyExc_BufferError)) {
        PyErr_Clear();
    }
    else if (!exc_pending(&pending)) {
        return -1;
    }
    else {
        PyErr_Clear();
    }
    exc_restore(&pending);
    return 0;
}

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

static PyObject *
kr_read(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    PyObject *out, *rec, *ret;
    Py_ssize_t limit, n = 0;
    int busy = 0;
    const unsigned char *base;
    uint64_t *consp, cons, start, prod, size, mask;
    const uint64_t *prodp;

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
    base = r.data.buf;
    consp = r.cons.buf;
    prodp = r.prod.buf;
    size = r.size;
    mask = r.mask;
    cons = start = ld_acq64(consp);
    if (limit == 0)
        goto done;
    if (cons & 7u) {
        raise_misaligned(cons); /* as in consume() */
        goto fail;
    }
    for (;;) {
        prod = ld_acq64(prodp); /* pairs with the kernel's store-release */
        if (prod == cons)
            break;
        if (prod - cons > size) {
            if (n)
                goto done;
            raise_apart(cons, prod);
            goto fail;
        }
        while (cons != prod) {
            uint64_t off = cons & mask, span;
            uint32_t word = ld_acq32(base + off); /* pairs with the commit xchg */
            uint32_t len = word & LEN_MASK;

            span = span_of(len);
            if (word & BUSY_BIT) {
                busy = 1;
                goto done;
            }
            if (span > prod - cons) {
                if (n)
                    goto done; /* hand out what we have; the next call raises */
                raise_claims(cons, word, prod - cons);
                goto fail;
            }
            if (!(word & DISCARD_BIT)) {
                rec = PyBytes_FromStringAndSize((const char *)base + off + HDR_SIZE,
                                                (Py_ssize_t)len);
                if (rec == NULL)
                    goto fail;
                if (PyList_Append(out, rec) < 0) {
                    Py_DECREF(rec);
                    goto fail;
                }
                Py_DECREF(rec);
                n++;
            }
            cons += span;
            if (n == limit)
                goto done;
        }
    }
done:
    /* Release: the copies are made before the kernel may reuse the space
     * (pairs with its smp_load_acquire of consumer_pos). */
    if (cons != start)
        st_rel64(consp, cons);
    ring_release(&r);
    ret = Py_BuildValue("NO", out, busy ? Py_True : Py_False);
    return ret;
fail:
    ring_release(&r);
    Py_DECREF(out);
    return NULL;
}

/* -------------------------------------------------------------------------- */
/* read_records: read() decoding each payload straight from the ring          */
/* -------------------------------------------------------------------------- */

#include "_speedups_decode.c"

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

static PyObject *
kr_read_records(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ring_t r;
    PyObject *out, *rec, *decoder, *raw = NULL;
    Py_ssize_t limit, n = 0;
    int busy = 0, batch;
    const unsigned char *base;
    uint64_t *consp, cons, start, prod, size, mask;
    const uint64_t *prodp;
    dec_prog *fast = NULL;

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
            fast = top;
    }
    if (ring_acquire(self, &r) < 0)
        return NULL;
    if ((out = PyList_New(0)) == NULL) {
        ring_release(&r);
        return NULL;
    }
    /* The decoder may run Python code (a generic one, or a finalizer run by
     * the GC): keep it alive even if that code drops its last reference. */
    Py_INCREF(decoder);
    base = r.data.buf;
    consp = r.cons.buf;
    prodp = r.prod.buf;
    size = r.size;
    mask = r.mask;
    cons = start = ld_acq64(consp);
    if (limit == 0 || self->halted)
        goto done;
    if (cons & 7u) {
        raise_misaligned(cons); /* as in consume() */
        goto fail;
    }
    for (;;) {
        prod = ld_acq64(prodp); /* pairs with the kernel's store-release */
        if (prod == cons)
            break;
        if (prod - cons > size) {
            if (n)
                goto done;
            raise_apart(cons, prod);
            goto fail;
        }
        while (cons != prod) {
            uint64_t off = cons & mask, span;
            uint32_t word = ld_acq32(base + off); /* pairs with the commit xchg */
            uint32_t len = word & LEN_MASK;

            span = span_of(len);
            if (word & BUSY_BIT) {
                busy = 1;
                goto done;
            }
            if (span > prod - cons) {
                if (n)
                    goto done; /* hand out what we have; the next call raises */
                raise_claims(cons, word, prod - cons);
                goto fail;
            }
            if (!(word & DISCARD_BIT)) {
                const unsigned char *payload = base + off + HDR_SIZE;

                if (fast != NULL && (Py_ssize_t)len >= fast->size) {
                    rec = rd_struct(fast, payload, Py_None, 0);
                }
                else {
                    PyObject *b = PyBytes_FromStringAndSize((const char *)payload,
                                                            (Py_ssize_t)len);
                    rec = b != NULL ? PyObject_CallOneArg(decoder, b) : NULL;
                    Py_XDECREF(b);
                }
                if (rec == NULL || PyList_Append(out, rec) < 0) {
                    Py_XDECREF(rec);
                    /* The records before this one are consumed; it is not. */
                    if (batch && n && PyErr_ExceptionMatches(PyExc_Exception)) {
                        PyErr_Clear(); /* comes again from the next call */
                        goto done;
                    }
                    if (cons != start)
                        st_rel64(consp, cons);
                    goto fail;
                }
                Py_DECREF(rec);
                n++;
            }
            cons += span;
            /* halt(): close() from code the decoder ran; stop after this record */
            if (n == limit || self->halted)
                goto done;
        }
    }
done:
    if (batch && cons != start) {
        /* The double mapping makes the consumed area contiguous. */
        raw = PyBytes_FromStringAndSize((const char *)base + (start & mask),
                                        (Py_ssize_t)(cons - start));
        if (raw == NULL)
            goto fail; /* nothing consumed */
    }
    /* Release: the payload reads are done before the kernel may reuse the
     * space (pairs with its smp_load_acquire of consumer_pos). */
    if (cons != start)
        st_rel64(consp, cons);
    ring_release(&r);
    Py_DECREF(decoder);
    return Py_BuildValue("NON", out, busy ? Py_True : Py_False, raw ? raw : Py_NewRef(Py_None));
fail:
    ring_release(&r);
    Py_DECREF(decoder);
    Py_DECREF(out);
    return NULL;
}

/* -------------------------------------------------------------------------- */
/* backlog_iter: the iterator of RingBuffer (and its records backlog)         */
/* -------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *backlog, *popleft, *fill;
} BacklogIterObject;

static PyTypeObject BacklogIter_Type;

static PyObject *
bi_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *backlog, *fill, *popleft;
    BacklogIterObject *self;

    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "backlog_iter takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO:backlog_iter", &backlog, &fill))
        return NULL;
    if (!PyCallable_Check(fill)) {
        PyErr_SetString(PyExc_TypeError, "fill must be callable");
        return NULL;
    }
    if ((popleft = PyObject_GetAttrString(backlog, "popleft")) == NULL)
        return NULL;
    if ((self = (BacklogIterObject *)type->tp_alloc(type, 0)) == NULL) {
        Py_DECREF(popleft);
        return NULL;
    }
    self->backlog = Py_NewRef(backlog);
    self->popleft = popleft;
    self->fill = Py_NewRef(fill);
    return (PyObject *)self;
}

static PyObject *
bi_next(BacklogIterObject *self)
{
    for (;;) {
        /* No other thread runs between the length check and the pop (both
         * are C calls that cannot release the GIL): the pop cannot fail. */
        Py_ssize_t k = PyObject_Size(self->backlog);
        if (k < 0)
            return NULL;
        if (k > 0)
            return PyObject_CallNoArgs(self->popleft);
        PyObject *r = PyObject_CallNoArgs(self->fill); /* blocks for the next batch */
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
}

static int
bi_traverse(BacklogIterObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->backlog);
    Py_VISIT(self->popleft);
    Py_VISIT(self->fill);
    return 0;
}

static int
bi_clear(BacklogIterObject *self)
{
    Py_CLEAR(self->backlog);
    Py_CLEAR(self->popleft);
    Py_CLEAR(self->fill);
    return 0;
}

static void
bi_dealloc(BacklogIterObject *self)
{
    PyObject_GC_UnTrack(self);
    bi_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
bi_iternext(BacklogIterObject *self)
{
    if (self->fill == NULL) { /* cleared by the GC */
        PyErr_SetString(PyExc_ValueError, "this iterator was cleared");
        return NULL;
    }
    return bi_next(self);
}

static PyObject *
bi_close(BacklogIterObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_NONE; /* as a generator's close(): nothing is lost, leftovers stay queued */
}

static PyMethodDef bi_methods[] = {
    {"close", (PyCFunction)bi_close, METH_NOARGS, "Nothing to do (as for a generator)."},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(backlog_iter_doc,
"backlog_iter(backlog, fill)\n"
"\n"
"An iterator that pops the deque `backlog` from the left and calls fill()\n"
"(which must put records into it, wait, or raise) whenever it is empty.");

static PyTypeObject BacklogIter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bpfring._speedups.backlog_iter",
    .tp_basicsize = sizeof(BacklogIterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = backlog_iter_doc,
    .tp_new = bi_new,
    .tp_dealloc = (destructor)bi_dealloc,
    .tp_traverse = (traverseproc)bi_traverse,
    .tp_clear = (inquiry)bi_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)bi_iternext,
    .tp_methods = bi_methods,
};

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

/* -------------------------------------------------------------------------- */
/* Single accesses for the slower paths                                       */
/* -------------------------------------------------------------------------- */

static int
word_ptr(PyObject *const *args, Py_buffer *view, int writable, size_t width, void **p)
{
    Py_ssize_t index;

    index = PyNumber_AsSsize_t(args[1], PyExc_IndexError);
    if (index == -1 && PyErr_Occurred())
        return -1;
    if (PyObject_GetBuffer(args[0], view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    if (index < 0 || (size_t)index >= (size_t)view->len / width) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return -1;
    }
    *p = (char *)view->buf + (size_t)index * width;
    if ((uintptr_t)*p & (width - 1)) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "buffer is not aligned for atomic access");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(load_acquire_u64_doc,
"load_acquire_u64(buf, index) -> int\n"
"\n"
"Load-acquire the index-th little-endian u64 of buf (a position).");

static PyObject *
sp_load_acquire_u64(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    void *p;
    uint64_t v;

    if (check_nargs("load_acquire_u64", nargs, 2) < 0)
        return NULL;
    if (word_ptr(args, &view, 0, 8, &p) < 0)
        return NULL;
    /* Pairs with the kernel's store-release of the position it owns. */
    v = ld_acq64(p);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(v);
}

PyDoc_STRVAR(store_release_u64_doc,
"store_release_u64(buf, index, value) -> None\n"
"\n"
"Store-release value into the index-th u64 of buf (a position we own).");

static PyObject *
sp_store_release_u64(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    void *p;
    unsigned long long v;

    if (check_nargs("store_release_u64", nargs, 3) < 0)
        return NULL;
    v = PyLong_AsUnsignedLongLong(args[2]);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (word_ptr(args, &view, 1, 8, &p) < 0)
        return NULL;
    /* Pairs with the kernel's load-acquire of the position: everything we
     * did to the ring before (payload reads or writes) is ordered before. */
    st_rel64(p, (uint64_t)v);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
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

PyDoc_STRVAR(acquire_fence_doc,
"acquire_fence() -> None\n"
"\n"
"An acquire fence: loads before it (headers read in one vectorised pass)\n"
"are ordered before loads and stores after it (the payload copy).");

static PyObject *
sp_acquire_fence(PyObject *mod, PyObject *unused)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    Py_RETURN_NONE;
}

/* -------------------------------------------------------------------------- */

/* Load-acquire the position in the first 8 bytes of `page`. */
static PyObject *
load_position(PyObject *page, const char *what)
{
    Py_buffer b;
    uint64_t v;

    if (get_pos_buffer(page, &b, 0, what) < 0)
        return NULL;
    /* Pairs with the store-release of whoever owns the position (the
     * kernel's for producer_pos of a kernel ring and consumer_pos of a user
     * ring, ours for the other two). */
    v = ld_acq64(b.buf);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(v);
}

PyDoc_STRVAR(consumer_pos_doc,
"consumer_pos() -> int\n"
"\n"
"Load-acquire consumer_pos.");

static PyObject *
ring_consumer_pos(RingObject *self, PyObject *unused)
{
    return load_position(self->cons, "cons_page");
}

PyDoc_STRVAR(producer_pos_doc,
"producer_pos() -> int\n"
"\n"
"Load-acquire producer_pos.");

static PyObject *
ring_producer_pos(RingObject *self, PyObject *unused)
{
    return load_position(self->prod, "prod_page");
}

PyDoc_STRVAR(publish_doc,
"publish(pos) -> None\n"
"\n"
"Store-release the position this side owns: consumer_pos of a kernel ring,\n"
"producer_pos of a user ring.");

static PyObject *
ring_publish(RingObject *self, PyObject *arg)
{
    Py_buffer b;
    unsigned long long v;

    v = PyLong_AsUnsignedLongLong(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (get_pos_buffer(self->producer ? self->prod : self->cons, &b, 1,
                       self->producer ? "prod_page" : "cons_page") < 0)
        return NULL;
    /* Pairs with the kernel's load-acquire of the position: everything we
     * did to the ring before (payload reads, or payload and header writes)
     * is ordered before it. */
    st_rel64(b.buf, (uint64_t)v);
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

#include "_speedups_batch.c"

#define RING_POSITION_METHODS                                                              \
    {"consumer_pos", (PyCFunction)ring_consumer_pos, METH_NOARGS, consumer_pos_doc},     \
    {"producer_pos", (PyCFunction)ring_producer_pos, METH_NOARGS, producer_pos_doc},     \
    {"publish", (PyCFunction)ring_publish, METH_O, publish_doc}

static PyMethodDef kernel_ring_methods[] = {
    {"consume", (PyCFunction)(void (*)(void))kr_consume, METH_FASTCALL, consume_doc},
    {"read", (PyCFunction)(void (*)(void))kr_read, METH_FASTCALL, read_doc},
    {"read_records", (PyCFunction)(void (*)(void))kr_read_records, METH_FASTCALL,
     read_records_doc},
    {"halt", (PyCFunction)kr_halt, METH_NOARGS, halt_doc},
    {"scan", (PyCFunction)(void (*)(void))kr_scan, METH_FASTCALL, scan_doc},
    {"read_into", (PyCFunction)(void (*)(void))kr_read_into, METH_FASTCALL, read_into_doc},
    RING_POSITION_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef user_ring_methods[] = {
    {"write", (PyCFunction)(void (*)(void))ur_write, METH_FASTCALL, write_doc},
    {"write_many", (PyCFunction)(void (*)(void))ur_write_many, METH_FASTCALL, write_many_doc},
    {"commit", (PyCFunction)(void (*)(void))ur_commit, METH_FASTCALL, commit_doc},
    {"write_array", (PyCFunction)(void (*)(void))ur_write_array, METH_FASTCALL,
     write_array_doc},
    RING_POSITION_METHODS,
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(kernel_ring_doc,
"KernelRing(data, cons_page, prod_page, size)\n"
"\n"
"The memory of one kernel ring (BPF_MAP_TYPE_RINGBUF) as its consumer sees\n"
"it: data and prod_page are read, cons_page is written.  The arguments are\n"
"checked here and again, cheaply, at every call.");

PyDoc_STRVAR(user_ring_doc,
"UserRing(data, cons_page, prod_page, size)\n"
"\n"
"The memory of one user ring (BPF_MAP_TYPE_USER_RINGBUF) as its producer\n"
"sees it: data and prod_page are written, cons_page is read.  The arguments\n"
"are checked here and again, cheaply, at every call.");

static PyTypeObject KernelRing_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bpfring._speedups.KernelRing",
    .tp_basicsize = sizeof(RingObject),
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = kernel_ring_doc,
    .tp_methods = kernel_ring_methods,
    .tp_getset = ring_getset,
    .tp_new = ring_new,
};

static PyTypeObject UserRing_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bpfring._speedups.UserRing",
    .tp_basicsize = sizeof(RingObject),
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = user_ring_doc,
    .tp_methods = user_ring_methods,
    .tp_getset = ring_getset,
    .tp_new = ring_new,
};

#include "_speedups_perf.c"
#include "_speedups_vm.c"

static PyMethodDef methods[] = {
    PERF_METHODS,
    {"load_acquire_u64", (PyCFunction)(void (*)(void))sp_load_acquire_u64, METH_FASTCALL,
     load_acquire_u64_doc},
    {"store_release_u64", (PyCFunction)(void (*)(void))sp_store_release_u64, METH_FASTCALL,
     store_release_u64_doc},
    {"acquire_fence", sp_acquire_fence, METH_NOARGS, acquire_fence_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "bpfring._speedups",
    "The C ring backend of bpfring (hot paths with acquire/release atomics).",
    -1,
    methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *m;

    if (str_release == NULL && (str_release = PyUnicode_InternFromString("release")) == NULL)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyType_Ready(&KernelRing_Type) < 0 || PyType_Ready(&UserRing_Type) < 0 ||
        PyType_Ready(&BacklogIter_Type) < 0 ||
        PyModule_AddObjectRef(m, "backlog_iter", (PyObject *)&BacklogIter_Type) < 0 ||
        PyModule_AddObjectRef(m, "KernelRing", (PyObject *)&KernelRing_Type) < 0 ||
        PyModule_AddObjectRef(m, "UserRing", (PyObject *)&UserRing_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* Bumped whenever a signature or a semantic changes: bpfring._ringbackend
     * ignores a build with another value (a stale editable-install .so). */
    if (decode_add_types(m) < 0 || PyModule_AddIntConstant(m, "API", 8) < 0 ||
        PyModule_AddIntConstant(m, "HDR_SIZE", HDR_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "DYNPTR_MAX", DYNPTR_MAX) < 0 ||
        vm_module_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
