"""``bpfring.load``: the one-call form, in the kernel or in user space.

It lives in the faces layer because it reaches both the objects layer
(:func:`bpfring.object.load`, the kernel) and a feature
(:func:`bpfring.userspace.load`, the in-process runtime), which must not
import each other.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from .object import BPFObject
    from .userspace import UserObject

__all__ = ["load"]

Source = str | os.PathLike[str] | bytes | bytearray | memoryview


@overload
def load(src: Source, *, runtime: Literal["kernel"] = ..., **options: Any) -> BPFObject: ...
@overload
def load(src: Source, *, runtime: Literal["user"], **options: Any) -> UserObject: ...
def load(src: Source, *, runtime: str = "kernel", **options: Any) -> BPFObject | UserObject:
    """Open and load a BPF object; see :func:`bpfring.object.load` for the
    options.

    ``runtime="kernel"`` (the default) loads it into the kernel through
    libbpf.  ``runtime="user"`` runs the same object in this process with
    bpfring's user-space eBPF runtime (:func:`bpfring.userspace.load`): no
    privileges, maps in memory, the same ``maps``/``programs``/``globals``/
    ``types`` interface; for tests, CI and containers without BPF.
    """
    if runtime == "kernel":
        from .object import load as kernel_load

        return kernel_load(src, **options)
    if runtime == "user":
        from .userspace import load as user_load

        return user_load(src, **options)
    raise ValueError(f"runtime must be 'kernel' or 'user', not {runtime!r}")
