"""The docs and the help point at documents the repository holds: no "CONTRACT §n" (the design
contract is not shipped; the repo's own docs say the same), no module paths that do not exist."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from microseg.engine.tools.cli import app

ROOT = Path(__file__).parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def test_no_doc_or_help_cites_a_contract_the_repository_does_not_hold() -> None:
    assert not (ROOT / "CONTRACT.md").exists() and not (ROOT / "docs" / "CONTRACT.md").exists()
    cited = [f"{path.name}:{n}" for path in DOCS for n, line in enumerate(path.read_text().splitlines(), 1) if "CONTRACT §" in line]
    assert cited == []
    shipped = [path.name for path in (ROOT / "schemas" / "json").rglob("*.json") if "CONTRACT" in path.read_text()]
    assert shipped == []  # the JSON Schemas users get: descriptions come from the models' docstrings
    for command in (["simulate", "--help"], ["schema", "--help"]):
        result = CliRunner().invoke(app, command, terminal_width=200)
        assert result.exit_code == 0 and "CONTRACT" not in result.output


def test_the_module_paths_architecture_md_names_as_where_code_lives_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"in `((?:engine|segments|schemas)/[\w/]+\.py)`", text))
    assert named and sorted(p for p in named if not (ROOT / p).exists()) == []
