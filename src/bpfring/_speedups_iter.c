/* SPDX-License-Identifier: Apache-2.0 */
/*
 * backlog_iter, the C iterator of RingBuffer (included by _speedups.c): pops
 * the records backlog, refills it when empty.
 */

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
