"""The libbpf binding: opened on first use, and a clear error without it.

The "no libbpf" case hides the real library from a child process: in a
private mount namespace (``unshare --mount``) every libbpf file the dynamic
linker could open is covered by a bind mount of ``/dev/null``, so dlopen()
fails exactly as on a machine without the package.  Nothing is mocked.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REQUIRE_KERNEL, private_mount_namespace

import bpfring
from bpfring import _libbpf


def _spawn(args: list[str], hide: list[str] | None) -> subprocess.CompletedProcess[str]:
    """``python ARGS``, with the files in ``hide`` covered by /dev/null."""
    if hide is None:
        cmd = [sys.executable, *args]
    else:  # sh -c SCRIPT sh N FILE... ARG...: mount over the N files, then exec python
        ns = private_mount_namespace(hide)
        assert ns is not None, "no private mount namespace here"
        cmd = [*ns, "--", "sh", "-c",
               'n=$1; shift; i=0; while [ $i -lt $n ]; do mount --bind /dev/null "$1" '
               '|| exit 97; shift; i=$((i+1)); done; exec "$PYTHON" "$@"',
               "sh", str(len(hide)), *hide, *args]
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def _run(code: str, *, hide: list[str] | None = None) -> dict[str, object]:
    out = _spawn(["-c", code], hide)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _libbpf_files() -> list[str]:
    """Every file dlopen("libbpf.so.1") / find_library("bpf") could reach."""
    ctypes.CDLL("libbpf.so.1")  # the one this process uses shows in its maps
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if re.search(r"/libbpf\.so[.\d]*$", path):
                found.add(os.path.realpath(path))
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    if os.path.exists(ldconfig):
        cache = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
        for m in re.finditer(r"libbpf\.so\S*.*=>\s*(\S+)", cache):
            found.add(os.path.realpath(m.group(1)))
    return sorted(p for p in found if os.path.isfile(p))


_PROBE = """
import json
import bpfring
from bpfring import _libbpf
out = {"loaded_after_import": _libbpf.lib.loaded}
errors = []
for _ in range(2):  # the failure is not cached as a success
    try:
        bpfring.open_object(b"\\x7fELF" + bytes(60))
    except bpfring.BPFError as e:
        errors.append({"type": type(e).__name__, "message": e.message, "hint": e.hint,
                       "not_found": isinstance(e, bpfring.errors.LibbpfNotFound),
                       "str": str(e)})
out["errors"] = errors
out["loaded_at_end"] = _libbpf.lib.loaded
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hidden() -> list[str]:
    """The libbpf files to hide (skips where hiding is impossible)."""
    if private_mount_namespace(_libbpf_files()) is None:
        if REQUIRE_KERNEL:
            pytest.fail("hiding libbpf needs root and unshare(1)")
        pytest.skip("hiding libbpf needs root and unshare(1)")
    files = _libbpf_files()
    assert files, "no libbpf file found to hide"
    check = _spawn(["-c", "import ctypes; ctypes.CDLL('libbpf.so.1')"], files)
    assert check.returncode != 0 and "libbpf" in check.stderr, "libbpf still loads"
    return files


def test_libbpf_missing_raises_bpferror_with_the_package(hidden: list[str]) -> None:
    got = _run(_PROBE, hide=hidden)
    assert got["loaded_after_import"] is False
    assert got["loaded_at_end"] is False
    errors = got["errors"]
    assert isinstance(errors, list) and len(errors) == 2
    for e in errors:
        assert e["not_found"] is True, e
        assert e["type"] == "LibbpfNotFound"
        assert "libbpf.so.1 not found" in e["message"]
        assert "apt-get install libbpf1" in e["hint"] and "libbpf-dev" in e["hint"]
        assert "\n" not in e["str"]  # one line, as the CLI prints it


def test_cli_without_libbpf(hidden: list[str]) -> None:
    """``bpfring --help`` and ``--version`` need no libbpf; a command that
    does says what to install, on one line, exit status 1."""
    for args in (["--help"], ["--version"]):
        out = _spawn(["-m", "bpfring", *args], hidden)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(("usage: bpfring", "bpfring ")), out.stdout
    out = _spawn(["-m", "bpfring", "demo", "--count", "1"], hidden)  # builds, then loads
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("bpfring: error: libbpf.so.1 not found"), out.stderr
    assert out.stderr.count("\n") == 1 and "(hint: apt-get install libbpf1" in out.stderr


def test_libbpf_opened_on_first_use_only() -> None:
    """``import bpfring`` does not dlopen libbpf; the first call does, once,
    with the prototypes set."""
    got = _run("""
import json, bpfring
from bpfring import _libbpf
before = _libbpf.lib.loaded
f = _libbpf.lib.bpf_map__fd
print(json.dumps({"before": before, "after": _libbpf.lib.loaded,
                  "same": f is _libbpf.lib.bpf_map__fd,
                  "argtypes": [t.__name__ for t in f.argtypes],
                  "restype": f.restype.__name__}))
""")
    assert got == {"before": False, "after": True, "same": True,
                   "argtypes": ["c_void_p"], "restype": "c_int"}


def test_lib_proxy_in_process() -> None:
    """The proxy hands out the real functions; unknown names raise AttributeError."""
    assert _libbpf.lib.bpf_object__load.restype is ctypes.c_int
    assert _libbpf.lib.loaded
    with pytest.raises(AttributeError):
        _libbpf.lib.no_such_function_in_libbpf  # noqa: B018
    with pytest.raises(AttributeError):
        _libbpf.lib._private  # noqa: B018
    assert issubclass(bpfring.errors.LibbpfNotFound, bpfring.BPFError)
