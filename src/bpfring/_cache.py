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
import logging
import os
import stat
import time
from pathlib import Path

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
    import hashlib

    fd = _open_trusted(path)
    with os.fdopen(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
