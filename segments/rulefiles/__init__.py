"""Rule files -> one compiled, frozen ``RuleSet``, or every problem with ``file:line:col``.

YAML is read as a node tree (PyYAML's safe composer) so every value keeps its position; tags,
anchors and aliases are refused outright, so nothing in a rule file can construct objects or
expand exponentially. Plain scalars follow YAML 1.2 core rules (``no``, ``on``, ``21:00`` stay
text). Structure is validated by ``schemas.rulefile`` and problems are mapped back to the key
or value that caused them; expressions are compiled by ``segments.language`` with their errors
pointing inside the YAML scalar.

Modules, in the order a file goes through them: ``directory`` (the rules directory or texts,
the version hash), ``rule_file`` (one file), ``marked_yaml`` (safe YAML nodes with marks),
``positions`` (line and column of a character or of an offset inside a scalar), ``validation``
(the schema, problems with hints), ``sections`` (dimensions, messages, contact policy),
``assembly`` (checks across files, the ``RuleSet``).
"""

from __future__ import annotations

from microseg.segments.rulefiles.directory import RULE_FILE_SUFFIXES, check_rules, compile_rule_texts, load_rules
from microseg.segments.rulefiles.marked_yaml import MAX_YAML_DEPTH
from microseg.segments.rulefiles.rule_file import MAX_FILE_BYTES

__all__ = ["MAX_FILE_BYTES", "MAX_YAML_DEPTH", "RULE_FILE_SUFFIXES", "load_rules", "check_rules", "compile_rule_texts"]
