"""Which build of the core runs: the mypyc-compiled modules or their Python sources.

``pip install`` compiles the modules in ``MODULES`` with mypyc (``setup.py``) into extension
modules beside the sources, about 2.5 times as fast, same behaviour. Python prefers an extension
module over a ``.py`` of the same name, so a compiled module that no longer matches its source
(edited since the build) would silently run old code. ``build()``, called before any core module
is imported, checks the build manifest against the sources and, when they differ, when the
compiled library does not load, or when ``MICROSEG_PURE_PYTHON`` is set, makes every module of
the set load from its source instead: all or none, since compiled modules call each other natively.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = ["MODULES", "GROUP", "MANIFEST", "Build", "source_path", "source_digest", "build"]

MODULES: tuple[str, ...] = (
    "microseg.segments.windows",
    "microseg.segments.dna_record",
    "microseg.segments.fields",
    "microseg.segments.traits",
    "microseg.segments.event_types",
    "microseg.segments.dna",
    "microseg.segments.builtin_fields",
    "microseg.segments.predictive_fields",
    "microseg.segments.ruleset",
    "microseg.segments.predictive",
    "microseg.segments.view",
    "microseg.segments.evaluate",
    "microseg.segments.changes",
    "microseg.segments.decide",
    "microseg.segments.crossing",
    "microseg.segments.timeline",
    "microseg.segments.state",
    "microseg.segments.step",
    "microseg.segments.pipeline",
    "microseg.segments.language.closures",
    "microseg.segments.language.compiler",
)
"""The modules compiled by ``setup.py`` (read from here, so the list lives in one place)."""

GROUP = "microseg.segments._native"
"""mypyc's shared library for the group is ``microseg.segments._native__mypyc``."""

MANIFEST = "_native_build.json"
"""Written next to the compiled modules at build time: the digest of each source compiled."""

PURE_ENV = "MICROSEG_PURE_PYTHON"

_ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Build:
    compiled: bool
    reason: str


def source_path(module: str) -> Path:
    parts = module.split(".")[2:]
    return _ROOT.joinpath(*parts).with_suffix(".py")


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_set(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no")


def _has_extension(module: str) -> bool:
    stem = source_path(module).with_suffix("")
    return any(stem.with_name(stem.name + suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _check(manifest_dir: Path) -> Build:
    if _is_set(os.environ.get(PURE_ENV)):
        return Build(False, f"{PURE_ENV} is set")
    manifest = manifest_dir / MANIFEST
    if not manifest.exists():
        return Build(False, "not compiled (no mypyc build found; pip install -e . builds it)")
    try:
        built = json.loads(manifest.read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return Build(False, f"unreadable build manifest {manifest}")
    for module in MODULES:
        source = source_path(module)
        if built.get(module) != source_digest(source):
            return Build(False, f"compiled core is older than {source.name}; rebuild with: pip install -e .")
    try:
        importlib.import_module(GROUP + "__mypyc")
    except ImportError as exc:
        return Build(False, f"compiled core does not load ({exc})")
    return Build(True, "mypyc")


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Loads the core modules from their ``.py`` files even where a compiled module sits beside them."""

    def find_spec(self, fullname: str, path: object = None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


_selected: Build | None = None


def build() -> Build:
    """The build this process runs, decided once, before the first core module is imported
    (``segments/__init__.py``); ``microseg bench`` and the tests read it too."""
    global _selected
    if _selected is None:
        _selected = _check(_ROOT)
        if not _selected.compiled and any(_has_extension(m) for m in MODULES):
            sys.meta_path.insert(0, _SourceFinder())
            if not _is_set(os.environ.get(PURE_ENV)):
                warnings.warn(f"microseg: running the core from Python sources: {_selected.reason}", RuntimeWarning, stacklevel=2)
    return _selected
