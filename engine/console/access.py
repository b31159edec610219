"""Who may see the console's pages and use its actions: the worker's token guard, a session cookie
after login, CSRF tokens on every POST, and the security headers of every console response.

A request to a console page is let through when
- it carries ``Authorization: Bearer <token>`` that the guard (``engine.worker.auth.Guard``)
  accepts (scripts, ``curl``), or
- it carries a valid session cookie (``engine.console.session``), or
- no token is configured at all (loopback only, as for ``/customers``): a session of scope
  ``admin`` is then issued without a login, so forms still carry CSRF tokens.

Otherwise a page ``GET`` is redirected (302) to the login page and anything else gets 401. A
token in the URL is refused with 401 whatever else the request carries, as the guard does for the
API. Every refusal is counted in ``microseg_api_refused_total{reason}``. A POST needs the
session's CSRF token in its ``csrf`` form field (403 without it, or with a wrong one) and is never
authorised by the ``Authorization`` header alone: a browser session is what a forged form would
ride on, so that is what the token binds. State-changing actions need the ``admin`` scope (the API
token): 403 for a read session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from microseg.engine.console.session import COOKIE, Session, Sessions
from microseg.engine.worker.auth import Guard, Scope

__all__ = ["SECURITY_HEADERS", "Access", "PUBLIC", "SESSION_KEY"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Sent with every console response: only the console's own scripts and styles run (no inline
script, so an injected ``<script>`` does nothing), no framing, no referrer, nothing cached."""

PUBLIC = ("/login", "/static/")
"""Console paths served without a session (relative to the console's prefix)."""
SESSION_KEY = getattr(web, "RequestKey", web.AppKey)("console_session", Session)


def cookie_flags(request: web.Request) -> dict[str, Any]:
    """The session cookie's attributes: HttpOnly, SameSite=Strict, Path=/console, and Secure when the
    browser came over TLS: to the worker, or to a TLS-terminating proxy that says so with
    ``X-Forwarded-Proto: https`` (trusting the header can only make the cookie stricter)."""
    secure = request.secure or request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https"
    return {"httponly": True, "samesite": "Strict", "path": "/console", "secure": secure}


class Access:
    """The console's middleware (``middleware``) and its checks, on one guard and one key."""

    def __init__(self, guard: Guard, sessions: Sessions, prefix: str, refused: Callable[[str], None]) -> None:
        self.guard = guard
        self.sessions = sessions
        self.prefix = prefix
        self.refused = refused
        """Called with the refusal's reason (counted by the worker)."""

    def scope_of(self, token: str, query: Any = ()) -> tuple[str | None, Any]:
        """(``admin``/``read``, None) for a token the guard accepts, else (None, the refusal)."""
        header = f"Bearer {token}"
        refusal = self.guard.check(header, query, Scope.ADMIN)
        if refusal is None:
            return "admin", None
        if refusal.reason == "forbidden":
            return "read", None
        return None, refusal

    def _refuse(self, request: web.Request, status: int, reason: str, text: str) -> web.Response:
        self.refused(reason)
        if request.method == "GET" and status == 401 and reason == "missing":
            target = request.path_qs
            raise web.HTTPFound(f"{self.prefix}/login?next={quote(target, safe='')}")
        return web.Response(status=status, text=text, headers={"WWW-Authenticate": 'Bearer realm="microseg"'} if status == 401 else None)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _guarded(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        relative = request.path.removeprefix(self.prefix)
        header = request.headers.get("Authorization")
        if self.guard.enabled:
            refusal = self.guard.check(header, request.query.items(), Scope.READ)
            if refusal is not None and refusal.reason == "in_query":
                return self._refuse(request, 401, "in_query", refusal.message)
        if relative.startswith(PUBLIC):
            return await handler(request)
        session = self.sessions.read(request.cookies.get(COOKIE))
        fresh: str | None = None
        if session is None and not self.guard.enabled:
            session, fresh = self.sessions.issue("admin")
        if request.method != "GET" and request.method != "HEAD":
            if session is None:
                return self._refuse(request, 401, "missing", "log in to the console first")
        elif session is None:
            if header is None:
                return self._refuse(request, 401, "missing", "log in to the console first")
            scope, refusal = self.scope_of(header.strip().partition(" ")[2].strip(), request.query.items())
            if scope is None or not header.strip().lower().startswith("bearer "):
                return self._refuse(request, 401, refusal.reason if refusal else "missing", refusal.message if refusal else "send 'Authorization: Bearer <token>'")
            session = Session(scope, 0.0, "")  # this request only: no cookie, no forms that post
        request[SESSION_KEY] = session
        response = await handler(request)
        if fresh is not None:
            response.set_cookie(COOKIE, fresh, **cookie_flags(request))
        return response

    def check_post(self, request: web.Request, form: Any, *, admin: bool) -> None:
        """Raise 403 unless the form carries the session's CSRF token (and, with ``admin``, the
        session may change state)."""
        session = request.get(SESSION_KEY)
        if not self.sessions.csrf_ok(session, form.get("csrf")):
            self.refused("csrf")
            raise web.HTTPForbidden(text="this form's CSRF token is missing or wrong: reload the page and try again")
        if admin and not session.admin:
            self.refused("forbidden")
            raise web.HTTPForbidden(text="this session may read but not change anything (log in with MICROSEG_API_TOKEN)")
