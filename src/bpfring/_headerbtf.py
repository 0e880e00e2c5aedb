"""BTF for the types a C header declares, for objects built elsewhere.

A ``.bpf.o`` from another build usually lacks the types of its header
(``struct event`` used only through a pointer).  :func:`header_btf` compiles
a translation unit that includes the header, keeping its types (the
``keep_types`` build option, :mod:`bpfring._keeptypes`), through the build
cache.  Re-exported as :func:`bpfring.build.header_btf` and public as
:func:`bpfring.from_header`.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .btf import BTF

__all__ = ["header_btf", "header_btf_info"]


def header_btf(
    header: str | os.PathLike[str],
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    defines: Mapping[str, object] | None = None,
    cflags: Sequence[str] = (),
    vmlinux: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> BTF:
    """BTF for the types declared in a C header, for objects built elsewhere.

    A ``.bpf.o`` compiled by another build usually lacks the types of its
    header (``struct event`` used only through a pointer); given that
    header, this compiles a translation unit that includes ``vmlinux.h``
    (unless ``vmlinux=False``, for headers that include kernel headers
    themselves) and then ``header``, keeping every struct, union, enum and
    typedef declared in the header and the headers it includes from its
    own directories (as the ``keep_types`` build option does), and returns
    that BTF (:class:`bpfring.btf.BTF`).  The result is cached like any
    build.  Raises :class:`BuildError` if the header does not compile.
    Public as :func:`bpfring.from_header`.
    """
    return header_btf_info(header, include_dirs=include_dirs, defines=defines,
                           cflags=cflags, vmlinux=vmlinux, cache_dir=cache_dir)[0]


def header_btf_info(
    header: str | os.PathLike[str],
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    defines: Mapping[str, object] | None = None,
    cflags: Sequence[str] = (),
    vmlinux: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[BTF, tuple[str, ...]]:
    """:func:`header_btf`, and the spellings of the types the header itself
    declares (``"struct event"``, ``"pair_t"``; not the kernel types they
    refer to)."""
    from .btf import load as load_btf
    from .build import build_source_info  # the module that re-exports us

    path = Path(os.path.abspath(header))
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "header not found", str(header))
    if any(c in str(path) for c in '"\n\\'):
        raise ValueError(f"cannot #include a header whose path contains quotes, "
                         f"backslashes or newlines: {path!r}")
    lines = ['#include "vmlinux.h"'] if vmlinux else []
    lines.append(f'#include "{path}"')
    name = re.sub(r"[^A-Za-z0-9_-]", "_", path.name.split(".")[0]) or "header"
    result = build_source_info("\n".join(lines) + "\n", f"{name}.header",
                               include_dirs=[path.parent, *include_dirs], defines=defines,
                               cflags=cflags, cache_dir=cache_dir, keep_types="headers")
    return load_btf(result.path), result.kept_types
