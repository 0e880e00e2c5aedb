"""Python functions as triggers: run a user-space program on each call.

``prog.attach_python(func)`` (or ``userspace.attach_python(func, prog)``)
runs ``prog`` every time ``func`` is called, before its body, with the
call's arguments in the ctx (:data:`CTX`, ``struct bpfring_pycall``)::

    struct bpfring_pycall {
            __u64 nargs;      /* arguments of the call, as bound (see below) */
            __u64 args[8];    /* the first 8 of them, converted as below */
            __u64 str_len[8]; /* for str/bytes arguments: their length in bytes */
    };

The arguments are the function's parameters as bound for the call, in
signature order, defaults applied: positional parameters, the ``*args``
values, keyword-only parameters, then the ``**kwargs`` values (a callable
without a signature: the call's positional then keyword arguments).

Conversions: ``int`` (and ``bool``) -> its two's complement low 64 bits;
``float`` -> its IEEE-754 double bits; ``str`` (UTF-8) and bytes-like ->
a pointer to a read-only copy, NUL-terminated, valid during the run (the
program reads it directly or with ``bpf_probe_read_user_str``), length in
``str_len``; ``None`` -> 0; anything else -> ``id(obj)``.

On Python 3.12+ the trigger is a ``sys.monitoring`` ``PY_START`` event on the
function's code object, so every existing reference to the function fires
it.  Before 3.12 (and for functions without Python code) the function is
replaced by a wrapper where it is defined (its module or class attribute,
found through ``__qualname__``); :attr:`PythonLink.wrapper` is that wrapper
for callers that hold the original.  The returned link detaches on
``close()`` or at the end of a ``with`` block.
"""

from __future__ import annotations

import functools
import inspect
import struct
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import UserRuntimeError

if TYPE_CHECKING:
    from ._object import UserProgram

__all__ = ["CTX", "MAX_ARGS", "PythonLink", "attach_python"]

MAX_ARGS = 8
#: ``struct bpfring_pycall``: nargs, args[8], str_len[8].
CTX = struct.Struct(f"<Q{MAX_ARGS}Q{MAX_ARGS}Q")
_M64 = (1 << 64) - 1
_BUFFERS = (bytes, bytearray, memoryview)


def bound_values(sig: inspect.Signature | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> list[Any]:
    """The call's arguments in signature order, defaults applied (see the
    module doc); the raw arguments when there is no signature or they do
    not bind (the call itself then raises as usual)."""
    if sig is None:
        return list(args) + list(kwargs.values())
    try:
        ba = sig.bind(*args, **kwargs)
    except TypeError:
        return list(args) + list(kwargs.values())
    ba.apply_defaults()
    out: list[Any] = []
    for name, p in sig.parameters.items():
        v = ba.arguments[name]
        if p.kind is p.VAR_POSITIONAL:
            out.extend(v)
        elif p.kind is p.VAR_KEYWORD:
            out.extend(v.values())
        else:
            out.append(v)
    return out


def convert(allv: list[Any]) -> tuple[int, list[int], list[int], list[bytes | None]]:
    """nargs, the u64 words, lengths, and the byte strings to place in memory
    (None where the word is the value itself)."""
    words, lens, blobs = [], [], []
    for v in allv[:MAX_ARGS]:
        blob: bytes | None = None
        if isinstance(v, bool | int):
            w = int(v) & _M64
        elif isinstance(v, float):
            w = struct.unpack("<Q", struct.pack("<d", v))[0]
        elif isinstance(v, str):
            blob = v.encode("utf-8", "surrogateescape")
            w = 0
        elif isinstance(v, _BUFFERS):
            blob = bytes(v)
            w = 0
        elif v is None:
            w = 0
        else:
            w = id(v) & _M64
        words.append(w)
        lens.append(len(blob) if blob is not None else 0)
        blobs.append(blob)
    return len(allv), words, lens, blobs


class PythonLink:
    """An attachment of a program to a Python function (close to detach)."""

    def __init__(self, func: Callable[..., Any], prog: UserProgram,
                 on_error: str = "raise") -> None:
        if on_error not in ("raise", "log"):
            raise ValueError(f"on_error must be 'raise' or 'log', not {on_error!r}")
        self.func = func
        self.prog = prog
        self.on_error = on_error
        self.calls = 0
        self.errors = 0
        self.last_retval: int | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._tool: int | None = None
        self._owner: tuple[Any, str] | None = None
        self.wrapper: Callable[..., Any] = func
        code = getattr(func, "__code__", None)
        monitoring = getattr(sys, "monitoring", None)
        if monitoring is not None and code is not None and inspect.isfunction(func):
            self._attach_monitoring(monitoring, code)
        else:
            self._attach_wrapper()

    # the two mechanisms ------------------------------------------------------------

    def _attach_monitoring(self, mon: Any, code: Any) -> None:
        tool = next((t for t in range(1, 6) if mon.get_tool(t) is None), None)
        if tool is None:
            self._attach_wrapper()  # every monitoring tool id is taken
            return
        mon.use_tool_id(tool, "bpfring.userspace")
        self._tool = tool
        self._code = code
        npos, nkw = code.co_argcount, code.co_kwonlyargcount
        varargs = bool(code.co_flags & inspect.CO_VARARGS)
        varkw = bool(code.co_flags & inspect.CO_VARKEYWORDS)
        names = code.co_varnames

        def on_start(c: Any, offset: int) -> Any:
            if c is not code or self._closed:
                return None
            loc = sys._getframe(1).f_locals  # the frame of the call starting
            vals: list[Any] = [loc.get(n) for n in names[:npos]]
            i = npos + nkw
            if varargs:
                vals += list(loc.get(names[i], ()))
            vals += [loc.get(n) for n in names[npos:npos + nkw]]
            if varkw:
                vals += list(dict(loc.get(names[i + varargs], {})).values())
            self._fire(vals)
            return None

        mon.register_callback(tool, mon.events.PY_START, on_start)
        mon.set_local_events(tool, code, mon.events.PY_START)

    def _attach_wrapper(self) -> None:
        func = self.func
        try:
            sig: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            sig = None

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self._closed:
                self._fire(bound_values(sig, args, kwargs))
            return func(*args, **kwargs)

        self.wrapper = wrapper
        owner = _owner_of(func)
        if owner is not None:
            obj, attr = owner
            setattr(obj, attr, wrapper)
            self._owner = owner

    # running -----------------------------------------------------------------------

    def _fire(self, values: list[Any]) -> None:
        with self._lock:
            self.calls += 1
            try:
                self.last_retval = self.prog._run_pycall(*convert(values))
            except UserRuntimeError:
                self.errors += 1
                if self.on_error == "raise":
                    raise
                import logging

                logging.getLogger("bpfring.userspace").exception(
                    "program %s attached to %s failed", self.prog.name,
                    getattr(self.func, "__qualname__", self.func))

    # lifecycle ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Detach (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._tool is not None:
            mon = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
            mon.set_local_events(self._tool, self._code, 0)
            mon.register_callback(self._tool, mon.events.PY_START, None)
            mon.free_tool_id(self._tool)
            self._tool = None
        if self._owner is not None:
            obj, attr = self._owner
            if getattr(obj, attr, None) is self.wrapper:
                setattr(obj, attr, self.func)
            self._owner = None

    def __enter__(self) -> PythonLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("sys.monitoring" if self._tool else "wrapper")
        return f"<PythonLink {getattr(self.func, '__qualname__', self.func)} -> " \
               f"{self.prog.name} ({state}) calls={self.calls}>"


def _owner_of(func: Callable[..., Any]) -> tuple[Any, str] | None:
    """(object, attribute) through which ``func`` is reached where it is
    defined (module global or class attribute), or None."""
    qual = getattr(func, "__qualname__", None)
    mod = sys.modules.get(getattr(func, "__module__", "") or "")
    if not qual or mod is None or "<locals>" in qual:
        return None
    obj: Any = mod
    parts = qual.split(".")
    for p in parts[:-1]:
        obj = getattr(obj, p, None)
        if obj is None:
            return None
    attr = parts[-1]
    raw = obj.__dict__.get(attr) if hasattr(obj, "__dict__") else None
    if raw is func:
        return obj, attr
    return None


def attach_python(func: Callable[..., Any], prog: UserProgram, *, on_error: str = "raise"
                  ) -> PythonLink:
    """Run ``prog`` on each call of ``func`` (see the module doc).  ``on_error``:
    ``"raise"`` lets a :class:`UserRuntimeError` of the program propagate to
    the caller of ``func``, ``"log"`` logs it and lets the call go on."""
    return PythonLink(func, prog, on_error)
