/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every part of bpfring._speedups shares (included first by
 * _speedups.c): the record format's constants, the acquire/release atomics,
 * the ring memory (ring_t: the three buffers of one ring, acquired per call),
 * the RingObject behind KernelRing and UserRing, argument checks, and
 * RingCorrupted.  See _speedups.c for the record format and the memory
 * ordering.
 */

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
