"""The wheel, as users get it: built from the source tree, installed into a fresh virtualenv, and
run from there through the ``microseg`` command (never the editable install the suite runs on).

What this proves: the wheel carries everything microseg needs at run time — the starter rules,
the rule grammar, the packaged predictive model, the JSON Schemas, the entry point, and the core
compiled by mypyc (extension modules and the build manifest) — and the installed command runs
``rules check``, ``simulate``, ``replay`` and ``schema`` with the compiled core.

How, and why this way:

- **Build** with ``pip wheel --no-deps`` from a copy of the source tree (the files git would
  package: tracked plus untracked-not-ignored, so no ``build/`` or ``*.so`` left by the editable
  install leaks in), *with* build isolation: pip installs ``[build-system].requires``
  (setuptools, wheel, mypy for mypyc) in a throwaway environment as it does for any user, so a
  missing build requirement fails here. That needs PyPI (or pip's cache), which CI's own
  ``pip install -e .`` needs anyway. Building in a copy also keeps this test from racing a
  ``pip install -e .`` over the work tree's ``build/``.
- **Install** into a venv made with ``venv.create(system_site_packages=False)`` and no pip,
  using the test environment's pip with ``--python`` pointing at the fresh interpreter (so the
  ``microseg`` script runs the fresh interpreter), ``--no-deps``.
- **Dependencies** are not downloaded again (that would cost CI a minute or more for faust,
  scipy, numpy, rocksdict...): one ``.pth`` line in the fresh venv adds the test environment's
  site-packages *directories* to the end of ``sys.path``. A plain path line does not process that
  directory's own ``.pth`` files, so the editable install's finder never loads, and the fresh
  venv's own site-packages come first: every ``microseg`` module is imported from the wheel's
  files, which the test asserts. What this does not prove is that the wheel's dependency
  metadata resolves from an empty environment; the metadata is generated from the same
  ``pyproject.toml`` that CI installs from, and the test checks that every ``Requires-Dist`` is
  satisfied by an installed distribution.

Takes about a minute (mostly mypyc compiling the core), hence ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 900


def _source_files() -> list[Path]:
    """The files a checkout of this tree has: git's view when there is a repository, else the tree
    less build output."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        return [ROOT / name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]
    skip = {".git", ".venv", "build", "dist", "__pycache__", ".mypy_cache", ".pytest_cache", ".hypothesis", "data", ".microseg"}
    return [
        path
        for path in ROOT.rglob("*")
        if path.is_file()
        and not skip.intersection(path.relative_to(ROOT).parts)
        and not path.name.endswith((".so", ".egg-info"))
        and path.name != "_native_build.json"
        and not any(part.endswith(".egg-info") for part in path.relative_to(ROOT).parts)
    ]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for path in _source_files():
        target = source / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    dist = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k not in ("MICROSEG_PURE_PYTHON", "PYTHONPATH")}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-v", "-w", str(dist), str(source)],
        cwd=dist, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"pip wheel failed:\n{log[-6000:]}"
    said = [line.strip() for line in log.splitlines() if line.strip().startswith("microseg: ") or " error: " in line]
    assert not said, "the build did not compile the core:\n" + "\n".join(said)
    built = list(dist.glob("microseg-*.whl"))
    assert len(built) == 1, built
    return built[0]


@pytest.fixture(scope="module")
def fresh(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel installed; returns its directory."""
    home = tmp_path_factory.mktemp("venv") / "venv"
    venv.create(home, system_site_packages=False, with_pip=False, symlinks=True)
    python = home / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    ours = [path for path in dict.fromkeys(sys.path) if Path(path).name in ("site-packages", "dist-packages") and Path(path).is_dir()]
    (purelib / "_test_environment.pth").write_text("".join(f"{path}\n" for path in ours))
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q", str(wheel)])
    return home


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MICROSEG_PURE_PYTHON", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(home)
    return env


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture
def microseg(fresh: Path, tmp_path: Path) -> Iterator[Any]:
    """``microseg(*args)``: the fresh venv's command, run in an empty directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = _run([str(fresh / "bin" / "microseg"), *args], cwd=cwd, env=_env(fresh))
        assert "running the core from Python sources" not in done.stderr, done.stderr
        return done

    yield run


def test_the_wheel_carries_the_package_data_and_the_compiled_core(wheel: Path) -> None:
    from microseg.segments import native

    names = set(zipfile.ZipFile(wheel).namelist())
    platform_tag = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    assert wheel.name.endswith(f"-{platform_tag}.whl") and "-none-any" not in wheel.name, f"{wheel.name}: no compiled core"

    def shipped(directory: str, pattern: str, package: str) -> None:
        files = sorted(p.relative_to(ROOT / directory).as_posix() for p in (ROOT / directory).glob(pattern))
        assert files, (directory, pattern)
        missing = [f for f in files if f"{package}/{f}" not in names]
        assert not missing, f"not in the wheel: {missing}"

    shipped("rules", "*.yaml", "microseg/rules")
    shipped("segments/language", "*.lark", "microseg/segments/language")
    shipped("segments/models", "*.json", "microseg/segments/models")
    shipped("schemas/json", "**/*.json", "microseg/schemas/json")
    shipped("engine/console/templates", "*.html", "microseg/engine/console/templates")
    shipped("engine/console/static", "*", "microseg/engine/console/static")

    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    compiled = [f"{module.replace('.', '/')}{suffix}" for module in native.MODULES]
    compiled.append(f"{native.GROUP.replace('.', '/')}__mypyc{suffix}")
    missing = [name for name in compiled if name not in names]
    assert not missing, f"compiled modules not in the wheel: {missing}"
    assert f"microseg/segments/{native.MANIFEST}" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "microseg = microseg." in entry_points


def test_the_installed_core_is_the_compiled_one_from_the_wheel(fresh: Path) -> None:
    code = (
        "import importlib, importlib.metadata, json, microseg\n"
        "from microseg.segments import native\n"
        "build = native.build()\n"
        "files = {m: importlib.import_module(m).__file__ for m in native.MODULES}\n"
        "requires = importlib.metadata.requires('microseg') or []\n"
        "print(json.dumps({'build': [build.compiled, build.reason], 'package': microseg.__file__, 'files': files, 'requires': requires}))\n"
    )
    report = json.loads(_run([str(fresh / "bin" / "python"), "-c", code], env=_env(fresh), cwd=fresh).stdout)
    assert report["build"] == [True, "mypyc"], report["build"]
    assert Path(report["package"]).is_relative_to(fresh), report["package"]
    assert all(Path(f).is_relative_to(fresh) and not f.endswith(".py") for f in report["files"].values()), report["files"]

    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    for line in report["requires"]:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            found = version(requirement.name)
        except PackageNotFoundError:
            pytest.fail(f"{line}: not installed")
        assert requirement.specifier.contains(found, prereleases=True), f"{line}: installed {found}"


def test_the_installed_command_checks_replays_and_exports(microseg: Any, fresh: Path, tmp_path: Path) -> None:
    rules = next(fresh.glob("lib/python*/site-packages/microseg/rules"))
    checked = microseg("rules", "check", str(rules)).stdout
    assert checked.startswith("ok: ") and " segments, " in checked, checked
    rules_version = checked.split("version ")[1].strip()

    events = tmp_path / "events.jsonl"
    microseg("simulate", "--customers", "40", "--days", "30", "--seed", "5", "--out", str(events))
    out = tmp_path / "out.jsonl"
    args = ["replay", str(events), "--json", "--out", str(out), "--as-live", "--until", "2026-03-01T00:00:00Z"]
    summary = json.loads(microseg(*args).stdout)
    assert summary["rules_version"] == rules_version
    assert summary["customers"] == 40 and summary["rejected"] == 0
    assert summary["changes"] > 0 and summary["messages"] > 0, summary
    # (replay reads the packaged predictive model unless told otherwise, and exits 2 without it)

    # The same program as the source tree: the editable install replays the file to the same bytes.
    editable_out = tmp_path / "editable.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "MICROSEG_PURE_PYTHON"}
    _run([sys.executable, "-m", "microseg", *args[:3], "--out", str(editable_out), *args[5:]], env=env)
    assert out.read_bytes() == editable_out.read_bytes()

    schemas = tmp_path / "schemas"
    written = microseg("schema", "--out", str(schemas)).stdout.split()
    assert len(written) >= 5
    packaged = next(fresh.glob("lib/python*/site-packages/microseg/schemas/json"))
    for path in sorted(packaged.rglob("*.json")):
        exported = schemas / path.relative_to(packaged)
        assert exported.read_bytes() == path.read_bytes(), f"packaged {path.relative_to(packaged)} differs from what `microseg schema` writes"
