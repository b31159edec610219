"""Segment members from the worker's store: the index kept with the states, pages over partitions,
and the memberships topic's records rebuilding the same members (memory store, no broker)."""

from __future__ import annotations

from typing import Any

from microseg.engine.worker.delivery import membership_records
from microseg.engine.worker.member_index import INDEX_MARK, PREFIX
from microseg.engine.worker.routing import Router, decode_cursor
from microseg.engine.worker.runtime import Runtime

from tests.engine.worker.test_runtime import DAY, PARTITIONS, T0, Clock, Feed, assign_all, run, runtime


def _all_members(rt: Runtime, segment: str, limit: int) -> list[str]:
    router = Router(rt)
    found: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = run(router.members(segment, cursor, limit, None))
        assert len(page["members"]) <= limit
        found += [m["customer_id"] for m in page["members"]]
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            return found
        assert pages < 1000


def _rebuilt(changes: list[dict[str, Any]]) -> dict[str, set[str]]:
    """What a consumer of the compacted topic sees: the last value per key, tombstones deleting."""
    last: dict[bytes, Any] = {}
    for key, value in membership_records(changes):
        last[key] = value
    members: dict[str, set[str]] = {}
    for key, value in last.items():
        if value is not None:
            customer, _, segment = key.decode().rpartition("|")
            members.setdefault(segment, set()).add(customer)
    return members


def test_members_are_paged_over_every_partition_and_equal_the_memberships_topic() -> None:
    clock = Clock(T0)
    rt = runtime(clock=clock)
    buyers = [f"cust-{i:02d}" for i in range(23)]
    feed = Feed()
    events = [(c, "purchase", "2026-03-01T10:00:00Z", {"order_id": f"o-{c}", "amount": 12}) for c in buyers]
    events += [(f"browser-{i}", "session_started", "2026-03-01T10:00:00Z", {}) for i in range(5)]

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(feed.records(events))

    run(go())
    for limit in (1, 4, 7, 1000):
        assert sorted(_all_members(rt, "buyer", limit)) == buyers
    got = _all_members(rt, "buyer", 5)
    assert len(got) == len(set(got))  # no one twice across pages
    first = Router(rt).local_page(rt.partition_of(buyers[0]), "buyer", None, 100)[0]
    entry = next(m for m in first if m["customer_id"] == buyers[0])
    assert entry["since"] == "2026-03-01T10:00:00.000Z" and entry["cause"] and entry["rules_version"] == rt.ruleset.version
    assert _all_members(rt, "quiet", 10) == []
    clock.t = T0 + 3 * DAY  # everyone quiet by time
    run(rt.tick())
    assert sorted(_all_members(rt, "quiet", 3)) == sorted(buyers + [f"browser-{i}" for i in range(5)])
    # an erasure takes the customer out of every segment's members
    run(rt.handle(feed.records([(buyers[0], "erasure_requested", "2026-03-04T11:00:00Z", {})])))
    assert buyers[0] not in _all_members(rt, "buyer", 10)
    assert buyers[0] not in _all_members(rt, "quiet", 10)
    changes = rt.sink.changes  # type: ignore[attr-defined]
    rebuilt = _rebuilt(changes)
    assert rebuilt["buyer"] == set(_all_members(rt, "buyer", 50))
    assert rebuilt["quiet"] == set(_all_members(rt, "quiet", 50))


def test_a_partition_stored_without_the_index_gets_it_built_on_recovery() -> None:
    rt = runtime()
    events = [(f"c{i}", "purchase", "2026-03-01T10:00:00Z", {"order_id": f"o{i}", "amount": 5}) for i in range(12)]

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(Feed().records(events))

    run(go())
    store = rt.store
    for partition in range(PARTITIONS):  # as written by a release before the index
        store.put_many(partition, {k: None for k, _ in store.items(partition) if k.startswith(PREFIX) or k == INDEX_MARK})
        rt.ready.discard(partition)
    assert _members_local(rt) == []
    run(rt.prepare(range(PARTITIONS)))
    assert sorted(m for m in _all_members(rt, "buyer", 5)) == sorted(f"c{i}" for i in range(12))


def _members_local(rt: Runtime) -> list[str]:
    return [k for p in range(PARTITIONS) for k, _ in rt.store.items(p) if k.startswith(PREFIX)]


def test_cursors_are_opaque_but_checked() -> None:
    import pytest

    rt = runtime()
    run(assign_all(rt))
    with pytest.raises(ValueError):
        decode_cursor("bm90LWEtY3Vyc29y")
    page = run(Router(rt).members("buyer", None, 10, None))
    assert page == {"segment": "buyer", "rules_version": rt.ruleset.version, "members": [], "next_cursor": None}


def _visitor(feed: Feed, anonymous_id: str, event_id: str, kind: str, ts: str, **props: Any) -> Any:
    """An anonymous visitor's input record, keyed and partitioned by its anonymous_id (CONTRACT §8)."""
    import orjson

    from microseg.segments.pipeline import Record

    from tests.engine.worker.test_runtime import partition_of

    partition = partition_of(anonymous_id)
    offset = feed.offsets.get(partition, 0)
    feed.offsets[partition] = offset + 1
    value = orjson.dumps({"event_id": event_id, "anonymous_id": anonymous_id, "type": kind, "ts": ts, "props": props})
    return Record(partition, offset, anonymous_id.encode(), value)


def test_anonymous_visitors_are_members_in_their_public_form_and_are_explained() -> None:
    """A visitor is read as ``customer_id: null`` + ``anonymous_id`` wherever members are read, with
    its entry record's since/cause; a customer and a visitor with the same id are two members; the
    memberships topic keys are printable and distinct; explain answers for the visitor."""
    import orjson

    from microseg.engine.worker.delivery import membership_key
    from microseg.schemas.event_models import profile_key

    rt = runtime()
    feed = Feed()
    records = feed.records([("x", "purchase", "2026-03-01T10:00:00Z", {"order_id": "o-x", "amount": 12})])
    records += [_visitor(feed, a, f"buy-{a}", "purchase", "2026-03-01T11:00:00Z", order_id=f"o-{a}", amount=7) for a in ("x", "anon-a", "anon-b")]

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(records)

    run(go())
    router = Router(rt)
    for limit in (1, 2, 1000):
        cursor, seen = None, []
        while True:
            page = run(router.members("buyer", cursor, limit, None))
            assert b"\\u0001" not in orjson.dumps(page) and b"\x01" not in orjson.dumps(page)
            seen += page["members"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted((m["customer_id"] or "", m["anonymous_id"] or "") for m in seen) == [("", "anon-a"), ("", "anon-b"), ("", "x"), ("x", "")]
    visitor = next(m for m in seen if m["anonymous_id"] == "anon-a")
    assert visitor["since"] == "2026-03-01T11:00:00.000Z" and visitor["cause"] == "buy-anon-a" and visitor["rules_version"] == rt.ruleset.version

    keys = {membership_key(c) for c in rt.sink.changes if c["segment"] == "buyer"}  # type: ignore[attr-defined]
    assert keys == {"x|buyer", "x|anonymous:buyer", "anon-a|anonymous:buyer", "anon-b|anonymous:buyer"}
    assert all(k.isprintable() for k in keys)

    explained = rt.explain(profile_key(None, "anon-a"))
    assert explained is not None and explained["customer_id"] is None and explained["anonymous_id"] == "anon-a"
    assert explained["segments"] == ["buyer"] and explained["dna"]["purchases_total"] == 1 and explained["aliases"] == []
    customer = rt.explain("x")
    assert customer is not None and customer["customer_id"] == "x" and customer["anonymous_id"] is None
    assert rt.explain(profile_key(None, "never-seen")) is None
