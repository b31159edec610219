"""The Faust app: the worker's process shell — lifecycle, the input consumer task, clock ticks,
the rules, models and posteriors watchers and the web endpoints.

Everything here is wiring. The input topic is consumed by ``engine.consumer`` (a batch consumer
in the worker group: see docs/runtime-notes.md for why not a Faust agent) and handed to
``Runtime``; nothing here keeps state of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from microseg.schemas.event_models import profile_key
from microseg.engine.model_in_use import ModelInUse
from microseg.engine.worker.auth import Guard, Scope
from microseg.engine.worker.consumer import consume_forever
from microseg.engine.worker.health import probe_broker_forever
from microseg.engine.worker.progress import ProgressLog
from microseg.engine.worker.member_index import public_profile
from microseg.engine.worker.routing import DEFAULT_LIMIT, MAX_LIMIT, ROUTED_HEADER, Router, RoutingError
from microseg.engine.worker.runtime import Runtime
from microseg.engine.settings import Settings

__all__ = ["build_app"]

log = logging.getLogger(__name__)


def _credentials(settings: Settings) -> Any:
    if settings.security_protocol == "PLAINTEXT":
        return None
    context = settings._ssl_context()
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            ssl_context=context,
            mechanism=settings.sasl_mechanism or "PLAIN",
        )
    return faust.SSLCredentials(context)


class ShellApp(faust.App):
    """Starts the input consumer as the app starts, not after the app's own group join (Faust's
    ``@app.task`` timing), so the two joins overlap and a worker is ready seconds sooner."""

    input_consumer: Any = None
    runtime: Any = None
    broker_probe: Any = None
    embedded_broker: Any = None
    _input_task: asyncio.Task[None] | None = None
    _side_tasks: list[asyncio.Task[None]]

    async def on_first_start(self) -> None:
        await super().on_first_start()
        self._side_tasks = []
        if self.input_consumer is not None:
            self._input_task = asyncio.ensure_future(self._run_input())
        if self.broker_probe is not None:
            self._side_tasks.append(asyncio.ensure_future(self.broker_probe()))
        if self.embedded_broker is not None:
            self._side_tasks.append(asyncio.ensure_future(self._watch_embedded_broker()))

    async def _watch_embedded_broker(self) -> None:
        """The embedded broker lives and dies with this worker: if it dies first, so does the worker,
        at once and with exit code 2, instead of retrying a broker that will never come back. Its
        topics (changelog included) were in its memory, so there is nothing left to flush."""
        broker = self.embedded_broker
        while True:
            await asyncio.sleep(0.5)
            code = broker.exited()
            if code is not None:
                break
        log.error("the embedded broker (pid %s) exited with code %s; its topics are gone, so the worker stops (exit code 2)", broker.pid, code)
        with contextlib.suppress(Exception):
            broker.stop()
        logging.shutdown()
        os._exit(2)

    async def _run_input(self) -> None:
        try:
            await self.input_consumer()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await self.crash(exc)

    async def on_stop(self) -> None:
        for task in getattr(self, "_side_tasks", []):
            task.cancel()
        if self._input_task is not None:
            self._input_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._input_task
        if self.runtime is not None:
            try:
                await asyncio.wait_for(self.runtime.stop(), timeout=10)
            except Exception:  # noqa: BLE001 - shutting down: state is safe in the changelog anyway
                log.warning("the DNA store did not close cleanly; it is rebuilt from the changelog if needed", exc_info=True)
        await super().on_stop()


def build_app(settings: Settings, bootstrap: str, runtime: Runtime, *, embedded_broker: Any = None) -> faust.App:
    """A Faust app bound to ``runtime``; nothing here keeps state of its own.

    The app's own consumer group is private to this process, so that every worker reads the
    whole rules topic (the newest record is the rule set in force).
    """
    app = ShellApp(
        f"{settings.group_id}-shell-{socket.gethostname()}-{os.getpid()}",
        broker=[f"kafka://{server}" for server in bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        datadir=str(Path(settings.data_dir) / "faust"),
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        table_standby_replicas=0,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=max(settings.session_timeout_s * 3, 30.0),
        broker_commit_interval=settings.commit_interval_s,
        broker_max_poll_records=settings.max_batch,
        broker_max_poll_interval=300.0,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=max(settings.max_batch * 2, 4096),
        producer_linger_ms=5,
        web_enabled=settings.web_port > 0,
        web_bind=settings.web_host,
        web_port=settings.web_port or 6066,
        web_host=settings.web_host,
        web_in_thread=False,
        # Faust's own pages off: /table reads table keys, /router and /assignment show the cluster's
        # topology, / and /graph its internals; the worker serves only its own pages (docs/security.md)
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
    )
    app.input_consumer = lambda: consume_forever(settings, bootstrap, runtime)  # type: ignore[attr-defined]
    app.runtime = runtime  # type: ignore[attr-defined]
    app.broker_probe = lambda: probe_broker_forever(runtime.health, bootstrap, plaintext=settings.security_protocol == "PLAINTEXT")  # type: ignore[attr-defined]
    app.embedded_broker = embedded_broker  # type: ignore[attr-defined]

    if settings.ticks:

        @app.timer(interval=settings.tick_interval_s, on_leader=False)
        async def _tick() -> None:
            await runtime.tick()

    @app.timer(interval=5.0, on_leader=False)
    async def _lag() -> None:
        for partition, position in list(runtime.positions.items()):
            try:
                highwater = runtime.highwater(partition)
            except Exception:  # noqa: BLE001 - a partition being handed over has no highwater
                continue
            if highwater is not None:
                runtime.metrics.consumer_lag.labels(partition=str(partition)).set(max(highwater - position, 0))

    app.progress = ProgressLog(runtime.metrics)  # type: ignore[attr-defined]
    if settings.progress_interval_s > 0:

        @app.timer(interval=settings.progress_interval_s, on_leader=False)
        async def _progress() -> None:
            logging.getLogger("microseg.worker").info(app.progress.line())  # type: ignore[attr-defined]

    rules_topic = app.topic(settings.rules_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(rules_topic, name="rules")
    async def _rules(stream: Any) -> None:
        from microseg.engine.worker.rules_topic import PublishedRules

        published = PublishedRules()  # every version on the topic; the newest 'current' pointer is applied
        async for events in stream.take_events(1000, within=1.0):
            records = [(e.key, e.value, int((e.message.timestamp or 0) * 1000), e.message.offset) for e in events]
            await published.apply(records, runtime)
            runtime.health.rules_read = max(runtime.health.rules_read, events[-1].message.offset + 1)

    models_topic = app.topic(settings.models_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(models_topic, name="models")
    async def _models(stream: Any) -> None:
        from microseg.engine.worker.models_topic import apply_published_models

        async for events in stream.take_events(1000, within=1.0):
            await apply_published_models([event.value for event in events], runtime)
            runtime.health.models_read = max(runtime.health.models_read, events[-1].message.offset + 1)

    from microseg.engine.worker.posteriors import add_to_app as add_posteriors

    add_posteriors(app, settings, runtime)  # message variants' shared posterior: counts, snapshots

    _add_pages(app, settings, runtime)
    if settings.web_port > 0:  # the web console (engine/console), behind the same guard
        from microseg.engine.console.pages import mount_console

        mount_console(app.web.web_app, settings, runtime, bootstrap, Guard(settings.api_token, settings.read_token))
    return app


def _refused(guard: Guard, view: View, request: Request, scope: Scope, runtime: Runtime) -> Response | None:
    """The guard's answer (``engine.worker.auth``) as a response, or None when the request may go on."""
    refusal = guard.check(request.headers.get("Authorization"), request.query.items(), scope)  # type: ignore[attr-defined]
    if refusal is None:
        return None
    runtime.metrics.api_refused.labels(reason=refusal.reason).inc()
    return view.bytes(refusal.body, content_type="application/json", status=refusal.status, headers=refusal.headers)


def _add_pages(app: faust.App, settings: Settings, runtime: Runtime) -> None:
    """Public: /metrics, /health, /health/ready and /segments (no personal data: counts and versions);
    behind the token guard: /customers/{id} (docs/security.md)."""
    guard = Guard(settings.api_token, settings.read_token)
    router = Router(runtime)

    async def _routed(view: View, request: Request, method: str, partition: int) -> Response:
        """The owner's answer to this request (``engine.worker.routing``), or 503 when it cannot be asked."""
        try:
            answer = await router.forward(method, partition, request.path_qs, request.headers.get("Authorization"))  # type: ignore[attr-defined]
        except RoutingError as exc:
            return view.json({"error": str(exc), "partition": partition}, status=exc.status)
        return view.bytes(answer.body, content_type=answer.content_type, status=answer.status)

    @app.page("/segments/{segment}/members")
    class Members(View):
        async def get(self, request: Request, segment: str) -> Response:
            if (refused := _refused(guard, self, request, Scope.READ, runtime)) is not None:
                return refused
            if segment not in runtime.ruleset.segment_ids:
                return self.json({"error": f"no segment {segment!r} in rules {runtime.ruleset.version}"}, status=404)
            query = request.query  # type: ignore[attr-defined]
            try:
                limit = int(query.get("limit") or DEFAULT_LIMIT)
                partition = int(query["partition"]) if "partition" in query else None
            except ValueError:
                return self.json({"error": "limit and partition are whole numbers"}, status=400)
            if not 1 <= limit <= MAX_LIMIT:
                return self.json({"error": f"limit is 1..{MAX_LIMIT}"}, status=400)
            try:
                if partition is not None:  # one partition's page, asked by a peer (or a client that knows)
                    members, more = router.local_page(partition, segment, query.get("after"), limit)
                    body = {"segment": segment, "partition": partition, "members": members, "more": more}
                else:
                    body = await router.members(segment, query.get("cursor") or None, limit, request.headers.get("Authorization"))
            except ValueError:
                return self.json({"error": "the cursor is not one this service returned; start without it"}, status=400)
            except RoutingError as exc:
                return self.json({"error": str(exc)}, status=exc.status)
            return self.bytes(orjson.dumps(body), content_type="application/json")

    @app.page("/rules/sizes")
    class RuleSizes(View):
        """Segment sizes under the rules in force and a candidate, every customer as of one instant
        (``engine.worker.rules_preview``; ``microseg rules diff``). Body: ``{"files": {name: text} | null,
        "as_of": epoch seconds | null (now)}``."""

        async def post(self, request: Request) -> Response:
            from microseg.engine.worker.rules_preview import live_sizes, routed
            from microseg.segments.language.errors import RuleError

            if (refused := _refused(guard, self, request, Scope.READ, runtime)) is not None:
                return refused
            try:
                asked = orjson.loads(await request.read())  # type: ignore[attr-defined]
                files = asked.get("files")
                as_of = float(asked.get("as_of") or runtime.clock())
                if files is not None and not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
                    raise TypeError("files is a mapping of file name to text")
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
                return self.json({"error": f"body: {exc}"}, status=400)
            try:
                body = await live_sizes(runtime, router, files, as_of, request.headers.get("Authorization"), local_only=routed(request.headers))
            except RuleError as exc:
                return self.json({"error": "the candidate rules do not compile", "problems": [str(p) for p in exc.problems]}, status=422)
            except RoutingError as exc:
                return self.json({"error": str(exc)}, status=exc.status)
            return self.bytes(orjson.dumps(body), content_type="application/json")

    @app.page("/metrics")
    async def metrics(web: Any, request: Request) -> Response:
        runtime.metrics.ready.set(1 if runtime.readiness()[0] else 0)
        runtime.metrics.observe_crossings(runtime.tasks.core.dependence.crossings.stats())
        return web.bytes(generate_latest(runtime.metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health(web: Any, request: Request) -> Response:
        return web.json(
            {
                "status": "ok",
                "rules_version": runtime.ruleset.version,
                "model": ModelInUse(runtime.model, runtime.model_origin).describe(),
                "partitions": sorted(runtime.assigned),
                "ready": sorted(runtime.ready),
                "batches": runtime.batches,
            }
        )

    @app.page("/health/ready")
    async def ready(web: Any, request: Request) -> Response:
        ok, body = runtime.readiness()
        return web.json(body, status=200 if ok else 503)

    @app.page("/segments")
    async def segments(web: Any, request: Request) -> Response:
        return web.json({"rules_version": runtime.ruleset.version, "partitions": sorted(runtime.ready), "segments": runtime.segment_populations()})

    def _not_a_customer(view: View, customer_id: str) -> Response | None:
        """404 for an id no customer has (beginning with a control character: a visitor's profile
        key stays internal, CONTRACT §8), after the token guard."""
        if customer_id[:1] >= " ":
            return None
        return view.json({"error": f"customer {customer_id!r} is not known (customer ids begin with a printable character; an anonymous visitor is /visitors/{{anonymous_id}})"}, status=404)

    async def _explain(view: View, request: Request, key: str, unknown: str, *, customer: bool = False) -> Response:
        """Explain the profile ``key`` (``Runtime.explain``), forwarded to its owner like any routed read."""
        if (refused := _refused(guard, view, request, Scope.READ, runtime)) is not None:
            return refused
        if customer and (refused := _not_a_customer(view, key)) is not None:
            return refused
        found = runtime.explain(key)
        if found is None:
            return view.json({"error": unknown}, status=404)
        if "error" in found and not request.headers.get(ROUTED_HEADER):
            return await _routed(view, request, "GET", found["partition"])
        status = 409 if "error" in found else 200
        return view.bytes(orjson.dumps(found, default=str), content_type="application/json", status=status)

    async def _erase(view: View, request: Request, key: str, named: str, *, customer: bool = False) -> Response:
        """GDPR erasure of the profile ``key`` on its owner (``Runtime.request_erasure``); answers
        name the profile in its public form (``customer_id``, and ``anonymous_id`` for a visitor)."""
        if (refused := _refused(guard, view, request, Scope.ADMIN, runtime)) is not None:
            return refused
        if customer and (refused := _not_a_customer(view, key)) is not None:
            return refused
        profile: dict[str, str | None] = public_profile(key)
        if profile["anonymous_id"] is None:
            profile = {"customer_id": key}  # a customer's answers as before
        status, partition = runtime.erasure_status(key)
        if status == "not_owned" and not request.headers.get(ROUTED_HEADER):
            return await _routed(view, request, "DELETE", partition)
        if status == "not_owned":
            return view.json({"error": f"partition {partition} is not owned by this worker", "partition": partition}, status=409)
        if status == "recovering":
            return view.json({"error": f"partition {partition} is being recovered; try again", "partition": partition}, status=503)
        if status == "unknown":
            audited = await runtime.audit_answered(key, "unknown")
            return view.json({"error": f"{named} is not known", **profile, "status": "unknown", "request_id": audited}, status=404)
        if status == "erased":
            audited = await runtime.audit_answered(key, "already_erased")
            return view.json({"error": f"{named} is already erased", **profile, "status": "erased", "request_id": audited}, status=410)
        event_id = await runtime.request_erasure(key)
        return view.json({**profile, "erasure_event": event_id, "request_id": event_id, "status": "accepted"}, status=202)

    @app.page("/visitors/{anonymous_id}")
    class Visitor(View):
        """An anonymous visitor's explain (CONTRACT §8): the profile of ``anonymous_id`` while it is
        not identified; once identified it is the customer's alias (``GET /customers/{id}``)."""

        async def get(self, request: Request, anonymous_id: str) -> Response:
            unknown = f"anonymous visitor {anonymous_id!r} is not known (never seen, erased, or identified: its customer lists it in 'aliases')"
            return await _explain(self, request, profile_key(None, anonymous_id), unknown)

        async def delete(self, request: Request, anonymous_id: str) -> Response:
            """Erase a visitor not identified yet (one already identified is its customer's alias:
            404, erase the customer)."""
            return await _erase(self, request, profile_key(None, anonymous_id), f"anonymous visitor {anonymous_id!r}")

    @app.page("/customers/{customer_id}")
    class Customer(View):
        async def get(self, request: Request, customer_id: str) -> Response:
            return await _explain(self, request, customer_id, f"customer {customer_id!r} is not known", customer=True)

        async def delete(self, request: Request, customer_id: str) -> Response:
            return await _erase(self, request, customer_id, f"customer {customer_id!r}", customer=True)
