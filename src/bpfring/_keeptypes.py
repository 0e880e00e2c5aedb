"""Keep the types of a BPF program's own headers in its object's BTF.

Real libbpf programs declare their event record in a header shared with user
space (``struct event`` in ``exitsnoop.h``) and use it in BPF code only
through a pointer (``e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0)``).  clang
puts into BTF only the types that some emitted variable or function refers
to, so such a type is absent from the object (``-fno-eliminate-unused-debug-
types`` does not change that on the BPF target with clang 14), and
``record="event"`` or ``bpfring tail --type event`` cannot find it.

The fix is a second compile of a generated wrapper translation unit::

    #include "/abs/path/prog.bpf.c"
    struct event *__bpfring_keep_<tag>_0 __attribute__((section(".bpfring.keep"), used));
    ...

one global pointer per type ("anchor"): clang emits the pointer's BTF and,
since the type is complete, the full definition of the pointee.  libbpf
skips the unknown ``.bpfring.keep`` data section when it opens the object
(an INFO message, "skipping unrecognized data section"), so the program gets
no extra map and its code is the same; the types are part of the object's
BTF, and so also of the BTF the kernel holds for the loaded program (which
is where ``bpfring tail --type`` looks).  A pointer, rather than a variable
of the type itself, also works for types that cannot have variables.

Which types: every struct, union and enum *defined*, and every typedef
declared, at file scope of the program's own headers.  The names come from
clang's AST: the source is preprocessed (``-E``, which keeps line markers
with the real file names but drops comments and macros), the result is
dumped (``-Xclang -ast-dump``, text form; about 20 MB for a program
including vmlinux.h, parsed with two C-level regex scans), and each
top-level declaration is attributed to the file of its first source
location.  Skipped: anonymous types without a typedef, forward
declarations, declarations inside functions, typedefs that redeclare one
from elsewhere (``typedef unsigned int u32;``), and names that are macros at
the end of the program.  Typedefs of incomplete types are weeded out by the
compiler itself: each typedef anchor comes with a ``_Static_assert(sizeof(T)
> 0)``, and a wrapper line clang rejects is dropped before a second try.

"The program's own headers" are the files the compile read (clang's
dependency output), minus: the source itself (unless ``keep_types="all"``),
any ``vmlinux*.h``, bpfring's and libbpf's BPF headers (``<bpf/bpf_*.h>``,
also when a copy sits in a user include directory), kernel-style headers
(files directly in a ``linux``, ``asm`` or ``asm-generic`` directory) and
everything under the system include directories and bpfring's cache.  A
header whose text mentions none of ``struct``/``union``/``enum``/``typedef``
is not worth the AST dump; if no header is left, nothing is done.

Nothing here can fail a build that compiled: if the wrapper does not
compile, the plain object is kept and a warning says why.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["MODES", "VERSION", "Anchor", "KeepResult", "keep", "normalize_mode", "resolve_mode",
           "user_files"]

log = logging.getLogger("bpfring")

#: Bump when the wrapper's text or the selection of types changes (part of the cache key).
VERSION = 1

#: Values of the ``keep_types`` build option.
MODES = ("headers", "all", "none")

SECTION = ".bpfring.keep"

_SYSTEM_DIRS = ("/usr/include", "/usr/local/include", "/usr/lib", "/usr/lib64",
                "/usr/local/lib")  # fmt: skip
_KERNEL_HEADER_DIRS = frozenset({"linux", "asm", "asm-generic"})
_VMLINUX_RE = re.compile(r"vmlinux[\w.-]*\.h")
_HAS_TYPES_RE = re.compile(rb"\b(?:struct|union|enum|typedef)\b")
_LINE_MARKER_RE = re.compile(r'^# \d+ "((?:[^"\\]|\\.)*)"', re.M)
# A top-level node of the text AST dump: "|-RecordDecl 0x55.. prev 0x55.. <range> loc rest".
_TOP_RE = re.compile(
    r"^[|`]-(?P<kind>RecordDecl|EnumDecl|TypedefDecl) (?P<ptr>0x[0-9a-f]+) "
    r"(?:parent 0x[0-9a-f]+ )?(?:prev (?P<prev>0x[0-9a-f]+) )?"
    r"<(?P<range>[^\n]*?)> (?P<loc>\S+)(?: (?P<rest>[^\n]*))?$",
    re.M,
)
_NEXT_TOP_RE = re.compile(r"^[|`]-", re.M)
_ENUMERATOR_RE = re.compile(r"^[| ] [|`]-EnumConstantDecl ", re.M)
_FLAGS = frozenset({"implicit", "used", "referenced", "imported", "hidden"})
_IDENT_RE = re.compile(r"[A-Za-z_]\w*")
_C_KEYWORDS = frozenset({"struct", "union", "enum", "class"})


def normalize_mode(value: object, env: str | None = None) -> str:
    """The ``keep_types`` option as one of :data:`MODES`.

    ``True`` means ``"headers"``; ``False`` and ``None`` mean ``"none"``.
    Strings are matched case-insensitively (``"0"``, ``"off"``, ``"no"`` are
    ``"none"``), so the value can come from an environment variable, named
    by ``env`` in the error for a bad value.
    """
    if value is True:
        return "headers"
    if value is False or value is None:
        return "none"
    if isinstance(value, str):
        v = value.strip().lower()
        if v in MODES:
            return v
        if v in ("1", "yes", "on", "true"):
            return "headers"
        if v in ("0", "no", "off", "false", ""):
            return "none"
    what = f"${env} (the default of keep_types)" if env else "keep_types"
    raise ValueError(f"{what} must be True, False, 'headers', 'all' or 'none', "
                     f"not {value!r}")


def resolve_mode(value: object) -> str:
    """The ``keep_types`` build option as given, or ``$BPFRING_KEEP_TYPES``
    (default ``"headers"``) when it is None, as one of :data:`MODES`."""
    if value is not None:
        return normalize_mode(value)
    return normalize_mode(os.environ.get("BPFRING_KEEP_TYPES", "headers"), "BPFRING_KEEP_TYPES")


@dataclasses.dataclass(frozen=True)
class Anchor:
    """One type to keep: ``spelling`` is how C names it (``struct event``,
    ``pair_t``), ``name`` the bare identifier, ``typedef`` whether it is one."""

    spelling: str
    name: str
    typedef: bool


@dataclasses.dataclass(frozen=True)
class KeepResult:
    """An object compiled from the wrapper, and the types it keeps."""

    path: Path
    types: tuple[str, ...]


def _under(path: str, directory: str) -> bool:
    directory = directory.rstrip("/")
    return path == directory or path.startswith(directory + "/")


def user_files(deps: Iterable[str], source: str | os.PathLike[str], mode: str,
               exclude_dirs: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """The files among ``deps`` (normalized absolute paths, as the build's
    depfile parser gives them) whose types are kept, in order."""
    if mode == "none":
        return []
    src = os.path.normpath(os.path.abspath(source))
    excluded = [os.path.normpath(os.path.abspath(d)) for d in exclude_dirs]
    out = []
    for dep in deps:
        path = os.path.normpath(dep)
        if path == src:
            if mode == "all":
                out.append(path)
            continue
        parent, name = os.path.split(path)
        pname = os.path.basename(parent)
        if (_VMLINUX_RE.fullmatch(name)
                or (pname == "bpf" and (name.startswith("bpf_") or name == "usdt.bpf.h"))
                or pname in _KERNEL_HEADER_DIRS
                or any(_under(path, d) for d in (*_SYSTEM_DIRS, *excluded))):
            continue
        out.append(path)
    return out


def _mentions_types(paths: Iterable[str]) -> bool:
    for p in paths:
        try:
            with open(p, "rb") as f:
                if _HAS_TYPES_RE.search(f.read()):
                    return True
        except OSError:
            return True  # let clang say what is wrong with it
    return False


def _unescape(name: str) -> str:
    """A file name from a ``# N "name"`` line marker (``\\\\`` and ``\\"`` escaped)."""
    return re.sub(r"\\(.)", r"\1", name)


def _file_tokens(dump: str, spellings: dict[str, str]) -> tuple[list[int], list[str]]:
    """Positions of the file-bearing locations in ``dump`` and their files.

    A location names its file after ``<`` (a range's start), ``, `` (its end)
    or ``> `` (the declaration's own location); ``at `` before it means a
    quoted type such as ``(unnamed struct at f.h:3:1)``, which does not count.
    ``str.find`` per file name is much faster than one regex with
    look-behinds over the ~20 MB dump.
    """
    found: dict[int, tuple[int, str]] = {}  # start -> (end, file)
    for name in sorted(spellings, key=len, reverse=True):
        n = len(name)
        pos = dump.find(name)
        while pos >= 0:
            end = pos + n
            if (pos > 0 and dump[pos - 1] in "< " and dump[pos - 4:pos] != " at "
                    and dump[end:end + 1] == ":" and dump[end + 1:end + 2].isdigit()
                    and pos not in found):
                found[pos] = (end, spellings[name])
            pos = dump.find(name, pos + 1)
    starts = sorted(found)
    # A short name found inside a longer one ("b.h" in "/x/a b.h") is not a location.
    keep_starts: list[int] = []
    files: list[str] = []
    covered = -1
    for st in starts:
        end, file = found[st]
        if st < covered:
            continue
        keep_starts.append(st)
        files.append(file)
        covered = end
    return keep_starts, files


def parse_ast(dump: str, spellings: dict[str, str], wanted: set[str]) -> list[Anchor]:
    """The types declared at file scope in ``wanted`` files, from a text AST dump.

    ``spellings`` maps each file name as clang prints it (from the line
    markers) to its normalized path.  The dump prints a location's file only
    when it differs from the previous location printed, so the file of a
    declaration is that of the last file-bearing location at or before its
    range's start.  Only the stretches of the dump that follow a location in
    a wanted file are scanned for declarations.
    """
    starts, files = _file_tokens(dump, spellings)

    def file_at(pos: int) -> str | None:
        i = bisect.bisect_right(starts, pos) - 1
        return files[i] if i >= 0 else None

    def in_wanted(ptr: str) -> bool:
        """Whether the declaration at ``ptr`` (an earlier top-level one) is in a wanted file."""
        pos = dump.find(f"Decl {ptr} ")
        if pos < 0:
            return False
        lt = dump.find(" <", pos, dump.find("\n", pos))
        return lt >= 0 and file_at(lt + 2) in wanted

    anchors: dict[str, Anchor] = {}
    for i, (st, file) in enumerate(zip(starts, files, strict=True)):
        if file not in wanted:
            continue
        begin = dump.rfind("\n", 0, st) + 1
        stop = starts[i + 1] if i + 1 < len(starts) else len(dump)
        for m in _TOP_RE.finditer(dump, begin, stop):
            if file_at(m.start("range")) not in wanted:
                continue
            anchor = _anchor(dump, m, in_wanted)
            if anchor is not None:
                anchors.setdefault(anchor.spelling, anchor)
    return list(anchors.values())


def _anchor(dump: str, m: re.Match[str], in_wanted: Callable[[str], bool]) -> Anchor | None:
    """The type a top-level declaration line declares, if it is one to keep."""
    if m.group("range").startswith("<invalid sloc>"):
        return None
    words = (m.group("rest") or "").split()
    while words and words[0] in _FLAGS:
        words.pop(0)
    if not words or words[0] == "invalid":
        return None
    kind = m.group("kind")
    if kind == "RecordDecl":
        # "struct NAME definition"; anonymous ones have no NAME.
        if len(words) >= 3 and words[0] in ("struct", "union") and words[2] == "definition":
            return Anchor(f"{words[0]} {words[1]}", words[1], False)
        return None
    name = words[0]
    if not _IDENT_RE.fullmatch(name) or name in _C_KEYWORDS:
        return None
    if kind == "EnumDecl":
        # Its enumerators are child nodes (after any attributes): none means
        # a forward declaration.
        nxt = _NEXT_TOP_RE.search(dump, m.end())
        block = dump[m.end():nxt.start() if nxt else len(dump)]
        return Anchor(f"enum {name}", name, False) if _ENUMERATOR_RE.search(block) else None
    # TypedefDecl: a redeclaration of a typedef from elsewhere (vmlinux.h's u32) is not ours.
    prev = m.group("prev")
    if prev is not None and not in_wanted(prev):
        return None
    # Typedefs of types that stay incomplete ("typedef struct opaque opaque_t;",
    # "typedef int arr_t[];"): skip the obvious ones here (a struct declared
    # somewhere, "... struct opaque", but never defined); the _Static_assert
    # in the wrapper catches the rest.
    quoted = re.findall(r"'([^']*)'", m.group("rest") or "")
    real = quoted[-1] if quoted else ""
    if real.endswith("[]"):
        return None
    if (re.fullmatch(r"(struct|union) \w+", real) and dump.find(f" {real}\n") >= 0
            and dump.find(f" {real} definition\n") < 0):
        return None
    return Anchor(name, name, True)


def _tag(source: str) -> str:
    """A short per-source tag in anchor names, so that objects built from
    different sources can be linked together without duplicate symbols."""
    return hashlib.sha256(os.fsencode(source)).hexdigest()[:8]


def wrapper(source: str, anchors: Sequence[Anchor]) -> tuple[str, dict[int, int]]:
    """(text of the wrapper translation unit, wrapper line -> anchor index)."""
    tag = _tag(source)
    lines = [
        "/* Generated by bpfring: the program, then a pointer to each type declared",
        " * in its own headers, so that clang puts those types into its BTF. */",
        f'#include "{source}"',
    ]
    owner: dict[int, int] = {}
    for i, a in enumerate(anchors):
        lines.append(f"#ifndef {a.name}")
        if a.typedef:
            lines.append(f'_Static_assert(sizeof({a.name}) > 0, "bpfring: incomplete type");')
            owner[len(lines)] = i
        lines.append(f"{a.spelling} *__bpfring_keep_{tag}_{i} "
                     f'__attribute__((section("{SECTION}"), used));')
        owner[len(lines)] = i
        lines.append("#endif")
    return "\n".join(lines) + "\n", owner


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)


def _first_error(stderr: str) -> str:
    return next((ln for ln in stderr.splitlines() if ": error: " in ln), stderr.strip()[:200])


def discover(clang: str, args: Sequence[str], source: str, files: Sequence[str],
             work: Path) -> list[Anchor]:
    """Run clang on ``source`` (preprocess, then dump the AST) and return the
    types declared in ``files``.  Returns [] (and logs why) if clang fails."""
    pre = work / "keep.i"
    proc = _run([clang, *args, "-E", "-o", str(pre), source])
    if proc.returncode != 0:
        log.warning("cannot find the header types of %s: clang -E failed: %s",
                    source, _first_error(proc.stderr))
        return []
    text = pre.read_text(errors="surrogateescape")
    cwd = os.getcwd()
    wanted = set(files)
    spellings: dict[str, str] = {}
    for raw in set(_LINE_MARKER_RE.findall(text)):
        name = _unescape(raw)
        if not name.startswith("<"):
            spellings[name] = os.path.normpath(os.path.join(cwd, name))
    del text
    dump = subprocess.run(
        [clang, *args, "-x", "cpp-output", "-fsyntax-only", "-w", "-fno-color-diagnostics",
         "-Xclang", "-ast-dump", str(pre)],
        capture_output=True, check=False,
    )
    if dump.returncode != 0:
        log.warning("cannot find the header types of %s: the AST dump failed: %s", source,
                    _first_error(dump.stderr.decode(errors="replace")))
        return []
    return parse_ast(dump.stdout.decode(errors="surrogateescape"), spellings, wanted)


def keep(clang: str, args: Sequence[str], source: str | os.PathLike[str],
         deps: Sequence[str], work: Path, mode: str,
         exclude_dirs: Sequence[str | os.PathLike[str]] = ()) -> KeepResult | None:
    """Compile ``source`` again through a wrapper that keeps the types of its
    own headers (see the module documentation).

    ``args`` are the flags of the build's compile (without ``-c``/``-o``),
    ``deps`` the files that compile read.  Returns None when there is nothing
    to keep or keeping failed (logged); the build then uses its own object.
    """
    src = os.path.normpath(os.path.abspath(source))
    files = user_files(deps, src, mode, exclude_dirs)
    if not files or not _mentions_types(files):
        return None
    if any(c in src for c in '"\n\\'):
        log.warning("cannot keep the header types of %s: its path cannot be "
                    "#included", src)
        return None
    anchors = discover(clang, args, src, files, work)
    if not anchors:
        return None
    out = work / "keep.bpf.o"
    c_file = work / "keep.c"
    for _attempt in range(2):
        text, owner = wrapper(src, anchors)
        c_file.write_text(text)
        # The prefix map keeps the temporary directory's name out of the
        # debug info, so that the same inputs give the same object bytes.
        proc = _run([clang, *args, "-w", f"-fdebug-prefix-map={work}=/bpfring-keep",
                     "-c", str(c_file), "-o", str(out)])
        if proc.returncode == 0:
            kept = tuple(a.spelling for a in anchors)
            log.debug("kept %d header types of %s in its BTF: %s", len(kept), src,
                      ", ".join(kept))
            return KeepResult(out, kept)
        bad = _rejected(proc.stderr, c_file, owner)
        if not bad:
            break
        log.debug("not keeping %s (clang rejects them)",
                  ", ".join(anchors[i].spelling for i in sorted(bad)))
        anchors = [a for i, a in enumerate(anchors) if i not in bad]
        if not anchors:
            return None
    log.warning("could not keep the header types of %s in its BTF (its object is built "
                "without them): %s", src, _first_error(proc.stderr))
    return None


def _rejected(stderr: str, c_file: Path, owner: dict[int, int]) -> set[int]:
    """Anchors on wrapper lines that clang reported errors for."""
    bad: set[int] = set()
    for m in re.finditer(r"^(.*?):(\d+):\d+: error: ", stderr, re.M):
        if os.path.normpath(m.group(1)) == os.path.normpath(c_file):
            i = owner.get(int(m.group(2)))
            if i is None:
                return set()  # an error we do not know how to avoid
            bad.add(i)
    return bad
