"""The examples shipped in examples/ run and print what the README says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_both_directions_example(kernel):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "both_directions.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["drained 5", "[0, 2, 4, 6, 8] lost: 0"]


def test_readme_example_is_the_file():
    readme = (EXAMPLES.parent / "README.md").read_text()
    code = (EXAMPLES / "both_directions.py").read_text()
    body = code.split('"""', 2)[2].strip()  # without the module docstring
    assert body.replace("\n\n", "\n") in readme.replace("\n\n", "\n")
