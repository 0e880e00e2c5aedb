"""``prog.run(repeat=N)``: the C interpreter repeats in its own loop, the pure
reference in Python; both must give the same observable result.

Each repetition is a run of its own (fresh registers and stack, its own
instruction budget, the end-of-run checks for leaked ring records and held
spin locks); maps, globals and the ctx persist from one run to the next, as
the reference has them.  The programs (tests/bpf/userspace_repeat.bpf.c)
behave differently in later runs, so a budget, a bounds check or an
end-of-run check fails in the middle of a repeat: the error (text, pc,
instruction, count) and everything the runs before it left behind must be
the same on both interpreters.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import pytest
from conftest import BPF_DIR
from interp_backends import backend, needs_c_vm

from bpfring.userspace import UserRuntimeError, _isa, load, load_insns

Ins = _isa.Insn


pytestmark = needs_c_vm


@pytest.fixture(scope="module")
def path():
    import bpfring

    return bpfring.build(BPF_DIR / "userspace_repeat.bpf.c")


def _state(obj) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": obj.globals.runs, "sum": obj.globals.sum}
    for name, m in obj.maps.items():
        b = getattr(m, "_backing", None)
        if b is not None and b.mm is not None:
            out[name] = bytes(b.view)
    return out


def _repeat(path, name: str, prog: str, repeat: int, ctx: bytes = bytes(16),
            budget: int | None = None):
    with backend(name), load(path) as obj:
        p = obj.programs[prog]
        try:
            rc = p.run(ctx=ctx, repeat=repeat, budget=budget)
        except UserRuntimeError as e:
            res: tuple[Any, ...] = ("fault", str(e), e.pc, e.insn, obj._interp.count)
        else:
            lr = p.last_run
            res = (rc, lr.r0, lr.ctx, lr.data, lr.insns)
        return res, _state(obj)


CASES = [
    ("grow", 1, None), ("grow", 7, None), ("grow", 50, None),
    ("grow", 10, 350),   # runs 1 and 2 (156, 300 insns) fit, run 3 (444) runs out
    ("grow", 3, 0),      # the first run runs out at once
    ("reach", 1, None), ("reach", 5, None),  # run 2 reads past the 16-byte ctx
    ("bump_ctx", 9, None),
    ("lock_third", 2, None), ("lock_third", 6, None),
    ("leak_second", 1, None), ("leak_second", 4, None),
]


@pytest.mark.parametrize("prog,repeat,budget", CASES)
def test_repeat_same_on_both(path, prog, repeat, budget):
    c = _repeat(path, "c", prog, repeat, budget=budget)
    p = _repeat(path, "python", prog, repeat, budget=budget)
    assert c == p


def test_repeat_outcomes(path):
    """What the cases above compare is what the semantics say."""
    res, st = _repeat(path, "c", "grow", 7)
    assert res[0] == 7 and st["runs"] == 7
    assert st["sum"] == sum(sum(i ^ n for i in range(16 * n)) for n in range(1, 8))
    # the budget is per run: 350 instructions fit runs 1 and 2, not run 3
    res, st = _repeat(path, "c", "grow", 10, budget=350)
    assert res[0] == "fault" and "budget of 350 exhausted" in res[1]
    assert st["runs"] == 3
    res, st = _repeat(path, "c", "reach", 5)
    assert res[0] == "fault" and "invalid read of 1 bytes" in res[1] and st["runs"] == 2
    res, _ = _repeat(path, "c", "bump_ctx", 9)
    assert res[0] == 9 and struct.unpack_from("<Q", res[2])[0] == 9  # ctx kept between runs
    res, _ = _repeat(path, "c", "lock_third", 6)
    assert res[0] == "fault" and "1 spin lock" in res[1]
    res, st = _repeat(path, "c", "leak_second", 4)
    assert st["runs"] == 2


def test_repeat_end_of_run_errors(path):
    """A lock left held or a ring record leaked stops the repeat at that run
    with the reference's error."""
    for name in ("c", "python"):
        with backend(name), load(path) as obj:
            with pytest.raises(UserRuntimeError, match="1 spin lock"):
                obj.programs["lock_third"].run(repeat=6)
            # the lock was dropped by the end-of-run check: runs go on
            assert obj.programs["lock_third"].run(repeat=2) == 5
        with backend(name), load(path) as obj:
            with pytest.raises(UserRuntimeError, match="reserved ring buffer record"):
                obj.programs["leak_second"].run(repeat=4)
            assert obj.globals.runs == 2
            # run 1's record was submitted, run 2's discarded by the check
            assert [struct.unpack("<Q", r)[0] for r in obj.maps["ring"].read()] == [1]


def test_c_vm_after_hook():
    """The C loop calls ``after`` after a run only when asked to always, or
    when a helper ran in Python in it; ``repeat`` below 1 is refused."""
    prog = _isa.encode([Ins(0xB7, 0, 0, 0, 7), Ins(0x95, 0, 0, 0, 0)])
    helper = _isa.encode([Ins(0x85, 0, 0, 0, 7), Ins(0xB7, 0, 0, 0, 7),  # get_prandom_u32
                          Ins(0x95, 0, 0, 0, 0)])
    with backend("c"):
        for raw, always, want in ((prog, False, 0), (prog, True, 5), (helper, False, 5)):
            with load_insns(raw) as obj:
                calls: list[int] = []
                interp = obj._interp
                img = obj.programs["prog"].image
                assert interp.run(img, 0, None, 5, lambda c=calls: c.append(1), always) == 7
                assert len(calls) == want
                assert interp.count == 2 + (raw is helper)
        with load_insns(prog) as obj:
            interp = obj._interp
            img = obj.programs["prog"].image
            with pytest.raises(ValueError, match="repeat must be at least 1"):
                interp.run(img, 0, None, 0)
            with pytest.raises(ValueError, match="repeat must be at least 1"):
                interp._vm.run(interp, img, interp._code(img), 0, 100, 0)

            def boom() -> None:
                raise UserRuntimeError("stop", program="prog")
            with pytest.raises(UserRuntimeError, match="stop"):
                interp.run(img, 0, None, 3, boom, True)


# bpf_loop: its loop runs in C when the arguments are the usual ones -------------------

NEVER = (1 << 64) - 1


def _loop_ctx(nr: int, flags: int = 0, bad_at: int = NEVER, stop_at: int = NEVER) -> bytes:
    return struct.pack("<5Q", nr, flags, bad_at, stop_at, 0)


LOOP_CASES = [
    (_loop_ctx(0), None), (_loop_ctx(1), None), (_loop_ctx(100), None),
    (_loop_ctx(100, stop_at=41), None),            # stops: 42 calls
    (_loop_ctx(100, bad_at=17), None),             # a fault in the 18th callback
    (_loop_ctx(100000), 20000),                    # the budget runs out in a callback
    (_loop_ctx(5, flags=1), None),                 # -EINVAL (the Python helper)
    (_loop_ctx((1 << 23) + 1), None),              # -E2BIG
    (_loop_ctx(1 << 32), None),                    # all 64 bits of nr count
]


@pytest.mark.parametrize("ctx,budget", LOOP_CASES)
def test_bpf_loop_same_on_both(path, ctx, budget):
    c = _repeat(path, "c", "looped", 3, ctx=ctx, budget=budget)
    p = _repeat(path, "python", "looped", 3, ctx=ctx, budget=budget)
    assert c == p


def test_bpf_loop_outcomes(path):
    res, _ = _repeat(path, "c", "looped", 1, ctx=_loop_ctx(100, stop_at=41))
    assert res[0] == 42 and struct.unpack_from("<5Q", res[2])[4] == sum(range(1, 43))
    res, _ = _repeat(path, "c", "looped", 2, ctx=_loop_ctx(100, bad_at=17))
    assert res[0] == "fault" and "invalid read of 1 bytes" in res[1]
    assert res[3].startswith("r0 = *(u8 *)")  # the callback's load, not the call
    res, _ = _repeat(path, "c", "looped", 1, ctx=_loop_ctx(100000), budget=20000)
    assert res[0] == "fault" and "budget of 20000 exhausted" in res[1]
    res, _ = _repeat(path, "c", "looped", 1, ctx=_loop_ctx(5, flags=1))
    assert res[0] == -22
    for name in ("c", "python"):
        with backend(name), load(path) as obj:
            with pytest.raises(UserRuntimeError, match="is not a function of") as ei:
                obj.programs["looped_bad_cb"].run()
            assert "call bpf_loop" in ei.value.insn or "call 181" in ei.value.insn


def test_long_repeat_lets_other_threads_run():
    """A long repeat in the C loop (no Python between its runs: no helper, no
    ring, no kernel map) hands the GIL over now and then, as the reference's
    Python loop does between runs: a thread sees the run counter of the .bss
    while the repeat is under way."""
    import threading

    import bpfring

    with backend("c"), load(bpfring.build(BPF_DIR / "userspace_repeat_plain.bpf.c")) as obj:
        assert not obj._after_needed()
        bss = next(m for m in obj.maps.values() if m.section == ".bss")
        view = bss._backing.view
        seen: set[int] = set()
        done = threading.Event()
        started = threading.Event()

        def watch() -> None:
            started.set()
            while not done.is_set():
                seen.add(struct.unpack_from("<Q", view, 0)[0])

        # A short switch interval: the watcher asks for the GIL within 0.5 ms,
        # so each hand-over of the C loop (about every 1M instructions, well
        # under a millisecond) lets it in whatever the machine's speed; the
        # repeat runs for many switch intervals.
        old_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        t = threading.Thread(target=watch)
        t.start()
        started.wait()
        try:
            assert obj.programs["spin"].run(repeat=20000) == 20000  # ~200M instructions
        finally:
            done.set()
            t.join()
            sys.setswitchinterval(old_interval)
        assert obj.globals.runs == 20000
        assert any(0 < v < 20000 for v in seen), sorted(seen)[:10]
