"""``microseg --version``: the package version, Python and the core build, then exit 0."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib.metadata import version

from typer.testing import CliRunner

from microseg.engine.tools.cli import app


def test_version_names_the_package_python_and_the_core_build() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith(f"microseg {version('microseg')} (Python {platform.python_version()}, ")
    assert "compiled core" in line or "core from Python sources" in line


def test_version_from_the_installed_command() -> None:
    found = subprocess.run([sys.executable, "-m", "microseg", "--version"], capture_output=True, text=True, timeout=60)
    assert found.returncode == 0 and found.stdout.startswith("microseg ")
