"""Kazam sessions through to readings (issue 19): the Kazam simulator process, this service and readings in-process
on the real broker and Postgres. The issue's 60-second ~20 kW session on a 22 kW charger becomes an accepted read
over exactly [start, end]; a session above the charger's rated power is refused by readings, and the refusal shows
in the charger's transactions."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_charger_gateway.app import build
from opendrec_charger_gateway.settings import Settings
from opendrec_contracts import DeviceRegistered
from opendrec_kit.testing import OwnerStandIn, TokenIssuer, eventually, publish_events, settings_for_test, started
from opendrec_kit.timestamps import iso_exact
from opendrec_readings.app import build as build_readings
from opendrec_readings.settings import Settings as ReadingsSettings

from .conftest import chargers_exist_on_the_platform
from .test_kazam import headers

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def platform(postgres_url, kafka_bootstrap, kazam_sim):
    url, token = kazam_sim
    owners = OwnerStandIn().start()  # read-your-writes: knows nothing, the devices arrive as events
    common = {"identity_url": owners.url, "devices_url": owners.url, "reservations_url": owners.url}
    readings = build_readings(
        settings_for_test(ReadingsSettings, postgres_url, kafka_bootstrap, service_name="readings-chargers", **common)
    )
    gateway = build(
        settings_for_test(
            Settings,
            postgres_url,
            kafka_bootstrap,
            service_name="charger-gateway-sessions",
            kazam_url=url,
            kazam_token=token,  # the platform token (dev and test): this organization registered none
            kazam_poll_seconds=0.2,
            kazam_lookback_seconds=3600,
            **common,
        )
    )
    issuer = TokenIssuer()
    issuer.trust_in(gateway)
    try:
        async with started(readings), started(gateway) as client:
            chargers_exist_on_the_platform(client, url, token)
            yield readings, gateway, client, issuer
    finally:
        owners.stop()


async def test_a_one_minute_20_kw_session_is_accepted_over_its_interval_and_one_over_rated_power_refused(
    platform, sim, kafka_bootstrap
):
    readings, _, client, issuer = platform
    device_id = uuid.uuid4().int % 10**9 + 1
    org, ext, charger = device_id + 1, f"EV-{device_id}", f"ch{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    device = DeviceRegistered(
        device_id=device_id, device_uuid=uuid.uuid4(), external_id=ext, organization_id=org, capacity_kw=22,
        country_code="IND", fuel_code="ES100", device_type_code="TC110",
        commissioning_date=now - timedelta(days=365), onboarded_at=now - timedelta(hours=12),
    )  # fmt: skip
    await publish_events(kafka_bootstrap, [device], producer="devices")

    async def linked():
        r = await client.post(
            "/api/charger", json={"chargerId": charger, "externalId": ext}, headers=headers(issuer, org)
        )
        return r if r.status_code == 201 else None

    link = (await eventually(linked, timeout=30)).json()
    # Sessions ending from the link's second on (earlier ones are not this link's), none in the future.
    end = int(datetime.fromisoformat(link["linkedAt"]).timestamp())
    await eventually(lambda: asyncio.sleep(0, time.time() >= end + 2), timeout=10)
    sessions = [
        {"start_time": end - 60, "end_time": end, "total_usage": 330.4},  # 19.8 kW for 60 s
        {"start_time": end + 1, "end_time": end + 2, "total_usage": 500},  # 1.8 MW: above 22 kW x 1.05
    ]
    txns = [(await sim.post("/simulator/transactions", json={"device_id": charger, **s})).json() for s in sessions]

    async def accepted():
        return await readings.pool.fetch(
            "SELECT start_at, end_at, wh, read_type, source FROM intervals WHERE device_id = $1", device_id
        )

    [interval] = await eventually(accepted, timeout=30)
    assert (interval["start_at"], interval["end_at"], interval["wh"], interval["read_type"], interval["source"]) == (
        datetime.fromtimestamp(end - 60, UTC), datetime.fromtimestamp(end, UTC), 330, "Delta", "kazam",
    )  # fmt: skip

    async def refused():
        listed = (await client.get(f"/api/charger/{charger}/transactions", headers=headers(issuer, org))).json()
        by_id = {t["txnId"]: t for t in listed}
        second = by_id.get(txns[1]["txn_id"])
        return by_id if second and second["outcome"] == "refused" else None

    by_id = await eventually(refused, timeout=30)
    assert by_id[txns[0]["txn_id"]]["outcome"] == "read"
    [reason] = by_id[txns[1]["txn_id"]]["refusedReasons"]
    assert reason["reason"] == (
        f"500 Wh between {iso_exact(datetime.fromtimestamp(end + 1, UTC))} and "
        f"{iso_exact(datetime.fromtimestamp(end + 2, UTC))} (1 s) is more than a 22 kW charger can deliver: "
        "at most 6 Wh (capacity × hours × 1.05)"
    )
