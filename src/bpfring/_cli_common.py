"""What the command-line modules share: the usage error, naming a map,
finding a record type, and JSON for values JSON does not know."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .errors import BPFError

if TYPE_CHECKING:
    from .btf import Codec
    from .mapref import MapRef


class Usage(Exception):
    """Bad command-line usage: exit status 2."""


def mapref(args: argparse.Namespace) -> MapRef:
    """The map named by the ``kind ref`` arguments, checked (bad usage: :class:`Usage`)."""
    import os

    from .mapref import MapRef

    try:
        ref = MapRef.parse([args.kind, args.ref])
    except ValueError as e:
        raise Usage(str(e)) from None
    if ref.kind == "id" and not 0 < int(ref.value) < 1 << 32:
        raise Usage(f"map id {args.ref} is out of range: map ids are 1 to {(1 << 32) - 1}")
    if ref.kind == "pinned" and os.path.isdir(str(ref.value)):
        import errno

        raise BPFError(f"{ref.value} is a directory, not a pinned map", errno=errno.EISDIR,
                       hint="'bpfring list' shows the rings and where they are pinned")
    return ref


def record_type(args: argparse.Namespace, map_id: int) -> Codec | None:
    """The BTF record type named by --type: from --btf FILE, from the types of
    --header FILE (compiled with clang, for prebuilt objects whose BTF lacks
    them), or from the BTF of the map's own object."""
    if not args.type:
        return None
    from . import btf as _btf
    from .discovery import map_btf

    header = getattr(args, "header", None)
    if header and args.btf:
        raise Usage("give --btf FILE or --header FILE, not both")
    if header:
        import os

        from .build import header_btf

        if not os.path.isfile(header):
            raise Usage(f"no such header: {header}")
        types = header_btf(header, include_dirs=getattr(args, "include", None) or [])
        where = f"the types of {header}"
    elif args.btf:
        types = _btf.load(args.btf)
        where = args.btf
    else:
        raw = map_btf(map_id)
        if raw is None:
            raise BPFError(f"map id {map_id} has no BTF to find type {args.type!r} in",
                           hint="pass the object file with --btf FILE")
        types = _btf.BTF.from_bytes(raw)
        where = f"the BTF of map id {map_id}'s object"
    try:
        return types.record(args.type)
    except KeyError as e:
        raise BPFError(f"{e} (searched {where})") from None


def json_default(obj: object) -> object:
    """``json.dumps(default=...)``: bytes as hex, enums by name, records as dicts."""
    import enum

    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj).hex()
    if isinstance(obj, enum.Enum):
        return obj.name
    asdict = getattr(obj, "_asdict", None)
    if asdict is not None:
        return asdict()
    return str(obj)
