/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The read-only memoryview a consume() callback gets (included by
 * _speedups.c): made once, re-pointed from record to record while nobody else
 * holds it, dropped (and released when asked) when someone does.  The kernel
 * ring's consume() and the perf ring's walk use it.
 */

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
