"""Finding and describing the ring buffers on a host, without consuming.

Used by ``bpfring list`` and ``bpfring info``.  Positions are read through a
read-only mapping of the two position pages, which both ring types allow, so
inspecting a ring never disturbs its producer or consumer.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _sys
from ._fd import OwnedFD
from ._fs import BPFFS, is_bpffs
from .errors import BPFError
from .mapref import MapRef

__all__ = ["RingInfo", "find_lost_map", "list_rings", "map_btf", "pinned_paths", "read_lost",
           "ring_info"]

PAGE = mmap.PAGESIZE
RING_TYPES = (_sys.MAP_TYPE_RINGBUF, _sys.MAP_TYPE_USER_RINGBUF)


@dataclass
class RingInfo:
    """A snapshot of one ring map."""

    id: int
    name: str
    type: str
    size: int
    consumer_pos: int
    producer_pos: int
    pending: int  #: bytes between consumer and producer position
    fill: float  #: pending / size
    pinned: list[str] = field(default_factory=list)
    lost: int | None = None  #: from the bpfring.h ``<name>__lost`` counter, when found
    btf_id: int = 0

    def asdict(self) -> dict[str, Any]:
        return asdict(self)


def _positions(fd: int) -> tuple[int, int]:
    # A read-only shared mapping of offset 0 covering both position pages is
    # allowed for RINGBUF and USER_RINGBUF alike (ringbuf_map_mmap_kern/_user).
    mm = mmap.mmap(fd, 2 * PAGE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=0)
    try:
        mv = memoryview(mm).cast("Q")
        cons, prod = mv[0], mv[PAGE // 8]
        mv.release()
    finally:
        mm.close()
    return cons, prod


def pinned_paths(root: str = BPFFS) -> dict[int, list[str]]:
    """Map ids -> paths where they are pinned under ``root`` (bpffs)."""
    out: dict[int, list[str]] = {}
    if not os.path.isdir(root) or not is_bpffs(root):
        return out
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            path = os.path.join(dirpath, fn)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                fd = OwnedFD(_sys.obj_get(path), "pinned object")
            except (OSError, BPFError):
                continue
            with fd:
                try:
                    info = _sys.map_info(fd.fileno())
                except BPFError:
                    continue  # a pinned program or link, not a map
            out.setdefault(info.id, []).append(path)
    return out


def _open(fd: int, what: str = "map") -> OwnedFD:
    return OwnedFD(fd, what)


def _programs_using(map_id: int) -> Iterator[tuple[list[int], int]]:
    """Yield (map ids, btf id) of every program that uses ``map_id``."""
    for pid in _sys.prog_ids():
        try:
            pfd = _open(_sys.prog_get_fd_by_id(pid), "program")
        except BPFError:
            continue
        with pfd:
            try:
                ids, btf_id = _sys.prog_info(pfd.fileno())
            except BPFError:
                continue
        if map_id in ids:
            yield ids, btf_id


def map_btf(map_id: int) -> bytes | None:
    """Raw BTF of the object a map belongs to: the map's own BTF when it has
    one, else the BTF of a program using it (ring maps carry no BTF of their
    own, since they have no key or value type)."""
    with _open(_sys.map_get_fd_by_id(map_id)) as fd:
        btf_id = _sys.map_info(fd.fileno()).btf_id
    if not btf_id:
        btf_id = next((b for _, b in _programs_using(map_id) if b), 0)
    if not btf_id:
        return None
    with _open(_sys.btf_get_fd_by_id(btf_id), "BTF object") as bfd:
        return _sys.btf_raw(bfd.fileno())


def find_lost_map(ring_id: int, ring_name: str) -> int | None:
    """Id of the ``<ring>__lost`` counter that ``<bpfring/ring.bpf.h>`` keeps
    next to a ring: a per-CPU array used by a program that also uses the ring.
    (The kernel keeps 15 characters of a map name, so the name alone could
    be ambiguous; sharing a program is what ties the two together.)"""
    want = f"{ring_name}__lost"[:15]
    for ids, _btf in _programs_using(ring_id):
        for mid in ids:
            try:
                fd = _open(_sys.map_get_fd_by_id(mid))
            except BPFError:
                continue
            with fd:
                info = _sys.map_info(fd.fileno())
            if info.type == _sys.MAP_TYPE_PERCPU_ARRAY and info.name == want:
                return mid
    return None


def read_lost(lost_map_id: int) -> int:
    """The sum over CPUs of a ``<ring>__lost`` counter."""
    with _open(_sys.map_get_fd_by_id(lost_map_id)) as fd:
        return _sys.percpu_sum(fd.fileno())


def _describe(fd: int, pins: dict[int, list[str]] | None, with_lost: bool) -> RingInfo:
    info = _sys.map_info(fd)
    if info.type not in RING_TYPES:
        raise BPFError(f"map {info.id} ({info.name or 'unnamed'}) is a {info.type_name} map, "
                       "not a ring buffer", hint="'bpfring list' shows the ring maps")
    cons, prod = _positions(fd)
    pending = (prod - cons) & ((1 << 64) - 1)
    lost = None
    if with_lost and info.type == _sys.MAP_TYPE_RINGBUF and info.name:
        lost_id = find_lost_map(info.id, info.name)
        if lost_id is not None:
            lost = read_lost(lost_id)
    return RingInfo(
        id=info.id, name=info.name, type=info.type_name, size=info.max_entries,
        consumer_pos=cons, producer_pos=prod, pending=pending,
        fill=round(pending / info.max_entries, 4) if info.max_entries else 0.0,
        pinned=(pins or {}).get(info.id, []), lost=lost, btf_id=info.btf_id,
    )


def list_rings(with_lost: bool = True) -> list[RingInfo]:
    """Every ring map on the host (both types), in id order."""
    pins = pinned_paths()
    out = []
    for mid in _sys.map_ids():
        try:
            fd = _open(_sys.map_get_fd_by_id(mid))
        except BPFError:
            continue
        with fd:
            try:
                if _sys.map_info(fd.fileno()).type in RING_TYPES:
                    out.append(_describe(fd.fileno(), pins, with_lost))
            except (BPFError, OSError):
                continue  # went away, or cannot be mapped
    return out


def ring_info(ref: MapRef | str) -> RingInfo:
    """Describe one ring named the bpftool way."""
    if isinstance(ref, str):
        ref = MapRef.parse(ref)
    with ref.open_owned() as fd:
        info = _sys.map_info(fd.fileno())
        pins = pinned_paths() if info.type in RING_TYPES else None
        return _describe(fd.fileno(), pins, True)
