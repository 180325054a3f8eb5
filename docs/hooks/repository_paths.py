"""MkDocs hook: every repository path a page names in code style (`common/flash_sale/lobby.py`,
`tests/test_lobby.py`, `deploy/monitoring/alerts.yml`) must exist, so a renamed or deleted file
leaves no page pointing at nothing: a missing one is a warning, which `mkdocs build --strict`
(and so `make test`) turns into a failed build. Paths under the directories that runs create
(results, artifacts, var/) are not checked. README.md, which is not a page of the site, is
checked too, with its links into docs/.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("api/", "common/", "worker/", "tests/", "loadtests/", "deploy/", "docs/", "frontend/")
MADE_BY_RUNS = ("loadtests/results/", "tests/artifacts/", "frontend/dist/", "frontend/node_modules/")
CODE_SPAN = re.compile(r"`([A-Za-z0-9_.\-]+/[A-Za-z0-9_./\-]*)`")

log = logging.getLogger("mkdocs.hooks.repository_paths")


def missing_paths(markdown: str) -> list[str]:
    found = []
    for path in sorted(set(CODE_SPAN.findall(markdown))):
        if path.startswith(TOP_LEVEL) and not (path.rstrip("/") + "/").startswith(MADE_BY_RUNS):
            if not (ROOT / path.rstrip("/")).exists():
                found.append(path)
    return found


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    for path in missing_paths(markdown):
        log.warning("%s names %s, which is not in the repository", page.file.src_path, path)
    return markdown


README_LINK = re.compile(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)")


def on_post_build(**_: Any) -> None:
    readme = (ROOT / "README.md").read_text()
    for path in missing_paths(readme) + [link for link in README_LINK.findall(readme)
                                         if not (ROOT / link).exists()]:
        log.warning("README.md names %s, which is not in the repository", path)
