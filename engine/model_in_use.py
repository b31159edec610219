"""Which predictive model a process scores with: its version, where it came from, what it was
fitted on, and the one-line warning when it is a demo model.

The worker logs ``line()`` at start and on every model it takes from the models topic, and
serves ``describe()`` in ``/health``; replay, ``rules preview`` and ``bench`` print
``demo_warning`` to stderr. The packaged model (``segments/models/default.json``) is a demo
model: fitted on the simulator's journeys, its P(alive) and CLV are on that simulated shop's
scale, not on a real one's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microseg.segments.predictive import PredictiveModel, default_model_path, load_default_model, load_model

__all__ = ["ModelInUse", "load_model_in_use", "PACKAGED", "FIT_FOR_WORKER", "FIT_FOR_FILES", "FIT_FOR_BENCH"]

PACKAGED = "packaged"
"""The origin of the model shipped with microseg."""

FIT_FOR_WORKER = "microseg fit --from-topic --out model.json, then microseg model publish model.json"
FIT_FOR_FILES = "microseg fit --from-events EVENTS.jsonl --out model.json, then --model model.json (or --no-model)"
FIT_FOR_BENCH = "microseg fit --from-events EVENTS.jsonl --out model.json, then MICROSEG_MODEL_PATH=model.json"
"""How to fit a model on one's own data and use it, where the demo warning is shown."""


@dataclass(frozen=True)
class ModelInUse:
    """A model (None: the predictive fields are null) and where it came from: ``packaged``,
    ``file <path>``, or ``published <file> at <time>`` (the models topic)."""

    model: PredictiveModel | None
    origin: str

    @property
    def version(self) -> str:
        """The model's version (a content hash), or ``none``."""
        return self.model.version if self.model is not None else "none"

    def describe(self) -> dict[str, Any] | None:
        """What ``/health`` shows under ``model`` (None without a model)."""
        model = self.model
        if model is None:
            return None
        fit = model.fit
        return {
            "version": model.version,
            "origin": self.origin,
            "demo": model.demo,
            "description": model.description,
            "fitted_at": fit.fitted_at if fit is not None else None,
            "fitted_on": fit.source if fit is not None else None,
            "customers": fit.customers if fit is not None else None,
            "calibration": f"{fit.calibration_start}..{fit.calibration_end}" if fit is not None else None,
        }

    def line(self) -> str:
        """One log line: version, origin, demo or not, and what and when it was fitted."""
        model = self.model
        if model is None:
            return "no predictive model: the predictive fields are null"
        fit = model.fit
        fitted = (
            f"fitted {fit.fitted_at} on {fit.source} ({fit.customers:,} customers, purchases {fit.calibration_start}..{fit.calibration_end})"
            if fit is not None
            else "no fit information"
        )
        kind = "demo model" if model.demo else "model"
        return f"predictive {kind} {model.version} ({self.origin}), {fitted}" + (f": {model.description}" if model.description else "")

    def demo_warning(self, how_to_fit: str) -> str | None:
        """One line when the model is a demo model: what it was fitted on and how to fit one on
        one's own data (``how_to_fit``, e.g. ``FIT_FOR_WORKER``); None otherwise."""
        model = self.model
        if model is None or not model.demo:
            return None
        fitted_on = model.description or "not fitted on your customers"
        return (
            f"predictive model {model.version} is a demo model, {fitted_on}: its P(alive), churn risk and CLV "
            f"are not about your customers; fit one on your data: {how_to_fit}"
        )


def load_model_in_use(path: Path | None, *, none: bool = False) -> ModelInUse:
    """The model file at ``path``, the packaged one when None, or no model with ``none``.
    Raises ``ModelFileError`` for a file that cannot be used."""
    if none:
        return ModelInUse(None, "none")
    if path is None:
        return ModelInUse(load_default_model(), PACKAGED)
    origin = PACKAGED if Path(path).resolve() == default_model_path().resolve() else f"file {path}"
    return ModelInUse(load_model(path), origin)
