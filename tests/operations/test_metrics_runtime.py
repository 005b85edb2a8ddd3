"""What every service exposes on /metrics, from the kit alone: a sample service on the real database and broker."""

import uuid
from pathlib import Path

import pytest
from fastapi import APIRouter
from prometheus_client.parser import text_string_to_metric_families

from opendrec_contracts import DeviceRegistered
from opendrec_contracts.testing import device_registered
from opendrec_kit import EventContext, ServiceRuntime, ServiceSettings, UoW, metrics
from opendrec_kit.testing import eventually, settings_for_test, started

pytestmark = pytest.mark.asyncio(loop_scope="session")

SAMPLE_MIGRATIONS = Path(__file__).parents[2] / "libs/kit/tests/sample_migrations"
FAILS = 999_999_002


def build(settings: ServiceSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="sample", migrations=SAMPLE_MIGRATIONS)
    router = APIRouter()

    @router.post("/devices/{device_id}")
    async def register(device_id: int, uow: UoW) -> dict:
        async with uow:
            uow.record(device_registered(device_id))
        return {"written": True}

    async def on_device(event: DeviceRegistered, ctx: EventContext) -> None:
        if event.device_id == FAILS:
            raise ValueError("this device always fails")
        await ctx.conn.execute("INSERT INTO notes (device_id, trace_id) VALUES ($1, '')", event.device_id)

    runtime.include_router(router)
    runtime.on(DeviceRegistered, on_device)
    return runtime


@pytest.fixture(scope="module")
async def service(postgres_url, kafka_bootstrap):
    settings = settings_for_test(
        ServiceSettings, postgres_url, kafka_bootstrap, service_name="metricsample", consumer_max_attempts=2
    )
    runtime = build(settings)
    async with started(runtime) as client:
        yield runtime, client


def samples(text: str, name: str, **labels: str) -> list[float]:
    """Values of the samples called `name` whose labels include `labels`."""
    return [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


async def scrape(client) -> str:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


async def test_requests_are_counted_by_route_template_method_and_status(service):
    _runtime, client = service
    before = samples(
        await scrape(client), "http_server_request_duration_seconds_count", http_route="/devices/{device_id}"
    )
    ids = [uuid.uuid4().int % 10**9 for _ in range(3)]
    for device_id in ids:
        assert (await client.post(f"/devices/{device_id}")).status_code == 200
    assert (await client.post("/devices/not-a-number")).status_code == 400
    assert (await client.get("/nowhere")).status_code == 404
    assert (await client.request("BREW", f"/devices/{ids[0]}")).status_code == 405

    text = await scrape(client)
    ok = samples(
        text,
        "http_server_request_duration_seconds_count",
        http_route="/devices/{device_id}",
        http_request_method="POST",
        http_response_status_code="200",
    )
    assert ok and ok[0] - (sum(before) if before else 0) >= 3  # one series for every id: the template, not the path
    assert samples(text, "http_server_request_duration_seconds_count", http_response_status_code="400")
    unmatched = [
        s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "http_server_request_duration_seconds_count"
        and s.labels.get("http_response_status_code") == "404"
        and s.labels.get("http_route", "") == ""
    ]
    # no route: counted without a route label, and the raw path is no label (the registry is the process's: other
    # services' routes answering 404 in the same test run are theirs)
    assert unmatched and "nowhere" not in text
    assert not any(str(i) in text for i in ids)  # no device id leaks into a label
    buckets = samples(text, "http_server_request_duration_seconds_bucket", http_route="/devices/{device_id}")
    assert buckets  # a histogram, with the semantic conventions' buckets
    assert "/metrics" not in text  # scrapes are not counted
    # a method HTTP does not define is _OTHER: a client cannot add series
    assert samples(text, "http_server_request_duration_seconds_count", http_request_method="_OTHER")
    assert "BREW" not in text


async def test_handled_events_handler_latency_failures_and_dead_letters(service):
    runtime, client = service
    group = next(iter(runtime.consumer_groups))
    device_id = uuid.uuid4().int % 10**9
    await client.post(f"/devices/{device_id}")
    await client.post(f"/devices/{FAILS}")

    async def both_taken() -> str | None:
        text = await scrape(client)
        handled = samples(
            text, "opendrec_consumer_messages_total", messaging_consumer_group_name=group, outcome="handled"
        )
        dead = samples(
            text, "opendrec_consumer_messages_total", messaging_consumer_group_name=group, outcome="dead_lettered"
        )
        return text if handled and handled[0] >= 1 and dead and dead[0] >= 1 else None

    text = await eventually(both_taken)
    latency = samples(text, "messaging_process_duration_seconds_count", opendrec_event_type="device.registered")
    assert latency and latency[0] >= 3  # the handled one and both attempts of the failing one
    failed = samples(
        text,
        "opendrec_consumer_failed_attempts_total",
        opendrec_event_type="device.registered",
        error_type="ValueError",
    )
    assert failed and failed[0] >= 2  # CONSUMER_MAX_ATTEMPTS=2: two failed attempts, then the DLQ


async def test_lag_backlog_relay_and_pool_are_measured(service):
    runtime, client = service
    assert "metrics" in runtime.worker_status()
    await client.post(f"/devices/{uuid.uuid4().int % 10**9}")
    database = runtime.settings.database_name
    group = next(iter(runtime.consumer_groups))

    async def measured() -> str | None:
        await runtime.measure()  # what the metrics worker does every METRICS_INTERVAL_S
        text = await scrape(client)
        lag = samples(text, "messaging_kafka_consumer_lag", messaging_consumer_group_name=group)
        backlog = samples(text, "opendrec_outbox_backlog", db_namespace=database)
        # the relay caught up, and the group's lag is measured per partition (that it drains is test_cli's
        # test_lag_per_service_group_and_partition_drains: this group reads a topic every test module writes to)
        return text if lag and all(v >= 0 for v in lag) and backlog and backlog[0] == 0 else None

    text = await eventually(measured, timeout=60)
    lag = [
        s.labels
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "messaging_kafka_consumer_lag" and s.labels["messaging_consumer_group_name"] == group
    ]
    assert {labels["messaging_destination_name"] for labels in lag} == {"device.registered"}
    assert "0" in {labels["messaging_destination_partition_id"] for labels in lag}  # a series per partition
    assert samples(text, "opendrec_outbox_oldest_age_seconds", db_namespace=database) == [0.0]
    assert samples(text, "opendrec_outbox_published_total", db_namespace=database)[0] >= 1
    used = samples(
        text, "db_client_connection_count", db_client_connection_pool_name=database, db_client_connection_state="used"
    )
    idle = samples(
        text, "db_client_connection_count", db_client_connection_pool_name=database, db_client_connection_state="idle"
    )
    assert used and idle and used[0] + idle[0] >= 1
    assert samples(text, "db_client_connection_pending_requests", db_client_connection_pool_name=database) == [0.0]


async def test_lag_counts_what_the_group_has_not_committed(service, kafka_bootstrap):
    """The lag reader against a group that never consumed: the whole topic is its lag."""
    runtime, client = service
    await client.post(f"/devices/{uuid.uuid4().int % 10**9}")
    reader = metrics.LagReader(kafka_bootstrap)
    try:
        nobody = f"nobody-{uuid.uuid4().hex[:8]}"
        lags = await reader.read({nobody: "device.registered"})
        own = await reader.read(dict(runtime.consumer_groups))
    finally:
        await reader.close()
    assert lags and all(lag.committed is None for lag in lags)
    assert sum(lag.lag for lag in lags) == sum(lag.end for lag in lags) - sum(lag.end - lag.lag for lag in lags)
    assert sum(lag.lag for lag in lags) >= 1
    assert all(lag.committed is not None for lag in own)
