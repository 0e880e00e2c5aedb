"""BTF enums as Python :class:`enum.IntEnum` classes, and their encoders."""

from __future__ import annotations

import enum
from typing import Any

from ._model import Enumerator
from ._records import PUBLIC_MODULE
from ._runtime import Encoder


def make_enum(name: str, members: tuple[Enumerator, ...]) -> type[enum.IntEnum] | None:
    """An IntEnum for a BTF enum; names Python's Enum refuses (``mro``, ``_x_``)
    are left out (those values then decode as plain ints)."""
    first: dict[str, int] = {}
    for m in members:  # hostile BTF may repeat a name: the first one wins
        if m.name:
            first.setdefault(m.name, m.value)
    pairs = list(first.items())
    if not pairs:
        return None
    cls_name = name if name.isidentifier() else "enum"
    try:
        return _int_enum(cls_name, pairs)
    except (ValueError, TypeError):
        pass
    ok = []
    for p in pairs:
        try:
            enum.IntEnum("probe", [p])
            ok.append(p)
        except (ValueError, TypeError):
            continue
    return _int_enum(cls_name, ok) if ok else None


def _int_enum(name: str, pairs: list[tuple[str, int]]) -> type[enum.IntEnum]:
    # The functional API makes a class; typeshed types the call as making a member.
    return enum.IntEnum(name, pairs, module=PUBLIC_MODULE)  # type: ignore[return-value]


def enum_encoder(cls: type[enum.IntEnum] | None, label: str) -> Encoder:
    """Encoder accepting an enumerator, its name (``str``), an int or None."""
    # __members__ includes aliases (enumerators sharing a value)
    names = {n: int(m) for n, m in cls.__members__.items()} if cls is not None else {}

    def enc(x: Any) -> Any:
        if x is None:
            return 0
        if isinstance(x, str):
            try:
                return names[x]
            except KeyError:
                raise ValueError(f"{label} has no enumerator {x!r}") from None
        return x

    return enc
