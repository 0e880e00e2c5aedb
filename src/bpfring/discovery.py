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

__all__ = ["RingInfo", "fd_owners", "find_lost_map", "list_rings", "map_btf", "pinned_paths",
           "program_maps", "read_lost", "ring_info"]

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
    #: the programs using the ring: ``{"id": prog id, "pids": [pids holding it]}``
    programs: list[dict[str, Any]] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  #: processes holding the map itself

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


def fd_owners(proc: str = "/proc") -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """(map id -> pids, program id -> pids) of the processes holding BPF map
    and program fds, read from ``/proc/PID/fdinfo`` (its ``map_id:`` and
    ``prog_id:`` lines).  Only fds whose link says ``anon_inode:bpf-map`` or
    ``bpf-prog`` are read, so the scan stays cheap; processes that go away
    or that we may not inspect are skipped."""
    maps: dict[int, set[int]] = {}
    progs: dict[int, set[int]] = {}
    try:
        pids = [int(d) for d in os.listdir(proc) if d.isdigit()]
    except OSError:
        return {}, {}
    for pid in pids:
        fddir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fddir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fddir}/{fd}")
            except OSError:
                continue
            if target not in ("anon_inode:bpf-map", "anon_inode:bpf-prog"):
                continue
            key, table = (("map_id:", maps) if target.endswith("map") else ("prog_id:", progs))
            try:
                with open(f"{proc}/{pid}/fdinfo/{fd}") as f:
                    for line in f:
                        if line.startswith(key):
                            table.setdefault(int(line.split()[1]), set()).add(pid)
                            break
            except (OSError, ValueError, IndexError):
                continue
    return ({k: sorted(v) for k, v in maps.items()}, {k: sorted(v) for k, v in progs.items()})


def _programs() -> Iterator[tuple[int, list[int], int]]:
    """Yield (program id, ids of the maps it uses, its BTF id) for every
    program on the host that can still be opened and asked."""
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
        yield pid, ids, btf_id


def program_maps() -> dict[int, list[int]]:
    """Program id -> ids of the maps it uses, for every program on the host."""
    return {pid: ids for pid, ids, _btf in _programs()}


def _users(info: RingInfo, progs: dict[int, list[int]],
           owners: tuple[dict[int, list[int]], dict[int, list[int]]]) -> None:
    info.pids = owners[0].get(info.id, [])
    info.programs = [{"id": p, "pids": owners[1].get(p, [])}
                     for p, ids in sorted(progs.items()) if info.id in ids]


def _open(fd: int, what: str = "map") -> OwnedFD:
    return OwnedFD(fd, what)


def _programs_using(map_id: int) -> Iterator[tuple[list[int], int]]:
    """Yield (map ids, btf id) of every program that uses ``map_id``."""
    for _pid, ids, btf_id in _programs():
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


def list_rings(with_lost: bool = True, with_users: bool = True) -> list[RingInfo]:
    """Every ring map on the host (both types), in id order; ``with_users``:
    with the programs using each ring and the pids holding them."""
    pins = pinned_paths()
    out: list[RingInfo] = []
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
    if with_users and out:
        progs, owners = program_maps(), fd_owners()
        for r in out:
            _users(r, progs, owners)
    return out


def ring_info(ref: MapRef | str) -> RingInfo:
    """Describe one ring named the bpftool way."""
    if isinstance(ref, str):
        ref = MapRef.parse(ref)
    with ref.open_owned() as fd:
        info = _sys.map_info(fd.fileno())
        pins = pinned_paths() if info.type in RING_TYPES else None
        ring = _describe(fd.fileno(), pins, True)
    _users(ring, program_maps(), fd_owners())
    return ring
