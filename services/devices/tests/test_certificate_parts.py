"""certificate.issued v2 (issue 14): one certificate of a reservation, country and period holds every device in a
part of its own; each device's certified total adds its parts, and a redelivery counts once. A v1 event (one
device) is read as one part."""

import uuid
from datetime import timedelta

import pytest

from opendrec_contracts import CertificateIssued, CertificatePart, Envelope, parse_event
from opendrec_devices import handlers

from .test_api import dev, new_org
from .test_device_helpers import NOW, follow, register, reserve

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def totals(client, headers):
    r = await client.get("/api/device/my/totalamountread", headers=headers)
    assert r.status_code == 200, r.text
    return {d["id"]: d["totalcertifiedReadValue"] for d in r.json()}


async def test_each_part_counts_for_its_device_once(service):
    client, issuer = service
    org = new_org()
    headers = dev(issuer, org)
    first, second = await register(client, headers), await register(client, headers)
    created = await reserve(client, [first["id"], second["id"]])
    start, end = NOW - timedelta(days=2), NOW - timedelta(days=1)
    certificate = CertificateIssued(
        certificate_id=uuid.uuid4(),
        reservation_id=created.reservation_id,
        reservation_uid=created.reservation_uid,
        buyer_organization_id=created.buyer_organization_id,
        country_code="IND",
        period_start=start,
        period_end=end,
        generation_start=start,
        generation_end=end,
        energy_wh=3000,
        carry_in_wh=400,
        carry_out_wh=900,
        parts=[
            CertificatePart(device_id=first["id"], owner_organization_id=org, energy_wh=1000),
            CertificatePart(device_id=second["id"], owner_organization_id=org, energy_wh=2000),
        ],
    )
    await follow(client, handlers.on_certificate_issued, certificate)
    assert await totals(client, headers) == {first["id"]: 1000, second["id"]: 2000}
    # the same certificate again (a replay under a new event id): nothing more
    await follow(client, handlers.on_certificate_issued, certificate)
    assert await totals(client, headers) == {first["id"]: 1000, second["id"]: 2000}
    # a v1 event (one device, no parts) is upcast to one part
    v1 = Envelope(
        type="certificate.issued",
        version=1,
        producer="certificates",
        payload={
            "certificate_id": str(uuid.uuid4()),
            "reservation_id": created.reservation_id,
            "reservation_uid": str(created.reservation_uid),
            "device_id": second["id"],
            "buyer_organization_id": created.buyer_organization_id,
            "owner_organization_id": org,
            "generation_start": start.isoformat(),
            "generation_end": end.isoformat(),
            "energy_wh": 500,
        },
    )
    await follow(client, handlers.on_certificate_issued, parse_event(v1))
    assert await totals(client, headers) == {first["id"]: 1000, second["id"]: 2500}
