"""libbpf's own error codes are translated, and its last message is kept."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import bpfring
from bpfring import _libbpf
from bpfring.errors import BPFError, LoadError


def test_table_matches_libbpf_header():
    header = "/usr/include/bpf/libbpf.h"
    if not os.path.exists(header):
        pytest.skip("libbpf headers not installed")
    text = Path(header).read_text()
    body = text[text.index("enum libbpf_errno"):]
    body = body[:body.index("};")]
    names = re.findall(r"\b(LIBBPF_ERRNO__[A-Z0-9]+)\b", body)
    assert names
    assert [n for _, (n, _m) in sorted(_libbpf.LIBBPF_ERRNO.items())] == names
    assert min(_libbpf.LIBBPF_ERRNO) == 4000


@pytest.mark.parametrize("code", sorted(_libbpf.LIBBPF_ERRNO))
def test_every_code_has_a_meaning(code):
    meaning = _libbpf.strerror(code)
    assert meaning and "Unknown error" not in meaning
    assert _libbpf.LIBBPF_ERRNO[code][0] in str(BPFError("x", errno=code))


def test_errnos_still_use_the_system_text():
    assert _libbpf.strerror(2) == os.strerror(2)
    assert "[ENOENT]" in str(BPFError("x", errno=2))


@pytest.mark.parametrize("junk", [b"\x7fELF" + bytes(range(256)) * 2, b"\x7fELF" + b"\0" * 64])
def test_bad_elf_bytes(kernel, junk):
    with pytest.raises(LoadError) as ei:
        bpfring.load(junk)
    e = ei.value
    assert e.errno == 4001
    text = str(e)
    assert "Unknown error" not in text
    assert "not a valid BPF object" in text and "LIBBPF_ERRNO__FORMAT" in text
    assert "libbpf: " in e.message and "ELF" in e.message  # libbpf's own last message
    assert e.hint


def test_bad_elf_file(kernel, tmp_path):
    p = tmp_path / "bogus.bpf.o"
    p.write_bytes(b"not an object at all\n" * 10)
    with pytest.raises(LoadError) as ei:
        bpfring.load(p)
    assert "Unknown error" not in str(ei.value)
    assert "not a valid BPF object" in str(ei.value) and str(p) in str(ei.value)


def test_directory(kernel, tmp_path):
    with pytest.raises(LoadError) as ei:
        bpfring.load(tmp_path)
    assert "is a directory" in str(ei.value) and "Unknown error" not in str(ei.value)
    assert ei.value.hint
