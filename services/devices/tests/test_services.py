"""The use cases called directly (as the adapters call them): read models fed through `dispatch`, the bulk
worker woken by an upload, a batch step with nothing to do."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts import ReservationCreated, ReservationUpdated, envelope_for
from opendrec_devices import handlers, services, store
from opendrec_kit.testing import dispatch, eventually

from .test_api import dev, new_org, payload
from .test_bulk import developer, good, to_csv, upload
from .test_changes import ended, reservation
from .test_listings import buyer

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONSUMER = "devices.test-services"


@pytest.fixture(scope="module")
def settings_overrides() -> dict:
    # the worker would look for jobs only once a minute: a job done sooner was started by the upload's wake-up
    return {"bulk_poll_interval_s": 60.0}


@pytest.fixture
def runtime(service):
    client, _ = service
    return client.runtime


def any_device_id() -> int:
    """A device id no device has: the read models take any."""
    return uuid.uuid4().int % 10**9 + 10**12


async def holding(pool, device_id):
    async with pool.acquire() as conn:
        return await store.active_reservations(conn, device_id)


async def test_the_first_end_of_a_reservation_counts_and_redeliveries_are_dropped(runtime):
    device_id = any_device_id()
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


async def test_a_reservation_holds_its_devices_until_it_ends(runtime):
    device_id = any_device_id()
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


def updated(created: ReservationCreated, revision: int, end: datetime, **changes) -> ReservationUpdated:
    """reservation.updated for a reservation, as the reservations service announces a PATCH: its full terms."""
    # the created terms (frequency, not part of an update, is ignored), a new revision and end
    return ReservationUpdated.model_validate(
        {**created.model_dump(), "revision": revision, "reservation_end": end, **changes}
    )


async def follow(runtime, handler, event, envelope=None) -> bool:
    return await dispatch(runtime.pool, runtime.name, handler, event, consumer=CONSUMER, envelope=envelope)


async def held_until(pool, reservation_id):
    rows = await pool.fetch(
        "SELECT device_id, reservation_end, revision FROM reservation_devices WHERE reservation_id = $1 "
        "ORDER BY device_id",
        reservation_id,
    )
    return [(r["device_id"], r["reservation_end"], r["revision"]) for r in rows]


async def test_an_updated_end_moves_the_window_in_the_listing_of_available_devices(service):
    client, issuer = service
    runtime = client.runtime
    marker = f"upd-{uuid.uuid4().hex[:6]}"
    org = new_org()
    r = await client.post("/api/device", json=payload(fuelCode="ES520", projectName=marker), headers=dev(issuer, org))
    assert r.status_code == 201, r.text
    device_id = r.json()["id"]
    now = datetime.now(UTC)
    created = reservation([device_id], now - timedelta(days=10), now - timedelta(days=1))  # over already

    async def offered() -> bool:
        r = await client.get(
            "/api/device/ungrouped/buyerreservation",
            params={"fuelCode": "ES520", "limit": 100},
            headers=buyer(issuer),
        )
        assert r.status_code == 200, r.text
        return device_id in [d["id"] for d in r.json()["devices"] if d["projectName"] == marker]

    assert await follow(runtime, handlers.on_reservation_created, created)
    assert await offered() and await holding(runtime.pool, device_id) == []
    # the buyer moves the end date later: the device is held again, until the new end
    later = now + timedelta(days=20)
    assert await follow(runtime, handlers.on_reservation_updated, updated(created, 1, later))
    assert not await offered() and await holding(runtime.pool, device_id) == [created.reservation_id]
    assert await held_until(runtime.pool, created.reservation_id) == [(device_id, later, 1)]
    # and back to an end already past: free again
    assert await follow(runtime, handlers.on_reservation_updated, updated(created, 2, now - timedelta(hours=1)))
    assert await offered() and await holding(runtime.pool, device_id) == []


async def test_an_older_or_redelivered_revision_changes_nothing(runtime):
    device_id = any_device_id()
    now = datetime.now(UTC)
    created = reservation([device_id], now - timedelta(days=1), now + timedelta(days=30))
    second = updated(created, 2, now + timedelta(days=60))
    first = updated(created, 1, now - timedelta(hours=1))
    assert await follow(runtime, handlers.on_reservation_created, created)
    envelope = envelope_for(second, "reservations")
    assert await follow(runtime, handlers.on_reservation_updated, second, envelope)
    assert not await follow(runtime, handlers.on_reservation_updated, second, envelope)  # a redelivery: dropped
    assert await follow(runtime, handlers.on_reservation_updated, second)  # the same revision again: ignored
    assert await follow(runtime, handlers.on_reservation_updated, first)  # an older revision, late: ignored
    assert await follow(runtime, handlers.on_reservation_created, created)  # reservation.created replayed: ignored
    assert await held_until(runtime.pool, created.reservation_id) == [(device_id, second.reservation_end, 2)]
    assert await holding(runtime.pool, device_id) == [created.reservation_id]
    # the use case itself tells a change it ignored
    assert not await services.record_reservation_change(runtime.uow(), first)


async def test_an_update_heard_before_its_reservation_stands_and_an_end_stays(runtime):
    device_id, other = any_device_id(), any_device_id()
    now = datetime.now(UTC)
    created = reservation([device_id], now - timedelta(days=1), now - timedelta(hours=1))  # over by its own terms
    change = updated(created, 1, now + timedelta(days=30))
    assert await follow(runtime, handlers.on_reservation_updated, change)  # another topic: it may come first
    assert await holding(runtime.pool, device_id) == [created.reservation_id]
    assert await follow(runtime, handlers.on_reservation_created, created)
    assert await held_until(runtime.pool, created.reservation_id) == [(device_id, change.reservation_end, 1)]
    assert await holding(runtime.pool, device_id) == [created.reservation_id]

    # a later revision with other devices: the reservation holds exactly those
    moved = updated(created, 2, now + timedelta(days=40)).model_copy(update={"device_ids": [other, other]})
    assert await follow(runtime, handlers.on_reservation_updated, moved)
    assert await held_until(runtime.pool, created.reservation_id) == [(other, moved.reservation_end, 2)]
    assert await holding(runtime.pool, device_id) == []

    # ended: an update after the end (delivered late) does not hold the devices again
    assert await follow(runtime, handlers.on_reservation_ended, ended(created))
    assert await follow(runtime, handlers.on_reservation_updated, updated(created, 3, now + timedelta(days=90)))
    assert await holding(runtime.pool, other) == []


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
