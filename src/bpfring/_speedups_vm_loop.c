/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The loop of the C eBPF interpreter and its slow paths (helper calls, tail
 * calls, special loads, atomics), included by _speedups_vm.c, which has the
 * VM object, the region cache and the entry points.  See there for the
 * design; bpfring.userspace._interp is the reference for every semantic.
 */

/* The slow paths of the loop, out of line so the handlers stay small. */

#define VM_MAX_LOOPS (1ULL << 23) /* BPF_MAX_LOOPS */

/* bpf_loop(nr, cb, ctx, flags) run here, as the reference's helper runs it
 * (cb(i, ctx) for i < nr until one returns nonzero; the number of calls),
 * when the arguments are the usual ones: flags 0, nr within BPF_MAX_LOOPS,
 * cb a function of the running image and a frame free for it.  Anything else
 * is left to the Python helper (*done stays 0), which raises or returns what
 * the reference does.  A callback's error is converted at once by
 * owner._call_error, as CInterpreter.call does on the Python path, so that
 * it names the callback's pc.  Returns 0 or -1 with an exception set. */
static int
vm_loop_c(VMObject *vm, PyObject *code, int *done)
{
    uint64_t *r = vm->regs;
    uint64_t nr = r[1], cb = r[2], argv[2], i, res;
    Py_ssize_t ninsn = PyBytes_GET_SIZE(code) / (Py_ssize_t)sizeof(struct vm_insn) - 1;
    PyObject *entries, *key, *image;
    int in;

    *done = 0;
    if (r[4] != 0 || nr > VM_MAX_LOOPS || vm->depth + 1 >= VM_FRAMES || vm->image == NULL)
        return 0;
    if (nr == 0) {
        r[0] = 0;
        *done = 1;
        return 0;
    }
    if (cb < VM_FUNC_TAG || cb - VM_FUNC_TAG >= (uint64_t)ninsn)
        return 0;
    entries = PyObject_GetAttr(vm->image, str_entries);
    if (entries == NULL)
        return -1;
    key = PyLong_FromUnsignedLongLong(cb - VM_FUNC_TAG);
    if (key == NULL) {
        Py_DECREF(entries);
        return -1;
    }
    in = PySequence_Contains(entries, key);
    Py_DECREF(key);
    Py_DECREF(entries);
    if (in <= 0)
        return in;
    image = Py_NewRef(vm->image);
    Py_INCREF(code);
    argv[1] = r[3];
    for (i = 0; i < nr; i++) {
        argv[0] = i;
        if (vm_callback(vm, image, code, (long)(cb - VM_FUNC_TAG), argv, 2, &res) < 0) {
            PyObject *t, *v, *tb, *err;
            PyErr_Fetch(&t, &v, &tb);
            PyErr_NormalizeException(&t, &v, &tb);
            if (tb != NULL && v != NULL)
                PyException_SetTraceback(v, tb);
            err = PyObject_CallMethod(vm->owner, "_call_error", "O", v ? v : Py_None);
            Py_XDECREF(t);
            Py_XDECREF(tb);
            Py_XDECREF(v);
            if (err != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(err), err);
                Py_DECREF(err);
            }
            Py_DECREF(image);
            Py_DECREF(code);
            return -1;
        }
        if (res) {
            i++;
            break;
        }
    }
    Py_DECREF(image);
    Py_DECREF(code);
    r[0] = i;
    *done = 1;
    return 0;
}

/* Call a helper (or a kfunc, `kf`), or run bpf_tail_call.  Returns 0, 1 when
 * a tail call switched the image (the caller reloads insns), -1 on error. */
static int
vm_do_call(VMObject *vm, const struct vm_insn *ins, PyObject **cur_code)
{
    uint64_t *r = vm->regs;
    uint64_t v;
    int rc;

    if (ins->src == 2) { /* kfunc */
        PyObject *kf = PyObject_GetAttr(vm->image, str_kfuncs), *fn;
        if (kf == NULL)
            return -1;
        fn = PySequence_GetItem(kf, (Py_ssize_t)(int32_t)ins->imm);
        Py_DECREF(kf);
        if (fn == NULL)
            return -1;
        rc = vm_call_py(vm, fn, &v);
        Py_DECREF(fn);
        if (rc < 0)
            return -1;
        r[0] = v;
        return 0;
    }
    if (ins->src != 0) {
        vm_raise(vm, "instruction 0x%02x cannot run", ins->code);
        return -1;
    }
    if ((int32_t)ins->imm == 12) { /* bpf_tail_call */
        PyObject *t, *timg, *tcode;
        vm_cache_clear(vm);
        t = PyObject_CallMethod(vm->owner, "_tail", "KK", (unsigned long long)r[2],
                                (unsigned long long)(r[3] & 0xFFFFFFFFULL));
        if (t == NULL)
            return -1;
        if (t == Py_None || vm->tail_calls >= VM_TAIL_MAX) {
            Py_DECREF(t);
            return 0; /* a failed tail call falls through */
        }
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2 ||
            vm_check_code(PyTuple_GET_ITEM(t, 1)) < 0) {
            Py_DECREF(t);
            PyErr_SetString(PyExc_TypeError, "_tail must give (image, code)");
            return -1;
        }
        timg = PyTuple_GET_ITEM(t, 0);
        tcode = PyTuple_GET_ITEM(t, 1);
        vm->tail_calls++;
        vm_set_image(vm, timg);
        Py_INCREF(tcode);
        Py_SETREF(*cur_code, tcode);
        Py_DECREF(t);
        vm_zero_stack(vm, vm->depth);
        return 1;
    }
    {
        PyObject *key, *entry, *fn;
        key = PyLong_FromLong((long)(int32_t)ins->imm);
        if (key == NULL)
            return -1;
        entry = PyDict_GetItemWithError(vm->helpers, key);
        if (entry == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, key);
            Py_DECREF(key);
            return -1;
        }
        Py_DECREF(key);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
            PyErr_SetString(PyExc_TypeError, "a helper entry is (name, fn)");
            return -1;
        }
        fn = PyTuple_GET_ITEM(entry, 1);
        if (fn == vm->ktime) {
            /* The hottest helper without Python state, run here: the same
             * clock as time.clock_gettime_ns(CLOCK_MONOTONIC). */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            r[0] = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
            return 0;
        }
        if (fn == vm->loop) {
            int done;
            if (vm_loop_c(vm, *cur_code, &done) < 0)
                return -1;
            if (done)
                return 0;
        }
        for (int w = 0; w < 6; w++) {
            int done;
            if (fn != vm->map_fns[w] || fn == NULL)
                continue;
            if (vm_map_c(vm, w + 1, &done) < 0)
                return -1;
            if (done)
                return 0;
            break;
        }
        Py_INCREF(fn);
        rc = vm_call_py(vm, fn, &v);
        Py_DECREF(fn);
        if (rc < 0)
            return -1;
        r[0] = v;
        return 0;
    }
}

/* A load from a region with a special-load callable (a ctx whose fields the
 * kernel rewrites).  Returns 0 with *out set, -1 on error. */
static int
vm_special_load(VMObject *vm, vm_region *c, uint64_t a, unsigned size, int sx,
                uint64_t *out)
{
    PyObject *res = PyObject_CallFunction(c->load, "Ii", (unsigned)(uint32_t)a, (int)size);
    uint8_t *p;

    vm_cache_clear(vm);
    if (res == NULL)
        return -1;
    if (res != Py_None) {
        uint64_t v;
        if (!PyLong_Check(res)) {
            Py_DECREF(res);
            PyErr_SetString(PyExc_TypeError, "a special load must give an int");
            return -1;
        }
        v = PyLong_AsUnsignedLongLongMask(res);
        Py_DECREF(res);
        if (v == (uint64_t)-1 && PyErr_Occurred())
            return -1;
        *out = v;
        return 0;
    }
    Py_DECREF(res);
    p = vm_addr(vm, a, size, 0, NULL);
    if (p == NULL)
        return -1;
    *out = sx ? vm_sext(vm_load(p, size), size * 8) : vm_load(p, size);
    return 0;
}

/* BPF_ATOMIC at host address p (checked, aligned).  Returns 0, or -1 for an
 * unknown operation. */
static int
vm_atomic(uint64_t *r, const struct vm_insn *ins, uint8_t *p, unsigned size)
{
    uint32_t imm = (uint32_t)ins->imm;
    unsigned d = ins->dst, s = ins->src;
    uint64_t old, v;

    /* Region memory may be shared with other processes and threads (memfd
     * maps): the host's atomics. */
    switch (imm) {
    case 0x100: /* load-acquire */
        switch (size) {
        case 1: v = __atomic_load_n(p, __ATOMIC_ACQUIRE); break;
        case 2: v = __atomic_load_n((uint16_t *)p, __ATOMIC_ACQUIRE); break;
        case 4: v = __atomic_load_n((uint32_t *)p, __ATOMIC_ACQUIRE); break;
        default: v = __atomic_load_n((uint64_t *)p, __ATOMIC_ACQUIRE); break;
        }
        r[d] = v;
        return 0;
    case 0x110: /* store-release */
        v = r[s];
        switch (size) {
        case 1: __atomic_store_n(p, (uint8_t)v, __ATOMIC_RELEASE); break;
        case 2: __atomic_store_n((uint16_t *)p, (uint16_t)v, __ATOMIC_RELEASE); break;
        case 4: __atomic_store_n((uint32_t *)p, (uint32_t)v, __ATOMIC_RELEASE); break;
        default: __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE); break;
        }
        return 0;
    }
    if (size != 4 && size != 8)
        return -1;
    switch (imm) {
    case 0xE1: /* xchg */
        if (size == 4)
            old = __atomic_exchange_n((uint32_t *)p, (uint32_t)r[s], __ATOMIC_SEQ_CST);
        else
            old = __atomic_exchange_n((uint64_t *)p, r[s], __ATOMIC_SEQ_CST);
        r[s] = old;
        return 0;
    case 0xF1: /* cmpxchg: r0 = old; store r_src when old == r0 */
        if (size == 4) {
            uint32_t exp = (uint32_t)r[0];
            __atomic_compare_exchange_n((uint32_t *)p, &exp, (uint32_t)r[s], 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
            r[0] = exp;
        } else {
            uint64_t exp = r[0];
            __atomic_compare_exchange_n((uint64_t *)p, &exp, r[s], 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST);
            r[0] = exp;
        }
        return 0;
    }
    if (size == 4) {
        uint32_t *q = (uint32_t *)p, x = (uint32_t)r[s];
        switch (imm & ~1u) {
        case 0x00: old = __atomic_fetch_add(q, x, __ATOMIC_SEQ_CST); break;
        case 0x40: old = __atomic_fetch_or(q, x, __ATOMIC_SEQ_CST); break;
        case 0x50: old = __atomic_fetch_and(q, x, __ATOMIC_SEQ_CST); break;
        case 0xA0: old = __atomic_fetch_xor(q, x, __ATOMIC_SEQ_CST); break;
        default: return -1;
        }
    } else {
        uint64_t *q = (uint64_t *)p, x = r[s];
        switch (imm & ~1u) {
        case 0x00: old = __atomic_fetch_add(q, x, __ATOMIC_SEQ_CST); break;
        case 0x40: old = __atomic_fetch_or(q, x, __ATOMIC_SEQ_CST); break;
        case 0x50: old = __atomic_fetch_and(q, x, __ATOMIC_SEQ_CST); break;
        case 0xA0: old = __atomic_fetch_xor(q, x, __ATOMIC_SEQ_CST); break;
        default: return -1;
        }
    }
    if (imm & 1)
        r[s] = old;
    return 0;
}

/* The slots of `code` (checked by vm_check_code) and in *end its sentinel. */
static inline const struct vm_insn *
vm_span(PyObject *code, const struct vm_insn **end)
{
    const struct vm_insn *insns = (const struct vm_insn *)PyBytes_AS_STRING(code);

    *end = insns + PyBytes_GET_SIZE(code) / (Py_ssize_t)sizeof(struct vm_insn) - 1;
    return insns;
}

static inline uint64_t
vm_movsx(uint64_t b, int off, uint64_t mask)
{
    return off >= 64 ? b & mask : vm_sext(b, (unsigned)off) & mask;
}

/* The loop: run `code` of `image` from `pc` until an exit at frame depth
 * `stop`.  Returns 0 with r0 in regs[0], or -1 with an exception set and
 * err_pc/err_image recorded.
 *
 * Direct-threaded dispatch (GCC/clang computed goto) on the opcode byte,
 * one handler per opcode; every dispatch counts the instruction against the
 * budget and checks the program counter.  Register numbers are masked to 4
 * bits (regs has 16 slots; the loader refuses numbers above 10 anyway). */
#if defined(__GNUC__) && !defined(__clang__)
/* Keep GCC from merging the handlers' dispatches back into one. */
__attribute__((optimize("no-crossjumping", "no-gcse")))
#endif
static int
vm_exec(VMObject *vm, PyObject *image, PyObject *code, long pc, int stop)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
    static void *const labels[256] = {
        [0 ... 255] = &&op_bad,
        [VM_FILLER_CODE] = &&op_filler, [VM_END_CODE] = &&op_end,
/* One operation's two encodings (BPF_K: source the immediate, BPF_X: a
 * register) at `base | op` and `base | op | 0x08`: the ALU and JMP tables
 * below are lists of these. */
#define KX(base, op, name, what) \
        [base | op] = &&name##_##what##_k, [base | op | 0x08] = &&name##_##what##_x
#define ALU_LABELS(base, name)                                                            \
        KX(base, 0x00, name, add), KX(base, 0x10, name, sub), KX(base, 0x20, name, mul),  \
        KX(base, 0x30, name, div), KX(base, 0x40, name, or), KX(base, 0x50, name, and),   \
        KX(base, 0x60, name, lsh), KX(base, 0x70, name, rsh), [base | 0x80] = &&name##_neg, \
        KX(base, 0x90, name, mod), KX(base, 0xA0, name, xor), KX(base, 0xB0, name, mov),  \
        KX(base, 0xC0, name, arsh)
        ALU_LABELS(0x07, a64),
        ALU_LABELS(0x04, a32),
        [0xD7] = &&op_bswap, [0xD4] = &&op_le, [0xDC] = &&op_be,
#define JMP_LABELS(base, name)                                                            \
        KX(base, 0x10, name, jeq), KX(base, 0x20, name, jgt), KX(base, 0x30, name, jge),  \
        KX(base, 0x40, name, jset), KX(base, 0x50, name, jne), KX(base, 0x60, name, jsgt), \
        KX(base, 0x70, name, jsge), KX(base, 0xA0, name, jlt), KX(base, 0xB0, name, jle), \
        KX(base, 0xC0, name, jslt), KX(base, 0xD0, name, jsle)
        JMP_LABELS(0x05, j64),
        JMP_LABELS(0x06, j32),
        [0x05] = &&op_ja, [0x06] = &&op_gotol, [0x85] = &&op_call, [0x95] = &&op_exit,
        [0x18] = &&op_lddw,
        [0x61] = &&op_ldxw, [0x69] = &&op_ldxh, [0x71] = &&op_ldxb, [0x79] = &&op_ldxdw,
        [0x81] = &&op_ldxsw, [0x89] = &&op_ldxsh, [0x91] = &&op_ldxsb,
        [0x62] = &&op_stw, [0x6A] = &&op_sth, [0x72] = &&op_stb, [0x7A] = &&op_stdw,
        [0x63] = &&op_stxw, [0x6B] = &&op_stxh, [0x73] = &&op_stxb, [0x7B] = &&op_stxdw,
        [0xC3] = &&op_atomic, [0xCB] = &&op_atomic, [0xD3] = &&op_atomic,
        [0xDB] = &&op_atomic,
    };
#pragma GCC diagnostic pop
    static void *const step_labels[256] = {[0 ... 255] = &&op_step};
    void *const *tbl = labels;
    uint64_t *r = vm->regs;
    const struct vm_insn *insns, *end, *ins = NULL;
    uint64_t count = vm->count, limit = vm->limit;
    PyObject *cur_code = code;
    uint8_t *p;
    uint64_t a;
    /* The current frame's stack: its tagged base address and its memory. */
    uint64_t sbase = vm->stack_base[vm->depth];
    uint8_t *sstack = vm->stacks[vm->depth];
#define STACK_SYNC() do { sbase = vm->stack_base[vm->depth]; sstack = vm->stacks[vm->depth]; } while (0)

    vm_set_image(vm, image);
    Py_INCREF(cur_code);
    insns = vm_span(cur_code, &end);

#define D r[ins->dst]
#define S r[ins->src]
#define K ((uint64_t)(int64_t)ins->imm)
#define K32 ((uint64_t)(uint32_t)ins->imm)
/* Each handler ends in its own copy of the dispatch (threaded code: one
 * indirect branch per handler predicts far better than a shared one).
 *
 * The budget is charged per straight run, not per instruction: entering a
 * run (after a jump, a call, a return, at the start) adds its length
 * (`run`: up to and including the jump, call, exit or ld_imm64 that ends
 * it), so the count is exact wherever it can be observed (helper calls,
 * exits).  A run that would cross the limit switches to stepping (`tbl` =
 * step_labels: every instruction counted and checked), so the budget fault
 * happens at the very instruction the reference stops at.  Falling through
 * needs no range check: the code ends in a sentinel slot (VM_END_CODE)
 * whose handler is the "left the program" error. */
#define DISPATCH()                                                                        \
    do {                                                                                  \
        if (__builtin_expect((uintptr_t)ins - (uintptr_t)insns >=                         \
                             (uintptr_t)end - (uintptr_t)insns, 0))                       \
            goto pc_out;                                                                  \
        if (tbl == labels) {                                                              \
            if (__builtin_expect(limit - count < ins->run || count > limit, 0))           \
                tbl = step_labels;                                                        \
            else                                                                          \
                count += ins->run;                                                        \
        }                                                                                 \
        goto *tbl[ins->code];                                                       \
    } while (0)
#define NEXT do { ins++; goto *tbl[ins->code]; } while (0)
#define JUMP(cond) do { ins += (cond) ? ins->off + 1 : 1; DISPATCH(); } while (0)

    ins = insns + pc;
    DISPATCH();

#define ALU64_OP(name, expr_k, expr_x)                                                    \
    a64_##name##_k: D = (expr_k); NEXT;                                                   \
    a64_##name##_x: D = (expr_x); NEXT;
#define ALU32_OP(name, expr_k, expr_x)                                                    \
    a32_##name##_k: D = (uint32_t)(expr_k); NEXT;                                         \
    a32_##name##_x: D = (uint32_t)(expr_x); NEXT;

    ALU64_OP(add, D + K, D + S)
    ALU64_OP(sub, D - K, D - S)
    ALU64_OP(mul, D * K, D * S)
    ALU64_OP(or, D | K, D | S)
    ALU64_OP(and, D & K, D & S)
    ALU64_OP(xor, D ^ K, D ^ S)
    ALU64_OP(lsh, D << (K & 63), D << (S & 63))
    ALU64_OP(rsh, D >> (K & 63), D >> (S & 63))
    ALU64_OP(arsh, (uint64_t)((int64_t)D >> (K & 63)), (uint64_t)((int64_t)D >> (S & 63)))
a64_div_k:
    D = ins->off == 1 ? vm_sdiv(D, K, 64, 0) : (K ? D / K : 0);
    NEXT;
a64_div_x:
    D = ins->off == 1 ? vm_sdiv(D, S, 64, 0) : (S ? D / S : 0);
    NEXT;
a64_mod_k:
    D = ins->off == 1 ? vm_sdiv(D, K, 64, 1) : (K ? D % K : D);
    NEXT;
a64_mod_x:
    D = ins->off == 1 ? vm_sdiv(D, S, 64, 1) : (S ? D % S : D);
    NEXT;
a64_neg:
    D = 0 - D;
    NEXT;
a64_mov_k:
    D = K;
    NEXT;
a64_mov_x:
    if (ins->off == 0)
        D = S;
    else if (ins->off > 0)
        D = vm_movsx(S, ins->off, ~0ULL);
    else
        goto bad;
    NEXT;

    ALU32_OP(add, D + K, D + S)
    ALU32_OP(sub, D - K, D - S)
    ALU32_OP(mul, (uint32_t)D * (uint32_t)K, (uint32_t)D * (uint32_t)S)
    ALU32_OP(or, D | K, D | S)
    ALU32_OP(and, D & K, D & S)
    ALU32_OP(xor, D ^ K, D ^ S)
    ALU32_OP(lsh, (uint32_t)D << (K & 31), (uint32_t)D << (S & 31))
    ALU32_OP(rsh, (uint32_t)D >> (K & 31), (uint32_t)D >> (S & 31))
    ALU32_OP(arsh, (int32_t)(uint32_t)D >> (K & 31), (int32_t)(uint32_t)D >> (S & 31))
a32_div_k:
    D = ins->off == 1 ? vm_sdiv((uint32_t)D, K32, 32, 0)
                      : (K32 ? (uint32_t)D / (uint32_t)K32 : 0);
    NEXT;
a32_div_x:
    D = ins->off == 1 ? vm_sdiv((uint32_t)D, (uint32_t)S, 32, 0)
                      : ((uint32_t)S ? (uint32_t)D / (uint32_t)S : 0);
    NEXT;
a32_mod_k:
    D = ins->off == 1 ? vm_sdiv((uint32_t)D, K32, 32, 1)
                      : (K32 ? (uint32_t)D % (uint32_t)K32 : (uint32_t)D);
    NEXT;
a32_mod_x:
    D = ins->off == 1 ? vm_sdiv((uint32_t)D, (uint32_t)S, 32, 1)
                      : ((uint32_t)S ? (uint32_t)D % (uint32_t)S : (uint32_t)D);
    NEXT;
a32_neg:
    D = (uint32_t)(0 - D);
    NEXT;
a32_mov_k:
    D = K32;
    NEXT;
a32_mov_x:
    if (ins->off == 0)
        D = (uint32_t)S;
    else if (ins->off > 0)
        D = vm_movsx((uint32_t)S, ins->off, 0xFFFFFFFFULL);
    else
        goto bad;
    NEXT;

op_bswap:
    switch (K) {
    case 16: D = __builtin_bswap16((uint16_t)D); NEXT;
    case 32: D = __builtin_bswap32((uint32_t)D); NEXT;
    case 64: D = __builtin_bswap64(D); NEXT;
    default: goto bad;
    }
op_be:
    goto op_bswap;
op_le:
    switch (K) {
    case 16: D = (uint16_t)D; NEXT;
    case 32: D = (uint32_t)D; NEXT;
    case 64: NEXT;
    default: goto bad;
    }

#define JMP_OPS(name, mask, flip)                                                         \
    name##_jeq_k: JUMP((D & mask) == (K & mask));                                         \
    name##_jeq_x: JUMP((D & mask) == (S & mask));                                         \
    name##_jne_k: JUMP((D & mask) != (K & mask));                                         \
    name##_jne_x: JUMP((D & mask) != (S & mask));                                         \
    name##_jgt_k: JUMP((D & mask) > (K & mask));                                          \
    name##_jgt_x: JUMP((D & mask) > (S & mask));                                          \
    name##_jge_k: JUMP((D & mask) >= (K & mask));                                         \
    name##_jge_x: JUMP((D & mask) >= (S & mask));                                         \
    name##_jlt_k: JUMP((D & mask) < (K & mask));                                          \
    name##_jlt_x: JUMP((D & mask) < (S & mask));                                          \
    name##_jle_k: JUMP((D & mask) <= (K & mask));                                         \
    name##_jle_x: JUMP((D & mask) <= (S & mask));                                         \
    name##_jset_k: JUMP((D & K & mask) != 0);                                             \
    name##_jset_x: JUMP((D & S & mask) != 0);                                             \
    name##_jsgt_k: JUMP(((D & mask) ^ flip) > ((K & mask) ^ flip));                       \
    name##_jsgt_x: JUMP(((D & mask) ^ flip) > ((S & mask) ^ flip));                       \
    name##_jsge_k: JUMP(((D & mask) ^ flip) >= ((K & mask) ^ flip));                      \
    name##_jsge_x: JUMP(((D & mask) ^ flip) >= ((S & mask) ^ flip));                      \
    name##_jslt_k: JUMP(((D & mask) ^ flip) < ((K & mask) ^ flip));                       \
    name##_jslt_x: JUMP(((D & mask) ^ flip) < ((S & mask) ^ flip));                       \
    name##_jsle_k: JUMP(((D & mask) ^ flip) <= ((K & mask) ^ flip));                      \
    name##_jsle_x: JUMP(((D & mask) ^ flip) <= ((S & mask) ^ flip));

    JMP_OPS(j64, ~0ULL, 0x8000000000000000ULL)
    JMP_OPS(j32, 0xFFFFFFFFULL, 0x80000000ULL)

op_ja:
    ins += ins->off + 1;
    DISPATCH();
op_gotol:
    ins += (int32_t)K + 1;
    DISPATCH();
op_lddw:
    D = (uint64_t)(uint32_t)ins->imm | (uint64_t)(uint32_t)ins[1].imm << 32;
    ins += 2;
    DISPATCH();

/* The current frame's stack first (one compare; the frame pointer is
 * read-only, so nearly every stack access lands here), then the region
 * cache. */
#define LDX(name, size, sx)                                                               \
    op_##name: {                                                                          \
        vm_region *c = NULL;                                                              \
        uint64_t so;                                                                      \
        a = S + (uint64_t)(int64_t)ins->off;                                              \
        so = a - sbase;                                                                   \
        if (__builtin_expect(so <= VM_STACK - size, 1)) {                                 \
            p = sstack + so;                                                              \
        } else {                                                                          \
            p = vm_addr(vm, a, size, 0, &c);                                              \
            if (p == NULL)                                                                \
                goto fail;                                                                \
            if (__builtin_expect(c->load != NULL, 0)) {                                   \
                uint64_t v;                                                               \
                if (vm_special_load(vm, c, a, size, sx, &v) < 0)                          \
                    goto fail;                                                            \
                D = v;                                                                    \
                NEXT;                                                                     \
            }                                                                             \
        }                                                                                 \
        D = sx ? vm_sext(vm_load(p, size), size * 8) : vm_load(p, size);                  \
        NEXT;                                                                             \
    }
    LDX(ldxw, 4, 0)
    LDX(ldxh, 2, 0)
    LDX(ldxb, 1, 0)
    LDX(ldxdw, 8, 0)
    LDX(ldxsw, 4, 1)
    LDX(ldxsh, 2, 1)
    LDX(ldxsb, 1, 1)

#define STORE(name, size, value)                                                          \
    op_##name: {                                                                          \
        uint64_t so;                                                                      \
        a = D + (uint64_t)(int64_t)ins->off;                                              \
        so = a - sbase;                                                                   \
        if (__builtin_expect(so <= VM_STACK - size, 1)) {                                 \
            p = sstack + so;                                                              \
        } else {                                                                          \
            p = vm_addr(vm, a, size, 1, NULL);                                            \
            if (p == NULL)                                                                \
                goto fail;                                                                \
        }                                                                                 \
        vm_store(p, size, value);                                                         \
        NEXT;                                                                             \
    }
    STORE(stw, 4, K)
    STORE(sth, 2, K)
    STORE(stb, 1, K)
    STORE(stdw, 8, K)
    STORE(stxw, 4, S)
    STORE(stxh, 2, S)
    STORE(stxb, 1, S)
    STORE(stxdw, 8, S)

op_atomic: {
    static const unsigned sizes[4] = {4, 2, 1, 8};
    unsigned size = sizes[(ins->code >> 3) & 3];
    uint32_t imm = (uint32_t)ins->imm;
    int write = imm != 0x100;
    if (size != 4 && size != 8 && imm != 0x100 && imm != 0x110)
        goto bad;
    a = (imm == 0x100 ? S : D) + (uint64_t)(int64_t)ins->off;
    p = vm_addr(vm, a, size, write, NULL);
    if (p == NULL)
        goto fail;
    if ((uint32_t)a % size) {
        vm_mem_fault(vm, a, size, write, 1);
        goto fail;
    }
    if (vm_atomic(r, ins, p, size) < 0)
        goto bad;
    NEXT;
}

op_call:
    if (ins->src == 1) { /* bpf-to-bpf: a new frame */
        vm_frame *f;
        int depth = vm->depth + 1;
        if (depth >= VM_FRAMES) {
            vm_raise(vm, "call stack too deep (more than %d frames)", VM_FRAMES);
            goto fail;
        }
        f = &vm->frames[vm->depth];
        Py_INCREF(vm->image);
        f->image = vm->image;
        Py_INCREF(cur_code);
        f->code = cur_code;
        f->ret = (long)(ins - insns) + 1;
        memcpy(f->saved, &r[6], sizeof f->saved);
        vm->depth = depth;
        vm_zero_stack(vm, depth);
        STACK_SYNC();
        ins += (int32_t)K + 1;
        DISPATCH();
    }
    {
        int rc;
        vm->count = count;
        rc = vm_do_call(vm, ins, &cur_code);
        if (rc < 0)
            goto fail;
        count = vm->count;
        if (rc == 1) { /* tail call: the new image from its start */
            insns = vm_span(cur_code, &end);
            ins = insns;
            DISPATCH();
        }
        ins++; /* a new straight run starts after a call */
        DISPATCH();
    }

op_exit: {
    vm_frame *f;
    if (vm->depth == stop) {
        vm->count = count;
        Py_DECREF(cur_code);
        return 0;
    }
    f = &vm->frames[--vm->depth];
    STACK_SYNC();
    memcpy(&r[6], f->saved, sizeof f->saved);
    vm_set_image(vm, f->image);
    Py_SETREF(cur_code, f->code);
    f->code = NULL;
    Py_CLEAR(f->image);
    insns = vm_span(cur_code, &end);
    ins = insns + f->ret;
    DISPATCH();
}

op_filler:
    vm_raise(vm, "jumped into the middle of an ld_imm64");
    goto fail;
op_end:
    goto pc_out;
op_step:
    if (++count > limit)
        goto budget;
    goto *labels[ins->code];
budget:
    vm_raise(vm, "instruction budget of %llu exhausted (runaway loop?)",
             (unsigned long long)limit);
    goto fail;
pc_out:
    PyErr_SetString(PyExc_IndexError, "list index out of range");
    goto fail;
op_bad:
bad:
    vm_raise(vm, "instruction 0x%02x cannot run", ins->code & 0xFF);
fail:
    /* As the reference, count keeps its value of the last helper call. */
    vm->err_pc = (long)(ins - insns);
    Py_INCREF(vm->image);
    Py_XSETREF(vm->err_image, vm->image);
    Py_DECREF(cur_code);
    return -1;
#undef D
#undef S
#undef K
#undef K32
#undef NEXT
#undef JUMP
#undef DISPATCH
#undef STACK_SYNC
#undef KX
#undef ALU_LABELS
#undef JMP_LABELS
}
