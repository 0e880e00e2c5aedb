"""Child processes of the ring benchmark: the line protocol, the
producer/drain helper on the other CPU, libbpf through ctypes, the C
baselines (built on first use) and BCC."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .common import HERE, Skip, _mono

# ------------------------------------------------------------------------------------
# Small process and kernel helpers
# ------------------------------------------------------------------------------------


class LineProc:
    """A child process spoken to in lines over stdin/stdout (stderr kept in a file)."""

    def __init__(self, argv: Sequence[str], what: str, *, pass_fds: Sequence[int] = (),
                 env: dict[str, str] | None = None) -> None:
        self.what = what
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, pass_fds=tuple(pass_fds), env=env)
        self._fd = self.proc.stdout.fileno()
        self._buf = b""
        self.pending = 0  # commands sent and not answered yet

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        self.pending += 1

    def stderr_tail(self, n: int = 6) -> str:
        self._err.seek(0)
        lines = self._err.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-n:])

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.what} did not answer within {timeout:g} s")
            ready, _, _ = select.select([self._fd], [], [], left)
            if ready:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    self.proc.wait(5)
                    tail = self.stderr_tail()
                    raise RuntimeError(f"{self.what} exited with status {self.proc.returncode}"
                                       + (f": {tail}" if tail else ""))
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def expect(self, word: str, timeout: float, final: bool = True) -> list[str]:
        """Read the next line, which must start with ``word`` (``final``: it
        answers the last command)."""
        line = self.readline(timeout)
        fields = line.split()
        if fields and fields[0] == "error":
            self.pending = max(0, self.pending - 1)
            raise RuntimeError(f"{self.what}: {line[6:]}")
        if not fields or fields[0] != word:
            raise RuntimeError(f"{self.what}: expected {word!r}, got {line!r}")
        if final:
            self.pending = max(0, self.pending - 1)
        return fields[1:]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, force: bool = False) -> None:
        """End the process: EOF on stdin, or at once with ``force`` (mid-command)."""
        if force and self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


def _lost_counter(map_fd: int) -> Callable[[], int]:
    """Reader of the live ring's per-CPU lost-record counter (``live__lost``,
    from ``<bpfring/ring.bpf.h>``): the sum over CPUs of slot 0."""
    import bpfring

    counter = bpfring.Map(map_fd)
    key = bytes(4)

    def read() -> int:
        raw = counter.lookup_raw(key)
        return sum(memoryview(raw).cast("Q")) if raw else 0

    return read


def _helper_main() -> None:
    """The process on the other CPU: ``python -c ...helper_main() PROD DRAIN LOST CPU``.

    ``produce N BATCH``: run produce() into the live ring in batches, then
    produce again what was lost until N records were delivered; answers
    ``done T_START T_END LOST TOPPED``.
    ``drain N``: call drain() on the live user ring until N samples were
    drained; answers ``done T_START T_END DRAINED ERRORS``.
    """
    import bpfring

    prod_fd, drain_fd, lost_fd, cpu = (int(a) for a in sys.argv[1:5])
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})
    # BPF_PROG_TEST_RUN prepared once: the helper calls them in tight loops
    # (Program.run builds the attributes and the context every call).
    produce = bpfring.PreparedRun(prod_fd, ctx_size=16, what="BPF_PROG_TEST_RUN")
    drain = bpfring.PreparedRun(drain_fd, ctx_size=8, what="BPF_PROG_TEST_RUN")
    lost = _lost_counter(lost_fd)
    struct.pack_into("<II", drain.ctx, 0, 1, 0)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "produce":
            n, batch = int(args[0]), int(args[1])
            lost0 = lost()
            ctx = produce.ctx
            done = 0
            t0 = _mono()
            while done < n:
                k = min(batch, n - done)
                struct.pack_into("<QII", ctx, 0, done, k, 1)
                produce.run()
                done += k
            t1 = _mono()
            lost_main = lost() - lost0
            # Make up for the lost records, a batch at a time, pausing while
            # the ring is full, so that the consumer gets exactly n records.
            topped, seq = 0, n
            deadline = time.monotonic() + 60
            while (deficit := lost() - lost0 - topped) > 0:
                if time.monotonic() > deadline:
                    break
                k = min(batch, deficit)
                struct.pack_into("<QII", ctx, 0, seq, k, 1)
                before = lost()
                produce.run()
                seq += k
                topped += k
                if lost() != before:
                    time.sleep(20e-6)  # the ring is full: let the consumer catch up
            print(f"done {t0} {t1} {lost_main} {topped}", flush=True)
        elif cmd == "drain":
            n = int(args[0])
            total = errors = 0
            t0 = _mono()
            deadline = time.monotonic() + 120
            i = 0
            while total < n:
                r = drain.run()
                if r > 0:
                    total += r
                elif r < 0:
                    errors += 1
                i += 1
                if not i & 0xFFF and time.monotonic() > deadline:
                    break
            print(f"done {t0} {_mono()} {total} {errors}", flush=True)


class LibbpfCtypes:
    """libbpf's ring buffer API through ctypes, with BCC's callback type."""

    # bcc/libbcc.py: _RINGBUF_CB_TYPE = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int)
    CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)

    def __init__(self) -> None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        vp, ci, u32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32
        for name, res, args in (
            ("ring_buffer__new", vp, [ci, self.CB, vp, vp]),
            ("ring_buffer__consume", ci, [vp]),
            ("ring_buffer__poll", ci, [vp, ci]),
            ("ring_buffer__free", None, [vp]),
            ("user_ring_buffer__new", vp, [ci, vp]),
            ("user_ring_buffer__reserve", vp, [vp, u32]),
            ("user_ring_buffer__reserve_blocking", vp, [vp, u32, ci]),
            ("user_ring_buffer__submit", None, [vp, vp]),
            ("user_ring_buffer__free", None, [vp]),
            ("libbpf_major_version", u32, []),
            ("libbpf_minor_version", u32, []),
        ):
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        self.lib = lib

    @property
    def version(self) -> str:
        return f"{self.lib.libbpf_major_version()}.{self.lib.libbpf_minor_version()}"


# ------------------------------------------------------------------------------------
# Building the C baselines and finding BCC
# ------------------------------------------------------------------------------------


def _bench_dir() -> Path:
    """A private directory for the baseline binaries, inside bpfring's cache
    (0700, owned by us; never a shared /tmp path)."""
    import bpfring

    d = bpfring.cache_dir() / "bench"
    d.mkdir(mode=0o700, exist_ok=True)
    st = d.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise Skip(f"{d} is not private to this user")
    return d


def _find_cc() -> str | None:
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and (path := shutil.which(cand.split()[0])):
            return path
    return None


def build_baseline(name: str, *, python_lib: bool = False) -> Path:
    """Compile ``<name>.c`` (shipped next to this module) against the system
    libbpf: ``cc -O2 -Wall -o <cache>/bench/<name>-<hash> <name>.c -lbpf``;
    with ``python_lib``, a shared object against this Python's headers
    (``-shared -fPIC -I<include>``) for ctypes.PyDLL."""
    src = HERE / f"{name}.c"
    if not src.exists():
        raise Skip(f"{src.name} is not installed next to {__name__}")
    cc = _find_cc()
    if cc is None:
        raise Skip("no C compiler (cc, gcc or clang) found: apt-get install gcc")
    if python_lib:
        import sysconfig

        flags = ["-shared", "-fPIC", "-I" + sysconfig.get_paths()["include"]]
    else:
        flags = ["-lbpf"]
    cmd = [cc, "-O2", "-Wall", "-o", "OUT", str(src), *flags]
    key = hashlib.sha256(src.read_bytes() + "\0".join([os.path.realpath(cc), *cmd[1:3],
                                                        *cmd[6:]]).encode()).hexdigest()[:16]
    d = _bench_dir()
    exe = d / f"{name}-{key}{'.so' if python_lib else ''}"
    if exe.exists():
        return exe
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}-")
    os.close(fd)
    cmd[4] = tmp
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode:
            tail = " | ".join(out.stderr.strip().splitlines()[-4:])
            hint = " (apt-get install libbpf-dev)" if "bpf/libbpf.h" in out.stderr else ""
            raise Skip(f"building {src.name} failed{hint}: {tail}")
        os.chmod(tmp, 0o700)
        os.replace(tmp, exe)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return exe


BCC_SCRIPT = r'''
import sys, time
from bcc import BPF, __version__ as bcc_version

rings = [a.split("=", 1) for a in sys.argv[1:]]
text = ["struct event { u64 seq; u64 ts; u32 pid; u32 cpu; char comm[16]; };"]
for name, pin in rings:
    path, size = pin.rsplit(":", 1)
    # BPF_RINGBUF_OUTPUT's table, opened from a pinned map (like BPF_TABLE_PINNED).
    text.append("""
struct %(n)s_table_t {
  int key; u32 leaf;
  int (*ringbuf_output) (void *, u64, u64);
  void* (*ringbuf_reserve) (u64);
  void (*ringbuf_discard) (void *, u64);
  void (*ringbuf_submit) (void *, u64);
  u32 max_entries;
};
__attribute__((section("maps/ringbuf:%(p)s")))
struct %(n)s_table_t %(n)s = { .max_entries = %(s)s };
int %(n)s_anchor(void *ctx) {
  struct event ev = {};
  %(n)s.ringbuf_output(&ev, sizeof(ev), 0);  /* tells BCC the record type */
  return 0;
}
""" % {"n": name, "p": path, "s": size})
b = BPF(text="\n".join(text))
count = 0
seq_sum = 0

def make_cb(table):
    def cb(ctx, data, size):
        global count, seq_sum
        ev = table.event(data)
        seq_sum += ev.seq
        count += 1
    return cb

for name, _ in rings:
    table = b[name]
    table.open_ring_buffer(make_cb(table))
print("ready", bcc_version, flush=True)
for line in sys.stdin:
    cmd, n = line.split()
    n = int(n)
    count = seq_sum = 0
    if cmd == "pre":
        t0 = time.monotonic_ns()
        while count < n:
            before = count
            b.ring_buffer_consume()
            if count == before:
                break
        t1 = time.monotonic_ns()
    else:
        print("waiting", flush=True)
        t0 = time.monotonic_ns()
        while count < n:
            b.ring_buffer_poll(100)
        t1 = time.monotonic_ns()
    if count < n:
        print("error ring ran dry after %d of %d records" % (count, n), flush=True)
    else:
        print("ok", count, seq_sum, t0, t1, flush=True)
'''


def _bcc_python() -> str:
    """The interpreter that can import ``bcc``: ours, else the system's."""
    override = os.environ.get("BPFRING_BENCH_BCC_PYTHON")
    if override:
        return override
    with contextlib.suppress(ImportError):
        import bcc  # noqa: F401

        return sys.executable
    return "/usr/bin/python3"


def _bcc_kernel_source(notes: list[str]) -> dict[str, str]:
    """Environment for BCC's compiler: where kernel headers are.

    BCC compiles C at run time and needs kernel headers even for a program
    that uses no kernel type.  With none for the running kernel (custom
    kernels have no linux-headers package, CONFIG_IKHEADERS may be off), use
    the newest Debian linux-headers-*-common/-<arch> pair installed, merged
    into one tree of symlinks in the private bench directory, through
    BCC_KERNEL_SOURCE.  The benchmark program only uses BCC's own helpers, so
    a headers version other than the running kernel's does not matter.
    """
    env: dict[str, str] = {}
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return env
    release = platform.release()
    mod = Path("/lib/modules") / release
    if (mod / "build/include/linux/kconfig.h").exists() or (mod / "source").is_dir() \
            or Path("/sys/kernel/kheaders.tar.xz").exists():
        return env
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    pairs = []
    for common in Path("/usr/src").glob("linux-headers-*-common"):
        ver = common.name[len("linux-headers-"):-len("-common")]
        archdir = Path("/usr/src") / f"linux-headers-{ver}-{arch}"
        if (common / "include/linux/kconfig.h").exists() and archdir.is_dir():
            pairs.append((ver, common, archdir))
    if not pairs:
        raise Skip(f"BCC needs kernel headers and there are none for {release} "
                   "(no /lib/modules/<release>/build, no CONFIG_IKHEADERS, no "
                   "/usr/src/linux-headers-*): run benchmarks/setup_bcc.sh")

    def version_key(p: tuple[str, Path, Path]) -> list[int]:
        return [int(x) for x in p[0].replace("-", ".").split(".") if x.isdigit()]

    ver, common, archdir = max(pairs, key=version_key)
    tree = _bench_dir() / f"bcc-headers-{ver}-{arch}"
    if not (tree / "include/linux/kconfig.h").exists():
        tmp = Path(tempfile.mkdtemp(dir=tree.parent, prefix=".bcc-headers-"))
        try:
            for src in (common, archdir):  # the arch tree's generated files win
                subprocess.run(["cp", "-rsf", f"{src}/.", f"{tmp}/"], check=True,
                               capture_output=True, timeout=300)
            os.replace(tmp, tree)
        except (OSError, subprocess.SubprocessError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise Skip(f"cannot assemble kernel headers for BCC: {e}") from None
    notes.append(f"BCC compiled with linux-headers-{ver} (BCC_KERNEL_SOURCE); "
                 f"the running kernel is {release}")
    env["BCC_KERNEL_SOURCE"] = str(tree)
    return env
