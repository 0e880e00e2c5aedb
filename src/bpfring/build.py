"""Compile BPF C programs with clang, with a private, verified on-disk cache.

Public API:

* :func:`build` compiles a ``.bpf.c`` file and returns the path of the object.
* :func:`build_info` does the same and returns a :class:`BuildResult` that also
  says whether the cache was hit, which headers were used and what clang warned.
* :func:`build_source` / :func:`build_source_info` compile C text (this is what
  ``bpfring.load("...C source...")`` uses).
* :func:`vmlinux_header` generates (once per kernel) the ``vmlinux.h`` header
  with every kernel type and the kernel's kfunc prototypes, from the kernel's
  own BTF.
* :func:`header_btf` gives the BTF of the types a C header declares (for a
  ``.bpf.o`` built elsewhere without them).
* :func:`cache_dir` returns the per-user private cache directory.

Why a cache: compiling even a small BPF program takes a few hundred
milliseconds (``vmlinux.h`` alone is ~3 MB of C), which would make every
``bpfring.load()`` slow.  Why so careful with it: the cached object is later
loaded into the kernel, usually as root, so a cache another user could write
to would let them run code in our kernel.  Hence the cache lives in a
directory only we own (mode 0700, checked on every call), every write is
atomic (temp file in the same directory, then :func:`os.replace`), and every
object is verified against the SHA-256 recorded when it was built.

How the cache is keyed (the "direct mode" of ccache): a first key hashes
what we know before compiling (source path and content, the full clang
command line, clang's version and the ``vmlinux.h`` content).  Under that key
a small JSON manifest lists earlier results, each with every file the
compile actually read (from clang's ``-MD`` dependency output) and its
SHA-256.  A lookup re-hashes those files; if any changed, was removed, or the
object's own hash does not match, the program is rebuilt.

Header types (the ``keep_types`` option, :mod:`bpfring._keeptypes`): after
the compile, the types declared in the program's own headers are put into
its BTF by a second compile of a generated wrapper.  The wrapper is a
function of what the first key and the dependency hashes already cover
(plus the option and the generator's version, which are in the first key),
so the cache stays exact; the dependencies listed are those of the program.

Environment: ``BPFRING_CACHE_DIR`` (cache location), ``BPFRING_CLANG`` and
``BPFRING_BPFTOOL`` (name or path of the tools; default ``clang`` and
``bpftool``), ``BPFRING_KEEP_TYPES`` (default of the ``keep_types`` option:
``headers``, ``all`` or ``none``).  All are read on every call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import _keeptypes, _kfuncs
from ._cache import (
    Untrusted,
    atomic_write,
    locked,
    lookup_entry,
    private_root,
    private_subdir,
    read_manifest,
    read_trusted,
    sha256_file,
    sha256_json,
    sha256_trusted,
)
from .errors import BTFError, BuildError, ToolNotFound

if TYPE_CHECKING:
    from .btf import BTF

__all__ = [
    "KERNEL_BTF",
    "BuildResult",
    "build",
    "build_info",
    "build_source",
    "build_source_info",
    "cache_dir",
    "header_btf",
    "header_btf_info",
    "target_arch",
    "vmlinux_header",
]

log = logging.getLogger("bpfring")

#: Where the running kernel exposes its own type information.
KERNEL_BTF = "/sys/kernel/btf/vmlinux"

#: bpfring's own BPF headers (``#include <bpfring/ring.bpf.h>``).
INCLUDE_DIR = Path(__file__).parent / "include"

_FORMAT = 2  # bump to invalidate every cached object and manifest
_MAX_ENTRIES = 8  # results remembered per manifest (e.g. header versions)
_SYSTEM_INCLUDE = Path("/usr/include")

# platform.machine() -> the suffix of libbpf's __TARGET_ARCH_xxx macro.
_ARCH = {
    "x86_64": "x86",
    "amd64": "x86",
    "i386": "x86",
    "i686": "x86",
    "aarch64": "arm64",
    "arm64": "arm64",
    "riscv64": "riscv",
    "s390x": "s390",
    "ppc64le": "powerpc",
    "ppc64": "powerpc",
    "armv7l": "arm",
    "armv6l": "arm",
    "loongarch64": "loongarch",
    "mips64": "mips",
}

# platform.machine() -> Debian multiarch tuple, when sysconfig does not say.
_MULTIARCH = {
    "x86_64": "x86_64-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
    "s390x": "s390x-linux-gnu",
    "ppc64le": "powerpc64le-linux-gnu",
    "armv7l": "arm-linux-gnueabihf",
    "loongarch64": "loongarch64-linux-gnu",
}

# Warnings: everything in -Wall except the "unused" family, which BPF code
# trips constantly (helpers in shared headers, variables kept only for BTF).
_WARNINGS = (
    "-Wall",
    "-Wno-unused-variable",
    "-Wno-unused-function",
    "-Wno-unused-but-set-variable",
    "-Wno-unused-label",
    "-Wno-compare-distinct-pointer-types",
)

_TOOLS = {
    # tool -> (environment override, Debian package providing it)
    "clang": ("BPFRING_CLANG", "clang"),
    "bpftool": ("BPFRING_BPFTOOL", "bpftool"),
}


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """What one :func:`build_info` call produced.

    ``path`` is the object file (inside the cache: treat it as read-only, copy
    it if you need to modify it).  ``cached`` is true when no compiler ran.
    ``dependencies`` lists every file the compile read (source and headers);
    a change in any of them causes a rebuild.  ``warnings`` is clang's
    output when the object was built (also kept for cache hits).
    ``kept_types`` names the header types added to the object's BTF (see
    the ``keep_types`` option of :func:`build`), e.g. ``("struct event",)``.
    """

    path: Path
    cached: bool
    key: str
    source: Path
    dependencies: tuple[Path, ...]
    command: tuple[str, ...]
    warnings: str
    elapsed: float
    kept_types: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# The private cache directory


def _default_cache_path() -> Path:
    env = os.environ.get("BPFRING_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative paths
        return Path(xdg) / "bpfring"
    return Path.home() / ".cache" / "bpfring"


def _ensure_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or check that an existing one is ours
    and was never writable by others (the rules are in :mod:`bpfring._cache`)."""
    return private_root(path)


def cache_dir() -> Path:
    """Return bpfring's private per-user cache directory, creating it if needed.

    It is ``$BPFRING_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/bpfring``, else
    ``~/.cache/bpfring`` (read on every call, so tests can redirect it).  The
    directory is created with mode 0700; an existing one must be owned by us
    (its mode is tightened to 0700 if needed), otherwise :class:`BPFError`.
    """
    return _ensure_private_dir(_default_cache_path())


def _cache_root(given: str | os.PathLike[str] | None) -> Path:
    return cache_dir() if given is None else _ensure_private_dir(Path(given))


def _subdir(root: Path, *parts: str) -> Path:
    """A directory inside the (already verified) private cache, checked too."""
    return private_subdir(root, *parts)


# --------------------------------------------------------------------------
# Tools


def _find_tool(tool: str) -> str:
    """Absolute path of ``tool`` (``clang`` or ``bpftool``), or ToolNotFound.

    ``BPFRING_CLANG`` / ``BPFRING_BPFTOOL`` override the name.  bpftool is
    also looked for in the sbin directories, which a normal user's PATH often
    lacks on Debian.
    """
    env, package = _TOOLS[tool]
    override = os.environ.get(env)
    name = override or tool
    found = shutil.which(name)
    if found is None and not override and tool == "bpftool":
        found = shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if found is None:
        where = f"{env}={override!r}" if override else "PATH"
        raise ToolNotFound(
            f"{tool} is needed to build BPF programs but {name!r} was not found in {where}",
            hint=f"apt-get install {package}",
        )
    return os.path.abspath(found)


_clang_info_memo: dict[tuple[object, ...], tuple[str, bool]] = {}


def _clang_info(clang: str, root: Path) -> tuple[str, bool]:
    """(``clang --version`` output, whether ``-mcpu=v3`` is accepted).

    Asking clang costs ~40 ms, more than a whole cache hit, so the answer is
    memoized in memory and in the cache, keyed by the identity of the clang
    binary (path, inode, size, mtime, ctime): upgrading clang changes it.
    """
    real = os.path.realpath(clang)
    st = os.stat(real)
    ident = (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    info = _clang_info_memo.get(ident)
    if info is not None:
        return info
    record = _subdir(root, "tools") / f"clang-{sha256_json(list(ident))[:32]}.json"
    try:
        data = json.loads(read_trusted(record))
        info = (str(data["version"]), bool(data["mcpu_v3"]))
    except (OSError, ValueError, KeyError, TypeError, Untrusted):
        version = subprocess.run(
            [clang, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if not version:
            raise BuildError(f"{clang} --version printed nothing; is it really clang?",
                             hint="apt-get install clang") from None
        probe = subprocess.run(
            [clang, "-target", "bpf", "-mcpu=v3", "-fsyntax-only", "-x", "c", os.devnull],
            capture_output=True, check=False,
        )
        info = (version, probe.returncode == 0)
        atomic_write(record, json.dumps({"version": info[0], "mcpu_v3": info[1]}).encode())
    _clang_info_memo[ident] = info
    return info


def target_arch(machine: str | None = None) -> str | None:
    """The libbpf ``__TARGET_ARCH_xxx`` suffix for ``machine`` (default: this
    host), e.g. ``"x86"`` for ``x86_64``; ``None`` if unknown.  It selects how
    ``bpf_tracing.h`` reads registers from ``struct pt_regs``."""
    return _ARCH.get(machine or platform.machine())


# --------------------------------------------------------------------------
# vmlinux.h


def vmlinux_header(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the path of a ``vmlinux.h`` describing the running kernel.

    It is generated with ``bpftool btf dump file /sys/kernel/btf/vmlinux
    format c`` plus ``extern ... __weak __ksym`` prototypes of the kernel's
    kfuncs (written from the kernel BTF's ``bpf_kfunc`` tags, see
    :mod:`bpfring._kfuncs`; define ``BPF_NO_KFUNC_PROTOTYPES`` before the
    ``#include`` to leave them out), and cached under a SHA-256 of the
    kernel's BTF, so it is regenerated only when the kernel changes.  The
    header's own hash is recorded and checked on every call.  Raises
    :class:`BTFError` if the kernel has no BTF, :class:`ToolNotFound` if
    bpftool is needed but missing.
    """
    root = _cache_root(cache_dir)
    header, _ = _vmlinux(root)
    return header


def _vmlinux(root: Path) -> tuple[Path, str]:
    """(path of vmlinux.h, sha256 of its content)."""
    try:
        btf_hash = sha256_file(KERNEL_BTF)
    except FileNotFoundError:
        raise BTFError(
            f"{KERNEL_BTF} does not exist: this kernel does not expose its BTF type "
            "information, so vmlinux.h cannot be generated",
            hint="use a kernel built with CONFIG_DEBUG_INFO_BTF=y, or include kernel "
                 "headers (<linux/bpf.h>) instead of vmlinux.h",
        ) from None
    except PermissionError as exc:
        raise BTFError(f"cannot read {KERNEL_BTF}: {exc.strerror}", errno=exc.errno) from None
    # The directory also names the kfunc generator's version: a vmlinux.h
    # written by an older bpfring (without prototypes) is not reused.
    directory = _subdir(root, "vmlinux", f"{btf_hash[:32]}-k{_kfuncs.VERSION}")
    header = directory / "vmlinux.h"
    recorded = directory / "vmlinux.h.sha256"
    with locked(directory / ".lock"):
        try:
            expected = read_trusted(recorded).decode(errors="replace").strip()
            actual = sha256_trusted(header)
        except FileNotFoundError:
            pass
        except Untrusted as exc:
            log.warning("bpfring cache: %s; regenerating vmlinux.h", exc)
        else:
            if actual == expected:
                return header, actual
            log.warning("%s does not match its recorded hash; regenerating it", header)
        bpftool = _find_tool("bpftool")
        proc = subprocess.run(
            [bpftool, "btf", "dump", "file", KERNEL_BTF, "format", "c"],
            capture_output=True, check=False,
        )
        if proc.returncode != 0 or not proc.stdout:
            raise BTFError(
                f"bpftool could not dump {KERNEL_BTF} as C (exit status {proc.returncode}): "
                + proc.stderr.decode(errors="replace").strip(),
                hint="a bpftool older than the kernel may not understand its BTF; "
                     "install a newer bpftool",
            )
        data = _kfuncs.insert(proc.stdout, _kfunc_block())
        atomic_write(header, data)
        digest = hashlib.sha256(data).hexdigest()
        atomic_write(recorded, digest.encode() + b"\n")
        return header, digest


def _kfunc_block() -> str:
    """Kfunc prototypes for vmlinux.h from the kernel's BTF ("" if it has none)."""
    from .btf import load as load_btf

    try:
        return _kfuncs.prototypes(load_btf(KERNEL_BTF))
    except (OSError, BTFError) as exc:  # the types alone are still useful
        log.warning("no kfunc prototypes in vmlinux.h: cannot read %s: %s", KERNEL_BTF, exc)
        return ""


# --------------------------------------------------------------------------
# Include path


def _multiarch_asm_dir(root: Path) -> Path | None:
    """A directory holding only an ``asm`` link to the multiarch kernel headers.

    Debian keeps ``<asm/...>`` (needed by ``<linux/types.h>``, hence by
    programs that include ``<linux/bpf.h>``) in ``/usr/include/<tuple>/asm``.
    Adding all of ``/usr/include/<tuple>`` would break BPF builds that reach
    glibc headers: ``gnu/stubs.h`` then wants ``gnu/stubs-32.h`` because the
    BPF target does not define ``__x86_64__``.  So we expose ``asm`` alone.
    """
    if (_SYSTEM_INCLUDE / "asm").is_dir():
        return None  # not a multiarch layout: /usr/include already has it
    tuple_ = sysconfig.get_config_var("MULTIARCH") or _MULTIARCH.get(platform.machine())
    if not tuple_:
        return None
    target = _SYSTEM_INCLUDE / tuple_ / "asm"
    if not target.is_dir():
        return None
    directory = _subdir(root, "sysinc", tuple_)
    link = directory / "asm"
    if os.path.islink(link) and os.readlink(link) == str(target):
        return directory
    tmp = directory / f".asm.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return directory


def _include_args(
    include_dirs: Iterable[str | os.PathLike[str]],
    source: Path,
    vmlinux_dir: Path | None,
    asm_dir: Path | None,
) -> list[str]:
    args: list[str] = []
    for d in include_dirs:
        args.append(f"-I{os.path.abspath(d)}")
    args.append(f"-I{source.parent}")
    if vmlinux_dir is not None:
        args.append(f"-I{vmlinux_dir}")
    args.append(f"-I{INCLUDE_DIR}")
    # /usr/include is already on clang's default list for -target bpf; naming
    # it again keeps it ahead of anything after it and documents the need
    # (<bpf/bpf_helpers.h> comes from libbpf-dev).
    args.append(f"-idirafter{_SYSTEM_INCLUDE}")
    if asm_dir is not None:
        args.append(f"-idirafter{asm_dir}")
    return args


def _define_args(defines: Mapping[str, object] | None) -> list[str]:
    args: list[str] = []
    for name, value in (defines or {}).items():
        if not isinstance(name, str) or not name or "=" in name or name.split() != [name]:
            raise ValueError(f"invalid macro name in defines: {name!r}")
        if value is None:
            args.append(f"-D{name}")
        elif isinstance(value, bool):
            args.append(f"-D{name}={int(value)}")
        else:
            args.append(f"-D{name}={value}")
    return args


# --------------------------------------------------------------------------
# Dependency files and manifests


def _parse_depfile(text: str, cwd: str) -> list[str]:
    """The prerequisites in a make rule written by ``clang -MD -MT obj``.

    Make syntax: backslash-newline continues the line, ``\\ `` is a space in a
    file name, ``\\#`` a hash and ``$$`` a dollar sign.
    """
    _, sep, rest = text.partition("obj:")
    if not sep:
        raise BuildError("clang wrote a dependency file we do not understand",
                         diagnostics=text)
    deps: list[str] = []
    cur: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        c = rest[i]
        nxt = rest[i + 1] if i + 1 < n else ""
        if c == "\\" and nxt in (" ", "#"):
            cur.append(nxt)
            i += 2
            continue
        if c == "\\" and nxt in ("\n", "\r"):
            c = " "
            i += 1
        elif c == "$" and nxt == "$":
            cur.append("$")
            i += 2
            continue
        if c.isspace():
            if cur:
                deps.append("".join(cur))
                cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        deps.append("".join(cur))
    seen: dict[str, None] = {}
    for d in deps:
        seen.setdefault(os.path.normpath(os.path.join(cwd, d)), None)
    return list(seen)


# --------------------------------------------------------------------------
# Building


def _check_seq(name: str, value: object) -> None:
    if isinstance(value, str | bytes | os.PathLike):
        raise TypeError(f"{name} must be a sequence of strings, not a single "
                        f"{type(value).__name__} (wrap it in a list)")


def build_info(
    source: str | os.PathLike[str],
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    defines: Mapping[str, object] | None = None,
    cflags: Sequence[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    keep_types: bool | str | None = None,
) -> BuildResult:
    """Compile ``source`` like :func:`build`, and say how it went.

    Returns a :class:`BuildResult`; ``result.cached`` tells whether the object
    came from the cache (no compiler ran), ``result.dependencies`` which files
    were read.  Use this when you need more than the path, e.g. in tests.
    """
    t0 = time.perf_counter()
    _check_seq("include_dirs", include_dirs)
    _check_seq("cflags", cflags)
    src = Path(os.path.abspath(source))
    keep_mode = _keeptypes.resolve_mode(keep_types)
    try:
        source_hash = sha256_file(src)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "BPF source file not found", str(source)) from None

    clang = _find_tool("clang")  # fail fast, before generating vmlinux.h
    root = _cache_root(cache_dir)
    clang_version, has_v3 = _clang_info(clang, root)

    # vmlinux.h is offered to every program, but only programs that include it
    # need it: if it cannot be made (no bpftool, no kernel BTF), build without
    # it and report the reason only if the compile then misses it.
    vmlinux_dir: Path | None = None
    vmlinux_hash: str | None = None
    vmlinux_error: BuildError | BTFError | None = None
    try:
        header, vmlinux_hash = _vmlinux(root)
        vmlinux_dir = header.parent
    except (ToolNotFound, BTFError) as exc:
        vmlinux_error = exc

    user_defines = _define_args(defines)
    args = ["-O2", "-g", "-target", "bpf"]
    if has_v3:
        args.append("-mcpu=v3")
    arch = target_arch()
    if arch is None:
        log.warning("unknown machine %r: not defining __TARGET_ARCH_xxx; PT_REGS macros "
                    "of bpf_tracing.h will not work", platform.machine())
    elif not any(d.startswith("-D__TARGET_ARCH_") for d in user_defines):
        args.append(f"-D__TARGET_ARCH_{arch}")
    args += _WARNINGS
    args += _include_args(include_dirs, src, vmlinux_dir, _multiarch_asm_dir(root))
    args += user_defines
    args += [str(f) for f in cflags]

    key1 = sha256_json({
        "format": _FORMAT,
        "clang": clang,
        "clang_version": clang_version,
        "args": args,
        "source": str(src),
        "source_sha256": source_hash,
        "vmlinux_sha256": vmlinux_hash,
        "keep_types": [keep_mode, _keeptypes.VERSION],
    })
    objdir = _subdir(root, "obj", key1[:2])
    manifest = objdir / f"{key1}.json"

    hit = lookup_entry(objdir, manifest, _FORMAT)
    if hit is not None:
        entry, obj = hit
        warnings = str(entry.get("warnings", ""))
        if warnings:
            log.debug("cached build of %s had clang warnings:\n%s", src, warnings)
        return BuildResult(
            path=obj, cached=True, key=key1, source=src,
            dependencies=tuple(Path(p) for p, _ in entry["deps"]),
            command=(clang, *args, *map(str, entry.get("extra_args", ())), "-c", str(src)),
            warnings=warnings, elapsed=time.perf_counter() - t0,
            kept_types=tuple(map(str, entry.get("kept", ()))),
        )

    work = Path(tempfile.mkdtemp(dir=_subdir(root, "tmp"), prefix="build-"))
    try:
        out, depfile = work / "out.bpf.o", work / "out.d"
        cmd, proc, extra = _compile(clang, args, src, out, depfile, vmlinux_dir)
        if proc.returncode != 0:
            _raise_compile_error(src, proc.stderr, proc.returncode, vmlinux_error)
        cwd = os.getcwd()
        deps = _parse_depfile(depfile.read_text(errors="surrogateescape"), cwd)
        kept = _keeptypes.keep(clang, [*args, *extra], src, deps, work, keep_mode,
                               exclude_dirs=[root / "vmlinux", root / "sysinc", INCLUDE_DIR])
        if kept is not None:
            out = kept.path
        dep_hashes = [[d, sha256_file(d)] for d in deps]
        key2 = sha256_json({"key": key1, "deps": dep_hashes})
        stem = src.name.split(".")[0] or "prog"
        obj = objdir / f"{stem}-{key2[:40]}.bpf.o"
        obj_hash = sha256_file(out)
        warnings = proc.stderr.strip()
        entry = {"object": obj.name, "sha256": obj_hash, "deps": dep_hashes,
                 "warnings": warnings, "built": time.time(), "extra_args": extra,
                 "kept": list(kept.types) if kept else []}
        with locked(objdir / f"{key1}.lock"):
            os.replace(out, obj)
            others = [e for e in read_manifest(manifest, _FORMAT) if e.get("object") != obj.name]
            data = {"format": _FORMAT, "source": str(src),
                    "entries": [entry, *others][:_MAX_ENTRIES]}
            atomic_write(manifest, json.dumps(data, indent=1).encode())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if warnings:
        log.warning("clang warnings while compiling %s:\n%s", src, warnings)
    return BuildResult(
        path=obj, cached=False, key=key1, source=src,
        dependencies=tuple(Path(d) for d in deps),
        command=tuple(cmd), warnings=warnings, elapsed=time.perf_counter() - t0,
        kept_types=kept.types if kept else (),
    )


#: Compiles of one program at most: the first, then again without the
#: vmlinux.h kfunc prototypes it declares differently.
_KFUNC_ATTEMPTS = 4


def _compile(clang: str, args: list[str], src: Path, out: Path, depfile: Path,
             vmlinux_dir: Path | None,
             ) -> tuple[list[str], subprocess.CompletedProcess[str], list[str]]:
    """Run clang on ``src``: (command, result, flags added to ``args``).

    A program may declare a kfunc itself in a way that conflicts with the
    prototype in vmlinux.h (an older kernel's signature, a missing
    ``const``); then clang fails, and we compile again without the
    prototypes it complained about, so the program's own declarations win.
    """
    header = vmlinux_dir / "vmlinux.h" if vmlinux_dir is not None else None
    extra: list[str] = []
    skipped: set[str] = set()
    for _ in range(_KFUNC_ATTEMPTS):
        cmd = [clang, *args, *extra, "-c", str(src), "-o", str(out),
               "-MD", "-MF", str(depfile), "-MT", "obj"]
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              check=False)
        if proc.returncode == 0 or header is None:
            break
        names = _kfuncs.conflicts(proc.stderr, header) - skipped
        if not names:
            break
        log.info("%s declares kfunc(s) %s differently from vmlinux.h; compiling again "
                 "with its own declarations", src, ", ".join(sorted(names)))
        skipped |= names
        extra = _kfuncs.skip_flags(skipped)
    return cmd, proc, extra


def _raise_compile_error(src: Path, stderr: str, status: int,
                         vmlinux_error: BuildError | BTFError | None) -> NoReturn:
    """Turn a failed clang run into the most helpful exception."""
    diagnostics = stderr.strip()
    if vmlinux_error is not None and re.search(r"'vmlinux\.h' file not found", stderr):
        if isinstance(vmlinux_error, ToolNotFound):
            raise ToolNotFound(f"{src} includes vmlinux.h, which cannot be generated: "
                               f"{vmlinux_error.message}", diagnostics=diagnostics,
                               hint=vmlinux_error.hint)
        raise BuildError(f"{src} includes vmlinux.h, which cannot be generated: "
                         f"{vmlinux_error.message}", diagnostics=diagnostics,
                         hint=vmlinux_error.hint)
    hint = None
    if re.search(r"'bpf/[\w.]+' file not found", stderr):
        hint = "apt-get install libbpf-dev  (it provides <bpf/bpf_helpers.h>)"
    elif re.search(r"'asm/[\w.]+' file not found", stderr):
        hint = "apt-get install linux-libc-dev, or include vmlinux.h instead of <linux/...>"
    elif re.search(r"'(bits|gnu)/[\w.-]+' file not found", stderr):
        hint = ("BPF programs cannot use C library headers (<stdint.h>, <string.h>, ...); "
                "use the kernel types (__u32, ...) from vmlinux.h or <linux/types.h>, "
                "and __builtin_memcpy/__builtin_memset")
    first = next((ln for ln in stderr.splitlines() if re.search(r": (fatal )?error: ", ln)), None)
    summary = f": {first}" if first else f" (clang exit status {status})"
    raise BuildError(f"clang failed to compile {src}{summary}",
                     diagnostics=diagnostics, hint=hint)


def build(
    source: str | os.PathLike[str],
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    defines: Mapping[str, object] | None = None,
    cflags: Sequence[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    keep_types: bool | str | None = None,
) -> Path:
    """Compile a ``.bpf.c`` file into a BPF object and return the object's path.

    The command is ``clang -O2 -g -target bpf -mcpu=v3 -D__TARGET_ARCH_<arch>``
    with ``-Wall`` (minus the ``unused`` warnings) and this include path:
    ``include_dirs``, the source's directory, the generated ``vmlinux.h``,
    bpfring's headers (``<bpfring/ring.bpf.h>``), then ``/usr/include`` (for
    libbpf's ``<bpf/bpf_helpers.h>``).  ``defines`` maps macro names to values
    (``None`` for a bare ``-DNAME``); ``cflags`` are appended last, so they can
    override the defaults.

    The result is cached (see the module documentation): an unchanged source,
    flags, clang, kernel and set of included headers give back the cached
    object without running clang.  The returned file lives in the cache; do
    not modify it.  Raises :class:`BuildError` (with ``diagnostics``) when
    clang fails and :class:`ToolNotFound` when clang is missing; clang
    warnings are logged to the ``bpfring`` logger at WARNING level.

    ``keep_types`` puts into the object's BTF the structs, unions, enums and
    typedefs declared in the program's own headers, which clang otherwise
    leaves out when the program uses them only through pointers (the usual
    ``struct event *e = bpf_ringbuf_reserve(...)``): ``"headers"`` (the
    default, also ``True``), ``"all"`` (the ``.bpf.c`` file's own types
    too) or ``"none"`` (``False``: compile the program exactly as given).
    When not given, ``$BPFRING_KEEP_TYPES`` decides (default ``headers``).
    It costs a second compile, only for programs whose headers declare
    types; the program's code, maps and sections stay the same (see
    :mod:`bpfring._keeptypes`).
    """
    return build_info(source, include_dirs=include_dirs, defines=defines, cflags=cflags,
                      cache_dir=cache_dir, keep_types=keep_types).path


_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _write_source(text: str, name: str, root: Path) -> Path:
    """Store C text as ``<cache>/src/<sha256>/<name>.bpf.c`` and return the path.

    The directory is named by the content's hash rather than random, so the
    same text always gets the same path and therefore the same cache key.
    """
    if not isinstance(text, str):
        raise TypeError(f"source text must be str, not {type(text).__name__}")
    if not _NAME_RE.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"invalid program name {name!r}: use letters, digits, '_', '.', '-'")
    filename = name if name.endswith(".c") else f"{name}.bpf.c"
    data = text.encode()
    digest = hashlib.sha256(filename.encode() + b"\0" + data).hexdigest()
    path = _subdir(root, "src", digest[:32]) / filename
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        current = None
    if current != data:
        atomic_write(path, data)
    return path


def build_source_info(
    text: str,
    name: str = "prog",
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    defines: Mapping[str, object] | None = None,
    cflags: Sequence[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    keep_types: bool | str | None = None,
) -> BuildResult:
    """Compile C source text like :func:`build_source`; return a :class:`BuildResult`."""
    root = _cache_root(cache_dir)
    path = _write_source(text, name, root)
    return build_info(path, include_dirs=include_dirs, defines=defines, cflags=cflags,
                      cache_dir=root, keep_types=keep_types)


def build_source(
    text: str,
    name: str = "prog",
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    defines: Mapping[str, object] | None = None,
    cflags: Sequence[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    keep_types: bool | str | None = None,
) -> Path:
    """Compile BPF C given as text and return the object's path.

    The text is saved as ``<name>.bpf.c`` in a private directory of the cache
    (named after the text's hash, so identical text hits the cache), then
    compiled by :func:`build`.  ``#include "..."`` of your own headers needs
    their directory in ``include_dirs``; ``vmlinux.h``, ``<bpf/...>`` and
    ``<bpfring/...>`` are always available.  ``keep_types`` is as for
    :func:`build`.
    """
    return build_source_info(text, name, include_dirs=include_dirs, defines=defines,
                             cflags=cflags, cache_dir=cache_dir,
                             keep_types=keep_types).path


def header_btf(
    header: str | os.PathLike[str],
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    defines: Mapping[str, object] | None = None,
    cflags: Sequence[str] = (),
    vmlinux: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> BTF:
    """BTF for the types declared in a C header, for objects built elsewhere.

    A ``.bpf.o`` compiled by another build usually lacks the types of its
    header (``struct event`` used only through a pointer); given that
    header, this compiles a translation unit that includes ``vmlinux.h``
    (unless ``vmlinux=False``, for headers that include kernel headers
    themselves) and then ``header``, keeping every struct, union, enum and
    typedef declared in the header and the headers it includes from its
    own directories (as the ``keep_types`` build option does), and returns
    that BTF (:class:`bpfring.btf.BTF`).  The result is cached like any
    build.  Raises :class:`BuildError` if the header does not compile.
    Public as :func:`bpfring.from_header`.
    """
    return header_btf_info(header, include_dirs=include_dirs, defines=defines,
                           cflags=cflags, vmlinux=vmlinux, cache_dir=cache_dir)[0]


def header_btf_info(
    header: str | os.PathLike[str],
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    defines: Mapping[str, object] | None = None,
    cflags: Sequence[str] = (),
    vmlinux: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[BTF, tuple[str, ...]]:
    """:func:`header_btf`, and the spellings of the types the header itself
    declares (``"struct event"``, ``"pair_t"``; not the kernel types they
    refer to)."""
    from .btf import load as load_btf

    path = Path(os.path.abspath(header))
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "header not found", str(header))
    if any(c in str(path) for c in '"\n\\'):
        raise ValueError(f"cannot #include a header whose path contains quotes, "
                         f"backslashes or newlines: {path!r}")
    lines = ['#include "vmlinux.h"'] if vmlinux else []
    lines.append(f'#include "{path}"')
    name = re.sub(r"[^A-Za-z0-9_-]", "_", path.name.split(".")[0]) or "header"
    result = build_source_info("\n".join(lines) + "\n", f"{name}.header",
                               include_dirs=[path.parent, *include_dirs], defines=defines,
                               cflags=cflags, cache_dir=cache_dir, keep_types="headers")
    return load_btf(result.path), result.kept_types
