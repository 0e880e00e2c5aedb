"""Trust rules for bpfring's private build cache.

bpfring runs as root and loads what it finds in its cache into the kernel,
so the cache must hold only what this user wrote.  The rules:

* the cache root is a real directory (not a symbolic link) owned by the
  effective uid.  One owned by anybody else, or a symlink, is refused.  One
  that is ours but writable by group or others may already hold planted
  entries: it is moved aside (renamed ``NAME.distrusted-...``, kept for
  inspection) and a fresh, empty 0700 root is made;
* every directory inside is checked the same way when it is used, and a
  distrusted one is moved aside and made again;
* every file is opened without following symbolic links and used only if
  it is a regular file owned by us and not writable by group or others;
  otherwise it counts as missing (the build writes a fresh one, atomically).

Only modes that allow *writing* by others make content suspect: a root that
is merely readable by others (say 0755) is tightened to 0700 and kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import BPFError

log = logging.getLogger("bpfring")

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class Untrusted(Exception):
    """A cache file failed the trust rules (internal: callers treat it as a miss)."""


def _why_distrusted(st: os.stat_result, uid: int) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != uid:
        return f"it is owned by uid {st.st_uid}, not by us (uid {uid})"
    if st.st_mode & _OTHERS_WRITE:
        return f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _move_aside(path: Path, why: str) -> None:
    aside = path.with_name(f"{path.name}.distrusted-{time.strftime('%Y%m%d%H%M%S')}-"
                           f"{os.getpid()}")
    log.warning("bpfring cache: not using %s because %s; moved it to %s and starting "
                "empty (nothing in it was read)", path, why, aside)
    os.rename(path, aside)


def private_root(path: Path) -> Path:
    """Create the cache root with mode 0700, or check an existing one (see
    the module docstring); return its absolute path."""
    path = Path(os.path.abspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    uid = os.geteuid()
    for _ in range(3):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(path, 0o700)  # the umask may have removed owner bits
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or st.st_uid != uid or not stat.S_ISDIR(st.st_mode):
            why = _why_distrusted(st, uid)
            raise BPFError(
                f"refusing to use the bpfring cache {path}: {why}; whoever controls it "
                "could plant BPF objects that we would load into the kernel",
                hint="remove it, or set BPFRING_CACHE_DIR to a private directory you own",
            )
        if st.st_mode & _OTHERS_WRITE:
            _move_aside(path, _why_distrusted(st, uid) or "")
            continue
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.debug("tightening the mode of %s from %04o to 0700", path,
                      stat.S_IMODE(st.st_mode))
            os.chmod(path, 0o700)
        return path
    raise BPFError(f"cannot make a private bpfring cache at {path}: it keeps being replaced",
                   hint="set BPFRING_CACHE_DIR to a private directory you own")


def private_subdir(root: Path, *parts: str) -> Path:
    """The directory ``root/parts...``, each level created 0700 or checked,
    and moved aside and made again when distrusted."""
    uid = os.geteuid()
    path = root
    for part in parts:
        path = path / part
        for _ in range(3):
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
            why = _why_distrusted(os.lstat(path), uid)
            if why is None:
                break
            _move_aside(path, why)
        else:
            raise BPFError(f"cannot make a private directory {path} in the bpfring cache",
                           hint="set BPFRING_CACHE_DIR to a private directory you own")
    return path


def _open_trusted(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == 40:  # ELOOP: the last component is a symbolic link
            raise Untrusted(f"{path} is a symbolic link") from None
        raise
    st = os.fstat(fd)
    why = None
    if not stat.S_ISREG(st.st_mode):
        why = "is not a regular file"
    elif st.st_uid != os.geteuid():
        why = f"is owned by uid {st.st_uid}"
    elif st.st_mode & _OTHERS_WRITE:
        why = f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    if why is not None:
        os.close(fd)
        raise Untrusted(f"{path} {why}")
    return fd


def read_trusted(path: Path) -> bytes:
    """The content of a cache file that passes the trust rules.

    Raises :class:`FileNotFoundError` if it does not exist and
    :class:`Untrusted` if it exists but may not be ours."""
    fd = _open_trusted(path)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def sha256_trusted(path: Path) -> str:
    """SHA-256 of a cache file that passes the trust rules (hashing the
    opened file, so the file checked is the file hashed)."""
    fd = _open_trusted(path)
    with os.fdopen(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# Writing and locking cache files, and hashing what they refer to


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one,
    never a partial one: temp file in the same directory, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed), so
    concurrent builds of the same program do not interleave their updates."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# Build manifests: which object a source and its dependencies built


def read_manifest(path: Path, fmt: int) -> list[dict[str, Any]]:
    try:
        data = json.loads(read_trusted(path))
    except FileNotFoundError:
        return []
    except Untrusted as exc:
        log.warning("bpfring cache: ignoring build manifest: %s", exc)
        return []
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable build manifest %s: %s", path, exc)
        return []
    if not isinstance(data, dict) or data.get("format") != fmt:
        return []
    entries = data.get("entries")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def deps_match(entry: dict[str, Any], hashes: dict[str, str | None]) -> bool:
    """Whether every dependency recorded in ``entry`` still has its hash.
    ``hashes`` memoizes file hashes within one lookup (None: unreadable)."""
    deps = entry.get("deps")
    if not isinstance(deps, list) or not deps:
        return False
    for item in deps:
        if not (isinstance(item, list) and len(item) == 2):
            return False
        path, digest = item
        if path not in hashes:
            try:
                hashes[path] = sha256_file(path)
            except OSError:
                hashes[path] = None
        if hashes[path] != digest:
            return False
    return True


def lookup_entry(objdir: Path, manifest: Path, fmt: int) -> tuple[dict[str, Any], Path] | None:
    """A manifest entry whose dependencies and object are all intact."""
    hashes: dict[str, str | None] = {}
    for entry in read_manifest(manifest, fmt):
        if not deps_match(entry, hashes):
            continue
        name = entry.get("object")
        if not isinstance(name, str) or "/" in name:
            continue
        obj = objdir / name
        try:
            digest = sha256_trusted(obj)
        except FileNotFoundError:
            log.debug("cached object %s disappeared; rebuilding", obj)
            continue
        except Untrusted as exc:
            log.warning("bpfring cache: not using cached object: %s; rebuilding it", exc)
            continue
        if digest != entry.get("sha256"):
            log.warning("cached object %s does not match its recorded SHA-256 "
                        "(modified after it was built); rebuilding it", obj)
            continue
        return entry, obj
    return None
