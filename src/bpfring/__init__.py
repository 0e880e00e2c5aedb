"""bpfring: two-way, asynchronous data exchange between Python and eBPF programs
through BPF ring buffers (kernel -> user ``RingBuffer``, user -> kernel
``UserRingBuffer``), plus building, loading and attaching BPF C programs.
"""

from __future__ import annotations

from . import btf
from ._sys import PreparedRun, PreparedUpdate
from .bridge import MapBridge
from .build import build, build_source, cache_dir
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
    NotMountedError,
    RecordTooLarge,
    RingCorrupted,
    RingFull,
    SampleError,
    ToolNotFound,
    TypeNotFound,
)
from .link import Link
from .mapref import MapRef
from .maps import Map
from .object import BPFObject, Program, load, open_object
from .poller import Poller
from .ringbuf import RingBuffer, Sample, UserRingBuffer

__version__ = "0.1.0"

__all__ = [
    "AttachError",
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
    "NotMountedError",
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
    "ToolNotFound",
    "TypeNotFound",
    "UserRingBuffer",
    "__version__",
    "btf",
    "build",
    "build_source",
    "cache_dir",
    "load",
    "open_object",
]
