"""Candidate rule sets for the console's rules page: which directories may be read, their
``rules check`` problems (file:line:col), and how they differ from the rules in force.

The console never takes a path from the browser: candidates are the subdirectories of
``MICROSEG_CONSOLE_CANDIDATES`` (``<data_dir>/candidates`` by default) that hold rule files, named
by their directory name, so a page cannot make the worker read anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from microseg.segments.language.errors import Problem
from microseg.segments.rulefiles import check_rules, load_rules
from microseg.segments.ruleset import RuleSet

__all__ = ["RULE_SUFFIXES", "Change", "candidate_dirs", "find_candidate", "problems_of", "load_candidate", "diff"]

RULE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Change:
    """One segment's difference: ``kind`` ``added``, ``removed``, ``changed`` or ``same``, with
    its rule before and after (None where it does not exist)."""

    segment: str
    kind: str
    before: str | None
    after: str | None


def candidate_dirs(root: Path) -> list[str]:
    """Names of ``root``'s subdirectories that hold at least one rule file, sorted."""
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and any(f.suffix in RULE_SUFFIXES for f in p.iterdir() if f.is_file())
    )


def find_candidate(root: Path, name: str) -> Path | None:
    """The candidate directory called ``name`` under ``root``; None for any other name."""
    return root / name if name in candidate_dirs(root) else None


def problems_of(directory: Path) -> list[Problem]:
    """``rules check``'s problems, each with file:line:col; empty when the files compile."""
    return check_rules(directory)


def load_candidate(directory: Path) -> RuleSet:
    """The compiled candidate (raises ``RuleError``: call ``problems_of`` first)."""
    return load_rules(directory)


def diff(current: RuleSet, candidate: RuleSet) -> list[Change]:
    """Segments of both rule sets, in the candidate's order then the removed ones, with their rules."""
    before = {s.id: s.when.source for s in current.segments}
    after = {s.id: s.when.source for s in candidate.segments}
    changes = [
        Change(
            segment, "added" if segment not in before else "same" if before[segment] == rule else "changed",
            before.get(segment), rule,
        )
        for segment, rule in after.items()
    ]
    changes += [Change(segment, "removed", rule, None) for segment, rule in before.items() if segment not in after]
    return changes
