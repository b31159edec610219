"""Who may call the endpoints that serve or erase personal data: the bearer-token guard.

One guard for every HTTP surface of microseg (the worker's ``/customers/{id}`` and segment
members, and the web console when it comes): it knows nothing of Faust or aiohttp, only of an
``Authorization`` header value and the query string's names and values, so any server can ask it.

- Two tokens (``engine.settings``): ``MICROSEG_API_TOKEN`` may do everything, erasure included
  (scope ``ADMIN``); ``MICROSEG_READ_TOKEN`` may only read (scope ``READ``: explain, segment
  members, console pages). A read token on an ``ADMIN`` endpoint is ``403``.
- Accepted only as ``Authorization: Bearer <token>`` (RFC 6750 §2.1). A token in the URL (RFC 6750
  §2.3, ``?access_token=``) ends up in proxy, browser and shell histories, so a request that carries
  one, or a configured token's value under any name, is refused with ``401`` even when its header is
  right: the client learns at once, and the token should then be rotated.
- Compared in constant time: both sides are hashed (SHA-256) and the digests compared with
  ``hmac.compare_digest``, so neither the token's value nor its length leaks through timing; both
  tokens are always compared, so the timing does not say which one was close.
- Refusals say nothing about the resource: the body depends only on why the request was refused
  (never on the customer id, or on whether that customer exists), with ``WWW-Authenticate: Bearer``.
- Without any token the guard lets everything through: the worker allows that only on a loopback
  bind (``is_loopback``) and says so once at start.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from pydantic import SecretStr

from microseg.errors import ConfigError

__all__ = ["Scope", "Refusal", "Guard", "is_loopback", "check_bind", "QUERY_TOKEN_NAMES"]


class Scope(enum.Enum):
    """What an endpoint needs: ``READ`` (personal data served) or ``ADMIN`` (state changed: erasure)."""

    READ = "read"
    ADMIN = "admin"


QUERY_TOKEN_NAMES = frozenset({"token", "access_token", "api_token", "read_token", "bearer", "auth", "authorization", "api_key", "apikey"})
"""Query parameters refused as a token in the URL whatever their value (compared lower-case)."""

_REALM = 'Bearer realm="microseg"'


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: ``status`` 401 or 403, the JSON ``body`` and the ``headers`` to
    send, and ``reason`` (``missing``, ``wrong``, ``in_query`` or ``forbidden``) for metrics."""

    status: int
    reason: str
    message: str

    @property
    def body(self) -> bytes:
        return orjson.dumps({"error": self.message})

    @property
    def headers(self) -> dict[str, str]:
        if self.status == 401:
            error = "" if self.reason == "missing" else ', error="invalid_request"' if self.reason == "in_query" else ', error="invalid_token"'
            return {"WWW-Authenticate": _REALM + error}
        return {"WWW-Authenticate": _REALM + ', error="insufficient_scope"'}


MISSING = Refusal(401, "missing", "this endpoint needs a bearer token: send the header 'Authorization: Bearer <token>'")
WRONG = Refusal(401, "wrong", "the bearer token is not valid")
IN_QUERY = Refusal(401, "in_query", "tokens are accepted only in the Authorization header, never in the URL; rotate a token that was sent in one")
FORBIDDEN = Refusal(403, "forbidden", "this token may read but not change or erase customers (that needs MICROSEG_API_TOKEN)")


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class Guard:
    """The bearer-token check. ``api_token`` grants every scope, ``read_token`` only ``READ``.
    With neither, ``enabled`` is false and every request passes (loopback only, see ``check_bind``)."""

    def __init__(self, api_token: SecretStr | None, read_token: SecretStr | None) -> None:
        self._api = _digest(api_token.get_secret_value().encode()) if api_token is not None else None
        self._read = _digest(read_token.get_secret_value().encode()) if read_token is not None else None
        self._configured = tuple(d for d in (self._api, self._read) if d is not None)

    def __repr__(self) -> str:
        return f"Guard(api_token={'set' if self._api else 'unset'}, read_token={'set' if self._read else 'unset'})"

    @property
    def enabled(self) -> bool:
        return self._api is not None or self._read is not None

    def check(self, authorization: str | None, query: Iterable[tuple[str, str]], scope: Scope) -> Refusal | None:
        """None when a request with this ``Authorization`` header value and these query
        parameters (name, value) may use an endpoint of ``scope``; else why not."""
        if not self.enabled:
            return None
        if self._token_in_query(query):
            return IN_QUERY
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return MISSING
        given = _digest(credentials.strip().encode("utf-8", errors="surrogateescape"))
        is_api = self._api is not None and hmac.compare_digest(given, self._api)  # both compared,
        is_read = self._read is not None and hmac.compare_digest(given, self._read)  # whatever the first gave
        if is_api:
            return None
        if is_read:
            return None if scope is Scope.READ else FORBIDDEN
        return WRONG

    def _token_in_query(self, query: Iterable[tuple[str, str]]) -> bool:
        found = False
        for name, value in query:
            if name.strip().lower() in QUERY_TOKEN_NAMES:
                found = True
            given = _digest(value.strip().encode("utf-8", errors="surrogateescape"))
            for expected in self._configured:  # a configured token under any other name
                if hmac.compare_digest(given, expected):
                    found = True
        return found


def is_loopback(host: str) -> bool:
    """True when a web server bound to ``host`` is reachable only from this machine: a loopback IP
    (``127.0.0.0/8``, ``::1``, or one mapped into IPv6) or the name ``localhost`` (RFC 6761 keeps it
    on loopback). Anything else is not: ``0.0.0.0`` and ``::`` (every interface), a LAN address,
    the empty host (every interface) and any other host name (it names some interface)."""
    text = host.strip().lower().removeprefix("[").removesuffix("]")
    if text.rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_bind(web_host: str, web_port: int, guard: Guard) -> str | None:
    """Refuse (``ConfigError``, one line) a web server that would serve personal data unguarded
    beyond this machine; the warning to log once when it is unguarded on loopback; else None."""
    if web_port <= 0 or guard.enabled:
        return None
    if not is_loopback(web_host):
        raise ConfigError(
            f"MICROSEG_WEB_HOST={web_host or '(empty)'} is not a loopback address, so /customers would serve and erase "
            f"customers for anyone who reaches port {web_port}: set MICROSEG_API_TOKEN (e.g. openssl rand -hex 32; "
            f"MICROSEG_READ_TOKEN for read-only clients), or bind to 127.0.0.1"
        )
    return (
        f"no MICROSEG_API_TOKEN or MICROSEG_READ_TOKEN: the customer endpoints on {web_host}:{web_port} are unguarded "
        f"(anyone on this machine can read and erase customers); set MICROSEG_API_TOKEN before binding elsewhere"
    )
