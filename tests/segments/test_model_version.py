"""A predictive model's version and provenance, and the re-evaluation it decides: a customer
evaluated under another model is re-evaluated with ``cause: model:<version>``, as one evaluated
under other rules is with ``cause: rules:<version>``, without a change of the stored state's layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from microseg.segments.pipeline import Pipeline, Record
from microseg.segments.predictive import (
    BgNbdParams,
    GammaGammaParams,
    ModelFileError,
    PredictiveModel,
    default_model_path,
    load_default_model,
    load_model,
)
from microseg.segments.state import CustomerState, decode, encode
from microseg.segments.step import Core
from microseg.segments.testing import event_bytes, load_rules_text

CDNOW = PredictiveModel(BgNbdParams(0.2426, 4.4136, 0.7929, 2.4259), GammaGammaParams(6.2496, 3.7442, 15.4435))
"""The CDNOW calibration fit of the paper (docs/predictive.md): spend per purchase ~35, where the
packaged demo model's is ~220, so a one-time buyer's CLV is ~44 here and ~4,600 there."""

RULES = """
version: 1
segments:
  - id: valuable
    when: clv_12m > 1000
  - id: buyer
    when: purchases_total >= 1
"""


def test_the_packaged_model_is_a_demo_model_and_says_what_it_was_fitted_on() -> None:
    model = load_default_model()
    assert model.demo is True
    assert model.description is not None and "simulated journeys" in model.description
    stored = json.loads(default_model_path().read_text())
    assert stored["model_version"] == model.version, "the file's version is its content hash"


def test_an_old_model_file_loads_as_a_non_demo_model_with_a_version_from_its_content(tmp_path: Path) -> None:
    old = json.loads(default_model_path().read_text())
    for key in ("model_version", "demo", "description"):
        del old[key]
    old["fit"]["fitted_at"] = "2020-01-01T00:00:00+00:00"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    model = load_model(path)
    assert model.demo is False and model.description is None
    assert model.version == load_default_model().version, "same parameters, same version: the fit's description is not hashed"
    assert len(model.version) == 12 and int(model.version, 16) >= 0


def test_the_version_follows_what_decides_the_scores() -> None:
    base = CDNOW
    assert PredictiveModel(base.bgnbd, base.gamma_gamma, description="x", demo=True).version == base.version
    assert PredictiveModel(BgNbdParams(0.2427, 4.4136, 0.7929, 2.4259), base.gamma_gamma).version != base.version
    assert PredictiveModel(base.bgnbd, base.gamma_gamma, discount_rate_monthly=0.01).version != base.version
    assert PredictiveModel(base.bgnbd, base.gamma_gamma, unit="days").version != base.version


def test_demo_and_description_survive_a_round_trip_and_bad_ones_are_refused() -> None:
    model = PredictiveModel(CDNOW.bgnbd, CDNOW.gamma_gamma, demo=True, description="fitted on a test")
    again = PredictiveModel.from_json(model.to_json())
    assert (again.demo, again.description, again.version) == (True, "fitted on a test", model.version)
    assert "demo" not in CDNOW.to_dict() and CDNOW.to_dict()["model_version"] == CDNOW.version
    for bad in ({"demo": "yes"}, {"description": 3}):
        with pytest.raises(ModelFileError, match="demo must be true or false"):
            PredictiveModel.from_dict({**CDNOW.to_dict(), **bad}, "m.json")


# -- the evaluated version and the re-evaluation it decides ---------------------------------


class Host:
    """Stored states in a dict, as replay keeps them."""

    def __init__(self, core: Core) -> None:
        self.pipeline = Pipeline(core, source="in", kafka=False)
        self.states: dict[str, CustomerState] = {}

    def load(self, partition: int, ids: Any) -> dict[str, CustomerState]:
        return {c: self.states[c] for c in ids if c in self.states}

    def send(self, lines: list[bytes]) -> list[dict[str, Any]]:
        batch = self.pipeline.process([Record(0, i, None, raw) for i, raw in enumerate(lines, 1)], 2e9, self.load)
        self.states.update(batch.states[0])
        return batch.changes

    def sweep(self, core: Core) -> list[dict[str, Any]]:
        """Swap the core and re-evaluate everyone not evaluated under it (a worker's sweep)."""
        self.pipeline.core = core
        batch = self.pipeline.advance(0, sorted(self.states), None, self.load)
        self.states.update(batch.states[0])
        return batch.changes


def _buyers(host: Host) -> list[dict[str, Any]]:
    return host.send([event_bytes(f"c{i}", "purchase", "2026-03-01T10:00:00.000Z", event_id=f"p{i}", order_id=f"o{i}", amount=40) for i in range(3)])


def test_a_new_model_re_evaluates_everyone_with_cause_model_version() -> None:
    rules = load_rules_text(RULES)
    demo = load_default_model()
    host = Host(Core(rules, demo))
    entered = _buyers(host)
    assert {(c["segment"], c["change"]) for c in entered} == {("valuable", "entered"), ("buyer", "entered")}
    assert {s.rules_version for s in host.states.values()} == {f"{rules.version}+{demo.version}"}

    changes = host.sweep(Core(rules, CDNOW))
    assert sorted((c["customer_id"], c["segment"], c["change"], c["cause"]) for c in changes) == [
        (f"c{i}", "valuable", "exited", f"model:{CDNOW.version}") for i in range(3)
    ], "only what the model changes moves, attributed to the model"
    assert {c["rules_version"] for c in changes} == {rules.version}, "output records carry the rules' version as before"
    assert {c["at"] for c in changes} == {"2026-03-01T10:00:00.000Z"}, "at the instant each customer was last evaluated"
    assert {s.rules_version for s in host.states.values()} == {f"{rules.version}+{CDNOW.version}"}
    assert host.sweep(Core(rules, CDNOW)) == [], "a second sweep under the same model finds nobody to re-evaluate"

    assert host.sweep(Core(rules, None)) == [], "no model: clv_12m is null, and they are already out of 'valuable'"
    assert {s.rules_version for s in host.states.values()} == {rules.version}, "without a model, the rules' version alone"
    again = host.sweep(Core(rules, demo))
    assert {(c["segment"], c["change"], c["cause"]) for c in again} == {("valuable", "entered", f"model:{demo.version}")}


def test_removing_the_model_is_cause_model_none_and_new_rules_win_over_a_new_model() -> None:
    rules = load_rules_text(RULES)
    host = Host(Core(rules, load_default_model()))
    _buyers(host)
    assert {c["cause"] for c in host.sweep(Core(rules, None))} == {"model:none"}
    newer = load_rules_text(RULES.replace("1000", "10"))
    changes = host.sweep(Core(newer, CDNOW))
    assert changes and {c["cause"] for c in changes} == {f"rules:{newer.version}"}, "rules and model both new: the rules' cause"


def test_a_state_stored_before_models_had_versions_is_re_evaluated_once_and_emits_nothing() -> None:
    rules = load_rules_text(RULES)
    demo = load_default_model()
    host = Host(Core(rules, demo))
    _buyers(host)
    for customer_id, state in host.states.items():  # as a worker before this change stored it
        state.rules_version = rules.version
        host.states[customer_id] = decode(encode(state))
    assert host.sweep(Core(rules, demo)) == [], "the same model scores the same: nothing to emit"
    assert {s.rules_version for s in host.states.values()} == {f"{rules.version}+{demo.version}"}
    later = host.send([event_bytes("c0", "session_started", "2026-03-02T10:00:00.000Z", event_id="s0")])
    assert later == []
