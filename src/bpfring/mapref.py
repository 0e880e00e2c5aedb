"""Naming maps the way bpftool does: ``id N``, ``pinned PATH``, ``name NAME``.

A :class:`MapRef` says which map; :meth:`MapRef.open` returns a new
read-write fd for it (the caller owns it; :meth:`MapRef.open_owned` wraps it
in an :class:`~bpfring._fd.OwnedFD`).  Rings and the CLI accept a MapRef, its
string form (``"id 42"``), or a plain fd.

This module sits in the ground layer (it needs only ``_sys``), so that the
ring I/O layer can accept references too.
"""

from __future__ import annotations

import errno
import os
import shlex
from dataclasses import dataclass

from . import _sys
from ._fd import OwnedFD
from .errors import BPFError

__all__ = ["MapRef"]

_KINDS = ("id", "pinned", "name")


@dataclass(frozen=True)
class MapRef:
    """A reference to a kernel map: ``kind`` is ``id``, ``pinned``, ``name`` or ``fd``."""

    kind: str
    value: str | int

    @classmethod
    def parse(cls, spec: str | list[str] | tuple[str, ...]) -> MapRef:
        """Parse ``"id 42"``, ``"pinned /sys/fs/bpf/x"`` or ``"name events"``."""
        words = shlex.split(spec) if isinstance(spec, str) else list(spec)
        if len(words) != 2 or words[0] not in _KINDS:
            raise ValueError(
                f"bad map reference {' '.join(words)!r}: expected 'id N', 'pinned PATH' "
                "or 'name NAME'"
            )
        kind, val = words
        if kind == "id":
            try:
                return cls("id", int(val, 0))
            except ValueError:
                raise ValueError(f"map id must be a number, not {val!r}") from None
        return cls(kind, val)

    @classmethod
    def fd(cls, fd: int) -> MapRef:
        """A reference to the map behind an fd the caller keeps (``open`` duplicates it)."""
        return cls("fd", fd)

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"

    def open(self, *, map_type: int | None = None) -> int:
        """Return a new read-write fd for the map (the caller closes it).

        For ``name`` references, ``map_type`` narrows the search; a name
        shared by several maps of that type is an error listing their ids.
        """
        if self.kind == "fd":
            return OwnedFD.dup(int(self.value), "map").detach()
        try:
            if self.kind == "id":
                return _sys.map_get_fd_by_id(int(self.value))
            if self.kind == "pinned":
                return _sys.obj_get(os.fspath(str(self.value)))
        except BPFError as e:
            if e.errno == errno.ENOENT and e.hint is None:
                e.hint = ("no such map id; 'bpfring list' shows the rings" if self.kind == "id"
                          else "nothing pinned there (is bpffs mounted at /sys/fs/bpf?)")
            raise
        return self._open_by_name(str(self.value), map_type).detach()

    def open_owned(self, *, map_type: int | None = None) -> OwnedFD:
        """Like :meth:`open`, as an :class:`~bpfring._fd.OwnedFD` (closed once,
        with a ResourceWarning if dropped open)."""
        return OwnedFD(self.open(map_type=map_type), f"map {self}")

    def _open_by_name(self, name: str, map_type: int | None) -> OwnedFD:
        matches: list[tuple[int, OwnedFD]] = []
        try:
            for mid in _sys.map_ids():
                try:
                    fd = OwnedFD(_sys.map_get_fd_by_id(mid), "map")
                except BPFError:
                    continue  # the map went away meanwhile
                try:
                    info = _sys.map_info(fd.fileno())
                except BPFError:
                    fd.close()
                    continue
                # The kernel keeps only the first 15 characters of a map name.
                if info.name == name[:15] and (map_type is None or info.type == map_type):
                    matches.append((mid, fd))
                else:
                    fd.close()
            if not matches:
                kind = f" {_sys.MAP_TYPE_NAMES.get(map_type, map_type)}" if map_type else ""
                raise BPFError(f"no{kind} map named {name!r} on this host",
                               hint="list rings with 'bpfring list' or maps with 'bpftool map'")
            if len(matches) > 1:
                ids = ", ".join(str(m) for m, _ in matches)
                raise BPFError(f"map name {name!r} matches several maps (ids {ids})",
                               hint="use 'id N' to pick one")
        except BaseException:
            for _, fd in matches:
                fd.close()
            raise
        return matches[0][1]
