"""Kfunc prototypes for ``vmlinux.h``, written from the kernel's own BTF.

A BPF program calls a kernel function (a *kfunc*: ``bpf_task_from_pid``,
``bpf_rcu_read_lock``, ``bpf_cpumask_create``, ...) through an ``extern``
declaration marked ``__ksym``; libbpf then resolves it against the kernel's
BTF at load time.  The ``vmlinux.h`` that bpftool 7.1 writes has every kernel
*type* but no function declarations, so such programs do not compile unless
they declare each kfunc themselves.  This module writes the declarations.

Which functions are kfuncs: in the kernel they are listed in ``.BTF_ids``
sets, which user space cannot see; but kernels built with pahole >= 1.25 tag
each kfunc's ``BTF_KIND_FUNC`` with a ``BTF_KIND_DECL_TAG`` named
``bpf_kfunc`` (the ``__bpf_kfunc`` annotation).  Those tags are the marker
used here; a kernel without them simply gets no prototypes.

Each prototype is written as
``extern <ret> name(<params>) __attribute__((weak)) __attribute__((section(".ksyms")));``
(``__weak __ksym`` spelled out, so nothing depends on which of vmlinux.h or
``<bpf/bpf_helpers.h>`` comes first).  Weak, so a program still loads on a
kernel that lacks a kfunc it only calls behind ``bpf_ksym_exists()``.
Parameter names are left out: the verifier reads them (``__sz``, ``__ign``
suffixes) from the kernel's BTF, not the program's, and a name could collide
with a macro the program defined before including vmlinux.h.  An unused
``extern`` leaves no trace in the object, so programs that call no kfunc
compile to the same object as before.

Guards: defining ``BPF_NO_KFUNC_PROTOTYPES`` before including vmlinux.h
leaves all prototypes out (the macro name newer bpftool versions use for
the same purpose), and ``__BPFRING_NO_KFUNC_<name>`` leaves out one.  The
build uses the latter by itself: programs often declare the kfuncs they use
themselves, sometimes with a signature that differs from the kernel's in a
way C calls a conflict (``struct bpf_dynptr_kern *`` vs ``struct bpf_dynptr
*``, a missing ``const``); :func:`conflicts` reads clang's errors, names the
prototypes involved, and the build compiles again without them, so the
program's own declaration wins.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .btf import BTF, Kind, Type

__all__ = ["SKIP_MACRO_PREFIX", "VERSION", "conflicts", "insert", "kfuncs", "prototypes",
           "skip_flags"]

log = logging.getLogger("bpfring")

#: Bump when the generated text changes (it names the vmlinux.h cache directory).
VERSION = 1

#: ``-D<prefix><name>`` leaves the prototype of kfunc ``name`` out.
SKIP_MACRO_PREFIX = "__BPFRING_NO_KFUNC_"

_TAG = "bpf_kfunc"
_ATTRS = '__attribute__((weak)) __attribute__((section(".ksyms")))'
_QUALIFIERS = {Kind.CONST: "const", Kind.VOLATILE: "volatile", Kind.RESTRICT: "restrict"}
_MAX_DEPTH = 32  # deepest type nesting we spell before calling the type unspellable
_GUARD_RE = re.compile(r"#ifndef " + SKIP_MACRO_PREFIX + r"(\w+)\s*$")
_BLOCK_END = "#endif /* BPF_NO_KFUNC_PROTOTYPES */"


class _Unspellable(Exception):
    """A type with no C name (an anonymous struct, ...) or nested too deeply."""


def kfuncs(btf: BTF) -> list[Type]:
    """The ``FUNC`` types tagged ``bpf_kfunc`` in ``btf``, by name (first of a name)."""
    found: dict[str, Type] = {}
    for tag in btf.iter_types(Kind.DECL_TAG):
        if tag.name != _TAG or tag.component_idx != -1:
            continue
        func = btf.type(tag.type_id)
        if func.kind == Kind.FUNC and func.name:
            found.setdefault(func.name, func)
    return [found[name] for name in sorted(found)]


def _declarator(btf: BTF, type_id: int, inner: str, depth: int = 0) -> str:
    """C spelling of ``type_id`` applied to the declarator ``inner``.

    Works inside out, as C declarators do: a pointer prefixes ``*`` (and
    wraps an array or function declarator in parentheses), an array or
    function suffixes ``[n]`` or ``(params)``.  Type tags are dropped (the
    kernel's ``__tag(address_space(1))`` has no clang 14 spelling that calls
    would need).
    """
    if depth > _MAX_DEPTH:
        raise _Unspellable("type nested too deeply")
    t = btf.type(type_id)
    k = t.kind
    sep = f" {inner}" if inner else ""
    if k == Kind.UNKN:
        return f"void{sep}"
    if k in (Kind.INT, Kind.FLOAT, Kind.TYPEDEF):
        return f"{t.name}{sep}"
    if k in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD):
        if not t.name:
            raise _Unspellable(f"anonymous {k.name.lower()}")
        if k == Kind.FWD:
            word = "union" if t.kind_flag else "struct"
        else:
            word = {Kind.STRUCT: "struct", Kind.UNION: "union"}.get(k, "enum")
        return f"{word} {t.name}{sep}"
    if k == Kind.TYPE_TAG:
        return _declarator(btf, t.type_id, inner, depth + 1)
    if k in _QUALIFIERS:
        target = btf.type(t.type_id)
        while target.kind == Kind.TYPE_TAG:
            target = btf.type(target.type_id)
        if target.kind == Kind.PTR:  # qualifies the pointer itself: "* const p"
            return _declarator(btf, t.type_id, f"{_QUALIFIERS[k]}{sep}", depth + 1)
        return f"{_QUALIFIERS[k]} {_declarator(btf, t.type_id, inner, depth + 1)}"
    if k == Kind.PTR:
        target = btf.type(t.type_id)
        while target.kind == Kind.TYPE_TAG:
            target = btf.type(target.type_id)
        star = f"*{inner}"
        if target.kind in (Kind.ARRAY, Kind.FUNC_PROTO):
            star = f"({star})"
        return _declarator(btf, t.type_id, star, depth + 1)
    if k == Kind.ARRAY:
        return _declarator(btf, t.elem_type_id, f"{inner}[{t.nelems}]", depth + 1)
    if k == Kind.FUNC_PROTO:
        params = []
        for p in t.params:
            if p.type_id == 0 and not p.name:
                params.append("...")
            else:
                params.append(_declarator(btf, p.type_id, "", depth + 1))
        return _declarator(btf, t.type_id, f"{inner}({', '.join(params) or 'void'})", depth + 1)
    raise _Unspellable(f"BTF kind {k.name} in a prototype")


def declaration(btf: BTF, func: Type) -> str:
    """``extern <ret> name(<params>) __weak __ksym;`` for one kfunc FUNC type.

    Raises ValueError if a type in it cannot be spelled in C.
    """
    try:
        return f"extern {_declarator(btf, func.type_id, func.name)} {_ATTRS};"
    except _Unspellable as exc:
        raise ValueError(f"cannot write a prototype for {func.name}: {exc}") from None


def _ordinary_identifiers(btf: BTF) -> set[str]:
    """Typedef names and enumerators: C's ordinary identifiers in vmlinux.h,
    which a function of the same name would clash with (struct tags do not)."""
    names: set[str] = set()
    for t in btf.iter_types(Kind.TYPEDEF):
        names.add(t.name)
    for t in btf.iter_types("enum"):
        names.update(e.name for e in t.enumerators)
    return names


def prototypes(btf: BTF) -> str:
    """The block of kfunc prototypes to add to vmlinux.h ("" if ``btf`` tags none)."""
    funcs = kfuncs(btf)
    if not funcs:
        return ""
    taken = _ordinary_identifiers(btf)
    lines = [
        "",
        "/* Kernel functions callable from BPF programs (kfuncs), written by bpfring",
        " * from the FUNC entries of the kernel's BTF tagged \"bpf_kfunc\".  Define",
        " * BPF_NO_KFUNC_PROTOTYPES before including this file to leave them out,",
        f" * or {SKIP_MACRO_PREFIX}<name> to leave one out. */",
        "#ifndef BPF_NO_KFUNC_PROTOTYPES",
    ]
    skipped = []
    for func in funcs:
        if func.name in taken:
            skipped.append(func.name)
            continue
        try:
            decl = declaration(btf, func)
        except ValueError as exc:
            log.debug("%s", exc)
            skipped.append(func.name)
            continue
        lines += [f"#ifndef {SKIP_MACRO_PREFIX}{func.name}", decl, "#endif"]
    lines += [_BLOCK_END, ""]
    if skipped:
        log.debug("no vmlinux.h prototype for kfuncs %s", ", ".join(skipped))
    return "\n".join(lines)


def insert(header: bytes, block: str) -> bytes:
    """``header`` (bpftool's vmlinux.h) with ``block`` inside its include guard."""
    if not block:
        return header
    data = block.encode()
    guard_end = header.rfind(b"#endif /* __VMLINUX_H__ */")
    if guard_end < 0:
        return header.rstrip(b"\n") + b"\n" + data
    return header[:guard_end] + data.lstrip(b"\n") + b"\n" + header[guard_end:]


_LOCATION_RE = re.compile(r"^(.*?):(\d+):\d+: (?:error|note|warning): ", re.M)


def conflicts(stderr: str, header: Path, cwd: str | None = None) -> set[str]:
    """Kfuncs whose vmlinux.h prototype a failed compile complains about.

    Every diagnostic (error, or the note "previous declaration is here")
    located on a prototype line of ``header`` names that prototype: the line
    before it is its ``#ifndef __BPFRING_NO_KFUNC_<name>`` guard.
    """
    want = os.path.normpath(os.path.abspath(header))
    where = cwd or os.getcwd()
    lines: list[str] | None = None
    names: set[str] = set()
    for m in _LOCATION_RE.finditer(stderr):
        path = m.group(1).strip()
        if os.path.basename(path) != os.path.basename(want):
            continue
        if os.path.normpath(os.path.join(where, path)) != want:
            continue
        if lines is None:
            try:
                lines = header.read_text(errors="replace").splitlines()
            except OSError:
                return set()
        n = int(m.group(2)) - 1  # 0-based index of the diagnosed line
        if 1 <= n < len(lines):
            g = _GUARD_RE.match(lines[n - 1])
            if g:
                names.add(g.group(1))
    return names


def skip_flags(names: set[str] | list[str]) -> list[str]:
    """Compiler flags that leave the prototypes of ``names`` out."""
    return [f"-D{SKIP_MACRO_PREFIX}{name}" for name in sorted(names)]
