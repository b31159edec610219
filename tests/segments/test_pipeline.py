"""The record pipeline on its own: what every host gets from it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.segments.pipeline import INTERNAL_ERROR, Batch, Pipeline, Record
from microseg.segments.dna_record import Dna
from microseg.segments.state import CustomerState, encode
from microseg.segments.ruleset import RuleSet
from microseg.segments.step import Core
from microseg.segments.testing import event_bytes, load_rules_text, parse_ts

RULES = load_rules_text("""
version: 1
segments:
  - id: buyer
    when: purchases_total >= 1
  - id: regular
    when: sessions_30d >= 3
""")
NOW = parse_ts("2026-06-01T00:00:00Z")


class Host:
    """The smallest host: states in a dict, as replay keeps them."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.states: dict[str, CustomerState] = {}

    def load(self, partition: int, ids: Collection[str]) -> dict[str, CustomerState]:
        return {c: self.states[c] for c in ids if c in self.states}

    def run(self, records: list[Record]) -> Batch:
        batch = self.pipeline.process(records, NOW, self.load)
        for states in batch.states.values():
            self.states.update(states)
        return batch


def rec(offset: int, customer: str, type_: str, ts: str, partition: int = 0, **props: Any) -> Record:
    return Record(partition, offset, customer.encode(), event_bytes(customer, type_, ts, event_id=f"e{partition}-{offset}", **props))


def test_outputs_come_in_input_order_with_dead_letters_apart() -> None:
    host = Host(Pipeline(Core(RULES), source="in"))
    batch = host.run([
        rec(0, "a", "purchase", "2026-05-01T10:00:00Z", order_id="1", amount=3),
        Record(0, 1, b"b", b"[]"),
        rec(2, "b", "purchase", "2026-05-01T10:01:00Z", order_id="2", amount=3),
    ])
    assert [c["customer_id"] for c in batch.changes] == ["a", "b"]
    assert [(d["offset"], d["partition"], d["topic"]) for d in batch.dead_letters] == [(1, 0, "in")]
    assert batch.types == {"purchase": 2}


def test_a_redelivered_offset_and_a_repeated_event_id_count_once() -> None:
    host = Host(Pipeline(Core(RULES), source="in"))
    first = rec(0, "a", "session_started", "2026-05-01T10:00:00Z")
    host.run([first])
    again = host.run([first])  # same offset: skipped before the event id is even looked at
    copy = host.run([Record(0, 1, b"a", first.value)])  # new offset, same event id
    assert again.duplicates == 1 and copy.duplicates == 1
    assert host.states["a"].dna.windows.totals[0][0] == 1  # one session counted


def test_the_key_must_be_the_customer_in_kafka_but_not_in_files() -> None:
    raw = event_bytes("a", "session_started", "2026-05-01T10:00:00Z")
    kafka = Host(Pipeline(Core(RULES), source="in")).run([Record(0, 0, b"other", raw)])
    files = Host(Pipeline(Core(RULES), source="file", kafka=False)).run([Record(0, 7, b"other", raw)])
    assert len(kafka.dead_letters) == 1 and not files.dead_letters
    assert Host(Pipeline(Core(RULES), source="file", kafka=False)).run([Record(0, 7, None, b"x")]).dead_letters[0]["partition"] is None


def fragile(rules: RuleSet) -> RuleSet:
    """The rules with a defect: evaluating the first segment raises for a customer with two
    purchases, as a bug in the core would (the hosts cannot tell the two apart)."""
    first = rules.segments[0]

    def broken(ctx: Any) -> Any:
        if ctx["purchases_total"] == 2:
            raise ZeroDivisionError("division by zero")
        return first.when.fn(ctx)

    return replace(rules, segments=(replace(first, when=replace(first.when, fn=broken)), *rules.segments[1:]))


def test_a_record_that_makes_the_core_raise_is_a_dead_letter_and_the_rest_goes_on() -> None:
    host = Host(Pipeline(Core(fragile(RULES)), source="in"))
    batch = host.run([
        rec(0, "a", "purchase", "2026-05-01T10:00:00Z", order_id="x", amount=1),
        rec(1, "a", "purchase", "2026-05-01T10:01:00Z", order_id="y", amount=1),
        rec(2, "a", "session_started", "2026-05-01T10:02:00Z"),
        rec(3, "b", "purchase", "2026-05-01T10:03:00Z", order_id="z", amount=2),
    ])
    assert [(d["offset"], d["reason"]) for d in batch.dead_letters] == [(1, f"{INTERNAL_ERROR}: ZeroDivisionError: division by zero")]
    assert host.states["a"].dna.purchases_total == 1 and host.states["a"].offset == 2
    assert [c["customer_id"] for c in batch.changes] == ["a", "b"]


def picky(state: CustomerState) -> bytes:
    """An encoder that cannot hold one attribute value, as msgpack cannot hold a 65-bit integer."""
    if state.dna.attributes.get("tier") == "unstorable":
        raise OverflowError("value too large")
    return encode(state)


def test_a_record_whose_state_cannot_be_stored_is_a_dead_letter_and_the_customer_goes_on() -> None:
    host = Host(Pipeline(Core(RULES), source="in", encode=picky))
    batch = host.run([
        rec(0, "a", "purchase", "2026-05-01T10:00:00Z", order_id="1", amount=3),
        rec(1, "a", "profile_updated", "2026-05-01T10:01:00Z", attributes={"tier": "unstorable"}),
        rec(2, "a", "session_started", "2026-05-01T10:02:00Z"),
        rec(3, "b", "purchase", "2026-05-01T10:03:00Z", order_id="2", amount=3),
    ])
    assert [d["offset"] for d in batch.dead_letters] == [1]
    assert "cannot be stored" in batch.dead_letters[0]["reason"] and "OverflowError" in batch.dead_letters[0]["reason"]
    assert [c["customer_id"] for c in batch.changes] == ["a", "b"]
    assert set(batch.encoded[0]) == {"a", "b"} and host.states["a"].dna.attributes == {}
    assert host.states["a"].offset == 2


_events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["session_started", "purchase", "page_view"]), st.integers(0, 40 * 24)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(_events, st.integers(1, 10))
def test_batch_boundaries_never_change_outputs_or_states(events: list[tuple[str, str, int]], size: int) -> None:
    def records() -> list[Record]:
        out = []
        for offset, (customer, kind, hours) in enumerate(sorted(events, key=lambda e: e[2])):
            ts = f"2026-05-{1 + hours // 24:02d}T{hours % 24:02d}:00:00Z"
            props: dict[str, Any] = {"order_id": str(offset), "amount": 1} if kind == "purchase" else {"page": "/"} if kind == "page_view" else {}
            out.append(rec(offset, customer, kind, ts, **props))
        return out

    whole, split = Host(Pipeline(Core(RULES), source="in")), Host(Pipeline(Core(RULES), source="in"))
    one = whole.run(records())
    changes: list[dict[str, Any]] = []
    all_records = records()
    for start in range(0, len(all_records), size):
        changes += split.run(all_records[start : start + size]).changes
    assert changes == one.changes
    assert {c: encode(s) for c, s in whole.states.items()} == {c: encode(s) for c, s in split.states.items()}


def test_advance_fires_what_is_due_and_leaves_the_rest() -> None:
    rules = load_rules_text("version: 1\nsegments:\n  - id: quiet\n    when: days_since_last_activity > 3\n")
    host = Host(Pipeline(Core(rules), source="in"))
    host.run([rec(0, "a", "session_started", "2026-05-01T10:00:00Z"), rec(1, "b", "session_started", "2026-05-20T10:00:00Z")])
    batch = host.pipeline.advance(0, ["a", "b"], parse_ts("2026-05-10T00:00:00Z"), host.load)
    assert [(c["customer_id"], c["cause"]) for c in batch.changes] == [("a", "tick")]
    assert set(batch.states[0]) == {"a"}


def test_a_customer_the_core_cannot_advance_keeps_its_state_and_the_others_go_on() -> None:
    rules = load_rules_text("version: 1\nsegments:\n  - id: quiet\n    when: days_since_last_activity > 3 and purchases_total >= 0\n")
    host = Host(Pipeline(Core(rules), source="in", encode=encode))
    host.run([rec(0, "a", "purchase", "2026-05-01T10:00:00Z", order_id="1", amount=1), rec(1, "a", "purchase", "2026-05-01T10:01:00Z", order_id="2", amount=1),
              rec(2, "b", "purchase", "2026-05-01T10:02:00Z", order_id="3", amount=1)])
    host.pipeline.core = Core(fragile(rules))  # raises for a customer with two purchases ("a")
    batch = host.pipeline.advance(0, ["a", "b"], parse_ts("2026-05-10T00:00:00Z"), host.load)
    assert list(batch.stuck) == ["a"] and "ZeroDivisionError" in batch.stuck["a"]
    assert [(c["customer_id"], c["segment"]) for c in batch.changes] == [("b", "quiet")]
    assert set(batch.states[0]) == {"b"}


def test_every_applied_erasure_is_listed_with_what_it_found() -> None:
    host = Host(Pipeline(Core(RULES), source="in"))
    host.run([rec(0, "a", "purchase", "2026-05-01T10:00:00Z", order_id="1", amount=3)])
    batch = host.run([
        rec(1, "a", "erasure_requested", "2026-05-02T10:00:00Z"),
        rec(2, "a", "session_started", "2026-05-02T10:01:00Z"),  # after the erasure: dropped, not listed
        rec(3, "a", "erasure_requested", "2026-05-02T10:02:00Z"),  # again, in the same batch
        rec(4, "never-seen", "erasure_requested", "2026-05-02T10:03:00Z"),
    ])
    assert [(e.customer_id, e.event_id, e.outcome, e.partition, e.offset) for e in batch.erasures] == [
        ("a", "e0-1", "erased", 0, 1), ("a", "e0-3", "already_erased", 0, 3), ("never-seen", "e0-4", "unknown", 0, 4),
    ]
    assert batch.erasures[0].t == parse_ts("2026-05-02T10:00:00Z")
    assert [(c["customer_id"], c["segment"], c["change"], c["cause"]) for c in batch.changes] == [("a", "buyer", "exited", "e0-1")]
    assert host.states["never-seen"].erased, "an unknown id erased by an event leaves a mark"
    redelivered = host.run([rec(1, "a", "erasure_requested", "2026-05-02T10:00:00Z")])
    assert [e.outcome for e in redelivered.erasures] == ["already_erased"], "a redelivery after the mark was stored"
    assert Host(Pipeline(Core(RULES), source="in")).run([rec(0, "b", "session_started", "2026-05-01T10:00:00Z")]).erasures == []


def test_merged_batches_keep_what_each_customer_was_loaded_with() -> None:
    """A partition stepped twice in one batch (the identity stage's handoffs after the input): a customer
    only the later part loaded keeps its loaded state, so the member index can delete what it left."""
    a, a_later, b = (CustomerState(Dna(first_seen=t, last_seen=t), segments=(s,)) for t, s in ((1.0, "x"), (2.0, "y"), (3.0, "z")))
    first, later = Batch(), Batch()
    first.loaded[0] = {"a": a}
    later.loaded[0] = {"a": a_later, "b": b}
    first.merge(later)
    assert first.loaded[0]["a"] is a and first.loaded[0]["b"] is b
    plain = Batch()
    plain.merge(first)
    assert plain.loaded[0] == {"a": a, "b": b}
