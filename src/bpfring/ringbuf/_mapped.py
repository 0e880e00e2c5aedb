"""What both ring kinds share: an owned map fd, the map's info, the two
mappings of its pages, an epoll instance watching the fd, and the
constructors (create, open a pin, from an id)."""

from __future__ import annotations

import errno as _errno
import logging
import mmap
import os
import select
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from .. import _ringbackend, _sys, _wait
from .._fd import OwnedFD
from .._ringbackend import KernelRing, RingBackend, UserRing
from .._ringcore import check_ring_size
from ..errors import BPFError, MapTypeError
from ..mapref import MapRef

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt



@dataclass(frozen=True)
class RingPages:
    """Ring memory that is not a kernel map (the user-space runtime's rings,
    :mod:`bpfring.userspace`), in the kernel's layout: ``pages`` covers the
    consumer page, the producer page and the data area twice in a row (so
    ``2 * PAGE_SIZE + 2 * size`` bytes), ``wake_fd`` is an eventfd the other
    side writes at each wakeup the kernel would send, and ``owner`` keeps the
    memory mapped while a ring uses it: ``owner.hold()`` when the ring opens,
    ``owner.release()`` when it closes."""

    pages: memoryview
    size: int
    wake_fd: int
    owner: Any
    name: str = ""


MapSource = int | MapRef | str | RingPages

log = logging.getLogger("bpfring")

PAGE_SIZE = mmap.PAGESIZE


def map_info_of(fd: int, given: int | None) -> _sys.MapInfo:
    """The info of the map behind ``fd``, our duplicate of the caller's fd
    ``given`` (or None when we opened it ourselves): an error names the fd
    the caller passed, not the duplicate they never saw."""
    try:
        return _sys.map_info(fd)
    except BPFError as e:
        if given is None or e.errno is None:
            raise
        hint = (f"fd {given} is not a BPF map; pass a map fd or a "
                "MapRef (\"id 42\", \"pinned PATH\", \"name NAME\")"
                if e.errno == _errno.EINVAL else e.hint)
        raise BPFError(f"reading info of map fd {given}: {os.strerror(e.errno)}",
                       errno=e.errno, hint=hint) from None


class MappedRing:
    """Base of :class:`~bpfring.RingBuffer` and :class:`~bpfring.UserRingBuffer`."""

    _map_type: ClassVar[int]
    _kind: ClassVar[str]
    # mmap protections of the consumer page, and of the producer page + data.
    _cons_prot: ClassVar[int]
    _data_prot: ClassVar[int]
    # What the private epoll waits for on the map fd (see bpfring._wait).
    _epoll_events: ClassVar[int]
    # The backend's binding of the mapped memory (made by _bind).
    _impl: KernelRing | UserRing
    # The two mappings of a kernel map (None over RingPages).
    _cons_mm: mmap.mmap | None
    _data_mm: mmap.mmap | None

    def __init__(self, source: MapSource, *, _owned: bool = False) -> None:
        _ringbackend.check_arch()
        #: The backend this ring uses for its whole life (chosen once: see
        #: bpfring._ringbackend); every shared-memory access goes through it.
        self._be: RingBackend = _ringbackend.impl
        self._closed = True
        what = f"{self._kind} ring buffer map"
        #: Wakeups come as eventfd writes (RingPages), not from a map fd: each
        #: write is one edge, and asyncio waits watch the private epoll.
        self._edge_wake = isinstance(source, RingPages)
        self._pages_owner: Any = None
        if isinstance(source, RingPages):
            self._open_pages(source, what)
            self._closed = False
            return
        if isinstance(source, str):
            source = MapRef.parse(source)
        given: int | None = None  # the caller's fd, named in errors (not our dup)
        if isinstance(source, MapRef):
            self._fd = OwnedFD(source.open(map_type=self._map_type), what)
        elif _owned:
            self._fd = OwnedFD(source, what)
        else:
            given = source
            self._fd = OwnedFD.dup(source, what)
        self._npd: npt.NDArray[np.uint8] | None = None
        try:
            fd = self._fd.fileno()
            info = map_info_of(fd, given)
            if info.type != self._map_type:
                raise MapTypeError(
                    f"map {info.name or info.id!r} (id {info.id}) is a {info.type_name} map, "
                    f"not a {_sys.MAP_TYPE_NAMES[self._map_type]} map",
                    hint=f"use {'UserRingBuffer' if info.type == 31 else 'RingBuffer'} "
                    "for this map" if info.type in (27, 31) else None,
                )
            self.info = info
            self._size: int = info.max_entries
            self._map_pages(fd)
            try:
                self._epoll = select.epoll()
                self._epoll.register(fd, self._epoll_events)
                # close() wakes every thread blocked in a wait on this
                # ring through it: see bpfring._wait.
                self._gate = _wait.Gate(self._epoll)
            except BaseException:
                if hasattr(self, "_epoll"):
                    self._epoll.close()
                self._unmap()
                raise
        except BaseException:
            self._fd.close()
            raise
        self._closed = False

    def _open_pages(self, src: RingPages, what: str) -> None:
        """__init__ for memory that is not a kernel map: the views are cut
        from ``src.pages``, the epoll watches ``src.wake_fd`` (a duplicate)."""
        check_ring_size(src.size, PAGE_SIZE)
        if src.pages.nbytes != 2 * PAGE_SIZE + 2 * src.size or src.pages.readonly:
            raise ValueError("RingPages.pages must be writable and hold the consumer page, "
                             "the producer page and the data area twice")
        self._fd = OwnedFD.dup(src.wake_fd, what)
        self.info = _sys.MapInfo(type=self._map_type, id=0, key_size=0, value_size=0,
                                 max_entries=src.size, flags=0, name=src.name, btf_id=0,
                                 btf_key_type_id=0, btf_value_type_id=0)
        self._size = src.size
        self._npd = None
        src.owner.hold()
        self._pages_owner = src.owner
        try:
            self._cons_mm = self._data_mm = None
            pages = src.pages.cast("B")
            self._cons_view = pages[:PAGE_SIZE].cast("Q")
            self._prod_view = pages[PAGE_SIZE:2 * PAGE_SIZE].cast("Q")
            self._data = pages[2 * PAGE_SIZE:]
            pages.release()
            self._words = self._bind()
            self._epoll = select.epoll()
            self._epoll.register(self._fd.fileno(), select.EPOLLIN | select.EPOLLET)
            self._gate = _wait.Gate(self._epoll)
        except BaseException:
            if hasattr(self, "_epoll"):
                self._epoll.close()
            for v in ("_words", "_data", "_prod_view", "_cons_view"):
                if hasattr(self, v):
                    getattr(self, v).release()
            self._fd.close()
            self._pages_owner = None
            src.owner.release()
            raise

    def _mmap(self, fd: int, length: int, prot: int, offset: int) -> mmap.mmap:
        try:
            return mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=prot, offset=offset)
        except OSError as e:
            if e.errno == _errno.EINVAL and prot & mmap.PROT_WRITE == 0 and offset == 0:
                hint = "open the map read-write: fds opened with BPF_F_RDONLY cannot be mmapped"
            elif e.errno == _errno.EPERM:
                hint = "the map is frozen (BPF_MAP_FREEZE) or the fd lacks write access"
            else:
                hint = "open the map read-write (no BPF_F_RDONLY/BPF_F_WRONLY)"
            raise BPFError(f"cannot mmap {self._kind} ring buffer: {e.strerror}",
                           errno=e.errno, hint=hint) from None

    def _map_pages(self, fd: int) -> None:
        """Map the consumer page (offset 0) and the producer page followed by
        the data area twice over (offset PAGE_SIZE, 2*size bytes of data), and
        set up the views of positions and data, then the kind's core."""
        self._cons_mm = self._mmap(fd, PAGE_SIZE, self._cons_prot, 0)
        try:
            self._data_mm = self._mmap(fd, PAGE_SIZE + 2 * self._size, self._data_prot,
                                       PAGE_SIZE)
        except BaseException:
            self._cons_mm.close()
            raise
        self._cons_view = memoryview(self._cons_mm).cast("Q")
        prod_page = memoryview(self._data_mm)
        self._prod_view = prod_page[:PAGE_SIZE].cast("Q")
        self._data = prod_page[PAGE_SIZE:]
        prod_page.release()
        self._words = self._bind()

    def _bind(self) -> memoryview:
        """Create the kind's sans-IO core and backend ring over the mapped
        views; return the core's header view (released at close)."""
        raise NotImplementedError

    def _np_data(self) -> npt.NDArray[np.uint8]:
        """The data area as a numpy uint8 array (made once, dropped at close)."""
        arr = self._npd
        if arr is None:
            import numpy as np

            arr = self._npd = np.frombuffer(self._data, dtype=np.uint8)
        return arr

    # Positions ---------------------------------------------------------------------

    @property
    def consumer_pos(self) -> int:
        return self._impl.consumer_pos()

    @property
    def producer_pos(self) -> int:
        return self._impl.producer_pos()

    # Context manager and fd plumbing -------------------------------------------------

    def fileno(self) -> int:
        """The map fd (a private duplicate, valid until :meth:`close`)."""
        self._check_open()
        return self._fd.fileno()

    @property
    def size(self) -> int:
        """Size of the data area in bytes."""
        return self._size

    @property
    def map_id(self) -> int:
        return self.info.id

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{type(self).__name__} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError

    def _waiter(self, timeout: float | None, recheck: float | None = None) -> _wait.Waiter:
        """A :class:`~bpfring._wait.Waiter` on this ring's epoll that raises
        ``ValueError`` once another thread closes the ring."""
        self._check_open()
        return _wait.Waiter(self._epoll, timeout, recheck=recheck, gate=self._gate,
                            what=type(self).__name__)

    def _wake_waiters(self) -> None:
        """Wake every thread waiting on this ring (they raise ValueError) and
        let them leave their waits (call it before taking the lock)."""
        self._gate.wake_all()

    def _release(self) -> None:
        """Mark closed, then drop the epoll, the views, the mappings and the fd
        (callers hold the ring's lock)."""
        self._closed = True
        self._epoll.close()
        self._gate.close()
        self._unmap()
        self._fd.close()

    def _unmap(self) -> None:
        self._npd = None
        for v in (self._words, self._data, self._prod_view, self._cons_view):
            v.release()
        for m in (self._data_mm, self._cons_mm):
            if m is None:  # RingPages: the owner unmaps
                continue
            try:
                m.close()
            except BufferError:
                # A caller still holds a view into the ring; the mapping is
                # released by the garbage collector once that view is gone.
                log.warning("ring buffer mapping still referenced; unmapping deferred")
        owner, self._pages_owner = self._pages_owner, None
        if owner is not None:
            owner.release()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd.fileno()}"
        return f"<{type(self).__name__} id={self.info.id} name={self.info.name!r} " \
               f"size={self._size} {state}>"

    def _repr_html_(self) -> str:
        """Jupyter: a table of the map's name, id, size and positions."""
        from ..btf._html import properties_html

        props: list[tuple[str, object]] = [("map name", self.info.name or "-"),
                                           ("map id", self.info.id), ("size", self._size)]
        if self._closed:
            props.append(("state", "closed"))
        else:
            cons, prod = self.consumer_pos, self.producer_pos
            props += [("consumer_pos", cons), ("producer_pos", prod),
                      ("bytes waiting", prod - cons)]
        return properties_html(type(self).__name__, props)

    # Constructors shared by both kinds ---------------------------------------------

    @classmethod
    def create(cls, size: int, *, name: str = "") -> Self:
        """Create a new standalone ring map of ``size`` bytes (a power of two
        and a multiple of the page size)."""
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"ring size must be an int, not {type(size).__name__} {size!r}")
        check_ring_size(size, PAGE_SIZE)
        fd = _sys.map_create(cls._map_type, 0, 0, size, name=name)
        return cls(fd, _owned=True)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        """Open a ring map pinned on a bpffs at ``path``."""
        fd = _sys.obj_get(os.fspath(path))
        return cls(fd, _owned=True)

    @classmethod
    def from_id(cls, map_id: int) -> Self:
        """Open a ring map by its kernel map id."""
        fd = _sys.map_get_fd_by_id(map_id)
        return cls(fd, _owned=True)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map on a bpffs at ``path`` so other processes can open it."""
        self._check_open()
        _sys.obj_pin(self._fd.fileno(), os.fspath(path))
