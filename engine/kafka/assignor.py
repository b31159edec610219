"""The worker group's partition assignor: co-partitioned, sticky, and a routing table of worker URLs.

Kafka Streams' idea (``application.server``), on the classic consumer protocol that aiokafka speaks:

- **Member metadata** (JoinGroup): each worker sends its subscription with user data
  ``{"v": 1, "url": <its web URL>, "owned": [partition numbers it holds now]}``.
- **Assignment** (the group leader, in ``assign``): partition *numbers* are dealt out, not topic
  partitions. For every partition count ``n`` among the subscribed topics, the numbers ``0..n-1``
  go to the members by the same deterministic rule, so partition ``p`` of every topic with ``n``
  partitions lands on the same member (co-partitioning: the input topic, and any repartition topic
  read next to the DNA changelog, go together). The rule: members sorted by member id; each keeps
  the numbers it reported as owned up to its quota (``n // m``, one more for the first ``n % m``
  members in order of how many they keep, then by id), the numbers left go in ascending order to
  the members under quota. Sticky: a joining or leaving worker moves only the partitions it must.
- **Assignment user data** (SyncGroup, the same bytes for every member):
  ``{"v": 1, "generation": <leader's count>, "urls": {topic: [url of partition 0, 1, ...]}}`` —
  every worker learns which worker serves every partition, and routes requests for a customer
  (or a partition's segment members) it does not own to that URL (``engine.worker.routing``).

Checked against Tansu 0.6.0 (the embedded broker): it passes both user-data blobs through
unchanged (docs/architecture.md, "Request routing"); Apache Kafka does by protocol.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

__all__ = ["CopartitionedAssignor", "deal", "ASSIGNOR_NAME"]

log = logging.getLogger(__name__)

ASSIGNOR_NAME = "microseg-copartitioned"
_VERSION = 1


def deal(n: int, members: Mapping[str, Iterable[int]]) -> dict[str, list[int]]:
    """Partition numbers ``0..n-1`` dealt to ``members`` (member id -> numbers it owns now).

    Deterministic in its inputs, balanced (sizes differ by at most one) and sticky (a member keeps
    what it owns while under quota). The same ``n`` and members give the same deal for every topic.
    """
    ids = sorted(members)
    if not ids:
        return {}
    base, extra = divmod(n, len(ids))
    claimed: set[int] = set()
    keep: dict[str, list[int]] = {}
    for member in ids:
        mine = sorted({p for p in members[member] if 0 <= p < n} - claimed)
        keep[member] = mine
        claimed.update(mine)
    # who gets the extra one: those keeping most, then by id (stable, and the fewest moves)
    order = sorted(ids, key=lambda m: (-len(keep[m]), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(order)}
    result: dict[str, list[int]] = {}
    for member in ids:
        result[member] = keep[member][: quota[member]]
    taken = {p for parts in result.values() for p in parts}
    free = iter(p for p in range(n) if p not in taken)
    for member in ids:
        while len(result[member]) < quota[member]:
            result[member].append(next(free))
        result[member].sort()
    return result


class CopartitionedAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """One per worker process (it carries the worker's URL); pass it as
    ``partition_assignment_strategy=(assignor,)`` to the input consumer.

    ``urls[topic][p]`` is the URL of the worker that owns partition ``p`` of ``topic`` in the
    current generation (empty before the first assignment); ``owned`` what this worker holds.
    """

    name = ASSIGNOR_NAME
    version = 0

    def __init__(self, url: str) -> None:
        self.url = url
        self.owned: set[int] = set()
        self.urls: dict[str, list[str]] = {}
        self.generation = 0

    # aiokafka calls these on the object it was given; the base class declares them as classmethods
    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:  # type: ignore[override]
        user_data = orjson.dumps({"v": _VERSION, "url": self.url, "owned": sorted(self.owned)})
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user_data)

    def assign(  # type: ignore[override]
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        urls: dict[str, str] = {}
        owned: dict[str, list[int]] = {}
        for member, meta in members.items():
            info = _user_data(meta.user_data)
            urls[member] = str(info.get("url") or "")
            owned[member] = [int(p) for p in info.get("owned") or [] if isinstance(p, int)]
        topics = sorted({t for meta in members.values() for t in meta.subscription})
        counts: dict[str, int] = {}
        for topic in topics:
            partitions = cluster.partitions_for_topic(topic)
            if partitions is None:
                log.warning("no partition metadata for topic %s; it is not assigned this round", topic)
                continue
            counts[topic] = len(partitions)
        deals = {n: deal(n, owned) for n in set(counts.values())}
        assignment: dict[str, dict[str, list[int]]] = collections.defaultdict(dict)
        table: dict[str, list[str]] = {}
        for topic, n in counts.items():
            subscribed = {m for m, meta in members.items() if topic in meta.subscription}
            by_member = deals[n] if subscribed == set(members) else deal(n, {m: owned[m] for m in subscribed})
            owners = [""] * n
            for member, parts in by_member.items():
                assignment[member][topic] = parts
                for p in parts:
                    owners[p] = urls[member]
            table[topic] = owners
        self.generation += 1
        user_data = orjson.dumps({"v": _VERSION, "generation": self.generation, "urls": table})
        return {
            member: ConsumerProtocolMemberAssignment(self.version, sorted(assignment[member].items()), user_data)
            for member in members
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:  # type: ignore[override]
        info = _user_data(assignment.user_data)
        urls = info.get("urls")
        self.urls = {str(t): [str(u) for u in owners] for t, owners in urls.items()} if isinstance(urls, dict) else {}
        self.owned = {p for _, parts in assignment.assignment for p in parts}
        log.info("assignment: this worker (%s) owns partitions %s; routing table for %s", self.url, sorted(self.owned), sorted(self.urls))

    def owner(self, topic: str, partition: int) -> str | None:
        """The URL of the worker that owns ``partition`` of ``topic``, or None when not known."""
        owners = self.urls.get(topic)
        if owners is None or not 0 <= partition < len(owners):
            return None
        return owners[partition] or None


def _user_data(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
