/* SPDX-License-Identifier: Apache-2.0 */
/*
 * C fast paths of the map helpers of the C eBPF interpreter (included by
 * _speedups_vm.c): bpf_map_lookup_elem, bpf_map_update_elem and
 * bpf_map_delete_elem on the user-space array, per-CPU array, hash, per-CPU
 * hash and LRU hash maps of bpfring.userspace._maps / _hash, and the checks
 * of the update and delete of a bridged kernel map (_kernel.KernelMap).
 *
 * They work on the very state the Python helpers use -- the map's memfd
 * backing (its layout is documented in _maps.py), its key -> slot
 * OrderedDict (whose order is the LRU order), its free-slot list and its
 * per-slot region cache -- with the same rules, checks and return codes as
 * ArrayMap / HashMap, so both paths can be mixed freely.  Every fast path
 * checks everything first and changes nothing until all checks held;
 * anything unusual (a pointer the checks refuse, BPF_F_LOCK, a value region
 * not made yet, a map of another class, any Python error) leaves the call to
 * the Python helper (*done = 0), which does what the reference does,
 * faults and their texts included.
 */

static PyObject *str_context, *str_maps, *str_type, *str_key_size, *str_value_size,
    *str_max_entries, *str_backing, *str_view, *str_regions_attr, *str_index_attr, *str_share_attr,
    *str_free, *str_lru, *str_slot, *str_kstride, *str_ncpu, *str_cpu, *str_frozen,
    *str_move_to_end, *str_popitem, *str_queue, *str_update, *str_delete, *str_ring,
    *str_all, *str_page, *str_mask, *str_mem, *str_next, *str_event, *str_fileno,
    *str_wakeups, *str_reserved, *str_drop, *str_mem_regions;

#define VM_MAP_TAG 0x5000000000000000ULL
#define VM_F_LOCK 4
#define VM_NOEXIST 1
#define VM_EXIST 2

static int
vm_maps_strings(void)
{
#define S(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1
    S(str_context, "context");
    S(str_maps, "maps");
    S(str_type, "type");
    S(str_key_size, "key_size");
    S(str_value_size, "value_size");
    S(str_max_entries, "max_entries");
    S(str_backing, "_backing");
    S(str_view, "view");
    S(str_regions_attr, "_regions");
    S(str_index_attr, "_index");
    S(str_share_attr, "_share");
    S(str_free, "_free");
    S(str_lru, "_lru");
    S(str_slot, "_slot");
    S(str_kstride, "_kstride");
    S(str_ncpu, "_ncpu");
    S(str_cpu, "_cpu");
    S(str_frozen, "_frozen");
    S(str_move_to_end, "move_to_end");
    S(str_popitem, "popitem");
    S(str_queue, "_queue");
    S(str_update, "update");
    S(str_delete, "delete");
    S(str_ring, "_ring");
    S(str_all, "all");
    S(str_page, "page");
    S(str_mask, "mask");
    S(str_mem, "_mem");
    S(str_next, "_next");
    S(str_event, "_event");
    S(str_fileno, "fileno");
    S(str_wakeups, "wakeups");
    S(str_reserved, "_reserved");
    S(str_drop, "drop");
    S(str_mem_regions, "regions");
#undef S
    return 0;
}

/* The host address of `size` bytes at `addr` when the region checks allow
 * the access, else NULL; *err = 1 when a Python error is set. */
static uint8_t *
vm_peek(VMObject *vm, uint64_t addr, unsigned size, int *err)
{
    uint32_t key = (uint32_t)(addr >> 32), off = (uint32_t)addr;
    vm_region *c = &vm->cache[(key >> 1) & (VM_CACHE - 1)];

    if (c->key != key || key == 0) {
        int r = key ? vm_fill(vm, key, c) : 0;
        if (r < 0) {
            *err = 1;
            return NULL;
        }
        if (r == 0)
            return NULL;
    }
    if (size == 0 || (uint64_t)off + size > c->size)
        return NULL;
    return c->ptr + off;
}

/* An int attribute of `o`; -1 with *err set on failure. */
static long long
vm_attr_ll(PyObject *o, PyObject *name, int *err)
{
    PyObject *v = PyObject_GetAttr(o, name);
    long long x;

    if (v == NULL) {
        *err = 1;
        return -1;
    }
    x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        *err = 1;
    return x;
}

static int
vm_attr_true(PyObject *o, PyObject *name, int *err)
{
    PyObject *v = PyObject_GetAttr(o, name);
    int t;

    if (v == NULL) {
        *err = 1;
        return 0;
    }
    t = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (t < 0)
        *err = 1;
    return t > 0;
}

/* The map's current CPU (map._cpu()); the region cache is emptied first, as
 * before every call into Python. */
static long
vm_map_cpu(VMObject *vm, PyObject *mp, int *err)
{
    PyObject *fn, *v;
    long c;

    vm_cache_clear(vm);
    fn = PyObject_GetAttr(mp, str_cpu);
    if (fn == NULL) {
        *err = 1;
        return 0;
    }
    v = PyObject_CallNoArgs(fn);
    Py_DECREF(fn);
    if (v == NULL) {
        *err = 1;
        return 0;
    }
    c = PyLong_AsLong(v);
    Py_DECREF(v);
    if ((c == -1 && PyErr_Occurred()) || c < 0) {
        *err = 1;
        return 0;
    }
    return c;
}

/* The cached region address of (slot, cpu) in map._regions, or 0 when the
 * Python side has not made it yet. */
static uint64_t
vm_map_region(PyObject *mp, long long slot, long cpu, int *err)
{
    PyObject *regions = PyObject_GetAttr(mp, str_regions_attr), *k, *v;
    uint64_t addr = 0;

    if (regions == NULL) {
        *err = 1;
        return 0;
    }
    k = Py_BuildValue("(Ll)", slot, cpu);
    if (k == NULL) {
        Py_DECREF(regions);
        *err = 1;
        return 0;
    }
    v = PyDict_Check(regions) ? PyDict_GetItemWithError(regions, k) : NULL;
    Py_DECREF(k);
    Py_DECREF(regions);
    if (v == NULL) {
        if (PyErr_Occurred())
            *err = 1;
        return 0;
    }
    addr = PyLong_AsUnsignedLongLongMask(v);
    if (addr == (uint64_t)-1 && PyErr_Occurred())
        *err = 1;
    return addr;
}

/* The writable buffer of map._backing.view (released by the caller). */
static int
vm_map_backing(PyObject *mp, Py_buffer *view)
{
    PyObject *b = PyObject_GetAttr(mp, str_backing), *v;
    int rc;

    if (b == NULL)
        return -1;
    v = PyObject_GetAttr(b, str_view);
    Py_DECREF(b);
    if (v == NULL)
        return -1;
    rc = PyObject_GetBuffer(v, view, PyBUF_WRITABLE);
    Py_DECREF(v);
    return rc;
}

#define VM_R8(n) (((n) + 7) & ~7LL)

/* A map pinned for other processes (userspace/_share.py): its hash index is
 * resynced from the file and its slot claims and ring reservations take the
 * file's lock, which only the Python helpers do; 1 when pinned (or on an
 * error: the Python helper then reports it). */
static int
vm_is_pinned(PyObject *mp)
{
    PyObject *v = PyObject_GetAttr(mp, str_share_attr);

    if (v == NULL) {
        PyErr_Clear();
        return 1;
    }
    Py_DECREF(v);
    return v != Py_None;
}

struct vm_mapinfo {
    PyObject *mp;   /* borrowed from the context's list */
    int is_hash;    /* 0 ArrayMap, 1 HashMap, 2 KernelMap (bridged) */
    long long type, key_size, value_size, max_entries;
    int percpu;
};

/* 1 with *mi set when r1 names a map one of the fast paths handles, 0 when
 * it does not, -1 on a Python error. */
static int
vm_map_info(VMObject *vm, struct vm_mapinfo *mi)
{
    PyObject *ctx, *maps;
    uint64_t i = vm->regs[1] - VM_MAP_TAG;
    int err = 0;

    ctx = PyObject_GetAttr(vm->owner, str_context);
    if (ctx == NULL)
        return -1;
    maps = PyObject_GetAttr(ctx, str_maps);
    Py_DECREF(ctx);
    if (maps == NULL)
        return -1;
    if (!PyList_Check(maps) || i >= (uint64_t)PyList_GET_SIZE(maps)) {
        Py_DECREF(maps);
        return 0;
    }
    mi->mp = PyList_GET_ITEM(maps, (Py_ssize_t)i);
    Py_DECREF(maps); /* the object keeps its list, the list its maps */
    if ((PyObject *)Py_TYPE(mi->mp) == vm->hash_cls)
        mi->is_hash = 1;
    else if ((PyObject *)Py_TYPE(mi->mp) == vm->array_cls)
        mi->is_hash = 0;
    else if ((PyObject *)Py_TYPE(mi->mp) == vm->kernel_cls)
        mi->is_hash = 2;
    else
        return 0;
    if (mi->is_hash == 1 && vm_is_pinned(mi->mp))
        return 0;
    mi->type = vm_attr_ll(mi->mp, str_type, &err);
    mi->key_size = vm_attr_ll(mi->mp, str_key_size, &err);
    mi->value_size = vm_attr_ll(mi->mp, str_value_size, &err);
    mi->max_entries = vm_attr_ll(mi->mp, str_max_entries, &err);
    if (err)
        return -1;
    /* PERCPU_HASH 5, PERCPU_ARRAY 6, LRU_PERCPU_HASH 10 (UserMap.percpu) */
    mi->percpu = mi->type == 5 || mi->type == 6 || mi->type == 10;
    if (mi->key_size <= 0 || mi->key_size > 0xFFFF || mi->value_size <= 0 ||
        mi->value_size > 0xFFFFFF || mi->max_entries <= 0)
        return 0;
    return 1;
}

/* bpf_map_lookup_elem: r0 = the value's region address or 0. */
static int
vm_map_lookup(VMObject *vm, struct vm_mapinfo *mi, int *err)
{
    PyObject *mp = mi->mp, *kobj = NULL, *index = NULL, *slot;
    long cpu = -1;
    long long s;
    uint64_t addr;
    uint8_t *kp;
    int lru;

    if (mi->percpu) {
        cpu = vm_map_cpu(vm, mp, err);
        if (*err)
            return 0;
    }
    kp = vm_peek(vm, vm->regs[2], (unsigned)mi->key_size, err);
    if (kp == NULL)
        return 0;
    if (!mi->is_hash) {
        uint32_t i;
        memcpy(&i, kp, 4);
        if (i >= (uint64_t)mi->max_entries) {
            vm->regs[0] = 0;
            return 1;
        }
        addr = vm_map_region(mp, i, cpu, err);
        if (!addr)
            return 0;
        vm->regs[0] = addr;
        return 1;
    }
    kobj = PyBytes_FromStringAndSize((const char *)kp, (Py_ssize_t)mi->key_size);
    index = PyObject_GetAttr(mp, str_index_attr);
    if (kobj == NULL || index == NULL || !PyDict_Check(index))
        goto fail;
    slot = PyDict_GetItemWithError(index, kobj);
    if (slot == NULL) {
        if (PyErr_Occurred())
            goto fail;
        vm->regs[0] = 0;
        goto hit;
    }
    s = PyLong_AsLongLong(slot);
    if (s == -1 && PyErr_Occurred())
        goto fail;
    addr = vm_map_region(mp, s, cpu, err);
    if (!addr)
        goto out;
    lru = vm_attr_true(mp, str_lru, err);
    if (*err)
        goto out;
    if (lru) { /* a lookup from a program counts as use (the kernel's ref bit) */
        PyObject *res = PyObject_CallMethodOneArg(index, str_move_to_end, kobj);
        if (res == NULL)
            goto fail;
        Py_DECREF(res);
    }
    vm->regs[0] = addr;
hit:
    Py_DECREF(kobj);
    Py_DECREF(index);
    return 1;
fail:
    *err = 1;
out:
    Py_XDECREF(kobj);
    Py_XDECREF(index);
    return 0;
}

/* ArrayMap.p_update / _check_update, in their order. */
static int
vm_array_update(VMObject *vm, struct vm_mapinfo *mi, const uint8_t *kp, const uint8_t *val,
                uint64_t flags, long cpu, int *err)
{
    long long stride = VM_R8(mi->value_size), per = mi->percpu ? vm_attr_ll(mi->mp, str_ncpu,
                                                                             err) : 1;
    uint32_t i;
    Py_buffer view;
    long long off;

    if (*err)
        return 0;
    memcpy(&i, kp, 4);
    if ((flags & ~(uint64_t)VM_F_LOCK) > VM_EXIST) {
        vm->regs[0] = (uint64_t)-EINVAL;
        return 1;
    }
    if (i >= (uint64_t)mi->max_entries) {
        vm->regs[0] = (uint64_t)-E2BIG;
        return 1;
    }
    if (flags & VM_NOEXIST) {
        vm->regs[0] = (uint64_t)-EEXIST;
        return 1;
    }
    if (vm_attr_true(mi->mp, str_frozen, err)) {
        vm->regs[0] = (uint64_t)-EPERM;
        return 1;
    }
    if (*err)
        return 0;
    if (vm_map_backing(mi->mp, &view) < 0) {
        *err = 1;
        return 0;
    }
    off = ((long long)i * per + (mi->percpu ? cpu : 0)) * stride;
    if (off < 0 || off + mi->value_size > view.len) {
        PyBuffer_Release(&view);
        return 0;
    }
    memmove((uint8_t *)view.buf + off, val, (size_t)mi->value_size);
    PyBuffer_Release(&view);
    vm->regs[0] = 0;
    return 1;
}

/* HashMap._upsert from a program (all_cpus false). */
static int
vm_hash_update(VMObject *vm, struct vm_mapinfo *mi, PyObject *kobj, const uint8_t *val,
               uint64_t flags, long cpu, int *err)
{
    PyObject *mp = mi->mp, *index = NULL, *slot, *freel = NULL;
    long long s, slotsz, kstride, stride = VM_R8(mi->value_size), vper, base, voff;
    uint64_t f = flags & ~(uint64_t)VM_F_LOCK;
    int lru, fresh = 0, rc = 0;
    Py_buffer view;

    slotsz = vm_attr_ll(mp, str_slot, err);
    kstride = vm_attr_ll(mp, str_kstride, err);
    vper = mi->percpu ? vm_attr_ll(mp, str_ncpu, err) : 1;
    lru = vm_attr_true(mp, str_lru, err);
    if (*err)
        return 0;
    if (f > VM_EXIST) {
        vm->regs[0] = (uint64_t)-EINVAL;
        return 1;
    }
    index = PyObject_GetAttr(mp, str_index_attr);
    freel = PyObject_GetAttr(mp, str_free);
    if (index == NULL || freel == NULL || !PyDict_Check(index) || !PyList_Check(freel))
        goto fail;
    if (vm_map_backing(mp, &view) < 0)
        goto fail;
    if (slotsz * mi->max_entries > view.len || vper < 1 ||
        slotsz < 8 + kstride + vper * stride) {
        rc = 0;
        goto release;
    }
    slot = PyDict_GetItemWithError(index, kobj);
    if (slot != NULL) {
        if (f == VM_NOEXIST) {
            vm->regs[0] = (uint64_t)-EEXIST;
            rc = 1;
            goto release;
        }
        s = PyLong_AsLongLong(slot);
        if ((s == -1 && PyErr_Occurred()) || s < 0 || s >= mi->max_entries)
            goto fail_view;
        if (lru) {
            PyObject *res = PyObject_CallMethodOneArg(index, str_move_to_end, kobj);
            if (res == NULL)
                goto fail_view;
            Py_DECREF(res);
        }
    } else {
        PyObject *sobj;
        if (PyErr_Occurred())
            goto fail_view;
        if (f == VM_EXIST) {
            vm->regs[0] = (uint64_t)-ENOENT;
            rc = 1;
            goto release;
        }
        if (PyList_GET_SIZE(freel) == 0) {
            PyObject *pair, *args;
            if (!lru) {
                vm->regs[0] = (uint64_t)-E2BIG;
                rc = 1;
                goto release;
            }
            /* the least recently used element goes: index.popitem(last=False) */
            args = PyTuple_New(0);
            if (args == NULL)
                goto fail_view;
            {
                PyObject *meth = PyObject_GetAttr(index, str_popitem), *kw;
                if (meth == NULL) {
                    Py_DECREF(args);
                    goto fail_view;
                }
                kw = Py_BuildValue("{s:O}", "last", Py_False);
                pair = kw ? PyObject_Call(meth, args, kw) : NULL;
                Py_XDECREF(kw);
                Py_DECREF(meth);
            }
            Py_DECREF(args);
            if (pair == NULL)
                goto fail_view;
            s = PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2
                ? PyLong_AsLongLong(PyTuple_GET_ITEM(pair, 1)) : -1;
            Py_DECREF(pair);
            if (s < 0 || s >= mi->max_entries) { /* popped already: no fallback */
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "hash map: bad slot");
                PyBuffer_Release(&view);
                Py_DECREF(index);
                Py_DECREF(freel);
                *err = 2;
                return 0;
            }
            memset((uint8_t *)view.buf + s * slotsz, 0, 8); /* _release */
        } else {
            Py_ssize_t n = PyList_GET_SIZE(freel);
            s = PyLong_AsLongLong(PyList_GET_ITEM(freel, n - 1));
            if ((s == -1 && PyErr_Occurred()) || s < 0 || s >= mi->max_entries)
                goto fail_view;
            if (PyList_SetSlice(freel, n - 1, n, NULL) < 0) /* _free.pop() */
                goto fail_view;
        }
        /* From here the map has changed: an error propagates (*err = 2). */
        base = s * slotsz;
        {
            uint64_t one = 1;
            memcpy((uint8_t *)view.buf + base, &one, 8);
        }
        memcpy((uint8_t *)view.buf + base + 8, PyBytes_AS_STRING(kobj),
               (size_t)mi->key_size);
        sobj = PyLong_FromLongLong(s);
        if (sobj == NULL || PyObject_SetItem(index, kobj, sobj) < 0) {
            Py_XDECREF(sobj);
            PyBuffer_Release(&view);
            Py_DECREF(index);
            Py_DECREF(freel);
            *err = 2;
            return 0;
        }
        Py_DECREF(sobj);
        fresh = 1;
    }
    /* HashMap._write(slot, raw, all_cpus=False, fresh) */
    voff = s * slotsz + 8 + kstride;
    if (mi->percpu) {
        if (fresh)
            memset((uint8_t *)view.buf + voff, 0, (size_t)(vper * stride));
        voff += cpu * stride;
    }
    memmove((uint8_t *)view.buf + voff, val, (size_t)mi->value_size);
    vm->regs[0] = 0;
    rc = 1;
release:
    PyBuffer_Release(&view);
    Py_DECREF(index);
    Py_DECREF(freel);
    return rc;
fail_view:
    PyBuffer_Release(&view);
fail:
    *err = 1;
    Py_XDECREF(index);
    Py_XDECREF(freel);
    return 0;
}

/* HashMap._remove. */
static int
vm_hash_delete(VMObject *vm, struct vm_mapinfo *mi, PyObject *kobj, int *err)
{
    PyObject *mp = mi->mp, *index, *freel = NULL, *slot;
    long long s, slotsz = vm_attr_ll(mp, str_slot, err);
    Py_buffer view;
    int rc = 0;

    if (*err)
        return 0;
    index = PyObject_GetAttr(mp, str_index_attr);
    if (index == NULL || !PyDict_Check(index))
        goto fail;
    slot = PyDict_GetItemWithError(index, kobj);
    if (slot == NULL) {
        if (PyErr_Occurred())
            goto fail;
        Py_DECREF(index);
        vm->regs[0] = (uint64_t)-ENOENT;
        return 1;
    }
    Py_INCREF(slot);
    s = PyLong_AsLongLong(slot);
    freel = PyObject_GetAttr(mp, str_free);
    if ((s == -1 && PyErr_Occurred()) || s < 0 || s >= mi->max_entries || freel == NULL ||
        !PyList_Check(freel)) {
        Py_DECREF(slot);
        goto fail;
    }
    if (vm_map_backing(mp, &view) < 0) {
        Py_DECREF(slot);
        goto fail;
    }
    if ((s + 1) * slotsz > view.len) {
        Py_DECREF(slot);
        PyBuffer_Release(&view);
        goto out;
    }
    if (PyObject_DelItem(index, kobj) < 0) {
        Py_DECREF(slot);
        PyBuffer_Release(&view);
        goto fail;
    }
    if (PyList_Append(freel, slot) < 0) { /* deleted already: no fallback */
        Py_DECREF(slot);
        PyBuffer_Release(&view);
        *err = 2;
        goto out;
    }
    Py_DECREF(slot);
    memset((uint8_t *)view.buf + s * slotsz, 0, 8);
    PyBuffer_Release(&view);
    vm->regs[0] = 0;
    rc = 1;
    goto out;
fail:
    *err = 1;
out:
    Py_XDECREF(index);
    Py_XDECREF(freel);
    return rc;
}

/* KernelMap.p_update / p_delete: the checks here, then the queueing into
 * the map bridge by KernelMap._queue (Python: the bridge's ring protocol),
 * called as the Python helper calls it. */
static int
vm_kernel_queue(VMObject *vm, struct vm_mapinfo *mi, PyObject *kobj, const uint8_t *val,
                uint64_t flags, int which, int *err)
{
    int array = mi->type == 2 || mi->type == 6; /* ARRAY, PERCPU_ARRAY */
    PyObject *res, *vobj = NULL;
    long long rc;

    if (which == 2) {
        uint32_t i;
        if ((flags & ~(uint64_t)VM_F_LOCK) > VM_EXIST || (flags & VM_F_LOCK)) {
            vm->regs[0] = (uint64_t)-EINVAL;
            return 1;
        }
        if (array && mi->key_size != 4)
            return 0;
        if (array)
            memcpy(&i, PyBytes_AS_STRING(kobj), 4);
        if (array && i >= (uint64_t)mi->max_entries) {
            vm->regs[0] = (uint64_t)-E2BIG;
            return 1;
        }
        if (array && (flags & VM_NOEXIST)) {
            vm->regs[0] = (uint64_t)-EEXIST;
            return 1;
        }
        vobj = PyBytes_FromStringAndSize((const char *)val, (Py_ssize_t)mi->value_size);
        if (vobj == NULL) {
            *err = 1;
            return 0;
        }
    } else if (array) {
        vm->regs[0] = (uint64_t)-EINVAL;
        return 1;
    }
    /* Python runs from here (the bridge may flush and wait): as for a
     * Python helper, the region cache goes and the end-of-run hook is due. */
    vm_cache_clear(vm);
    vm->py_called = 1;
    if (which == 2) {
        PyObject *fobj = PyLong_FromUnsignedLongLong(flags);
        res = fobj ? PyObject_CallMethodObjArgs(mi->mp, str_queue, str_update, kobj, vobj,
                                                fobj, NULL) : NULL;
        Py_XDECREF(fobj);
    } else
        res = PyObject_CallMethodObjArgs(mi->mp, str_queue, str_delete, kobj, NULL);
    Py_XDECREF(vobj);
    if (res == NULL) {
        *err = 2; /* it ran: no second try */
        return 0;
    }
    rc = PyLong_AsLongLong(res);
    Py_DECREF(res);
    if (rc == -1 && PyErr_Occurred()) {
        *err = 2;
        return 0;
    }
    vm->regs[0] = (uint64_t)rc;
    return 1;
}

#include "_speedups_vm_rings.c"

/* Run the map helper `which` (1 lookup, 2 update, 3 delete, 4 ringbuf output,
 * 5 ringbuf submit, 6 ringbuf discard) here when it
 * can (*done = 1), else leave it to the Python helper.  Returns 0; a Python
 * error met before anything changed is cleared (the Python helper meets it
 * again and reports it as the reference does); one after the map changed
 * (only MemoryError in practice) is returned as -1. */
static int
vm_map_c(VMObject *vm, int which, int *done)
{
    struct vm_mapinfo mi;
    uint64_t *r = vm->regs;
    int err = 0, ok = 0;

    *done = 0;
    if (vm->owner == NULL || (which <= 4 && (r[1] - VM_MAP_TAG) >> 32))
        return 0;
    if (which == 2 && (r[4] & VM_F_LOCK))
        return 0; /* BPF_F_LOCK: the Python helper checks the value's lock */
    if (which == 5 || which == 6) { /* bpf_ringbuf_submit, bpf_ringbuf_discard */
        ok = vm_ring_commit(vm, which == 6, &err);
        goto out;
    }
    if (which == 4) { /* bpf_ringbuf_output */
        PyObject *ctx, *maps, *mp;
        uint64_t i = r[1] - VM_MAP_TAG;
        ctx = PyObject_GetAttr(vm->owner, str_context);
        maps = ctx ? PyObject_GetAttr(ctx, str_maps) : NULL;
        Py_XDECREF(ctx);
        if (maps == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (!PyList_Check(maps) || i >= (uint64_t)PyList_GET_SIZE(maps) ||
            (PyObject *)Py_TYPE(mp = PyList_GET_ITEM(maps, (Py_ssize_t)i)) != vm->ring_cls) {
            Py_DECREF(maps);
            return 0;
        }
        Py_INCREF(mp);
        Py_DECREF(maps);
        if (vm_is_pinned(mp)) { /* reservations under the file's lock */
            Py_DECREF(mp);
            return 0;
        }
        ok = vm_ring_output(vm, mp, &err);
        Py_DECREF(mp);
        goto out;
    }
    ok = vm_map_info(vm, &mi);
    if (ok <= 0) {
        if (ok < 0)
            PyErr_Clear();
        return 0;
    }
    ok = 0;
    if (which == 1 && mi.is_hash == 2)
        return 0; /* a bpf() lookup into a copy: the Python helper */
    if (which == 1) {
        ok = vm_map_lookup(vm, &mi, &err);
    } else {
        long cpu = 0;
        uint8_t *kp, *vp = NULL;
        uint8_t small[256], *val = small;
        PyObject *kobj;

        if (which == 2 && mi.percpu && mi.is_hash != 2) {
            cpu = vm_map_cpu(vm, mi.mp, &err);
            if (err) {
                PyErr_Clear();
                return 0;
            }
        }
        kp = vm_peek(vm, r[2], (unsigned)mi.key_size, &err);
        if (kp == NULL)
            goto out;
        if (which == 3 && mi.is_hash == 0) {
            r[0] = (uint64_t)-EINVAL; /* arrays cannot delete */
            *done = 1;
            return 0;
        }
        /* The key is copied at once: the value's lookup may refill the cache
         * slot whose view the key pointer is in. */
        kobj = PyBytes_FromStringAndSize((const char *)kp, (Py_ssize_t)mi.key_size);
        if (kobj == NULL) {
            err = 1;
            goto out;
        }
        if (which == 2) {
            vp = vm_peek(vm, r[3], (unsigned)mi.value_size, &err);
            if (vp == NULL) {
                Py_DECREF(kobj);
                goto out;
            }
            /* Copied first, as the Python helper reads it into bytes: the
             * value may live in the map being written. */
            if (mi.value_size > (long long)sizeof small) {
                val = PyMem_Malloc((size_t)mi.value_size);
                if (val == NULL) {
                    PyErr_NoMemory();
                    Py_DECREF(kobj);
                    err = 1;
                    goto out;
                }
            }
            memcpy(val, vp, (size_t)mi.value_size);
        }
        /* nothing below reads program memory */
        if (which == 2 && mi.is_hash == 0)
            ok = vm_array_update(vm, &mi, (const uint8_t *)PyBytes_AS_STRING(kobj), val, r[4],
                                 cpu, &err);
        else if (mi.is_hash == 2)
            ok = vm_kernel_queue(vm, &mi, kobj, val, r[4], which, &err);
        else if (which == 2)
            ok = vm_hash_update(vm, &mi, kobj, val, r[4], cpu, &err);
        else
            ok = vm_hash_delete(vm, &mi, kobj, &err);
        Py_DECREF(kobj);
        if (val != small)
            PyMem_Free(val);
    }
out:
    if (err == 2)
        return -1; /* the map changed before the error: report it, no second try */
    if (err)
        PyErr_Clear();
    *done = ok && !err;
    return 0;
}
