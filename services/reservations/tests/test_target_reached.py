"""A reservation without authority to exceed its target ends when certificates says the target was certified
(certificate.issued with target_reached): reason target_reached, at the end of the period that reached it."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts import CertificateIssued
from opendrec_kit.testing import dispatch, wait_for_event
from opendrec_reservations import handlers

from .helpers import buyer, devices, reserve

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOUR = timedelta(hours=1)


def issued(res: dict, device_id: int, period_end: datetime, *, target_reached: bool) -> CertificateIssued:
    return CertificateIssued(
        certificate_id=uuid.uuid4(),
        reservation_id=res["id"],
        reservation_uid=uuid.UUID(res["devicegroup_uid"]),
        buyer_organization_id=res["organizationId"],
        country_code="IND",
        period_start=period_end - HOUR,
        period_end=period_end,
        generation_start=period_end - HOUR,
        generation_end=period_end,
        energy_wh=5_000,
        target_reached=target_reached,
        parts=[{"device_id": device_id, "owner_organization_id": 500, "energy_wh": 5_000}],
    )


async def test_the_certificate_that_reaches_the_target_ends_the_reservation_once(service, kafka_bootstrap):
    runtime, client, issuer = service
    [device_id] = await devices(runtime, kafka_bootstrap, n=1)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    headers = buyer(issuer, org=760)
    res = await reserve(client, headers, [device_id], start=now - 5 * HOUR, end=now + 48 * HOUR,
                        targetCapacityInMegaWattHour=0.01, authorityToExceed=False)  # fmt: skip
    path = f"/api/buyer-reservation/{res['id']}"

    # A certificate that does not reach it changes nothing.
    assert await dispatch(runtime.pool, runtime.name, handlers.on_certificate_issued, issued(res, device_id, now - 3 * HOUR,
                                                                              target_reached=False))  # fmt: skip
    assert (await client.get(path, headers=headers)).json()["state"] == "active"

    reached = issued(res, device_id, now - 2 * HOUR, target_reached=True)
    assert await dispatch(runtime.pool, runtime.name, handlers.on_certificate_issued, reached)
    shown = (await client.get(path, headers=headers)).json()
    assert (shown["state"], shown["endReason"]) == ("ended", "target_reached")
    assert datetime.fromisoformat(shown["endedAt"].replace("Z", "+00:00")) == now - 2 * HOUR
    event, _ = await wait_for_event(
        kafka_bootstrap, "reservation.ended", lambda e: e["payload"]["reservation_uid"] == res["devicegroup_uid"]
    )
    assert event["payload"]["reason"] == "target_reached" and event["payload"]["device_ids"] == [device_id]

    # A late certificate saying the same (another event) ends nothing twice; its buyer cannot end it again.
    assert await dispatch(runtime.pool, runtime.name, handlers.on_certificate_issued, issued(res, device_id, now - HOUR,
                                                                              target_reached=True))  # fmt: skip
    assert (await client.get(path, headers=headers)).json()["endedAt"] == shown["endedAt"]
    again = await client.post(f"/api/device-group/{res['id']}/end", headers=headers)
    assert again.status_code == 409 and "its target was certified" in again.json()["message"]
