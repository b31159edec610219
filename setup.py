"""Build hook: compiles the pure core with mypyc when it can; everything else is in pyproject.toml.

The compiled modules behave exactly as their sources (the test suite runs against them, and
``tests/segments/test_native.py`` compares both builds). Without a C compiler, or with
``MICROSEG_PURE_PYTHON=1`` at install time, the package installs as plain Python.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
PACKAGE_DIRS = {"microseg": "microseg", "microseg.schemas": "schemas", "microseg.segments": "segments"}
STAGE = ROOT / "build" / "mypyc-src"


def _load_native() -> ModuleType:
    """segments/native.py on its own (it needs only the standard library): the list of compiled
    modules, their sources and the manifest format live there, for the build and the runtime."""
    spec = importlib.util.spec_from_file_location("_microseg_native_build", ROOT / "segments" / "native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


native = _load_native()


def _stage() -> list[str]:
    """Copy the sources into a ``microseg/...`` tree: mypyc names modules after their path."""
    shutil.rmtree(STAGE, ignore_errors=True)
    for package, directory in PACKAGE_DIRS.items():
        target = STAGE.joinpath(*package.split("."))
        shutil.copytree(ROOT / directory, target, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.json", "*.lark", "models"))
    return [str(STAGE.joinpath(*m.split(".")).with_suffix(".py")) for m in native.MODULES]


BUILDING = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def _extensions() -> list[object]:
    if not BUILDING.intersection(sys.argv[1:]):
        return []
    if os.environ.get("MICROSEG_PURE_PYTHON", "").strip().lower() not in ("", "0", "false", "no"):
        print("microseg: MICROSEG_PURE_PYTHON is set: installing the core as plain Python", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("microseg: mypyc is not available: installing the core as plain Python", file=sys.stderr)
        return []
    # --no-site-packages: type-check the staged sources with third-party imports as Any, whatever
    # the building interpreter has installed. A fresh build has no pydantic; a venv that has it
    # made mypy check schemas/events.py against pydantic's annotations and reject it, so the same
    # source compiled in one place and silently installed as plain Python in the other.
    try:
        extensions = mypycify(
            ["--ignore-missing-imports", "--no-site-packages", *_stage()], opt_level="3", group_name=native.GROUP, target_dir=str(STAGE / "c")
        )
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure leaves a working pure-Python install
        print(f"microseg: mypyc could not compile the core ({exc}): installing it as plain Python", file=sys.stderr)
        return []
    for extension in extensions:
        extension.optional = True
    return extensions


class BuildNative(build_ext):
    """Builds the compiled core, then writes the manifest that ``segments.native`` checks."""

    def run(self) -> None:
        super().run()
        built = [self.get_ext_fullpath(e.name) for e in self.extensions]
        if not built or not all(os.path.exists(p) for p in built):
            return
        manifest = Path(self.get_ext_fullpath(native.MODULES[0])).parent / native.MANIFEST
        sources = {m: native.source_digest(native.source_path(m)) for m in native.MODULES}
        manifest.write_text(json.dumps({"sources": sources}, indent=1) + "\n")


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildNative})
