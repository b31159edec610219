"""The rule expression language: text -> type-checked, compiled ``Expr`` (CONTRACT §3)."""

from microseg.segments.language.compiler import Locator, compile_expression
from microseg.segments.language.errors import Problem, RuleError, render_problem

__all__ = ["compile_expression", "Locator", "Problem", "RuleError", "render_problem"]
