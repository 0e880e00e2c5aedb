"""Issue 11, item 13: error messages name what the user gave and say what is
wrong (the fd passed, not our private duplicate; the field whose value does
not fit; a float ring size; the directory that is not a pinned map)."""

from __future__ import annotations

import math
import os

import pytest

import bpfring
from bpfring import BPFError, PerfBuffer, RingBuffer, UserRingBuffer


@pytest.mark.parametrize("cls", [RingBuffer, UserRingBuffer, PerfBuffer])
def test_fd_constructors_name_the_fd_passed(kernel, cls):
    # A plain file: an open fd that is no BPF map.  Its duplicate gets
    # another number; the message must show the caller's.
    with open(os.devnull, "rb") as f:
        fd = f.fileno()
        for given in (0, fd):
            with pytest.raises(BPFError) as ei:
                cls(given)
            text = str(ei.value)
            assert f"map fd {given}:" in text, text
            assert f"fd {given} is not a BPF map" in text and ei.value.hint
            assert ei.value.errno == 22


def test_fd_of_the_wrong_map_type_names_the_map(kernel):
    with UserRingBuffer.create(4096) as urb, pytest.raises(bpfring.MapTypeError) as ei:
        RingBuffer(urb.fileno())
    assert "user_ringbuf" in str(ei.value) and "use UserRingBuffer" in str(ei.value)


def test_float_size_is_a_clear_type_error(kernel):
    for cls in (RingBuffer, UserRingBuffer):
        with pytest.raises(TypeError, match=r"ring size must be an int, not float 4096\.0"):
            cls.create(4096.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1e40, -1e40])
def test_float_out_of_range_names_the_field(btf, value):
    event = btf.record("event")
    with pytest.raises(ValueError) as ei:
        event.encode(f=value)
    assert "event.f" in str(ei.value) and "float" in str(ei.value)
    assert not isinstance(ei.value, OverflowError)
    buf = bytearray(event.size)
    with pytest.raises(ValueError, match=r"event\.f"):
        event.encode_into(buf, 0, {"f": value})
    # in range, infinities and the double field are fine
    assert event.decode(event.encode(f=math.inf)).f == math.inf
    assert event.decode(event.encode(d=1e40)).d == 1e40
    holder = btf.record("anon_holder")  # a float inside an anonymous union
    with pytest.raises(ValueError, match="fval"):
        holder.encode(fval=value)
