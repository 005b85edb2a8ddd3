"""Read-your-writes across services, against the whole platform running as processes.

A client that got 201 from one service uses what it created at once, in another service: reads for a device
just registered (readings), a reservation of it (reservations), the reservation's certificate logs
(certificates), a charger linked to it (charger-gateway), a device for an organization an API user registered a
moment ago (devices). Each service learns those entities from events, a moment later; on a miss it asks the
owner (opendrec_kit.owners). Every sequence runs back to back, many times, several at once (which is also the
load that makes events lag), and every step must succeed the first time: no retry, no wait.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from opendrec_devstack.drec_samples import (
    access_token,
    bearer,
    device_body,
    register_with_organization,
    registration_body,
    reservation_body,
    unique_tag,
)
from opendrec_devstack.kazam_sim import add_charger
from opendrec_identity.client import ApiUserClient
from opendrec_kit.timestamps import iso

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ROUNDS = 16  # sequences per test
AT_ONCE = 4  # of them running at the same time
MODULES = {
    "ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write"],
    "DEVICE_MANAGEMENT_CRUDL": ["Read", "Write"],
    "READS_MANAGEMENT_CRUDL": ["Read", "Write"],
}


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url.path} -> {r.status_code} {r.text}"
    return r.json() if r.content else None


async def user_of_new_organization(http: httpx.AsyncClient, kind: str) -> dict[str, str]:
    body = registration_body(kind, email=f"ryw-{kind.lower()}-{unique_tag()}@example.org")
    await register_with_organization(http, body)
    return bearer(await access_token(http, body["email"], body["password"]))


async def all_rounds(sequence: Any) -> None:
    slots = asyncio.Semaphore(AT_ONCE)

    async def one(n: int) -> None:
        async with slots:
            await sequence(n)

    await asyncio.gather(*(one(n) for n in range(ROUNDS)))


async def test_what_one_service_created_is_usable_at_once_in_every_other(platform):
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as http:
        developer = await user_of_new_organization(http, "Developer")
        buyer = await user_of_new_organization(http, "Buyer")
        done: list[int] = []

        async def sequence(n: int) -> None:
            external_id = f"RYW-{unique_tag()}"
            device = ok(await http.post("/api/device", json=device_body(external_id), headers=developer), 201)

            # readings: the device's first read, and its reads listed
            # (History: a past hour's energy, before the device's onboarding; a Delta read a few ms after the
            # registration would be judged implausible for its length, not refused as unknown.)
            hour = datetime(2025, 6, 1, 10, tzinfo=UTC) + timedelta(hours=n)
            read = {"type": "History", "unit": "Wh",
                    "reads": [{"starttimestamp": iso(hour), "endtimestamp": iso(hour + timedelta(hours=1)), "value": 50_000}]}  # fmt: skip
            ok(await http.post(f"/api/meter-reads/new/{external_id}", json=read, headers=developer), 201)
            ok(await http.get(f"/api/meter-reads/{external_id}", headers=developer))

            # charger-gateway: a Kazam charger linked to it
            charger = {"chargerId": uuid.uuid4().hex[:8], "externalId": external_id}
            await add_charger(platform.kazam_url, platform.kazam_token, charger["chargerId"])  # Kazam sees it
            ok(await http.post("/api/charger", json=charger, headers=developer), 201)

            # reservations: the buyer reserves it; certificates: the reservation's logs, by id and by uid
            group = ok(
                await http.post(
                    "/api/device-group", json=reservation_body(f"RYW-{n}-{unique_tag()}", [device["id"]]), headers=buyer
                ),
                201,
            )
            by_id = ok(await http.get("/api/certificate-log/by-reservation-groupId", params={"groupId": group["id"]},
                                      headers=buyer))  # fmt: skip
            assert by_id is not None
            by_uid = ok(
                await http.get(f"/api/certificate-log/issuer/certified/{group['devicegroup_uid']}", headers=buyer)
            )
            assert by_uid is not None
            done.append(n)

        await all_rounds(sequence)
        assert sorted(done) == list(range(ROUNDS))


async def test_an_api_user_acts_at_once_for_an_organization_it_just_registered(platform):
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as http:
        admin = bearer(await access_token(http, platform.admin_email, platform.admin_password))
        body = registration_body("ApiUser", email=f"ryw-api-{unique_tag()}@example.org")
        created = ok(await http.post("/api/user/register", json=body), 201)
        api_user_id, pem = created["apiUserId"], created["privateKey"]
        client = ApiUserClient(str(http.base_url), api_user_id, pem)
        request = [{"moduleName": m, "permissions": actions} for m, actions in MODULES.items()]
        token = await asyncio.to_thread(client.token)
        ok(await http.post("/api/permission/module/apiuser/request", json=request, headers=bearer(token)))
        approval = {"status": "Active"}
        ok(await http.put(f"/api/permission/module/verify/ByAdmin/{api_user_id}", json=approval, headers=admin))
        # The approval revoked the token the API user had: a new client signs a new assertion.
        integrator = bearer(await asyncio.to_thread(ApiUserClient(str(http.base_url), api_user_id, pem).token))

        async def sequence(n: int) -> None:
            organization = registration_body("Developer", email=f"ryw-dev-{unique_tag()}@example.org",
                                             api_user_id=api_user_id)  # fmt: skip
            registered = ok(await http.post("/api/user/register", json=organization, headers=integrator), 201)
            organization_id = registered["organization"]["id"]
            external_id = f"RYW-API-{n}-{unique_tag()}"
            device = ok(
                await http.post(
                    "/api/device", json={**device_body(external_id), "organizationId": organization_id},
                    headers=integrator,
                ),
                201,
            )  # fmt: skip
            assert device["organizationId"] == organization_id
            listed = ok(
                await http.get("/api/device/my", params={"organizationId": organization_id}, headers=integrator)
            )
            assert external_id in str(listed)

        await all_rounds(sequence)
