"""Every code block of README.md and docs/*.md runs as it is written.

The convention for every doc of the project:

- Every ```python block runs: the blocks of one file in order, in one
  namespace, as root, against the real kernel, from the repository root (in
  a scratch directory that mirrors the root, so nothing is written into the
  checkout).  Each file runs in its own interpreter, so whatever a block
  leaves open dies with it.
- A ```c block that is a whole BPF program (it has an ``#include`` and a
  ``SEC(``) is compiled with bpfring's build and loaded into the kernel, and
  it must declare a GPL-compatible license (without one the kernel refuses
  the GPL-only helpers, and a bridge silently falls back to system calls).
  Fragments (no ``#include``) are not compiled.
- ``<!-- snippet: file NAME -->`` right before a fence also writes the block
  to NAME in the scratch directory, for the python blocks that load it.
- ``<!-- snippet: skip (reason) -->`` right before a fence skips the block.
- A warning on the "bpfring" logger while a block runs fails it (a doc must
  not show a silently degraded mode, such as a bridge falling back).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
_DIRECTIVE = re.compile(r"^<!--\s*snippet:\s*(skip|file)\b\s*(.*?)\s*-->\s*$")
# The license strings the kernel accepts as GPL-compatible (license_is_gpl_compatible()).
_GPL = {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL",
        "Dual MPL/GPL"}


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None = None  # the reason
    file: str | None = None  # <!-- snippet: file NAME -->

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_bpf_program(self) -> bool:
        return self.lang == "c" and "#include" in self.code and "SEC(" in self.code


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with the directive before each."""
    out: list[Block] = []
    lines = path.read_text().splitlines()
    directive: tuple[str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _DIRECTIVE.match(line.strip())
        if m:
            directive = (m.group(1), m.group(2))
            i += 1
            continue
        f = _FENCE.match(line)
        if not f:
            if line.strip():
                directive = None  # a directive applies to the very next fence only
            i += 1
            continue
        fence, lang = f.group(1), f.group(2).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{start + 1}: unclosed code fence")
        b = Block(path, start + 1, lang, "\n".join(body) + "\n")
        if directive is not None:
            kind, arg = directive
            if kind == "skip":
                reason = arg.strip("() ")
                if not reason:
                    raise AssertionError(f"{b.where}: 'snippet: skip' needs a (reason)")
                b.skip = reason
            else:
                b.file = arg
        out.append(b)
        directive = None
        i += 1
    return out


def _ids(p: Path) -> str:
    return str(p.relative_to(ROOT))


# --- the parser itself ----------------------------------------------------------


def test_the_parser_finds_blocks_directives_and_programs(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("text\n\n```python\nx = 1\n```\n\n<!-- snippet: skip (needs a NIC) -->\n"
                  "```python\nboom\n```\n<!-- snippet: file a.bpf.c -->\n```c\n"
                  '#include "vmlinux.h"\nSEC("xdp") int f(void *c) { return 2; }\n```\n'
                  "<!-- snippet: skip (x) -->\n\nprose between\n```python\ny = 2\n```\n"
                  "````c\nint frag;\n````\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        got = blocks(md)
    finally:
        ROOT = saved
    assert [(b.line, b.lang, b.skip, b.file) for b in got] == [
        (3, "python", None, None), (8, "python", "needs a NIC", None),
        (12, "c", None, "a.bpf.c"), (19, "python", None, None), (22, "c", None, None)]
    assert got[0].code == "x = 1\n"
    assert [b.is_bpf_program for b in got] == [False, False, True, False, False]


def test_docs_exist_and_have_snippets():
    assert (ROOT / "README.md") in DOCS and len(DOCS) >= 5
    assert sum(b.lang == "python" for p in DOCS for b in blocks(p)) >= 10


# --- C: every whole BPF program compiles, loads and declares a GPL-compatible license


def _bpf_programs() -> list[Block]:
    return [b for p in DOCS for b in blocks(p) if b.is_bpf_program and b.skip is None]


@pytest.mark.parametrize("block", _bpf_programs(), ids=lambda b: b.where)
def test_bpf_program_block_compiles_loads_and_is_gpl(block, kernel, tmp_path):
    import bpfring

    licenses = re.findall(r'SEC\("license"\)\s*=\s*"([^"]*)"', block.code)
    assert licenses, (f'{block.where}: a BPF program needs char LICENSE[] SEC("license") = '
                      '"Dual BSD/GPL" (or "GPL"): without it the kernel refuses GPL-only '
                      "helpers (bpf_timer, bpf_user_ringbuf_drain, ...)")
    assert set(licenses) <= _GPL, f"{block.where}: {licenses} is not GPL-compatible"
    src = tmp_path / (block.file or "snippet.bpf.c")
    src.write_text(block.code)
    # A plain load (no bridge fallback build): everything in the block must load.
    with bpfring.load(bpfring.build(src)) as obj:
        assert obj.programs, f"{block.where}: no program in the object"


# --- python: every block runs -------------------------------------------------------

# Runs in a fresh interpreter: argv[1] is a JSON list of [where, code]; each
# block is compiled with its doc position as the file name, so a traceback
# points into the markdown.
# A warning of bpfring's own logger (a bridge falling back, ...) fails the
# block too: a doc must not show a silently degraded mode.
_RUNNER = r"""
import json, logging, sys, traceback
warned = []
class _Catch(logging.Handler):
    def emit(self, record):
        if record.name == "bpfring" and record.levelno >= logging.WARNING:
            warned.append(record.getMessage())
logging.getLogger("bpfring").addHandler(_Catch())
ns = {"__name__": "__snippets__"}
for where, code in json.loads(sys.argv[1]):
    try:
        exec(compile(code, where, "exec"), ns)
    except BaseException:
        print(f"\n=== snippet failed: {where} ===", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
    if warned:
        print(f"\n=== snippet logged a bpfring warning: {where} ===", *warned, sep="\n",
              file=sys.stderr)
        sys.exit(1)
"""


def _scratch_root(tmp_path: Path, doc: list[Block]) -> Path:
    """A directory mirroring the repository root (symlinks), plus the files
    the doc's ``snippet: file`` blocks name."""
    root = tmp_path / "root"
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".venv"):
            (root / entry.name).symlink_to(entry)
    for b in doc:
        if b.file:
            target = root / b.file
            assert not target.exists() or target.is_symlink() is False, b.where
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(b.code)
    return root


def _docs_with_python() -> list[Path]:
    return [p for p in DOCS if any(b.lang == "python" for b in blocks(p))]


@pytest.mark.parametrize("path", _docs_with_python(), ids=_ids)
def test_python_blocks_run(path, kernel, tmp_path):
    doc = blocks(path)
    run = [(b.where, b.code) for b in doc if b.lang == "python" and b.skip is None]
    if not run:
        pytest.skip(f"every python block of {_ids(path)} is marked skip")
    cwd = _scratch_root(tmp_path, doc)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(run)], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=240,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the python blocks of {_ids(path)} did not finish in 240 s "
                    f"(a block waits forever?)\n{e.stderr or ''}")
    assert proc.returncode == 0, (f"{_ids(path)}: a python block failed\n"
                                  f"--- stdout ---\n{proc.stdout[-3000:]}\n"
                                  f"--- stderr ---\n{proc.stderr[-6000:]}")
