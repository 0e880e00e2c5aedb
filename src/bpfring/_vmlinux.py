"""``vmlinux.h``: the running kernel's types as C, plus its kfunc prototypes.

Generated with ``bpftool btf dump file /sys/kernel/btf/vmlinux format c``,
completed with ``extern ... __weak __ksym`` prototypes of the kernel's kfuncs
(:mod:`bpfring._kfuncs`), and cached under a SHA-256 of the kernel's BTF (and
the kfunc generator's version), so it is regenerated only when the kernel
changes; its own hash is recorded and checked on every use.  The public entry
point is :func:`bpfring.build.vmlinux_header`.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path

from . import _kfuncs
from ._cache import (
    Untrusted,
    atomic_write,
    locked,
    private_subdir,
    read_trusted,
    sha256_file,
    sha256_trusted,
)
from ._tools import find_tool
from .errors import BTFError

log = logging.getLogger("bpfring")


def header(root: Path, kernel_btf: str) -> tuple[Path, str]:
    """(path of vmlinux.h, sha256 of its content) for the kernel BTF at
    ``kernel_btf``, generated into the verified cache ``root`` if needed."""
    try:
        btf_hash = sha256_file(kernel_btf)
    except FileNotFoundError:
        raise BTFError(
            f"{kernel_btf} does not exist: this kernel does not expose its BTF type "
            "information, so vmlinux.h cannot be generated",
            hint="use a kernel built with CONFIG_DEBUG_INFO_BTF=y, or include kernel "
                 "headers (<linux/bpf.h>) instead of vmlinux.h",
        ) from None
    except PermissionError as exc:
        raise BTFError(f"cannot read {kernel_btf}: {exc.strerror}", errno=exc.errno) from None
    # The directory also names the kfunc generator's version: a vmlinux.h
    # written by an older bpfring (without prototypes) is not reused.
    directory = private_subdir(root, "vmlinux", f"{btf_hash[:32]}-k{_kfuncs.VERSION}")
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
        bpftool = find_tool("bpftool")
        proc = subprocess.run(
            [bpftool, "btf", "dump", "file", kernel_btf, "format", "c"],
            capture_output=True, check=False,
        )
        if proc.returncode != 0 or not proc.stdout:
            raise BTFError(
                f"bpftool could not dump {kernel_btf} as C (exit status {proc.returncode}): "
                + proc.stderr.decode(errors="replace").strip(),
                hint="a bpftool older than the kernel may not understand its BTF; "
                     "install a newer bpftool",
            )
        data = _kfuncs.insert(proc.stdout, _kfunc_block(kernel_btf))
        atomic_write(header, data)
        digest = hashlib.sha256(data).hexdigest()
        atomic_write(recorded, digest.encode() + b"\n")
        return header, digest


def _kfunc_block(kernel_btf: str) -> str:
    """Kfunc prototypes for vmlinux.h from the kernel's BTF ("" if it has none)."""
    from .btf import load as load_btf  # BTF is ground; imported on use

    try:
        return _kfuncs.prototypes(load_btf(kernel_btf))
    except (OSError, BTFError) as exc:  # the types alone are still useful
        log.warning("no kfunc prototypes in vmlinux.h: cannot read %s: %s", kernel_btf, exc)
        return ""
