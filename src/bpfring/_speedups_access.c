/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Single atomic accesses of bpfring._speedups (included by _speedups.c): the
 * module's load_acquire_u64 / store_release_u64 / acquire_fence for the slower
 * paths, and the position methods (consumer_pos, producer_pos, publish) both
 * ring types share.
 */

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
