"""Attribute access to a BPF object's global variables (``.bss``, ``.data``,
``.rodata`` and ``.data.*`` sections), typed from BTF: the one
implementation behind :attr:`bpfring.BPFObject.globals` (kernel) and the
user-space runtime's ``UserObject.globals``.  The owner supplies where the
section maps are and how to reach their bytes; the rest is the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .btf import BTF, Variable

__all__ = ["GlobalsView", "merge_fields"]


def merge_fields(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``new``, recursing into nested dicts (so a dict
    assigned to a struct global changes only the fields it names)."""
    out = dict(base)
    for k, v in new.items():
        out[k] = merge_fields(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


class GlobalsView:
    """``view.NAME`` reads a global, ``view.NAME = value`` writes it (a dict
    updates only the fields it names); ``.rodata`` is read-only once loaded.

    Subclasses say where the data lives: :meth:`_btf`, :meth:`_section_maps`
    (pairs of section name and map), :meth:`_region` (the section's bytes),
    :meth:`_loaded` and :meth:`_check` (raise if the owner is closed).
    """

    _obj: Any
    _vars: dict[str, tuple[Any, Variable]] | None

    def __init__(self, owner: Any) -> None:
        object.__setattr__(self, "_obj", owner)
        object.__setattr__(self, "_vars", None)

    # What the owner provides ------------------------------------------------------

    def _btf(self) -> BTF | None:
        raise NotImplementedError

    def _section_maps(self) -> Iterable[tuple[str, Any]]:
        raise NotImplementedError

    def _region(self, m: Any) -> memoryview:
        raise NotImplementedError

    def _loaded(self) -> bool:
        raise NotImplementedError

    def _check(self) -> None:
        """Raise if the owner can no longer be used (closed)."""

    # The shared part ------------------------------------------------------------------

    def _index(self) -> dict[str, tuple[Any, Variable]]:
        idx = self._vars
        if idx is None:
            idx = {}
            btf = self._btf()
            for sec, m in self._section_maps():
                if btf is None:
                    break
                try:
                    variables = btf.datasec(sec)
                except KeyError:
                    continue
                for var in variables:
                    idx[var.name] = (m, var)
            object.__setattr__(self, "_vars", idx)
        return idx

    def _lookup(self, name: str) -> tuple[Any, Variable]:
        self._check()
        try:
            return self._index()[name]
        except KeyError:
            raise AttributeError(f"BPF object has no global variable {name!r}") from None

    def __getattr__(self, name: str) -> Any:
        m, var = self._lookup(name)
        return var.codec.decode(self._region(m), var.offset)

    def __setattr__(self, name: str, value: Any) -> None:
        m, var = self._lookup(name)
        if self._loaded() and (m.section or "").startswith(".rodata"):
            raise AttributeError(
                f"{name} is in .rodata, which is read-only after load "
                "(set it with load(..., globals={...}))"
            )
        region = self._region(m)
        codec = var.codec
        if isinstance(value, dict):
            current = codec.decode(region, var.offset)
            if hasattr(current, "_asdict"):
                value = merge_fields(current._asdict(), value)
        data = codec.encode(value)
        region[var.offset:var.offset + len(data)] = data

    def __dir__(self) -> list[str]:
        return sorted(self._index())

    def __contains__(self, name: str) -> bool:
        return name in self._index()

    def _asdict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._index()}

    def __repr__(self) -> str:
        return f"<globals {', '.join(sorted(self._index()))}>"
