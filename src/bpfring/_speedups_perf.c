/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The perf event ring walks of bpfring._speedups (included by _speedups.c,
 * which provides the atomics, the view helpers, the struct decoder and
 * raise_corrupted).  They are the C twins of the functions of the same names
 * in bpfring._perfcore: same arguments, results and errors;
 * tests/test_perfbuf.py and tests/test_perf_fast.py run both on the same
 * rings.
 *
 * Layout and ordering (include/uapi/linux/perf_event.h): the metadata page
 * holds data_head (written by the kernel, store-release in
 * perf_output_put_handle) at byte 1024 and data_tail (ours) at byte 1032;
 * records are 8-byte aligned, start with {u32 type; u16 misc; u16 size},
 * and may wrap around the end of the (singly mapped) data area.
 *
 * Every walk is one pass: data_head is loaded (acquire) once, the records
 * are handled in place (a record that wraps is reassembled in a private
 * buffer), and data_tail is stored (release) once, at the end, also when a
 * callback or a decoder raised (the records before it stay consumed).
 */

#define PERF_DATA_HEAD 1024
#define PERF_DATA_TAIL 1032
#define PERF_RECORD_LOST 2
#define PERF_RECORD_SAMPLE 9
#define PERF_HDR 8u
#define PERF_SAMPLE_HDR 12u /* header + u32 raw size */

/* One pass over one CPU's perf ring: the buffers, the positions, and the
 * record the walk stands at. */
typedef struct {
    Py_buffer meta, data, halt;
    const unsigned char *base;
    uint64_t size, mask, start, pos, left, lost;
    unsigned char *scratch; /* reassembles records that wrap (64 KiB, on demand) */
    PyObject *on_lost;      /* NULL: losses are only counted */
    int have_halt;
    uint16_t rsize;         /* size of the record at pos, once pw_next found it */
} perf_walk_t;

/* Take the buffers (meta, data, halt) and load the positions; -1 on error. */
static int
pw_open(perf_walk_t *w, PyObject *meta, PyObject *data, PyObject *on_lost, PyObject *halt)
{
    uint64_t head;

    memset(w, 0, sizeof(*w));
    w->on_lost = on_lost == Py_None ? NULL : on_lost;
    if (PyObject_GetBuffer(meta, &w->meta, PyBUF_WRITABLE) < 0)
        return -1;
    if (PyObject_GetBuffer(data, &w->data, PyBUF_SIMPLE) < 0)
        return -1;
    if (halt != Py_None) {
        if (PyObject_GetBuffer(halt, &w->halt, PyBUF_SIMPLE) < 0)
            return -1;
        w->have_halt = w->halt.len > 0;
    }
    w->size = (uint64_t)w->data.len;
    if (w->meta.len < PERF_DATA_TAIL + 8 || ((uintptr_t)w->meta.buf & 7) || w->size < 8 ||
        (w->size & (w->size - 1))) {
        PyErr_SetString(PyExc_ValueError,
                        "meta must be the perf metadata page and data a power-of-two area");
        return -1;
    }
    w->mask = w->size - 1;
    w->base = (const unsigned char *)w->data.buf;
    /* Pairs with the kernel's store-release of data_head after the records. */
    head = ld_acq64((const uint64_t *)((unsigned char *)w->meta.buf + PERF_DATA_HEAD));
    w->start = w->pos = *(const uint64_t *)((unsigned char *)w->meta.buf + PERF_DATA_TAIL);
    w->left = head - w->pos;
    if (w->left > w->size) {
        raise_corrupted("perf ring: data_head %llu is %llu bytes past data_tail %llu, more "
                        "than the %llu-byte data area", (unsigned long long)head,
                        (unsigned long long)w->left, (unsigned long long)w->pos,
                        (unsigned long long)w->size);
        w->left = 0;
        return -1;
    }
    if (w->left & 7) {
        raise_corrupted("perf ring: data_head %llu - data_tail %llu is not a multiple of 8",
                        (unsigned long long)head, (unsigned long long)w->pos);
        w->left = 0;
        return -1;
    }
    return 0;
}

/* Store data_tail (if the buffers were taken) and release everything. */
static void
pw_close(perf_walk_t *w)
{
    if (w->meta.obj != NULL && w->data.obj != NULL && w->pos != w->start) {
        /* Pairs with the kernel's read of data_tail: our payload reads are
         * done before it may reuse the space. */
        st_rel64((uint64_t *)((unsigned char *)w->meta.buf + PERF_DATA_TAIL), w->pos);
    }
    PyMem_Free(w->scratch);
    w->scratch = NULL;
    if (w->halt.obj != NULL)
        PyBuffer_Release(&w->halt);
    if (w->data.obj != NULL)
        PyBuffer_Release(&w->data);
    if (w->meta.obj != NULL)
        PyBuffer_Release(&w->meta);
}

static inline int
pw_halted(const perf_walk_t *w)
{
    return w->have_halt && ((const unsigned char *)w->halt.buf)[0];
}

/* Advance to the next sample: 1 with its raw bytes in *raw (contiguous, in
 * the ring or in the scratch buffer) and their length in *len, 0 at
 * data_head, -1 on an error (raised; pos stays at the record).  Lost reports
 * on the way are added up (and told to on_lost); other record types are
 * skipped.  The caller moves past the sample with pw_done(). */
/* Inlined into each walk: its loop is the walk's hot path. */
static inline __attribute__((always_inline)) int
pw_next(perf_walk_t *w, const unsigned char **raw, uint32_t *len)
{
    while (w->left) {
        uint64_t off = w->pos & w->mask;
        const unsigned char *rec;
        uint32_t rtype;
        uint16_t rsize;

        if (pw_halted(w)) /* an on_lost call closed the buffer */
            return 0;
        rec = w->base + off;
        /* The 8-byte header never wraps (records are 8-byte aligned). */
        memcpy(&rtype, rec, 4);
        memcpy(&rsize, rec + 6, 2);
        if (rsize < PERF_HDR || (rsize & 7) || rsize > w->left) {
            raise_corrupted("perf ring: record at %llu has size %u (%llu bytes left before "
                            "data_head)", (unsigned long long)w->pos, (unsigned)rsize,
                            (unsigned long long)w->left);
            return -1;
        }
        if (rtype == PERF_RECORD_SAMPLE || rtype == PERF_RECORD_LOST) {
            if (off + rsize > w->size) { /* wraps: reassemble */
                uint64_t first = w->size - off;

                if (w->scratch == NULL && (w->scratch = PyMem_Malloc(65536)) == NULL) {
                    PyErr_NoMemory();
                    return -1;
                }
                memcpy(w->scratch, rec, first);
                memcpy(w->scratch + first, w->base, rsize - first);
                rec = w->scratch;
            }
            if (rtype == PERF_RECORD_SAMPLE) {
                uint32_t n;

                if (rsize < PERF_SAMPLE_HDR) {
                    raise_corrupted("perf ring: sample at %llu has size %u",
                                    (unsigned long long)w->pos, (unsigned)rsize);
                    return -1;
                }
                memcpy(&n, rec + PERF_HDR, 4);
                if ((uint64_t)PERF_SAMPLE_HDR + n > rsize) {
                    raise_corrupted("perf ring: sample at %llu claims %u raw bytes in a "
                                    "%u-byte record", (unsigned long long)w->pos, n,
                                    (unsigned)rsize);
                    return -1;
                }
                w->rsize = rsize;
                *raw = rec + PERF_SAMPLE_HDR;
                *len = n;
                return 1;
            }
            else {
                uint64_t n;

                if (rsize < PERF_HDR + 16) {
                    raise_corrupted("perf ring: lost record at %llu has size %u",
                                    (unsigned long long)w->pos, (unsigned)rsize);
                    return -1;
                }
                memcpy(&n, rec + PERF_HDR + 8, 8);
                if (w->on_lost != NULL) {
                    PyObject *count = PyLong_FromUnsignedLongLong(n), *r;

                    r = count ? PyObject_CallOneArg(w->on_lost, count) : NULL;
                    Py_XDECREF(count);
                    if (r == NULL)
                        return -1; /* the report comes again */
                    Py_DECREF(r);
                }
                w->lost += n;
            }
        }
        w->pos += rsize;
        w->left -= rsize;
    }
    return 0;
}

static inline void
pw_done(perf_walk_t *w)
{
    w->pos += w->rsize;
    w->left -= w->rsize;
}

/* limit argument: None or a negative int: no limit. */
static int
pw_limit(PyObject *obj, long long *out)
{
    *out = -1;
    if (obj == Py_None)
        return 0;
    *out = PyLong_AsLongLong(obj);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The C decoder of a record type without Python ops, or NULL. */
static dec_prog *
pw_fast_decoder(PyObject *decoder)
{
    if (Py_IS_TYPE(decoder, &RecordDecoderType)) {
        dec_prog *top = ((RecordDecoderObject *)decoder)->top;
        if (top != NULL && !top->has_py)
            return top;
    }
    return NULL;
}

/* One sample's payload as a record: the C decoder straight from memory
 * (`fast`), a bytes copy (decoder is bytes) or decoder(bytes copy). */
static PyObject *
perf_decode(PyObject *decoder, dec_prog *fast, const unsigned char *p, uint32_t len)
{
    if (fast != NULL && (Py_ssize_t)len >= fast->size)
        return rd_struct(fast, p, Py_None, 0);
    PyObject *b = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)len);
    if (b == NULL || decoder == (PyObject *)&PyBytes_Type)
        return b;
    PyObject *rec = PyObject_CallOneArg(decoder, b);
    Py_DECREF(b);
    return rec;
}

/* -------------------------------------------------------------------------- */
/* perf_walk: callbacks                                                       */
/* -------------------------------------------------------------------------- */

PyDoc_STRVAR(perf_walk_doc,
"perf_walk(meta, data, callback, limit, on_lost, halt) -> (delivered, lost)\n"
"\n"
"Consume the records of one CPU's perf ring: load-acquire data_head from the\n"
"metadata page `meta`, deliver each PERF_RECORD_SAMPLE's raw bytes to\n"
"callback(view) (a read-only memoryview valid during the call; a record that\n"
"wraps around the end of `data` is reassembled in a private buffer), add up\n"
"PERF_RECORD_LOST counts (on_lost(count) is called for each when not None:\n"
"the way to count losses that precede an error),\n"
"skip other record types, and store-release data_tail once at the end.\n"
"At most `limit` samples (None or -1: no limit); stops before the next\n"
"record once halt[0] is non-zero.  If callback raises, data_tail is stored\n"
"before that record and the exception propagates.  Impossible positions or\n"
"sizes raise RingCorrupted (after publishing the records before them).");

static PyObject *
sp_perf_walk(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    perf_walk_t w;
    PyObject *cb, *view = NULL, *ret = NULL, *r;
    long long limit, delivered = 0;
    const unsigned char *raw;
    uint32_t len;
    int got;

    (void)mod;
    if (check_nargs("perf_walk", nargs, 6) < 0 || pw_limit(args[3], &limit) < 0)
        return NULL;
    cb = args[2];
    if (pw_open(&w, args[0], args[1], args[4], args[5]) < 0)
        goto out;
    while (delivered != limit && !pw_halted(&w)) {
        if ((got = pw_next(&w, &raw, &len)) <= 0) {
            if (got < 0)
                goto out;
            break;
        }
        if (view == NULL || !view_reusable(view)) {
            Py_XDECREF(view);
            if ((view = view_new(args[1])) == NULL)
                goto out;
        }
        view_point(view, raw, (Py_ssize_t)len);
        r = PyObject_CallOneArg(cb, view);
        if (r == NULL)
            goto out; /* not consumed: comes again (at-least-once) */
        Py_DECREF(r);
        delivered++;
        pw_done(&w);
    }
    ret = Py_BuildValue("(LK)", delivered, (unsigned long long)w.lost);
out:
    if (view != NULL)
        view_drop(&view, 0); /* a view the callback kept stays valid, as in pure Python */
    pw_close(&w);
    return ret;
}

/* -------------------------------------------------------------------------- */
/* perf_read, perf_take: decoded records                                      */
/* -------------------------------------------------------------------------- */

PyDoc_STRVAR(perf_read_doc,
"perf_read(meta, data, decoder, limit, on_lost, halt) -> (records, lost)\n"
"\n"
"perf_walk() collecting decoder(payload) of each sample into a list instead of\n"
"calling back: a _RecordDecoder without Python ops decodes straight from the\n"
"ring, decoder bytes makes bytes copies, any other callable gets a bytes copy.\n"
"If decoding raises, data_tail is stored before that sample and the error\n"
"propagates (the records decoded before it are consumed), as a raising\n"
"callback does in perf_walk().");

PyDoc_STRVAR(perf_take_doc,
"perf_take(meta, data, decoder, limit, on_lost, halt, want_raw)\n"
"    -> (records, lost, raw)\n"
"\n"
"perf_read() that loses nothing on an error: if decoding a sample (or an\n"
"on_lost call, or a corrupted record) fails after some records were\n"
"decoded, those are returned, data_tail is stored before the failing record\n"
"and the error comes again from the next call; only a failure at the first\n"
"record propagates.  raw is None, or with want_raw the bytes of the consumed\n"
"area (headers included, reassembled where it wraps) the records came from,\n"
"so that an iterator's leftovers can still be handed out raw.");

/* take (0: perf_read) */
static PyObject *
perf_read_core(const char *name, PyObject *const *args, Py_ssize_t nargs, int take)
{
    perf_walk_t w;
    PyObject *decoder, *out = NULL, *ret = NULL, *rec, *raw_bytes = NULL;
    long long limit;
    Py_ssize_t n = 0;
    const unsigned char *raw;
    uint32_t len;
    dec_prog *fast;
    int want_raw = 0, got;

    if (check_nargs(name, nargs, take ? 7 : 6) < 0 || pw_limit(args[3], &limit) < 0)
        return NULL;
    decoder = args[2];
    if (!PyCallable_Check(decoder)) {
        PyErr_SetString(PyExc_TypeError, "decoder must be callable");
        return NULL;
    }
    if (take && (want_raw = PyObject_IsTrue(args[6])) < 0)
        return NULL;
    fast = pw_fast_decoder(decoder);
    if ((out = PyList_New(0)) == NULL)
        return NULL;
    /* The decoder may run Python code (a generic one, or a finalizer run by
     * the GC): keep it alive even if that code drops its last reference. */
    Py_INCREF(decoder);
    if (pw_open(&w, args[0], args[1], args[4], args[5]) < 0)
        goto fail;
    while (n != limit && !pw_halted(&w)) {
        if ((got = pw_next(&w, &raw, &len)) > 0) {
            rec = perf_decode(decoder, fast, raw, len);
            if (rec != NULL && PyList_Append(out, rec) == 0) {
                Py_DECREF(rec);
                n++;
                pw_done(&w);
                continue;
            }
            Py_XDECREF(rec);
        }
        if (got == 0)
            break;
        /* The record at pos failed (not consumed; the ones before are). */
        if (take && n && PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear(); /* comes again from the next call */
            break;
        }
        goto fail;
    }
    if (want_raw && w.pos != w.start) {
        uint64_t off = w.start & w.mask, k = w.pos - w.start;

        raw_bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)k);
        if (raw_bytes == NULL) {
            w.pos = w.start; /* nothing consumed */
            goto fail;
        }
        if (off + k <= w.size) {
            memcpy(PyBytes_AS_STRING(raw_bytes), w.base + off, k);
        }
        else {
            memcpy(PyBytes_AS_STRING(raw_bytes), w.base + off, w.size - off);
            memcpy(PyBytes_AS_STRING(raw_bytes) + (w.size - off), w.base,
                   k - (w.size - off));
        }
    }
    if (take)
        ret = Py_BuildValue("(OKO)", out, (unsigned long long)w.lost,
                            raw_bytes ? raw_bytes : Py_None);
    else
        ret = Py_BuildValue("(OK)", out, (unsigned long long)w.lost);
fail:
    pw_close(&w);
    Py_XDECREF(raw_bytes);
    Py_DECREF(out);
    Py_DECREF(decoder);
    return ret;
}

static PyObject *
sp_perf_read(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    return perf_read_core("perf_read", args, nargs, 0);
}

static PyObject *
sp_perf_take(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    return perf_read_core("perf_take", args, nargs, 1);
}

/* -------------------------------------------------------------------------- */
/* perf_read_array: fixed-size rows                                           */
/* -------------------------------------------------------------------------- */

PyDoc_STRVAR(perf_read_array_doc,
"perf_read_array(meta, data, out, itemsize, limit, on_lost, halt)\n"
"    -> (count, lost, short)\n"
"\n"
"Copy the first `itemsize` bytes of each sample of one CPU's perf ring into\n"
"consecutive rows of the writable buffer `out`, in one pass (data_head\n"
"loaded once, data_tail stored once), at most `limit` rows (None or -1: as\n"
"many as fit in out).  A sample shorter than itemsize stops the walk before\n"
"it: short is its raw size (-1 if none stopped it), and it stays in the\n"
"ring.  Losses and errors as for perf_take(): an error after some rows\n"
"returns them (it comes again from the next call), at the first propagates.");

static PyObject *
sp_perf_read_array(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    perf_walk_t w;
    Py_buffer out = {0};
    PyObject *ret = NULL;
    long long limit, cap, n = 0, short_len = -1;
    Py_ssize_t itemsize;
    unsigned char *dst;
    const unsigned char *raw;
    uint32_t len;
    int got;

    (void)mod;
    memset(&w, 0, sizeof(w));
    if (check_nargs("perf_read_array", nargs, 7) < 0 || pw_limit(args[4], &limit) < 0)
        return NULL;
    itemsize = PyLong_AsSsize_t(args[3]);
    if (itemsize == -1 && PyErr_Occurred())
        return NULL;
    if (itemsize < 1 || itemsize > 65535) {
        PyErr_SetString(PyExc_ValueError, "itemsize must be between 1 and 65535");
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    cap = (long long)(out.len / itemsize);
    if (limit >= 0 && limit < cap)
        cap = limit;
    dst = (unsigned char *)out.buf;
    if (pw_open(&w, args[0], args[1], args[5], args[6]) < 0)
        goto out;
    while (n != cap && !pw_halted(&w)) {
        if ((got = pw_next(&w, &raw, &len)) > 0) {
            if ((Py_ssize_t)len < itemsize) {
                short_len = len; /* stays in the ring: the caller raises */
                break;
            }
            memcpy(dst, raw, (size_t)itemsize);
            dst += itemsize;
            n++;
            pw_done(&w);
            continue;
        }
        if (got == 0)
            break;
        if (n && PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear(); /* comes again from the next call */
            break;
        }
        goto out;
    }
    ret = Py_BuildValue("(LKL)", n, (unsigned long long)w.lost, short_len);
out:
    pw_close(&w);
    PyBuffer_Release(&out);
    return ret;
}

/* The module-level functions of this file (in the table of _speedups.c). */
#define PERF_METHODS                                                                       \
    {"perf_walk", (PyCFunction)(void (*)(void))sp_perf_walk, METH_FASTCALL, perf_walk_doc}, \
    {"perf_read", (PyCFunction)(void (*)(void))sp_perf_read, METH_FASTCALL, perf_read_doc}, \
    {"perf_take", (PyCFunction)(void (*)(void))sp_perf_take, METH_FASTCALL, perf_take_doc}, \
    {"perf_read_array", (PyCFunction)(void (*)(void))sp_perf_read_array, METH_FASTCALL,     \
     perf_read_array_doc}
