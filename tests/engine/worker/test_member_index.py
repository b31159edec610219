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
