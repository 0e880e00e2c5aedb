"""The C record decoder: a struct's layout flattened for ``_speedups._RecordDecoder``.

The generated Python decoder (:mod:`._layout`) stays the reference; for a
struct, :func:`record_decoder` returns a C decoder that builds the very same
:class:`Record` (same class, same field values, filled straight into its
slots) about ten times faster, or ``None`` when the C accelerator is not in
use.  The backend is chosen once per process, at the first codec built:
``BPFRING_PURE_PYTHON=1`` (as for the rings) or an accelerator built without
``RecordDecoder`` selects the Python decoder.

The spec handed to C (its format is documented in ``_speedups_decode.c``)
covers scalars, enums, ``char[N]``, raw bytes, bitfields of up to 8 storage
bytes, nested structs and arrays; anything else (unions, integers of odd
sizes, wide bitfield runs) is one op calling the member's own Python
decoder, so the C side never has to know those kinds.  Calls the C fast path
does not take as is (short buffers, negative offsets, objects without the
buffer protocol) are passed to the Python decoder, errors included.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import Any, TypeAlias

from ._layout import ArrayNode, Atom, Bits, Decoder, Node, StructNode
from ._records import slot_name
from ._runtime import cstr

# Op codes (the OP_* of _speedups_decode.c).
OP_INT, OP_BOOL, OP_FLOAT, OP_CSTR, OP_BYTES, OP_BITS, OP_STRUCT, OP_ARRAY, OP_PY = range(9)

#: One op: (code, offset, a, b, obj); see _speedups_decode.c.
Op: TypeAlias = tuple[int, int, int, int, Any]
#: A struct: (record class, size, slot names, ops).
Spec: TypeAlias = tuple[type, int, tuple[str, ...], tuple[Op, ...]]

_INT_CODES = {"b": (1, 1), "h": (2, 1), "i": (4, 1), "q": (8, 1),
              "B": (1, 0), "H": (2, 0), "I": (4, 0), "Q": (8, 0)}
_FLOAT_CODES = {"e": 2, "f": 4, "d": 8}

log = logging.getLogger("bpfring")
_UNSET: Any = object()
_factory: Callable[[Spec, Decoder], Decoder] | Any | None = _UNSET


def _choose() -> Callable[[Spec, Decoder], Decoder] | None:
    """``_speedups._RecordDecoder``, or None for the pure-Python decoder (chosen once)."""
    global _factory
    if _factory is _UNSET:
        factory = None
        if os.environ.get("BPFRING_PURE_PYTHON", "") != "1":
            try:
                sp = importlib.import_module("bpfring._speedups")
            except ModuleNotFoundError as e:  # not built: the Python decoder, quietly
                if e.name != "bpfring._speedups":
                    raise
                sp = None
            except ImportError as e:  # built but unusable: say so (as _ringbackend does)
                log.warning("bpfring's C record decoder is not used: %s", e)
                sp = None
            factory = getattr(sp, "_RecordDecoder", None)
            if sp is not None and factory is None:
                log.warning("bpfring's C record decoder is not used: %s has no "
                            "_RecordDecoder (built from an older _speedups.c?)", sp.__file__)
        _factory = factory
    return _factory


def accelerated() -> bool:
    """Whether struct codecs decode with the C decoder in this process."""
    return _choose() is not None


def record_decoder(node: StructNode, pure: Decoder,
                   factory: Callable[[Spec, Decoder], Decoder] | None = None) -> Decoder | None:
    """The C decoder of struct ``node`` (``pure`` is its generated decoder, which
    the C one falls back to), or None where the accelerator is not in use.
    ``factory`` overrides the process-wide choice (tests compare both)."""
    if factory is None:
        factory = _choose()
    if factory is None or node.union:
        return None
    try:
        return factory(struct_spec(node, {}), pure)
    except (ValueError, RecursionError) as e:  # nested beyond the C decoder's limit
        log.debug("%s decodes in Python: %s", node.label, e)
        return None


def struct_spec(node: StructNode, memo: dict[int, Spec]) -> Spec:
    """The spec of one (non-union) struct; shared sub-structs share one spec."""
    spec = memo.get(id(node))
    if spec is None:
        ops: list[Op] = []
        for e in node.entries:
            if isinstance(e, Bits):
                ops.extend(_bits_ops(e))
            else:
                ops.append(_op(e.node, e.offset, memo))
        spec = (node.cls, node.size, tuple(slot_name(f) for f in node.fields), tuple(ops))
        memo[id(node)] = spec
    return spec


def _bits_ops(run: Bits) -> list[Op]:
    """One op per bitfield of a run (storage of 1-8 bytes), else Python decodes the run."""
    ops: list[Op] = []
    for f in run.fields:
        shift = f.bit - run.start * 8
        if run.width > 8:  # a run wider than 64 bits: the reference's own code
            ops.append((OP_PY, 0, 0, 0, _bitfield_decoder(run, f.pyname)))
            continue
        packed = shift | f.bits << 8 | int(f.signed) << 16 | int(f.is_bool) << 17
        ops.append((OP_BITS, run.start, run.width, packed, f.dec_map))
    return ops


def _bitfield_decoder(run: Bits, name: str) -> Callable[[Any, int], Any]:
    """Decode one bitfield of a run wider than 8 bytes (``__int128`` bitfields) in
    Python, the way the generated code does: shift, mask, sign, enum or bool."""
    f = next(f for f in run.fields if f.pyname == name)
    lo, hi = run.start, run.start + run.width
    shift, mask, sb = f.bit - lo * 8, (1 << f.bits) - 1, 1 << (f.bits - 1)

    def decode(buf: Any, offset: int) -> Any:
        x = (int.from_bytes(memoryview(buf)[offset + lo : offset + hi], "little") >> shift) & mask
        if f.signed:
            x = (x ^ sb) - sb
        if f.dec_map is not None:
            return f.dec_map.get(x, x)
        return x != 0 if f.is_bool else x

    return decode


def _op(node: Node, off: int, memo: dict[int, Spec]) -> Op:
    if isinstance(node, Atom):
        code = node.code
        if node.dec is cstr:
            return (OP_CSTR, off, node.size, 0, None)
        if node.dec is None:
            if code in _INT_CODES:
                size, signed = _INT_CODES[code]
                return (OP_INT, off, size, signed, node.dec_map)
            if node.dec_map is None:
                if code == "?":
                    return (OP_BOOL, off, 1, 0, None)
                if code in _FLOAT_CODES:
                    return (OP_FLOAT, off, _FLOAT_CODES[code], 0, None)
                if code == f"{node.size}s":
                    return (OP_BYTES, off, node.size, 0, None)
    elif isinstance(node, ArrayNode):
        return (OP_ARRAY, off, node.shape[0], node.elem.size, _op(node.elem, 0, memo))
    elif isinstance(node, StructNode) and not node.union:
        return (OP_STRUCT, off, 0, 0, struct_spec(node, memo))
    return (OP_PY, off, 0, 0, node.compiled().decode)
