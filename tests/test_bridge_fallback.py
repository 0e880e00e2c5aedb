"""A map bridge that falls back to system calls says so: once, at WARNING on
the "bpfring" logger, with the reason (here: a program without a
GPL-compatible license, whose bpf_timer and bpf_user_ringbuf_drain calls the
kernel refuses, so bpfring.bridge.load() builds it without its bridges)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import bpfring.bridge as bridge_mod
from bpfring.bridge import MapBridge

PROGRAM = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpfring/bridge.bpf.h>

struct limits { __u64 rate; __u64 burst; };

struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, 64);
        __type(key, __u64);
        __type(value, struct limits);
} limits SEC(".maps");

BPFRING_BRIDGE(limits, 1 << 16);
"""
GPL = 'char LICENSE[] SEC("license") = "Dual BSD/GPL";\n'


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Forget the fallbacks warned about earlier in this process."""
    monkeypatch.setattr(bridge_mod, "_WARNED", set())


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "bpfring" and r.levelno == logging.WARNING]


def test_a_non_gpl_program_falls_back_and_warns_once_with_the_reason(
        kernel, tmp_path: Path, caplog, fresh_warnings):
    src = tmp_path / "nogpl.bpf.c"
    src.write_text(PROGRAM)
    with caplog.at_level(logging.DEBUG, "bpfring"), bridge_mod.load(src) as obj:
        assert "limits__ops" not in obj.maps  # built without its bridges
        with MapBridge(obj, "limits", mode="timer", period=0.001) as br:
            assert br.fallback is not None
            assert br.fallback.startswith("program is not GPL: bpf_timer")
            br.update(1, {"rate": 5, "burst": 6})
            assert br.lookup(1).rate == 5  # applied at once, by bpf() calls
        warned = _warnings(caplog)
        assert len(warned) == 1, warned
        assert "'limits'" in warned[0] and "mode 'timer'" in warned[0]
        assert "program is not GPL: bpf_timer" in warned[0]
        assert "using BPF_MAP_UPDATE_BATCH" in warned[0]
        # The same fallback again: no second warning (DEBUG only).
        caplog.clear()
        with MapBridge(obj, "limits", mode="timer") as br:
            assert br.fallback.startswith("program is not GPL")
        assert _warnings(caplog) == []
        assert any("program is not GPL" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.DEBUG)
        # Another mode is another fallback: it warns.
        with MapBridge(obj, "limits", mode="flush"):
            pass
        assert len(_warnings(caplog)) == 1


def test_with_a_gpl_license_the_timer_mode_runs_and_nothing_is_warned(
        kernel, tmp_path: Path, caplog, fresh_warnings):
    src = tmp_path / "gpl.bpf.c"
    src.write_text(PROGRAM + GPL)
    with (caplog.at_level(logging.DEBUG, "bpfring"), bridge_mod.load(src) as obj,
          MapBridge(obj, "limits", mode="timer", period=0.001) as br):
        assert br.fallback is None
        br.update(2, {"rate": 7})
        br.wait_applied(5.0)
        assert br.lookup(2).rate == 7
    assert _warnings(caplog) == []
