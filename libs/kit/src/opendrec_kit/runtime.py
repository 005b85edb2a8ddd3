"""A service process: HTTP app and event subscribers in one event loop.

Start order: database (created if missing) -> migrations -> pool -> topics -> broker and
subscribers -> outbox relay -> startup hooks -> serve. /readyz answers 200 only when the
database and broker answer and the relay runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar, cast

import asyncpg
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Receive, Scope, Send

from opendrec_contracts import Event, OrganizationRegistered, all_topics, topic_of

from . import db, heap, metrics, watermarks
from .auth import RevocationFollower, TokenVerifier, describe_access
from .errors import ERROR_RESPONSES, install_error_handlers
from .messaging import (
    BatchHandler,
    E,
    Handler,
    ensure_topics,
    make_broker,
    partition_counts,
    subscribe,
    subscribe_batch,
)
from .organizations import remember_organization, serving
from .outbox import BrokerEpoch, OutboxRelay
from .owners import OwnerServices
from .settings import ServiceSettings
from .telemetry import redact_path, setup_logging, setup_tracing
from .uow import UnitOfWork
from .workers import Step, Worker

log = logging.getLogger(__name__)

# How long one shutdown step may take before it is left behind (see ServiceRuntime.stop).
SHUTDOWN_STEP_S = 10.0

# Requests recorded in no span (paths, without a trailing slash): the probes, and D-REC's getAccess, which carries an
# API user's private key in its query (identity refuses it; spans keep no query, but the key must not reach a trace
# file or a collector in any form).
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/auth/getAccess"})
# FastAPI's native telemetry off (see _create_app): RequestIdMiddleware is the one layer.
NO_NATIVE_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}

Hook = Callable[["ServiceRuntime[Any]"], Awaitable[None]]
# A service's own measurement for its gauges (e.g. bulk jobs queued), run by the metrics worker.
Probe = Callable[["ServiceRuntime[Any]"], Awaitable[None]]
# What a service shows in /readyz details (e.g. the charger gateway's poll lag): never makes it unready.
Detail = Callable[["ServiceRuntime[Any]"], Awaitable[dict[str, Any]]]


class RequestIdMiddleware:
    """The one ASGI layer every request of a service goes through (tracing, metrics and its id at once: each layer
    more is a frame and a `send` wrapper per message on every request).

    - Its id: X-Request-ID from the caller (the gateway sets it) or a new one, echoed in the answer and kept in
      `scope["state"]` for the error envelope.
    - Its span: a SERVER span continuing the caller's `traceparent`, current while the request is served (log lines
      and the events it records carry its trace), named `{method} {route template}` once routing has matched, with
      the method, the path (secret segments redacted), the route, the status and the request id. None for
      `untraced` paths (probes, and getAccess whose query holds an API user's private key).
    - Its duration in `http.server.request.duration` by route template (not for /metrics, the scraper's own).
    - Marks the request as served by this runtime (`organizations.serving`, for read-your-writes).
    """

    def __init__(
        self,
        app: ASGIApp,
        runtime: ServiceRuntime[Any] | None = None,
        *,
        untraced: frozenset[str] = UNTRACED_PATHS,
        unmeasured: frozenset[str] = frozenset({"/metrics"}),
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.untraced = untraced
        self.unmeasured = unmeasured
        # The process's tracer (a proxy until setup_tracing installs the provider); tests give their own.
        self.tracer = tracer or trace.get_tracer("opendrec_kit.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = traceparent = tracestate = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value.decode("latin-1")
            elif key == b"traceparent":
                traceparent = value.decode("latin-1")
            elif key == b"tracestate":
                tracestate = value.decode("latin-1")
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        if self.runtime is not None:
            serving.set(self.runtime)  # this request's task only: handlers and workers run in other tasks
        method, path = scope["method"], scope["path"]
        span = token = None
        if path.rstrip("/") not in self.untraced:
            parent = Context()  # no caller's trace: a trace of its own, whatever context the server task has
            if traceparent is not None:
                carrier = {"traceparent": traceparent}
                if tracestate is not None:
                    carrier["tracestate"] = tracestate
                parent = propagate.extract(carrier, parent)
            span = self.tracer.start_span(
                method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": method,
                    "url.path": redact_path(path),
                    "opendrec.request_id": request_id,
                },
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
        status = 500  # an exception with nothing sent is answered 500 by the server
        echoed = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append(echoed)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            if span is not None:
                span.record_exception(exc)
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if path not in self.unmeasured:
                metrics.record_request(method, route, status, time.perf_counter() - started)
            if span is not None:
                if route is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
            if token is not None:
                otel_context.detach(token)


S = TypeVar("S", bound=ServiceSettings)


def _where_tasks_wait() -> list[str]:
    """Each pending task and the line it waits on: what a stuck shutdown step is stuck behind."""
    out = []
    for task in asyncio.all_tasks():
        frames = task.get_stack()  # oldest to newest: the last is where it waits
        where = f"{frames[-1].f_code.co_filename}:{frames[-1].f_lineno}" if frames else "?"
        out.append(f"{task.get_name()} at {where}")
    return out


class ServiceRuntime(Generic[S]):
    """One service process; generic over its settings class, so `runtime.settings` has the service's own fields."""

    def __init__(self, settings: S, *, title: str, migrations: Path | None = None) -> None:
        if not settings.service_name:
            raise ValueError("settings.service_name must name the service")
        self.settings = settings
        self.name = settings.service_name
        self.migrations = migrations
        self.database_url = ""
        self.pool: asyncpg.Pool | None = None
        self.broker = make_broker(settings)
        self.relay: OutboxRelay | None = None
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self.workers: list[Worker] = []
        self.started = False
        self.consumer_stats: dict[str, dict[str, int]] = {}
        self.consumer_groups: dict[str, str] = {}  # group -> topic
        self.follows_watermarks = False
        self.probes: list[Probe] = []
        self.details: dict[str, Detail] = {}
        self._lag = metrics.LagReader(settings.kafka_bootstrap_servers)
        # Asked on a read-model miss (read-your-writes): the owners of what this service keeps read models of.
        self.owners = OwnerServices(
            {
                "identity": settings.identity_url,
                "devices": settings.devices_url,
                "reservations": settings.reservations_url,
            },
            timeout_s=settings.owner_timeout_s,
            concurrency=settings.owner_concurrency,
            service=self.name,
        )
        self.app = self._create_app(title)
        # Every process follows token.revoked itself, so a logged-out token is refused everywhere within moments.
        self.revocations = RevocationFollower(settings.kafka_bootstrap_servers, self.app.state.token_verifier)
        self.workers.append(self.revocations.worker())
        # Lag, outbox backlog and the services' probes, measured off the hot path for /metrics to read.
        self.workers.append(Worker("metrics", self.measure, interval_s=metrics.INTERVAL_S, backoff_max_s=30.0))

    # -- wiring ---------------------------------------------------------------
    def include_router(self, router: APIRouter) -> None:
        for route in router.routes:
            if isinstance(route, APIRoute) and "x-access" not in (route.openapi_extra or {}):
                describe_access(route)
        self.app.include_router(router, responses=ERROR_RESPONSES)  # every error answer, documented

    def on(
        self,
        event_class: type[E],
        handler: Handler[E] | BatchHandler[E],
        *,
        group: str | None = None,
        watermarks: bool = False,
        batch: int | None = None,
    ) -> dict[str, int]:
        """Handle every `event_class` event of its topic, once each (inbox), in consumer group `group`
        (default `<service>.<topic>`); `watermarks`: also record the producer's watermarks met on the topic
        (opendrec_kit.watermarks.passed); `batch`: `handler` takes up to that many events at hand in one unit of
        work (a BatchHandler, messaging.subscribe_batch). Returns live counters (handled, duplicates,
        dead_lettered)."""
        topic = topic_of(event_class.TYPE)
        if batch is None:
            stats = subscribe(
                self.broker,
                self.settings,
                self._pool,
                event_class,
                metrics.timed(event_class.TYPE, cast("Handler[E]", handler)),
                group=group,
                follow_watermarks=watermarks,
            )
        else:
            stats = subscribe_batch(
                self.broker,
                self.settings,
                self._pool,
                event_class,
                metrics.timed(event_class.TYPE, cast("BatchHandler[E]", handler)),
                max_records=batch,
                group=group,
                follow_watermarks=watermarks,
            )
        self.consumer_stats[topic] = stats
        if watermarks:
            self.follows_watermarks = True
        group_name = self.settings.kafka_group_prefix + (group or f"{self.name}.{topic}")  # as subscribe names it
        self.consumer_groups[group_name] = topic
        metrics.gauges.consumers[group_name] = stats
        return stats

    def follow_organizations(self) -> None:
        """Keep `organization_directory` from organization.registered (for `acting_organization`)."""
        self.on(OrganizationRegistered, remember_organization)

    def watermarks(self, *event_classes: type[Event]) -> Worker:
        """Publish this service's watermarks (opendrec_kit.watermarks) on the topics of `event_classes` every
        WATERMARK_INTERVAL_S: consumers then know when they hold every such event decided before a moment."""
        topics = [topic_of(c.TYPE) for c in event_classes]
        known: dict[str, Any] = {"partitions": {}, "until": 0.0}

        async def step() -> bool:
            # Every partition the broker has for the topic, asked again now and then (partitions can be added).
            if time.monotonic() >= known["until"] or not all(known["partitions"].values()):
                known["partitions"] = await partition_counts(self.settings.kafka_bootstrap_servers, topics)
                known["until"] = time.monotonic() + 60
            async with self._pool().acquire() as conn, conn.transaction():
                await watermarks.write(conn, known["partitions"], self.name)
            return False

        return self.worker("watermarks", step, interval_s=self.settings.watermark_interval_s)

    def worker(
        self, name: str, step: Step, *, interval_s: float, backoff_max_s: float = 30.0, enabled: bool = True
    ) -> Worker:
        """A background worker started with the service (after the startup hooks) and stopped with it;
        its health is reported by /readyz. `enabled=False` registers it without starting it (tests, CLI)."""
        worker = Worker(name, step, interval_s=interval_s, backoff_max_s=backoff_max_s)
        if enabled:
            self.workers.append(worker)
        return worker

    def uow(self) -> UnitOfWork:
        """A unit of work on this service's database; events it records are published as from this service."""
        return UnitOfWork(self._pool(), self.name)

    def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError(f"{self.name} is not started: no database pool yet")
        return self.pool

    def measure_with(self, probe: Probe) -> None:
        """Run `probe` at every metrics measurement (it sets its gauges with `metrics.set_gauge`)."""
        self.probes.append(probe)

    def report_with(self, name: str, detail: Detail) -> None:
        """Show `await detail(runtime)` in /readyz under details[name]. Details never make the service unready; a
        failing or slow one (2 s) is shown as an error."""
        self.details[name] = detail

    async def readiness_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        for name, detail in self.details.items():
            try:
                async with asyncio.timeout(2):
                    details[name] = await detail(self)
            except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
                details[name] = {"error": type(exc).__name__}
        return details

    async def measure(self) -> None:
        """One measurement for /metrics: outbox backlog, consumer lag, the service's probes."""
        database = self.settings.database_name
        metrics.gauges.outbox[database] = await metrics.outbox_backlog(self._pool())
        if self.consumer_groups:
            for lag in await self._lag.read(self.consumer_groups):
                metrics.gauges.lag[(lag.group, lag.topic, lag.partition)] = lag.lag
        for probe in self.probes:
            await probe(self)

    def on_startup(self, hook: Hook) -> None:
        self._startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        self._shutdown.append(hook)

    # -- lifecycle --------------------------------------------------------------
    async def prepare(self) -> None:
        """What must exist before serving: the database, its migrations, the topics. Idempotent."""
        s = self.settings
        self.database_url = await db.ensure_database(s.database_url, s.database_name)
        await db.migrate(self.database_url, self.migrations)
        await ensure_topics(
            s.kafka_bootstrap_servers, all_topics(), s.kafka_topic_partitions, s.kafka_replication_factor
        )

    async def start(self) -> None:
        s = self.settings
        await self.prepare()
        self.pool = await db.create_pool(
            self.database_url,
            s.database_pool_min,
            s.database_pool_max,
            acquire_timeout_s=s.database_acquire_timeout_s,
            statement_timeout_s=s.database_statement_timeout_s,
            idle_in_transaction_timeout_s=s.database_idle_in_transaction_timeout_s,
        )
        await self.broker.start()
        self.relay = OutboxRelay(
            self.pool,
            self.database_url,
            self.broker,
            s.outbox_batch_size,
            s.outbox_poll_interval_s,
            epoch=BrokerEpoch(s.kafka_bootstrap_servers, s.kafka_topic_partitions, s.kafka_replication_factor),
            retention_s=s.outbox_retention_s,
            epoch_check_s=s.broker_epoch_check_s,
        )
        await self.relay.start()
        metrics.gauges.pools[s.database_name] = self.pool
        metrics.gauges.relays[s.database_name] = self.relay
        await self.revocations.catch_up()  # no request is served before every logout so far is known
        for hook in self._startup:
            await hook(self)
        for worker in self.workers:
            worker.start()
        self.started = True
        log.info("service started", extra={"database": s.database_name, "pid": os.getpid()})

    async def stop(self) -> None:
        """Stop workers, hooks, relay, clients, broker and pool, each within SHUTDOWN_STEP_S: a step that does not
        finish (a client stuck on a broker that went away) is logged by name and left, so shutdown always ends
        (an orchestrator's grace period, a test's teardown) and the pool is closed for good at the end."""
        self.started = False
        for worker in self.workers:
            await self._stop_step(f"worker {worker.name}", worker.stop())
        for hook in reversed(self._shutdown):
            await self._stop_step(f"hook {getattr(hook, '__name__', repr(hook))}", hook(self))
        if self.relay:
            await self._stop_step("outbox relay", self.relay.stop())
        await self._stop_step("owner clients", self.owners.close())
        await self._stop_step("lag reader", self._lag.close())
        metrics.gauges.pools.pop(self.settings.database_name, None)
        await self._stop_step("broker", self.broker.stop())
        if self.pool and not await self._stop_step("database pool", self.pool.close()):
            self.pool.terminate()  # connections still held by a step left above are cut

    async def _stop_step(self, name: str, step: Awaitable[Any]) -> bool:
        try:
            async with asyncio.timeout(SHUTDOWN_STEP_S):
                await step
            return True
        except TimeoutError:
            log.error(
                "shutdown step did not finish in time; left behind",
                extra={"step": name, "seconds": SHUTDOWN_STEP_S, "tasks": _where_tasks_wait()},
            )
        except Exception:  # one failing step must not keep the others (and the pool) from closing
            log.exception("shutdown step failed", extra={"step": name})
        return False

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            assert self.pool is not None
            async with asyncio.timeout(2):
                await self.pool.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            checks["database"] = f"unavailable: {type(exc).__name__}"
        try:
            checks["broker"] = "ok" if self.started and await self.broker.ping(timeout=2) else "unavailable"
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            checks["broker"] = f"unavailable: {type(exc).__name__}"
        checks["outbox"] = await self._outbox_state()
        if self.follows_watermarks:
            checks["watermarks"] = await self._watermark_state()
        return checks

    async def _watermark_state(self) -> str:
        """ "ok", or the dead letters holding a watermark: what this service acts on waits for their replay."""
        try:
            held = await watermarks.holds(self._pool())
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            return f"unknown: {type(exc).__name__}"
        if not held:
            return "ok"
        first = held[0]
        return (
            f"held by {len(held)} dead letter(s) until replayed; the first: {first['topic']}"
            f"/{first['partition']}@{first['offset']}, {first['error'][:200]}"
        )

    async def _outbox_state(self) -> str:
        """ "ok", or how far the relay is behind: events wait in the outbox while the broker is away, and the API
        still takes writes meanwhile (issue 13: relay lag is reported, it does not take the service out of
        rotation)."""
        if self.relay is None or self.pool is None:
            return "starting"
        if self.relay.healthy:
            return "ok"
        if not self.relay.worker.last_error:
            return "starting"  # its first round is under way
        try:
            async with asyncio.timeout(2):
                row = await self.pool.fetchrow(
                    "SELECT count(*) AS waiting, extract(epoch FROM now() - min(created_at)) AS age FROM outbox"
                    " WHERE published_at IS NULL AND failed_at IS NULL"
                )
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            return f"behind: {type(exc).__name__}"
        assert row is not None
        return f"behind: {row['waiting']} events waiting, the oldest {float(row['age'] or 0):.0f} s"

    def worker_status(self) -> dict[str, str]:
        """Each background worker's state: reported by /readyz without making the service unready (a worker
        retries on its own; the API still answers)."""
        return {w.name: w.status for w in self.workers}

    # -- HTTP -----------------------------------------------------------------
    def _create_app(self, title: str) -> FastAPI:
        runtime = self

        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await runtime.start()
            try:
                yield
            finally:
                await runtime.stop()

        # One telemetry layer: RequestIdMiddleware below. FastAPI's own telemetry would be a second one (spans per
        # dependency and endpoint): a cost for nothing the traces are read for.
        app = FastAPI(title=title, lifespan=lifespan, telemetry=NO_NATIVE_TELEMETRY)
        app.state.runtime = self
        s = self.settings
        app.state.token_verifier = TokenVerifier.from_settings(s)
        install_error_handlers(app)

        @app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"status": "ok", "service": runtime.name}

        @app.get("/readyz", include_in_schema=False)
        async def readyz() -> JSONResponse:
            checks = await runtime.readiness()
            # Ready when requests can be served: the database answers. A broker away or a relay behind is reported
            # in checks; writes wait in the outbox meanwhile.
            ready = runtime.started and checks["database"] == "ok"
            # pid: which process answered (a service may run several workers on its port).
            return JSONResponse(
                {
                    "status": "ready" if ready else "unready",
                    "service": runtime.name,
                    "pid": os.getpid(),
                    "checks": checks,
                    "workers": runtime.worker_status(),
                    "details": await runtime.readiness_details(),
                },
                status_code=200 if ready else 503,
            )

        @app.get("/metrics", include_in_schema=False)
        async def metrics_endpoint() -> Response:
            # Scraped on the service's own port, inside the cluster; the gateway routes no /metrics.
            return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

        # One layer for the request's span, duration and id (see RequestIdMiddleware).
        app.add_middleware(RequestIdMiddleware, runtime=self)
        return app

    def setup_process(self) -> FastAPI:
        """Logging and tracing of this process; the app to serve."""
        s = self.settings
        setup_logging(self.name, s.log_level)
        setup_tracing(self.name, s.traces_file, s.otel_exporter_otlp_endpoint)
        return self.app

    def run(self, worker_factory: str | None = None) -> None:
        """Process entry point: logging, tracing, then serve until SIGINT/SIGTERM.

        With HTTP_WORKERS > 1, uvicorn starts that many processes on the port, each building the
        service anew with `worker_factory` ("module:function" returning `setup_process()`), and
        restarts one that dies; SIGINT/SIGTERM stop them all.
        """
        s = self.settings
        options: dict[str, Any] = {
            "host": s.http_host, "port": s.http_port, "loop": "uvloop", "http": "httptools", "log_config": None, "access_log": False,
        }  # fmt: skip
        if s.http_workers > 1:
            if worker_factory is None:
                raise RuntimeError(f"{self.name} has no worker factory: it runs with HTTP_WORKERS=1 only")
            setup_logging(self.name, s.log_level)
            # Once, before the workers: they would otherwise all create the database and migrate at once.
            asyncio.run(self.prepare())
            metrics.prepare_multiprocess(self.name, s.http_port)  # one scrape sums every worker's metrics
            log.info("starting workers", extra={"workers": s.http_workers})
            uvicorn.run(worker_factory, factory=True, workers=s.http_workers, **options)
            return
        uvicorn.Server(uvicorn.Config(self.setup_process(), **options)).run()


# The route dependencies below are `async def` though they do not wait: FastAPI runs a plain `def` dependency in
# a worker thread, a thread hop per request and dependency for a dict lookup.


async def get_runtime(request: Request) -> ServiceRuntime[Any]:
    return request.app.state.runtime


async def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.runtime.pool


async def get_uow(request: Request) -> UnitOfWork:
    """A fresh, unopened unit of work for the use case a route calls (the use case opens it)."""
    return request.app.state.runtime.uow()


async def get_owners(request: Request) -> OwnerServices:
    return request.app.state.runtime.owners


Runtime = Annotated[ServiceRuntime[Any], Depends(get_runtime)]
Owners = Annotated[OwnerServices, Depends(get_owners)]
Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
UoW = Annotated[UnitOfWork, Depends(get_uow)]


def entry_points(
    build: Callable[[S], ServiceRuntime[S]], settings: Callable[[], S], worker_factory: str
) -> tuple[Callable[[], FastAPI], Callable[[], None]]:
    """A service's `__main__` entry points: `worker` (one of HTTP_WORKERS processes: uvicorn calls it in each,
    found as `worker_factory`, "<package>.__main__:worker") and `main` (`python -m <package>`), both building the
    service with `build(settings())`."""

    def worker() -> FastAPI:
        app = build(settings()).setup_process()
        heap.settle()
        return app

    def main() -> None:
        runtime = build(settings())
        heap.settle()
        runtime.run(worker_factory=worker_factory)

    return worker, main
