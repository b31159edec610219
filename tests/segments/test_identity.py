"""Identity stitching through the record pipeline, as ``microseg replay`` runs it (CONTRACT §8):
the identify merge, exits of the visitor, later alias events, a repeated identify, a contested
alias, erasure of aliases."""

from __future__ import annotations

from typing import Any

import orjson

from microseg.engine.tools.replay import replay
from microseg.engine.tools.sinks import ListSink
from microseg.schemas.events import ANONYMOUS_KEY
from microseg.segments.identity import MemoryAliases
from microseg.segments.step import Core
from microseg.segments.testing import load_rules_text, parse_ts

RULES = """
version: 1
segments:
  - id: browser
    when: page_views_30d >= 2
  - id: heavy_browser
    when: page_views_30d >= 4
  - id: buyer
    when: purchases_total >= 1
"""


def _line(event_id: str, kind: str, ts: str, *, customer: str | None = None, anonymous: str | None = None, **props: Any) -> bytes:
    record: dict[str, Any] = {"event_id": event_id, "type": kind, "ts": ts, "props": props}
    if customer is not None:
        record["customer_id"] = customer
    if anonymous is not None:
        record["anonymous_id"] = anonymous
    return orjson.dumps(record)


def _views(anonymous: str, day: int, n: int, prefix: str = "v") -> list[bytes]:
    return [_line(f"{prefix}{anonymous}{day}-{i}", "page_view", f"2026-03-{day:02}T10:0{i}:00Z", anonymous=anonymous, page="/p") for i in range(n)]


def _run(lines: list[bytes], aliases: MemoryAliases | None = None) -> tuple[ListSink, dict[str, Any], MemoryAliases]:
    sink = ListSink()
    aliases = MemoryAliases() if aliases is None else aliases
    _, states = replay(lines, Core(load_rules_text(RULES)), sink, now=parse_ts("2026-04-01T00:00:00Z"), aliases=aliases)
    return sink, states, aliases


def _moves(sink: ListSink) -> list[tuple[Any, ...]]:
    return [(c["customer_id"], c.get("anonymous_id"), c["segment"], c["change"], c["cause"]) for c in sink.change_records if c["segment"] != "micro"]


def test_identify_merges_the_visitor_into_the_customer() -> None:
    lines = _views("a1", 1, 3) + [
        _line("p1", "purchase", "2026-03-02T09:00:00Z", customer="c1", order_id="o1", amount=10),
        _line("id1", "identify", "2026-03-02T10:00:00Z", customer="c1", anonymous="a1"),
    ]
    sink, states, aliases = _run(lines)
    moves = _moves(sink)
    assert (None, "a1", "browser", "entered", "va11-1") in moves  # the visitor's records: customer_id null
    assert (None, "a1", "browser", "exited", "id1") in moves  # exits at identify, cause = its id
    assert ("c1", None, "browser", "entered", "id1") in moves  # the customer re-evaluated on the merged DNA
    assert ("c1", None, "buyer", "entered", "p1") in moves
    assert ANONYMOUS_KEY + "a1" not in states  # kept only as an alias
    assert aliases.customer_of("a1") == "c1" and aliases.aliases_of("c1") == ["a1"]
    assert states["c1"].dna.windows.total(parse_ts("2026-03-02T11:00:00Z"), 1, 30) == 3


def test_later_events_with_only_the_alias_count_for_the_customer() -> None:
    lines = _views("a1", 1, 2) + [
        _line("id1", "identify", "2026-03-02T10:00:00Z", customer="c1", anonymous="a1"),
    ] + _views("a1", 3, 2)
    sink, states, _ = _run(lines)
    assert ("c1", None, "heavy_browser", "entered", "va13-1") in _moves(sink)
    assert ANONYMOUS_KEY + "a1" not in states
    # also across replay calls (the table persists between chunks and runs)
    sink2, states2, aliases2 = _run(lines[:3])
    sink3, states3, _ = _run(_views("a1", 3, 2), aliases2)
    assert not any(c["customer_id"] is None for c in sink3.change_records)


def test_a_second_identify_of_the_same_pair_changes_nothing() -> None:
    base = _views("a1", 1, 2) + [_line("id1", "identify", "2026-03-02T10:00:00Z", customer="c1", anonymous="a1")]
    once, states_once, _ = _run(base)
    twice, states_twice, _ = _run(base + [_line("id2", "identify", "2026-03-02T11:00:00Z", customer="c1", anonymous="a1"), base[-1]])
    assert twice.change_records == once.change_records and not twice.dead_letters
    assert repr(states_twice["c1"].dna) == repr(states_once["c1"].dna)


def test_an_alias_linked_to_another_customer_is_a_dead_letter() -> None:
    lines = _views("a1", 1, 2) + [
        _line("id1", "identify", "2026-03-02T10:00:00Z", customer="c1", anonymous="a1"),
        _line("id2", "identify", "2026-03-02T11:00:00Z", customer="c2", anonymous="a1"),
    ]
    sink, states, aliases = _run(lines)
    assert len(sink.dead_letters) == 1 and "already linked to another customer" in sink.dead_letters[0]["reason"]
    assert aliases.customer_of("a1") == "c1" and "c2" not in states


def test_a_customer_x_and_a_visitor_x_stay_two_profiles() -> None:
    lines = _views("x", 1, 2) + [_line("p1", "purchase", "2026-03-01T12:00:00Z", customer="x", order_id="o", amount=5)]
    sink, states, _ = _run(lines)
    assert {("x", None, "buyer"), (None, "x", "browser")} <= {(c, a, s) for c, a, s, _, _ in _moves(sink)}
    assert states["x"].dna.purchases_total == 1 and states[ANONYMOUS_KEY + "x"].dna.purchases_total == 0
    ids = [c["change_id"] for c in sink.change_records]
    assert len(ids) == len(set(ids))


def test_erasure_of_a_customer_erases_its_aliases() -> None:
    lines = _views("a1", 1, 2) + [
        _line("id1", "identify", "2026-03-02T10:00:00Z", customer="c1", anonymous="a1"),
        _line("er1", "erasure_requested", "2026-03-03T10:00:00Z", customer="c1"),
    ] + _views("a1", 4, 3)
    sink, states, aliases = _run(lines)
    assert aliases.customer_of("a1") is None and aliases.aliases_of("c1") == ()
    assert states["c1"].erased and states[ANONYMOUS_KEY + "a1"].erased
    assert not [c for c in sink.change_records if c["at"] >= "2026-03-04"]  # the visitor's later events are dropped


def test_identify_of_an_unknown_visitor_links_and_creates_the_customer() -> None:
    sink, states, aliases = _run([_line("id1", "identify", "2026-03-02T10:00:00Z", customer="c9", anonymous="a9")] + _views("a9", 3, 2))
    assert aliases.customer_of("a9") == "c9" and ("c9", None, "browser", "entered", "va93-1") in _moves(sink)


def test_replay_is_deterministic_with_identifies() -> None:
    lines = _views("a1", 1, 3) + [_line("id1", "identify", "2026-03-02T10:00:00Z", customer="c1", anonymous="a1")] + _views("a1", 5, 2)
    assert _run(lines)[0].change_records == _run(lines)[0].change_records


def test_the_journey_harness_merges_identities_too() -> None:
    from microseg.segments.testing import Journey

    j = Journey(RULES)
    for line in _views("a1", 1, 3):
        j.send_raw(line)
    j.send_raw(_line("id1", "identify", "2026-03-02T10:00:00Z", customer="c1", anonymous="a1"))
    assert j.segments("c1") == ("browser",) and j.aliases.customer_of("a1") == "c1"
    assert ANONYMOUS_KEY + "a1" not in j.states
