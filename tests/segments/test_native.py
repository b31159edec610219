"""The compiled core (mypyc) is what runs, and it gives exactly what the Python sources give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from microseg.segments import native


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    env.update(extra)
    return env


def test_the_installed_core_is_compiled() -> None:
    if os.environ.get(native.PURE_ENV):
        pytest.skip(f"{native.PURE_ENV} is set for this run")
    build = native.build()
    assert build.compiled, f"the core runs from Python sources: {build.reason}"
    import microseg.segments.dna as dna

    assert not dna.__file__.endswith(".py")


def test_pure_python_env_loads_every_core_module_from_its_source() -> None:
    code = (
        "import importlib, json\n"
        "from microseg.segments import native\n"
        "files = {m: importlib.import_module(m).__file__ for m in native.MODULES}\n"
        "print(json.dumps({'compiled': native.build().compiled, 'files': files}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(**{native.PURE_ENV: "1"}), capture_output=True, check=True)
    report = json.loads(out.stdout)
    assert report["compiled"] is False
    assert all(path.endswith(".py") for path in report["files"].values()), report["files"]
    assert b"RuntimeWarning" not in out.stderr


def test_a_build_older_than_its_sources_is_not_used(tmp_path: Path) -> None:
    built = {module: native.source_digest(native.source_path(module)) for module in native.MODULES}
    built["microseg.segments.dna"] = "0" * 64
    (tmp_path / native.MANIFEST).write_text(json.dumps({"sources": built}))
    build = native._check(tmp_path)
    assert not build.compiled
    assert "older than dna.py" in build.reason and "pip install -e ." in build.reason


def test_no_build_means_the_sources(tmp_path: Path) -> None:
    assert native._check(tmp_path) == native.Build(False, "not compiled (no mypyc build found; pip install -e . builds it)")


def _replay(journeys: Path, out: Path, **env: str) -> dict[str, object]:
    command = [sys.executable, "-m", "microseg", "replay", str(journeys), "--out", str(out), "--json"]
    command += ["--as-live", "--until", "2026-04-01T00:00:00Z"]  # decisions as made at their own time: messages to compare
    done = subprocess.run(command, env=_env(**env), capture_output=True, check=True)
    summary: dict[str, object] = json.loads(done.stdout)
    summary.pop("seconds")
    summary.pop("events_per_s")
    return summary


@pytest.mark.slow
def test_compiled_and_pure_cores_write_the_same_bytes(sample_journeys: Path, tmp_path: Path) -> None:
    compiled = _replay(sample_journeys, tmp_path / "compiled.jsonl")
    pure = _replay(sample_journeys, tmp_path / "pure.jsonl", **{native.PURE_ENV: "1"})
    assert compiled == pure
    assert (tmp_path / "compiled.jsonl").read_bytes() == (tmp_path / "pure.jsonl").read_bytes()
    assert compiled["changes"] and compiled["messages"]
