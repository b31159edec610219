"""Where things are in a rule file: character index -> ``(line, col)``, and offsets inside a YAML scalar.

Lines and columns count from 1, as editors show them. Problems use these positions, and the
expression compiler gets a ``Locator`` per scalar so its errors point inside the YAML value.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import yaml

from microseg.segments.language import Locator

__all__ = ["KeyPath", "TextLines", "scalar_locator"]

KeyPath = tuple[str | int, ...]
"""Where a value sits in a file's data: mapping keys and list indexes from the root, ``()`` for the root."""


@dataclass(frozen=True, slots=True)
class TextLines:
    """Line starts of a file's text, to turn a character index into (line, col)."""

    text: str
    starts: list[int]

    @classmethod
    def of(cls, text: str) -> TextLines:
        return cls(text, [0, *(m.end() for m in re.finditer("\n", text))])

    def at(self, index: int) -> tuple[int, int]:
        """``(line, col)``, both from 1, of the character at ``index`` of ``text``."""
        line = bisect.bisect_right(self.starts, index) - 1
        return line + 1, index - self.starts[line] + 1


def scalar_locator(lines: TextLines, node: yaml.ScalarNode, value: str) -> Locator:
    """Offset in the scalar's value -> (line, col) in the file.

    Exact for plain and quoted single-line scalars; for escapes, folding and block scalars
    the value is aligned with the raw text, which lands on the right character in practice.
    """
    text = lines.text
    start, end = node.start_mark.index, node.end_mark.index
    if node.style in ("'", '"'):
        start += 1
    elif node.style in ("|", ">"):
        newline = text.find("\n", start, end)
        start = end if newline < 0 else newline + 1
    cache: list[int] = []

    def align() -> list[int]:
        if node.style in ("'", '"') and "\n" not in text[start:end]:
            exact = _quoted_offsets(text, start, end - 1, node.style)
            if len(exact) == len(value) + 1:
                cache.extend(exact)
                return cache
        p = start
        for ch in value:
            q, skipped = p, 0
            while q < end and text[q] != ch and skipped <= 4:
                skipped += 0 if text[q].isspace() else 1
                q += 1
            found = q < end and text[q] == ch
            cache.append(q if found else p)
            p = q + 1 if found else p + 1
        cache.append(min(p, max(end, start)))
        return cache

    def locate(offset: int) -> tuple[int, int]:
        table = cache or align()
        return lines.at(table[max(0, min(offset, len(table) - 1))])

    return locate


_ESCAPE_WIDTH = {"x": 4, "u": 6, "U": 10}


def _quoted_offsets(text: str, start: int, end: int, style: str) -> list[int]:
    """Raw index of each decoded character of a one-line quoted scalar, plus its end."""
    out: list[int] = []
    i = start
    while i < end:
        out.append(i)
        if style == "'" and text.startswith("''", i):
            i += 2
        elif style == '"' and text[i] == "\\" and i + 1 < end:
            i += _ESCAPE_WIDTH.get(text[i + 1], 2)
        else:
            i += 1
    out.append(end)
    return out

