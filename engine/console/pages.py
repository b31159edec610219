"""The web console: read-mostly pages on what a worker has, served by the worker under ``/console``.

``mount_console`` adds an aiohttp sub-application to the worker's web server: Jinja2 templates
(``templates/``, autoescaped), static files (``static/``: the stylesheet, the chart glue and the
vendored uPlot with its licence) and the page handlers below, all behind ``engine.console.access``.
Pages: segments (population now and over time, entries and exits per interval, members, micro-
segment cells), a customer (explain: DNA, segments with each rule's value, held-back decisions;
erase), rules (the version in force and the topic's history, a candidate's problems, diff and sizes;
publish, roll back), messages (decided and held back by reason), ops (throughput, lag, latency, readiness).
Every number is this worker's: the partitions it owns, as ``/segments`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web

from microseg.schemas.event_models import profile_key
from microseg.segments.language.errors import RuleError
from microseg.segments.view import iso

from microseg.engine.console import readings
from microseg.engine.console.access import SESSION_KEY, cookie_flags
from microseg.engine.console.candidates import candidate_dirs, diff, find_candidate, load_candidate, problems_of
from microseg.engine.console.census import cell_histogram
from microseg.engine.console.census import members as census_members
from microseg.engine.console.context import Console
from microseg.engine.console.history import Moves, Snapshot
from microseg.engine.console.prometheus import PrometheusError
from microseg.engine.console.session import COOKIE, LOGIN_COOKIE, LOGIN_S
from microseg.engine.model_in_use import ModelInUse
from microseg.engine.settings import Settings
from microseg.engine.kafka.broker import check_reachable
from microseg.engine.worker.auth import Guard
from microseg.engine.worker.routing import Router
from microseg.engine.worker.rules_preview import local_sizes
from microseg.engine.worker.rules_topic import RulesLog, publish_rules, read_rules_log, rollback_rules
from microseg.errors import MicrosegError

__all__ = ["PREFIX", "mount_console", "console_app"]

log = logging.getLogger(__name__)

PREFIX = "/console"
HERE = Path(__file__).parent
PAGE_SIZES = (25, 100, 500)
CHARTED = 8
"""Segments drawn on the overview chart: the largest now (each segment's page has its own)."""
MOVES_SHOWN = 12
"""Intervals listed under a segment's entries and exits chart, newest first."""

CONSOLE = web.AppKey("console", object)


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE]  # type: ignore[return-value]


def _page(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    console = _console(request)
    session = request[SESSION_KEY]
    base = {
        "prefix": PREFIX,
        "here": request.path,
        "session": session,
        "csrf": console.sessions.csrf(session) if session.nonce else "",
        "rules_version": console.runtime.ruleset.version,
        "partitions": sorted(console.runtime.ready),
        "now": iso(time.time()),
    }
    return aiohttp_jinja2.render_template(template, request, base | context, status=status)


# -- login ----------------------------------------------------------------------------------

async def login_form(request: web.Request) -> web.Response:
    console = _console(request)
    if not console.access.guard.enabled:  # no token configured (loopback only): nothing to log in with
        raise web.HTTPFound(f"{PREFIX}/segments")
    nonce = console.sessions.login_nonce()
    nxt = request.query.get("next", "")
    response = aiohttp_jinja2.render_template(
        "login.html", request,
        {"prefix": PREFIX, "csrf": console.sessions.login_csrf(nonce), "next": nxt if nxt.startswith(PREFIX + "/") else "", "error": request.query.get("error")},
    )
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_S, **cookie_flags(request))
    return response


async def login(request: web.Request) -> web.Response:
    console = _console(request)
    form = await request.post()
    if not console.sessions.login_ok(request.cookies.get(LOGIN_COOKIE), str(form.get("csrf", ""))):
        console.access.refused("csrf")
        raise web.HTTPForbidden(text="the login form expired or did not come from this console: reload it and try again")
    scope, _ = console.access.scope_of(str(form.get("token", "")).strip())
    if scope is None or not console.access.guard.enabled:
        console.access.refused("wrong")
        raise web.HTTPSeeOther(f"{PREFIX}/login?error=1")
    _, cookie = console.sessions.issue(scope)
    nxt = str(form.get("next", ""))
    response = web.Response(status=303, headers={"Location": nxt if nxt.startswith(PREFIX + "/") and "//" not in nxt else f"{PREFIX}/segments"})
    response.set_cookie(COOKIE, cookie, **cookie_flags(request))
    response.del_cookie(LOGIN_COOKIE, path="/console")
    return response


async def logout(request: web.Request) -> web.Response:
    console = _console(request)
    console.access.check_post(request, await request.post(), admin=False)
    response = web.Response(status=303, headers={"Location": f"{PREFIX}/login"})
    response.del_cookie(COOKIE, path="/console")
    return response


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"{PREFIX}/segments")


# -- segments -------------------------------------------------------------------------------

async def _populations(console: Console, now: Snapshot, segment_ids: list[str]) -> tuple[list[float], dict[str, list[Any]], str]:
    """(times, values per segment, where they came from): from Prometheus when one is configured
    and answers (every worker), else from this worker's snapshots and now."""
    settings = console.settings
    problem = ""
    if console.prometheus is not None:
        step = settings.console_snapshot_s
        try:
            found = await console.prometheus.populations(now.t - step * (settings.console_snapshots - 1), now.t, step)
            x = sorted({t for points in found.values() for t, _ in points})
            return x, {s: [dict(found.get(s, [])).get(t) for t in x] for s in segment_ids}, f"Prometheus at {console.prometheus.url} (every worker)"
        except PrometheusError as exc:
            problem = f" ({exc}; showing this worker's snapshots)"
    snapshots = [*console.history.snapshots(), now]
    return [s.t for s in snapshots], {seg: [s.populations.get(seg, 0) for s in snapshots] for seg in segment_ids}, "this worker's snapshots" + problem


async def _moves(console: Console, now: Snapshot, segment_id: str) -> list[Moves]:
    """Entries and exits per interval: from Prometheus when it answers, else from the snapshots."""
    if console.prometheus is not None:
        step = console.settings.console_snapshot_s
        try:
            found = await console.prometheus.moves(segment_id, now.t - step * (console.settings.console_snapshots - 1), now.t, step)
            return [Moves(t, step, round(entries, 1), round(exits, 1)) for t, entries, exits in found]  # type: ignore[arg-type]
        except PrometheusError:
            pass
    return console.history.moves(segment_id, [now])


async def segments(request: web.Request) -> web.Response:
    console = _console(request)
    now = console.now()
    rows = []
    for segment in console.runtime.ruleset.segments:
        moves = console.history.moves(segment.id, [now])
        rows.append({"id": segment.id, "population": now.populations.get(segment.id, 0), "entries": sum(m.entries for m in moves), "exits": sum(m.exits for m in moves)})
    charted = [r["id"] for r in sorted(rows, key=lambda r: -r["population"])[:CHARTED]]
    x, values, source = await _populations(console, now, charted)
    chart = {"kind": "line", "x": x, "series": [{"label": s, "values": values[s]} for s in charted]}
    return _page(
        request, "segments.html",
        {"rows": rows, "chart": chart, "charted": len(charted), "source": source, "snapshots": len(console.history.snapshots()), "interval": console.settings.console_snapshot_s},
    )


async def segment(request: web.Request) -> web.Response:
    console = _console(request)
    segment_id = request.match_info["segment"]
    found = next((s for s in console.runtime.ruleset.segments if s.id == segment_id), None)
    if found is None:
        return _page(request, "error.html", {"title": "No such segment", "message": f"segment {segment_id!r} is not in rules {console.runtime.ruleset.version}"}, status=404)
    limit = int(request.query.get("limit", PAGE_SIZES[0])) if request.query.get("limit", "").isdigit() else PAGE_SIZES[0]
    limit = min(max(limit, 1), PAGE_SIZES[-1])
    cursor = request.query.get("cursor") or None
    now = console.now()
    x, values, source = await _populations(console, now, [segment_id])
    moves = await _moves(console, now, segment_id)
    try:
        members, after = await census_members(console.runtime, segment_id, cursor, limit)
    except ValueError:
        raise web.HTTPFound(f"{PREFIX}/segments/{quote(segment_id, safe='')}") from None  # a cursor no worker made: first page
    count = now.populations.get(segment_id, 0)
    scan = await console.census.scan()
    cells = cell_histogram(scan.cells)
    charts = {
        "population": {"kind": "line", "x": x, "series": [{"label": "customers", "values": values[segment_id]}]},
        "moves": {"kind": "bars", "x": [m.t for m in moves], "series": [{"label": "entries", "values": [m.entries for m in moves]}, {"label": "exits", "values": [m.exits for m in moves]}]},
        "cells": {"kind": "bars", "labels": [name for name, _ in cells], "x": list(range(len(cells))), "series": [{"label": "cells", "values": [n for _, n in cells]}]},
    }
    return _page(
        request, "segment.html",
        {
            "segment": found, "population": now.populations.get(segment_id, 0), "moves": moves[-MOVES_SHOWN:][::-1], "interval": console.settings.console_snapshot_s,
            "charts": charts, "source": source,
            "members": members, "after": after, "count": count, "cursor": cursor, "limit": limit, "page_sizes": PAGE_SIZES,
            "cells": cells, "cell_count": len(scan.cells), "top_cells": scan.cells.most_common(10), "customers": scan.customers,
        },
    )


# -- customers ------------------------------------------------------------------------------

async def customer_search(request: web.Request) -> web.Response:
    wanted = request.query.get("id", "").strip()
    if wanted:
        raise web.HTTPFound(f"{PREFIX}/customers/{quote(wanted, safe='')}")
    return _page(request, "customer.html", {"found": None, "customer_id": None})


async def customer(request: web.Request) -> web.Response:
    return await _profile(request, request.match_info["customer"], None)


async def visitor(request: web.Request) -> web.Response:
    """An anonymous visitor's page (CONTRACT §8): explain of its profile, no erase form."""
    return await _profile(request, None, request.match_info["anonymous_id"])


async def _profile(request: web.Request, customer_id: str | None, anonymous_id: str | None) -> web.Response:
    """Explain of a customer or (``anonymous_id``) an anonymous visitor, as of now."""
    console = _console(request)
    shown = customer_id if customer_id is not None else anonymous_id
    kind = "customer" if customer_id is not None else "anonymous visitor"
    path = f"{PREFIX}/{'customers' if customer_id is not None else 'visitors'}/{quote(shown or '', safe='')}"
    context: dict[str, Any] = {"found": None, "customer_id": shown, "visitor": anonymous_id is not None}
    if customer_id is not None and customer_id[:1] < " ":  # a visitor's internal profile key is no customer id
        return _page(request, "customer.html", {**context, "message": f"customer {customer_id!r} is not known: customer ids begin with a printable character"}, status=404)
    found = console.runtime.explain(customer_id if customer_id is not None else profile_key(None, anonymous_id))
    if found is None:
        return _page(request, "customer.html", {**context, "message": f"{kind} {shown!r} is not known on this worker"}, status=404)
    if "error" in found:
        owner = Router(console.runtime).owner(found["partition"]) if isinstance(found.get("partition"), int) else None
        elsewhere = f"{owner.rstrip('/')}{path}" if owner and owner.startswith(("http://", "https://")) else None
        return _page(request, "customer.html", {**context, "message": found["error"], "elsewhere": elsewhere}, status=409)
    dna = sorted((k, v) for k, v in found.get("dna", {}).items())
    return _page(request, "customer.html", {**context, "found": found, "dna": dna, "aliases": found.get("aliases") or [], "done": request.query.get("done")})


async def erase(request: web.Request) -> web.Response:
    console = _console(request)
    customer_id = request.match_info["customer"]
    console.access.check_post(request, await request.post(), admin=True)
    runtime = console.runtime
    status, partition = runtime.erasure_status(customer_id)
    if status in ("not_owned", "recovering"):
        return _page(request, "error.html", {"title": "Not erased", "message": f"partition {partition} is {'being recovered' if status == 'recovering' else 'not owned by this worker'}; try again, or erase on its owner"}, status=409)
    if status == "known":
        request_id = await runtime.request_erasure(customer_id)
        outcome = "accepted"
    else:
        outcome = "unknown" if status == "unknown" else "already_erased"
        request_id = await runtime.audit_answered(customer_id, outcome)
    log.info("console erasure request %s: %s", request_id, outcome)
    return _page(request, "error.html", {"title": "Erasure requested" if outcome == "accepted" else "Nothing to erase", "message": f"outcome {outcome}; audit request id {request_id}"}, status=202 if outcome == "accepted" else 200)


# -- rules ----------------------------------------------------------------------------------

def _rules_log(settings: Settings, bootstrap: str) -> RulesLog:
    """The rules topic's versions and pointer moves (``rules history``); ``BrokerError`` within seconds when unreachable."""
    check_reachable(bootstrap, settings)
    return read_rules_log(settings, bootstrap, timeout=10.0)


async def rules(request: web.Request) -> web.Response:
    console = _console(request)
    ruleset = console.runtime.ruleset
    loop = asyncio.get_running_loop()
    names = candidate_dirs(console.candidates_root)
    chosen = request.query.get("candidate", "")
    context: dict[str, Any] = {
        "ruleset": ruleset, "seen": console.history.rules_versions(), "candidates": names, "chosen": chosen,
        "candidates_root": console.candidates_root, "problems": None, "changes": None, "sizes": None,
        "model": ModelInUse(console.runtime.model, console.runtime.model_origin).describe(), "log": None,
    }
    try:
        context["log"] = await loop.run_in_executor(None, _rules_log, console.settings, console.bootstrap)
    except MicrosegError as exc:
        context["log_problem"] = f"the rules topic could not be read ({exc}); the versions this worker has run are shown instead"
    directory = find_candidate(console.candidates_root, chosen) if chosen else None
    if chosen and directory is None:
        context["message"] = f"no candidate {chosen!r} under {console.candidates_root}"
    elif directory is not None:
        problems = await loop.run_in_executor(None, problems_of, directory)
        context["problems"] = problems
        if not problems:
            candidate = load_candidate(directory)
            as_of = time.time()
            customers, before, partitions = await local_sizes(console.runtime, ruleset, as_of)
            _, after, _ = await local_sizes(console.runtime, candidate, as_of)
            context |= {
                "candidate": candidate, "changes": diff(ruleset, candidate), "before": before, "sizes": after,
                "customers": customers, "size_partitions": partitions, "as_of": iso(as_of),
            }
    return _page(request, "rules.html", context)


async def publish(request: web.Request) -> web.Response:
    console = _console(request)
    form = await request.post()
    console.access.check_post(request, form, admin=True)
    directory = find_candidate(console.candidates_root, str(form.get("candidate", "")))
    if directory is None:
        return _page(request, "error.html", {"title": "Not published", "message": "no such candidate"}, status=404)
    try:
        version = await asyncio.get_running_loop().run_in_executor(None, publish_rules, console.settings, console.bootstrap, directory)
    except RuleError as exc:
        return _page(request, "error.html", {"title": "Not published", "message": "; ".join(str(p) for p in exc.problems)}, status=422)
    except MicrosegError as exc:
        return _page(request, "error.html", {"title": "Not published", "message": str(exc)}, status=503)
    log.info("console published rules %s from candidate %s", version, directory.name)
    return _page(request, "error.html", {"title": "Published", "message": f"rules {version} published; every worker applies it within seconds"})


async def rollback(request: web.Request) -> web.Response:
    console = _console(request)
    form = await request.post()
    console.access.check_post(request, form, admin=True)
    wanted = str(form.get("version", ""))
    try:
        version, replaced = await asyncio.get_running_loop().run_in_executor(None, rollback_rules, console.settings, console.bootstrap, wanted)
    except RuleError as exc:
        return _page(request, "error.html", {"title": "Not rolled back", "message": "; ".join(str(p) for p in exc.problems)}, status=422)
    except MicrosegError as exc:
        return _page(request, "error.html", {"title": "Not rolled back", "message": str(exc)}, status=503)
    log.info("console rolled rules back to %s (was %s)", version, replaced)
    return _page(request, "error.html", {"title": "Rolled back", "message": f"rules {version} in force again (was {replaced}); every worker applies it within seconds"})


# -- messages and ops -----------------------------------------------------------------------

async def messages(request: web.Request) -> web.Response:
    console = _console(request)
    metrics = console.runtime.metrics
    decided = readings.by_labels(metrics.messages, "message", "channel")
    held = readings.by_labels(metrics.suppressed, "message", "reason")
    names = list(dict.fromkeys([m.id for m in console.runtime.ruleset.messages] + sorted({m for m, _ in decided} | {m for m, _ in held})))
    reasons = sorted({r for _, r in held})
    rows = [
        {
            "message": name, "decided": int(sum(n for (m, _), n in decided.items() if m == name)),
            "channels": {c: int(n) for (m, c), n in sorted(decided.items()) if m == name},
            "held": {r: int(held.get((name, r), 0)) for r in reasons},
        }
        for name in names
    ]
    return _page(request, "messages.html", {"rows": rows, "reasons": reasons})


async def ops(request: web.Request) -> web.Response:
    console = _console(request)
    runtime = console.runtime
    metrics = runtime.metrics
    recent = [*console.recent.snapshots(), console.now()]
    rates = [(b.t, max(b.events - a.events, 0) / (b.t - a.t)) for a, b in zip(recent, recent[1:]) if b.t > a.t]
    last_minute = [r for t, r in rates if t >= recent[-1].t - 60]
    ok, readiness = runtime.readiness()
    latencies = [
        (name, readings.quantiles(histogram))
        for name, histogram in (
            ("core time per event", metrics.processing_seconds), ("batch wall time", metrics.batch_seconds),
            ("produce to output", metrics.produce_to_output_seconds), ("event time to output", metrics.event_time_lag_seconds),
        )
    ]
    context = {
        "ready": ok, "readiness": readiness, "events": recent[-1].events, "batches": runtime.batches,
        "rate": sum(last_minute) / len(last_minute) if last_minute else None, "uptime": time.time() - runtime.started,
        "lag": sorted(readings.gauge_by_label(metrics.consumer_lag, "partition").items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0),
        "latencies": latencies, "rejected": sorted(readings.by_labels(metrics.rejected, "reason").items()),
        "refused": sorted(readings.by_labels(metrics.api_refused, "reason").items()),
        "model": ModelInUse(runtime.model, runtime.model_origin).describe(),
        "chart": {"kind": "line", "x": [t for t, _ in rates], "series": [{"label": "events/s", "values": [round(r, 2) for _, r in rates]}]},
    }
    return _page(request, "ops.html", context)


# -- the sub-application --------------------------------------------------------------------

def _seconds(s: float | None) -> str:
    """A duration for people: ms under a second, then s, h, days."""
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.1f} ms"
    if s < 3600:
        return f"{s:.2f} s"
    return f"{s / 3600:.1f} h" if s < 86_400 else f"{s / 86_400:,.1f} days"


def _filters(env: jinja2.Environment) -> None:
    env.filters["q"] = lambda text: quote(str(text), safe="")
    env.filters["iso"] = lambda t: iso(float(t)) if t else "-"
    env.filters["seconds"] = _seconds
    env.filters["value"] = lambda v: "no value" if v is None else str(v).lower() if isinstance(v, bool) else v
    env.filters["number"] = lambda n: "-" if n is None else f"{n:,.0f}" if float(n).is_integer() else f"{n:,.2f}"


def console_app(settings: Settings, runtime: Any, bootstrap: str, guard: Guard) -> web.Application:
    """The console as an aiohttp application (mounted under ``PREFIX``)."""
    console = Console(settings, runtime, bootstrap, guard, PREFIX)
    app = web.Application(middlewares=[console.access.middleware])
    app[CONSOLE] = console
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=jinja2.select_autoescape(default=True))
    _filters(env)
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/segments", segments)
    app.router.add_get("/segments/{segment}", segment)
    app.router.add_get("/customers", customer_search)
    app.router.add_get("/customers/{customer}", customer)
    app.router.add_post("/customers/{customer}/erase", erase)
    app.router.add_get("/visitors/{anonymous_id}", visitor)
    app.router.add_get("/rules", rules)
    app.router.add_post("/rules/publish", publish)
    app.router.add_post("/rules/rollback", rollback)
    app.router.add_get("/messages", messages)
    app.router.add_get("/ops", ops)
    app.router.add_static("/static/", str(HERE / "static"))
    app.on_startup.append(console.start)
    app.on_cleanup.append(console.stop)
    return app


def mount_console(web_app: web.Application, settings: Settings, runtime: Any, bootstrap: str, guard: Guard) -> None:
    """Serve the console under ``/console`` on the worker's aiohttp application."""
    web_app.add_subapp(PREFIX, console_app(settings, runtime, bootstrap, guard))
