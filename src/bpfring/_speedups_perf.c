/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The perf event ring walk of bpfring._speedups (included by _speedups.c,
 * which provides the atomics, the view helpers and raise_corrupted).  It is
 * the C twin of bpfring._perfcore.perf_walk: same arguments, results and
 * errors; tests/test_perfbuf.py runs both on the same rings.
 *
 * Layout and ordering (include/uapi/linux/perf_event.h): the metadata page
 * holds data_head (written by the kernel, store-release in
 * perf_output_put_handle) at byte 1024 and data_tail (ours) at byte 1032;
 * records are 8-byte aligned, start with {u32 type; u16 misc; u16 size},
 * and may wrap around the end of the (singly mapped) data area.
 */

#define PERF_DATA_HEAD 1024
#define PERF_DATA_TAIL 1032
#define PERF_RECORD_LOST 2
#define PERF_RECORD_SAMPLE 9
#define PERF_HDR 8u
#define PERF_SAMPLE_HDR 12u /* header + u32 raw size */

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

/* perf_walk (out == NULL: args[2] is the callback) and perf_read (out: the
 * list the records decoded with args[2] go to). */
static PyObject *
perf_walk_core(const char *name, PyObject *const *args, Py_ssize_t nargs, PyObject *out)
{
    Py_buffer meta = {0}, data = {0}, halt = {0};
    PyObject *cb, *on_lost, *view = NULL, *ret = NULL, *r;
    unsigned char *scratch = NULL;
    uint64_t head, tail, pos, left, size, mask, lost = 0;
    long long limit = -1, delivered = 0;
    int have_halt = 0, failed = 0;

    dec_prog *fast = NULL;

    if (check_nargs(name, nargs, 6) < 0)
        return NULL;
    cb = args[2];
    if (out != NULL) {
        if (!PyCallable_Check(cb)) {
            PyErr_SetString(PyExc_TypeError, "decoder must be callable");
            return NULL;
        }
        if (Py_IS_TYPE(cb, &RecordDecoderType)) {
            dec_prog *top = ((RecordDecoderObject *)cb)->top;
            if (top != NULL && !top->has_py)
                fast = top;
        }
    }
    on_lost = args[4] == Py_None ? NULL : args[4];
    if (args[3] != Py_None) {
        limit = PyLong_AsLongLong(args[3]);
        if (limit == -1 && PyErr_Occurred())
            return NULL;
    }
    if (PyObject_GetBuffer(args[0], &meta, PyBUF_WRITABLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0)
        goto out;
    if (args[5] != Py_None) {
        if (PyObject_GetBuffer(args[5], &halt, PyBUF_SIMPLE) < 0)
            goto out;
        have_halt = halt.len > 0;
    }
    size = (uint64_t)data.len;
    if (meta.len < PERF_DATA_TAIL + 8 || ((uintptr_t)meta.buf & 7) || size < 8 ||
        (size & (size - 1))) {
        PyErr_SetString(PyExc_ValueError,
                        "meta must be the perf metadata page and data a power-of-two area");
        goto out;
    }
    mask = size - 1;
    /* Pairs with the kernel's store-release of data_head after the records. */
    head = ld_acq64((const uint64_t *)((unsigned char *)meta.buf + PERF_DATA_HEAD));
    tail = *(const uint64_t *)((unsigned char *)meta.buf + PERF_DATA_TAIL);
    left = head - tail;
    if (left > size) {
        raise_corrupted("perf ring: data_head %llu is %llu bytes past data_tail %llu, more "
                        "than the %llu-byte data area", (unsigned long long)head,
                        (unsigned long long)left, (unsigned long long)tail,
                        (unsigned long long)size);
        goto out;
    }
    if (left & 7) {
        raise_corrupted("perf ring: data_head %llu - data_tail %llu is not a multiple of 8",
                        (unsigned long long)head, (unsigned long long)tail);
        goto out;
    }
    pos = tail;
    while (left) {
        const unsigned char *base = (const unsigned char *)data.buf;
        uint64_t off = pos & mask;
        uint32_t rtype;
        uint16_t rsize;

        if (delivered == limit || (have_halt && ((const unsigned char *)halt.buf)[0]))
            break;
        /* The 8-byte header never wraps (records are 8-byte aligned). */
        memcpy(&rtype, base + off, 4);
        memcpy(&rsize, base + off + 6, 2);
        if (rsize < PERF_HDR || (rsize & 7) || rsize > left) {
            raise_corrupted("perf ring: record at %llu has size %u (%llu bytes left before "
                            "data_head)", (unsigned long long)pos, (unsigned)rsize,
                            (unsigned long long)left);
            failed = 1;
            break;
        }
        if (rtype == PERF_RECORD_SAMPLE || rtype == PERF_RECORD_LOST) {
            const unsigned char *rec = base + off;
            if (off + rsize > size) { /* wraps: reassemble */
                uint64_t first = size - off;

                if (scratch == NULL && (scratch = PyMem_Malloc(65536)) == NULL) {
                    PyErr_NoMemory();
                    failed = 1;
                    break;
                }
                memcpy(scratch, base + off, first);
                memcpy(scratch + first, base, rsize - first);
                rec = scratch;
            }
            if (rtype == PERF_RECORD_SAMPLE) {
                uint32_t raw;

                if (rsize < PERF_SAMPLE_HDR) {
                    raise_corrupted("perf ring: sample at %llu has size %u",
                                    (unsigned long long)pos, (unsigned)rsize);
                    failed = 1;
                    break;
                }
                memcpy(&raw, rec + PERF_HDR, 4);
                if ((uint64_t)PERF_SAMPLE_HDR + raw > rsize) {
                    raise_corrupted("perf ring: sample at %llu claims %u raw bytes in a "
                                    "%u-byte record", (unsigned long long)pos, raw,
                                    (unsigned)rsize);
                    failed = 1;
                    break;
                }
                if (out != NULL) {
                    r = perf_decode(cb, fast, rec + PERF_SAMPLE_HDR, raw);
                    if (r == NULL || PyList_Append(out, r) < 0) {
                        Py_XDECREF(r);
                        failed = 1; /* not consumed: comes again */
                        break;
                    }
                    Py_DECREF(r);
                    delivered++;
                    pos += rsize;
                    left -= rsize;
                    continue;
                }
                if (view == NULL || !view_reusable(view)) {
                    Py_XDECREF(view);
                    if ((view = view_new(args[1])) == NULL) {
                        failed = 1;
                        break;
                    }
                }
                view_point(view, rec + PERF_SAMPLE_HDR, (Py_ssize_t)raw);
                r = PyObject_CallOneArg(cb, view);
                if (r == NULL) {
                    failed = 1; /* not consumed: comes again (at-least-once) */
                    break;
                }
                Py_DECREF(r);
                delivered++;
            }
            else {
                uint64_t n;

                if (rsize < PERF_HDR + 16) {
                    raise_corrupted("perf ring: lost record at %llu has size %u",
                                    (unsigned long long)pos, (unsigned)rsize);
                    failed = 1;
                    break;
                }
                memcpy(&n, rec + PERF_HDR + 8, 8);
                if (on_lost != NULL) {
                    PyObject *count = PyLong_FromUnsignedLongLong(n);

                    r = count ? PyObject_CallOneArg(on_lost, count) : NULL;
                    Py_XDECREF(count);
                    if (r == NULL) {
                        failed = 1;
                        break;
                    }
                    Py_DECREF(r);
                }
                lost += n;
            }
        }
        pos += rsize;
        left -= rsize;
    }
    /* Pairs with the kernel's read of data_tail: our payload reads are done
     * before it may reuse the space. */
    st_rel64((uint64_t *)((unsigned char *)meta.buf + PERF_DATA_TAIL), pos);
    if (!failed) {
        if (out != NULL)
            ret = Py_BuildValue("(OK)", out, (unsigned long long)lost);
        else
            ret = Py_BuildValue("(LK)", delivered, (unsigned long long)lost);
    }
out:
    if (view != NULL)
        view_drop(&view, 0); /* a view the callback kept stays valid, as in pure Python */
    PyMem_Free(scratch);
    if (halt.obj != NULL)
        PyBuffer_Release(&halt);
    if (data.obj != NULL)
        PyBuffer_Release(&data);
    PyBuffer_Release(&meta);
    return ret;
}

static PyObject *
sp_perf_walk(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    return perf_walk_core("perf_walk", args, nargs, NULL);
}

PyDoc_STRVAR(perf_read_doc,
"perf_read(meta, data, decoder, limit, on_lost, halt) -> (records, lost)\n"
"\n"
"perf_walk() collecting decoder(payload) of each sample into a list instead of\n"
"calling back: a _RecordDecoder without Python ops decodes straight from the\n"
"ring, decoder bytes makes bytes copies, any other callable gets a bytes copy.\n"
"If decoding raises, data_tail is stored before that sample and the error\n"
"propagates (the records decoded before it are consumed), as a raising\n"
"callback does in perf_walk().");

static PyObject *
sp_perf_read(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    PyObject *ret = perf_walk_core("perf_read", args, nargs, out);
    Py_DECREF(out);
    return ret;
}
