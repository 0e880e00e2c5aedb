"""The ``bpfring`` command line.

Commands: ``demo``, ``list``, ``info MAP``, ``tail MAP``, ``write MAP``,
``build``, ``bench``.  ``MAP`` is named the bpftool way: ``id N``, ``pinned
PATH`` or ``name NAME``.  Tables for people; ``--json`` as bpftool does it:
one JSON document for ``list`` and ``info``, JSON lines (a stream) for
``tail``.

Every error is one line on stderr, ``bpfring: error: WHAT (hint: WHAT TO DO)``,
and one of these exit codes (``EXIT_*`` below; the README lists them too):

* 0 success; also ``tail`` and ``demo`` ended by Ctrl-C, SIGTERM or SIGHUP
  (a stream has no other way to end);
* 1 a bpfring or system error (no such map, permission, kernel refusal);
* 2 bad usage or bad input (options, map reference, a sample that does not
  match its ``--type``);
* 70 an internal error (a bug in bpfring: ``-vv`` shows the traceback);
* 130 interrupted before the work was done (``write``, ``bench``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import __version__
from ._cli_common import Usage as _Usage
from ._cli_common import mapref as _mapref
from ._cli_common import record_type as _record_type
from .errors import BPFError

if TYPE_CHECKING:
    from .discovery import RingInfo

log = logging.getLogger("bpfring")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    demo.run(count=args.count, trigger=args.trigger, as_json=args.json,
             interval=args.interval)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .discovery import list_rings

    rings = list_rings()
    if args.json:  # one JSON document, as bpftool prints
        print(json.dumps([r.asdict() for r in rings]))
        return 0
    print(f"{'ID':>6} {'NAME':<16} {'TYPE':<13} {'SIZE':>10} {'PENDING':>10} {'FILL':>6} "
          f"{'LOST':>6}  {'PROGRAMS(PIDS)':<24} PINNED")
    for r in rings:
        lost = "-" if r.lost is None else str(r.lost)
        print(f"{r.id:>6} {r.name or '-':<16} {r.type:<13} {r.size:>10} {r.pending:>10} "
              f"{r.fill:>6.1%} {lost:>6}  {_users_text(r):<24} {' '.join(r.pinned) or '-'}")
    return 0


def _users_text(r: RingInfo) -> str:
    """``12(345,346) 13(-)``: each program using the ring and the pids holding it."""
    if not r.programs:
        return "-"
    return " ".join(f"{p['id']}({','.join(map(str, p['pids'])) or '-'})" for p in r.programs)


def _cmd_info(args: argparse.Namespace) -> int:
    from .discovery import ring_info

    r = ring_info(_mapref(args))
    if args.json:
        print(json.dumps(r.asdict()))
        return 0
    rows = [("id", r.id), ("name", r.name or "-"), ("type", r.type), ("size", r.size),
            ("consumer_pos", r.consumer_pos), ("producer_pos", r.producer_pos),
            ("pending bytes", r.pending), ("fill", f"{r.fill:.1%}"),
            ("lost", "unknown (no bpfring lost counter)" if r.lost is None else r.lost),
            ("pinned", " ".join(r.pinned) or "-"),
            ("programs(pids)", _users_text(r)),
            ("held by pids", " ".join(map(str, r.pids)) or "-")]
    for k, v in rows:
        print(f"{k + ':':<15} {v}")
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    from ._cli_tail import cmd_tail

    return cmd_tail(args)


def _cmd_write(args: argparse.Namespace) -> int:
    from .ringbuf import UserRingBuffer

    urb = UserRingBuffer(_mapref(args))
    with urb:
        rtype = _record_type(args, urb.map_id)

        def encode_json(text: str) -> bytes:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise _Usage(f"bad JSON {text!r}: {e}") from None
            if rtype is not None:
                if not isinstance(value, dict):
                    raise _Usage(f"--type {args.type} needs a JSON object, got {text!r}")
                try:
                    return rtype.encode(value)
                except (TypeError, ValueError, OverflowError, KeyError, BPFError) as e:
                    fields = ", ".join(rtype.fields)
                    detail = e.message if isinstance(e, BPFError) else str(e).strip("'\"")
                    raise _Usage(f"sample {text} does not match --type {args.type}: {detail}"
                                 + (f" (its fields: {fields})" if fields else "")) from None
            if isinstance(value, str):
                return _hex(value)
            raise _Usage("without --type, give the sample as a JSON string of hex digits")

        samples: list[bytes] = []
        if args.json is not None:
            samples.append(encode_json(args.json))
        if args.hex is not None:
            samples.append(_hex(args.hex))
        if args.stdin:
            for line in sys.stdin:
                line = line.strip()
                if line:
                    samples.append(encode_json(line) if (rtype or line[0] in "\"{")
                                   else _hex(line))
        if not samples:
            raise _Usage("nothing to write: give --json LINE, --hex HEX or - (stdin)")
        written = 0
        try:
            for data in samples:
                urb.write(data, timeout=args.timeout)
                written += 1
        except KeyboardInterrupt:
            print(f"bpfring: error: interrupted after writing {written} of {len(samples)} "
                  f"sample(s) to map id {urb.map_id}", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(f"wrote {written} sample(s) to map id {urb.map_id}", file=sys.stderr)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    """Compile with clang (through the build cache) and copy the object to
    ``-o``: objects can then ship to machines without clang."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from .build import build

    src = Path(args.source)
    if not src.is_file():
        raise _Usage(f"no such BPF C source: {args.source}")
    out = Path(args.output) if args.output else src.with_name(
        src.name.removesuffix(".c") + (".o" if src.name.endswith(".bpf.c") else ".bpf.o"))
    if out.resolve() == src.resolve():
        raise _Usage(f"the output {out} would overwrite the source")
    defines: dict[str, object] = {}
    for d in args.define or []:
        key, eq, value = d.partition("=")
        defines[key] = value if eq else 1
    built = build(src, include_dirs=args.include or [], defines=defines)
    # Copy next to the destination, then rename: a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=".bpfring-")
    try:
        with os.fdopen(fd, "wb") as dst, open(built, "rb") as f:
            shutil.copyfileobj(f, dst)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    print(out)
    return 0


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(" ", "").removeprefix("0x"))
    except ValueError:
        raise _Usage(f"not hex: {text!r}") from None


def _bench_main(argv: Sequence[str]) -> int:
    """Run ``benchmarks.main(argv)`` from the source checkout bpfring is
    imported from (``src/bpfring`` next to ``benchmarks/``): the suites are
    not part of the installed package."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent.parent
    init = root / "benchmarks" / "__init__.py"
    if not (init.is_file() and (root / "src" / "bpfring").is_dir()):
        raise BPFError("the benchmarks are not installed with bpfring: they live in its "
                       "source checkout",
                       hint="in a checkout of bpfring, run 'pip install -e .' and then "
                       "'bpfring bench', or 'python benchmarks/bench_rings.py'")
    mod = sys.modules.get("benchmarks")
    if mod is None or Path(mod.__file__ or "").resolve() != init:
        # Load this checkout's package by path: no sys.path change, and no
        # other top-level "benchmarks" can stand in for it.
        spec = importlib.util.spec_from_file_location(
            "benchmarks", init, submodule_search_locations=[str(init.parent)])
        if spec is None or spec.loader is None:
            raise BPFError(f"cannot load {init}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = mod
        spec.loader.exec_module(mod)
    if list(argv[:1]) in (["-h"], ["--help"]):
        # The default suite's options, then every suite.
        try:
            mod.main(list(argv))
        except SystemExit as e:
            if e.code not in (0, None):
                raise
        _bench_help(mod.SUITES)
        return EXIT_OK
    return int(mod.main(list(argv)))


def _bench_help(suites: dict[str, str]) -> None:
    """The end of ``bpfring bench --help``: every suite with the first sentence of its
    docstring (``bpfring bench SUITE --help`` shows a suite's options)."""
    import importlib
    import re

    print("\nsuites ('bpfring bench SUITE [options]', default rings):")
    for name, module in suites.items():
        doc = (importlib.import_module(module).__doc__ or "").strip().split("\n\n")[0]
        text = " ".join(doc.split()).split(". ")[0].rstrip(".")
        text = text.split(": ", 1)[-1] if text.startswith("``") else text
        text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")  # reST markup
        print(f"  {name:<8} {text}")
    print("'bpfring bench SUITE --help' lists a suite's options and cases.")


def _cmd_bench(args: argparse.Namespace) -> int:
    return _bench_main(args.bench_args)


class _VersionAction(argparse.Action):
    """``--version``: the version and the accelerator's state (computed only
    when asked, so that parsing other options imports nothing)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from ._ringbackend import accelerator_status

        print(f"bpfring {__version__} ({accelerator_status()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bpfring",
        description="Exchange data with eBPF programs through BPF ring buffers.",
    )
    p.add_argument("--version", action=_VersionAction, nargs=0,
                   help="show the version and whether the C accelerator is active, and exit")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log more (-v: info, -vv: debug, including libbpf)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser("demo", help="run the reference user ring buffer example",
                       description="Load the reference example (tracepoint "
                       "syscalls/sys_exit_kill drains a user ring and answers each "
                       "sample with an event) and print events as they arrive.")
    d.add_argument("--count", type=int, metavar="N", help="exit 0 after N events")
    d.add_argument("--trigger", action="store_true",
                   help="call kill(own pid, 0) periodically so the demo runs on an idle host")
    d.add_argument("--interval", type=float, default=0.1, metavar="SEC",
                   help="trigger period in seconds (default 0.1)")
    d.add_argument("--json", action="store_true", help="one JSON object per event")
    d.set_defaults(func=_cmd_demo)

    def add_map(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("kind", choices=["id", "pinned", "name"],
                        help="how the map is named, as in bpftool")
        sp.add_argument("ref", metavar="REF", help="the map id, pin path or map name")

    ls = sub.add_parser("list", help="list the ring buffer maps on this host",
                        description="List ring buffer maps (both types): id, name, type, "
                        "size, bytes pending, fill level, lost count when known, pins.")
    ls.add_argument("--json", action="store_true",
                    help="one JSON document: an array with one object per ring")
    ls.set_defaults(func=_cmd_list)

    inf = sub.add_parser("info", help="show one ring's size, positions and fill",
                         description="Show a ring's size, positions, bytes waiting and "
                         "lost count (when the ring uses bpfring's lost counter).")
    add_map(inf)
    inf.add_argument("--json", action="store_true", help="JSON output")
    inf.set_defaults(func=_cmd_info)

    t = sub.add_parser("tail", help="print the records of a kernel ring buffer",
                       description="Consume and print records of a BPF_MAP_TYPE_RINGBUF map "
                       "(or of a BPF_MAP_TYPE_PERF_EVENT_ARRAY), "
                       "decoded from BTF with --type, as hex otherwise.  Note: this consumes "
                       "the records; another consumer of the same ring will miss them.")
    add_map(t)
    t.add_argument("--type", metavar="NAME", help="decode records as this BTF type")
    t.add_argument("--btf", metavar="FILE", help="take types from this object file "
                   "(default: the BTF of the program that uses the map)")
    t.add_argument("--json", action="store_true",
                   help="JSON lines: one JSON object per record, a stream (not one document)")
    t.add_argument("--where", metavar="EXPR", help="show only records matching EXPR, e.g. "
                   "'pid == 42 and comm != \"sh\"': comparisons, and/or/not, field names "
                   "(with --type; also size, and cpu for perf buffers) and literals")
    t.add_argument("--stats", action=argparse.BooleanOptionalAction, default=None,
                   help="show the record rate and lost count on stderr every second "
                   "(default: on when stdout is a terminal)")
    t.add_argument("--header", metavar="FILE", help="take types from this C header "
                   "(compiled with clang: for prebuilt objects whose BTF lacks them)")
    t.add_argument("-I", dest="include", action="append", metavar="DIR",
                   help="include directory for --header (repeatable)")
    t.add_argument("--count", type=int, metavar="N",
                   help="exit after N records shown (or written)")
    t.add_argument("--timeout", type=float, metavar="SEC", help="exit after SEC seconds")
    t.add_argument("--output", "-o", metavar="FILE", help="write records to FILE instead "
                   "of printing them; with rotation FILE may hold {index} and {time}")
    t.add_argument("--format", choices=["jsonl", "csv", "arrow", "parquet"],
                   help="the file format (default: from the extension of --output); "
                   "arrow and parquet need pyarrow ('pip install bpfring[arrow]')")
    t.add_argument("--rotate-size", type=_arg(_sinks_parse("parse_size")), metavar="SIZE",
                   help="start a new file when one reaches SIZE (e.g. 100M, 1G)")
    t.add_argument("--rotate-time", type=_arg(_sinks_parse("parse_duration")),
                   metavar="DUR", help="start a new file every DUR (e.g. 30s, 10m, 1h)")
    t.set_defaults(func=_cmd_tail)

    w = sub.add_parser("write", help="write samples to a user ring buffer",
                       description="Write samples to a BPF_MAP_TYPE_USER_RINGBUF map.  "
                       "With --type, samples are JSON objects encoded with that BTF type; "
                       "without, hex (or JSON strings of hex).  '-' reads one sample per "
                       "line from stdin.")
    add_map(w)
    w.add_argument("stdin", nargs="?", choices=["-"], help="read samples from stdin")
    w.add_argument("--type", metavar="NAME", help="encode samples as this BTF type")
    w.add_argument("--btf", metavar="FILE", help="take types from this object file")
    w.add_argument("--header", metavar="FILE", help="take types from this C header "
                   "(compiled with clang: for prebuilt objects whose BTF lacks them)")
    w.add_argument("-I", dest="include", action="append", metavar="DIR",
                   help="include directory for --header (repeatable)")
    w.add_argument("--json", metavar="LINE", help="one sample as a JSON object (with --type)")
    w.add_argument("--hex", metavar="HEX", help="one sample as hex bytes")
    w.add_argument("--timeout", type=float, default=0, metavar="SEC",
                   help="wait up to SEC seconds for room when the ring is full (default 0)")
    w.set_defaults(func=_cmd_write)

    bd = sub.add_parser("build", help="compile BPF C into an object file",
                        description="Compile FILE.bpf.c with clang (the flags bpfring.load "
                        "uses, vmlinux.h generated for this kernel) and write the object, "
                        "to load it with bpfring.load() where clang is not installed.")
    bd.add_argument("source", metavar="FILE.bpf.c", help="the BPF C source")
    bd.add_argument("-o", "--output", metavar="OUT",
                    help="the object to write (default: FILE.bpf.o next to the source)")
    bd.add_argument("-I", dest="include", action="append", metavar="DIR",
                    help="add an include directory (repeatable)")
    bd.add_argument("-D", dest="define", action="append", metavar="NAME[=VALUE]",
                    help="define a macro (repeatable)")
    bd.set_defaults(func=_cmd_build)

    b = sub.add_parser("bench", help="run the benchmark suites (rings, bridge)",
                       description="Benchmarks, side by side with their baselines; "
                       "'bpfring bench SUITE --help' lists a suite's options.",
                       add_help=False)
    b.add_argument("bench_args", nargs=argparse.REMAINDER,
                   help="SUITE [options]: rings (default) or bridge")
    b.set_defaults(func=_cmd_bench)
    return p


def _sinks_parse(name: str) -> Callable[[str], object]:
    """A parser of ``_sinks`` for an option, imported when the option is used."""
    def parse(text: str) -> object:
        from . import _sinks

        fn: Callable[[str], object] = getattr(_sinks, name)
        return fn(text)
    return parse


def _arg(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse ``type=``: ValueError becomes a usage error naming the value."""
    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return convert


def _has_bpf_capabilities() -> bool:
    """Whether this process holds CAP_SYS_ADMIN, CAP_PERFMON and CAP_BPF
    (root may have lost them: a container, a dropped bounding set)."""
    try:
        with open("/proc/self/status") as f:
            eff = next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return False
    want = (1 << 21) | (1 << 38) | (1 << 39)
    return eff & want == want


def _error_line(e: BPFError) -> str:
    """``bpfring: error: MESSAGE (hint: HINT)``, one line whatever the error holds."""
    from ._sys import PRIV_HINT

    first = e.message.splitlines()[0] if e.message else type(e).__name__
    hint = e.hint
    if hint == PRIV_HINT and _has_bpf_capabilities():
        # Refused with every BPF capability: privileges are not what is missing.
        hint = ("bpfring runs as root already: the kernel refused for another reason "
                "(an LSM policy, or the object is not what the command needs)")
    return f"bpfring: error: {first}" + (f" (hint: {hint})" if hint else "")


def _stop_on_signals() -> None:
    """End a streaming command on SIGTERM and SIGHUP as on Ctrl-C: the
    handler raises KeyboardInterrupt, so ``with`` blocks close the ring and
    the exit is as clean as for SIGINT."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``bpfring`` command. Output piped into a reader that stops early
    (``| head``) ends the command quietly, as for other Unix tools."""
    try:
        try:
            return _main(argv)
        finally:  # also after argparse's --help, which exits through SystemExit
            sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the interpreter flushes it again at exit,
    which would otherwise report the closed pipe a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout replaced by something without a file
        pass


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # Everything after "bench" belongs to the suite's own parser
        # (argparse's REMAINDER would not pass on a leading "--option").
        try:
            return _bench_main(argv[1:])
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BPFError as e:
            print(_error_line(e), file=sys.stderr)
            return EXIT_ERROR
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra == ["-"] and args.command == "write" and args.stdin is None:
        args.stdin = "-"  # "write MAP --type T -": stdin named after the options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="bpfring: %(levelname)s: %(message)s")
    # libbpf's own warnings are noisy and repeated in our errors (LoadError
    # carries the verifier log): show them only with -v.
    if args.verbose == 0:
        logging.getLogger("bpfring.libbpf").setLevel(logging.ERROR)
    if args.command in ("tail", "demo"):
        _stop_on_signals()
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return EXIT_OK if args.command in ("tail", "demo") else EXIT_INTERRUPTED
    except _Usage as e:
        print(f"bpfring: error: {e} (hint: bpfring {args.command} --help)", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        raise  # main() ends quietly
    except BPFError as e:
        print(_error_line(e), file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        print(f"bpfring: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # a bug: still one line, the traceback with -vv
        log.debug("internal error", exc_info=True)
        print(f"bpfring: error: internal error: {type(e).__name__}: {e} (hint: rerun with "
              "-vv for the traceback and report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
