"""bpfring: two-way, asynchronous data exchange between Python and eBPF programs
through BPF ring buffers (kernel -> user ``RingBuffer``, user -> kernel
``UserRingBuffer``), plus building, loading and attaching BPF C programs.

The public names below are imported on first use (PEP 562), so ``import
bpfring`` loads none of libbpf, numpy, asyncio or the C accelerator: the CLI
starts quickly, and ``bpfring --help`` or ``import bpfring.btf`` work on a
machine without ``libbpf.so.1``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module (in this package) that defines it ("module:attr"
# where the module's name for it differs).
_EXPORTS: dict[str, str] = {
    # errors
    "AttachError": "errors",
    "BPFError": "errors",
    "BPFPermissionError": "errors",
    "BTFError": "errors",
    "BuildError": "errors",
    "KernelTooOld": "errors",
    "LibbpfNotFound": "errors",
    "LoadError": "errors",
    "MapTypeError": "errors",
    "MissingExtra": "errors",
    "NotMountedError": "errors",
    "RecordTooLarge": "errors",
    "RingCorrupted": "errors",
    "RingFull": "errors",
    "SampleError": "errors",
    "ToolNotFound": "errors",
    "TypeNotFound": "errors",
    "UserLoadError": "errors",
    "UserRuntimeError": "errors",
    # rings
    "RingBuffer": "ringbuf",
    "Sample": "ringbuf",
    "UserRingBuffer": "ringbuf",
    "Poller": "poller",
    "PreparedRun": "_sys",
    "PreparedUpdate": "_sys",
    "PerfBuffer": "perfbuf",
    # objects
    "BPFObject": "object",
    "Program": "object",
    "load": "_api",
    "open": "object:open_object",
    "open_object": "object",
    "Link": "link",
    "AttachReport": "_attach",
    "Skipped": "_attach",
    "Map": "maps",
    "MapRef": "mapref",
    # features
    "MapBridge": "bridge",
    "build": "build",
    "build_source": "build",
    "from_header": "build:header_btf",
    "cache_dir": "build",
}
# Submodules that are part of the public surface as modules.
_SUBMODULES = frozenset({"btf", "frames", "userspace"})

__all__ = [
    "AttachError",
    "AttachReport",
    "BPFError",
    "BPFObject",
    "BPFPermissionError",
    "BTFError",
    "BuildError",
    "KernelTooOld",
    "LibbpfNotFound",
    "Link",
    "LoadError",
    "Map",
    "MapBridge",
    "MapRef",
    "MapTypeError",
    "MissingExtra",
    "NotMountedError",
    "PerfBuffer",
    "Poller",
    "PreparedRun",
    "PreparedUpdate",
    "Program",
    "RecordTooLarge",
    "RingBuffer",
    "RingCorrupted",
    "RingFull",
    "Sample",
    "SampleError",
    "Skipped",
    "ToolNotFound",
    "TypeNotFound",
    "UserLoadError",
    "UserRingBuffer",
    "UserRuntimeError",
    "__version__",
    "btf",
    "build",
    "build_source",
    "cache_dir",
    "frames",
    "from_header",
    "load",
    "open",
    "open_object",
    "userspace",
]


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` on first access, then cache the value.

    Submodules are attributes too, imported on first access, as they were
    when the package imported them all (``bpfring.bridge.load(...)``)."""
    where = _EXPORTS.get(name)
    if where is not None:
        module, _, attr = where.partition(":")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr or name)
        globals()[name] = value
        return value
    if name.isidentifier() and not name.startswith("__"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The package's module type: keeps ``bpfring.build`` the function.

    The import system binds every submodule to an attribute of its package
    when it is first imported; the submodule ``bpfring.build`` would then
    hide the function ``bpfring.build``, and with lazy imports that first
    import may happen at any time (``bpfring.load("x.bpf.c")`` compiles).
    ``import bpfring.build`` and ``sys.modules`` still give the module.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if TYPE_CHECKING:  # what the names are, for type checkers and IDEs
    from . import btf, frames, userspace
    from ._api import load
    from ._attach import AttachReport, Skipped
    from ._sys import PreparedRun, PreparedUpdate
    from .bridge import MapBridge
    from .build import build, build_source, cache_dir
    from .build import header_btf as from_header
    from .errors import (
        AttachError,
        BPFError,
        BPFPermissionError,
        BTFError,
        BuildError,
        KernelTooOld,
        LibbpfNotFound,
        LoadError,
        MapTypeError,
        MissingExtra,
        NotMountedError,
        RecordTooLarge,
        RingCorrupted,
        RingFull,
        SampleError,
        ToolNotFound,
        TypeNotFound,
        UserLoadError,
        UserRuntimeError,
    )
    from .link import Link
    from .mapref import MapRef
    from .maps import Map
    from .object import BPFObject, Program, open_object
    from .object import open_object as open
    from .perfbuf import PerfBuffer
    from .poller import Poller
    from .ringbuf import RingBuffer, Sample, UserRingBuffer
