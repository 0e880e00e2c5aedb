"""MkDocs hooks for bpfring's documentation site (mkdocs.yml names this file).

- The home page is README.md (the repository's front page), served as
  ``index.md``; its repository paths (``docs/bridge.md``) become page links.
- The navigation lists the pages below in order, then every other
  ``docs/*.md`` under "Topics", so a page added to docs/ is part of the
  site, and of the strict build, without editing mkdocs.yml.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

TUTORIAL = [{"Tutorial: the reference example": "tutorial.md"}]
HOWTO = [
    {"Typed records": "howto-typed-records.md"},
    {"Batches with numpy": "howto-numpy.md"},
    {"asyncio": "howto-asyncio.md"},
    {"The command line": "howto-cli.md"},
    {"Map bridge": "bridge.md"},
    {"Perf event buffers": "howto-perf-buffers.md"},
    {"Attach types": "howto-attach.md"},
    {"Running without root": "howto-without-root.md"},
    {"Containers": "howto-containers.md"},
]
REFERENCE = [{"API reference": "api.md"}, {"Design": "design.md"}]
_TITLE = re.compile(r"^#\s+(.+)$", re.MULTILINE)


def _listed() -> set[str]:
    return {p for group in (TUTORIAL, HOWTO, REFERENCE) for item in group
            for p in item.values()}


def _title(path: Path) -> str:
    m = _TITLE.search(path.read_text())
    return m.group(1).strip() if m else path.stem


def on_config(config: Any) -> Any:
    docs = Path(config["docs_dir"])
    listed = _listed()
    others = [{_title(p): p.name} for p in sorted(docs.glob("*.md"))
              if p.name not in listed and p.name != "index.md"]
    nav: list[Any] = [{"Home": "index.md"}, *TUTORIAL, {"How-to": HOWTO}]
    if others:
        nav.append({"Topics": others})
    nav.append({"Reference": REFERENCE})
    config["nav"] = nav
    return config


def _readme_as_index() -> str:
    text = (ROOT / "README.md").read_text()
    # `docs/x.md` in the README is a repository path; on the site it is a page.
    text = re.sub(r"\]\(docs/", "](", text)             # [x](docs/page.md) -> [x](page.md)
    return re.sub(r"(?<!\[)`docs/([\w.-]+)\.md`", r"[`docs/\1.md`](\1.md)", text)


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "index.md", content=_readme_as_index()))
    return files
