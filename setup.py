"""Build hook for the optional C accelerator ``bpfring._speedups``.

Everything else about the package is declared in pyproject.toml.  The
extension is optional: without a C compiler (or Python headers) the build
reports the failure and installs the pure-Python package, which then refuses
to run on non-x86 CPUs (see ``bpfring.ringbuf``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bpfring._speedups",
            ["src/bpfring/_speedups.c"],
            depends=["src/bpfring/_speedups_perf.c", "src/bpfring/_speedups_batch.c",
                     "src/bpfring/_speedups_decode.c", "src/bpfring/_speedups_vm.c",
                     "src/bpfring/_speedups_vm_loop.c", "src/bpfring/_speedups_vm_maps.c",
                     "src/bpfring/_speedups_vm_rings.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
