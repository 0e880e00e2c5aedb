"""Functions the generated decode/encode code calls at run time.

:mod:`._layout` generates Python source per C type; that source refers to
these helpers by the names in :data:`HELPERS`.  They sit on the hot path of
encoding (and of decoding multi-dimensional arrays), so they stay small.
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Callable, Mapping
from typing import Any

from ._records import Record, plain

#: Converts one Python value on its way to ``struct.pack``.
Encoder = Callable[[Any], Any]


def cstr(b: bytes) -> str:
    """A ``char[N]`` as ``str``: cut at the first NUL, invalid UTF-8 replaced."""
    return b.partition(b"\0")[0].decode("utf-8", "replace")


def str_bytes(x: Any) -> bytes:
    """What a ``char[N]`` accepts: ``str`` (UTF-8 encoded), bytes-like or None."""
    if x is None:
        return b""
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x)
    raise TypeError(f"expected str or bytes for a char array, got {type(x).__name__}")


def raw_bytes(x: Any) -> bytes:
    """What a type without a Python mapping (``long double``) accepts: bytes or None."""
    if x is None:
        return b""
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x)
    raise TypeError(f"expected bytes, got {type(x).__name__}")


def nest(flat: list[Any], shape: tuple[int, ...]) -> list[Any]:
    """A flat list of a multi-dimensional array's values as nested lists."""
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    if step == 0:  # T x[n][0]: n empty rows (there are no values to cut)
        return [nest([], shape[1:]) for _ in range(shape[0])]
    return [nest(flat[j : j + step], shape[1:]) for j in range(0, len(flat), step)]


def flat_array(
    x: Any, shape: tuple[int, ...], enc: Encoder | None, zero: Any, path: str
) -> list[Any]:
    """Flatten a (nested) sequence for an array of atoms: convert, pad, check length."""
    if x is None:
        return [zero] * math.prod(shape)
    if isinstance(x, str):
        raise TypeError(f"{path}: a str is not valid for an array of non-char values")
    seq = list(x)
    n = shape[0]
    if len(seq) > n:
        raise ValueError(f"{path}: {len(seq)} elements for an array of {n}")
    if len(shape) > 1:
        out: list[Any] = []
        for e in seq:
            out.extend(flat_array(e, shape[1:], enc, zero, path))
        out.extend([zero] * (math.prod(shape[1:]) * (n - len(seq))))
        return out
    seq = [enc(e) for e in seq] if enc is not None else [zero if e is None else e for e in seq]
    seq.extend([zero] * (n - len(seq)))
    return seq


def padded(x: Any, n: int, path: str) -> list[Any]:
    """An array of structs (or of arrays of structs): pad with None to n."""
    if x is None:
        return [None] * n
    seq = list(x)
    if len(seq) > n:
        raise ValueError(f"{path}: {len(seq)} elements for an array of {n}")
    return seq + [None] * (n - len(seq))


def strided_enc(
    x: Any, n: int, esize: int, encode_into: Callable[[Any, int, Any], None], path: str
) -> bytes:
    """The bytes of a large array of structs (read as one raw item): each element
    encoded by the element's own codec at its stride; None and missing are zero."""
    buf = bytearray(n * esize)
    if x is not None:
        for j, e in enumerate(padded(x, n, path)):
            if e is not None:
                encode_into(buf, j * esize, e)
    return bytes(buf)


def join_fixed(values: list[Any], size: int) -> bytes:
    """Values of ``size``-byte raw atoms (bytes, maybe shorter) as one run of bytes."""
    return b"".join(bytes(v[:size]).ljust(size, b"\0") for v in values)


def _none_get(_name: str) -> None:
    return None


def getter(
    val: Any, keys: frozenset[str], cname: str, cls: type | None = None
) -> Callable[[str], Any]:
    """How to read fields from an encode input: a record, a mapping or None."""
    if type(val) is cls:  # a record of this very type: every field is there
        get: Callable[[str], Any] = val.__getattribute__
        return get
    if val is None:
        return _none_get
    if isinstance(val, Mapping):
        if not keys.issuperset(val):
            unknown = ", ".join(sorted(map(str, set(val) - keys)))
            raise TypeError(f"{cname} has no field(s) {unknown}")
        return val.get
    if isinstance(val, Record):
        return lambda name: getattr(val, name, None)
    raise TypeError(
        f"cannot encode {type(val).__name__} as {cname}: expected a record, dict or None"
    )


def anon_get(val: Any, get: Callable[[str], Any], slot: str, keys: frozenset[str]) -> Any:
    """The value of an anonymous member: given as ``_anonN`` or as its inner names."""
    x = get(slot)
    if x is not None or not isinstance(val, Mapping):
        return x
    sub = {k: v for k, v in val.items() if k in keys}
    return sub or None


def bits_in(x: Any, bits: int, enc: Encoder | None, path: str, signed: bool) -> int:
    """A bitfield's value, range-checked against the field's own signed or unsigned
    range, as the low ``bits`` bits of an int."""
    if enc is not None:
        x = enc(x)
    v = operator.index(x)
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    if not lo <= v < hi:
        kind = "signed" if signed else "unsigned"
        raise ValueError(
            f"{path}: {v} does not fit in a {bits}-bit {kind} field ({lo}..{hi - 1})"
        )
    return v & ((1 << bits) - 1)


def le_int(b: bytes) -> int:
    return int.from_bytes(b, "little")


def same(decoded: Any, given: Any) -> bool:
    """Whether an encode input already matches decoded bytes (NaN matches NaN)."""
    try:
        return _eq(plain(decoded), plain(given))
    except Exception:  # odd inputs: just write them
        return False


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(map(_eq, a, b))
    return bool(a == b)


#: The names generated code uses for the helpers (the namespace it runs in).
HELPERS: dict[str, Any] = {
    "_nest": nest,
    "_flat_arr": flat_array,
    "_seq": padded,
    "_strided_enc": strided_enc,
    "_join_fixed": join_fixed,
    "_getter": getter,
    "_anon_get": anon_get,
    "_bits_in": bits_in,
    "_le": le_int,
    "_StructError": struct.error,
}
