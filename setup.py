"""Build hook for the optional C accelerator ``bpfring._speedups``.

Everything else about the package is declared in pyproject.toml.  The
extension is optional: without a C compiler (or Python headers) the build
reports the failure and installs the pure-Python package, which then refuses
to run on non-x86 CPUs (see ``bpfring.ringbuf``).
"""

from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).parent
# The parts _speedups.c #includes (one translation unit, one module): a
# change to any of them rebuilds the extension, and the sdist carries them.
PARTS = sorted(p.relative_to(HERE).as_posix()
               for p in (HERE / "src" / "bpfring").glob("_speedups_*.c"))

setup(
    ext_modules=[
        Extension(
            "bpfring._speedups",
            ["src/bpfring/_speedups.c"],
            depends=PARTS,
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
