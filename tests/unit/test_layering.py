"""The package layout's rules, read from the imports of the source (every import, also the
ones inside functions and TYPE_CHECKING blocks):

- `common/platform` is the ground floor: it imports no domain of `common/`;
- billing builds on the waiting room (it settles and refunds tickets), so `common/billing`
  may import `common/flash_sale` and never the reverse;
- the product never imports the development tooling (`common/development`), the HTTP edge
  (`api`) or the Celery edge (`worker`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMMON = Path(__file__).resolve().parents[2] / "common"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imports_of(package: str) -> dict[str, set[str]]:
    return {str(path.relative_to(COMMON.parent)): imported_modules(path)
            for path in sorted((COMMON / package).rglob("*.py"))}


def offending(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path, modules in imports_of(package).items():
        bad = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            found[path] = bad
    return found


def domains() -> tuple[str, ...]:
    return tuple(f"common.{path.name}" for path in sorted(COMMON.iterdir())
                 if (path / "__init__.py").exists() and path.name not in ("platform", "development"))


def test_there_are_domains_to_check() -> None:
    assert {"common.flash_sale", "common.billing", "common.accounts"} <= set(domains())


def test_platform_imports_no_domain() -> None:
    assert offending("platform", domains()) == {}


def test_the_waiting_room_does_not_import_billing() -> None:
    assert offending("flash_sale", ("common.billing",)) == {}


@pytest.mark.parametrize("package", ["platform", "flash_sale", "billing", "accounts", "shop",
                                     "auditing"])
def test_the_product_imports_no_edge_and_no_development_tooling(package: str) -> None:
    assert offending(package, ("api", "worker", "common.development")) == {}
