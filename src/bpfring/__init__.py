"""bpfring: two-way, asynchronous data exchange between Python and eBPF programs
through BPF ring buffers (kernel -> user ``RingBuffer``, user -> kernel
``UserRingBuffer``), plus building, loading and attaching BPF C programs.
"""

from __future__ import annotations

from .errors import (
    AttachError,
    BPFError,
    BPFPermissionError,
    BTFError,
    BuildError,
    KernelTooOld,
    LoadError,
    MapTypeError,
    NotMountedError,
    RecordTooLarge,
    RingCorrupted,
    RingFull,
    SampleError,
    ToolNotFound,
    TypeNotFound,
)

__version__ = "0.1.0"

__all__ = [
    "AttachError",
    "BPFError",
    "BPFPermissionError",
    "BTFError",
    "BuildError",
    "KernelTooOld",
    "LoadError",
    "MapTypeError",
    "NotMountedError",
    "RecordTooLarge",
    "RingCorrupted",
    "RingFull",
    "SampleError",
    "ToolNotFound",
    "TypeNotFound",
    "__version__",
]
