"""The simulator's anonymous browsing before sign-up (``simulate(..., anonymous=True)``, ``--anonymous``)."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from microseg.engine.tools.replay import replay
from microseg.engine.tools.simulator import simulate
from microseg.engine.tools.sinks import ListSink
from microseg.engine.tools.simulator.identities import anonymous_id_of
from microseg.schemas.events import decode_event
from microseg.segments.identity import MemoryAliases
from microseg.segments.step import Core
from microseg.segments.testing import load_rules_text

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_prospects_browse_anonymously_until_they_sign_up_then_identify() -> None:
    events = list(simulate(300, 30, 5, START, anonymous=True))
    plain = list(simulate(300, 30, 5, START))
    identifies = [e for e in events if e["type"] == "identify"]
    anonymous = [e for e in events if "customer_id" not in e]
    assert identifies and anonymous
    for event in events:
        decode_event(orjson.dumps(event))  # every event is valid input
    for identify in identifies:
        customer = identify["customer_id"]
        assert identify["anonymous_id"] == anonymous_id_of(customer)
        mine = [e for e in events if e.get("customer_id") == customer or e.get("anonymous_id") == anonymous_id_of(customer)]
        at = mine.index(identify)
        assert mine[at - 1]["type"] == "account_created" and mine[at - 1]["ts"] == identify["ts"]
        assert all("customer_id" not in e for e in mine[: at - 1])  # anonymous before the sign-up
        assert all("customer_id" in e for e in mine[at:])  # known after it
    # the same journeys: only ids change, and one identify per sign-up of a prospect
    assert len(events) == len(plain) + len(identifies)
    assert list(simulate(300, 30, 5, START, anonymous=True)) == events  # deterministic


def test_replaying_the_anonymous_stream_shows_merges() -> None:
    lines = [orjson.dumps(e) for e in simulate(200, 30, 3, START, anonymous=True)]
    rules = load_rules_text("version: 1\nsegments:\n  - id: browser\n    when: page_views_30d >= 1\n")
    sink = ListSink()
    aliases = MemoryAliases()
    replay(lines, Core(rules), sink, aliases=aliases, now=START.timestamp() + 40 * 86_400)
    causes = {orjson.loads(line)["event_id"] for line in lines if b'"identify"' in line}
    merged = [c for c in sink.change_records if c["cause"] in causes]
    assert any(c["customer_id"] is None and c["change"] == "exited" for c in merged)  # the visitor leaves
    assert any(c["customer_id"] is not None and c["change"] == "entered" for c in merged)  # the customer, merged
    assert aliases.links
