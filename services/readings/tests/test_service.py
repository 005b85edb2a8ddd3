"""The readings service against a real Postgres and a real Kafka-protocol broker.

Devices arrive as device.registered envelopes on the broker, reads over HTTP or as
read.submitted envelopes; what is stored is read back from the service's database and
what is announced from the read.ingested topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from opendrec_contracts import (
    DeviceDeleted,
    DeviceRegistered,
    DeviceUpdated,
    Envelope,
    MeterRead,
    ReadSubmitted,
    ReservationCreated,
    ReservationEnded,
    ReservationUpdated,
    envelope_for,
    parse_event,
)
from opendrec_kit.testing import (
    OwnerStandIn,
    TokenIssuer,
    dispatch,
    eventually,
    publish_envelopes,
    publish_events,
    settings_for_test,
    started,
    wait_for_event,
)
from opendrec_kit.timestamps import iso
from opendrec_readings import services
from opendrec_readings.app import build
from opendrec_readings.handlers import Handlers
from opendrec_readings.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

H = timedelta(hours=1)
RW = {"READS_MANAGEMENT_CRUDL": "RW"}


@contextlib.asynccontextmanager
async def running(postgres_url: str, kafka_bootstrap: str, **settings):
    """The readings service in-process (`settings` on top of the test ones, e.g. its own service_name: its own
    database and consumer groups), trusting a test token issuer; yields (runtime, client, issuer). The services it
    asks on a miss (read-your-writes: identity, devices) are a stand-in knowing nothing, unless their url is given."""
    owner = OwnerStandIn().start()
    settings = {"identity_url": owner.url, "devices_url": owner.url, "reservations_url": owner.url, **settings}
    runtime = build(settings_for_test(Settings, postgres_url, kafka_bootstrap, **settings))
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    try:
        async with started(runtime) as client:
            yield runtime, client, issuer
    finally:
        owner.stop()


@pytest.fixture(scope="module")
async def service(postgres_url, kafka_bootstrap):
    async with running(postgres_url, kafka_bootstrap) as (runtime, client, issuer):
        yield Service(runtime, client, issuer, kafka_bootstrap)


class Service:
    def __init__(self, runtime, client, issuer, bootstrap):
        self.runtime, self.client, self.issuer, self.bootstrap = runtime, client, issuer, bootstrap

    def headers(self, organization_id: int, **extra) -> dict[str, str]:
        return self.issuer.headers(user_id=7, organization_id=organization_id, permissions=RW) | extra

    async def fetch(self, sql: str, *args):
        return await self.runtime.pool.fetch(sql, *args)

    async def intervals(self, device_id: int):
        return await self.fetch(
            "SELECT start_at, end_at, wh, read_type, source, batch_id FROM intervals WHERE device_id = $1 ORDER BY end_at",
            device_id,
        )

    async def register(
        self, *, onboarded_days_ago: float = 30, capacity_kw: float = 100, yield_value: float | None = None
    ) -> DeviceRegistered:
        """Publish device.registered as the devices service would, and wait until this service knows the device."""
        device = new_device(onboarded_days_ago=onboarded_days_ago, capacity_kw=capacity_kw, yield_value=yield_value)
        await publish_events(self.bootstrap, [device])
        await eventually(lambda: self.fetch("SELECT 1 FROM devices WHERE device_id = $1", device.device_id))
        return device

    async def post(self, device: DeviceRegistered, body: dict, organization_id: int | None = None, **headers):
        return await self.client.post(
            f"/api/meter-reads/new/{device.external_id}",
            json=body,
            headers=self.headers(organization_id or device.organization_id, **headers),
        )


def new_id() -> int:
    return uuid.uuid4().int % 10**9 + 1


def new_device(
    *, onboarded_days_ago: float = 30, capacity_kw: float = 100, yield_value: float | None = None
) -> DeviceRegistered:
    now = datetime.now(UTC).replace(microsecond=0)
    device_id = new_id()
    return DeviceRegistered(
        device_id=device_id, device_uuid=uuid.uuid4(), external_id=f"EXT-{device_id}", organization_id=new_id(),
        capacity_kw=capacity_kw, country_code="IND", fuel_code="ES100", device_type_code="TC110",
        commissioning_date=now - timedelta(days=700), onboarded_at=now - timedelta(days=onboarded_days_ago),
        timezone=None, yield_value=yield_value,
    )  # fmt: skip


def delta(device: DeviceRegistered, hours: list[int], wh: int = 1000) -> dict:
    """A Delta request as the D-REC examples send it: blank start, UTC end."""
    return {
        "type": "Delta",
        "unit": "Wh",
        "reads": [
            {"starttimestamp": " ", "endtimestamp": iso(device.onboarded_at + h * H), "value": wh} for h in hours
        ],
    }


def ingested(batch_id: str):
    return lambda envelope: envelope["type"] == "read.ingested" and envelope["payload"]["batch_id"] == batch_id


# -- HTTP: add reads -------------------------------------------------------------------


async def test_delta_batch_is_stored_and_announced_once_with_its_reads(service):
    device = await service.register()
    body = delta(device, [1, 2, 4])
    body["unit"] = "kWh"
    for r, value in zip(body["reads"], ["1.5", "2", "0.25"], strict=True):
        r["value"] = float(value)
    response = await service.post(device, body)
    assert response.status_code == 201, response.text
    summary = response.json()
    assert summary["count"] == 3 and summary["totalWh"] == 3750 and summary["type"] == "Delta"
    assert summary["firstTimestamp"] == iso(device.onboarded_at)  # the first Delta read counts from onboarding
    assert summary["lastTimestamp"] == iso(device.onboarded_at + 4 * H)

    rows = await service.intervals(device.device_id)
    assert [(r["start_at"], r["end_at"], r["wh"]) for r in rows] == [
        (device.onboarded_at, device.onboarded_at + H, 1500),
        (device.onboarded_at + H, device.onboarded_at + 2 * H, 2000),
        (device.onboarded_at + 2 * H, device.onboarded_at + 4 * H, 250),
    ]
    assert {(r["read_type"], r["source"], str(r["batch_id"])) for r in rows} == {("Delta", "api", summary["batchId"])}

    envelope, _ = await wait_for_event(service.bootstrap, "read.ingested", ingested(summary["batchId"]))
    payload = envelope["payload"]
    assert (payload["device_id"], payload["external_id"], payload["organization_id"], payload["read_type"]) == (
        device.device_id, device.external_id, device.organization_id, "Delta",
    )  # fmt: skip
    assert parse_event(Envelope.model_validate(envelope)).intervals() == [
        (r["start_at"], r["end_at"], r["wh"]) for r in rows
    ]

    # Read back through the API, D-REC style, and the latest read.
    listing = await service.client.get(
        f"/api/meter-reads/new/{device.external_id}",
        params={"limit": 2, "pagenumber": 2},
        headers=service.headers(device.organization_id),
    )
    assert listing.status_code == 200, listing.text
    assert listing.json() == {
        "historyread": [],
        "ongoing": [
            {"startdate": iso(device.onboarded_at + 2 * H), "enddate": iso(device.onboarded_at + 4 * H), "value": 250}
        ],
        "numberOfReads": 3,
        "numberOfPages": 2,
        "currentPageNumber": 2,
    }
    window = await service.client.get(
        f"/api/meter-reads/new/{device.external_id}",
        params={"start": iso(device.onboarded_at + H), "end": iso(device.onboarded_at + 2 * H)},
        headers=service.headers(device.organization_id),
    )
    assert [r["value"] for r in window.json()["ongoing"]] == [2000]
    latest = await service.client.get(
        f"/api/meter-reads/latestread/{device.external_id}", headers=service.headers(device.organization_id)
    )
    assert latest.json() == {"enddate": iso(device.onboarded_at + 4 * H), "value": 250, "readType": "Delta"}


async def test_batch_with_bad_reads_is_refused_whole_with_index_and_reason(service):
    device = await service.register()
    body = delta(device, [1, 2, 3, 5])
    body["reads"][1]["value"] = 0
    body["reads"][3]["endtimestamp"] = iso(datetime.now(UTC) + timedelta(days=1))
    response = await service.post(device, body)
    assert response.status_code == 400
    error = response.json()
    assert "nothing was stored" in error["message"]
    assert [d["index"] for d in error["details"]] == [1, 3]
    assert "greater than 0" in error["details"][0]["reason"]
    assert "in the future" in error["details"][1]["reason"]

    assert await service.intervals(device.device_id) == []
    assert await service.fetch("SELECT 1 FROM batches WHERE device_id = $1", device.device_id) == []
    assert (await service.fetch("SELECT last_end FROM last_reads WHERE device_id = $1", device.device_id))[0][
        "last_end"
    ] is None
    # ... and the same reads, corrected, are then accepted from the onboarding date.
    body["reads"][1]["value"], body["reads"][3]["endtimestamp"] = 10, iso(device.onboarded_at + 5 * H)
    assert (await service.post(device, body)).status_code == 201


async def test_resubmission_never_adds_energy_twice(service):
    device = await service.register()
    body = delta(device, [1, 2])
    first = await service.post(device, body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    again = await service.post(device, body, **{"Idempotency-Key": "k-1"})
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    identical = await service.post(device, body)  # no key, same content
    assert identical.status_code == 201 and identical.json() == first.json()
    reused = await service.post(device, delta(device, [3]), **{"Idempotency-Key": "k-1"})
    assert reused.status_code == 409

    rows = await service.intervals(device.device_id)
    assert len(rows) == 2 and sum(r["wh"] for r in rows) == 2000
    assert len(await service.fetch("SELECT 1 FROM batches WHERE device_id = $1", device.device_id)) == 1
    # Exactly one announcement: a later batch's event is on the topic, the first batch's only once.
    later = await service.post(device, delta(device, [3]))
    await wait_for_event(service.bootstrap, "read.ingested", ingested(later.json()["batchId"]))
    announced = await _ingested_for_device(service, device.device_id)
    assert [e["payload"]["batch_id"] for e in announced] == [first.json()["batchId"], later.json()["batchId"]]


async def _ingested_for_device(service, device_id: int) -> list[dict]:
    """Every read.ingested of the device on the topic so far, in order."""
    return [e for e in await _topic(service, "read.ingested") if e["payload"]["device_id"] == device_id]


async def _topic(service, topic: str) -> list[dict]:
    """Every envelope on `topic` so far, in order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=service.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # metadata, for the partitions
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[dict] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found += [orjson.loads(r.value) for r in records]
        return found
    finally:
        await consumer.stop()


async def test_concurrent_batches_of_one_device_are_judged_one_after_the_other(service):
    device = await service.register()
    # Both start after the same last read; only one may take the hours 1..3.
    a, b = await asyncio.gather(
        service.post(device, delta(device, [1, 2, 3])), service.post(device, delta(device, [2, 3]))
    )
    assert sorted([a.status_code, b.status_code]) == [201, 400]
    rows = await service.intervals(device.device_id)
    assert [r["end_at"] for r in rows] == [
        device.onboarded_at + h * H for h in ([1, 2, 3] if a.status_code == 201 else [2, 3])
    ]


async def test_history_and_aggregate_reads(service):
    device = await service.register()
    onboarded = device.onboarded_at
    history = {
        "type": "History",
        "unit": "Wh",
        "reads": [
            {"starttimestamp": iso(onboarded - 48 * H), "endtimestamp": iso(onboarded - 24 * H), "value": 5000},
            {"starttimestamp": iso(onboarded - 24 * H), "endtimestamp": iso(onboarded), "value": 6000},
        ],
    }
    assert (await service.post(device, history)).status_code == 201
    overlapping = {
        **history,
        "reads": [{"starttimestamp": iso(onboarded - 30 * H), "endtimestamp": iso(onboarded - 25 * H), "value": 1}],
    }
    refused = await service.post(device, overlapping)
    assert refused.status_code == 400 and "overlaps an accepted read" in refused.json()["details"][0]["reason"]

    # Local times in the request's zone; the baseline carries no energy.
    kolkata = "Asia/Kolkata"

    def local_time(hours: int) -> str:
        return (onboarded + hours * H).astimezone(ZoneInfo(kolkata)).strftime("%Y-%m-%d %H:%M:%S")

    aggregate = {
        "type": "Aggregate",
        "unit": "MWh",
        "timezone": kolkata,
        "reads": [
            {"starttimestamp": "", "endtimestamp": local_time(1), "value": 12.5},
            {"starttimestamp": "", "endtimestamp": local_time(2), "value": 12.52},
        ],
    }
    response = await service.post(device, aggregate)
    assert response.status_code == 201, response.text
    assert response.json()["totalWh"] == 20_000
    rows = await service.intervals(device.device_id)
    assert [(r["read_type"], r["start_at"], r["end_at"], r["wh"]) for r in rows][-1] == (
        "Aggregate",
        onboarded + H,
        onboarded + 2 * H,
        20_000,
    )
    assert (await service.fetch("SELECT timezone FROM devices WHERE device_id = $1", device.device_id))[0][
        "timezone"
    ] == kolkata
    latest = await service.client.get(
        f"/api/meter-reads/latestread/{device.external_id}", headers=service.headers(device.organization_id)
    )
    assert latest.json() == {
        "enddate": iso(onboarded + 2 * H),
        "value": 20_000,
        "readType": "Aggregate",
        "meterTotal": 12_520_000,
    }

    listing = await service.client.get(
        f"/api/meter-reads/new/{device.external_id}",
        params={"limit": 10},
        headers=service.headers(device.organization_id),
    )
    assert [r["value"] for r in listing.json()["historyread"]] == [5000, 6000]
    assert [r["value"] for r in listing.json()["ongoing"]] == [20_000]

    wrong_type = await service.post(device, delta(device, [3]))
    assert wrong_type.status_code == 400 and wrong_type.json()["details"][0]["index"] is None


async def test_a_batch_of_10000_reads_is_stored_and_announced_in_one_message_under_kafkas_limit(service):
    device = await service.register(onboarded_days_ago=500)
    response = await service.post(device, delta(device, list(range(1, 10_001)), wh=12_345))
    assert response.status_code == 201, response.text
    batch_id = response.json()["batchId"]
    assert response.json()["totalWh"] == 10_000 * 12_345
    assert (
        await service.fetch("SELECT count(*) AS n, sum(wh) AS wh FROM intervals WHERE device_id = $1", device.device_id)
    )[0]["wh"] == 10_000 * 12_345
    announced = await eventually(lambda: _parts_announced(service, device.device_id, 1), timeout=30)
    assert [(e["payload"]["batch_id"], len(e["payload"]["values_wh"])) for e in announced] == [(batch_id, 10_000)]
    assert sum(parse_event(Envelope.model_validate(announced[0])).values_wh) == 10_000 * 12_345
    assert len(orjson.dumps(announced[0])) < 1 << 20  # a broker's default message limit

    too_many = await service.post(device, delta(device, list(range(10_001, 20_002))))
    assert too_many.status_code == 400 and "reads" in too_many.json()["message"]


async def _parts_announced(service, device_id, n):
    found = await _ingested_for_device(service, device_id)
    return found if len(found) >= n else None


async def test_only_the_callers_organization_devices_are_reachable(service):
    device = await service.register()
    stranger = new_id()
    assert (await service.post(device, delta(device, [1]), organization_id=stranger)).status_code == 404
    for path in (f"/api/meter-reads/new/{device.external_id}", f"/api/meter-reads/latestread/{device.external_id}"):
        response = await service.client.get(path, headers=service.headers(stranger))
        assert response.status_code == 404
    assert await service.intervals(device.device_id) == []
    no_write = service.issuer.headers(
        organization_id=device.organization_id, permissions={"READS_MANAGEMENT_CRUDL": "R"}
    )
    assert (
        await service.client.post(
            f"/api/meter-reads/new/{device.external_id}", json=delta(device, [1]), headers=no_write
        )
    ).status_code == 403


async def test_malformed_requests_are_refused_with_the_field(service):
    device = await service.register()
    bad_unit = await service.post(device, {**delta(device, [1]), "unit": "kW"})
    assert bad_unit.status_code == 400 and bad_unit.json()["details"][0]["field"] == "unit"
    bad_zone = await service.post(device, {**delta(device, [1]), "timezone": "Mars/Base"})
    assert bad_zone.status_code == 400 and "unknown time zone" in bad_zone.json()["message"]
    fraction = await service.post(
        device,
        {
            **delta(device, [1]),
            "unit": "kWh",
            "reads": [{"endtimestamp": iso(device.onboarded_at + H), "value": 1.0005}],
        },
    )
    assert fraction.status_code == 400 and "only whole watt-hours" in fraction.json()["details"][0]["reason"]


# -- read.submitted --------------------------------------------------------------------


def submission(
    device: DeviceRegistered, hours: list[int], wh: int = 500, submission_id: str | None = None, **changes
) -> ReadSubmitted:
    fields = {
        "submission_id": submission_id or f"kazam:{uuid.uuid4().hex}",
        "device_id": device.device_id,
        "external_id": device.external_id,
        "organization_id": device.organization_id,
        "read_type": "Delta",
        "source": "charger-gateway",
        "reads": [MeterRead(start=None, end=device.onboarded_at + h * H, value_wh=wh) for h in hours],
    }
    return ReadSubmitted(**(fields | changes))


async def _submission(service, submission_id):
    rows = await service.fetch(
        "SELECT status, batch_id, reasons FROM submissions WHERE submission_id = $1 AND status <> 'waiting'",
        submission_id,
    )
    return rows[0] if rows else None


async def test_submitted_reads_are_stored_and_announced_and_a_second_delivery_changes_nothing(service):
    device = await service.register()
    event = submission(device, [1, 2])
    [envelope] = await publish_events(service.bootstrap, [event])
    decided = await eventually(lambda: _submission(service, event.submission_id))
    assert decided["status"] == "accepted"
    rows = await service.intervals(device.device_id)
    assert [(r["end_at"], r["wh"], r["source"]) for r in rows] == [
        (device.onboarded_at + H, 500, "charger-gateway"),
        (device.onboarded_at + 2 * H, 500, "charger-gateway"),
    ]
    announced, _ = await wait_for_event(service.bootstrap, "read.ingested", ingested(str(decided["batch_id"])))
    assert announced["payload"]["values_wh"] == [500, 500]

    # The same envelope again (inbox), the same submission in a new envelope, and even a changed
    # one under the same submission id: it was decided once.
    await publish_envelopes(
        service.bootstrap, [("read.submitted", str(device.device_id), envelope.model_dump_json().encode())]
    )
    await publish_events(service.bootstrap, [event, submission(device, [5], submission_id=event.submission_id)])
    marker = submission(device, [3])
    await publish_events(service.bootstrap, [marker])
    await eventually(lambda: _submission(service, marker.submission_id))  # processed after the duplicates
    assert [r["end_at"] for r in await service.intervals(device.device_id)] == [
        device.onboarded_at + h * H for h in (1, 2, 3)
    ]
    assert len(await service.fetch("SELECT 1 FROM batches WHERE device_id = $1", device.device_id)) == 2


async def test_a_bad_submission_is_recorded_and_does_not_hold_up_the_next(service):
    device = await service.register()
    future = submission(device, [1], submission_id=f"bad:{uuid.uuid4().hex}")
    future = future.model_copy(update={"reads": [MeterRead(end=datetime.now(UTC) + timedelta(days=2), value_wh=5)]})
    foreign = submission(device, [1], organization_id=new_id())
    good = submission(device, [1])
    poison = envelope_for(submission(device, [2]), "test").model_copy(
        update={"payload": {"submission_id": "x", "reads": []}}
    )
    await publish_events(service.bootstrap, [future, foreign])
    await publish_envelopes(
        service.bootstrap, [("read.submitted", str(device.device_id), poison.model_dump_json().encode())]
    )
    await publish_events(service.bootstrap, [good])

    assert (await eventually(lambda: _submission(service, good.submission_id)))["status"] == "accepted"
    rejected = await _submission(service, future.submission_id)
    assert rejected["status"] == "rejected" and "in the future" in rejected["reasons"]
    assert "organization" in (await _submission(service, foreign.submission_id))["reasons"]
    # Each refusal is announced on read.rejected, with the reasons and the read's index.
    announced, _ = await wait_for_event(
        service.bootstrap, "read.rejected", lambda e: e["payload"]["submission_id"] == future.submission_id
    )
    payload = announced["payload"]
    assert (payload["device_id"], payload["external_id"], payload["organization_id"], payload["source"], payload["read_type"]) == (
        device.device_id, device.external_id, device.organization_id, "charger-gateway", "Delta",
    )  # fmt: skip
    assert [r["index"] for r in payload["reasons"]] == [0] and "in the future" in payload["reasons"][0]["reason"]
    foreign_announced, _ = await wait_for_event(
        service.bootstrap, "read.rejected", lambda e: e["payload"]["submission_id"] == foreign.submission_id
    )
    assert foreign_announced["payload"]["reasons"][0]["index"] is None
    good_rejections = await _rejections_of(service, good.submission_id)
    assert good_rejections == []
    await wait_for_event(service.bootstrap, "read.submitted.dlq", lambda e: e.get("event_id") == str(poison.event_id))
    assert [r["wh"] for r in await service.intervals(device.device_id)] == [500]


async def _rejections_of(service, submission_id: str) -> list[dict]:
    """Every read.rejected of the submission on the topic so far."""
    return [e for e in await _topic(service, "read.rejected") if e["payload"]["submission_id"] == submission_id]


async def test_a_submission_for_a_device_not_yet_known_waits_for_it(service):
    device = new_device()
    event = submission(device, [1])
    await publish_events(service.bootstrap, [event])
    await eventually(
        lambda: service.fetch(
            "SELECT 1 FROM submissions WHERE submission_id = $1 AND status = 'waiting'", event.submission_id
        )
    )
    await publish_events(service.bootstrap, [device])
    assert (await eventually(lambda: _submission(service, event.submission_id)))["status"] == "accepted"
    assert [r["wh"] for r in await service.intervals(device.device_id)] == [500]


# -- device.updated / device.deleted ------------------------------------------------------


def updated(device: DeviceRegistered, **changes) -> DeviceUpdated:
    return DeviceUpdated(**(device.model_dump() | changes))


async def _device_row(service, device_id: int):
    return (await service.fetch("SELECT * FROM devices WHERE device_id = $1", device_id))[0]


async def test_an_updated_device_is_judged_by_its_new_capacity_yield_and_timezone(service):
    device = await service.register(capacity_kw=1)
    # 1 kW for one hour: the bound is 1.2 × 1 × 1000 × 2000/8760 ≈ 273 Wh.
    refused = await service.post(device, delta(device, [1], wh=1000))
    assert refused.status_code == 400 and "below 273 Wh" in refused.json()["details"][0]["reason"]

    await publish_events(service.bootstrap, [updated(device, capacity_kw=10, timezone="Asia/Kolkata")])
    await eventually(lambda: _has(service, device.device_id, "capacity_kw = 10"))
    assert (await _device_row(service, device.device_id))["timezone"] == "Asia/Kolkata"
    assert (await service.post(device, delta(device, [1], wh=1000))).status_code == 201

    # A lower yield makes the same energy implausible again (10 kW × 100/8760 × 1.2 ≈ 136 Wh per hour).
    await publish_events(service.bootstrap, [updated(device, capacity_kw=10, yield_value=100)])
    await eventually(lambda: _has(service, device.device_id, "yield_value = 100"))
    low = await service.post(device, delta(device, [2], wh=1000))
    assert low.status_code == 400 and "below 136 Wh" in low.json()["details"][0]["reason"]

    # device.registered travels on another topic: arriving late, its older state changes nothing.
    stale = envelope_for(device, "devices").model_copy(update={"occurred_at": datetime.now(UTC) - timedelta(hours=1)})
    marker = new_device()
    await publish_envelopes(
        service.bootstrap, [("device.registered", str(device.device_id), stale.model_dump_json().encode())]
    )
    await publish_events(service.bootstrap, [marker])
    await eventually(lambda: _has(service, marker.device_id, "true"))  # processed after the stale one
    row = await _device_row(service, device.device_id)
    assert (row["capacity_kw"], row["yield_value"]) == (10, 100)


async def test_an_absurd_capacity_or_yield_makes_no_energy_plausible(service):
    """Issue 12: a device known with capacity 1e308 kW and yield 1e308 (registered before devices refused them) is
    judged as one of DEVICE_MAX_CAPACITY_KW (1,000,000 kW) yielding every hour of the year: 9×10^18 Wh is refused,
    what such a device can make in an hour is taken."""
    device = await service.register(capacity_kw=1e308, yield_value=1e308)
    huge = await service.post(device, delta(device, [1], wh=9 * 10**18))
    assert huge.status_code == 400, huge.text
    reason = huge.json()["details"][0]["reason"]
    # 1.2 × 1,000,000 kW × 1000 × 1 h × 8760/8760 × 0.995^(1−1) (in its first year then) = 1,200,000,000 Wh
    assert "1e+06 kW device" in reason and "below 1200000000 Wh" in reason, reason
    assert (await service.post(device, delta(device, [1], wh=1_000_000_000))).status_code == 201
    assert [r["wh"] for r in await service.intervals(device.device_id)] == [1_000_000_000]


async def test_a_history_read_never_covers_ongoing_reads_even_after_the_onboarding_date_moved_later(service):
    """Moving a device's onboarding date later (D-REC's dev mode) widens the History window over ongoing reads
    already taken: such a History read is refused, else certificates would hold two reads of one interval."""
    device = await service.register()
    assert (await service.post(device, delta(device, [1, 2]))).status_code == 201  # onboarding + 0..2 h
    later = device.onboarded_at + 5 * H
    await publish_events(service.bootstrap, [updated(device, onboarded_at=later)])
    await eventually(lambda: _has(service, device.device_id, f"onboarded_at = '{later.isoformat()}'"))
    over = {
        "type": "History",
        "unit": "Wh",
        "reads": [{"starttimestamp": iso(device.onboarded_at + H), "endtimestamp": iso(later), "value": 100}],
    }
    refused = await service.post(device, over)
    assert refused.status_code == 400, refused.text
    assert "overlaps an accepted read" in refused.json()["details"][0]["reason"]
    beside = {
        **over,
        "reads": [{"starttimestamp": iso(device.onboarded_at + 2 * H), "endtimestamp": iso(later), "value": 100}],
    }
    assert (await service.post(device, beside)).status_code == 201  # right after the ongoing reads: taken


async def _has(service, device_id: int, condition: str) -> bool:
    return bool(await service.fetch(f"SELECT 1 FROM devices WHERE device_id = $1 AND {condition}", device_id))


async def test_a_deleted_device_refuses_new_reads_and_keeps_its_old_ones(service):
    device = await service.register()
    assert (await service.post(device, delta(device, [1]))).status_code == 201
    await publish_events(
        service.bootstrap,
        [
            DeviceDeleted(
                device_id=device.device_id, external_id=device.external_id, organization_id=device.organization_id
            )
        ],
    )
    await eventually(lambda: _has(service, device.device_id, "deleted_at IS NOT NULL"))

    refused = await service.post(device, delta(device, [2]))
    assert refused.status_code == 409 and "was deleted" in refused.json()["message"]
    event = submission(device, [2])
    await publish_events(service.bootstrap, [event])
    rejected, _ = await wait_for_event(
        service.bootstrap, "read.rejected", lambda e: e["payload"]["submission_id"] == event.submission_id
    )
    assert "was deleted" in rejected["payload"]["reasons"][0]["reason"]
    # An update arriving after the deletion doesn't bring the device back.
    other = await service.register()
    await publish_events(service.bootstrap, [updated(device, capacity_kw=55), updated(other, capacity_kw=56)])
    await eventually(lambda: _has(service, other.device_id, "capacity_kw = 56"))  # one partition: handled after
    assert (await service.post(device, delta(device, [2]))).status_code == 409
    listing = await service.client.get(
        f"/api/meter-reads/new/{device.external_id}", headers=service.headers(device.organization_id)
    )
    assert [r["value"] for r in listing.json()["ongoing"]] == [1000]
    assert [r["wh"] for r in await service.intervals(device.device_id)] == [1000]

    # A deletion that arrives before the device: the device never takes reads.
    ghost = new_device()
    await publish_events(
        service.bootstrap,
        [
            DeviceDeleted(
                device_id=ghost.device_id, external_id=ghost.external_id, organization_id=ghost.organization_id
            )
        ],
    )
    await eventually(lambda: service.fetch("SELECT 1 FROM deleted_devices WHERE device_id = $1", ghost.device_id))
    early = submission(ghost, [1])
    await publish_events(service.bootstrap, [early, ghost])
    assert (await eventually(lambda: _submission(service, early.submission_id)))["status"] == "rejected"
    assert await service.intervals(ghost.device_id) == []


async def test_a_deleted_device_is_refused_by_the_one_rule_over_http_and_read_submitted(service):
    # Events handed to the handlers in-process (inbox, effect and outbox in one unit of work), no broker.
    pool, handlers = service.runtime.pool, Handlers(service.runtime.settings)
    device = new_device()
    assert await dispatch(pool, "readings", handlers.on_device_registered, device)
    assert (await service.post(device, delta(device, [1]))).status_code == 201
    gone = DeviceDeleted(
        device_id=device.device_id, external_id=device.external_id, organization_id=device.organization_id
    )
    envelope = envelope_for(gone, "devices")
    assert await dispatch(pool, "readings", handlers.on_device_deleted, gone, envelope=envelope)
    reason = f"device {device.external_id!r} was deleted on {iso(envelope.occurred_at)}: it takes no new reads"

    refused = await service.post(device, delta(device, [2]))
    assert (refused.status_code, refused.json()["message"]) == (409, reason[:1].upper() + reason[1:])
    event = submission(device, [2])
    assert await dispatch(pool, "readings", handlers.on_read_submitted, event)
    decided = await _submission(service, event.submission_id)
    assert decided["status"] == "rejected" and orjson.loads(decided["reasons"]) == [{"index": None, "reason": reason}]
    announced, _ = await wait_for_event(
        service.bootstrap, "read.rejected", lambda e: e["payload"]["submission_id"] == event.submission_id
    )
    assert announced["payload"]["reasons"] == [{"index": None, "reason": reason}]

    # Deleted before it was ever known here: the same rule, the device named by its id.
    ghost = new_device()
    gone = DeviceDeleted(
        device_id=ghost.device_id, external_id=ghost.external_id, organization_id=ghost.organization_id
    )
    envelope = envelope_for(gone, "devices")
    assert await dispatch(pool, "readings", handlers.on_device_deleted, gone, envelope=envelope)
    early = submission(ghost, [1])
    assert await dispatch(pool, "readings", handlers.on_read_submitted, early)
    decided = await _submission(service, early.submission_id)
    assert orjson.loads(decided["reasons"])[0]["reason"] == (
        f"device {ghost.device_id} was deleted on {iso(envelope.occurred_at)}: it takes no new reads"
    )
    assert await service.intervals(ghost.device_id) == []


# -- queries: sums per period, buyers ----------------------------------------------------------

ONBOARDED = datetime(2025, 1, 31, 20, tzinfo=UTC)


async def _fixed_device(service, timezone: str | None) -> DeviceRegistered:
    """Onboarded 2025-01-31T20:00Z with 30 hourly Delta reads of 100 Wh (ends 21:00Z … 2025-02-02T02:00Z)."""
    device = new_device().model_copy(
        update={"onboarded_at": ONBOARDED, "commissioning_date": datetime(2024, 1, 1, tzinfo=UTC), "timezone": timezone}
    )
    await publish_events(service.bootstrap, [device])
    await eventually(lambda: _has(service, device.device_id, "true"))
    assert (await service.post(device, delta(device, list(range(1, 31)), wh=100))).status_code == 201
    return device


async def _sums(service, device, granularity: str, headers=None, path=None, **params):
    response = await service.client.get(
        f"/api/meter-reads/new/{path or device.external_id}",
        params={"readType": "accumulated", "granularity": granularity, **params},
        headers=headers or service.headers(device.organization_id),
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_sums_per_period_in_utc_when_the_device_has_no_timezone(service):
    device = await _fixed_device(service, None)
    days = await _sums(service, device, "day")
    assert days["timezone"] == "UTC" and days["totalWh"] == 3000
    # An interval ending exactly at midnight belongs to the day it closes.
    assert [(d["startdate"], d["enddate"], d["value"]) for d in days["accumulated"]] == [
        ("2025-01-31T00:00:00.000Z", "2025-02-01T00:00:00.000Z", 400),
        ("2025-02-01T00:00:00.000Z", "2025-02-02T00:00:00.000Z", 2400),
        ("2025-02-02T00:00:00.000Z", "2025-02-03T00:00:00.000Z", 200),
    ]
    hours = (await _sums(service, device, "hour"))["accumulated"]
    assert len(hours) == 30 and {h["value"] for h in hours} == {100}
    assert (hours[0]["startdate"], hours[0]["enddate"]) == ("2025-01-31T20:00:00.000Z", "2025-01-31T21:00:00.000Z")
    months = (await _sums(service, device, "month"))["accumulated"]
    assert [(m["startdate"], m["enddate"], m["value"]) for m in months] == [
        ("2025-01-01T00:00:00.000Z", "2025-02-01T00:00:00.000Z", 400),
        ("2025-02-01T00:00:00.000Z", "2025-03-01T00:00:00.000Z", 2600),
    ]
    assert [(y["startdate"], y["value"]) for y in (await _sums(service, device, "year"))["accumulated"]] == [
        ("2025-01-01T00:00:00.000Z", 3000)
    ]
    window = await _sums(service, device, "day", start="2025-02-01T00:00:00Z", end="2025-02-02T00:00:00Z")
    assert [d["value"] for d in window["accumulated"]] == [2400]

    missing = await service.client.get(
        f"/api/meter-reads/new/{device.external_id}",
        params={"readType": "accumulated"},
        headers=service.headers(device.organization_id),
    )
    assert missing.status_code == 400 and missing.json()["details"][0]["field"] == "granularity"


async def test_sums_per_period_follow_the_devices_timezone(service):
    device = await _fixed_device(service, "Asia/Kolkata")  # UTC+05:30
    days = await _sums(service, device, "day")
    assert days["timezone"] == "Asia/Kolkata"
    assert [(d["startdate"], d["enddate"], d["value"]) for d in days["accumulated"]] == [
        ("2025-01-31T18:30:00.000Z", "2025-02-01T18:30:00.000Z", 2200),
        ("2025-02-01T18:30:00.000Z", "2025-02-02T18:30:00.000Z", 800),
    ]
    months = (await _sums(service, device, "month"))["accumulated"]
    assert [(m["startdate"], m["enddate"], m["value"]) for m in months] == [
        ("2025-01-31T18:30:00.000Z", "2025-02-28T18:30:00.000Z", 3000)
    ]
    hours = (await _sums(service, device, "hour"))["accumulated"]
    # The first read ends 21:00Z = 02:30 local: the local hour 02:00–03:00 (20:30Z–21:30Z).
    assert hours[0]["startdate"] == "2025-01-31T20:30:00.000Z" and hours[0]["value"] == 100


async def test_buyers_see_the_reads_of_their_reserved_devices_within_the_reservation(service):
    device = await _fixed_device(service, None)
    buyer, other_buyer = new_id(), new_id()
    reservation = ReservationCreated(
        reservation_id=new_id(), reservation_uid=uuid.uuid4(), name="r", buyer_organization_id=buyer,
        device_ids=[new_id(), device.device_id], reservation_start=ONBOARDED + 2 * H, reservation_end=ONBOARDED + 5 * H,
        frequency="daily",
    )  # fmt: skip
    await publish_events(service.bootstrap, [reservation])
    await eventually(
        lambda: service.fetch("SELECT 1 FROM reservations WHERE reservation_id = $1", reservation.reservation_id)
    )

    def as_buyer(organization_id: int) -> dict[str, str]:
        return service.issuer.headers(
            organization_id=organization_id,
            organization_type="Buyer",
            role="Buyer",
            permissions={"READS_MANAGEMENT_CRUDL": "R"},
        )

    path = f"/api/meter-reads/new/{device.device_id}"
    seen = await service.client.get(path, params={"limit": 100}, headers=as_buyer(buyer))
    assert seen.status_code == 200, seen.text
    assert [(r["enddate"], r["value"]) for r in seen.json()["ongoing"]] == [
        (iso(ONBOARDED + h * H), 100) for h in (3, 4, 5)
    ]
    sums = await _sums(service, device, "day", headers=as_buyer(buyer), path=device.device_id)
    assert sums["totalWh"] == 300
    # The latest read lies after the reservation: not the buyer's to see.
    assert (
        await service.client.get(f"/api/meter-reads/latestread/{device.device_id}", headers=as_buyer(buyer))
    ).status_code == 404

    # Nobody else: another buyer, the buyer by external id, a developer of another organization by device id.
    assert (await service.client.get(path, headers=as_buyer(other_buyer))).status_code == 404
    assert (
        await service.client.get(f"/api/meter-reads/new/{device.external_id}", headers=as_buyer(buyer))
    ).status_code == 404
    assert (await service.client.get(path, headers=service.headers(new_id()))).status_code == 404


def _reserved(device: DeviceRegistered, buyer: int, start_h: int, end_h: int) -> ReservationCreated:
    return ReservationCreated(
        reservation_id=new_id(),
        reservation_uid=uuid.uuid4(),
        name="r",
        buyer_organization_id=buyer,
        device_ids=[device.device_id],
        reservation_start=ONBOARDED + start_h * H,
        reservation_end=ONBOARDED + end_h * H,
        frequency="daily",
    )


def _changed(created: ReservationCreated, revision: int, end_h: int) -> ReservationUpdated:
    """reservation.updated as the reservations service announces a PATCH: the full terms, a new end."""
    # the created terms (frequency, not part of an update, is ignored), a new revision and end
    return ReservationUpdated.model_validate(
        {**created.model_dump(), "revision": revision, "reservation_end": ONBOARDED + end_h * H}
    )


async def _seen_by_buyer(service, device: DeviceRegistered, buyer: int) -> list[int]:
    """The hours (after onboarding) at which the reads the buyer sees end."""
    headers = service.issuer.headers(
        organization_id=buyer, organization_type="Buyer", role="Buyer", permissions={"READS_MANAGEMENT_CRUDL": "R"}
    )
    r = await service.client.get(f"/api/meter-reads/new/{device.device_id}", params={"limit": 100}, headers=headers)
    assert r.status_code == 200, r.text
    return [(datetime.fromisoformat(x["enddate"]) - ONBOARDED) // H for x in r.json()["ongoing"]]


async def test_an_updated_reservation_moves_what_its_buyer_sees_and_older_changes_are_ignored(service):
    pool, handlers = service.runtime.pool, Handlers(service.runtime.settings)
    device, buyer = await _fixed_device(service, None), new_id()
    created = _reserved(device, buyer, 2, 5)
    assert await dispatch(pool, "readings", handlers.on_reservation_created, created)
    assert await _seen_by_buyer(service, device, buyer) == [3, 4, 5]

    # the buyer moves the end date later (revision 2): the window follows
    later = _changed(created, 2, 8)
    envelope = envelope_for(later, "reservations")
    assert await dispatch(pool, "readings", handlers.on_reservation_updated, later, envelope=envelope)
    assert await _seen_by_buyer(service, device, buyer) == [3, 4, 5, 6, 7, 8]
    # a redelivery is dropped; the same revision again, an older one delivered late, reservation.created
    # replayed: all ignored
    assert not await dispatch(pool, "readings", handlers.on_reservation_updated, later, envelope=envelope)
    assert await dispatch(pool, "readings", handlers.on_reservation_updated, _changed(created, 2, 3))
    assert await dispatch(pool, "readings", handlers.on_reservation_updated, _changed(created, 1, 4))
    assert await dispatch(pool, "readings", handlers.on_reservation_created, created)
    assert not await services.change_reservation(service.runtime.uow(), _changed(created, 1, 4))
    assert await _seen_by_buyer(service, device, buyer) == [3, 4, 5, 6, 7, 8]
    row = (
        await service.fetch(
            "SELECT reservation_end, revision FROM reservations WHERE reservation_id = $1", created.reservation_id
        )
    )[0]
    assert (row["reservation_end"], row["revision"]) == (ONBOARDED + 8 * H, 2)

    # an early end bounds the window, whatever a later change says
    end = ReservationEnded(
        reservation_id=created.reservation_id,
        reservation_uid=created.reservation_uid,
        buyer_organization_id=buyer,
        device_ids=created.device_ids,
        ended_at=ONBOARDED + 6 * H,
        reason="ended_by_buyer",
    )
    assert await dispatch(pool, "readings", handlers.on_reservation_ended, end)
    assert await dispatch(pool, "readings", handlers.on_reservation_updated, _changed(created, 3, 12))
    assert await _seen_by_buyer(service, device, buyer) == [3, 4, 5, 6]


async def test_an_update_heard_before_its_reservation_stands(service):
    pool, handlers = service.runtime.pool, Handlers(service.runtime.settings)
    device, buyer = await _fixed_device(service, None), new_id()
    created = _reserved(device, buyer, 2, 4)
    # reservation.updated travels on another topic: it may be read before reservation.created
    assert await dispatch(pool, "readings", handlers.on_reservation_updated, _changed(created, 1, 7))
    assert await _seen_by_buyer(service, device, buyer) == [3, 4, 5, 6, 7]
    assert await dispatch(pool, "readings", handlers.on_reservation_created, created)
    assert await _seen_by_buyer(service, device, buyer) == [3, 4, 5, 6, 7]
