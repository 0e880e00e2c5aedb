"""Rounds and sections: how each case is run, checked and timed."""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
from typing import Any

from .bench import Bench, _rss, _watchdog
from .cases import IN_PROCESS_CONSUMERS, IN_PROCESS_WRITERS, _missing_api
from .common import (
    BOUNDS,
    CASE_BY_NAME,
    CASES,
    DIRECTIONS,
    K2U,
    LIMIT_CASES,
    MODES,
    RSS_GROWTH_LIMIT,
    U2K,
    CaseDef,
    Result,
    Skip,
    _mono,
    _round,
)
from .limits import bound_note, limit_note

# ------------------------------------------------------------------------------------
# Rounds
# ------------------------------------------------------------------------------------


def k2u_round(b: Bench, case: str, mode: str) -> dict[str, Any]:
    n = b.n
    live = mode == "live"
    rb = b.rings[mode]
    if rb.available:
        b.log(f"  ({b.discard(mode)} records left over from an earlier round discarded)")
    if case == "produce":
        ns = b.prefill()
        b.discard(mode)
        return _round(n, ns)
    proc = None
    if case == "libbpf-c":
        proc = b.c_proc("libbpf_consume", b.map_names[(K2U, mode)])
    elif case == "bcc":
        proc = b.bcc_proc()
    extra: dict[str, Any] = {}
    if not live:
        b.prefill()
        if proc is not None:
            proc.send(f"pre {n}")
            count, s, t0, t1 = (int(x) for x in proc.expect("ok", b.opts.timeout))
        else:
            count, s, t0, t1 = IN_PROCESS_CONSUMERS[case](b, mode, n, False)
        ns = t1 - t0
    else:
        helper = b.ensure_helper()
        if proc is not None:
            proc.send(f"live {n}")
            proc.expect("waiting", 30, final=False)
            helper.send(f"produce {n} {b.opts.live_batch}")
            count, s, _, t1 = (int(x) for x in proc.expect("ok", b.opts.timeout))
        else:
            helper.send(f"produce {n} {b.opts.live_batch}")
            count, s, _, t1 = IN_PROCESS_CONSUMERS[case](b, mode, n, True)
        p0, p1, lost, topped = (int(x) for x in helper.expect("done", b.opts.timeout))
        ns = t1 - p0
        extra = {"lost": lost, "topped_up": topped,
                 "producer_rate": n / max(p1 - p0, 1) * 1e9}
    if count != n:
        raise RuntimeError(f"consumed {count} records, expected {n}")
    if s is not None and not live and s != b.expected_sum:
        raise RuntimeError(f"sum of seq is {s}, expected {b.expected_sum}: records were "
                           "lost, repeated or misread")
    if rb.available:
        raise RuntimeError(f"{rb.available} bytes still in the ring after the round")
    return _round(n, ns, **extra)


def u2k_round(b: Bench, case: str, mode: str) -> dict[str, Any]:
    n = b.n
    live = mode == "live"
    urb = b.urings[mode]
    if urb.pending_bytes():
        b.drain_all(mode)
    b.reset_stats()
    extra: dict[str, Any] = {}
    if case in ("objects-read", "objects-copy"):
        # Time C alone over write_many's input (not into the ring), then fill
        # the ring untimed so that the round's drain checks hold as for any case.
        limit, recs = b.objects_limit(case.split("-")[1]), b.record_bytes
        t0 = _mono()
        done = limit(recs)
        t1 = _mono()
        if not done:
            raise RuntimeError(f"{case}: the records are not a list of bytes")
        urb.write_array(b.records)
        b.drain_all(mode)
    elif case == "drain":
        # Fill with the fastest writer there is (untimed), time the drain.
        if _missing_api("write_array") is None:
            urb.write_array(b.records)
        else:
            for r in b.record_bytes:
                urb.write(r)
        t0 = _mono()
        b.drain_all(mode)
        t1 = _mono()
    else:
        proc = None
        if case == "libbpf-c-write":
            proc = b.c_proc("libbpf_produce", b.map_names[(U2K, mode)])
        if live:
            helper = b.ensure_helper()
            helper.send(f"drain {n}")
        if proc is not None:
            proc.send(f"{'live' if live else 'write'} {n}")
            _, _, t0, t1 = (int(x) for x in proc.expect("ok", b.opts.timeout))
        else:
            t0, t1 = IN_PROCESS_WRITERS[case](b, mode, live)
        if live:
            _, d1, _, errors = (int(x) for x in helper.expect("done", b.opts.timeout))
            extra = {"write_seconds": (t1 - t0) / 1e9, "drain_errors": errors}
            t1 = d1
        else:
            b.drain_all(mode)
    samples, seq_sum, bad, errs = b.read_stats()
    if samples != n or bad or errs:
        raise RuntimeError(f"the kernel drained {samples} samples of {n} ({bad} malformed, "
                           f"{errs} drain errors)")
    if seq_sum != b.expected_sum:
        raise RuntimeError(f"the kernel saw a seq sum of {seq_sum}, expected {b.expected_sum}")
    return _round(n, t1 - t0, **extra)


def _select(opts: argparse.Namespace) -> list[tuple[CaseDef, str]]:
    """(case, mode) pairs chosen by --only, in table order."""
    tokens = opts.only
    names = {t for t in tokens if t in CASE_BY_NAME}
    modes = {t for t in tokens if t in ("prefilled", "empty", "live")}
    dirs = {t for t in tokens if t in DIRECTIONS}
    if tokens and not (names or modes or dirs):
        return []  # only "rss"
    out = []
    for direction in DIRECTIONS:
        for mode in MODES[direction]:
            for c in CASES:
                if c.direction != direction or mode not in c.modes:
                    continue
                if names and c.name not in names:
                    continue
                if modes and mode not in modes:
                    continue
                if dirs and direction not in dirs:
                    continue
                out.append((c, mode))
    return out


def _why_not(b: Bench, case: str, mode: str) -> str | None:
    """Why ``case`` cannot run in ``mode`` here (None: it can)."""
    why = _missing_api(case)
    if why is None and mode == "live" and b.live_skip:
        why = b.live_skip
    if why is not None:
        return why
    try:
        if case == "libbpf-c":
            b.c_proc("libbpf_consume", b.map_names[(K2U, mode)])
        elif case == "libbpf-c-write":
            b.c_proc("libbpf_produce", b.map_names[(U2K, mode)])
        elif case in ("objects-read", "objects-copy"):
            if _missing_api("write_array") is not None:
                return "needs write_array to fill the ring for the drain checks"
            b.objects_limit("read")
        elif case == "bcc":
            if "bcc" not in b.procs:
                b.log("  starting BCC (it compiles its program at run time)")
            b.bcc_proc()
    except Skip as e:
        return str(e)
    except (RuntimeError, TimeoutError, OSError) as e:
        return f"could not start: {e}"
    return None


def run_section(b: Bench, direction: str, mode: str, cases: list[CaseDef],
                results: dict[tuple[str, str], Result]) -> None:
    opts = b.opts
    active: list[Result] = []
    for c in cases:
        r = results[(c.name, mode)]
        why = _why_not(b, c.name, mode)
        if why is not None:
            r.status, r.reason = "skipped", why
            continue
        if c.name == "iter":
            b.typed_ring(mode)
            if b.typed_kind != "typed":
                r.label = "bpfring: iteration + numpy decode (interim)"
                r.notes.append("interim: typed iteration (ring_buffer(..., record=)) is not "
                               f"available ({b.typed_reason}); bytes records decoded with "
                               "np.frombuffer(rec, dtype)[0]")
        if c.name == "drain" and _missing_api("write_array") is not None:
            r.notes.append("ring filled with write() (write_array not available)")
        active.append(r)
    run = k2u_round if direction == K2U else u2k_round
    for i in range(opts.warmup + opts.rounds):
        for r in active:
            if r.status != "ok":
                continue
            if i < opts.warmup:
                what = f"{r.case} ({mode}) warm-up"
            else:
                what = f"{r.case} ({mode}) round {i + 1 - opts.warmup}/{opts.rounds}"
            b.log(f"  {what}")
            try:
                with _watchdog(opts.timeout, what):
                    rnd = run(b, r.case, mode)
            except Skip as e:
                r.status, r.reason = "skipped", str(e)
                continue
            except Exception as e:
                r.fail(f"{type(e).__name__}: {e}")
                b.log(f"  FAILED: {r.reason}")
                _recover(b, direction, mode)
                continue
            if i >= opts.warmup:
                r.rounds.append(rnd)
    by_case = {r.case: r for r in active if r.status == "ok" and r.rounds}
    for r in active:
        if r.status == "ok" and r.rounds and r.case in LIMIT_CASES:
            note = limit_note(r.case, statistics.median(r.rates))
            if note:
                r.notes.append(note)
        bound = by_case.get(BOUNDS.get(r.case, ""))
        if bound is not None and r.status == "ok" and r.rounds:
            r.notes.append(bound_note(r.case, statistics.median(r.rates), bound.case,
                                      statistics.median(bound.rates)))
        if r.status == "ok" and r.rounds and r.rounds[0].get("lost") is not None:
            lost = [x["lost"] for x in r.rounds]
            if any(lost):
                r.notes.append(f"{sum(lost):,} records lost in {sum(1 for x in lost if x)} of "
                               f"{len(lost)} rounds (produced again afterwards)")
            rates = [x["producer_rate"] for x in r.rounds]
            r.notes.append(f"producer ran at {statistics.median(rates) / 1e6:.1f} M/s")


def _recover(b: Bench, direction: str, mode: str) -> None:
    """After a failed round: stop children that are mid-command, empty the rings."""
    if b.helper is not None and b.helper.pending:
        b.helper.close(force=True)
        b.helper = None
    for key, p in list(b.procs.items()):
        if p.pending:
            p.close(force=True)
            del b.procs[key]
    with contextlib.suppress(Exception):
        if direction == K2U:
            b.discard(mode)
        else:
            b.drain_all(mode)


def run_rss(b: Bench, api: str) -> dict[str, Any]:
    """Consume --rss-records through ``api`` in rounds of --records from a
    pre-filled ring; RSS after every round."""
    out: dict[str, Any] = {"api": api, "status": "ok", "reason": None}
    why = _missing_api(api)
    if why:
        out.update(status="skipped", reason=why)
        return out
    if api == "iter":
        b.typed_ring("prefilled")
        if b.typed_kind != "typed":
            out["note"] = "interim iteration + numpy decode"
    rounds = max(1, math.ceil(b.opts.rss_records / b.n))
    fn = IN_PROCESS_CONSUMERS[api]
    samples = []
    busy_ns = 0
    try:
        for i in range(rounds):
            with _watchdog(b.opts.timeout, f"rss {api} round {i + 1}"):
                b.prefill()
                count, _, t0, t1 = fn(b, "prefilled", b.n, False)
            if count != b.n:
                raise RuntimeError(f"consumed {count} records, expected {b.n}")
            busy_ns += t1 - t0
            samples.append(_rss())
            if i == 0 or (i + 1) % 20 == 0 or i + 1 == rounds:
                b.log(f"  rss {api}: {(i + 1) * b.n:,} records, RSS {samples[-1] / 2**20:.1f} MiB")
    except Exception as e:
        out.update(status="failed", reason=f"{type(e).__name__}: {e}")
        _recover(b, K2U, "prefilled")
        return out
    growth = max(samples[1:], default=samples[0]) - samples[0]
    out.update(records=rounds * b.n, rounds=rounds, rss_first=samples[0],
               rss_max=max(samples), rss_last=samples[-1], growth=growth,
               flat=growth <= RSS_GROWTH_LIMIT, rate=rounds * b.n / max(busy_ns, 1) * 1e9,
               samples=samples)
    return out
