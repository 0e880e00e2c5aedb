"""``bpfring tail``: consume a kernel ring (or perf buffer) and print its
records, or write them to rotated files (``--output``, see ``_sinks``);
``--where`` filters with a safe expression parser."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._cli_common import Usage, json_default, mapref, record_type
from .errors import BPFError


class Where:
    """A ``--where`` filter: a Python-syntax expression over record fields,
    parsed with :mod:`ast` and walked by a whitelist (comparisons, ``and``,
    ``or``, ``not``, field names, ``a.b`` for nested fields, literals,
    unary minus, tuples/lists of literals for ``in``).  Nothing is ever
    passed to ``eval``: any other node (calls, subscripts, lambdas, dunder
    attributes) is refused when parsing."""

    _CMP: dict[type, Callable[[Any, Any], bool]] = {}

    def __init__(self, text: str, fields: Sequence[str]) -> None:
        import ast
        import operator

        if not Where._CMP:
            Where._CMP.update({
                ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
                ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
                ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b})
        self.text = text
        self.fields = set(fields)
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as e:
            raise Usage(f"--where {text!r}: not an expression ({e.msg})") from None
        self._fn = self._compile(tree.body)

    def _compile(self, node: Any) -> Callable[[dict[str, Any]], Any]:
        import ast

        if isinstance(node, ast.BoolOp):
            parts = [self._compile(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda r: all(p(r) for p in parts)
            return lambda r: any(p(r) for p in parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self._compile(node.operand)
            return lambda r: not inner(r)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self._compile(node.operand)
            neg = isinstance(node.op, ast.USub)
            return lambda r: -operand(r) if neg else +operand(r)
        if isinstance(node, ast.Compare):
            first = self._compile(node.left)
            steps = [(self._CMP[type(op)], self._compile(c))
                     for op, c in zip(node.ops, node.comparators, strict=True)
                     if type(op) in self._CMP]
            if len(steps) != len(node.ops):
                raise Usage(f"--where {self.text!r}: 'is' is not supported; use == or !=")

            def compare(r: dict[str, Any]) -> bool:
                left = first(r)
                for op, right_fn in steps:
                    right = right_fn(r)
                    if not op(left, right):
                        return False
                    left = right
                return True
            return compare
        if isinstance(node, ast.Constant) and isinstance(
                node.value, int | float | str | bytes | bool | type(None)):
            value = node.value
            return lambda r: value
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items = [self._compile(e) for e in node.elts]
            return lambda r: tuple(i(r) for i in items)
        if isinstance(node, ast.Name):
            name = node.id
            if name not in self.fields:
                raise Usage(f"--where {self.text!r}: no field {name!r} (fields: "
                             f"{', '.join(sorted(self.fields))})")
            return lambda r: r[name]
        if isinstance(node, ast.Attribute) and not node.attr.startswith("_"):
            base = self._compile(node.value)
            attr = node.attr

            def member(r: dict[str, Any]) -> Any:
                value = base(r)
                asdict = getattr(value, "_asdict", None)
                if asdict is None:
                    raise Usage(f"--where {self.text!r}: {attr!r} is not a member here")
                fields = asdict()
                if attr not in fields:
                    raise Usage(f"--where {self.text!r}: no member {attr!r} (members: "
                                 f"{', '.join(fields)})")
                return fields[attr]
            return member
        raise Usage(f"--where {self.text!r}: '{ast.unparse(node)}' is not allowed (only "
                     "comparisons, and/or/not, field names and literals)")

    def __call__(self, record: dict[str, Any]) -> bool:
        try:
            return bool(self._fn(record))
        except TypeError as e:
            raise Usage(f"--where {self.text!r}: {e}") from None


def open_consumer(args: argparse.Namespace) -> Any:
    """The consumer for ``tail``: a :class:`RingBuffer` for a kernel ring, a
    :class:`PerfBuffer` for a perf event array; a user ring is refused with
    the command that does work on it."""
    from . import _sys
    from .mapref import MapRef
    from .perfbuf import PerfBuffer
    from .ringbuf import RingBuffer

    ref = mapref(args)
    if ref.kind == "name":
        # Names are shared across map types: prefer a kernel ring, then say
        # what the name is if it is none.
        errors: list[BPFError] = []
        for mtype in (_sys.MAP_TYPE_RINGBUF, _sys.MAP_TYPE_PERF_EVENT_ARRAY,
                      _sys.MAP_TYPE_USER_RINGBUF):
            try:
                fd = ref.open_owned(map_type=mtype)
                break
            except BPFError as e:
                errors.append(e)
        else:
            # A name several rings share says so (with their ids); only when no
            # kind has the name is it "no map named".
            several = [e for e in errors if "matches several" in str(e)]
            if several:
                raise several[0]
            raise BPFError(f"no ringbuf, perf_event_array or user_ringbuf map named "
                           f"{ref.value!r} on this host",
                           hint="list rings with 'bpfring list' or maps with 'bpftool map'")
    else:
        fd = ref.open_owned()
    with fd:
        info = _sys.map_info(fd.fileno())
        if info.type == _sys.MAP_TYPE_USER_RINGBUF:
            raise BPFError(f"map {info.name or 'unnamed'!r} (id {info.id}) is a user_ringbuf "
                           "map: this is a user ring buffer (user → kernel); use write",
                           hint=f"use UserRingBuffer from Python, or 'bpfring write id "
                           f"{info.id} --hex HEX' to send it samples")
        if info.type == _sys.MAP_TYPE_PERF_EVENT_ARRAY:
            return PerfBuffer(MapRef.fd(fd.fileno()))
        return RingBuffer(MapRef.fd(fd.fileno()))


def cmd_tail(args: argparse.Namespace) -> int:
    """``bpfring tail``: print records, or write them to files (``--output``)."""
    import os
    import time

    from .perfbuf import PerfBuffer

    fmt = check_sink_options(args)
    consumer = open_consumer(args)
    with consumer:
        map_id: int = consumer.map_id
        rtype = record_type(args, map_id)
        fields = list(rtype.fields) if rtype is not None else []
        where = Where(args.where, [*fields, "size", "cpu"]) if args.where else None
        stats = args.stats if args.stats is not None else os.isatty(sys.stdout.fileno())
        lost_of = lost_reader(consumer)
        sink = None
        if fmt is not None:
            from ._sinks import RotatingSink, SignalGuard

            try:
                sink = RotatingSink(args.output, fmt, rtype, rotate_size=args.rotate_size,
                                    rotate_time=args.rotate_time)
            except ValueError as e:
                raise Usage(str(e)) from None
            guard = SignalGuard()
        print(f"bpfring: warning: tail consumes the records of map id {map_id}; any other "
              "consumer of this ring will miss them", file=sys.stderr)
        seen = 0
        received = 0
        short = 0
        start = last_stats = last_flush = time.monotonic()
        deadline = None if args.timeout is None else start + args.timeout
        perf = isinstance(consumer, PerfBuffer)
        pending: list[bytes] = []

        def show(view: memoryview) -> None:
            nonlocal seen, received, short
            received += 1
            ts = time.strftime("%H:%M:%S")
            rec = rtype.decode(view) if rtype is not None and view.nbytes >= rtype.size else None
            if where is not None:
                values: dict[str, Any] = {"size": view.nbytes,
                                          "cpu": consumer.cpu if perf else None}
                if rec is not None:
                    values.update(rec._asdict())
                elif fields:
                    return  # too short for --type: no fields to test
                if not where(values):
                    return
            if sink is not None:
                if rtype is not None and rec is None:
                    short += 1  # too short for the file's record type
                    return
                pending.append(bytes(view))
            elif args.json:
                if rec is not None:
                    out = {"time": ts, **rec._asdict()}
                else:
                    out = {"time": ts, "size": view.nbytes, "data": bytes(view).hex()}
                print(json.dumps(out, default=json_default), flush=True)
            elif rec is not None:
                print(f"{ts} {rec!r}", flush=True)
            else:
                print(f"{ts} {view.nbytes:>5}B {bytes(view).hex()}", flush=True)
            seen += 1

        def flush() -> None:
            assert sink is not None
            with guard.held():  # a signal now ends tail after the batch is written
                batch = pending[:]
                pending.clear()
                sink.write(batch)

        def report(now: float) -> None:
            rate = received / (now - start) if now > start else 0.0
            lost = lost_of()
            what = "written" if sink is not None else "shown"
            print(f"bpfring: {received} records ({seen} {what}), {rate:.1f}/s, lost "
                  f"{'unknown' if lost is None else lost}", file=sys.stderr, flush=True)

        try:
            while args.count is None or seen < args.count:
                now = time.monotonic()
                if stats and now - last_stats >= 1.0:
                    report(now)
                    last_stats = now
                if sink is not None and (len(pending) >= SINK_BATCH
                                         or now - last_flush >= SINK_FLUSH):
                    flush()
                    last_flush = now
                left = None if deadline is None else max(0.0, deadline - now)
                if left == 0.0:
                    break
                if stats:
                    left = 1.0 if left is None else min(left, 1.0)
                if sink is not None:
                    left = SINK_FLUSH if left is None else min(left, SINK_FLUSH)
                consumer.poll(show, timeout=left,
                              limit=None if args.count is None else args.count - seen)
        finally:
            if sink is not None:
                try:
                    flush()
                finally:
                    with guard.held():
                        sink.close()
                if short:
                    print(f"bpfring: warning: {short} record(s) shorter than --type "
                          f"{args.type} were not written", file=sys.stderr)
                print(f"bpfring: wrote {sink.rows} record(s) to {len(sink.files)} file(s)"
                      + (f": {', '.join(sink.files)}" if len(sink.files) <= 4 else ""),
                      file=sys.stderr)
            if stats:
                report(time.monotonic())
    return 0


#: Records a sink writes at once, and the longest a record waits to be written (s).
SINK_BATCH = 8192
SINK_FLUSH = 0.5


def check_sink_options(args: argparse.Namespace) -> str | None:
    """The file format of ``--output`` (None: print), checked before the ring
    is opened."""
    from ._sinks import format_of

    fmt: str | None = args.format
    if args.output is None:
        if fmt in ("arrow", "parquet"):
            raise Usage(f"--format {fmt} writes files: give --output FILE")
        if args.rotate_size or args.rotate_time:
            raise Usage("--rotate-size and --rotate-time need --output FILE")
        if fmt == "jsonl":
            args.json = True
        elif fmt == "csv":
            raise Usage("--format csv writes files: give --output FILE")
        return None
    if args.json:
        raise Usage("--json prints to stdout; with --output use --format jsonl")
    if fmt is None:
        fmt = format_of(args.output)
        if fmt is None:
            raise Usage(f"cannot tell the format of {args.output}: give --format "
                        "jsonl, csv, arrow or parquet")
    if fmt in ("arrow", "parquet"):
        from . import frames

        frames.require("pyarrow")  # before anything is consumed
    return fmt


def lost_reader(consumer: Any) -> Callable[[], int | None]:
    """How ``--stats`` learns the lost count: the perf buffer counts its
    loss reports; a kernel ring has one only with bpfring.h's ``__lost``
    counter next to it."""
    from .perfbuf import PerfBuffer

    if isinstance(consumer, PerfBuffer):
        return lambda: int(consumer.lost)
    from .discovery import find_lost_map, read_lost

    lost_id = find_lost_map(consumer.map_id, consumer.info.name) if consumer.info.name else None
    if lost_id is None:
        return lambda: None
    return lambda: read_lost(lost_id)
