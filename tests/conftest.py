"""Shared fixtures: one embedded broker per test session, and a scratch data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from microseg.engine.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap ``host:port`` of one embedded broker shared by the session (mark users ``@pytest.mark.broker``)."""
    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    """An empty directory for state stores."""
    path = tmp_path / "data"
    path.mkdir()
    return path
