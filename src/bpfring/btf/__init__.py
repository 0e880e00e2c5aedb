"""Pure-Python BTF (BPF Type Format) reader and record codecs.

BTF describes the C types of a BPF program (and of the kernel itself).  This
package parses raw BTF blobs, the ``.BTF`` section of ELF objects and the
kernel's ``/sys/kernel/btf/vmlinux``, and turns a C type into a *codec* that
converts between bytes (a ring buffer sample, a map value, a global section)
and Python values, so that Python and BPF agree on one layout: the one the
compiler actually produced.

Quick tour::

    btf = BTF.from_elf("prog.bpf.o")          # or load(path_or_bytes), BTF.vmlinux()
    event = btf.record("event")                # "struct event", typedef names work too
    rec = event.decode(sample)                 # -> event(pid=12, comm='bash', ...)
    rec.pid, rec._asdict()                     # attributes; nested plain dicts
    data = event.encode(pid=1, comm="x")       # unset fields are zero
    event.dtype                                # numpy dtype with the exact C layout
    btf.datasec(".bss")                        # global variables: name, offset, size, codec

Parsing is lazy so that the 5-6 MB kernel BTF loads in tens of milliseconds:
loading makes one pass that records where every type record starts; a type
is decoded only when it is asked for; a name lookup searches the string
section for the name and then compares the name offsets of all types in one
vectorised numpy operation (results are cached per name).

Value mapping (decode; encode accepts the same and is lenient where noted):

=============================  ==============================================
C type                         Python value
=============================  ==============================================
signed/unsigned int 1-8 bytes  ``int`` (``__int128`` and other sizes too)
``_Bool``                      ``bool``
``float``/``double``           ``float``
pointer                        ``int`` (the address; BPF pointers are 8 bytes)
enum                           member of an :class:`enum.IntEnum` built from
                               the BTF enum; a value that is not an enumerator
                               decodes as a plain ``int``.  Encoding also
                               accepts an enumerator name (``str``).
``char[N]``                    ``str`` cut at the first NUL, UTF-8 decoded with
                               ``errors="replace"``; encoding accepts ``str``
                               or ``bytes``, truncated or NUL-padded to N
other arrays                   ``list`` (nested lists for multi-dimensional
                               arrays); encoding pads short lists with zeros
struct / union                 a :class:`Record`; encoding accepts a record,
                               a ``dict`` (missing keys are zero) or ``None``
bitfields                      ``int``/``bool``/enum, sign-extended when signed
typedef/const/volatile/...     resolved to the underlying type
=============================  ==============================================

Records (see :class:`Record`): attribute access (``rec.pid``), item access
(``rec["pid"]``, for C names that are Python keywords), ``rec._fields``,
``rec._asdict()`` (the one conversion: deep, nested records become dicts and
arrays lists; records are not mappings, so ``dict(rec)`` is not supported),
``rec._replace(**changes)``, ``bytes(rec)``, equality with records of the same
C type, and a readable ``repr`` such as ``event(pid=12, comm='bash')``.  The
members of an anonymous struct/union member are reachable directly
(``rec.a`` for ``struct { union { int a; ... }; }``), as in C; the member
itself is stored as ``_anon0``, ``_anon1``, ... .

Unions decode every member.  A decoded union record remembers its bytes;
encoding it rewrites only the members whose values changed since (like
assigning one member in C), so it round-trips exactly.  A union given as a
dict is written member by member in declaration order, skipping a member
whose value already matches the bytes so far; to set one member, give only
that member.

``char[N]`` means plain ``char`` (or the BTF CHAR encoding): ``unsigned
char``/``__u8``/``signed char`` arrays are lists of ints.  In
:attr:`Codec.dtype` a run of bitfields sharing bytes becomes one unsigned
storage field named ``"a|b|c"``; :attr:`Codec.bitfields` says where each
bitfield sits in it and :meth:`BitField.extract` pulls it out of an array.

Global variables: ``btf.datasec(name)`` lists the variables of a data section
(``.bss``, ``.data``, ``.rodata``, ``.data.foo`` ...).  The blob is taken as
it is: in ELF ``.o`` files straight from clang, DATASEC sizes and variable
offsets are often 0, because libbpf (and the static linker, ``bpftool gen
object``) fills them in from the ELF symbol table only when it opens the
object.  BTF read back from the kernel or from a linked object has the real
values.

Limits: little-endian BTF only (the BPF target of an x86/arm64 host); pointer
size is taken to be 8 bytes; ``long double`` and other floats that are not 2,
4 or 8 bytes decode as raw ``bytes``.  Enum signedness comes from kind_flag as
the current BTF spec says; clang before 15 never sets it, so in BTF where no
enum has it (:meth:`BTF.enum_signs_marked`) a 32-bit enum whose values with
bit 31 set are all small negatives (down to -2**24) is read as signed: clang
14's ``-3`` is the enumerator ``-3`` (for the enum class and decoded fields
alike), while ``1u << 31`` flags stay unsigned.

Untrusted BTF (a file, another user's object): every size is checked when a
type is read (ints of 1-16 bytes with their bits inside, enums of 1/2/4/8,
floats of 2/4/8/12/16, structs/unions/sections and arrays of at most 256 MiB),
a type containing itself or nested more than 64 levels deep is refused, and
whatever the parser or codec builder finds wrong is a :class:`BTFError` naming
the type id.  Large arrays of structs cost O(1) to build: they are one raw run
of bytes decoded element by element with the element's own codec.

Layout of the package (one concern per module; only this module's names are
public): ``_model`` the type kinds and records, ``_elf`` finding ``.BTF`` in
an object file, ``_reader`` the :class:`BTF` parser and its lookups,
``_builder`` the walk from types to layout nodes, ``_layout`` the nodes and
the code generator, ``_runtime`` the helpers generated code calls,
``_records`` the :class:`Record` classes, ``_enums`` the enum classes,
``_fast`` the spec of a struct for the C decoder and ``_codec`` the
:class:`Codec`.

Decoding speed: a struct codec's ``decode`` is, when bpfring's C
accelerator is in use, a C decoder (``bpfring._speedups._RecordDecoder``)
that fills the very same :class:`Record` classes straight from the bytes,
``char[N]`` to ``str`` included, several times faster than the generated
Python decoder; the Python one stays the reference (a differential test
runs both on random layouts) and handles whatever the C one does not
(unions, odd integer sizes, every error).  ``BPFRING_PURE_PYTHON=1`` selects
the Python decoder for the whole process, as it does for the rings.

The package is ground layer: it imports only the standard library, numpy,
:mod:`bpfring.errors` and (for the C decoder) ``bpfring._speedups``.  (BTF
for the types of a C header needs a compiler: that is
:func:`bpfring.from_header`, in the toolchain layer.)
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import BTFError as BTFError
from ..errors import TypeNotFound as TypeNotFound
from ._builder import TypeChain, TypeMap, layout_conflicts
from ._codec import Codec
from ._elf import elf_section
from ._layout import BitField
from ._model import BTF_MAGIC as BTF_MAGIC
from ._model import INT_BOOL as INT_BOOL
from ._model import INT_CHAR as INT_CHAR
from ._model import INT_SIGNED as INT_SIGNED
from ._model import SYS_BTF_DIR as SYS_BTF_DIR
from ._model import (
    VMLINUX_PATH,
    Enumerator,
    Kind,
    Member,
    Param,
    Type,
    VarSecInfo,
)
from ._reader import BTF, Variable, load
from ._records import Record

__all__ = [
    "BTF",
    "VMLINUX_PATH",
    "BitField",
    "Codec",
    "Enumerator",
    "Kind",
    "Member",
    "Param",
    "Record",
    "Type",
    "TypeChain",
    "TypeMap",
    "VarSecInfo",
    "Variable",
    "elf_section",
    "from_header",
    "layout_conflicts",
    "load",
]


def from_header(header: str | os.PathLike[str], **options: Any) -> BTF:
    """BTF for the types a C header declares (``struct event`` of a tool's
    ``tool.h``), for objects built elsewhere: the same function as
    :func:`bpfring.from_header` (options ``include_dirs``, ``defines``,
    ``cflags``, ``vmlinux``, ``cache_dir``).

    Making it compiles the header with clang, which is the toolchain layer's
    work; this forwarder, the one place the ground-layer ``btf`` package
    reaches up, imports :mod:`bpfring.build` by name only when called, so
    that ``import bpfring.btf`` stays free of it (docs/design.md)."""
    import importlib

    build = importlib.import_module("bpfring.build")
    btf: BTF = build.header_btf(header, **options)
    return btf
