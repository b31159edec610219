"""The console's guard without a broker: the worker's runtime on the memory store, the console's
aiohttp application on a test server. Login, the session cookie's flags, refusals (401, redirect,
403 without or with a wrong CSRF token, 403 for a read session's actions) and the tokens never
echoed. The same pages on a live worker, in a real browser: ``test_browser.py``."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.partitioner import DefaultPartitioner
from pydantic import SecretStr

from microseg.engine.console.pages import console_app
from microseg.engine.console.session import COOKIE, LOGIN_COOKIE, Sessions
from microseg.engine.settings import Settings
from microseg.engine.state import MemoryStore
from microseg.engine.worker.auth import Guard
from microseg.engine.worker.delivery import MemorySink
from microseg.engine.worker.runtime import Runtime
from microseg.segments.pipeline import Record
from microseg.segments.testing import event_bytes, load_rules_text, parse_ts

API = "api-7e3f-the-console-admin-token"
READ = "read-91c4-the-console-reader-token"
PARTITIONS = 2
RULES = """
version: 1
segments:
  - id: buyer
    when: purchases_total >= 1
  - id: big_spender
    when: spend_total >= 100
"""


def _runtime(tmp_path: Path, **tokens: Any) -> Runtime:
    settings = Settings(partitions=PARTITIONS, data_dir=tmp_path, console_snapshot_s=3600, **tokens)
    return Runtime(settings, MemoryStore(), MemorySink(), load_rules_text(RULES), None, clock=lambda: parse_ts("2026-03-02T00:00:00Z"))


async def _fed(rt: Runtime) -> None:
    await rt.on_assigned(range(PARTITIONS))
    await rt.prepare(range(PARTITIONS))
    partitioner = DefaultPartitioner()
    offsets: dict[int, int] = {}
    records = []
    for i, amount in enumerate([30, 150, 20]):
        customer = f"c{i}"
        partition = partitioner(customer.encode(), list(range(PARTITIONS)), [])
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        records.append(Record(partition, offset, customer.encode(), event_bytes(customer, "purchase", "2026-03-01T10:00:00Z", order_id=f"o{i}", amount=amount)))
    await rt.handle(records)


def _with_client(tmp_path: Path, test: Callable[[TestClient, Runtime], Awaitable[None]], **tokens: Any) -> None:
    async def go() -> None:
        rt = _runtime(tmp_path, **tokens)
        await _fed(rt)
        settings = rt.settings
        app = console_app(settings, rt, "127.0.0.1:1", Guard(settings.api_token, settings.read_token))
        root = __import__("aiohttp").web.Application()
        root.add_subapp("/console", app)
        async with TestClient(TestServer(root)) as client:
            await test(client, rt)

    asyncio.run(go())


GUARDED = {"api_token": SecretStr(API), "read_token": SecretStr(READ)}
PAGES = ["/console/segments", "/console/segments/buyer", "/console/customers/c1", "/console/rules", "/console/messages", "/console/ops"]


async def _login(client: TestClient, token: str) -> Any:
    form = await client.get("/console/login")
    assert form.status == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', await form.text())[1]  # type: ignore[index]
    return await client.post("/console/login", data={"csrf": csrf, "token": token, "next": ""}, allow_redirects=False)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html)[1]  # type: ignore[index]


def test_every_page_redirects_to_the_login_without_a_session_and_refuses_other_methods(tmp_path: Path) -> None:
    async def test(client: TestClient, rt: Runtime) -> None:
        for page in PAGES:
            answer = await client.get(page, allow_redirects=False)
            assert answer.status == 302 and answer.headers["Location"].startswith("/console/login?next=")
        answer = await client.post("/console/customers/c1/erase", data={"csrf": "x"}, allow_redirects=False)
        assert answer.status == 401
        assert rt.erasure_status("c1")[0] == "known"

    _with_client(tmp_path, test, **GUARDED)


def test_a_wrong_token_is_refused_at_login_and_in_the_header(tmp_path: Path) -> None:
    async def test(client: TestClient, rt: Runtime) -> None:
        answer = await _login(client, "not-the-token-at-all-123")
        assert answer.status == 303 and answer.headers["Location"] == "/console/login?error=1"
        assert COOKIE not in answer.cookies
        assert (await client.get("/console/segments", allow_redirects=False)).status == 302
        wrong = await client.get("/console/segments", headers={"Authorization": "Bearer not-the-token-at-all-123"}, allow_redirects=False)
        assert wrong.status == 401 and "not-the-token" not in await wrong.text()
        good = await client.get("/console/segments", headers={"Authorization": f"Bearer {READ}"})
        assert good.status == 200 and READ not in await good.text()

    _with_client(tmp_path, test, **GUARDED)


def test_a_token_in_the_url_is_refused_even_with_a_session(tmp_path: Path) -> None:
    async def test(client: TestClient, rt: Runtime) -> None:
        assert (await _login(client, READ)).status == 303
        answer = await client.get(f"/console/segments?token={READ}", allow_redirects=False)
        assert answer.status == 401
        assert READ not in await answer.text()
        assert (await client.get(f"/console/segments?q={API}", allow_redirects=False)).status == 401

    _with_client(tmp_path, test, **GUARDED)


def test_the_session_cookie_is_httponly_samesite_strict_and_holds_no_token(tmp_path: Path) -> None:
    async def test(client: TestClient, rt: Runtime) -> None:
        answer = await _login(client, READ)
        assert answer.status == 303 and answer.headers["Location"] == "/console/segments"
        header = next(v for v in answer.headers.getall("Set-Cookie") if v.startswith(COOKIE + "="))
        flags = [part.strip().lower() for part in header.split(";")]
        assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
        value = header.split(";")[0].split("=", 1)[1]
        assert READ not in value and API not in value
        for page in PAGES:
            page_answer = await client.get(page)
            assert page_answer.status == 200, page
            assert page_answer.headers["Content-Security-Policy"].startswith("default-src 'none'")
            assert page_answer.headers["X-Frame-Options"] == "DENY"
        assert "secure" not in flags  # plain HTTP: a Secure cookie would never come back
        behind_tls = await client.get("/console/login", headers={"X-Forwarded-Proto": "https"})
        assert "secure" in [p.strip().lower() for p in behind_tls.headers["Set-Cookie"].split(";")]
        login_form = await client.get("/console/login")
        pre = next(v for v in login_form.headers.getall("Set-Cookie") if v.startswith(LOGIN_COOKIE + "="))
        assert "httponly" in pre.lower() and "samesite=strict" in pre.lower()

    _with_client(tmp_path, test, **GUARDED)


def test_a_tampered_or_foreign_cookie_is_no_session(tmp_path: Path) -> None:
    async def test(client: TestClient, rt: Runtime) -> None:
        other = Sessions(SecretStr("some-other-api-token-000"), None)
        _, foreign = other.issue("admin")
        client.session.cookie_jar.update_cookies({COOKIE: foreign})
        assert (await client.get("/console/segments", allow_redirects=False)).status == 302
        await _login(client, READ)
        mine = next(c for c in client.session.cookie_jar if c.key == COOKIE).value
        payload, signature = mine.split(".")
        forged = payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB") + "." + signature
        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies({COOKIE: forged})
        assert (await client.get("/console/segments", allow_redirects=False)).status == 302

    _with_client(tmp_path, test, **GUARDED)


def test_posts_need_the_sessions_csrf_token_and_actions_the_api_token(tmp_path: Path) -> None:
    async def test(client: TestClient, rt: Runtime) -> None:
        assert (await _login(client, READ)).status == 303
        page = await client.get("/console/customers/c1")
        read_csrf = _csrf(await page.text()) if 'name="csrf"' in await page.text() else None
        assert "erase-form" not in await page.text()  # a read session is not offered the action
        assert (await client.post("/console/customers/c1/erase", data={})).status == 403
        assert (await client.post("/console/customers/c1/erase", data={"csrf": "wrong"})).status == 403
        assert read_csrf and (await client.post("/console/customers/c1/erase", data={"csrf": read_csrf})).status == 403
        assert (await client.post("/console/rules/publish", data={"csrf": read_csrf, "candidate": "x"})).status == 403
        assert (await client.post("/console/rules/rollback", data={"csrf": read_csrf, "version": "x"})).status == 403
        assert (await client.post("/console/rules/rollback", data={"version": "x"})).status == 403
        assert rt.erasure_status("c1")[0] == "known"
        client.session.cookie_jar.clear()
        assert (await _login(client, API)).status == 303
        page = await client.get("/console/customers/c1")
        assert "erase-form" in await page.text()
        admin_csrf = _csrf(await page.text())
        assert (await client.post("/console/customers/c1/erase", data={"csrf": read_csrf})).status == 403  # another session's
        assert (await client.post("/console/customers/c1/erase", data={})).status == 403
        answer = await client.post("/console/customers/c1/erase", data={"csrf": admin_csrf})
        assert answer.status == 202
        assert [(c, e["type"]) for c, e in rt.sink.events] == [("c1", "erasure_requested")]  # type: ignore[attr-defined]
        refused = {s.labels["reason"]: s.value for f in rt.metrics.api_refused.collect() for s in f.samples if s.name.endswith("_total")}
        assert refused.get("csrf", 0) >= 4 and refused.get("forbidden", 0) >= 1

    _with_client(tmp_path, test, **GUARDED)


def test_the_login_form_needs_its_own_csrf_token(tmp_path: Path) -> None:
    async def test(client: TestClient, rt: Runtime) -> None:
        answer = await client.post("/console/login", data={"token": API}, allow_redirects=False)
        assert answer.status == 403 and COOKIE not in answer.cookies

    _with_client(tmp_path, test, **GUARDED)


def test_the_pages_show_the_workers_data(tmp_path: Path) -> None:
    async def test(client: TestClient, rt: Runtime) -> None:
        await _login(client, READ)
        segments = await (await client.get("/console/segments")).text()
        assert re.search(r"big_spender</a></td><td class=\"num\">1<", segments) and re.search(r"buyer</a></td><td class=\"num\">3<", segments)
        seen: list[str] = []
        page = "/console/segments/buyer?limit=2"
        for _ in range(5):  # the member index, paged with the API's opaque cursors
            html = await (await client.get(page)).text()
            listed = re.findall(r'/console/customers/(c\d)"', html)
            assert len(listed) <= 2
            seen += listed
            found = re.search(r'id="next-page" href="([^"]+)"', html)
            if found is None:
                break
            page = "/console/segments/buyer" + found[1].replace("&amp;", "&")
        assert sorted(seen) == ["c0", "c1", "c2"] and len(seen) == 3
        assert (await client.get("/console/segments/buyer?cursor=not-a-cursor", allow_redirects=False)).status == 302
        customer = await (await client.get("/console/customers/c1")).text()
        assert "spend_total &gt;= 100" in customer and 'class="in"' in customer
        assert (await client.get("/console/customers/nobody")).status == 404

    _with_client(tmp_path, test, **GUARDED)


def test_without_any_token_on_loopback_the_console_is_open_and_posts_still_need_csrf(tmp_path: Path) -> None:
    async def test(client: TestClient, rt: Runtime) -> None:
        assert (await client.get("/console/login", allow_redirects=False)).headers["Location"] == "/console/segments"
        page = await client.get("/console/customers/c1")
        assert page.status == 200 and "erase-form" in await page.text()
        assert (await client.post("/console/customers/c1/erase", data={})).status == 403
        assert (await client.post("/console/customers/c1/erase", data={"csrf": _csrf(await page.text())})).status == 202

    _with_client(tmp_path, test)


def test_a_customer_owned_by_another_worker_links_to_its_console(tmp_path: Path) -> None:
    class Routes:
        def owner(self, topic: str, partition: int) -> str:
            return f"http://worker-{partition}.internal:6066"

    async def test(client: TestClient, rt: Runtime) -> None:
        await _login(client, READ)
        customer = next(f"x{i}" for i in range(100) if rt.partition_of(f"x{i}") == 1)
        rt.ready.discard(1)  # partition 1 now belongs to another worker
        rt.routes = Routes()  # type: ignore[attr-defined]
        answer = await client.get(f"/console/customers/{customer}")
        html = await answer.text()
        assert answer.status == 409 and "partition 1 is not owned by this worker" in html
        assert f'href="http://worker-1.internal:6066/console/customers/{customer}"' in html

    _with_client(tmp_path, test, **GUARDED)


def test_no_token_reaches_the_consoles_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def test(client: TestClient, rt: Runtime) -> None:
        await _login(client, "a-wrong-token-for-the-log-test")
        await _login(client, API)
        await client.get(f"/console/segments?token={READ}")
        await client.get("/console/segments", headers={"Authorization": f"Bearer {READ}"})
        page = await client.get("/console/customers/c2")
        await client.post("/console/customers/c2/erase", data={"csrf": _csrf(await page.text())})
        await client.post("/console/rules/publish", data={"csrf": _csrf(await page.text()), "candidate": "none"})

    with caplog.at_level(logging.DEBUG):
        _with_client(tmp_path, test, **GUARDED)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("microseg"))
    assert "console erasure request" in ours  # the console does log what it did
    # everything but the test server's own access log (the worker's server has none: Faust runs aiohttp with access_log=None)
    logged = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records if r.name != "aiohttp.access")
    assert API not in logged and READ not in logged and not re.search(r"\bc2\b", ours), [line for line in logged.splitlines() if API in line or READ in line]


def test_an_anonymous_visitor_is_linked_by_its_anonymous_id_and_explained(tmp_path: Path) -> None:
    """A visitor among a segment's members links to /console/visitors/{anonymous_id}, which explains
    it (no erase form); its internal profile key is never in a page or a link (CONTRACT §8)."""
    import orjson

    async def test(client: TestClient, rt: Runtime) -> None:
        visitor = "anon-v1"
        partition = DefaultPartitioner()(visitor.encode(), list(range(PARTITIONS)), [])
        event = {"event_id": "v-buy", "anonymous_id": visitor, "type": "purchase", "ts": "2026-03-01T11:00:00Z", "props": {"order_id": "ov", "amount": 5}}
        await rt.handle([Record(partition, 100, visitor.encode(), orjson.dumps(event))])
        await _login(client, API)
        html = await (await client.get("/console/segments/buyer?limit=50")).text()
        assert f'href="/console/visitors/{visitor}"' in html and "%01" not in html and "\x01" not in html
        page = await client.get(f"/console/visitors/{visitor}")
        text = await page.text()
        assert page.status == 200 and "Anonymous visitor" in text and 'class="in"' in text and 'id="erase-form"' not in text
        assert (await client.get("/console/customers/%01anon-v1")).status == 404
        assert (await client.get("/console/visitors/nobody")).status == 404

    _with_client(tmp_path, test, **GUARDED)
