"""The package's imports run one way: down the layers of docs/design.md.

The layer table in ``docs/design.md`` ("## Layers") is the single source:
this test reads it, puts every module of ``src/bpfring`` in exactly one
layer, walks every import statement with :mod:`ast` (module level, inside
functions and classes, and ``importlib.import_module`` with a constant name;
imports under ``if TYPE_CHECKING:`` are exempt, they never run) and fails on
any import of a module in a higher layer.  It also refuses import cycles
among module-level imports, which make the import order matter, and imports
of another module's private names.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "src" / "bpfring"
DESIGN = ROOT / "docs" / "design.md"


# --------------------------------------------------------------------------------------
# The layer table
# --------------------------------------------------------------------------------------


def read_layers(text: str) -> list[tuple[str, list[str]]]:
    """``[(layer name, [module patterns])]``, lowest layer first, from the
    table under ``## Layers``: the first column names the layer, the second
    lists its modules in backquotes (``fnmatch`` patterns, relative to the
    package: ``btf.*`` is every module of the btf package)."""
    section = text.split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[1] or set(cells[0]) <= set("-: "):
            continue
        mods = re.findall(r"`([^`]+)`", cells[1])
        if mods and cells[0].lower() != "layer":
            layers.append((cells[0].strip("* "), mods))
    return layers


LAYERS = read_layers(DESIGN.read_text())


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name relative to it (the
    package itself is ``__init__``, a subpackage by its own name), and the C
    extensions by their source (``_speedups.c``: they import nothing of ours)."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        out[".".join(parts)] = path
    for path in sorted(PKG.glob("_*.c")):
        out[path.stem] = path
    return out


def layer_of(mod: str) -> int:
    hits = [i for i, (_, pats) in enumerate(LAYERS)
            if any(fnmatch.fnmatchcase(mod, p) for p in pats)]
    if len(hits) != 1:
        where = "no layer" if not hits else "several layers: " + ", ".join(
            LAYERS[i][0] for i in hits)
        raise LookupError(f"bpfring.{mod} is in {where}; give it one in the layer table of "
                          "docs/design.md")
    return hits[0]


# --------------------------------------------------------------------------------------
# Finding the imports
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    source: str  #: the importing module
    target: str  #: the imported module of the package
    line: int
    top: bool  #: at module level (runs on import), not inside a function


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _package_of(mod: str, path: Path) -> list[str]:
    parts = [] if mod == "__init__" else mod.split(".")
    return parts if path.name == "__init__.py" else parts[:-1]


class _Walker(ast.NodeVisitor):
    def __init__(self, mod: str, path: Path, known: set[str]) -> None:
        self.mod, self.known = mod, known
        self.package = _package_of(mod, path)
        self.depth = 0  # functions entered
        self.found: list[Import] = []

    def _add(self, dotted: list[str], node: ast.AST) -> None:
        """Record the deepest module of the package that ``dotted`` names."""
        for n in range(len(dotted), -1, -1):
            name = ".".join(dotted[:n]) or "__init__"
            if name in self.known:
                self.found.append(Import(self.mod, name, node.lineno, self.depth == 0))
                return

    def _absolute(self, module: str | None, level: int) -> list[str] | None:
        """Package-relative parts of ``from <level dots><module> import``, or
        None when it points outside the package."""
        if level == 0:
            parts = (module or "").split(".")
            return parts[1:] if parts[0] == "bpfring" else None
        up = level - 1
        if up > len(self.package):
            return None
        base = self.package[:len(self.package) - up]
        return base + (module.split(".") if module else [])

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for stmt in node.orelse:  # the else branch does run
                self.visit(stmt)
            return
        self.generic_visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == "bpfring":
                self._add(parts[1:], node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node.module, node.level)
        if base is None:
            return
        for alias in node.names:
            # "from . import btf" imports the submodule btf; "from .x import y"
            # imports module x (or its submodule y, if there is one).
            self._add([*base, alias.name], node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "import_module" and node.args:
            arg = node.args[0]
            target: str | None = None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                target = arg.value
            elif isinstance(arg, ast.JoinedStr) and len(arg.values) == 2 and \
                    isinstance(arg.values[0], ast.FormattedValue) and \
                    isinstance(arg.values[0].value, ast.Name) and \
                    arg.values[0].value.id in ("__package__", "__name__") and \
                    isinstance(arg.values[1], ast.Constant):
                # f"{__package__}.name": relative to this module's package
                own = self.package if arg.values[0].value.id == "__package__" else \
                    ([] if self.mod == "__init__" else self.mod.split("."))
                target = ".".join(["bpfring", *own]) + str(arg.values[1].value)
            if target is not None and target.split(".")[0] == "bpfring":
                self._add(target.split(".")[1:], node)
        self.generic_visit(node)


def imports(mods: dict[str, Path]) -> list[Import]:
    known = set(mods)
    out: list[Import] = []
    for mod, path in mods.items():
        if path.suffix != ".py":
            continue
        w = _Walker(mod, path, known)
        w.visit(ast.parse(path.read_text(), str(path)))
        out.extend(i for i in w.found if i.target != mod)
    return out


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# --------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------


def test_design_lists_the_layers_in_order():
    names = [name.lower() for name, _ in LAYERS]
    assert [n.split()[-1] for n in names[:2]] == ["ground", "i/o"], names
    assert names[-1].endswith("faces"), names
    for key in ("objects", "features", "toolchain"):
        assert any(key in n for n in names), (key, names)


def test_every_module_is_in_exactly_one_layer():
    problems = []
    for mod in modules():
        try:
            layer_of(mod)
        except LookupError as e:
            problems.append(str(e))
    assert not problems, "\n".join(problems)


#: Upward references made on purpose, each explained in docs/design.md:
#: (importing module, imported module).  Only lazy ones (inside a function).
DELIBERATE_UP = {("btf", "build")}  # btf.from_header forwards to the toolchain


def test_imports_run_down_the_layers():
    mods = modules()
    up = []
    for imp in imports(mods):
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if (imp.source, imp.target) in DELIBERATE_UP and not imp.top:
            continue
        if dst > src:
            up.append(f"{mods[imp.source].relative_to(ROOT)}:{imp.line}: bpfring.{imp.source} "
                      f"({LAYERS[src][0]}) imports bpfring.{imp.target} ({LAYERS[dst][0]})")
    assert not up, "imports that run up a layer:\n" + "\n".join(up)


def test_no_import_cycles_at_module_level():
    found = cycles([i for i in imports(modules()) if i.top])
    assert not found, f"module-level import cycles: {found}"


def test_no_private_names_imported_from_other_modules():
    """What another module keeps private (``_name``) is not imported: only its
    public names, or private *modules* of the package (``from . import _sys``).
    Inside one subpackage (``btf._reader`` from ``btf._codec``) it is allowed."""
    mods = modules()
    bad = []
    for mod, path in mods.items():
        if path.suffix != ".py":
            continue
        w = _Walker(mod, path, set(mods))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = w._absolute(node.module, node.level)
            if base is None:
                continue
            for alias in node.names:
                name = alias.name
                if not name.startswith("_") or name.startswith("__"):
                    continue
                if ".".join([*base, name]) in mods:
                    continue  # a (private) module, not a private name
                if base and mod.split(".")[0] == base[0] and "." in mod:
                    continue  # within one subpackage
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: bpfring.{mod} imports "
                           f"{name} from bpfring.{'.'.join(base) or '__init__'}")
    assert not bad, "\n".join(bad)


# The placements the design relies on, stated once more so that editing the
# table cannot quietly undo them.
@pytest.mark.parametrize(("low", "high"), [
    ("_libbpf", "ringbuf"),  # ground below ring I/O
    ("mapref", "ringbuf"),  # rings accept map references
    ("btf", "maps"),  # types below the objects that use them
    ("ringbuf", "object"),  # an object makes rings
    ("build", "object"),  # load("x.bpf.c") compiles: the toolchain sits below objects
    ("object", "bridge"),  # features use objects, never the reverse
    ("_elements", "bridge"),  # the one element codec, shared by Map and MapBridge
    ("bridge", "cli"),
    ("discovery", "cli"),
])
def test_key_placements(low, high):
    assert layer_of(low) < layer_of(high)


# The walker itself, on small sources: a test that cannot fail is a defect.
def _walk(src: str, mod: str = "maps", path: str = "maps.py") -> set[tuple[str, bool]]:
    known = {"__init__", "maps", "object", "bridge", "btf", "btf._codec", "errors", "_sys"}
    w = _Walker(mod, PKG / path, known)
    w.visit(ast.parse(src))
    return {(i.target, i.top) for i in w.found}


def test_walker_sees_every_kind_of_import():
    assert _walk("from .object import BPFObject") == {("object", True)}
    assert _walk("def f():\n    from . import bridge") == {("bridge", False)}
    assert _walk("class C:\n    def m(self):\n        import bpfring.bridge") == {
        ("bridge", False)}
    assert _walk("from bpfring import _sys, load") == {("_sys", True), ("__init__", True)}
    assert _walk("import importlib\nimportlib.import_module('bpfring.object')") == {
        ("object", True)}
    assert _walk("import importlib\nimportlib.import_module(f'{__package__}.bridge')") == {
        ("bridge", True)}
    assert _walk("from .btf import Codec") == {("btf", True)}
    assert _walk("from ._codec import X", mod="btf", path="btf/__init__.py") == {
        ("btf._codec", True)}
    assert _walk("from ..errors import E", mod="btf._codec", path="btf/_codec.py") == {
        ("errors", True)}
    # exempt: only for type checkers, and outside the package
    assert _walk("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                 "    from .object import BPFObject") == set()
    assert _walk("if TYPE_CHECKING:\n    pass\nelse:\n    from .object import X") == {
        ("object", True)}
    assert _walk("import numpy\nfrom os import path") == set()


def test_cycle_finder():
    def e(a: str, b: str) -> Import:
        return Import(a, b, 1, True)

    assert cycles([e("a", "b"), e("b", "c")]) == []
    assert cycles([e("a", "b"), e("b", "c"), e("c", "a"), e("c", "d")]) == [["a", "b", "c"]]
