"""Requests answered on any worker: routed to the worker that owns the partition they need.

Each worker owns some input partitions, and with them the customers' states and their segment
membership index (``engine.worker.member_index``). The partition assignor
(``engine.kafka.assignor``) gives every worker the same table of which worker URL owns which
partition, so:

- ``GET``/``DELETE /customers/{id}`` on a worker that does not own the customer's partition is
  forwarded, method, path and ``Authorization`` header unchanged, to the owner, and the owner's
  answer is returned as is. A forwarded request carries ``X-Microseg-Routed: 1`` and is never
  forwarded again (an owner that lost the partition meanwhile answers 409, as before routing).
- ``GET /segments/{id}/members`` walks the partitions in order: the local ones from the store, the
  others by asking their owner for one partition's page (``?partition=P&after=ID&limit=N``). The
  cursor is opaque (``P:last profile key``, base64url: an anonymous visitor's is U+0001 +
  anonymous_id), so a client pages through every worker's
  members from any one of them.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from microseg.errors import MicrosegError

from microseg.engine.worker.member_index import members_page, profile_of

__all__ = ["ROUTED_HEADER", "Router", "RoutingError", "encode_cursor", "decode_cursor", "MAX_LIMIT", "DEFAULT_LIMIT"]

log = logging.getLogger(__name__)

ROUTED_HEADER = "X-Microseg-Routed"
DEFAULT_LIMIT = 1_000
MAX_LIMIT = 10_000
_TIMEOUT_S = 10.0
_SLOW_TIMEOUT_S = 600.0


class RoutingError(MicrosegError):
    """A partition's owner is unknown, recovering or did not answer: ``status`` is the HTTP answer (503)."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.status = status


def _slow() -> object:
    """A longer timeout for requests that evaluate every customer (``rules_preview``)."""
    import aiohttp

    return aiohttp.ClientTimeout(total=_SLOW_TIMEOUT_S)


def encode_cursor(partition: int, after: str | None) -> str:
    text = f"{partition}:{after if after is not None else ''}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str | None]:
    """``(partition, last customer id or None)``; raises ``ValueError`` on a cursor no worker made."""
    padded = cursor + "=" * (-len(cursor) % 4)
    text = base64.urlsafe_b64decode(padded.encode()).decode()
    partition, sep, after = text.partition(":")
    if not sep or not partition.isdigit():
        raise ValueError("not a members cursor")
    return int(partition), after or None


@dataclass(frozen=True)
class Forwarded:
    """The owner's answer to a forwarded request."""

    status: int
    body: bytes
    content_type: str


class Router:
    """Forwards requests to partition owners (one aiohttp session per worker, made on first use)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self._session: Any = None

    def owner(self, partition: int) -> str | None:
        """The URL of the worker that owns ``partition`` of the input topic (None: unknown yet)."""
        routes = getattr(self.runtime, "routes", None)
        if routes is None:
            return None
        return routes.owner(self.runtime.settings.input_topic, partition)

    def is_self(self, url: str | None) -> bool:
        return url is not None and url.rstrip("/") == self.runtime.settings.web_url()

    async def _client(self) -> Any:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_TIMEOUT_S))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(self, method: str, partition: int, path_qs: str, authorization: str | None) -> Forwarded:
        """``method path_qs`` on the owner of ``partition``; ``RoutingError`` when there is none to ask."""
        url = self.owner(partition)
        if url is None:
            raise RoutingError(f"partition {partition} is not owned by this worker, and its owner is not known yet (a rebalance?); try again", 409)
        if self.is_self(url):
            raise RoutingError(f"partition {partition} is being recovered by this worker; try again", 503)
        headers = {ROUTED_HEADER: "1"}
        if authorization:
            headers["Authorization"] = authorization
        session = await self._client()
        try:
            async with session.request(method, f"{url}{path_qs}", headers=headers) as response:
                body = await response.read()
                return Forwarded(response.status, body, response.headers.get("Content-Type", "application/json").split(";")[0])
        except Exception as exc:  # noqa: BLE001 - any transport failure is the same answer: the owner did not answer
            raise RoutingError(f"the worker owning partition {partition} ({url}) did not answer ({exc.__class__.__name__}: {exc}); try again") from exc

    def peers(self) -> list[str]:
        """Every other worker URL in the routing table (each owns some partitions), sorted."""
        routes = getattr(self.runtime, "routes", None)
        owners = routes.urls.get(self.runtime.settings.input_topic, []) if routes is not None else []
        return sorted({u.rstrip("/") for u in owners if u and not self.is_self(u)})

    async def post(self, url: str, path: str, body: bytes, authorization: str | None) -> Forwarded:
        """``POST path`` with a JSON ``body`` to the worker at ``url``, marked as routed."""
        headers = {ROUTED_HEADER: "1", "Content-Type": "application/json"}
        if authorization:
            headers["Authorization"] = authorization
        session = await self._client()
        try:
            async with session.post(f"{url}{path}", data=body, headers=headers, timeout=_slow()) as response:
                return Forwarded(response.status, await response.read(), response.headers.get("Content-Type", "application/json").split(";")[0])
        except Exception as exc:  # noqa: BLE001 - any transport failure is the same answer
            raise RoutingError(f"the worker at {url} did not answer ({exc.__class__.__name__}: {exc}); try again") from exc

    # -- segment members ----------------------------------------------------------------

    def local_page(self, partition: int, segment: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """One partition's page from this worker's store; ``RoutingError`` when it is not ready here."""
        runtime = self.runtime
        if partition not in runtime.ready:
            status = 503 if partition in runtime.assigned else 409
            raise RoutingError(f"partition {partition} is {'being recovered' if status == 503 else 'not owned by this worker'}", status)
        return members_page(runtime.store, partition, segment, after, limit)

    async def members(self, segment: str, cursor: str | None, limit: int, authorization: str | None) -> dict[str, Any]:
        """One page of ``segment``'s members over every partition, from this worker and its peers."""
        partitions = self.runtime.settings.partitions
        partition, after = decode_cursor(cursor) if cursor else (0, None)
        found: list[dict[str, Any]] = []
        while partition < partitions and len(found) < limit:
            want = limit - len(found)
            if partition in self.runtime.ready:
                page, more = self.local_page(partition, segment, after, want)
            else:
                query = urlencode({"partition": partition, "limit": want, **({"after": after} if after is not None else {})})
                answer = await self.forward("GET", partition, f"/segments/{quote(segment, safe='')}/members?{query}", authorization)
                if answer.status != 200:
                    raise RoutingError(f"the owner of partition {partition} answered {answer.status}: {answer.body[:200].decode(errors='replace')}", 503 if answer.status >= 500 or answer.status == 409 else answer.status)
                body = orjson.loads(answer.body)
                page, more = body["members"], bool(body["more"])
            found += page
            if more:
                after = profile_of(page[-1]) if page else after
                if len(found) >= limit:
                    break
            else:
                partition, after = partition + 1, None
        next_cursor = encode_cursor(partition, after) if partition < partitions else None
        return {"segment": segment, "rules_version": self.runtime.ruleset.version, "members": found, "next_cursor": next_cursor}
