"""The erasure audit trail: one record per erasure request, with no personal data in it.

Every ``erasure_requested`` event the pipeline applies (``segments.pipeline.Batch.erasures``:
sent to the input topic by a producer, or by ``DELETE /customers/{id}``) and every ``DELETE``
the worker answers without queueing anything (an unknown or already erased id) becomes one record
on ``MICROSEG_ERASURE_AUDIT_TOPIC`` (``customer-erasures-audit``: one partition, cleanup
``delete`` with no time or size limit, an append-only log; docs/security.md):

.. code-block:: json

    {"audit_id": "9f…", "format": 1, "at": "2026-03-01T10:00:02Z", "requested_at": "2026-03-01T10:00:00Z",
     "via": "api", "request_id": "erasure-api-4c1d…", "customer_hmac": "b1…",
     "hmac": "hmac-sha256-128:MICROSEG_ERASURE_SECRET", "outcome": "erased", "exits": 3,
     "source": {"topic": "customer-events", "partition": 2, "offset": 1041},
     "rules_version": "4be1c2d0a9f3", "worker": "host-a:4121"}

- ``customer_hmac`` is the erased mark's key without its prefix (``segments.state.erasure_key``:
  HMAC-SHA256 of the id under ``MICROSEG_ERASURE_SECRET``, 128 bits): whoever holds an id and the
  secret finds both its audit records and its mark in the changelog with one computation; the
  record alone does not give the id back. The same secret as the marks, not one of its own: the
  audit tells nothing the marks do not (that this hash was erased, and when), both must stay the
  same for ever, and one secret is one less to lose.
- ``outcome``: ``erased`` (data held was deleted), ``already_erased`` (nothing left to delete),
  ``unknown`` (nothing was held; an event still leaves a mark so later events stay out, a
  ``DELETE`` queues nothing). ``via``: ``api`` when the request id is one ``DELETE`` made
  (``API_REQUEST_PREFIX``), else ``event``.
- ``request_id`` is the event id, with the customer id cut out should a producer have put it in
  (``{customer}`` instead), so nothing in the record is the id.
- At least once: records are produced before the batch's state is stored, so a crash in between
  produces the record again. ``audit_id`` (the record key) is an HMAC of the request id and the
  customer id: a repeat has the same key, and the first record of a key is the one that counts
  (a repeat after the mark was stored says ``already_erased``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

from microseg.segments.pipeline import Erasure
from microseg.segments.state import ERASED_PREFIX, erasure_key
from microseg.segments.view import iso

from microseg.engine.settings import Settings

__all__ = ["ErasureAudit", "API_REQUEST_PREFIX", "AUDIT_FORMAT", "HMAC_SCHEME", "new_api_request_id", "worker_id"]

AUDIT_FORMAT = 1
"""The ``format`` of the records written; a reader refuses a newer one."""

API_REQUEST_PREFIX = "erasure-api-"
"""Event ids of erasures requested through ``DELETE /customers/{id}``: the prefix and 32 hex digits."""

HMAC_SCHEME = "hmac-sha256-128:MICROSEG_ERASURE_SECRET"
"""How ``customer_hmac`` is computed: the first 128 bits of HMAC-SHA256(secret, id as UTF-8), hex."""

AuditRecord = tuple[bytes, dict[str, Any]]
"""(key, value) of one audit record."""


def new_api_request_id() -> str:
    """A fresh event id for an erasure requested through the API (random: no customer data in it)."""
    return API_REQUEST_PREFIX + uuid.uuid4().hex


def worker_id() -> str:
    """This process as the audit names it: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ErasureAudit:
    """Builds audit records with the deployment's erasure secret (``Settings.erasure_key_bytes``)."""

    def __init__(self, secret: bytes, *, input_topic: str, worker: str | None = None) -> None:
        self._secret = secret
        self.input_topic = input_topic
        self.worker = worker or worker_id()

    def __repr__(self) -> str:
        return f"ErasureAudit(worker={self.worker!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> ErasureAudit:
        return cls(settings.erasure_key_bytes(), input_topic=settings.input_topic)

    def customer_hmac(self, customer_id: str) -> str:
        """The id's keyed hash, as in the record and in the erased mark's key (without its prefix)."""
        return erasure_key(self._secret, customer_id).removeprefix(ERASED_PREFIX)

    def audit_id(self, request_id: str, customer_id: str) -> str:
        """The record key: the same request for the same customer always gets the same one."""
        message = b"erasure-audit\x00" + request_id.encode() + b"\x00" + customer_id.encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:16].hex()

    def record(
        self,
        customer_id: str,
        request_id: str,
        outcome: str,
        *,
        now: float,
        rules_version: str,
        requested_t: float | None = None,
        exits: int = 0,
        partition: int | None = None,
        offset: int | None = None,
    ) -> AuditRecord:
        """One audit record (key, value) for ``customer_id``; ``now`` and ``requested_t`` in epoch seconds."""
        key = self.audit_id(request_id, customer_id)
        value: dict[str, Any] = {
            "audit_id": key,
            "format": AUDIT_FORMAT,
            "at": iso(now),
            "requested_at": iso(requested_t) if requested_t is not None else None,
            "via": "api" if request_id.startswith(API_REQUEST_PREFIX) else "event",
            "request_id": request_id.replace(customer_id, "{customer}") if customer_id else request_id,
            "customer_hmac": self.customer_hmac(customer_id),
            "hmac": HMAC_SCHEME,
            "outcome": outcome,
            "exits": exits,
            "source": {"topic": self.input_topic, "partition": partition, "offset": offset} if partition is not None else None,
            "rules_version": rules_version,
            "worker": self.worker,
        }
        return key.encode(), value

    def of_batch(self, erasures: Sequence[Erasure], changes: Sequence[dict[str, Any]], *, now: float, rules_version: str) -> list[AuditRecord]:
        """The records of the erasures a batch applied; ``changes`` (the batch's) give each one's exits."""
        wanted = {(e.customer_id, e.event_id) for e in erasures}
        exits: dict[tuple[str, str], int] = {}
        for change in changes:
            pair = (change["customer_id"], change["cause"])
            if pair in wanted and change["change"] == "exited" and change["segment"] != "micro":
                exits[pair] = exits.get(pair, 0) + 1
        return [
            self.record(
                e.customer_id, e.event_id, e.outcome, now=now, rules_version=rules_version, requested_t=e.t,
                exits=exits.get((e.customer_id, e.event_id), 0), partition=e.partition, offset=e.offset,
            )
            for e in erasures
        ]
