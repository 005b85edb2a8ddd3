"""The use cases called directly (as the adapters call them): read models fed through `dispatch`, the bulk
worker woken by an upload, a batch step with nothing to do."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts import envelope_for
from opendrec_devices import handlers, services, store
from opendrec_kit.testing import dispatch, eventually

from .test_api import new_org
from .test_bulk import developer, good, to_csv, upload
from .test_changes import ended, reservation

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONSUMER = "devices.test-services"


@pytest.fixture(scope="module")
def settings_overrides() -> dict:
    # the worker would look for jobs only once a minute: a job done sooner was started by the upload's wake-up
    return {"bulk_poll_interval_s": 60.0}


async def holding(pool, device_id):
    async with pool.acquire() as conn:
        return await store.active_reservations(conn, device_id)


async def test_the_first_end_of_a_reservation_counts_and_redeliveries_are_dropped(service):
    client, _ = service
    runtime = client.runtime
    device_id = uuid.uuid4().int % 10**9 + 10**12  # the read models take any device id
    now = datetime.now(UTC)
    created = reservation([device_id, device_id], now - timedelta(days=1), now + timedelta(days=30))
    first_end = ended(created)
    later_end = first_end.model_copy(update={"ended_at": now + timedelta(hours=1), "reason": "expired"})

    # the end arrives before the reservation: remembered, so the reservation never holds the device
    assert await dispatch(runtime.pool, runtime.name, handlers.on_reservation_ended, first_end, consumer=CONSUMER)
    assert await dispatch(runtime.pool, runtime.name, handlers.on_reservation_created, created, consumer=CONSUMER)
    assert await holding(runtime.pool, device_id) == []
    assert await dispatch(runtime.pool, runtime.name, handlers.on_reservation_ended, later_end, consumer=CONSUMER)
    row = await runtime.pool.fetchrow(
        "SELECT ended_at, reason FROM ended_reservations WHERE reservation_id = $1", created.reservation_id
    )
    assert (row["ended_at"], row["reason"]) == (first_end.ended_at, first_end.reason)
    count = await runtime.pool.fetchval(
        "SELECT count(*) FROM reservation_devices WHERE reservation_id = $1", created.reservation_id
    )
    assert count == 1  # a device named twice is held once


async def test_a_reservation_holds_its_devices_until_it_ends(service):
    client, _ = service
    runtime = client.runtime
    device_id = uuid.uuid4().int % 10**9 + 10**12
    now = datetime.now(UTC)
    created = reservation([device_id], now - timedelta(days=1), now + timedelta(days=30))
    envelope = envelope_for(created, "reservations")
    assert await dispatch(
        runtime.pool, runtime.name, handlers.on_reservation_created, created, consumer=CONSUMER, envelope=envelope
    )
    assert not await dispatch(  # the same envelope again: a redelivery
        runtime.pool, runtime.name, handlers.on_reservation_created, created, consumer=CONSUMER, envelope=envelope
    )
    assert await holding(runtime.pool, device_id) == [created.reservation_id]
    assert await dispatch(runtime.pool, runtime.name, handlers.on_reservation_ended, ended(created), consumer=CONSUMER)
    assert await holding(runtime.pool, device_id) == []


async def test_an_upload_wakes_the_bulk_worker(service):
    client, issuer = service
    runtime = client.runtime
    worker = runtime.app.state.bulk_worker
    await eventually(lambda: _true(worker.status == "ok"))  # it has looked once, found nothing, and sleeps
    assert runtime.worker_status()["bulk-onboarding"] == "ok"
    steps = worker.steps
    assert not await services.process_batch(runtime.uow(), 10)  # nothing to do: idle

    org = new_org()
    headers = developer(issuer, org)
    tag = uuid.uuid4().hex[:6]
    job = (await upload(client, headers, to_csv([good(f"{tag}-{i}") for i in range(3)]))).json()

    async def done():
        r = await client.get(f"/api/device/bulk-jobs/{job['jobId']}", headers=headers)
        return r.json()["status"] == "completed"

    await eventually(done, timeout=15)  # well before the minute's poll
    assert worker.steps > steps


async def _true(value):
    return value
