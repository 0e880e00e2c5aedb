"""Maps that hold no plain values: prog arrays (programs for tail calls) and
queue/stack maps (push/pop/peek)."""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import BPFError, MapTypeError
from ._errors import UserLoadError
from ._maps import ANY, EXIST, NOEXIST, QUEUE, STACK, UserMap, _Backing, _err

__all__ = ["ProgArrayMap", "QueueStackMap"]


class ProgArrayMap(UserMap):
    """``BPF_MAP_TYPE_PROG_ARRAY``: slots hold programs of the same object."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        if self.key_size != 4 or self.value_size != 4 or self.max_entries <= 0:
            raise UserLoadError(f"prog array {self.name!r}: key and value size must be 4")
        self._backing = _Backing(self.name, self.max_entries * 4)
        self.slots: dict[int, Any] = {}
        self.resolve: Callable[[Any], Any] = lambda p: p

    def program(self, index: int) -> Any:
        """The program at ``index``, or None (what bpf_tail_call jumps to)."""
        return self.slots.get(index)

    def update(self, key: Any, value: Any, flags: int = ANY) -> None:
        """Set slot ``key`` to a program (a program object of this object or its
        name)."""
        self._check_open()
        i = int.from_bytes(self._key(key), "little")
        if flags > EXIST:
            raise _err(_errno.EINVAL, "map update")
        if i >= self.max_entries:
            raise _err(_errno.E2BIG, "map update")
        if flags == NOEXIST:
            raise _err(_errno.EEXIST, "map update")
        self.slots[i] = self.resolve(value)

    def lookup(self, key: Any, default: Any = None) -> Any:
        self._check_open()
        return self.slots.get(int.from_bytes(self._key(key), "little"), default)

    def _get(self, key: bytes) -> bytes | None:
        return None if int.from_bytes(key, "little") not in self.slots else bytes(4)

    def _del(self, key: bytes) -> int:
        i = int.from_bytes(key, "little")
        if i >= self.max_entries:
            return -_errno.E2BIG
        return 0 if self.slots.pop(i, None) is not None else -_errno.ENOENT

    def _raw_keys(self) -> Iterator[bytes]:
        for i in sorted(self.slots):
            yield i.to_bytes(4, "little")

    def items(self) -> Iterator[tuple[Any, Any]]:
        for i in sorted(self.slots):
            yield i, self.slots[i]

    def p_delete(self, key: bytes) -> int:
        return self._del(key)


class QueueStackMap(UserMap):
    """``BPF_MAP_TYPE_QUEUE`` and ``BPF_MAP_TYPE_STACK`` (kernel/bpf/queue_stack_maps.c):
    memfd ``[u32 head][u32 tail][(max_entries + 1) values]``, head and tail as
    the kernel moves them.  Python side: :meth:`push`, :meth:`pop`, :meth:`peek`."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        if self.key_size != 0 or self.value_size <= 0 or self.max_entries <= 0:
            raise UserLoadError(f"{self.type_name} map {self.name!r}: key size must be 0, "
                                "value size and max_entries positive")
        self._size = self.max_entries + 1
        self._backing = _Backing(self.name, 8 + self._size * self.value_size)

    def _ht(self) -> tuple[int, int]:
        assert self._backing is not None
        v = self._backing.view
        head, tail = int.from_bytes(v[0:4], "little"), int.from_bytes(v[4:8], "little")
        if head >= self._size or tail >= self._size:  # a pinned file written elsewhere
            raise BPFError(f"{self.type_name} map {self.name!r}: head {head} or tail {tail} "
                           f"is past its {self._size} slots (corrupt shared storage)",
                           errno=_errno.EUCLEAN)
        return head, tail

    def _set_ht(self, head: int, tail: int) -> None:
        assert self._backing is not None
        self._backing.view[0:8] = head.to_bytes(4, "little") + tail.to_bytes(4, "little")

    def _slot(self, i: int) -> slice:
        return slice(8 + i * self.value_size, 8 + (i + 1) * self.value_size)

    def p_push(self, value: bytes, flags: int) -> int:
        if self._share is not None:  # another process may push or pop: under its lock
            with self._share.locked():
                return self._push(value, flags)
        return self._push(value, flags)

    def p_get(self, delete: bool) -> tuple[int, bytes]:
        """(0, value) or (-ENOENT, zeros): pop (delete) or peek."""
        if self._share is not None:
            with self._share.locked():
                return self._get_one(delete)
        return self._get_one(delete)

    def _push(self, value: bytes, flags: int) -> int:
        if flags & NOEXIST or flags > EXIST:
            return -_errno.EINVAL
        head, tail = self._ht()
        if (head + 1) % self._size == tail:  # full
            if flags != EXIST:
                return -_errno.E2BIG
            tail = (tail + 1) % self._size  # overwrite the oldest element
        assert self._backing is not None
        self._backing.view[self._slot(head)] = value[:self.value_size]
        self._set_ht((head + 1) % self._size, tail)
        return 0

    def _get_one(self, delete: bool) -> tuple[int, bytes]:
        head, tail = self._ht()
        if head == tail:
            return -_errno.ENOENT, bytes(self.value_size)
        assert self._backing is not None
        if self.type == QUEUE:
            value = bytes(self._backing.view[self._slot(tail)])
            if delete:
                self._set_ht(head, (tail + 1) % self._size)
        else:
            top = (head - 1) % self._size
            value = bytes(self._backing.view[self._slot(top)])
            if delete:
                self._set_ht(top, tail)
        return 0, value

    def push(self, value: Any, flags: int = ANY) -> None:
        """Add ``value`` (typed or bytes); ``flags=2`` (BPF_EXIST) drops the oldest
        element when full."""
        self._check_open()
        ret = self.p_push(self._raw(value, self.value_size, self.value_type, "value"), flags)
        if ret < 0:
            raise _err(-ret, "map push")

    def pop(self, default: Any = None) -> Any:
        self._check_open()
        ret, raw = self.p_get(True)
        return default if ret < 0 else self._decode_value(raw)

    def peek(self, default: Any = None) -> Any:
        self._check_open()
        ret, raw = self.p_get(False)
        return default if ret < 0 else self._decode_value(raw)

    def values(self) -> Iterator[Any]:
        """The elements in the order :meth:`pop` would return them (not consumed)."""
        self._check_open()
        head, tail = self._ht()
        order = []
        i = tail
        while i != head:
            order.append(i)
            i = (i + 1) % self._size
        if self.type == STACK:
            order.reverse()
        assert self._backing is not None
        for i in order:
            yield self._decode_value(bytes(self._backing.view[self._slot(i)]))

    def __len__(self) -> int:
        head, tail = self._ht()
        return (head - tail) % self._size

    def _get(self, key: bytes) -> bytes | None:
        raise MapTypeError(f"{self.type_name} map {self.name!r} has no keys; use peek/pop/push")
