"""The worker group's assignor: balanced, sticky, co-partitioned, and the routing table it hands out."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from microseg.engine.kafka.assignor import CopartitionedAssignor, deal


def test_deal_is_balanced_and_covers_every_partition_once() -> None:
    for n, m in itertools.product(range(1, 13), range(1, 6)):
        members = {f"m{i}": [] for i in range(m)}
        dealt = deal(n, members)
        sizes = sorted(len(v) for v in dealt.values())
        assert sizes[-1] - sizes[0] <= 1
        assert sorted(p for parts in dealt.values() for p in parts) == list(range(n))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 16), st.lists(st.lists(st.integers(0, 20), max_size=8), min_size=1, max_size=5))
def test_deal_keeps_what_members_own_while_balanced(n: int, owned: list[list[int]]) -> None:
    members = {f"m{i}": parts for i, parts in enumerate(owned)}
    dealt = deal(n, members)
    sizes = sorted(len(v) for v in dealt.values())
    assert sizes[-1] - sizes[0] <= 1
    assert sorted(p for parts in dealt.values() for p in parts) == list(range(n))
    assert deal(n, members) == dealt  # deterministic


def test_a_worker_joining_takes_only_what_it_must() -> None:
    before = deal(8, {"a": [], "b": []})
    after = deal(8, {"a": before["a"], "b": before["b"], "c": []})
    moved = sum(1 for m in ("a", "b") for p in before[m] if p not in after[m])
    assert moved == 2  # 8 partitions over 3: c gets 2 or 3, a and b give up only those
    assert set(after["a"]) <= set(before["a"]) and set(after["b"]) <= set(before["b"])


class _Cluster:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def partitions_for_topic(self, topic: str) -> Any:
        return set(range(self.counts[topic])) if topic in self.counts else None


def _members(topics: list[str], urls: dict[str, str]) -> dict[str, ConsumerProtocolMemberMetadata]:
    return {member: CopartitionedAssignor(url).metadata(topics) for member, url in urls.items()}


def test_same_partition_counts_are_co_partitioned_and_every_member_gets_the_url_table() -> None:
    urls = {"member-1": "http://w1:6066", "member-2": "http://w2:6066", "member-3": "http://w3:6066"}
    leader = CopartitionedAssignor("http://w1:6066")
    cluster = _Cluster({"events": 8, "identity-repartition": 8, "other": 3})
    out = leader.assign(cluster, _members(["events", "identity-repartition", "other"], urls))
    for member, assignment in out.items():
        parts = dict(assignment.assignment)
        assert parts["events"] == parts["identity-repartition"]  # partition p of both: one member
    table = orjson.loads(out["member-1"].user_data)["urls"]
    assert {a.user_data for a in out.values()} == {out["member-1"].user_data}
    for member, assignment in out.items():
        for p in dict(assignment.assignment)["events"]:
            assert table["events"][p] == urls[member]
    follower = CopartitionedAssignor("http://w2:6066")
    follower.on_assignment(out["member-2"])
    assert follower.owned == {p for _, parts in out["member-2"].assignment for p in parts}
    assert follower.owner("events", 0) == table["events"][0]
    assert follower.owner("events", 99) is None and follower.owner("unknown", 0) is None


def test_the_metadata_carries_the_url_and_the_partitions_owned() -> None:
    assignor = CopartitionedAssignor("http://w9:1")
    assignor.owned = {3, 1}
    meta = assignor.metadata({"events"})
    assert orjson.loads(meta.user_data) == {"v": 1, "url": "http://w9:1", "owned": [1, 3]}
    assert meta.subscription == ["events"]


@pytest.mark.broker
def test_the_embedded_broker_passes_assignor_user_data_both_ways(broker: str) -> None:
    """Tansu 0.6.0: the leader sees every member's URL (JoinGroup metadata), and every member
    receives the leader's table (SyncGroup assignment user data) with its own partitions."""
    import asyncio
    import time

    from aiokafka import AIOKafkaConsumer
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic, group = f"assignor-{time.time_ns()}", f"assignor-group-{time.time_ns()}"
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic(topic, 6, 1)])
    admin.close()

    async def go() -> list[CopartitionedAssignor]:
        assignors = [CopartitionedAssignor("http://w1:1"), CopartitionedAssignor("http://w2:2")]
        consumers = []
        for assignor in assignors:
            consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group, partition_assignment_strategy=(assignor,), heartbeat_interval_ms=300)
            consumer.subscribe([topic])
            await consumer.start()
            consumers.append(consumer)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.gather(*(c.getmany(timeout_ms=200) for c in consumers))
                tables = [a.urls.get(topic, []) for a in assignors]
                if all(set(t) == {"http://w1:1", "http://w2:2"} for t in tables) and tables[0] == tables[1]:
                    if all(a.owned == {tp.partition for tp in c.assignment()} for a, c in zip(assignors, consumers)):
                        break
        finally:
            for consumer in consumers:
                await consumer.stop()
        return assignors

    first, second = asyncio.run(go())
    assert first.urls[topic] == second.urls[topic] and len(first.urls[topic]) == 6
    assert {p for p, url in enumerate(first.urls[topic]) if url == "http://w1:1"} == first.owned
    assert {p for p, url in enumerate(first.urls[topic]) if url == "http://w2:2"} == second.owned
    assert len(first.owned) == len(second.owned) == 3
