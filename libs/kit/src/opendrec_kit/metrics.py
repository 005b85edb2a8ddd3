"""Metrics of one process (a service or the gateway), in Prometheus' text format on `/metrics`.

Every service gets the same families from the kit, without a line of its own:

| family (Prometheus name)                                  | what                                                  |
|-----------------------------------------------------------|-------------------------------------------------------|
| `http_server_request_duration_seconds` (histogram)        | requests by method, route template and status         |
| `messaging_kafka_consumer_lag`                            | messages not yet handled, per group and partition     |
| `messaging_process_duration_seconds` (histogram)          | handler latency per event type                        |
| `opendrec_consumer_messages_total`                        | events per consumer group and outcome (handled, duplicate, dead_lettered) |
| `opendrec_consumer_failed_attempts_total`                 | handler attempts that failed (retried, then DLQ), per event type |
| `opendrec_outbox_backlog_events` / `..._oldest_age_seconds` | outbox rows waiting, and how long the oldest waits  |
| `opendrec_outbox_published_events_total`                  | relay publish rate (and `..._set_aside_...`)          |
| `db_client_connection_count` / `..._pending_requests`     | database pool: connections used/idle, waiting acquires |

and the domain families services record through the small functions at the end (reads accepted and refused by
reason, certificates issued and Wh certified, bulk rows, charger polls, transactions and errors).

Names follow OpenTelemetry's semantic conventions where they exist (HTTP server, messaging, database client), as
OpenTelemetry's Prometheus exporter writes them (dots to underscores, the unit, `_total`). On hot paths only
prometheus_client counters and histograms are touched, their label children looked up once (a record is a few
microseconds: bench/operations); what needs a query (lag, backlog) is measured by the runtime's `metrics` worker
every METRICS_INTERVAL_S into OpenTelemetry observable instruments that a scrape reads from memory.

With HTTP_WORKERS > 1 the parent prepares prometheus_client's multiprocess mode before starting the workers
(`prepare_multiprocess`: a directory of its own per service and port, emptied at each start, named to the workers
in PROMETHEUS_MULTIPROC_DIR): every worker's requests, events and domain counts land in that directory and one
scrape, whichever worker answers, sums them all. What a worker measures off the hot path (lag and backlog, the same
figures from any worker; its own pool and consumer counts) is the answering worker's.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    start_http_server,
)
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MetricsSettings(BaseSettings):
    """METRICS_INTERVAL_S: how often lag, backlog and the services' gauges are measured (a scrape reads the last
    measurement). METRICS_PORT: where the gateway serves its /metrics (services serve it on their own port)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)
    metrics_interval_s: float = Field(default=5.0, ge=0.1, le=3600)
    metrics_port: int = Field(default=9464, ge=0, le=65535)  # OpenTelemetry's Prometheus port; 0: not served
    # Where HTTP_WORKERS > 1 keeps the workers' shared metrics files, a directory per service and port below it
    # (empty: the system's temporary directory). Must be writable (an emptyDir where the root is read-only).
    metrics_multiproc_dir: str = Field(default="", max_length=1024)


SETTINGS = MetricsSettings()
INTERVAL_S = SETTINGS.metrics_interval_s

# The whole process shares one registry: instruments are module-level, so a use case records with one call and no
# runtime at hand. A private registry (not prometheus_client's global one) holds only OpenDREC's families.
#
# Two kinds of instrument, by cost. What is recorded on every request or event (the two duration histograms, the
# counters) is a prometheus_client child, looked up once per label set: a few us a record where the OpenTelemetry
# SDK's Histogram.record took ~10 times as long on the same machine (bench/operations). What is measured off the
# hot path (lag, backlog, pools, relay counts) is an OpenTelemetry observable instrument, read at scrape time
# through the OpenTelemetry Prometheus exporter. Names and labels are the semantic conventions' as that exporter
# writes them (dots to underscores, unit suffix, `_total`), for both kinds.
REGISTRY = CollectorRegistry(auto_describe=True)
disable_created_metrics()  # no `_created` series beside every counter and histogram: Prometheus needs none
_reader = PrometheusMetricReader(registry=REGISTRY, disable_target_info=True, scope_info_enabled=False)
# No exemplars: nothing reads them, and offering each measurement to a reservoir is a cost on every request.
_provider = MeterProvider(metric_readers=[_reader], exemplar_filter=AlwaysOffExemplarFilter())
meter = _provider.get_meter("opendrec")

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Set by the parent of several workers (prepare_multiprocess) before they start: prometheus_client, imported here,
# then keeps every counter and histogram in a file of that directory, and a scrape sums the workers' files.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

# http.server.request.duration's advised boundaries (semantic conventions), in seconds
_HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]

http_server_duration = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests (http.server.request.duration)",
    ["http_request_method", "http_response_status_code", "http_route", "error_type"],
    buckets=_HTTP_BUCKETS,
    registry=REGISTRY,
)
handler_duration = Histogram(
    "messaging_process_duration_seconds",
    "Duration of an event handler, its unit of work included (messaging.process.duration)",
    ["messaging_system", "opendrec_event_type"],
    buckets=_HTTP_BUCKETS,
    registry=REGISTRY,
)
_failed_attempts = Counter(
    "opendrec_consumer_failed_attempts",
    "Handler attempts that failed: each is retried, up to CONSUMER_MAX_ATTEMPTS, then dead-lettered",
    ["messaging_system", "opendrec_event_type", "error_type"],
    registry=REGISTRY,
)

H = Any  # the handler's event type (messaging.Handler is generic over it)


def timed(event_type: str, handler: Callable[[H, H], Awaitable[None]]) -> Callable[[H, H], Awaitable[None]]:
    """`handler` recording its duration (`messaging.process.duration`) and its failures, per event type."""
    duration = handler_duration.labels("kafka", event_type)

    async def handle(event: Any, uow: Any) -> None:
        started = time.perf_counter()
        try:
            await handler(event, uow)
        except Exception as exc:
            _failed_attempts.labels("kafka", event_type, type(exc).__name__).inc()
            raise
        finally:
            duration.observe(time.perf_counter() - started)

    return handle


def _scraped() -> CollectorRegistry:
    """What a scrape reads: this process's registry, or with several workers every worker's counters and histograms
    from their files, and this worker's measurements (the OpenTelemetry instruments: lag, backlog, pools)."""
    if MULTIPROCESS_DIR is None:
        return REGISTRY
    scraped = CollectorRegistry()
    multiprocess.MultiProcessCollector(scraped, path=MULTIPROCESS_DIR)
    # The exporter offers no public handle on its collector (a private attribute, read only).
    scraped.register(_reader._collector)
    return scraped


SCRAPED = _scraped()


def prepare_multiprocess(service: str, port: int) -> str:
    """Before starting several workers on one port: an empty directory of this service's own for their metrics
    files (files of an earlier run would be summed in), named to the workers in PROMETHEUS_MULTIPROC_DIR (they
    inherit the environment, and prometheus_client reads it when they import it). Returns the directory."""
    base = SETTINGS.metrics_multiproc_dir or os.path.join(tempfile.gettempdir(), "opendrec-metrics")
    directory = os.path.join(base, f"{service}-{port}")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def render() -> bytes:
    """This process's metrics in Prometheus' text format (what `/metrics` answers); with several workers, all of
    theirs summed."""
    return generate_latest(SCRAPED)


def serve(port: int, host: str) -> Callable[[], None]:
    """Serve `/metrics` on its own port (the gateway's: its public port routes nothing of its own but health and
    documents); returns what stops it."""
    server, thread = start_http_server(port, host, registry=SCRAPED)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


# The methods HTTP defines; any other is recorded as _OTHER (semantic conventions), so a client cannot add series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_request_series: dict[tuple[str, str | None, int], Any] = {}


def _series(method: str, route: str | None, status: int) -> Any:
    """The histogram child of a (method, route, status), looked up once: bounded by the methods, route templates
    and status codes, so the cache is too."""
    key = (method, route, status)
    child = _request_series.get(key)
    if child is None:
        known = method in _METHODS
        error = str(status) if status >= 500 else ""
        child = http_server_duration.labels(method if known else "_OTHER", str(status), route or "", error)
        if known:  # an unknown method is not kept as a key: it would grow the cache
            _request_series[key] = child
    return child


def record_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """One HTTP request served: `route` is the template (`/api/devices/{id}`), None when nothing matched."""
    _series(method, route, status).observe(seconds)


# The gateway's calls to the services (http.client.request.duration): one series per service, method and outcome,
# `server_address` being the service's name (bounded by the route table), never a host a client could choose.
http_client_duration = Histogram(
    "http_client_request_duration_seconds",
    "Duration of HTTP client requests, from sending to the answer's headers (http.client.request.duration)",
    ["http_request_method", "http_response_status_code", "server_address", "error_type"],
    buckets=_HTTP_BUCKETS,
    registry=REGISTRY,
)
_client_series: dict[tuple[str, str, int, str], Any] = {}


def record_upstream(service: str, method: str, status: int | None, seconds: float, error: str = "") -> None:
    """One call of the gateway to `service`: `status` None when no answer came (`error`: timeout, unreachable)."""
    key = (service, method, status or 0, error)
    child = _client_series.get(key)
    if child is None:
        known = method in _METHODS
        error_type = error or (str(status) if status is not None and status >= 500 else "")
        child = http_client_duration.labels(
            method if known else "_OTHER", "" if status is None else str(status), service, error_type
        )
        if known:
            _client_series[key] = child
    child.observe(seconds)


class HttpMetricsMiddleware:
    """ASGI middleware: `http.server.request.duration` per request, by route template (FastAPI puts the matched
    route in the scope), method and status."""

    def __init__(self, app: Any, skip: Iterable[str] = ("/metrics",)) -> None:
        self.app = app
        self.skip = frozenset(skip)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception with nothing sent is answered 500 by the server

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            record_request(scope["method"], getattr(route, "path", None), status, time.perf_counter() - started)


# -- what the runtime measures (read from memory at scrape time) -------------------------------------------------


@dataclass
class ProcessGauges:
    """Values the runtime's `metrics` worker measures (lag, backlog, pools) and the consumers' live counters; the
    observable instruments below read them at each scrape."""

    consumers: dict[str, Mapping[str, int]] = field(default_factory=dict)  # group -> subscribe()'s counters
    lag: dict[tuple[str, str, int], int] = field(default_factory=dict)  # (group, topic, partition) -> messages
    outbox: dict[str, tuple[int, float]] = field(default_factory=dict)  # database -> (rows, oldest age s)
    relays: dict[str, Any] = field(default_factory=dict)  # database -> OutboxRelay (published, set_aside)
    pools: dict[str, Any] = field(default_factory=dict)  # database -> asyncpg.Pool
    # family -> probe key -> observations (a key per probe: two probes of one family don't overwrite each other)
    probes: dict[str, dict[str, list[tuple[float, dict[str, Any]]]]] = field(default_factory=dict)


gauges = ProcessGauges()


def _consumer_messages(_: CallbackOptions) -> Iterable[Observation]:
    for group, stats in list(gauges.consumers.items()):
        for outcome, key in (("handled", "handled"), ("duplicate", "duplicates"), ("dead_lettered", "dead_lettered")):
            yield Observation(stats.get(key, 0), {"messaging.consumer.group.name": group, "outcome": outcome})


def _lag(_: CallbackOptions) -> Iterable[Observation]:
    for (group, topic, partition), lag in list(gauges.lag.items()):
        yield Observation(
            lag,
            {
                "messaging.consumer.group.name": group,
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(partition),
            },
        )


def _outbox_rows(_: CallbackOptions) -> Iterable[Observation]:
    for database, (rows, _age) in list(gauges.outbox.items()):
        yield Observation(rows, {"db.namespace": database})


def _outbox_age(_: CallbackOptions) -> Iterable[Observation]:
    for database, (_rows, age) in list(gauges.outbox.items()):
        yield Observation(age, {"db.namespace": database})


def _relay(attribute: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        for database, relay in list(gauges.relays.items()):
            yield Observation(getattr(relay, attribute), {"db.namespace": database})

    return observe


def pool_waiting(pool: Any) -> int:
    """Acquires waiting for a free connection. asyncpg has no public count: its free connections are an asyncio
    queue, whose waiting getters are the acquires that wait (read only, never changed)."""
    queue = getattr(pool, "_queue", None)
    return len(getattr(queue, "_getters", ()) or ())


def _pool_connections(_: CallbackOptions) -> Iterable[Observation]:
    for database, pool in list(gauges.pools.items()):
        size, idle = pool.get_size(), pool.get_idle_size()
        yield Observation(
            size - idle, {"db.client.connection.pool.name": database, "db.client.connection.state": "used"}
        )
        yield Observation(idle, {"db.client.connection.pool.name": database, "db.client.connection.state": "idle"})


def _pool_pending(_: CallbackOptions) -> Iterable[Observation]:
    for database, pool in list(gauges.pools.items()):
        yield Observation(pool_waiting(pool), {"db.client.connection.pool.name": database})


def _pool_max(_: CallbackOptions) -> Iterable[Observation]:
    for database, pool in list(gauges.pools.items()):
        yield Observation(pool.get_max_size(), {"db.client.connection.pool.name": database})


def _probe(family: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        for observations in list(gauges.probes.get(family, {}).values()):
            for value, attributes in observations:
                yield Observation(value, attributes)

    return observe


meter.create_observable_counter(
    "opendrec.consumer.messages",
    [_consumer_messages],
    unit="{message}",
    description="Events a consumer group took: handled, duplicate (already in its inbox) or dead_lettered",
)
meter.create_observable_gauge(
    "messaging.kafka.consumer.lag",
    [_lag],
    unit="{message}",
    description="Messages of a partition not yet committed by the consumer group (end offset - committed offset)",
)
meter.create_observable_gauge(
    "opendrec.outbox.backlog", [_outbox_rows], unit="{event}", description="Outbox rows waiting to be published"
)
meter.create_observable_gauge(
    "opendrec.outbox.oldest_age", [_outbox_age], unit="s", description="How long the oldest unpublished row waits"
)
meter.create_observable_counter(
    "opendrec.outbox.published", [_relay("published")], unit="{event}", description="Events the relay published"
)
meter.create_observable_counter(
    "opendrec.outbox.set_aside", [_relay("set_aside")], unit="{event}", description="Rows the broker refused for good"
)
meter.create_observable_up_down_counter(
    "db.client.connection.count", [_pool_connections], unit="{connection}", description="Pool connections by state"
)
meter.create_observable_up_down_counter(
    "db.client.connection.pending_requests",
    [_pool_pending],
    unit="{request}",
    description="Acquires waiting for a pool connection",
)
meter.create_observable_up_down_counter(
    "db.client.connection.max", [_pool_max], unit="{connection}", description="The pool's maximum size"
)

_probed: set[str] = set()


def gauge(family: str, *, unit: str, description: str) -> None:
    """Declare a gauge whose observations a service's probe sets (`set_gauge`) from the metrics worker, e.g. bulk
    jobs queued and running, counted in its database. Idempotent."""
    if family not in _probed:
        _probed.add(family)
        meter.create_observable_gauge(family, [_probe(family)], unit=unit, description=description)


def set_gauge(family: str, observations: Iterable[tuple[float, Mapping[str, Any]]], *, key: str = "") -> None:
    """The current observations of `family` from the probe `key`."""
    gauges.probes.setdefault(family, {})[key] = [(value, dict(attributes)) for value, attributes in observations]


JOBS = "opendrec.bulk.jobs"
gauge(JOBS, unit="{job}", description="Bulk and import jobs queued or running, per kind")


def job_counts(kind: str, table: str) -> Callable[[Any], Awaitable[None]]:
    """A probe (`runtime.measure_with`) counting the jobs of `table` by status, queued and running (bulk device
    onboarding, reads imports: their tables share the `status` column's values)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", table):
        raise ValueError(f"unsafe table name {table!r}")
    # An identifier cannot be bound; the name is the service's own constant, checked above.
    sql = f"SELECT status, count(*)::int AS n FROM {table} WHERE status IN ('queued', 'running') GROUP BY status"

    async def probe(runtime: Any) -> None:
        counts = {row["status"]: row["n"] for row in await runtime.pool.fetch(sql)}
        observed = [(counts.get(status, 0), {"kind": kind, "status": status}) for status in ("queued", "running")]
        set_gauge(JOBS, observed, key=kind)

    return probe


# -- domain families: one call where the thing happens ----------------------------------------------------------

_reads = Counter(
    "opendrec_readings_reads", "Reads accepted or refused", ["outcome", "reason", "source"], registry=REGISTRY
)
_read_energy = Counter("opendrec_readings_watt_hours", "Energy of accepted reads (Wh)", ["source"], registry=REGISTRY)
_certificates = Counter("opendrec_certificates_issued", "Certificates issued", registry=REGISTRY)
_certified = Counter("opendrec_certificates_watt_hours", "Energy certified (Wh)", registry=REGISTRY)
_bulk_rows = Counter("opendrec_bulk_rows", "Rows of bulk jobs processed", ["kind", "outcome"], registry=REGISTRY)
_charger_polls = Counter("opendrec_charger_polls", "Polls of a charger cloud", ["source", "outcome"], registry=REGISTRY)
_charger_transactions = Counter(
    "opendrec_charger_transactions",
    "Charging transactions seen and turned into reads",
    ["source", "outcome"],
    registry=REGISTRY,
)
_charger_errors = Counter(
    "opendrec_charger_errors", "Charger errors by kind", ["source", "error_type"], registry=REGISTRY
)


def reads_accepted(count: int, wh: int = 0, *, source: str = "api") -> None:
    if count:
        _reads.labels("accepted", "", source).inc(count)
    if wh:
        _read_energy.labels(source).inc(wh)


def reads_refused(count: int, reason: str, *, source: str = "api") -> None:
    if count:
        _reads.labels("refused", reason, source).inc(count)


def certificates_issued(count: int, wh: int) -> None:
    if count:
        _certificates.inc(count)
    if wh:
        _certified.inc(wh)


def bulk_rows(kind: str, rows: int, *, outcome: str = "ok") -> None:
    if rows:
        _bulk_rows.labels(kind, outcome).inc(rows)


def charger_poll(source: str, stats: Mapping[str, int]) -> None:
    """One poll round of a charger cloud, from its counts (requests_failed, transactions_seen, new_reads)."""
    _charger_polls.labels(source, "failed" if stats.get("requests_failed") else "ok").inc()
    if stats.get("transactions_seen"):
        _charger_transactions.labels(source, "seen").inc(stats["transactions_seen"])
    if stats.get("new_reads"):
        _charger_transactions.labels(source, "read_submitted").inc(stats["new_reads"])
    for kind in ("requests_failed", "without_credentials", "breaker_open"):  # what kept chargers unpolled
        if stats.get(kind):
            _charger_errors.labels(source, kind).inc(stats[kind])


def charger_transactions(source: str, count: int, outcome: str = "read_submitted") -> None:
    if count:
        _charger_transactions.labels(source, outcome).inc(count)


def charger_error(source: str, kind: str) -> None:
    _charger_errors.labels(source, kind).inc()


# -- measured off the hot path: consumer lag and outbox backlog ----------------------------------------------------


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group committed nothing on it yet (it starts at the beginning)
    end: int
    lag: int


class LagReader:
    """Consumer lag from the broker: each group's committed offsets against its topic's end offsets. Keeps its
    clients between reads (the metrics worker reads every few seconds); `close()` when done."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin: Any = None
        self._consumer: Any = None

    async def _clients(self) -> tuple[Any, Any]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        from .kafka_security import client_options

        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **client_options())
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, **client_options())
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def read(self, groups: Mapping[str, str]) -> list[PartitionLag]:
        """Lag of each `group -> topic`, per partition."""
        from aiokafka import TopicPartition

        try:
            admin, consumer = await self._clients()
            await consumer.topics()  # fresh metadata: partitions of every topic
            out: list[PartitionLag] = []
            for group, topic in groups.items():
                parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
                if not parts:
                    continue
                committed = await admin.list_consumer_group_offsets(group, partitions=parts)
                ends = await consumer.end_offsets(parts)
                starts = await consumer.beginning_offsets(parts)
                for tp in parts:
                    meta = committed.get(tp)
                    offset = meta.offset if meta is not None and meta.offset >= 0 else None
                    end = ends[tp]
                    lag = end - (offset if offset is not None else starts[tp])
                    out.append(PartitionLag(group, topic, tp.partition, offset, end, max(lag, 0)))
            return out
        except Exception:
            await self.close()  # a broken connection is made anew at the next read
            raise

    async def close(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()


OUTBOX_BACKLOG_SQL = (
    "SELECT count(*) AS rows, coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_s"
    " FROM outbox WHERE published_at IS NULL AND failed_at IS NULL"
)


async def outbox_backlog(pool: Any) -> tuple[int, float]:
    """Rows waiting in the outbox and the age of the oldest, in seconds."""
    row = await pool.fetchrow(OUTBOX_BACKLOG_SQL)
    return int(row["rows"]), float(row["oldest_age_s"])
