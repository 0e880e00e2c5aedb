"""Shared fixtures.  Kernel tests need real BPF: where it is unavailable they
skip, unless BPFRING_REQUIRE_KERNEL=1 (set by CI), which turns the skip into a
failure."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
BPF_DIR = HERE / "bpf"
REQUIRE_KERNEL = os.environ.get("BPFRING_REQUIRE_KERNEL") == "1"
# The C accelerator is part of the product: where it must be there (CI), a
# test skipped for want of it is a failure.
REQUIRE_ACCEL = REQUIRE_KERNEL or os.environ.get("BPFRING_REQUIRE_ACCEL") == "1"
_NO_ACCEL = "_speedups is not built"

# A private build cache for the whole test session (tests never touch the
# user's cache); created 0700 by mkdtemp.
_CACHE = tempfile.mkdtemp(prefix="bpfring-test-cache-")
os.environ.setdefault("BPFRING_CACHE_DIR", _CACHE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under BPFRING_REQUIRE_ACCEL=1 (or BPFRING_REQUIRE_KERNEL=1), turn every
    skip for a missing accelerator into a failure."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ACCEL and report.skipped and _NO_ACCEL in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = ("bpfring._speedups is not built, but BPFRING_REQUIRE_ACCEL=1 "
                           "(or BPFRING_REQUIRE_KERNEL=1) requires it; see the build "
                           "output of scripts/install-venv.sh")


def private_mount_namespace(covering: list[str] | None = None) -> list[str] | None:
    """The argv prefix that runs a command in a private mount namespace
    (``unshare --mount --propagation private``), so bind mounts made there
    over the files in ``covering`` never reach the rest of the system; None
    where that cannot be had.

    In a chroot whose / is not a mount point the kernel refuses to change
    the root's propagation (EINVAL).  There a bind mount made in a new
    namespace propagates only through a *shared* mount that contains the
    mount point, so ``--propagation unchanged`` is used when no visible mount
    holding one of the ``covering`` files is shared (``ip netns`` makes
    /run/netns shared, which does not matter here)."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    private = ["unshare", "--mount", "--propagation", "private"]
    probe = subprocess.run([*private, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode == 0:
        return private
    if "propagation" not in probe.stderr:
        return None
    targets = [os.path.realpath(f) for f in covering or []]
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head = line.split(" - ")[0].split()
            point = head[4].rstrip("/") + "/"
            holds = any(t.startswith(point) for t in targets)
            if holds and any(opt.startswith("shared:") for opt in head[6:]):
                return None
    return ["unshare", "--mount", "--propagation", "unchanged"]


def _bpf_unavailable() -> str | None:
    try:
        from bpfring import _sys

        fd = _sys.map_create(_sys.MAP_TYPE_USER_RINGBUF, 0, 0, 4096)
        os.close(fd)
    except Exception as e:  # any failure means no usable BPF
        return f"{type(e).__name__}: {e}"
    return None


@pytest.fixture(scope="session")
def kernel() -> None:
    """Require a kernel with BPF (user ring buffers); skip or fail otherwise."""
    why = _bpf_unavailable()
    if why:
        if REQUIRE_KERNEL:
            pytest.fail(f"BPF is unavailable but BPFRING_REQUIRE_KERNEL=1: {why}")
        pytest.skip(f"BPF unavailable: {why}")


@pytest.fixture(scope="session")
def checkout() -> None:
    """Skip where bpfring is not imported from this tree's src/ (the suite run
    from an unpacked sdist against the installed package): ``bpfring bench``
    runs the benchmarks of a source checkout only."""
    import bpfring

    src = (HERE.parent / "src").resolve()
    if not Path(bpfring.__file__).resolve().is_relative_to(src):
        pytest.skip(f"bpfring bench needs a source checkout; bpfring here is installed "
                    f"({Path(bpfring.__file__).parent})")


@pytest.fixture(scope="session")
def echo_path(kernel) -> Path:
    """tests/bpf/echo.bpf.c compiled once per session."""
    import bpfring

    return bpfring.build(BPF_DIR / "echo.bpf.c")


@pytest.fixture
def echo(echo_path):
    """A freshly loaded echo object (new maps for every test)."""
    import bpfring

    with bpfring.load(echo_path) as obj:
        yield obj


def produce_ctx(count: int, *, discard_every: int = 0, flags: int = 0, small: bool = False,
                seq_base: int = 0, size: int = 256) -> bytes:
    """The ``struct produce_args`` context of echo.bpf.c's produce program."""
    import struct

    return struct.pack("<6I", count, size, discard_every, flags, int(small), seq_base)


# --- session-level leak check -----------------------------------------------------

# What bpfring owns in this process, by the target of the /proc/self/fd link
# or the name of a mapping: BPF maps, programs, links and BTF, perf events,
# epoll sets and eventfds (ring waits), and mmaps of maps.  Other fds
# (pytest's capture files, sockets and pipes of tests) are not counted:
# they are not ours and come and go with the test runner.
_OURS = ("anon_inode:bpf", "anon_inode:[perf_event]", "anon_inode:[eventpoll]",
         "anon_inode:[eventfd]", "anon_inode:btf")


def _our_resources() -> tuple[list[str], list[str]]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the fd listdir itself used, already closed
            continue
        if target.startswith(_OURS):
            fds.append(f"{name} -> {target}")
    with open("/proc/self/maps") as f:
        maps = [ln.rstrip() for ln in f if "anon_inode:bpf" in ln]
    return fds, maps


@pytest.fixture(scope="session", autouse=True)
def no_resource_leaks() -> Iterator[None]:
    """Every fd and mapping of a BPF map, program, link, perf event, epoll or
    eventfd opened during the session is closed by its end (close() or the
    garbage collector's finalizers): none may be left."""
    import gc
    import time

    before_fds, before_maps = _our_resources()
    yield
    # Rings whose finalizers are pending (reference cycles) go now; a thread a
    # test left blocked would show up as a leak, which is the point.
    end = time.monotonic() + 5
    while True:
        gc.collect()
        fds, maps = _our_resources()
        leaked = (sorted(set(fds) - set(before_fds)),
                  sorted(set(maps) - set(before_maps)))
        if not any(leaked) or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert not any(leaked), f"resources leaked by the suite: fds {leaked[0]}, maps {leaked[1]}"


@pytest.fixture(params=["c", "python"])
def mode(request):
    """Run a test on rings opened with the C backend and with the pure-Python
    one (a skip for want of the accelerator fails under CI, see above)."""
    from bpfring import _ringbackend

    if request.param == "c":
        try:
            import bpfring._speedups  # noqa: F401
        except ImportError:
            pytest.skip("bpfring._speedups is not built")
    prev = _ringbackend.set_accelerated(request.param == "c")
    try:
        yield request.param
    finally:
        _ringbackend.set_accelerated(prev)


# The BTF test fixture (tests/bpf/btf_types.c compiled by clang and by gcc),
# built once for the reader and codec test modules.
@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory):
    from btf_support import fixture_built

    return fixture_built(tmp_path_factory)


@pytest.fixture(scope="session")
def btf(built):
    from btf_support import fixture_btf

    return fixture_btf(built)

