"""Segment members, indexed in the DNA store itself: one key per (segment, customer) beside the states.

Who is in a segment is already in every customer's state (``CustomerState.segments``), but
answering "the members of ``rfm_lost``" from states alone means decoding every state of the
partition. So the worker keeps a secondary index in the same store, under keys

    ``\\x00m\\x00<segment>\\x00<customer_id>``  ->  the entry record (the ``entered`` segment change, JSON)

written in the same staged batch as the states that imply them (``PartitionTasks._stage``): they
go to the same changelog partition in the same flush and into RocksDB in the same atomic write, so
the index survives a kill -9 and moves with its partition on failover exactly like the DNA. Keys
starting with ``\\x00`` are not customers (the sweep and the wake index skip them), and RocksDB
keeps keys sorted, so one segment's members are one range scan from the prefix, paged by the last
customer id returned.

An anonymous visitor is indexed under its profile key (U+0001 + anonymous_id, CONTRACT §8) like
every key of its state, but that key is never shown: a member is read in its public form
``{"customer_id": null, "anonymous_id": ...}`` (``public_member``), and the paging position is the
profile key again (``profile_of``).

A partition recovered without the index (state written before it existed) gets it built once from
its states (``rebuild_writes``), marked by ``INDEX_MARK``; such entries carry no entry record's
``change_id`` or ``at`` (they were emitted before the index existed), only ``since: null``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from microseg.schemas.event_models import ANONYMOUS_KEY, profile_key
from microseg.segments.changes import MICRO
from microseg.segments.pipeline import Batch
from microseg.segments.state import CustomerState, StateFormatError, decode

from microseg.engine.state.base import DnaStore

__all__ = ["PREFIX", "INDEX_MARK", "member_key", "segment_prefix", "index_writes", "rebuild_writes", "members_page", "member_entry", "public_profile", "profile_of"]

PREFIX = "\x00m\x00"
INDEX_MARK = "\x00member-index"
"""Present in a partition once its index is complete (value: the index layout's version)."""
_LAYOUT = b"1"


def segment_prefix(segment: str) -> str:
    return f"{PREFIX}{segment}\x00"


def member_key(segment: str, customer_id: str) -> str:
    return f"{PREFIX}{segment}\x00{customer_id}"


def member_entry(record: Mapping[str, Any]) -> bytes:
    """What an index key holds: the entry record, as emitted on ``segment-changes``."""
    return orjson.dumps(record)


def public_profile(key: str) -> dict[str, str | None]:
    """A profile key in its public form: ``{"customer_id": id, "anonymous_id": None}`` for a
    customer, ``{"customer_id": None, "anonymous_id": id}`` for an anonymous visitor."""
    if key[:1] == ANONYMOUS_KEY:
        return {"customer_id": None, "anonymous_id": key[1:]}
    return {"customer_id": key, "anonymous_id": None}


def profile_of(member: Mapping[str, Any]) -> str:
    """The profile key of a member in its public form (the paging position after it)."""
    return profile_key(member.get("customer_id"), member.get("anonymous_id"))


def _segments(state: CustomerState | None) -> tuple[str, ...]:
    if state is None or state.erased:
        return ()
    return tuple(state.segments)


def index_writes(out: Batch, partition: int) -> dict[str, bytes | None]:
    """The index keys to put (entry record) or delete (``None``) for ``partition``'s stepped customers:
    the difference between the memberships they were loaded with and the ones they were stored with."""
    states = out.states.get(partition)
    if not states:
        return {}
    loaded = out.loaded.get(partition, {})
    entries: dict[tuple[str, str], dict[str, Any]] | None = None
    writes: dict[str, bytes | None] = {}
    for customer_id, state in states.items():
        before = _segments(loaded.get(customer_id))
        after = _segments(state)
        if before == after:
            continue
        for segment in before:
            if segment not in after:
                writes[member_key(segment, customer_id)] = None
        for segment in after:
            if segment in before:
                continue
            if entries is None:
                entries = {(profile_key(c["customer_id"], c.get("anonymous_id")), c["segment"]): c for c in out.changes if c["change"] == "entered" and c["segment"] != MICRO}
            record = entries.get((customer_id, segment)) or {**public_profile(customer_id), "segment": segment, "change": "entered", "at": None}
            writes[member_key(segment, customer_id)] = member_entry(record)
    return writes


def rebuild_writes(items: Iterable[tuple[str, bytes]]) -> dict[str, bytes | None]:
    """The whole index of a partition from its stored states (customer id, state bytes), and the mark."""
    writes: dict[str, bytes | None] = {}
    for customer_id, raw in items:
        if customer_id.startswith("\x00"):
            continue
        try:
            state = decode(raw)
        except StateFormatError:
            continue
        for segment in _segments(state):
            record = {**public_profile(customer_id), "segment": segment, "change": "entered", "at": None, "rules_version": state.rules_version.partition("+")[0]}
            writes[member_key(segment, customer_id)] = member_entry(record)
    writes[INDEX_MARK] = _LAYOUT
    return writes


def members_page(store: DnaStore, partition: int, segment: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` members of ``segment`` in ``partition`` whose id sorts after ``after`` (by
    UTF-8 bytes; ``after`` is a profile key, ``profile_of`` of the last member returned), in that
    order, as ``{"customer_id", "anonymous_id", "since", "cause", "rules_version"}`` (``public_profile``);
    and whether more follow."""
    prefix = segment_prefix(segment)
    found = store.scan(partition, prefix, None if after is None else prefix + after, limit + 1)
    members = []
    for key, raw in found[:limit]:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            record = {}
        members.append(
            {
                **public_profile(key[len(prefix):]),
                "since": record.get("at"),
                "cause": record.get("cause"),
                "rules_version": record.get("rules_version"),
            }
        )
    return members, len(found) > limit
