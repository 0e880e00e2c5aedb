/* SPDX-License-Identifier: Apache-2.0 */
/*
 * C fast paths of the ring buffer helpers of the C eBPF interpreter
 * (included by _speedups_vm_maps.c): bpf_ringbuf_output, bpf_ringbuf_submit
 * and bpf_ringbuf_discard on the user-space rings of
 * bpfring.userspace._ringbuf (RingBufMap, exactly: a kernel-bound ring's
 * subclass keeps its Python path).  The ring is the kernel's layout
 * (consumer page, producer page, data area mapped twice), shared with
 * readers in other threads and processes, so positions and headers are
 * written with the kernel's ordering.  bpf_ringbuf_reserve stays in Python:
 * a reserved record is a region of the object's region table.
 */

/* bpf_ringbuf_output on a RingBufMap (_ringbuf.py), as RingBufMap.output
 * runs it: __bpf_ringbuf_reserve with the pending_pos rule, the payload
 * copied, bpf_ringbuf_commit with the kernel's wakeup rule.  The ring is
 * the kernel's layout in a shared mapping: the header (BUSY set) is written
 * before producer_pos moves, and producer_pos and the committed header are
 * release stores, so a consumer in another thread or process that sees the
 * new position sees the header, and one that sees BUSY clear sees the
 * payload.  The Python path registers the record as a region for the copy
 * and removes it again; the region numbering moves on here just as there
 * (Memory._next), so later regions get the same addresses on both paths. */
#define VM_RB_BUSY 0x80000000u
#define VM_RB_DISCARD 0x40000000u
#define VM_RB_NO_WAKEUP 1
#define VM_RB_FORCE_WAKEUP 2
#define VM_REGION_TAG 0x40000000LL
#define VM_MAX_RID 0x0FFFFFFELL

/* The wakeup of bpf_ringbuf_commit: map.wakeups += 1 and the eventfd
 * signalled (a full counter is not an error).  The region cache is emptied
 * first, as before any call into Python.  0, or -1 with an error set. */
static int
vm_ring_wake(VMObject *vm, PyObject *mp)
{
    PyObject *ev, *fdo, *w;
    long long nw;
    int fd, err = 0;
    uint64_t one = 1;

    vm_cache_clear(vm);
    nw = vm_attr_ll(mp, str_wakeups, &err);
    w = err ? NULL : PyLong_FromLongLong(nw + 1);
    if (w == NULL || PyObject_SetAttr(mp, str_wakeups, w) < 0) {
        Py_XDECREF(w);
        return -1;
    }
    Py_DECREF(w);
    ev = PyObject_GetAttr(mp, str_event);
    fdo = ev ? PyObject_CallMethodNoArgs(ev, str_fileno) : NULL;
    Py_XDECREF(ev);
    fd = fdo ? (int)PyLong_AsLong(fdo) : -1;
    Py_XDECREF(fdo);
    if (fd < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "ring buffer eventfd is closed");
        return -1;
    }
    if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static int
vm_ring_output(VMObject *vm, PyObject *mp, int *err)
{
    uint64_t *r = vm->regs, size = r[3], flags = r[4], length, cons, pend, prod, new_prod,
        mask;
    long long max_entries, page, next;
    PyObject *ring = NULL, *all = NULL, *mem = NULL, *regs_d = NULL;
    uint8_t *src, *base, *data;
    uint32_t off, word;
    Py_buffer view;
    int rc = 0, wake;

    if (size == 0 || size > 0xFFFFFFFFull)
        return 0;
    src = vm_peek(vm, r[2], (unsigned)size, err);
    if (src == NULL)
        return 0;
    if (flags & ~(uint64_t)(VM_RB_NO_WAKEUP | VM_RB_FORCE_WAKEUP)) {
        r[0] = (uint64_t)-EINVAL;
        return 1;
    }
    max_entries = vm_attr_ll(mp, str_max_entries, err);
    mask = (uint64_t)vm_attr_ll(mp, str_mask, err);
    if (*err)
        return 0;
    ring = PyObject_GetAttr(mp, str_ring);
    if (ring == NULL || ring == Py_None)
        goto fail;
    page = vm_attr_ll(ring, str_page, err);
    all = PyObject_GetAttr(ring, str_all);
    mem = PyObject_GetAttr(mp, str_mem);
    regs_d = mem ? PyObject_GetAttr(mem, str_mem_regions) : NULL;
    if (*err || all == NULL || regs_d == NULL || !PyDict_Check(regs_d))
        goto fail;
    next = vm_attr_ll(mem, str_next, err);
    if (*err)
        goto fail;
    if (PyObject_GetBuffer(all, &view, PyBUF_WRITABLE) < 0)
        goto fail;
    if (max_entries <= 0 || mask != (uint64_t)max_entries - 1 || page <= 0 ||
        view.len < 2 * page + 2 * max_entries || size > 0xFFFFFFFFull / 4) {
        /* not the layout we know, or larger than RINGBUF_MAX_RECORD_SZ:
         * the Python path decides */
        rc = 0;
        goto release;
    }
    base = (uint8_t *)view.buf;
    data = base + 2 * page;
    length = (size + 8 + 7) & ~7ull;
    if (length > (uint64_t)max_entries) {
        r[0] = (uint64_t)-EAGAIN;
        rc = 1;
        goto release;
    }
    cons = __atomic_load_n((uint64_t *)base, __ATOMIC_ACQUIRE);
    pend = __atomic_load_n((uint64_t *)(base + page + 8), __ATOMIC_RELAXED);
    prod = __atomic_load_n((uint64_t *)(base + page), __ATOMIC_RELAXED);
    new_prod = prod + length;
    /* pending_pos past the records committed since (a busy one stops it) */
    while (pend < prod) {
        word = __atomic_load_n((uint32_t *)(data + (pend & mask)), __ATOMIC_ACQUIRE);
        if (word & VM_RB_BUSY)
            break;
        pend += ((uint64_t)(word & ~VM_RB_DISCARD) + 8 + 7) & ~7ull;
    }
    __atomic_store_n((uint64_t *)(base + page + 8), pend, __ATOMIC_RELAXED);
    if (new_prod - cons > mask || new_prod - pend > mask) {
        r[0] = (uint64_t)-EAGAIN;
        rc = 1;
        goto release;
    }
    /* the region the Python path would add (and remove): its number */
    {
        long long k;
        for (k = 0; k < VM_MAX_RID / 2 + 1; k++) {
            PyObject *key;
            int in;
            next = (next + 2) % VM_MAX_RID;
            key = PyLong_FromLongLong(VM_REGION_TAG + next);
            if (key == NULL)
                goto fail_view;
            in = PyDict_Contains(regs_d, key);
            Py_DECREF(key);
            if (in < 0)
                goto fail_view;
            if (!in)
                break;
        }
        {
            PyObject *n = PyLong_FromLongLong(next);
            if (n == NULL || PyObject_SetAttr(mem, str_next, n) < 0) {
                Py_XDECREF(n);
                goto fail_view;
            }
            Py_DECREF(n);
        }
    }
    off = (uint32_t)(prod & mask);
    word = (uint32_t)size | VM_RB_BUSY;
    memcpy(data + off, &word, 4);
    {
        uint32_t pg = (uint32_t)(off / (uint64_t)page + 3); /* pg_off: 3 pages before data */
        memcpy(data + off + 4, &pg, 4);
    }
    /* after the header: a consumer seeing the new position sees BUSY */
    __atomic_store_n((uint64_t *)(base + page), new_prod, __ATOMIC_RELEASE);
    memmove(data + off + 8, src, (size_t)size); /* may run into the second mapping */
    /* commit: BUSY cleared after the payload */
    __atomic_store_n((uint32_t *)(data + off), (uint32_t)size, __ATOMIC_RELEASE);
    cons = __atomic_load_n((uint64_t *)base, __ATOMIC_ACQUIRE);
    wake = (flags & VM_RB_FORCE_WAKEUP) ||
           (!(flags & VM_RB_NO_WAKEUP) && (uint32_t)(cons & mask) == off);
    PyBuffer_Release(&view);
    r[0] = 0;
    if (wake && vm_ring_wake(vm, mp) < 0) {
        *err = 2; /* the record is in: the error propagates */
        goto out;
    }
    rc = 1;
    goto out;
release:
    PyBuffer_Release(&view);
    goto out;
fail_view:
    PyBuffer_Release(&view);
fail:
    *err = 1;
out:
    Py_XDECREF(ring);
    Py_XDECREF(all);
    Py_XDECREF(mem);
    Py_XDECREF(regs_d);
    return rc;
}


/* bpf_ringbuf_submit / bpf_ringbuf_discard (`discard`) of the record at r1,
 * as the Python helper: the owner is the first ring of the object's map
 * list whose _reserved has the address (_record_owner), then
 * RingBufMap.commit: the record's region removed, its view dropped, BUSY
 * cleared (DISCARD set) with a release store, the wakeup rule.  A record of
 * no ring (a fault), or of a subclass's ring, goes to Python. */
static int
vm_ring_commit(VMObject *vm, int discard, int *err)
{
    uint64_t *r = vm->regs, addr = r[1], flags = r[2];
    PyObject *ctx, *maps = NULL, *mp = NULL, *key = NULL, *entry = NULL, *ring = NULL,
        *all = NULL, *mem = NULL, *regs_d = NULL, *view_obj, *res, *rkey;
    long long page, off_ll, max_entries;
    uint64_t mask, cons;
    Py_ssize_t i, n;
    Py_buffer view;
    uint8_t *base, *data;
    uint32_t off, word;
    int rc = 0;

    ctx = PyObject_GetAttr(vm->owner, str_context);
    maps = ctx ? PyObject_GetAttr(ctx, str_maps) : NULL;
    Py_XDECREF(ctx);
    key = PyLong_FromUnsignedLongLong(addr);
    if (maps == NULL || key == NULL || !PyList_Check(maps))
        goto fail;
    n = PyList_GET_SIZE(maps);
    for (i = 0; i < n && mp == NULL; i++) {
        PyObject *m = PyList_GET_ITEM(maps, i), *rs;
        int is = PyObject_IsInstance(m, vm->ring_cls);
        if (is < 0)
            goto fail;
        if (!is)
            continue;
        /* is_record(addr): addr in map._reserved (no subclass overrides it) */
        rs = PyObject_GetAttr(m, str_reserved);
        if (rs == NULL || !PyDict_Check(rs)) {
            Py_XDECREF(rs);
            goto fail;
        }
        entry = PyDict_GetItemWithError(rs, key);
        if (entry == NULL) {
            Py_DECREF(rs);
            if (PyErr_Occurred())
                goto fail;
            continue;
        }
        if ((PyObject *)Py_TYPE(m) != vm->ring_cls) {
            entry = NULL;
            Py_DECREF(rs);
            goto out; /* a subclass's record (a kernel-bound ring): its own commit */
        }
        Py_INCREF(entry);
        Py_DECREF(rs);
        mp = Py_NewRef(m);
    }
    if (mp == NULL)
        goto out; /* not a reserved record: the Python helper's fault */
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2)
        goto fail;
    off_ll = PyLong_AsLongLong(PyTuple_GET_ITEM(entry, 0));
    view_obj = PyTuple_GET_ITEM(entry, 1);
    max_entries = vm_attr_ll(mp, str_max_entries, err);
    mask = (uint64_t)vm_attr_ll(mp, str_mask, err);
    ring = PyObject_GetAttr(mp, str_ring);
    mem = PyObject_GetAttr(mp, str_mem);
    regs_d = mem ? PyObject_GetAttr(mem, str_mem_regions) : NULL;
    if (*err || (off_ll == -1 && PyErr_Occurred()) || ring == NULL || ring == Py_None ||
        regs_d == NULL || !PyDict_Check(regs_d))
        goto fail;
    page = vm_attr_ll(ring, str_page, err);
    all = PyObject_GetAttr(ring, str_all);
    if (*err || all == NULL)
        goto fail;
    if (off_ll < 0 || off_ll >= max_entries || mask != (uint64_t)max_entries - 1 || page <= 0)
        goto out;
    /* From here the record is committed: errors propagate (*err = 2).  The
     * cache goes first: it may hold an export of the record's view. */
    vm_cache_clear(vm);
    {
        PyObject *rs = PyObject_GetAttr(mp, str_reserved);
        int bad = rs == NULL || PyDict_DelItem(rs, key) < 0;
        Py_XDECREF(rs);
        if (bad)
            goto fail2;
    }
    rkey = PyLong_FromUnsignedLongLong(addr >> 32); /* Memory.remove */
    if (rkey == NULL)
        goto fail2;
    if (PyDict_DelItem(regs_d, rkey) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            Py_DECREF(rkey);
            goto fail2;
        }
        PyErr_Clear();
    }
    Py_DECREF(rkey);
    res = PyObject_CallMethodOneArg(ring, str_drop, view_obj);
    if (res == NULL)
        goto fail2;
    Py_DECREF(res);
    if (PyObject_GetBuffer(all, &view, PyBUF_WRITABLE) < 0)
        goto fail2;
    if (view.len < 2 * page + 2 * max_entries) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "ring buffer mapping too short");
        goto fail2;
    }
    base = (uint8_t *)view.buf;
    data = base + 2 * page;
    off = (uint32_t)off_ll;
    word = __atomic_load_n((uint32_t *)(data + off), __ATOMIC_RELAXED) ^ VM_RB_BUSY;
    if (discard)
        word |= VM_RB_DISCARD;
    /* the kernel's xchg: the payload before the cleared BUSY bit */
    __atomic_store_n((uint32_t *)(data + off), word, __ATOMIC_RELEASE);
    cons = __atomic_load_n((uint64_t *)base, __ATOMIC_ACQUIRE);
    PyBuffer_Release(&view);
    if ((flags & VM_RB_FORCE_WAKEUP) ||
        (!(flags & VM_RB_NO_WAKEUP) && (uint32_t)(cons & mask) == off)) {
        if (vm_ring_wake(vm, mp) < 0)
            goto fail2;
    }
    r[0] = 0;
    rc = 1;
    goto out;
fail2:
    *err = 2;
    goto out;
fail:
    *err = 1;
out:
    Py_XDECREF(maps);
    Py_XDECREF(mp);
    Py_XDECREF(key);
    Py_XDECREF(entry);
    Py_XDECREF(ring);
    Py_XDECREF(all);
    Py_XDECREF(mem);
    Py_XDECREF(regs_d);
    return rc;
}
