"""The web console's session: a signed cookie after a token login, and the CSRF tokens bound to it.

The console never keeps the bearer token. Logging in (``POST /console/login`` with the token in a
form field) asks the worker's guard (``engine.worker.auth.Guard``) which scope the token has, then
sets a cookie holding only that scope, an expiry and a random nonce, signed with HMAC-SHA256:

    value = base64url(json {"s": scope, "exp": epoch seconds, "n": nonce}) "." base64url(HMAC(key, payload))

- The key is derived from the configured tokens (HMAC-SHA256 over their SHA-256 digests), so a
  session is valid on every worker with the same tokens and survives a restart, and rotating a
  token (docs/security.md) ends every session at once. Without any token (loopback only) the key is
  random per process.
- The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends
  it), ``Path=/console`` and ``Secure`` when the request came over TLS.
- CSRF (OWASP's synchronizer token, bound to the session): every POST form carries
  ``base64url(HMAC(key, "csrf:" + nonce))``; a POST without it, or with another session's, is
  refused with 403. The login form itself has one bound to a short-lived pre-login cookie
  (login CSRF: another site cannot log a browser into the attacker's session).
- Every comparison is ``hmac.compare_digest``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass

import orjson
from pydantic import SecretStr

__all__ = ["COOKIE", "LOGIN_COOKIE", "SESSION_S", "LOGIN_S", "Session", "Sessions"]

COOKIE = "microseg_console"
"""The session cookie's name."""
LOGIN_COOKIE = "microseg_console_login"
"""The pre-login cookie's name (its nonce binds the login form's CSRF token)."""
SESSION_S = 8 * 3600
"""How long a session lasts, in seconds (a working day); then the console asks for the token again."""
LOGIN_S = 15 * 60
"""How long a login form stays valid, in seconds."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """A logged-in browser: ``scope`` ``read`` or ``admin``, ``expires`` (epoch seconds), ``nonce``."""

    scope: str
    expires: float
    nonce: str

    @property
    def admin(self) -> bool:
        return self.scope == "admin"


class Sessions:
    """Signs and checks session cookies and CSRF tokens with a key derived from the tokens."""

    def __init__(self, api_token: SecretStr | None, read_token: SecretStr | None, *, clock: object = time.time) -> None:
        material = b"".join(
            hashlib.sha256(t.get_secret_value().encode()).digest() if t is not None else b"\x00" * 32 for t in (api_token, read_token)
        )
        if api_token is None and read_token is None:
            material = os.urandom(32)
        self._key = hmac.new(b"microseg console session v1", material, hashlib.sha256).digest()
        self._clock = clock

    def __repr__(self) -> str:
        return "Sessions(<key>)"

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def _sign(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def issue(self, scope: str) -> tuple[Session, str]:
        """A new session of ``scope`` and its cookie value."""
        session = Session(scope, self._now() + SESSION_S, _b64(os.urandom(18)))
        payload = _b64(orjson.dumps({"s": session.scope, "exp": int(session.expires), "n": session.nonce}))
        return session, f"{payload}.{_b64(self._sign(payload.encode()))}"

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie value holds; None when absent, tampered with, malformed or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        try:
            given = _unb64(signature)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(given, self._sign(payload.encode())):
            return None
        try:
            data = orjson.loads(_unb64(payload))
            session = Session(str(data["s"]), float(data["exp"]), str(data["n"]))
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
            return None
        if session.scope not in ("read", "admin") or session.expires <= self._now():
            return None
        return session

    def csrf(self, session: Session) -> str:
        """The CSRF token of every form of this session."""
        return _b64(self._sign(b"csrf:" + session.nonce.encode()))

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        """True when ``token`` is this session's CSRF token (constant-time)."""
        if session is None or not token:
            return False
        return hmac.compare_digest(token.encode("utf-8", errors="surrogateescape"), self.csrf(session).encode())

    # -- the login form --------------------------------------------------------------------

    def login_nonce(self) -> str:
        """A pre-login cookie value: a random nonce with its expiry, signed."""
        payload = f"{_b64(os.urandom(18))}:{int(self._now() + LOGIN_S)}"
        return f"{payload}.{_b64(self._sign(b'login-cookie:' + payload.encode()))}"

    def login_csrf(self, login_cookie: str) -> str:
        """The login form's CSRF token, bound to the pre-login cookie."""
        return _b64(self._sign(b"login:" + login_cookie.encode()))

    def login_ok(self, login_cookie: str | None, token: str | None) -> bool:
        """The pre-login cookie is ours and not expired, and the form's token matches it."""
        if not login_cookie or not token or login_cookie.count(".") != 1:
            return False
        payload, signature = login_cookie.split(".")
        try:
            given = _unb64(signature)
            expires = float(payload.rpartition(":")[2])
        except (ValueError, TypeError):
            return False
        if not hmac.compare_digest(given, self._sign(b"login-cookie:" + payload.encode())) or expires <= self._now():
            return False
        return hmac.compare_digest(token.encode("utf-8", errors="surrogateescape"), self.login_csrf(login_cookie).encode())
