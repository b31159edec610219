"""``microseg fit --from-topic``: the purchases in the input topic fit to the same model as the same
events in a file, with records the worker would dead-letter skipped and counted, duplicates
counted once and erased customers left out. On the embedded broker."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import typer
from kafka import KafkaProducer
from typer.testing import CliRunner

from microseg.engine.kafka.broker import ensure_topics
from microseg.engine.settings import Settings
from microseg.engine.tools.fit import fit_command
from microseg.engine.tools.produce import produce_file
from microseg.engine.tools.simulator import simulate
from microseg.engine.tools.topic_purchases import read_topic_purchases
from microseg.segments.predictive import load_model

pytestmark = [pytest.mark.broker]

app = typer.Typer()
app.command()(fit_command)
runner = CliRunner()


def _settings(env: dict[str, str], broker: str) -> Settings:
    return Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items()}, broker=broker, fix_end_offsets=True)


def test_fit_from_the_topic_gives_the_model_fit_gives_on_the_same_file(
    broker: str, unique_topics: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(unique_topics, broker)
    ensure_topics(broker, settings)
    events = list(simulate(250, 150, 5, datetime(2026, 1, 1, tzinfo=timezone.utc)))
    erased = {e["customer_id"] for e in events if e["type"] == "erasure_requested"}
    assert erased, "the simulated journeys include erasures (else this test does not show they are left out)"
    journeys = tmp_path / "journeys.jsonl"
    journeys.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    kept = tmp_path / "kept.jsonl"  # the same file without the customers who asked to be erased
    kept.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events if e["customer_id"] not in erased))
    produce_file(settings, broker, journeys)
    purchases = [e for e in events if e["type"] == "purchase"]
    producer = KafkaProducer(bootstrap_servers=broker)
    bad = [b"not json", orjson.dumps({**purchases[0], "event_id": "neg", "props": {"order_id": "x", "amount": -5}})]
    for value in bad:
        producer.send(settings.input_topic, key=purchases[0]["customer_id"].encode(), value=value)
    for event in purchases[:3]:  # redelivered by an at-least-once producer
        producer.send(settings.input_topic, key=event["customer_id"].encode(), value=orjson.dumps(event))
    producer.flush()
    producer.close()

    for name, value in {**unique_topics, "MICROSEG_BROKER": broker, "MICROSEG_FIX_END_OFFSETS": "true"}.items():
        monkeypatch.setenv(name, value)
    from_topic = runner.invoke(app, ["--from-topic", "--out", str(tmp_path / "topic.json")])
    assert from_topic.exit_code == 0, from_topic.output
    from_file = runner.invoke(app, ["--from-events", str(kept), "--out", str(tmp_path / "file.json")])
    assert from_file.exit_code == 0, from_file.output

    topic_model, file_model = load_model(tmp_path / "topic.json"), load_model(tmp_path / "file.json")
    assert topic_model.bgnbd == file_model.bgnbd and topic_model.gamma_gamma == file_model.gamma_gamma
    assert topic_model.version == file_model.version
    assert topic_model.fit is not None and file_model.fit is not None
    assert topic_model.fit.source == f"topic {settings.input_topic}"
    assert (topic_model.fit.customers, topic_model.fit.purchase_days) == (file_model.fit.customers, file_model.fit.purchase_days)
    total = len(events) + len(bad) + 3
    assert f"read {total} records of {settings.input_topic}" in from_topic.output
    assert f"{len(purchases)} purchases, 2 records skipped, 3 duplicate purchases, {len(erased)} erased customers left out" in from_topic.output
    assert "not valid JSON" in from_topic.output or "not JSON" in from_topic.output
    assert f"(model {topic_model.version})" in from_topic.output


def test_an_empty_topic_reads_nothing_a_missing_one_is_named_and_a_purchase_keeps_its_own_date(
    broker: str, unique_topics: dict[str, str], tmp_path: Path
) -> None:
    settings = _settings(unique_topics, broker)
    ensure_topics(broker, settings)
    found = read_topic_purchases(settings, broker)
    assert (found.records, found.purchases, len(found.log)) == (0, 0, 0)
    assert set(found.ends) == set(range(settings.partitions))
    missing = settings.model_copy(update={"input_topic": f"{settings.input_topic}-missing"})
    from microseg.engine.kafka.broker import BrokerError

    with pytest.raises(BrokerError, match="does not exist"):
        read_topic_purchases(missing, broker)
    line = {"event_id": "p1", "customer_id": "c1", "type": "purchase", "ts": "2026-01-05T10:00:00+01:00", "props": {"order_id": "o", "amount": 12.5}}
    (tmp_path / "one.jsonl").write_text(json.dumps(line) + "\n")
    produce_file(settings, broker, tmp_path / "one.jsonl")
    found = read_topic_purchases(settings, broker)
    assert (found.records, found.purchases, sum(found.ends.values())) == (1, 1, 1)
    assert found.log.ids == ("c1",) and float(found.log.amount[0]) == 12.5
    assert int(found.log.day[0]) == datetime(2026, 1, 5).toordinal(), "the date of ts as written, as fit --from-events reads it"
