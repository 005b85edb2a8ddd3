"""Helpers shared by the reservations integration tests."""

import uuid
from datetime import UTC, datetime, timedelta

from opendrec_contracts.testing import device_registered
from opendrec_kit.testing import eventually, publish_events

PERMS = {"BUYER_RESERVATION_MANAGEMENT_CRUDL": "RWUD"}
# Reservations must end after now: default windows start at a midnight a month ahead.
T0 = (datetime.now(UTC) + timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)


def registered(device_id, org=500):
    return device_registered(
        device_id,
        external_id=f"d{device_id}",
        organization_id=org,
        capacity_kw=100,
        commissioning_date=T0 - timedelta(days=400),
        onboarded_at=T0 - timedelta(days=10),
    )


async def devices(runtime, kafka_bootstrap, n=2, org=500):
    """Registers `n` new devices (device.registered) and waits until the service knows them."""
    ids = [uuid.uuid4().int % 10**9 for _ in range(n)]
    await publish_events(kafka_bootstrap, [registered(i, org) for i in ids])

    async def known():
        return await runtime.pool.fetchval("SELECT count(*) FROM devices WHERE device_id = ANY($1::bigint[])", ids) == n

    await eventually(known)
    return ids


def payload(device_ids, start=T0, end=None, **kw):
    body = {
        "name": "UAT-STAGE-231122-RES1",
        "deviceIds": device_ids,
        "targetCapacityInMegaWattHour": 20,
        "reservationStartDate": start.isoformat(),
        "reservationEndDate": (end or start + timedelta(days=30)).isoformat(),
        "continueWithReservationIfOneOrMoreDevicesUnavailableForReservation": True,
        "continueWithReservationIfTargetCapacityIsLessThanDeviceTotalCapacityBetweenDuration": True,
        "authorityToExceed": True,
        "frequency": "hourly",
    }
    body.update(kw)
    return body


def buyer(issuer, org=700, permissions=PERMS, **kw):
    return issuer.headers(organization_id=org, organization_type="Buyer", role="Buyer", permissions=permissions, **kw)


async def reserve(client, headers, device_ids, path="/api/device-group", **kw):
    r = await client.post(path, json=payload(device_ids, **kw), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def outbox_drained(runtime):
    return await runtime.pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
