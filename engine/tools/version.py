"""``microseg --version``: the installed package's version, the Python running it and which core build
runs (compiled with mypyc, or the Python sources and why), the facts a bug report needs first."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

import typer

__all__ = ["version_text", "print_version"]


def version_text() -> str:
    """``microseg 0.1.0 (Python 3.11.7, compiled core)`` or ``... core from Python sources: <why>)``."""
    from microseg.segments.native import build

    try:
        number = version("microseg")
    except PackageNotFoundError:
        number = "unknown (not installed as a package)"
    core = build()
    how = "compiled core" if core.compiled else f"core from Python sources: {core.reason}"
    return f"microseg {number} (Python {platform.python_version()}, {how})"


def print_version(value: bool) -> None:
    """Typer callback of ``--version``: print ``version_text()`` and stop."""
    if value:
        typer.echo(version_text())
        raise typer.Exit()
