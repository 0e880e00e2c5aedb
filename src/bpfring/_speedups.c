/* SPDX-License-Identifier: Apache-2.0
 *
 * bpfring._speedups: the C ring backend, with real acquire/release atomics.
 * bpfring._ringpure is its pure-Python twin: the same types, functions,
 * results and errors; bpfring._ringbackend picks one of the two at import,
 * and the sans-IO bpfring._ringcore is the reference for the protocol.
 *
 * KernelRing(data, cons_page, prod_page, size) and UserRing(...) bind the
 * memory of one ring (the memoryviews of the mmaps that bpfring.ringbuf
 * keeps, or bytearrays in tests), never raw addresses; the arguments are
 * checked once, when the object is made.  Every call acquires the buffers
 * again for its duration, so a ring that was closed (its views released)
 * makes the call raise ValueError instead of touching unmapped memory.
 *
 *   data       the data area, mapped twice in a row: exactly 2 * size bytes,
 *              8-byte aligned (a bytearray of 2 * size bytes stands in for
 *              the double mapping in tests: wrapped payloads must then be
 *              written to both halves by the test)
 *   cons_page  a buffer whose first 8 bytes are consumer_pos
 *   prod_page  a buffer whose first 8 bytes are producer_pos
 *   size       the data size: a power of two
 *
 * Record format (kernel/bpf/ringbuf.c, include/uapi/linux/bpf.h): an 8-byte
 * header {u32 len; u32 pg_off} at data + (pos & (size - 1)), where len holds
 * the payload length in bits 0-29, DISCARD in bit 30 and BUSY in bit 31; the
 * record occupies round_up(len + 8, 8) bytes.
 *
 * Memory ordering.  The kernel publishes and consumes with
 * smp_load_acquire/smp_store_release and xchg; the matching accesses here are
 * __atomic loads/stores with ACQUIRE/RELEASE and an atomic compare-exchange.
 * On x86-64 they compile to plain moves (plus a compiler barrier); on arm64
 * to ldar/stlr, which is what makes bpfring correct on weakly ordered CPUs.
 * Each access below says which kernel access it pairs with.
 *
 * Our own code, written from the protocol description; nothing is copied
 * from libbpf or the kernel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* The parts, in dependency order: each uses only what the ones before it
 * define. */
#include "_speedups_common.c" /* constants, atomics, ring_t, RingObject, errors */
#include "_speedups_view.c"   /* the callback's recycled memoryview */
#include "_speedups_decode.c" /* RecordDecoder: BTF structs straight from the ring */
#include "_speedups_kernel.c" /* kernel ring: consume, read, read_records */
#include "_speedups_iter.c"   /* backlog_iter */
#include "_speedups_access.c" /* single atomic accesses, position methods */
#include "_speedups_user.c"   /* user ring: write, write_many, commit */

#include "_speedups_batch.c"

#define RING_POSITION_METHODS                                                              \
    {"consumer_pos", (PyCFunction)ring_consumer_pos, METH_NOARGS, consumer_pos_doc},     \
    {"producer_pos", (PyCFunction)ring_producer_pos, METH_NOARGS, producer_pos_doc},     \
    {"publish", (PyCFunction)ring_publish, METH_O, publish_doc}

static PyMethodDef kernel_ring_methods[] = {
    {"consume", (PyCFunction)(void (*)(void))kr_consume, METH_FASTCALL, consume_doc},
    {"read", (PyCFunction)(void (*)(void))kr_read, METH_FASTCALL, read_doc},
    {"read_records", (PyCFunction)(void (*)(void))kr_read_records, METH_FASTCALL,
     read_records_doc},
    {"halt", (PyCFunction)kr_halt, METH_NOARGS, halt_doc},
    {"scan", (PyCFunction)(void (*)(void))kr_scan, METH_FASTCALL, scan_doc},
    {"read_into", (PyCFunction)(void (*)(void))kr_read_into, METH_FASTCALL, read_into_doc},
    RING_POSITION_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef user_ring_methods[] = {
    {"write", (PyCFunction)(void (*)(void))ur_write, METH_FASTCALL, write_doc},
    {"write_many", (PyCFunction)(void (*)(void))ur_write_many, METH_FASTCALL, write_many_doc},
    {"write_list", (PyCFunction)(void (*)(void))ur_write_list, METH_FASTCALL, write_list_doc},
    {"commit", (PyCFunction)(void (*)(void))ur_commit, METH_FASTCALL, commit_doc},
    {"write_array", (PyCFunction)(void (*)(void))ur_write_array, METH_FASTCALL,
     write_array_doc},
    RING_POSITION_METHODS,
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(kernel_ring_doc,
"KernelRing(data, cons_page, prod_page, size)\n"
"\n"
"The memory of one kernel ring (BPF_MAP_TYPE_RINGBUF) as its consumer sees\n"
"it: data and prod_page are read, cons_page is written.  The arguments are\n"
"checked here and again, cheaply, at every call.");

PyDoc_STRVAR(user_ring_doc,
"UserRing(data, cons_page, prod_page, size)\n"
"\n"
"The memory of one user ring (BPF_MAP_TYPE_USER_RINGBUF) as its producer\n"
"sees it: data and prod_page are written, cons_page is read.  The arguments\n"
"are checked here and again, cheaply, at every call.");

static PyTypeObject KernelRing_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bpfring._speedups.KernelRing",
    .tp_basicsize = sizeof(RingObject),
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = kernel_ring_doc,
    .tp_methods = kernel_ring_methods,
    .tp_getset = ring_getset,
    .tp_new = ring_new,
};

static PyTypeObject UserRing_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bpfring._speedups.UserRing",
    .tp_basicsize = sizeof(RingObject),
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = user_ring_doc,
    .tp_methods = user_ring_methods,
    .tp_getset = ring_getset,
    .tp_new = ring_new,
};

#include "_speedups_perf.c"
#include "_speedups_vm.c"

static PyMethodDef methods[] = {
    PERF_METHODS,
    {"load_acquire_u64", (PyCFunction)(void (*)(void))sp_load_acquire_u64, METH_FASTCALL,
     load_acquire_u64_doc},
    {"store_release_u64", (PyCFunction)(void (*)(void))sp_store_release_u64, METH_FASTCALL,
     store_release_u64_doc},
    {"acquire_fence", sp_acquire_fence, METH_NOARGS, acquire_fence_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "bpfring._speedups",
    "The C ring backend of bpfring (hot paths with acquire/release atomics).",
    -1,
    methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *m;

    if (str_release == NULL && (str_release = PyUnicode_InternFromString("release")) == NULL)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyType_Ready(&KernelRing_Type) < 0 || PyType_Ready(&UserRing_Type) < 0 ||
        PyType_Ready(&BacklogIter_Type) < 0 ||
        PyModule_AddObjectRef(m, "backlog_iter", (PyObject *)&BacklogIter_Type) < 0 ||
        PyModule_AddObjectRef(m, "KernelRing", (PyObject *)&KernelRing_Type) < 0 ||
        PyModule_AddObjectRef(m, "UserRing", (PyObject *)&UserRing_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* Bumped whenever a signature or a semantic changes: bpfring._ringbackend
     * ignores a build with another value (a stale editable-install .so). */
    if (decode_add_types(m) < 0 || PyModule_AddIntConstant(m, "API", 9) < 0 ||
        PyModule_AddIntConstant(m, "HDR_SIZE", HDR_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "DYNPTR_MAX", DYNPTR_MAX) < 0 ||
        vm_module_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
