"""A published model reaching the runtime: swapped in with a sweep (``cause: model:<version>``), or
refused with its reason logged and counted while the worker keeps its model. On the memory store;
the same through a real worker and broker is in test_model_publish.py."""

from __future__ import annotations

import logging

import orjson
import pytest

from microseg.engine.settings import Settings
from microseg.engine.worker.models_topic import apply_published_model, apply_published_models
from microseg.engine.worker.runtime import Runtime
from microseg.segments.predictive import BgNbdParams, GammaGammaParams, PredictiveModel, load_default_model
from microseg.segments.testing import load_rules_text
from tests.engine.worker.test_runtime import PARTITIONS, Clock, Feed, RecordingSink, RecordingStore, T0, assign_all, run

CDNOW = PredictiveModel(BgNbdParams(0.2426, 4.4136, 0.7929, 2.4259), GammaGammaParams(6.2496, 3.7442, 15.4435))
RULES = """
version: 1
segments:
  - id: valuable
    when: clv_12m > 1000
  - id: buyer
    when: purchases_total >= 1
"""


def _record(model: PredictiveModel) -> bytes:
    return orjson.dumps({"version": model.version, "file": "m.json", "published_at": "2026-03-01T10:00:00Z", "model": model.to_dict()})


def _runtime() -> Runtime:
    journal: list[str] = []
    rules = load_rules_text(RULES)
    return Runtime(Settings(partitions=PARTITIONS), RecordingStore(journal), RecordingSink(journal), rules, load_default_model(), clock=Clock(T0))


def _gauge(rt: Runtime, version: str) -> float | None:
    return rt.metrics.registry.get_sample_value("microseg_model_version_info", {"version": version})


def test_a_published_model_is_swapped_in_and_sweeps_with_model_cause(caplog: pytest.LogCaptureFixture) -> None:
    rt = _runtime()
    demo = rt.model
    assert demo is not None and _gauge(rt, demo.version) == 1
    records = Feed().records([(f"c{i}", "purchase", "2026-03-01T10:00:00Z", {"order_id": f"o{i}", "amount": 40}) for i in range(4)])

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(records)
        with caplog.at_level(logging.INFO, logger="microseg.engine.worker.models_topic"):
            await apply_published_model(_record(CDNOW), rt)

    run(go())
    changes = rt.sink.changes  # type: ignore[attr-defined]
    moved = [c for c in changes if c["cause"].startswith("model:")]
    assert sorted((c["customer_id"], c["segment"], c["change"], c["cause"]) for c in moved) == [
        (f"c{i}", "valuable", "exited", f"model:{CDNOW.version}") for i in range(4)
    ]
    assert rt.model == CDNOW and rt.model_origin == "published m.json at 2026-03-01T10:00:00Z"
    assert f"predictive model {CDNOW.version} (published m.json at 2026-03-01T10:00:00Z), no fit information in force (4 customers re-evaluated)" in caplog.text
    assert _gauge(rt, CDNOW.version) == 1 and _gauge(rt, demo.version) is None
    assert rt.metrics.registry.get_sample_value(
        "microseg_segment_transitions_total", {"segment": "valuable", "direction": "exited", "cause": "model"}
    ) == 4
    explained = rt.explain("c0")
    assert explained is not None and explained["model_version"] == CDNOW.version and explained["rules_version"] == rt.ruleset.version
    assert rt.segment_populations() == {"valuable": 0, "buyer": 4}
    assert run(rt.apply_model(CDNOW, "again")) == 0, "the same model again: nobody to re-evaluate"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "published model record is malformed (JSONDecodeError"),
        (orjson.dumps({"version": "x"}), "published model record is malformed (KeyError"),
        (orjson.dumps({"model": {**CDNOW.to_dict(), "gamma_gamma": {"p": 1, "q": 0.5, "v": 2}}}), "published model: Gamma-Gamma parameter 'q' must be > 1"),
        (orjson.dumps({"model": {**CDNOW.to_dict(), "format": "other"}}), "published model: not a microseg predictive model"),
    ],
)
def test_a_bad_record_is_refused_logged_and_counted_and_the_model_stays(value: bytes, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    rt = _runtime()
    before = rt.model
    with caplog.at_level(logging.ERROR, logger="microseg.engine.worker.models_topic"):
        run(apply_published_model(value, rt))
    assert reason in caplog.text and f"keeping model {before.version}" in caplog.text  # type: ignore[union-attr]
    assert rt.model is before and rt.model_origin == "packaged"
    assert rt.metrics.registry.get_sample_value("microseg_model_errors_total") == 1


def test_a_published_demo_model_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    rt = _runtime()
    run(rt.apply_model(CDNOW, "file x"))
    with caplog.at_level(logging.WARNING, logger="microseg.engine.worker.models_topic"):
        run(apply_published_model(_record(load_default_model()), rt))
    assert "is a demo model, fitted on simulated journeys" in caplog.text and "microseg fit --from-topic" in caplog.text
    assert rt.model is not None and rt.model.demo


def test_of_records_read_together_the_newest_usable_one_is_applied() -> None:
    rt = _runtime()
    broken = orjson.dumps({"model": {**CDNOW.to_dict(), "bgnbd": {"r": -1}}})
    run(apply_published_models([_record(load_default_model()), _record(CDNOW), broken], rt))
    assert rt.model == CDNOW, "a restarting worker whose newest record is bad takes the one before, as a running worker did"
    assert rt.metrics.registry.get_sample_value("microseg_model_errors_total") == 1, "only the bad record looked at is counted"
    run(apply_published_models([broken, broken], rt))
    assert rt.model == CDNOW and rt.metrics.registry.get_sample_value("microseg_model_errors_total") == 3
