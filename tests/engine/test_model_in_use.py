"""Which model a process scores with, and the one-line warning when it is the packaged demo model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from microseg.engine.model_in_use import FIT_FOR_FILES, FIT_FOR_WORKER, PACKAGED, ModelInUse, load_model_in_use
from microseg.segments.predictive import BgNbdParams, GammaGammaParams, ModelFileError, PredictiveModel, default_model_path, load_default_model

FITTED = PredictiveModel(BgNbdParams(0.2426, 4.4136, 0.7929, 2.4259), GammaGammaParams(6.2496, 3.7442, 15.4435))


def test_the_packaged_model_is_in_use_by_default_and_warned_about_in_one_line() -> None:
    in_use = load_model_in_use(None)
    assert in_use.origin == PACKAGED and in_use.version == load_default_model().version
    warning = in_use.demo_warning(FIT_FOR_WORKER)
    assert warning is not None and "\n" not in warning
    assert f"predictive model {in_use.version} is a demo model, fitted on simulated journeys" in warning
    assert warning.endswith("fit one on your data: microseg fit --from-topic --out model.json, then microseg model publish model.json")
    line = in_use.line()
    assert line.startswith(f"predictive demo model {in_use.version} (packaged), fitted 2026-11-23T07:23:35+00:00 on microseg simulate")
    assert "4,148 customers" in line


def test_a_model_file_is_named_by_its_path_and_the_packaged_file_stays_packaged(tmp_path: Path) -> None:
    path = tmp_path / "cdnow.json"
    path.write_text(FITTED.to_json())
    in_use = load_model_in_use(path)
    assert in_use.origin == f"file {path}" and in_use.version == FITTED.version
    assert in_use.demo_warning(FIT_FOR_FILES) is None, "a model fitted on real data is not warned about"
    assert in_use.line() == f"predictive model {FITTED.version} (file {path}), no fit information"
    assert load_model_in_use(default_model_path()).origin == PACKAGED
    copy = tmp_path / "copy.json"
    shutil.copy(default_model_path(), copy)
    assert load_model_in_use(copy).demo_warning(FIT_FOR_FILES) is not None, "a copy of the demo model is still the demo model"


def test_no_model_and_what_health_shows() -> None:
    none = load_model_in_use(None, none=True)
    assert (none.model, none.version, none.describe(), none.demo_warning(FIT_FOR_FILES)) == (None, "none", None, None)
    described = load_model_in_use(None).describe()
    assert described is not None
    assert described["version"] == load_default_model().version and described["origin"] == "packaged" and described["demo"] is True
    assert described["fitted_on"].startswith("microseg simulate") and described["customers"] == 4148
    assert described["calibration"] == "2025-01-02..2025-09-30"
    assert ModelInUse(FITTED, "published m.json at now").describe() == {
        "version": FITTED.version, "origin": "published m.json at now", "demo": False, "description": None,
        "fitted_at": None, "fitted_on": None, "customers": None, "calibration": None,
    }


def test_an_unusable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**FITTED.to_dict(), "bgnbd": {"r": -1, "alpha": 1, "a": 2, "b": 3}}))
    with pytest.raises(ModelFileError, match=r"bad\.json: .*'r'"):
        load_model_in_use(path)
