"""Finding the build tools (clang, bpftool) and what this clang can do.

Part of the toolchain layer, used by :mod:`bpfring.build` and
:mod:`bpfring._vmlinux`.  The tools' names can be overridden with
``BPFRING_CLANG`` and ``BPFRING_BPFTOOL`` (read on every call).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from ._cache import Untrusted, atomic_write, private_subdir, read_trusted, sha256_json
from .errors import BuildError, ToolNotFound

TOOLS = {
    # tool -> (environment override, Debian package providing it)
    "clang": ("BPFRING_CLANG", "clang"),
    "bpftool": ("BPFRING_BPFTOOL", "bpftool"),
}


def find_tool(tool: str) -> str:
    """Absolute path of ``tool`` (``clang`` or ``bpftool``), or ToolNotFound.

    ``BPFRING_CLANG`` / ``BPFRING_BPFTOOL`` override the name.  bpftool is
    also looked for in the sbin directories, which a normal user's PATH often
    lacks on Debian.
    """
    env, package = TOOLS[tool]
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


def clang_info(clang: str, root: Path) -> tuple[str, bool]:
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
    record = private_subdir(root, "tools") / f"clang-{sha256_json(list(ident))[:32]}.json"
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
