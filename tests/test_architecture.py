"""The module table of docs/architecture.md is true: every module is listed, and imports follow it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "segments", "engine", "microseg")
ROW = re.compile(r"^\| `(?P<path>[^`]+\.py)` \| (?P<what>.+?) \| (?P<allowed>.+?) \|$")


def _table() -> dict[str, tuple[str, list[str]]]:
    rows = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        found = ROW.match(line)
        if found:
            allowed = found["allowed"].strip()
            prefixes: list[str] = []
            for part in re.split(r",\s*(?![^{]*\})", allowed) if allowed != "—" else []:
                group = re.fullmatch(r"(\w+)\.\{(.+)\}", part.strip())
                prefixes += [f"{group[1]}.{name.strip()}" for name in group[2].split(",")] if group else [part.strip()]
            rows[found["path"]] = (found["what"], prefixes)
    return rows


def _modules() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__init__.py" and not path.read_text().strip():
                continue
            found.append(str(path.relative_to(ROOT)))
    return found


def _imports(path: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("microseg."):
            names.add(node.module.removeprefix("microseg."))
        elif isinstance(node, ast.Import):
            names |= {a.name.removeprefix("microseg.") for a in node.names if a.name.startswith("microseg.")}
    return names


def test_every_module_has_a_row_and_every_row_a_module() -> None:
    table = _table()
    assert sorted(table) == sorted(_modules())
    assert all(what.strip() for what, _ in table.values())


@pytest.mark.parametrize("path", _modules())
def test_a_module_imports_only_what_its_row_allows(path: str) -> None:
    _, allowed = _table()[path]
    own = path.removesuffix(".py").replace("/", ".")
    wrong = {
        name for name in _imports(path)
        if not any(name == p or name.startswith(p + ".") for p in allowed) and not own.startswith(name)
    }
    assert not wrong, f"{path} imports {sorted(wrong)}; docs/architecture.md allows {allowed}"
