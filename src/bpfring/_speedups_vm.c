/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The C interpreter of the user-space eBPF runtime (included by _speedups.c).
 *
 * It is the C twin of bpfring.userspace._interp.Interpreter, which is the
 * reference: same instruction semantics (RFC 9669), same region model, same
 * budget, frames and tail calls, same errors.  bpfring.userspace._cinterp
 * wraps it in the interpreter interface the object and the helpers use;
 * the tests run every user-space program on both.
 *
 * Instructions come pre-decoded from Python as 16-byte slots (struct
 * vm_insn below, built by _cinterp.encode): code, dst, src, off and the
 * immediate as a 64-bit value (sign-extended imm32, or the whole constant of
 * an ld_imm64, whose second slot has code VM_FILLER_CODE).
 *
 * Memory: a program never holds a host pointer.  Its addresses are the
 * tagged addresses of bpfring.userspace._memory (region number in the upper
 * 32 bits, offset in the lower 32).  Every load and store looks the region
 * up -- first in a small direct-mapped cache of buffer views, then in the
 * Python region table (Memory.regions) -- and checks offset + size against
 * the region's size and, for stores, its writable flag, before touching a
 * byte.  The cache holds buffer exports only while C code runs: it is
 * emptied before every call back into Python (helpers may add, remove or
 * resize regions) and when a run ends, so no export outlives a run.
 *
 * Faults: memory violations call owner._fault(addr, size, write, misaligned)
 * for the exception (so the message is the reference's), the other faults
 * raise the Fault class given to VM() with the reference's text.  Any error
 * records the program counter and image in err_pc/err_image; the Python
 * wrapper turns it into UserRuntimeError with the disassembly.
 */

#include <errno.h>
#include <stdarg.h>
#include <unistd.h>
#include <time.h>

#define VM_STACK 512
#define VM_FRAMES 8
#define VM_TAIL_MAX 33
#define VM_CACHE 16
/* Two encodings no valid program has (the loader refuses them: ALU64 and
 * JMP32 with operation 0xf0) mark the slots that are not instructions. */
#define VM_FILLER_CODE 0xFF /* an ld_imm64's second slot */
#define VM_END_CODE 0xFE    /* the sentinel slot after the last one */
#define VM_FUNC_TAG 0x6000000000000000ULL
#define VM_YIELD_WORK (1ULL << 20) /* instructions between GIL hand-overs in a repeat */

struct vm_insn {
    uint8_t code; /* the opcode, VM_FILLER_CODE or VM_END_CODE */
    uint8_t dst;
    uint8_t src;
    uint8_t pad;
    int16_t off;
    uint16_t pad2;
    int32_t imm;   /* an ld_imm64's upper half is in its second slot's imm */
    uint32_t run;  /* instructions from here to the end of the straight run */
};

typedef struct {
    uint32_t key; /* region number (address >> 32); 0: empty */
    uint32_t size;
    int writable;
    uint8_t *ptr;
    PyObject *load; /* the region's special-load callable, or NULL */
    int owned;      /* view is an export of ours to release (not a stack's) */
    Py_buffer view;
} vm_region;

typedef struct {
    PyObject *image;
    PyObject *code;
    long ret; /* -1: the marker frame of a callback */
    uint64_t saved[5]; /* r6-r10 */
} vm_frame;

typedef struct {
    PyObject_HEAD
    uint64_t regs[256]; /* r0-r10; any u8 register number stays inside */
    vm_frame frames[VM_FRAMES];
    int depth;
    uint8_t *stacks[VM_FRAMES];
    uint64_t stack_base[VM_FRAMES];
    Py_buffer stack_views[VM_FRAMES];
    int nstacks;
    uint64_t count, limit;
    long tail_calls;
    vm_region cache[VM_CACHE];
    PyObject *regions;  /* dict: region number -> Region */
    PyObject *helpers;  /* dict: helper id -> (name, fn) */
    PyObject *fault;    /* the Fault class */
    PyObject *ktime;    /* the ktime_get_ns helper (run in C) or None */
    PyObject *loop;     /* the bpf_loop helper (run in C when it can) or None */
    PyObject *map_fns[6]; /* map lookup/update/delete, ringbuf output/submit/discard or NULL */
    PyObject *array_cls, *hash_cls, *kernel_cls, *ring_cls; /* classes the fast paths know */
    PyObject *image;    /* the image running now */
    PyObject *err_image;
    long err_pc;
    PyObject *owner;    /* borrowed, while running: the Python interpreter */
    int py_called;      /* a helper or kfunc ran in Python in this run */
} VMObject;

static PyObject *str_buf, *str_size, *str_writable, *str_load, *str_kfuncs, *str_entries;

static void
vm_cache_clear(VMObject *vm)
{
    for (int i = 0; i < VM_CACHE; i++) {
        vm_region *c = &vm->cache[i];
        if (c->key) {
            c->key = 0;
            Py_CLEAR(c->load);
            if (c->owned)
                PyBuffer_Release(&c->view);
            c->owned = 0;
        }
    }
}

/* Look region `key` up in the Python table and cache a view of it.
 * Returns 1 when found, 0 when there is no such region, -1 on an error. */
static int
vm_fill(VMObject *vm, uint32_t key, vm_region *c)
{
    PyObject *k, *reg, *v;
    unsigned long long size;
    int writable;

    if (c->key) {
        c->key = 0;
        Py_CLEAR(c->load);
        if (c->owned)
            PyBuffer_Release(&c->view);
        c->owned = 0;
    }
    /* The frame stacks are the VM's own regions (their views are held for
     * the VM's life): no Python lookup for the most used memory. */
    for (int i = 0; i < vm->nstacks; i++) {
        if ((uint32_t)(vm->stack_base[i] >> 32) == key) {
            c->ptr = vm->stacks[i];
            c->size = VM_STACK;
            c->writable = 1;
            c->key = key;
            return 1;
        }
    }
    k = PyLong_FromUnsignedLong(key);
    if (k == NULL)
        return -1;
    reg = PyDict_GetItemWithError(vm->regions, k);
    Py_DECREF(k);
    if (reg == NULL)
        return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(reg);
    v = PyObject_GetAttr(reg, str_size);
    if (v == NULL)
        goto fail;
    size = PyLong_AsUnsignedLongLong(v);
    Py_DECREF(v);
    if (size == (unsigned long long)-1 && PyErr_Occurred())
        goto fail;
    v = PyObject_GetAttr(reg, str_writable);
    if (v == NULL)
        goto fail;
    writable = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (writable < 0)
        goto fail;
    v = PyObject_GetAttr(reg, str_load);
    if (v == NULL)
        goto fail;
    if (v == Py_None)
        Py_CLEAR(v);
    c->load = v;
    v = PyObject_GetAttr(reg, str_buf);
    if (v == NULL)
        goto fail_load;
    if (PyObject_GetBuffer(v, &c->view, PyBUF_WRITABLE) < 0) {
        /* A read-only buffer (bytes): fine for loads; a store into it is
         * refused below as the reference's struct.pack_into would be. */
        PyErr_Clear();
        if (PyObject_GetBuffer(v, &c->view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(v);
            goto fail_load;
        }
        writable = 0;
    }
    Py_DECREF(v);
    /* Never trust `size` beyond the buffer's real length. */
    if ((unsigned long long)c->view.len < size)
        size = (unsigned long long)c->view.len;
    if (size > 0xFFFFFFFFull)
        size = 0xFFFFFFFFull;
    c->size = (uint32_t)size;
    c->writable = writable;
    c->ptr = (uint8_t *)c->view.buf;
    c->key = key;
    c->owned = 1;
    Py_DECREF(reg);
    return 1;
fail_load:
    Py_CLEAR(c->load);
fail:
    Py_DECREF(reg);
    return -1;
}

/* Raise the reference's fault for an access of `size` bytes at `addr`. */
static void
vm_mem_fault(VMObject *vm, uint64_t addr, unsigned size, int write, int misaligned)
{
    PyObject *exc;

    vm_cache_clear(vm);
    exc = PyObject_CallMethod(vm->owner, "_fault", "KIii", (unsigned long long)addr, size,
                              write, misaligned);
    if (exc == NULL)
        return;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
}

/* The host address of `size` checked bytes at `addr`, or NULL with an
 * exception set.  `c_out` gets the region (for special loads). */
static inline uint8_t *
vm_addr(VMObject *vm, uint64_t addr, unsigned size, int write, vm_region **c_out)
{
    uint32_t key = (uint32_t)(addr >> 32);
    uint32_t off = (uint32_t)addr;
    vm_region *c = &vm->cache[(key >> 1) & (VM_CACHE - 1)];

    if (c->key != key || key == 0) {
        int r = key ? vm_fill(vm, key, c) : 0;
        if (r < 0)
            return NULL;
        if (r == 0)
            goto fault;
    }
    if ((uint64_t)off + size > c->size || (write && !c->writable))
        goto fault;
    if (c_out)
        *c_out = c;
    return c->ptr + off;
fault:
    vm_mem_fault(vm, addr, size, write, 0);
    return NULL;
}

static void
vm_raise(VMObject *vm, const char *fmt, ...)
{
    va_list ap;
    PyObject *msg;

    va_start(ap, fmt);
    msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg != NULL) {
        PyErr_SetObject(vm->fault, msg);
        Py_DECREF(msg);
    }
}

static inline uint64_t
vm_load(const uint8_t *p, unsigned size)
{
    switch (size) {
    case 1: return *p;
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
}

static inline void
vm_store(uint8_t *p, unsigned size, uint64_t v)
{
    switch (size) {
    case 1: *p = (uint8_t)v; break;
    case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    default: memcpy(p, &v, 8); break;
    }
}

static inline uint64_t
vm_sext(uint64_t x, unsigned bits)
{
    if (bits >= 64)
        return x;
    x &= (1ULL << bits) - 1;
    return (x >> (bits - 1)) ? x | ~((1ULL << bits) - 1) : x;
}

/* Signed division and remainder on `bits`-wide two's-complement values
 * (already masked), as the reference: x/0 = 0, x%0 = x, INT_MIN/-1 wraps. */
static inline uint64_t
vm_sdiv(uint64_t a, uint64_t b, unsigned bits, int mod)
{
    uint64_t mask = bits == 64 ? ~0ULL : 0xFFFFFFFFULL;
    uint64_t sa = vm_sext(a, bits), sb = vm_sext(b, bits);
    int na = (int64_t)sa < 0, nb = (int64_t)sb < 0;
    uint64_t ua = na ? -sa : sa, ub = nb ? -sb : sb;
    uint64_t q;

    if (sb == 0)
        return mod ? a & mask : 0;
    if (mod) {
        q = ua % ub;
        return (na ? -q : q) & mask;
    }
    q = ua / ub;
    return ((na != nb) ? -q : q) & mask;
}

/* Call fn(owner, r1..r5) and return its result masked to 64 bits. */
static int
vm_call_py(VMObject *vm, PyObject *fn, uint64_t *out)
{
    PyObject *args[6];
    PyObject *res;
    int i, n = 1;

    vm_cache_clear(vm);
    vm->py_called = 1;
    args[0] = vm->owner;
    for (i = 1; i <= 5; i++) {
        args[i] = PyLong_FromUnsignedLongLong(vm->regs[i]);
        if (args[i] == NULL)
            goto done;
        n++;
    }
    res = PyObject_Vectorcall(fn, args, 6, NULL);
    if (res == NULL)
        goto done;
    if (!PyLong_Check(res)) {
        PyErr_Format(PyExc_TypeError, "unsupported operand type(s) for &: '%.100s' and 'int'",
                     Py_TYPE(res)->tp_name);
        Py_DECREF(res);
        goto done;
    }
    *out = PyLong_AsUnsignedLongLongMask(res);
    Py_DECREF(res);
    if (*out == (uint64_t)-1 && PyErr_Occurred())
        goto done;
    for (i = 1; i < n; i++)
        Py_DECREF(args[i]);
    return 0;
done:
    for (i = 1; i < n; i++)
        Py_DECREF(args[i]);
    return -1;
}

static void
vm_set_image(VMObject *vm, PyObject *image)
{
    Py_INCREF(image);
    Py_XSETREF(vm->image, image);
}

static inline void
vm_zero_stack(VMObject *vm, int depth)
{
    memset(vm->stacks[depth], 0, VM_STACK);
    vm->regs[10] = vm->stack_base[depth] + VM_STACK;
}

static int
vm_check_code(PyObject *code)
{
    Py_ssize_t len;

    if (!PyBytes_Check(code) || (len = PyBytes_GET_SIZE(code)) == 0 ||
        len % (Py_ssize_t)sizeof(struct vm_insn) ||
        ((const struct vm_insn *)PyBytes_AS_STRING(code))[len / 16 - 1].code != VM_END_CODE) {
        PyErr_SetString(PyExc_TypeError, "code must be bytes of 16-byte instruction slots "
                        "ending in the sentinel slot");
        return -1;
    }
    return 0;
}

#include "_speedups_vm_maps.c"

/* vm_callback, used by the loop's bpf_loop, is defined below it. */
static int vm_callback(VMObject *vm, PyObject *image, PyObject *code, long pc,
                       const uint64_t *argv, int na, uint64_t *out);

#include "_speedups_vm_loop.c"

static void
vm_clear_frames(VMObject *vm)
{
    for (int i = 0; i < VM_FRAMES; i++) {
        Py_CLEAR(vm->frames[i].image);
        Py_CLEAR(vm->frames[i].code);
    }
    vm->depth = 0;
}

PyDoc_STRVAR(vm_run_doc,
"run(owner, image, code, r1, limit, repeat=1, after=None, always=False) -> r0\n"
"\n"
"Run `code` (the 16-byte slots of `image`) from its first instruction with\n"
"r1, the other registers zero, stack frame 0 zeroed, the count reset and a\n"
"budget of `limit` instructions.  `owner` is the Python interpreter: helpers\n"
"get it as their first argument, and its _fault(addr, size, write,\n"
"misaligned) and _tail(r2, index) methods are called for faults and tail\n"
"calls.  On an error err_pc and err_image say where.\n"
"\n"
"`repeat` runs it that many times in a row, each run as above (its own\n"
"budget, fresh registers and stack, the same r1: memory persists), and\n"
"calls after() once a run ended when `always` is true or a Python helper\n"
"ran in it.  The first error stops; r0 is the last run's.");

static PyObject *
vm_finish(VMObject *vm, int rc, PyObject *prev_owner)
{
    vm_cache_clear(vm);
    vm->owner = prev_owner;
    if (rc < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(vm->regs[0]);
}

static PyObject *
vm_run(VMObject *vm, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *prev = vm->owner, *after = NULL;
    unsigned long long r1, limit, repeat = 1, k, work = 0;
    int rc = 0, always = 0;

    if (nargs < 5 || nargs > 8) {
        PyErr_SetString(PyExc_TypeError,
                        "run(owner, image, code, r1, limit, repeat=1, after=None, always=False)");
        return NULL;
    }
    if (vm_check_code(args[2]) < 0)
        return NULL;
    r1 = PyLong_AsUnsignedLongLongMask(args[3]);
    if (r1 == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    limit = PyLong_AsUnsignedLongLong(args[4]);
    if (limit == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (nargs > 5) {
        repeat = PyLong_AsUnsignedLongLong(args[5]);
        if (repeat == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
        if (repeat < 1) {
            PyErr_SetString(PyExc_ValueError, "repeat must be at least 1");
            return NULL;
        }
    }
    if (nargs > 6 && args[6] != Py_None) {
        if (!PyCallable_Check(args[6])) {
            PyErr_SetString(PyExc_TypeError, "after must be callable or None");
            return NULL;
        }
        after = args[6];
    }
    if (nargs > 7 && (always = PyObject_IsTrue(args[7])) < 0)
        return NULL;
    if (vm->nstacks < VM_FRAMES) {
        PyErr_SetString(PyExc_ValueError, "the VM has no stacks");
        return NULL;
    }
    vm->owner = args[0];
    /* Between runs no Python code runs unless after() is called, so the
     * region cache (emptied before every call into Python) stays valid from
     * one run to the next: a run does not look its ctx up again.  About
     * every million instructions the loop lets other threads have the GIL
     * and takes signals (Ctrl-C), as the Python loop of the reference does
     * between runs; the cache is emptied first, as for a call into Python. */
    for (k = 0; k < repeat; k++) {
        if (work > VM_YIELD_WORK) {
            work = 0;
            vm_cache_clear(vm);
            Py_BEGIN_ALLOW_THREADS
            Py_END_ALLOW_THREADS
            if (PyErr_CheckSignals() < 0) {
                rc = -1;
                break;
            }
        }
        vm_clear_frames(vm);
        memset(vm->regs, 0, 11 * sizeof vm->regs[0]);
        vm->regs[1] = r1;
        vm_zero_stack(vm, 0);
        vm->count = 0;
        vm->limit = limit;
        vm->tail_calls = 0;
        vm->py_called = 0;
        rc = vm_exec(vm, args[1], args[2], 0, 0);
        if (rc < 0)
            break;
        work += vm->count + 64; /* a run costs about 64 instructions around its loop */
        if (after != NULL && (always || vm->py_called)) {
            PyObject *res;
            vm_cache_clear(vm);
            res = PyObject_CallNoArgs(after);
            if (res == NULL) {
                rc = -1;
                break;
            }
            Py_DECREF(res);
        }
    }
    return vm_finish(vm, rc, prev);
}

PyDoc_STRVAR(vm_call_doc,
"call(owner, image, code, pc, args) -> r0\n"
"\n"
"Run the function at `pc` of the running image as a callback in a new\n"
"frame with r1.. from `args` (at most 5); the registers and the current\n"
"image are restored afterwards.  The caller checked `pc` and the depth.");

/* Run the function at `pc` of `image` as a callback in a new frame with
 * r1.. from `argv` (at most 5); the registers and the current image are
 * restored afterwards.  The caller checked `pc` and the depth and set the
 * owner.  Returns 0 with *out = its r0, -1 with an exception set. */
static int
vm_callback(VMObject *vm, PyObject *image, PyObject *code, long pc, const uint64_t *argv,
            int na, uint64_t *out)
{
    PyObject *saved_image;
    uint64_t saved[11];
    int rc, depth = vm->depth + 1, i;
    vm_frame *f;

    memcpy(saved, vm->regs, sizeof saved);
    for (i = 0; i < na && i < 5; i++)
        vm->regs[i + 1] = argv[i];
    saved_image = vm->image;
    Py_XINCREF(saved_image);
    f = &vm->frames[vm->depth];
    f->ret = -1;
    f->image = NULL;
    f->code = NULL;
    vm->depth = depth;
    vm_zero_stack(vm, depth);
    rc = vm_exec(vm, image, code, pc, depth);
    *out = vm->regs[0];
    /* Back to the caller's frame whatever happened below it. */
    while (vm->depth > depth) {
        f = &vm->frames[--vm->depth];
        Py_CLEAR(f->image);
        Py_CLEAR(f->code);
    }
    vm->depth = depth - 1;
    memcpy(vm->regs, saved, sizeof saved);
    if (saved_image != NULL)
        Py_SETREF(vm->image, saved_image);
    vm_cache_clear(vm);
    return rc;
}

static PyObject *
vm_call(VMObject *vm, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *prev = vm->owner, *seq;
    uint64_t argv[5], r0;
    Py_ssize_t i, na;
    long pc;
    int rc;

    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "call(owner, image, code, pc, args)");
        return NULL;
    }
    if (vm_check_code(args[2]) < 0)
        return NULL;
    pc = PyLong_AsLong(args[3]);
    if (pc == -1 && PyErr_Occurred())
        return NULL;
    if (vm->depth + 1 >= VM_FRAMES || vm->nstacks < VM_FRAMES) {
        vm_raise(vm, "call stack too deep (more than %d frames)", VM_FRAMES);
        return NULL;
    }
    seq = PySequence_Fast(args[4], "args must be a sequence");
    if (seq == NULL)
        return NULL;
    na = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < na && i < 5; i++) {
        uint64_t v = PyLong_AsUnsignedLongLongMask(PySequence_Fast_GET_ITEM(seq, i));
        if (v == (uint64_t)-1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        argv[i] = v;
    }
    Py_DECREF(seq);
    vm->owner = args[0];
    rc = vm_callback(vm, args[1], args[2], pc, argv, (int)(na < 5 ? na : 5), &r0);
    vm->owner = prev;
    if (rc < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(r0);
}

static int
vm_init(VMObject *vm, PyObject *args, PyObject *kwds)
{
    PyObject *stacks, *bases, *regions, *helpers, *fault, *ktime, *loop = Py_None;
    PyObject *maps = Py_None;
    static char *kwlist[] = {"stacks", "bases", "regions", "helpers", "fault", "ktime", "loop",
                             "maps", NULL};
    Py_ssize_t i;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!O!OO|OO:VM", kwlist, &stacks, &bases,
                                     &PyDict_Type, &regions, &PyDict_Type, &helpers, &fault,
                                     &ktime, &loop, &maps))
        return -1;
    if (maps != Py_None && (!PyTuple_Check(maps) || PyTuple_GET_SIZE(maps) != 10)) {
        PyErr_SetString(PyExc_TypeError, "maps: (6 helpers, ArrayMap, HashMap, KernelMap, RingBufMap) "
                        "or None");
        return -1;
    }
    if (vm->nstacks || vm->regions) {
        PyErr_SetString(PyExc_TypeError, "VM is initialised once");
        return -1;
    }
    if (!PySequence_Check(stacks) || !PySequence_Check(bases) ||
        PySequence_Size(stacks) != VM_FRAMES || PySequence_Size(bases) != VM_FRAMES) {
        PyErr_Format(PyExc_ValueError, "stacks and bases: %d each", VM_FRAMES);
        return -1;
    }
    for (i = 0; i < VM_FRAMES; i++) {
        PyObject *st = PySequence_GetItem(stacks, i), *b = PySequence_GetItem(bases, i);
        int bad;
        if (st == NULL || b == NULL) {
            Py_XDECREF(st);
            Py_XDECREF(b);
            return -1;
        }
        bad = PyObject_GetBuffer(st, &vm->stack_views[i], PyBUF_WRITABLE) < 0;
        Py_DECREF(st);
        if (!bad) {
            vm->nstacks = (int)i + 1;
            vm->stack_base[i] = PyLong_AsUnsignedLongLong(b);
            bad = vm->stack_base[i] == (uint64_t)-1 && PyErr_Occurred();
            if (!bad && vm->stack_views[i].len < VM_STACK) {
                PyErr_Format(PyExc_ValueError, "a stack needs %d bytes", VM_STACK);
                bad = 1;
            }
            vm->stacks[i] = (uint8_t *)vm->stack_views[i].buf;
        }
        Py_DECREF(b);
        if (bad)
            return -1;
    }
    Py_INCREF(regions);
    vm->regions = regions;
    Py_INCREF(helpers);
    vm->helpers = helpers;
    Py_INCREF(fault);
    vm->fault = fault;
    Py_INCREF(ktime);
    vm->ktime = ktime;
    Py_INCREF(loop);
    vm->loop = loop;
    if (maps != Py_None) {
        for (i = 0; i < 6; i++)
            vm->map_fns[i] = Py_NewRef(PyTuple_GET_ITEM(maps, i));
        vm->array_cls = Py_NewRef(PyTuple_GET_ITEM(maps, 6));
        vm->hash_cls = Py_NewRef(PyTuple_GET_ITEM(maps, 7));
        vm->kernel_cls = Py_NewRef(PyTuple_GET_ITEM(maps, 8));
        vm->ring_cls = Py_NewRef(PyTuple_GET_ITEM(maps, 9));
    }
    return 0;
}

static void
vm_dealloc(VMObject *vm)
{
    vm_cache_clear(vm);
    vm_clear_frames(vm);
    for (int i = 0; i < vm->nstacks; i++)
        PyBuffer_Release(&vm->stack_views[i]);
    Py_CLEAR(vm->regions);
    Py_CLEAR(vm->helpers);
    Py_CLEAR(vm->fault);
    Py_CLEAR(vm->ktime);
    Py_CLEAR(vm->loop);
    for (int i = 0; i < 6; i++)
        Py_CLEAR(vm->map_fns[i]);
    Py_CLEAR(vm->array_cls);
    Py_CLEAR(vm->hash_cls);
    Py_CLEAR(vm->kernel_cls);
    Py_CLEAR(vm->ring_cls);
    Py_CLEAR(vm->image);
    Py_CLEAR(vm->err_image);
    Py_TYPE(vm)->tp_free((PyObject *)vm);
}

static PyObject *
vm_get_count(VMObject *vm, void *closure)
{
    return PyLong_FromUnsignedLongLong(vm->count);
}

static int
vm_set_count(VMObject *vm, PyObject *v, void *closure)
{
    unsigned long long c;
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "count cannot be deleted");
        return -1;
    }
    c = PyLong_AsUnsignedLongLong(v);
    if (c == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    vm->count = c;
    return 0;
}

static PyObject *
vm_get_depth(VMObject *vm, void *closure)
{
    return PyLong_FromLong(vm->depth);
}

static PyObject *
vm_get_err_pc(VMObject *vm, void *closure)
{
    return PyLong_FromLong(vm->err_pc);
}

static PyObject *
vm_get_err_image(VMObject *vm, void *closure)
{
    return Py_NewRef(vm->err_image ? vm->err_image : Py_None);
}

static PyObject *
vm_get_image(VMObject *vm, void *closure)
{
    return Py_NewRef(vm->image ? vm->image : Py_None);
}

static PyObject *
vm_get_tail_calls(VMObject *vm, void *closure)
{
    return PyLong_FromLong(vm->tail_calls);
}

static PyObject *
vm_get_regs(VMObject *vm, void *closure)
{
    PyObject *t = PyTuple_New(11);
    if (t == NULL)
        return NULL;
    for (int i = 0; i < 11; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(vm->regs[i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyGetSetDef vm_getset[] = {
    {"count", (getter)vm_get_count, (setter)vm_set_count,
     "instructions run so far in this run", NULL},
    {"depth", (getter)vm_get_depth, NULL, "frames below the current one", NULL},
    {"err_pc", (getter)vm_get_err_pc, NULL, "pc of the last error", NULL},
    {"err_image", (getter)vm_get_err_image, NULL, "image of the last error", NULL},
    {"image", (getter)vm_get_image, NULL, "the image running now (or last run)", NULL},
    {"tail_calls", (getter)vm_get_tail_calls, NULL, "tail calls taken in this run", NULL},
    {"regs", (getter)vm_get_regs, NULL, "r0-r10 (a tuple copy)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef vm_methods[] = {
    {"run", (PyCFunction)(void (*)(void))vm_run, METH_FASTCALL, vm_run_doc},
    {"call", (PyCFunction)(void (*)(void))vm_call, METH_FASTCALL, vm_call_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(vm_doc,
"_VM(stacks, bases, regions, helpers, fault, ktime, loop=None, maps=None)\n"
"\n"
"The C eBPF interpreter of one user-space object: `stacks` are its 8 frame\n"
"stacks (writable buffers of 512 bytes, registered as regions at `bases`),\n"
"`regions` the Memory.regions dict every access is checked against,\n"
"`helpers` the helper table (id -> (name, fn)), `fault` the exception class\n"
"of violations, `ktime` the ktime_get_ns helper object (run in C when a\n"
"program calls it) or None, `loop` the bpf_loop helper object (its loop run\n"
"in C, the callback's errors converted by owner._call_error(exc)) or None,\n"
"`maps` (map lookup, update, delete, ringbuf output, submit, discard,\n"
"ArrayMap, HashMap, KernelMap, RingBufMap): the helper objects run in C on\n"
"maps of exactly those classes (KernelMap: update and delete, queued by its\n"
"_queue; RingBufMap: the ring helpers) (_speedups_vm_maps.c) or None.");

static PyTypeObject VM_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bpfring._speedups._VM",
    .tp_basicsize = sizeof(VMObject),
    .tp_dealloc = (destructor)vm_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = vm_doc,
    .tp_methods = vm_methods,
    .tp_getset = vm_getset,
    .tp_init = (initproc)vm_init,
    .tp_new = PyType_GenericNew,
};

/* Called from PyInit__speedups: the type, its strings and the API number,
 * under private names (_VM, _VM_API): the module's public names are the ring
 * backend's contract (tests/test_backend_contract.py). */
static int
vm_module_init(PyObject *m)
{
    if ((str_buf = PyUnicode_InternFromString("buf")) == NULL ||
        (str_size = PyUnicode_InternFromString("size")) == NULL ||
        (str_writable = PyUnicode_InternFromString("writable")) == NULL ||
        (str_load = PyUnicode_InternFromString("load")) == NULL ||
        (str_kfuncs = PyUnicode_InternFromString("kfuncs")) == NULL ||
        (str_entries = PyUnicode_InternFromString("entries")) == NULL ||
        vm_maps_strings() < 0)
        return -1;
    if (PyType_Ready(&VM_Type) < 0 || PyModule_AddObjectRef(m, "_VM", (PyObject *)&VM_Type) < 0)
        return -1;
    /* Bumped whenever the VM's interface changes (bpfring.userspace._cinterp
     * ignores a build with another value). */
    return PyModule_AddIntConstant(m, "_VM_API", 3);
}
