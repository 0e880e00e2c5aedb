"""The lazy public surface: ``import bpfring``, ``bpfring --help``,
``bpfring --version`` and ``import bpfring.btf`` work on a machine without
libbpf and load nothing heavy; ``import bpfring`` loads no other bpfring module.

libbpf is hidden from a subprocess in two ways: in Python (``ctypes`` cannot
open it, everywhere), and for real, in a private mount namespace where the
library file is replaced by ``/dev/null`` (root and ``unshare`` needed; the
host's file is untouched).  Either way the commands must succeed, and
``sys.modules`` of the subprocess must not contain ``bpfring._libbpf``: none
of them may even import the binding.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import private_mount_namespace

import bpfring

# Runs in the subprocess: hide libbpf (mode "ctypes"), run one case, report
# the exit status and sys.modules on the last line.
DRIVER = r'''
import json, runpy, sys

hide, what = sys.argv[1], sys.argv[2:]
if hide == "ctypes":
    import ctypes, ctypes.util

    real_init, real_find = ctypes.CDLL.__init__, ctypes.util.find_library

    def no_libbpf(self, name, *a, **kw):
        if name and "libbpf" in str(name):
            raise OSError(f"{name}: cannot open shared object file (hidden by the test)")
        real_init(self, name, *a, **kw)

    ctypes.CDLL.__init__ = no_libbpf
    ctypes.util.find_library = lambda n: None if n == "bpf" else real_find(n)
code = 0
try:
    if what[0] == "-m":
        sys.argv = ["bpfring", *what[2:]]
        runpy.run_module(what[1], run_name="__main__", alter_sys=True)
    else:
        exec(what[0], {"__name__": "__case__"})
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
sys.stdout.flush()
print("\n@@" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
'''

HEAVY = ("numpy", "asyncio", "bpfring._libbpf", "bpfring._speedups", "bpfring.ringbuf",
         "bpfring.object", "bpfring.btf")


def _libbpf_files() -> list[str]:
    """The real files the dynamic loader would open for libbpf."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                             timeout=30).stdout
    except OSError:
        out = ""
    paths = re.findall(r"^\s*libbpf\.so\S*\s.*=>\s*(\S+)$", out, re.M)
    return sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})


def _mount_prefix() -> list[str]:
    """``unshare`` + bind mounts of /dev/null over libbpf, or skip."""
    files = _libbpf_files()
    if not files:
        pytest.skip("libbpf is not installed here: nothing to hide")
    ns = private_mount_namespace(files)
    if ns is None or not shutil.which("mount"):
        pytest.skip("hiding libbpf in a mount namespace needs root, unshare and mount")
    script = " && ".join(f"mount --bind /dev/null '{f}'" for f in files)
    return [*ns, "sh", "-c", script + ' && exec "$0" "$@"']


@pytest.fixture(params=["ctypes", "mount"])
def run_hidden(request, tmp_path: Path):
    """Run one case with libbpf hidden; return (exit code, stdout, stderr, modules)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    prefix = _mount_prefix() if request.param == "mount" else []
    hide = request.param

    def run(*what: str) -> tuple[int, str, str, set[str]]:
        proc = subprocess.run([*prefix, sys.executable, str(driver), hide, *what],
                              capture_output=True, text=True, timeout=120)
        out, _, report = proc.stdout.rpartition("\n@@")
        assert report, f"the driver did not finish: {proc.stdout}\n{proc.stderr}"
        rep = json.loads(report)
        return rep["code"], out, proc.stderr, set(rep["modules"])

    # The hiding itself works: libbpf cannot be opened (else the test proves nothing).
    code, out, err, _ = run("import ctypes\ntry:\n    ctypes.CDLL('libbpf.so.1')\n"
                            "    print('LOADED')\nexcept OSError as e:\n    print('hidden', e)")
    assert code == 0 and "hidden" in out and "LOADED" not in out, out + err
    return run


def test_import_bpfring_without_libbpf(run_hidden):
    code, out, err, mods = run_hidden(
        "import bpfring\nprint(bpfring.__version__, set(bpfring.__all__) <= set(dir(bpfring)))")
    assert code == 0, err
    assert out.split() == [bpfring.__version__, "True"]
    assert sorted(m for m in mods if m.startswith("bpfring")) == ["bpfring"]
    assert not set(HEAVY) & mods


def test_help_without_libbpf(run_hidden):
    code, out, err, mods = run_hidden("-m", "bpfring", "--help")
    assert code == 0, err
    assert "usage: bpfring" in out and "tail" in out
    assert not set(HEAVY) & mods, sorted(set(HEAVY) & mods)


def test_version_without_libbpf(run_hidden):
    code, out, err, mods = run_hidden("-m", "bpfring", "--version")
    assert code == 0, err
    assert out.startswith(f"bpfring {bpfring.__version__} (C accelerator: ")
    assert "bpfring._libbpf" not in mods


def test_btf_without_libbpf(run_hidden):
    code, out, err, mods = run_hidden(
        "import bpfring.btf\nprint(bpfring.btf.BTF.__name__, bpfring.btf.load.__name__)")
    assert code == 0, err
    assert out.split() == ["BTF", "load"]
    assert "bpfring._libbpf" not in mods


def test_first_use_without_libbpf_is_a_clear_error(run_hidden):
    """What needs libbpf says so with a BPFError naming the package, at the
    latest on first use (whether the binding opens libbpf at import or later)."""
    code, out, err, _ = run_hidden(
        "import bpfring\ntry:\n    bpfring.load(b'\\x7fELF' + bytes(60))\n"
        "except bpfring.BPFError as e:\n    print('BPFError:', e)")
    assert code == 0, err
    assert "BPFError:" in out and "libbpf" in out, out + err
    assert "apt" in out  # the hint says what to install


def test_public_names_resolve_lazily():
    """Every name of __all__ resolves, dir() lists them, and the TYPE_CHECKING
    block names the same set (what mypy and IDEs see)."""
    for name in bpfring.__all__:
        assert getattr(bpfring, name) is not None, name
    assert set(bpfring.__all__) <= set(dir(bpfring))
    src = Path(bpfring.__file__).read_text()
    checked = src.split("\nif TYPE_CHECKING:", 1)[1]
    missing = {n for n in set(bpfring.__all__) - {"__version__"}
               if not re.search(rf"\b{n}\b", checked)}
    assert not missing, f"not in the TYPE_CHECKING imports: {missing}"
    # bpfring.build is the function, also once the submodule of that name is loaded
    # (the import system then binds the module to the package's attribute)
    importlib.import_module("bpfring.build")
    assert bpfring.build is sys.modules["bpfring.build"].build
    assert bpfring.bridge.MapBridge is bpfring.MapBridge  # submodules stay attributes
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        bpfring.no_such_name  # noqa: B018


def test_import_bpfring_loads_only_itself_and_a_little_stdlib():
    """``import bpfring`` costs about 10 ms because it loads no other module
    of the package and nothing outside the standard library (checked by
    what it loads, not by a clock: the machine may be loaded).  The time
    ``python -X importtime`` reports is printed for information."""
    code = ("import sys; before = set(sys.modules); import bpfring; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    new = set(proc.stdout.split())
    assert "bpfring" in new
    assert {m for m in new if m.startswith("bpfring.")} == set()
    foreign = {m for m in new if m != "bpfring" and m.split(".")[0] not in sys.stdlib_module_names}
    assert not foreign, foreign
    line = [ln for ln in proc.stderr.splitlines() if ln.rstrip().endswith("| bpfring")]
    assert line, proc.stderr
    print(f"\nimport bpfring: {int(line[-1].split('|')[1]) / 1000:.1f} ms, {len(new)} modules")

