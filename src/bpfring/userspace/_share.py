"""Maps shared with other processes: pinned files holding a header and the
map's storage, opened again by any process of the same user.

A pinned map is one file in a *private* directory (created 0700, owned by
the user, never through a symlink; ``/dev/shm/...`` is the natural place: a
tmpfs, so the file is memory).  The file is:

* bytes ``[0, PAGE_SIZE)``: the header (:data:`HEADER`, little-endian):
  magic ``b"BPFRUMAP"``, version, header size (the page size), map type,
  key size, value size, max_entries, map flags, CPU slots of per-CPU values,
  storage size, a generation counter (hash maps), the page size, the name;
* bytes ``[PAGE_SIZE, PAGE_SIZE + storage size)``: the storage, exactly the
  bytes of the map's memfd (the layouts of :mod:`._maps`, :mod:`._hash`,
  :mod:`._special`, :mod:`._ringbuf`), unchanged: the header lives in its
  own page in front, so no offset inside the storage moves.

Pinning maps the file over the map's existing mapping (``MAP_FIXED``, same
addresses: every view and region the program holds stays valid), after
copying the current contents in.  Opening maps the storage and checks every
header field against what the map type's layout needs (the file is input
from another process: :func:`parse_header` refuses anything inconsistent).

What is safe between processes (see docs/userspace.md, "Sharing maps"):
hash inserts and deletes, queue/stack pushes and pops, and ring buffer
reservations take an exclusive ``flock`` on the file, so slot claims are
atomic between processes; a hash map's key -> slot index is per process
and rebuilt from the slots when the header's generation (bumped by every
insert and delete) has moved.  Array elements and hash values are plain
shared memory, as a kernel map's values are to programs.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import mmap
import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._fd import OwnedFD
from ..errors import BPFError
from ._errors import UserLoadError
from ._maps import (
    ARRAY,
    HASH,
    LRU_HASH,
    LRU_PERCPU_HASH,
    MAP_TYPE_NAMES,
    PERCPU_ARRAY,
    PERCPU_HASH,
    QUEUE,
    RINGBUF,
    STACK,
    USER_RINGBUF,
    _r8,
)

if TYPE_CHECKING:
    from ._maps import UserMap

__all__ = ["HEADER", "MAGIC", "Header", "SharedFile", "open_pinned", "parse_header",
           "pin_map", "pinned_dir"]

MAGIC = b"BPFRUMAP"
VERSION = 1
#: magic, version, header size, type, key size, value size, max_entries, flags,
#: ncpu, storage size, generation, page size, reserved, name
HEADER = struct.Struct("<8sIIIIIIIIQQII64s")
GEN_OFFSET = 48
SHAREABLE = frozenset({ARRAY, PERCPU_ARRAY, HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH,
                       QUEUE, STACK, RINGBUF, USER_RINGBUF})
_PERCPU = frozenset({PERCPU_ARRAY, PERCPU_HASH, LRU_PERCPU_HASH})
_MAX_STORAGE = 1 << 36
_MAX_SIZE = 1 << 24  # key or value bytes
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_MAP_SHARED, _MAP_FIXED = 0x01, 0x10
_RW = mmap.PROT_READ | mmap.PROT_WRITE


@dataclass(frozen=True)
class Header:
    """A pinned map file's header, checked (see :func:`parse_header`)."""

    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    ncpu: int
    storage_size: int
    name: str

    def pack(self, page: int) -> bytes:
        return HEADER.pack(MAGIC, VERSION, page, self.map_type, self.key_size,
                           self.value_size, self.max_entries, self.flags, self.ncpu,
                           self.storage_size, 0, page, 0, self.name.encode())


def storage_size(map_type: int, key_size: int, value_size: int, max_entries: int, ncpu: int,
                 page: int) -> int:
    """Bytes of storage the map type's layout needs (as the map classes allocate it)."""
    def pages(n: int) -> int:
        return max(page, (n + page - 1) // page * page)

    per = ncpu if map_type in _PERCPU else 1
    if map_type in (ARRAY, PERCPU_ARRAY):
        return pages(max_entries * per * _r8(value_size))
    if map_type in (HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH):
        return pages(max_entries * (8 + _r8(key_size) + per * _r8(value_size)))
    if map_type in (QUEUE, STACK):
        return pages(8 + (max_entries + 1) * value_size)
    return 2 * page + max_entries  # ring buffers: consumer page, producer page, data


def _check_shape(map_type: int, key_size: int, value_size: int, max_entries: int,
                 page: int) -> str | None:
    """Why these parameters are not a map the runtime makes, or None."""
    if map_type not in SHAREABLE:
        return f"map type {MAP_TYPE_NAMES.get(map_type, map_type)} cannot be shared"
    if max_entries <= 0 or key_size > _MAX_SIZE or value_size > _MAX_SIZE:
        return "bad key size, value size or max_entries"
    if map_type in (ARRAY, PERCPU_ARRAY):
        ok = key_size == 4 and value_size > 0
    elif map_type in (QUEUE, STACK):
        ok = key_size == 0 and value_size > 0
    elif map_type in (RINGBUF, USER_RINGBUF):
        ok = key_size == 0 and value_size == 0 and not max_entries & (max_entries - 1) \
            and max_entries % page == 0
    else:
        ok = key_size > 0 and value_size > 0
    return None if ok else (f"key size {key_size}, value size {value_size}, max_entries "
                            f"{max_entries} do not make a {MAP_TYPE_NAMES[map_type]} map")


def parse_header(raw: bytes, page: int, ncpu: int) -> Header:
    """The header at the start of ``raw`` (a pinned file's first bytes), every
    field checked; :class:`UserLoadError` saying what is wrong otherwise."""
    if len(raw) < HEADER.size:
        raise UserLoadError(f"pinned map header is {len(raw)} bytes, not {HEADER.size}")
    (magic, version, hsize, mtype, ksize, vsize, maxe, flags, cpus, ssize, _gen, psize,
     _res, rname) = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise UserLoadError("not a bpfring pinned map (bad magic)")
    if version != VERSION:
        raise UserLoadError(f"pinned map format version {version} (this bpfring reads "
                            f"{VERSION})")
    if hsize != page or psize != page:
        raise UserLoadError(f"pinned map made with page size {psize} (header {hsize}); "
                            f"this system's is {page}")
    why = _check_shape(mtype, ksize, vsize, maxe, page)
    if why:
        raise UserLoadError(f"pinned map header: {why}")
    want_cpus = ncpu if mtype in _PERCPU else 1
    if cpus != want_cpus:
        raise UserLoadError(f"pinned map has {cpus} CPU slots per value, this system "
                            f"{want_cpus}")
    want = storage_size(mtype, ksize, vsize, maxe, cpus, page)
    if ssize != want or ssize > _MAX_STORAGE:
        raise UserLoadError(f"pinned map storage is {ssize} bytes; its parameters need {want}")
    name = rname.rstrip(b"\0")
    if b"\0" in name or not _NAME.fullmatch(name.decode("ascii", "replace")):
        raise UserLoadError("pinned map header has a bad name")
    return Header(mtype, ksize, vsize, maxe, flags, cpus, ssize, name.decode("ascii"))


# ------------------------------------------------------------------ directories


def pinned_dir(path: str | os.PathLike[str], create: bool = True) -> OwnedFD:
    """An fd of the private directory ``path`` (made 0700 when missing and
    ``create``): it must be a real directory (not a symlink), owned by this
    user, with no group or other permissions."""
    p = os.fspath(path)
    if create:
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            pass
    try:
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise BPFError(f"pinned map directory {p!r}: {e.strerror}", errno=e.errno,
                       hint="give a private directory, e.g. under /dev/shm") from None
    owned = OwnedFD(fd, f"pinned map directory {p}")
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        owned.close()
        raise BPFError(f"pinned map directory {p!r} is not private (owner {st.st_uid}, mode "
                       f"{stat.S_IMODE(st.st_mode):o})",
                       hint="it must be owned by this user with mode 0700")
    return owned


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise BPFError(f"map name {name!r} cannot name a pinned file",
                       hint="letters, digits, '_', '.', '-', at most 64")
    return name


def _check_file(fd: int, what: str) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise UserLoadError(f"{what} is not a private regular file of this user")
    return st


# ------------------------------------------------------------------ the file


class SharedFile:
    """The pinned file of one map: its fd, the header page mapped, the lock."""

    def __init__(self, fd: OwnedFD, path: str) -> None:
        self.fd = fd
        self.path = path
        self._mm: mmap.mmap | None = mmap.mmap(fd.fileno(), mmap.PAGESIZE, mmap.MAP_SHARED,
                                               _RW)
        self._gen = memoryview(self._mm)[GEN_OFFSET:GEN_OFFSET + 8].cast("Q")
        self._depth = 0

    @property
    def generation(self) -> int:
        return int(self._gen[0])

    def bump(self) -> int:
        """Advance the generation (under the lock); the new value."""
        self._gen[0] = (self._gen[0] + 1) & 0xFFFF_FFFF_FFFF_FFFF
        return int(self._gen[0])

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The exclusive flock on the file (re-entrant within this object)."""
        if self._depth == 0:
            fcntl.flock(self.fd.fileno(), fcntl.LOCK_EX)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                fcntl.flock(self.fd.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        self._gen.release()
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        self.fd.close()


def _map_fixed(addr: int, length: int, fd: int, offset: int) -> None:
    got = _libc.mmap(addr, length, _RW, _MAP_SHARED | _MAP_FIXED, fd, offset)
    if got is None or got != addr:
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of a pinned map failed: {os.strerror(err)}")


def _storage(m: UserMap) -> tuple[int, int, Any]:
    """(address, length, owner of the fd) of a map's storage mapping."""
    ring = getattr(m, "_ring", None)
    if ring is not None:
        return ring.addr, 2 * ring.page + ring.size, ring
    b = m._backing
    if b is None:
        raise BPFError(f"map {m.name!r} has no storage to share")
    ref = ctypes.c_char.from_buffer(b.view)
    addr = ctypes.addressof(ref)
    del ref
    return addr, b.length, b


def _remap(m: UserMap, fd: int) -> None:
    """Map the file's storage over the map's own mapping, at the same addresses."""
    page = mmap.PAGESIZE
    addr, length, owner = _storage(m)
    _map_fixed(addr, length, fd, page)
    ring = getattr(m, "_ring", None)
    if ring is not None:  # the data area's second copy
        _map_fixed(addr + length, ring.size, fd, page + 2 * page)
    old = owner.fd
    with contextlib.suppress(OSError):
        os.ftruncate(old.fileno(), 0)  # the memfd's pages are not mapped any more
    owner.fd = OwnedFD.dup(fd, f"pinned map {m.name}")
    old.close()


def header_of(m: UserMap) -> Header:
    page = mmap.PAGESIZE
    why = _check_shape(m.type, m.key_size, m.value_size, m.max_entries, page)
    if why:
        raise BPFError(f"map {m.name!r}: {why}")
    cpus = m._ncpu if m.type in _PERCPU else 1
    return Header(m.type, m.key_size, m.value_size, m.max_entries, m.flags, cpus,
                  storage_size(m.type, m.key_size, m.value_size, m.max_entries, cpus, page),
                  _check_name(m.name))


def _create(dirfd: int, name: str, hdr: Header, content: bytes) -> int:
    """Write the file under a temporary name, then link it in (never replacing)."""
    page = mmap.PAGESIZE
    tmp = f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dirfd)
    try:
        os.ftruncate(fd, page + hdr.storage_size)
        os.pwrite(fd, hdr.pack(page), 0)
        os.pwrite(fd, content, page)
        os.link(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except BaseException:
        os.close(fd)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dirfd)
    return fd


def _open(dirfd: int, name: str, what: str) -> tuple[int, Header]:
    try:
        fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError as e:
        raise BPFError(f"{what}: {e.strerror}", errno=e.errno,
                       hint="pinned maps are regular files, never symlinks") from None
    try:
        st = _check_file(fd, what)
        from ._maps import possible_cpus

        try:
            hdr = parse_header(os.pread(fd, HEADER.size, 0), mmap.PAGESIZE, possible_cpus())
        except UserLoadError as e:
            raise UserLoadError(f"{what}: {e}") from None
        if st.st_size != mmap.PAGESIZE + hdr.storage_size:
            raise UserLoadError(f"{what} is {st.st_size} bytes, its header says "
                                f"{mmap.PAGESIZE + hdr.storage_size}")
    except BaseException:
        os.close(fd)
        raise
    return fd, hdr


def adopt(m: UserMap, fd: int, path: str) -> None:
    """Put map ``m`` on the file (storage remapped, share state attached)."""
    _remap(m, fd)
    m._share = SharedFile(OwnedFD.dup(fd, f"pinned map {path}"), path)
    m._shared_changed()


def pin_map(m: UserMap, dirfd: int, name: str, path: str, reuse: bool) -> bool:
    """Pin ``m`` as ``name`` in the directory; with ``reuse``, an existing file
    of the same shape is used instead (its contents win).  True if reused."""
    if m._share is not None:
        raise BPFError(f"map {m.name!r} is already pinned at {m._share.path}")
    hdr = header_of(m)
    _check_name(name)
    addr, length, _owner = _storage(m)
    content = bytes((ctypes.c_char * length).from_address(addr))
    try:
        fd = _create(dirfd, name, hdr, content)
        reused = False
    except FileExistsError:
        if not reuse:
            raise BPFError(f"{path} exists", errno=17, hint="unpin it or pick another path") \
                from None
        fd, got = _open(dirfd, name, f"pinned map {path}")
        mine = (hdr.map_type, hdr.key_size, hdr.value_size, hdr.max_entries, hdr.ncpu)
        theirs = (got.map_type, got.key_size, got.value_size, got.max_entries, got.ncpu)
        if mine != theirs:
            os.close(fd)
            raise UserLoadError(f"pinned map {path} is a {MAP_TYPE_NAMES[got.map_type]} map "
                                f"key {got.key_size} value {got.value_size} max_entries "
                                f"{got.max_entries}; map {m.name!r} is a {m.type_name} map "
                                f"key {m.key_size} value {m.value_size} max_entries "
                                f"{m.max_entries}") from None
        reused = True
    try:
        adopt(m, fd, path)
    finally:
        os.close(fd)
    return reused


def open_pinned(path: str | os.PathLike[str]) -> tuple[int, Header]:
    """Open a pinned map file (its directory checked as :func:`pinned_dir` does)."""
    p = os.fspath(path)
    head, name = os.path.split(p)
    d = pinned_dir(head or ".", create=False)
    try:
        return _open(d.fileno(), _check_name(name), f"pinned map {p}")
    finally:
        d.close()


def open_map(path: str | os.PathLike[str]) -> UserMap:
    """Open a map pinned by another process (:meth:`UserMap.pin`,
    ``load(..., pinned_maps=dir)``) as a :class:`UserMap` of this process,
    sharing its storage: keys and values are bytes (or ints of their size),
    ring buffers are read with ``read()``/``consume()`` and written (user
    rings) with ``write()``.  The file's header is checked first."""
    from ._maps import make_map, possible_cpus
    from ._memory import Memory

    p = os.fspath(path)
    fd, hdr = open_pinned(p)
    try:
        m = make_map(hdr.name, hdr.map_type, hdr.key_size, hdr.value_size, hdr.max_entries,
                     hdr.flags, Memory(), None, ncpu=possible_cpus())
        try:
            adopt(m, fd, p)
        except BaseException:
            m.close()
            raise
    finally:
        os.close(fd)
    return m


def shareable(m: UserMap) -> bool:
    """Whether ``load(pinned_maps=...)`` and ``pin_maps`` pin this map: a map
    type with a shareable layout that is not a global data section."""
    return m.type in SHAREABLE and m.section is None
