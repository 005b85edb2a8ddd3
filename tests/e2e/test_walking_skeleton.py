"""The walking skeleton: every step through the gateway over real HTTP, broker and Postgres,
with every service running as its own process (the same launcher as `make run`)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
from opendrec_kit.testing import eventually, wait_for_event
from opendrec_kit.timestamps import iso

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def register_and_login(http: httpx.AsyncClient, org_type: str) -> str:
    """A user of a new organization (the D-REC registration sample), logged in: their token."""
    tag = unique_tag()
    body = registration_body(org_type, email=f"UAT_{org_type.upper()}_{tag}@example.org", orgName=f"Org {tag}")
    await register_with_organization(http, body)
    return await access_token(http, body["email"], body["password"])


async def post_read(http, auth, external_id, end: datetime, value: int, expect=201):
    body = {"type": "Delta", "unit": "Wh", "reads": [{"starttimestamp": " ", "endtimestamp": iso(end), "value": value}]}

    async def accepted():
        r = await http.post(f"/api/meter-reads/new/{external_id}", json=body, headers=auth)
        if r.status_code == 404:  # the readings service learns of the device from device.registered: wait for it
            return None
        return r

    r = await eventually(accepted)
    assert r.status_code == expect, r.text
    return r


async def add_kazam_transaction(platform, charger_id: str, start: datetime, end: datetime, usage_wh: float) -> str:
    """A finished charging session at the Kazam simulator (its control API); returns the txn id."""
    async with httpx.AsyncClient(
        base_url=platform.kazam_url, headers={"Authorization": f"Bearer {platform.kazam_token}"}
    ) as kazam:
        r = await kazam.post(
            "/simulator/transactions",
            json={
                "device_id": charger_id,
                "start_time": int(start.timestamp()),
                "end_time": int(end.timestamp()),
                "total_usage": usage_wh,
            },
        )
        assert r.status_code == 201, r.text
        return r.json()["txn_id"]


def spans_of(traces_dir: Path, trace_id: str) -> dict[str, set[str]]:
    """service -> span names of one trace, from the JSON-lines span files every process writes."""
    found: dict[str, set[str]] = {}
    for path in traces_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            span = json.loads(line)
            if span["context"]["trace_id"] == f"0x{trace_id}":
                found.setdefault(span["resource"]["attributes"]["service.name"], set()).add(span["name"])
    return found


async def test_walking_skeleton(platform):
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200 and all(v["status"] == "ready" for v in health.json()["services"].values()), (
            health.text
        )

        # 1. A developer registers with an organization and logs in.
        dev = bearer(await register_and_login(http, "Developer"))

        # 2. The developer registers a device -> device.registered on Kafka. Our traceparent starts the trace.
        external_id = f"UAT_STAGE_{uuid.uuid4().hex[:8]}"
        trace_id = uuid.uuid4().hex
        r = await http.post(
            "/api/device",
            json=device_body(external_id, capacity=2000),  # the Postman collection's "Register Device"
            headers={**dev, "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"},
        )
        assert r.status_code == 201, r.text
        device = r.json()
        registered, _ = await wait_for_event(
            platform.kafka_bootstrap, "device.registered", lambda e: e["payload"]["external_id"] == external_id
        )
        assert registered["payload"]["device_id"] == device["id"] and registered["payload"]["country_code"] == "IND"

        # 3. A Delta read -> read.ingested.
        # (Small values: a Delta read counts from the device's onboarding a moment ago, and the
        # plausibility rule bounds what 2 MW can make in milliseconds.)
        await post_read(http, dev, external_id, datetime.now(UTC), 1)
        ingested, _ = await wait_for_event(
            platform.kafka_bootstrap, "read.ingested", lambda e: e["payload"]["external_id"] == external_id
        )
        assert ingested["version"] == 2 and ingested["payload"]["values_wh"] == [1]

        # 4. A buyer registers, logs in and reserves the device, hourly.
        buyer = bearer(await register_and_login(http, "Buyer"))
        reservation = reservation_body(f"UAT-RES-{uuid.uuid4().hex[:6]}", [device["id"]])

        async def reserved():
            r = await http.post("/api/device-group", json=reservation, headers=buyer)
            return r if r.status_code != 400 or "unknown device" not in r.text else None

        r = await eventually(reserved)
        assert r.status_code == 201, r.text
        group_id = r.json()["id"]

        # 5. Reads inside the window lead to certificates within seconds.
        second_end = datetime.now(UTC)
        await post_read(http, dev, external_id, second_end, 2)

        async def certified():
            r = await http.get(
                "/api/certificate-log/by-reservation-groupId", params={"groupId": group_id}, headers=buyer
            )
            # D-REC's per-device issue log: an array, the energy of each certificate in readvalue_watthour
            return r.json() if r.status_code == 200 and sum(c["readvalue_watthour"] for c in r.json()) == 3 else None

        log = await eventually(certified)
        assert all(c["deviceId"] == device["id"] and c["groupId"] == group_id for c in log)

        # 6. The charger gateway turns a finished Kazam transaction into a read of the linked device.
        charger_id = uuid.uuid4().hex[:6]

        async def linked():
            r = await http.post("/api/charger", json={"chargerId": charger_id, "externalId": external_id}, headers=dev)
            return r if r.status_code != 404 else None

        assert (await eventually(linked)).status_code == 201
        # A charging session after the link (earlier ones are not polled) and so after the last read (Delta
        # reads move forward in time). Kazam counts whole seconds and a read may not end in the future: wait
        # for the clock to pass the session's end.
        start = datetime.fromtimestamp(int(max(second_end, datetime.now(UTC)).timestamp()) + 1, UTC)
        end = start + timedelta(seconds=1)
        await eventually(_sync(lambda: datetime.now(UTC) > end), timeout=5, interval=0.02)
        txn = await add_kazam_transaction(platform, charger_id, start, end, usage_wh=40)

        async def charger_read():
            r = await http.get(f"/api/meter-reads/new/{external_id}", headers=dev)
            assert r.status_code == 200, r.text
            return [x for x in r.json()["ongoing"] if x["value"] == 40] or None

        [_read] = await eventually(charger_read, timeout=30)
        submitted, _ = await wait_for_event(
            platform.kafka_bootstrap, "read.submitted", lambda e: e["payload"]["submission_id"] == f"kazam:{txn}"
        )
        assert submitted["payload"]["external_id"] == external_id

        # The trace begun at the gateway continued into devices and, over Kafka, into its consumers.
        def traced():
            found = spans_of(platform.traces_dir, trace_id)
            return found if {"gateway", "devices", "readings"} <= set(found) else None

        found = await eventually(_sync(traced), timeout=10)
        assert "device.registered process" in found["readings"]


def _sync(fn):
    async def check():
        return fn()

    return check
