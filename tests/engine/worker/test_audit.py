"""The erasure audit trail in the runtime (memory store and sink): one record per erasure request,
before the erasure is stored, with the customer's HMAC and nothing of the customer. The same on a
real worker and broker: tests/engine/worker/test_security.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from microseg.engine.settings import Settings
from microseg.engine.state import MemoryStore
from microseg.engine.worker.audit import API_REQUEST_PREFIX, HMAC_SCHEME, ErasureAudit
from microseg.engine.worker.delivery import MemorySink
from microseg.engine.worker.runtime import Runtime
from microseg.segments.state import ERASED_PREFIX, erasure_key
from microseg.segments.testing import load_rules_text

from tests.engine.worker.test_runtime import PARTITIONS, RULES, T0, Clock, Feed, assign_all, run

SECRET = "audit-test-erasure-secret-0123"
CUSTOMER = "cust-Zq8-private"


class JournalSink(MemorySink):
    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    async def deliver(self, batch: Any) -> None:
        await super().deliver(batch)
        self.journal.append("deliver")

    async def audit(self, records: list[tuple[bytes, dict[str, Any]]]) -> None:
        await super().audit(records)
        self.journal.append(f"audit {len(records)}")


class JournalStore(MemoryStore):
    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    async def flush(self) -> None:
        self.journal.append("flush")


def runtime(journal: list[str]) -> Runtime:
    settings = Settings(partitions=PARTITIONS, erasure_secret=SECRET)
    return Runtime(settings, JournalStore(journal), JournalSink(journal), load_rules_text(RULES), None, clock=Clock(T0 + 5))


def expected_hmac(customer_id: str) -> str:
    return erasure_key(SECRET.encode(), customer_id).removeprefix(ERASED_PREFIX)


def test_an_erasure_event_is_audited_before_it_is_stored_and_names_nobody() -> None:
    journal: list[str] = []
    rt = runtime(journal)
    feed = Feed()
    bought = feed.records([(CUSTOMER, "purchase", "2026-03-01T09:00:00Z", {"order_id": "o1", "amount": 12})])
    erase = feed.records([
        (CUSTOMER, "erasure_requested", "2026-03-01T10:00:00Z", {}),
        ("nobody-known", "erasure_requested", "2026-03-01T10:00:01Z", {}),
    ])

    async def commit(offsets: Mapping[int, int]) -> None:
        journal.append("commit")

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(bought)
        journal.clear()
        await rt.handle(erase, commit=commit)

    run(go())
    assert journal == ["deliver", "audit 2", "flush", "commit"], "audited with the outputs, before the state is stored"
    sink: MemorySink = rt.sink  # type: ignore[assignment]
    (key, erased), (_, unknown) = sink.audits
    assert CUSTOMER.encode() not in key + orjson.dumps(erased), "no raw id anywhere in the record"
    assert erased["customer_hmac"] == expected_hmac(CUSTOMER) and erased["hmac"] == HMAC_SCHEME
    assert erased["outcome"] == "erased" and erased["via"] == "event" and erased["exits"] == 1
    assert erased["requested_at"] == "2026-03-01T10:00:00.000Z" and erased["audit_id"] == key.decode()
    assert erased["source"]["offset"] == erase[0].offset and erased["rules_version"] == rt.ruleset.version
    assert set(erased) == {
        "audit_id", "format", "at", "requested_at", "via", "request_id", "customer_hmac", "hmac", "outcome", "exits", "source", "rules_version", "worker",
    }
    assert unknown["outcome"] == "unknown" and unknown["customer_hmac"] == expected_hmac("nobody-known")
    assert rt.metrics.registry.get_sample_value("microseg_erasures_total", {"via": "event", "outcome": "erased"}) == 1


def test_a_redelivered_erasure_has_the_same_key() -> None:
    journal: list[str] = []
    first, again = runtime(journal), runtime(journal)
    records = Feed().records([(CUSTOMER, "purchase", "2026-03-01T09:00:00Z", {"order_id": "o1", "amount": 12}), (CUSTOMER, "erasure_requested", "2026-03-01T10:00:00Z", {})])

    async def go(rt: Runtime) -> None:
        await assign_all(rt)
        await rt.handle(records)

    run(go(first))
    run(go(again))  # a second worker, as after a crash before the state was stored
    one: MemorySink = first.sink  # type: ignore[assignment]
    two: MemorySink = again.sink  # type: ignore[assignment]
    assert [k for k, _ in one.audits] == [k for k, _ in two.audits] and len(one.audits) == 1


def test_an_api_request_id_holds_nothing_of_the_customer_and_is_audited_as_api() -> None:
    journal: list[str] = []
    rt = runtime(journal)

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(Feed().records([(CUSTOMER, "purchase", "2026-03-01T09:00:00Z", {"order_id": "o1", "amount": 12})]))
        event_id = await rt.request_erasure(CUSTOMER)
        sink: MemorySink = rt.sink  # type: ignore[assignment]
        (customer_id, event), = sink.events
        assert event_id.startswith(API_REQUEST_PREFIX) and CUSTOMER not in event_id and len(event_id) == len(API_REQUEST_PREFIX) + 32
        records = Feed().records([(CUSTOMER, "erasure_requested", event["ts"], {})])
        records = [records[0]._replace(offset=1, value=orjson.dumps(event))]
        await rt.handle(records)

    run(go())
    sink: MemorySink = rt.sink  # type: ignore[assignment]
    (_, record), = sink.audits
    assert record["via"] == "api" and record["outcome"] == "erased"


def test_requests_the_api_answers_at_once_are_audited_too() -> None:
    journal: list[str] = []
    rt = runtime(journal)
    request_id = run(rt.audit_answered(CUSTOMER, "unknown"))
    sink: MemorySink = rt.sink  # type: ignore[assignment]
    (key, record), = sink.audits
    assert record["request_id"] == request_id and record["via"] == "api" and record["outcome"] == "unknown"
    assert record["source"] is None and record["requested_at"] == record["at"]
    assert CUSTOMER.encode() not in key + orjson.dumps(record)


def test_a_customer_id_inside_an_event_id_is_cut_out() -> None:
    audit = ErasureAudit(SECRET.encode(), input_topic="in", worker="w:1")
    key, record = audit.record(CUSTOMER, f"erase-{CUSTOMER}-2026", "erased", now=T0, rules_version="v1")
    assert record["request_id"] == "erase-{customer}-2026"
    assert CUSTOMER.encode() not in key + orjson.dumps(record)
    assert audit.audit_id("r1", CUSTOMER) != audit.audit_id("r2", CUSTOMER) != audit.audit_id("r1", "other")
    assert ErasureAudit(b"another-secret-0123456789", input_topic="in").customer_hmac(CUSTOMER) != audit.customer_hmac(CUSTOMER)
