"""A rules directory, or rule files shipped as texts -> one versioned ``RuleSet``, or every problem.

The only I/O of the rule-file reader: listing the directory and reading its ``*.yaml``/``*.yml``
files (at most ``MAX_FILE_BYTES`` each; ``*.test.yaml`` rule tests are not rule files). The version is the first 12 hex digits of a SHA-256 over
the file names and contents, so it is the same wherever the files are loaded from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from microseg.segments.language import Problem, RuleError
from microseg.segments.rulefiles.assembly import assemble
from microseg.segments.rulefiles.declarations import declare
from microseg.segments.rulefiles.rule_file import MAX_FILE_BYTES, RuleFile
from microseg.segments.ruleset import RuleSet

__all__ = ["RULE_FILE_SUFFIXES", "TEST_FILE_SUFFIXES", "is_rule_file", "load_rules", "check_rules", "compile_rule_texts"]

RULE_FILE_SUFFIXES = (".yaml", ".yml")
TEST_FILE_SUFFIXES = (".test.yaml", ".test.yml")
"""Rule tests kept beside the rules (``microseg rules test``): not rule files, not in the version hash."""


def is_rule_file(path: Path) -> bool:
    """A ``*.yaml``/``*.yml`` file of a rules directory that is not hidden and not a rule test."""
    name = path.name
    return path.suffix in RULE_FILE_SUFFIXES and not name.startswith(".") and not name.endswith(TEST_FILE_SUFFIXES) and path.is_file()


def load_rules(directory: Path | str) -> RuleSet:
    """Compile every ``*.yaml``/``*.yml`` in ``directory`` (sorted); raises ``RuleError`` with all problems."""
    root = Path(directory)
    if not root.is_dir():
        why = "is a file, not a rules directory: give the directory that holds the *.yaml rule files" if root.exists() else "rules directory not found"
        raise RuleError([Problem(str(root), 0, 0, why)])
    paths = sorted(p for p in root.iterdir() if is_rule_file(p))
    if not paths:
        raise RuleError([Problem(str(root), 0, 0, "no rule files (*.yaml, *.yml) in this directory")])
    problems: list[Problem] = []
    texts: dict[str, bytes] = {}
    for path in paths:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            problems.append(Problem(str(path), 1, 1, f"file is {size} bytes; rule files are limited to {MAX_FILE_BYTES} bytes (1 MiB)"))
            continue
        texts[path.name] = path.read_bytes()
    try:
        ruleset = compile_rule_texts(texts, base=str(root))
    except RuleError as exc:
        problems.extend(exc.problems)
    if problems:
        raise RuleError(sorted(problems))
    return ruleset


def check_rules(directory: Path | str) -> list[Problem]:
    """Every problem in ``directory``'s rule files, sorted; empty when they compile."""
    try:
        load_rules(directory)
    except RuleError as exc:
        return list(exc.problems)
    return []


def compile_rule_texts(files: Mapping[str, bytes | str], *, base: str | None = None) -> RuleSet:
    """Compile rule files given as ``{file name: content}`` (what ``rules publish`` ships).

    The version hashes names and contents only, so the same files give the same version
    wherever they are loaded from; ``base`` only prefixes file names in problems.
    """
    problems: list[Problem] = []
    parts: list[RuleFile] = []
    digest = hashlib.sha256()
    for name in sorted(files):
        raw = files[name]
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        digest.update(name.encode("utf-8") + b"\0" + data + b"\0")
        shown = str(Path(base) / name) if base else name
        part = RuleFile(shown)
        parts.append(part)
        part.load(data)
    declared = declare(parts)
    for part in parts:
        part.compile_expressions(declared.registry)
        problems.extend(part.problems)
    ruleset = assemble(parts, digest.hexdigest()[:12], tuple(sorted(files)), problems, declared)
    if problems:
        raise RuleError(sorted(set(problems)))
    return ruleset

