"""Every CLI error is one line with a hint and a documented exit code, and
signals end the commands cleanly; run in subprocesses against real maps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import _one_line_error, cli

from bpfring import cli as bcli
from bpfring.errors import RingFull


def test_exit_codes_are_documented():
    doc = bcli.__doc__ or ""
    for code in (bcli.EXIT_OK, bcli.EXIT_ERROR, bcli.EXIT_USAGE, bcli.EXIT_INTERNAL,
                 bcli.EXIT_INTERRUPTED):
        assert f"* {code} " in doc
    readme = Path(__file__).parent.parent.joinpath("README.md").read_text()
    for code in ("70", "130"):
        assert f"| {code} |" in readme


@pytest.mark.parametrize("value", ["-5", "0", "99999999999", str(1 << 32)])
def test_map_id_out_of_range_is_usage(value):
    err = _one_line_error(cli("info", "id", value), code=bcli.EXIT_USAGE)
    assert "out of range" in err and "hint:" in err


def test_sample_not_matching_type_is_one_line(echo):
    urb = echo.user_ring_buffer("in_ring")
    ref = ["id", str(urb.map_id)]
    err = _one_line_error(cli("write", *ref, "--type", "test_config", "--json",
                              '{"nosuch": 1}'), code=bcli.EXIT_USAGE)
    assert "nosuch" in err and "id, label, limit" in err and "hint:" in err
    err = _one_line_error(cli("write", *ref, "--type", "rec256", "--json", '{"pad": 5}'),
                          code=bcli.EXIT_USAGE)
    assert "rec256" in err and "char array" in err and "hint:" in err
    err = _one_line_error(cli("write", *ref, "--type", "test_config", "--json",
                              '{"id": 99999999999}'), code=bcli.EXIT_USAGE)
    assert "id" in err and "hint:" in err
    err = _one_line_error(cli("write", *ref, "-", "--type", "test_config",
                              stdin='{"id": 1}\n{"label": 7}\n'), code=bcli.EXIT_USAGE)
    assert "label" in err
    assert echo.programs["echo"].run() == 0  # nothing written when a later line is bad


def test_pinned_directory_is_not_a_permission_problem():
    err = _one_line_error(cli("info", "pinned", "/sys/fs/bpf"))
    assert "is a directory" in err and "run as root" not in err and "hint:" in err


def _wait_blocked(proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    """Wait until ``proc`` sleeps in epoll_wait (its handlers are installed by then)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            with open(f"/proc/{proc.pid}/wchan") as f:
                if "epoll" in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{what} never blocked")


def _default_sigint() -> None:
    # Under nohup or a background job of a non-interactive shell SIGINT is
    # ignored, an ignored SIGINT is inherited through exec, and Python then
    # installs no KeyboardInterrupt handler: give the child the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bpfring", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def test_ctrl_c_during_write_timeout_does_not_exit_zero(echo):
    urb = echo.user_ring_buffer("in_ring")
    for size in (64, 1):  # full, even for the one-byte sample below
        with pytest.raises(RingFull):
            while True:
                urb.write(b"\0" * size)
    proc = _popen("write", "id", str(urb.map_id), "--hex", "01", "--timeout", "60")
    _wait_blocked(proc, "write --timeout")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == bcli.EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "writing 0 of 1" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_end_tail_cleanly(echo, sig):
    rb = echo.ring_buffer("out_ring")
    proc = _popen("tail", "id", str(rb.map_id))
    _wait_blocked(proc, "tail")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("args", [["bench", "--help"], ["--help"], ["tail", "--help"]])
def test_output_into_a_closed_pipe_ends_quietly(args):
    """``bpfring ... | head`` where the reader is gone before the command
    writes: exit 0 and nothing on stderr (no traceback, no "Exception
    ignored" from the interpreter's last flush). Buffered stdout, as for a
    user: PYTHONUNBUFFERED (set on some machines) would hide the last flush."""
    r, w = os.pipe()
    os.close(r)  # the reader has gone: every write is EPIPE
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        proc = subprocess.run([sys.executable, "-m", "bpfring", *args], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    finally:
        os.close(w)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
