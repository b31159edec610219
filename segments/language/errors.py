"""Rule errors: every problem carries file, line and column so analysts can jump to it.

A ``RuleError`` holds all problems found, not just the first, so one ``microseg rules check``
run lists everything to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from microseg.errors import MicrosegError

__all__ = ["Problem", "RuleError", "render_problem"]


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong in a rule file; ``line``/``col`` are 1-based, 0 when not tied to a place."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class RuleError(MicrosegError):
    """Rules that cannot be compiled; ``problems`` lists every one found."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid rules")


def render_problem(problem: Problem, source: str | None = None) -> str:
    """``str(problem)`` followed by the offending source line and a caret, for terminals.

    ``source`` is the text the line number refers to; when omitted the file is read if it exists.
    """
    head = str(problem)
    if problem.line <= 0:
        return head
    if source is None:
        try:
            source = Path(problem.file).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return head
    lines = source.splitlines()
    if problem.line > len(lines):
        return head
    text = lines[problem.line - 1]
    prefix = text[: max(problem.col - 1, 0)]
    pad = "".join(c if c == "\t" else " " for c in prefix)
    return f"{head}\n    {text}\n    {pad}^"
