/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The BTF record decoder of bpfring._speedups (included by _speedups.c).
 *
 * RecordDecoder(spec, pure) is the C twin of the decode function that
 * bpfring.btf._layout generates for a struct: called as decoder(buf,
 * offset=0) it returns the same Record (an instance of the very same
 * Record subclass, its slots filled directly, no __init__ call) with the
 * same values.  `spec` is the layout flattened by bpfring.btf._fast:
 *
 *   struct spec: (cls, size, slot_names, ops)
 *   op:          (code, offset, a, b, obj)   offset relative to the struct
 *
 * with the codes below.  Anything the spec does not cover (unions, odd
 * integer sizes, ...) is an OP_PY op calling the pure decoder of that
 * member as fn(buf, absolute_offset).  Every call the fast path does not
 * take as is (not one buffer argument plus an optional int offset, a
 * buffer too short, a negative offset, an object without the buffer
 * protocol) goes to `pure`, the generated Python decoder, so messages and
 * errors are the reference's own.  Little-endian BTF on a little-endian
 * host only (the module leaves RecordDecoder out elsewhere).
 */

#include <structmember.h>

#define OP_INT 0    /* a: size 1/2/4/8, b: signed; obj: enum map or None */
#define OP_BOOL 1   /* _Bool: one byte, True when non-zero */
#define OP_FLOAT 2  /* a: 2/4/8 */
#define OP_CSTR 3   /* char[a]: cut at the first NUL, UTF-8 "replace" */
#define OP_BYTES 4  /* a raw bytes */
#define OP_BITS 5   /* a: storage bytes (1..8); b: shift | bits << 8 | signed << 16 | bool << 17 */
#define OP_STRUCT 6 /* obj: struct spec */
#define OP_ARRAY 7  /* a: count, b: stride; obj: the element's op */
#define OP_PY 8     /* obj: fn(buf, offset) */

struct dec_prog;

typedef struct dec_op {
    int code;
    Py_ssize_t off, a, b;
    PyObject *obj;           /* borrowed from the spec, which the decoder keeps */
    struct dec_op *elem;     /* OP_ARRAY */
    struct dec_prog *prog;   /* OP_STRUCT */
    PyObject *last;          /* OP_CSTR, OP_INT: the last value made (owned), reused while equal */
    uint64_t last_x;         /* OP_INT: the raw value `last` was made from */
} dec_op;

typedef struct dec_prog {
    PyTypeObject *cls;
    Py_ssize_t size, n;
    Py_ssize_t *slot;        /* byte offset of each field's slot in an instance */
    dec_op *ops;
    int has_py;              /* some op (here or nested) calls Python: needs a buffer object */
    int untrack;             /* every value is atomic: the record leaves the cyclic GC */
} dec_prog;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *spec, *pure;
    dec_prog *top;
    void **allocs;           /* every block allocated for the program */
    Py_ssize_t nallocs, cap;
    dec_op **cached;         /* the OP_CSTR and OP_INT ops (their `last` values are ours) */
    Py_ssize_t ncached, capcached;
} RecordDecoderObject;

static void *
rd_alloc(RecordDecoderObject *self, size_t size)
{
    if (self->nallocs == self->cap) {
        Py_ssize_t cap = self->cap ? self->cap * 2 : 16;
        void **n = PyMem_Realloc(self->allocs, (size_t)cap * sizeof(void *));
        if (n == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        self->allocs = n;
        self->cap = cap;
    }
    void *p = PyMem_Calloc(1, size ? size : 1);
    if (p == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    self->allocs[self->nallocs++] = p;
    return p;
}

static dec_prog *rd_compile_struct(RecordDecoderObject *self, PyObject *spec, PyObject *memo,
                                   int depth);

/* Note an op that keeps its last value, so that rd_free_prog drops it. */
static int
rd_register(RecordDecoderObject *self, dec_op *op)
{
    if (self->ncached == self->capcached) {
        Py_ssize_t cap = self->capcached ? self->capcached * 2 : 8;
        dec_op **n = PyMem_Realloc(self->cached, (size_t)cap * sizeof(dec_op *));
        if (n == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->cached = n;
        self->capcached = cap;
    }
    self->cached[self->ncached++] = op;
    return 0;
}

static int
rd_compile_op(RecordDecoderObject *self, dec_op *op, PyObject *t, PyObject *memo, int depth)
{
    int code;
    if (depth > 1024) {
        PyErr_SetString(PyExc_ValueError, "decoder spec nested too deep");
        return -1;
    }
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 5 ||
        !PyArg_ParseTuple(t, "innnO", &code, &op->off, &op->a, &op->b, &op->obj))
        goto bad;
    op->code = code;
    if (op->off < 0 || op->a < 0 || op->b < 0)
        goto bad;
    switch (code) {
    case OP_INT:
        if (op->a != 1 && op->a != 2 && op->a != 4 && op->a != 8)
            goto bad;
        if (op->obj != Py_None && !PyDict_CheckExact(op->obj))
            goto bad;
        return rd_register(self, op);
    case OP_BOOL:
        return 0;
    case OP_FLOAT:
        if (op->a != 2 && op->a != 4 && op->a != 8)
            goto bad;
        return 0;
    case OP_CSTR:
        return rd_register(self, op);
    case OP_BYTES:
        return 0;
    case OP_BITS: {
        Py_ssize_t shift = op->b & 0xff, bits = (op->b >> 8) & 0xff;
        if (op->a < 1 || op->a > 8 || bits < 1 || bits > 64 || shift + bits > 8 * op->a)
            goto bad;
        if (op->obj != Py_None && !PyDict_CheckExact(op->obj))
            goto bad;
        return 0;
    }
    case OP_STRUCT:
        op->prog = rd_compile_struct(self, op->obj, memo, depth + 1);
        return op->prog ? 0 : -1;
    case OP_ARRAY:
        op->elem = rd_alloc(self, sizeof(dec_op));
        if (op->elem == NULL)
            return -1;
        return rd_compile_op(self, op->elem, op->obj, memo, depth + 1);
    case OP_PY:
        if (!PyCallable_Check(op->obj))
            goto bad;
        return 0;
    }
bad:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "bad decoder op");
    return -1;
}

/* The byte offset of a Record subclass's slot `name` (a T_OBJECT_EX member of cls itself). */
static Py_ssize_t
rd_slot_offset(PyTypeObject *cls, PyObject *name)
{
    PyObject *d = PyDict_GetItemWithError(cls->tp_dict, name);
    if (d == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%s has no slot %R", cls->tp_name, name);
        return -1;
    }
    if (!Py_IS_TYPE(d, &PyMemberDescr_Type) || PyDescr_TYPE(d) != cls) {
        PyErr_Format(PyExc_TypeError, "%s.%U is not a slot of its own", cls->tp_name, name);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX || (m->flags & READONLY) || m->offset < (Py_ssize_t)sizeof(PyObject) ||
        m->offset + (Py_ssize_t)sizeof(PyObject *) > cls->tp_basicsize) {
        PyErr_Format(PyExc_TypeError, "%s.%U is not a plain object slot", cls->tp_name, name);
        return -1;
    }
    return m->offset;
}

/* Records that hold only atomic values (numbers, strings, bytes, enum
 * members) cannot be part of a reference cycle as decoded, so the decoder
 * takes them out of the cyclic GC: a list of 200k decoded records then costs
 * the collector nothing.  A container stored into one later that refers back
 * to the record (rec.field = [rec]) makes a cycle the GC does not see: it is
 * never freed (a leak, never a crash; documented on Record).  A setattr hook
 * that tracks the record again was tried: a C-level tp_setattro makes
 * object.__setattr__ refuse the class (CPython's hackcheck). */
static int
rd_op_has_py(const dec_op *op)
{
    if (op->code == OP_PY)
        return 1;
    if (op->code == OP_STRUCT)
        return op->prog->has_py;
    if (op->code == OP_ARRAY)
        return rd_op_has_py(op->elem);
    return 0;
}

static void
rd_set_flags(dec_prog *p)
{
    int atomic = 1;
    p->has_py = 0;
    for (Py_ssize_t i = 0; i < p->n; i++) {
        int code = p->ops[i].code;
        if (rd_op_has_py(&p->ops[i]))
            p->has_py = 1;
        if (code == OP_STRUCT || code == OP_ARRAY || code == OP_PY)
            atomic = 0;
    }
    p->untrack = atomic;
}

static dec_prog *
rd_compile_struct(RecordDecoderObject *self, PyObject *spec, PyObject *memo, int depth)
{
    PyObject *key = PyLong_FromVoidPtr(spec);
    if (key == NULL)
        return NULL;
    PyObject *seen = PyDict_GetItemWithError(memo, key);
    if (seen != NULL) {
        Py_DECREF(key);
        return PyLong_AsVoidPtr(seen);
    }
    if (PyErr_Occurred())
        goto fail;
    PyObject *cls, *slots, *ops;
    Py_ssize_t size;
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 4 ||
        !PyArg_ParseTuple(spec, "OnO!O!", &cls, &size, &PyTuple_Type, &slots, &PyTuple_Type,
                          &ops)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "bad struct spec");
        goto fail;
    }
    if (!PyType_Check(cls) || !(((PyTypeObject *)cls)->tp_flags & Py_TPFLAGS_HEAPTYPE) ||
        PyTuple_GET_SIZE(slots) != PyTuple_GET_SIZE(ops) || size < 0) {
        PyErr_SetString(PyExc_ValueError, "bad struct spec");
        goto fail;
    }
    dec_prog *p = rd_alloc(self, sizeof(dec_prog));
    if (p == NULL)
        goto fail;
    p->cls = (PyTypeObject *)cls;
    p->size = size;
    p->n = PyTuple_GET_SIZE(ops);
    p->slot = rd_alloc(self, (size_t)p->n * sizeof(Py_ssize_t));
    p->ops = rd_alloc(self, (size_t)p->n * sizeof(dec_op));
    if (p->slot == NULL || p->ops == NULL)
        goto fail;
    PyObject *ptr = PyLong_FromVoidPtr(p);
    if (ptr == NULL || PyDict_SetItem(memo, key, ptr) < 0) {
        Py_XDECREF(ptr);
        goto fail;
    }
    Py_DECREF(ptr);
    Py_DECREF(key);
    for (Py_ssize_t i = 0; i < p->n; i++) {
        if ((p->slot[i] = rd_slot_offset(p->cls, PyTuple_GET_ITEM(slots, i))) < 0)
            return NULL;
        if (rd_compile_op(self, &p->ops[i], PyTuple_GET_ITEM(ops, i), memo, depth) < 0)
            return NULL;
    }
    rd_set_flags(p);
    return p;
fail:
    Py_DECREF(key);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Decoding                                                                              */
/* ------------------------------------------------------------------------------------ */

static inline uint64_t
rd_load_le(const unsigned char *p, Py_ssize_t n)
{
    /* little-endian host: the low bytes; fixed-size moves, no memcpy call */
    switch (n) {
    case 1:
        return *p;
    case 2: {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case 4: {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case 8: {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    }
    uint64_t x = 0;
    memcpy(&x, p, (size_t)n);
    return x;
}

static inline PyObject *
rd_mapped(PyObject *v, PyObject *map)
{
    /* enum: the IntEnum member for a known value, else the int itself (map.get(x, x)) */
    if (v == NULL || map == Py_None)
        return v;
    PyObject *m = PyDict_GetItemWithError(map, v);
    if (m == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(v);
            return NULL;
        }
        return v;
    }
    Py_INCREF(m);
    Py_DECREF(v);
    return m;
}

static PyObject *rd_struct(dec_prog *p, const unsigned char *base, PyObject *buf, Py_ssize_t pos);

static PyObject *
rd_value(dec_op *op, const unsigned char *base, PyObject *buf, Py_ssize_t pos)
{
    const unsigned char *p = base + op->off;
    switch (op->code) {
    case OP_INT: {
        uint64_t x = rd_load_le(p, op->a);
        PyObject *v;
        /* Fields such as pid, uid or cpu repeat from record to record: the
         * value made for the previous record is shared (ints are immutable). */
        if (op->last != NULL && x == op->last_x) {
            Py_INCREF(op->last);
            return op->last;
        }
        if (op->b && op->a < 8) {
            uint64_t sb = (uint64_t)1 << (8 * op->a - 1);
            v = PyLong_FromLongLong((long long)(x ^ sb) - (long long)sb);
        } else if (op->b) {
            v = PyLong_FromLongLong((long long)x);
        } else {
            v = PyLong_FromUnsignedLongLong(x);
        }
        v = rd_mapped(v, op->obj);
        if (v != NULL) {
            Py_INCREF(v);
            Py_XSETREF(op->last, v);
            op->last_x = x;
        }
        return v;
    }
    case OP_BOOL:
        return PyBool_FromLong(*p != 0);
    case OP_FLOAT: {
        double d = op->a == 8 ? PyFloat_Unpack8((const char *)p, 1)
                 : op->a == 4 ? PyFloat_Unpack4((const char *)p, 1)
                              : PyFloat_Unpack2((const char *)p, 1);
        if (d == -1.0 && PyErr_Occurred())
            return NULL;
        return PyFloat_FromDouble(d);
    }
    case OP_CSTR: {
        /* ASCII (the usual comm/filename) is copied as is; anything else goes
         * through the UTF-8 decoder, as bytes.decode("utf-8", "replace").
         * Eight bytes at a time: the first NUL and whether a byte before it
         * has its high bit set. */
        Py_ssize_t n = 0, cap = op->a;
        uint64_t high = 0;
        for (;;) {
            if (n + 8 <= cap) {
                uint64_t w, z;
                memcpy(&w, p + n, 8);
                z = (w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull;
                if (z) {
                    unsigned k = (unsigned)__builtin_ctzll(z) >> 3; /* first NUL (exact) */
                    if (k)
                        high |= w & (0x8080808080808080ull >> (8 * (8 - k)));
                    n += k;
                    break;
                }
                high |= w & 0x8080808080808080ull;
                n += 8;
                continue;
            }
            while (n < cap && p[n]) {
                high |= p[n] & 0x80;
                n++;
            }
            break;
        }
        if (high)
            return PyUnicode_DecodeUTF8((const char *)p, n, "replace");
        PyObject *last = op->last;
        if (last != NULL && PyUnicode_GET_LENGTH(last) == n &&
            memcmp(PyUnicode_1BYTE_DATA(last), p, (size_t)n) == 0) {
            Py_INCREF(last); /* the same text as the previous record: share the str */
            return last;
        }
        PyObject *s = PyUnicode_New(n, 127);
        if (s == NULL)
            return NULL;
        if (n)
            memcpy(PyUnicode_1BYTE_DATA(s), p, (size_t)n);
        Py_INCREF(s);
        Py_XSETREF(op->last, s);
        return s;
    }
    case OP_BYTES:
        return PyBytes_FromStringAndSize((const char *)p, op->a);
    case OP_BITS: {
        uint64_t x = rd_load_le(p, op->a);
        unsigned shift = (unsigned)(op->b & 0xff), bits = (unsigned)((op->b >> 8) & 0xff);
        int is_signed = (op->b >> 16) & 1, is_bool = (op->b >> 17) & 1;
        x >>= shift;
        if (bits < 64)
            x &= ((uint64_t)1 << bits) - 1;
        PyObject *v;
        if (is_signed) {
            int64_t s = bits < 64 ? (int64_t)(x ^ ((uint64_t)1 << (bits - 1))) -
                                        (int64_t)((uint64_t)1 << (bits - 1))
                                  : (int64_t)x;
            if (op->obj == Py_None && is_bool)
                return PyBool_FromLong(s != 0);
            v = PyLong_FromLongLong(s);
        } else {
            if (op->obj == Py_None && is_bool)
                return PyBool_FromLong(x != 0);
            v = PyLong_FromUnsignedLongLong(x);
        }
        return rd_mapped(v, op->obj);
    }
    case OP_STRUCT:
        return rd_struct(op->prog, p, buf, pos + op->off);
    case OP_ARRAY: {
        PyObject *list = PyList_New(op->a);
        if (list == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < op->a; i++) {
            PyObject *v = rd_value(op->elem, p + i * op->b, buf, pos + op->off + i * op->b);
            if (v == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, i, v);
        }
        return list;
    }
    case OP_PY: {
        PyObject *off = PyLong_FromSsize_t(pos + op->off);
        if (off == NULL)
            return NULL;
        PyObject *args[2] = {buf, off};
        PyObject *v = PyObject_Vectorcall(op->obj, args, 2, NULL);
        Py_DECREF(off);
        return v;
    }
    }
    PyErr_SetString(PyExc_SystemError, "bad decoder op");
    return NULL;
}

static PyObject *
rd_struct(dec_prog *p, const unsigned char *base, PyObject *buf, Py_ssize_t pos)
{
    PyObject *rec = p->cls->tp_alloc(p->cls, 0);
    if (rec == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < p->n; i++) {
        dec_op *op = &p->ops[i];
        PyObject *v;
        /* the value of the previous record again (see OP_INT): no call */
        if (op->code == OP_INT && op->last != NULL &&
            rd_load_le(base + op->off, op->a) == op->last_x) {
            v = op->last;
            Py_INCREF(v);
        }
        else {
            v = rd_value(op, base, buf, pos);
        }
        if (v == NULL) {
            Py_DECREF(rec);
            return NULL;
        }
        *(PyObject **)((char *)rec + p->slot[i]) = v;
    }
    if (p->untrack)
        PyObject_GC_UnTrack(rec);
    return rec;
}

/* decoder(buf, offset=0) */
static PyObject *
rd_vectorcall(PyObject *obj, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    RecordDecoderObject *self = (RecordDecoderObject *)obj;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), offset = 0;
    PyObject *buf, *off = NULL;
    if (self->top == NULL) { /* only after tp_clear broke a reference cycle */
        PyErr_SetString(PyExc_ValueError, "this record decoder was cleared");
        return NULL;
    }
    if (kwnames == NULL) {
        if (nargs < 1 || nargs > 2)
            goto pure;
        off = nargs == 2 ? args[1] : NULL;
    } else {
        if (nargs != 1 || PyTuple_GET_SIZE(kwnames) != 1 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0)) ||
            PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "offset") != 0)
            goto pure;
        off = args[1];
    }
    buf = args[0];
    if (off != NULL) {
        if (!PyLong_CheckExact(off))
            goto pure;
        offset = PyLong_AsSsize_t(off);
        if (offset == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto pure;
        }
        if (offset < 0)
            goto pure;
    }
    Py_ssize_t size = self->top->size;
    if (PyBytes_CheckExact(buf)) {
        if (PyBytes_GET_SIZE(buf) - offset < size)
            goto pure;
        return rd_struct(self->top, (const unsigned char *)PyBytes_AS_STRING(buf) + offset, buf,
                         offset);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        goto pure;
    }
    if (view.len - offset < size) {
        PyBuffer_Release(&view);
        goto pure;
    }
    PyObject *rec = rd_struct(self->top, (const unsigned char *)view.buf + offset, buf, offset);
    PyBuffer_Release(&view);
    return rec;
pure:
    return PyObject_Vectorcall(self->pure, args, nargsf, kwnames);
}

static void
rd_free_prog(RecordDecoderObject *self)
{
    for (Py_ssize_t i = 0; i < self->ncached; i++)
        Py_CLEAR(self->cached[i]->last);
    PyMem_Free(self->cached);
    self->cached = NULL;
    self->ncached = self->capcached = 0;
    for (Py_ssize_t i = 0; i < self->nallocs; i++)
        PyMem_Free(self->allocs[i]);
    PyMem_Free(self->allocs);
    self->allocs = NULL;
    self->nallocs = self->cap = 0;
    self->top = NULL;
}

static PyObject *
rd_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *spec, *pure;
    if (!PyArg_ParseTuple(args, "O!O:RecordDecoder", &PyTuple_Type, &spec, &pure))
        return NULL;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "RecordDecoder takes no keyword arguments");
        return NULL;
    }
    if (!PyCallable_Check(pure)) {
        PyErr_SetString(PyExc_TypeError, "pure must be callable");
        return NULL;
    }
    RecordDecoderObject *self = (RecordDecoderObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = rd_vectorcall;
    Py_INCREF(spec);
    self->spec = spec;
    Py_INCREF(pure);
    self->pure = pure;
    PyObject *memo = PyDict_New();
    if (memo == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->top = rd_compile_struct(self, spec, memo, 0);
    Py_DECREF(memo);
    if (self->top == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
rd_traverse(RecordDecoderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->spec);
    Py_VISIT(self->pure);
    return 0;
}

static int
rd_clear(RecordDecoderObject *self)
{
    /* the program borrows from spec: drop it first */
    rd_free_prog(self);
    Py_CLEAR(self->spec);
    Py_CLEAR(self->pure);
    return 0;
}

static void
rd_dealloc(RecordDecoderObject *self)
{
    PyObject_GC_UnTrack(self);
    rd_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
rd_decode_list(RecordDecoderObject *self, PyObject *seq)
{
    /* [decoder(b) for b in seq], in one call */
    PyObject *fast = PySequence_Fast(seq, "decode_list() needs a sequence");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        Py_DECREF(fast);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *rec = rd_vectorcall((PyObject *)self, &items[i], 1, NULL);
        if (rec == NULL) {
            Py_DECREF(out);
            Py_DECREF(fast);
            return NULL;
        }
        PyList_SET_ITEM(out, i, rec);
    }
    Py_DECREF(fast);
    return out;
}

static PyObject *
rd_get_pure(RecordDecoderObject *self, void *closure)
{
    Py_INCREF(self->pure);
    return self->pure;
}

static PyObject *
rd_get_size(RecordDecoderObject *self, void *closure)
{
    return PyLong_FromSsize_t(self->top ? self->top->size : 0);
}

static PyObject *
rd_repr(RecordDecoderObject *self)
{
    return PyUnicode_FromFormat("<RecordDecoder %s size=%zd>",
                                self->top ? self->top->cls->tp_name : "?",
                                self->top ? self->top->size : (Py_ssize_t)0);
}

static PyMethodDef rd_methods[] = {
    {"decode_list", (PyCFunction)rd_decode_list, METH_O,
     "decode_list(buffers) -> [decoder(b) for b in buffers]"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef rd_getset[] = {
    {"pure", (getter)rd_get_pure, NULL, "the reference (generated Python) decoder", NULL},
    {"size", (getter)rd_get_size, NULL, "sizeof the struct", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(record_decoder_doc,
"RecordDecoder(spec, pure)\n"
"\n"
"C decoder of one BTF struct into its Record class; call as decoder(buf, offset=0).\n"
"spec comes from bpfring.btf._fast; pure is the generated Python decoder, which\n"
"handles every call the C path does not (errors, unusual arguments).");

static PyTypeObject RecordDecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bpfring._speedups._RecordDecoder",
    .tp_basicsize = sizeof(RecordDecoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = record_decoder_doc,
    .tp_new = rd_new,
    .tp_dealloc = (destructor)rd_dealloc,
    .tp_traverse = (traverseproc)rd_traverse,
    .tp_clear = (inquiry)rd_clear,
    .tp_vectorcall_offset = offsetof(RecordDecoderObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_methods = rd_methods,
    .tp_getset = rd_getset,
    .tp_repr = (reprfunc)rd_repr,
};

/* Called from the module init: adds _RecordDecoder (little-endian hosts only; private:
 * the ring backend contract of tests/test_backend_contract.py lists the public names). */
static int
decode_add_types(PyObject *m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (PyType_Ready(&RecordDecoderType) < 0)
        return -1;
    Py_INCREF(&RecordDecoderType);
    if (PyModule_AddObject(m, "_RecordDecoder", (PyObject *)&RecordDecoderType) < 0) {
        Py_DECREF(&RecordDecoderType);
        return -1;
    }
#else
    (void)m;
#endif
    return 0;
}
