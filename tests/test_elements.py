"""bpfring._elements: the one element codec of Map and MapBridge (no kernel
needed for the raw-bytes paths; typed paths run in test_maps/test_bridge)."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from bpfring import BPFError
from bpfring._elements import ElementCodec, ElementSizeError, percpu_stride


def test_raw_bytes_and_plain_ints():
    key = ElementCodec("key", 4, None)
    assert key.btf_type is None and key.dtype is None
    for raw in (b"abcd", bytearray(b"abcd"), memoryview(b"abcd")):
        assert key.encode(raw) == b"abcd"
    assert key.encode(7) == (7).to_bytes(4, "little")
    assert key.encode(-1) == b"\xff" * 4
    assert key.encode(np.uint32(5)) == (5).to_bytes(4, "little")  # numpy scalar
    assert key.decode(b"abcd") == b"abcd" and type(key.decode(bytearray(4))) is bytes
    with pytest.raises(ValueError, match="does not fit"):
        key.encode(1 << 40)
    with pytest.raises(TypeError, match="must be 4 bytes"):
        key.encode(1.5)
    with pytest.raises(TypeError):
        ElementCodec("key", 3, None).encode(1)  # no plain int of 3 bytes


def test_wrong_size_is_one_error_type():
    value = ElementCodec("value", 16, None)
    with pytest.raises(ElementSizeError, match="value of 17 bytes, but the map's values are "
                                                "16 bytes") as ei:
        value.encode(b"\0" * 17)
    e = ei.value
    assert isinstance(e, ValueError) and isinstance(e, BPFError)
    assert e.errno == errno.EINVAL and e.hint
    with pytest.raises(ElementSizeError, match="value of 8 bytes"):
        value.rows(np.zeros(3, np.uint64))
    with pytest.raises(ElementSizeError):
        value.rows(b"\0" * 20)  # not a whole number of rows


def test_rows():
    key = ElementCodec("key", 4, None)
    a = key.rows(b"\1\0\0\0\2\0\0\0")
    assert a.shape == (2, 4) and a.dtype == np.uint8
    assert key.rows([1, 2]).tobytes() == a.tobytes()
    arr = np.arange(3, dtype=np.uint32)
    assert key.rows(arr) is arr  # right-sized rows pass without a copy
    strided = np.arange(6, dtype=np.uint32)[::2]
    assert key.rows(strided).tobytes() == np.array([0, 2, 4], np.uint32).tobytes()
    assert key.rows([]).shape == (0, 4)
    with pytest.raises(ValueError, match="not a scalar"):
        key.rows(np.array(1, np.uint32))


def test_percpu_stride():
    assert [percpu_stride(n) for n in (1, 4, 8, 9, 16, 17)] == [8, 8, 8, 16, 16, 24]
