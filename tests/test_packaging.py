"""Packaging: the BPF-side C is GPLv2-compatible (LGPL-2.1-only OR
BSD-2-Clause) and every BPF program declares a GPL-compatible license, so the
kernel grants it the GPL-only helpers; the license texts ship with the package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BPF_SIDE = sorted(
    [*ROOT.glob("src/bpfring/include/bpfring/*.h"), *ROOT.glob("src/bpfring/bpf/*.bpf.c"),
     *ROOT.glob("examples/*.bpf.c"), *ROOT.glob("tests/bpf/*.bpf.c")])
DUAL = "SPDX-License-Identifier: (LGPL-2.1-only OR BSD-2-Clause)"
# The license strings the kernel treats as GPL-compatible (license_is_gpl_compatible()).
GPL_COMPATIBLE = {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL",
                  "Dual MIT/GPL", "Dual MPL/GPL"}


def test_there_is_bpf_side_code():
    assert len(BPF_SIDE) >= 5


@pytest.mark.parametrize("path", BPF_SIDE, ids=lambda p: str(p.relative_to(ROOT)))
def test_bpf_side_c_is_dual_licensed(path):
    assert DUAL in path.read_text().splitlines()[0]


@pytest.mark.parametrize("path", [p for p in BPF_SIDE if p.name.endswith(".bpf.c")],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_program_declares_a_gpl_compatible_license(path):
    found = re.findall(r'SEC\("license"\)\s*=\s*"([^"]*)"', path.read_text())
    assert found and set(found) <= GPL_COMPATIBLE, found


def test_metadata_lists_every_license_and_ships_the_texts():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0 AND (LGPL-2.1-only OR BSD-2-Clause)"
    for text in ("Apache-2.0", "LGPL-2.1", "BSD-2-Clause"):
        assert (ROOT / "LICENSES" / f"{text}.txt").stat().st_size > 1000
    assert set(meta["license-files"]) == {"LICENSE", "LICENSES/*.txt"}


def test_version_lives_in_one_place():
    """pyproject.toml takes the version from bpfring.__version__ (no second copy)."""
    import importlib.metadata

    import bpfring

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bpfring.__version__"}
    assert importlib.metadata.version("bpfring") == bpfring.__version__
