"""The charger gateway against the real Kazam simulator process, a real broker and Postgres."""

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from opendrec_charger_gateway import handlers, services
from opendrec_charger_gateway.app import build
from opendrec_charger_gateway.domain import Link
from opendrec_charger_gateway.kazam import KazamAccess
from opendrec_charger_gateway.poller import KazamPoller
from opendrec_charger_gateway.settings import Settings
from opendrec_contracts import (
    DeviceDeleted,
    DeviceRegistered,
    DeviceUpdated,
    OrganizationRegistered,
    envelope_for,
    topic_of,
)
from opendrec_devstack.net import free_port
from opendrec_kit import Worker
from opendrec_kit.organizations import find_organization
from opendrec_kit.testing import (
    OwnerStandIn,
    TokenIssuer,
    dispatch,
    eventually,
    handling,
    publish_envelopes,
    publish_events,
    settings_for_test,
    started,
    wait_for_event,
)
from opendrec_kit.timestamps import iso

from .conftest import chargers_exist_on_the_platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

ALL = {"DEVICE_MANAGEMENT_CRUDL": "RWUD"}


@pytest.fixture(scope="module")
async def gateway(postgres_url, kafka_bootstrap, kazam_sim):
    url, token = kazam_sim
    owners = OwnerStandIn().start()  # asked on a miss (read-your-writes): knows nothing here
    settings = settings_for_test(
        Settings,
        postgres_url,
        kafka_bootstrap,
        kazam_url=url,
        kazam_token=token,
        kazam_poll_seconds=0.2,
        kazam_lookback_seconds=3600,
        identity_url=owners.url,
        devices_url=owners.url,
    )
    runtime = build(settings)
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    try:
        async with started(runtime) as client:
            chargers_exist_on_the_platform(client, url, token)
            yield runtime, client, issuer
    finally:
        owners.stop()


def ids():
    n = uuid.uuid4().int % 10**9
    return n, n + 1, f"ev-{uuid.uuid4().hex[:10]}", f"ch{uuid.uuid4().hex[:8]}"  # device, org, externalId, charger


def headers(issuer, org, perms=ALL, **kw):
    return issuer.headers(organization_id=org, organization_type="Developer", permissions=perms, **kw)


async def known_device(runtime, org=None):
    """ids() of a device put straight into the gateway's read model (no device.registered over Kafka), of a new
    organization or `org`."""
    device_id, new_org, ext, charger = ids()
    org = org or new_org
    await runtime.pool.execute(
        "INSERT INTO devices (device_id, external_id, organization_id, onboarded_at) VALUES ($1, $2, $3, now())",
        device_id,
        ext,
        org,
    )
    return device_id, org, ext, charger


async def register(kafka_bootstrap, device_id, org, external_id):
    """A device.registered as the devices service would publish it."""
    event = DeviceRegistered(
        device_id=device_id,
        device_uuid=uuid.uuid4(),
        external_id=external_id,
        organization_id=org,
        capacity_kw=7.4,
        country_code="IND",
        fuel_code="ES100",
        device_type_code="TC120",
        commissioning_date=datetime(2023, 1, 1, tzinfo=UTC),
        onboarded_at=datetime.now(UTC),
    )
    return (await publish_events(kafka_bootstrap, [event], producer="devices"))[0]


async def link(client, issuer, org, charger, external_id):
    """Link once the device has reached the gateway's read model over Kafka."""

    async def attempt():
        r = await client.post(
            "/api/charger", json={"chargerId": charger, "externalId": external_id}, headers=headers(issuer, org)
        )
        assert r.status_code in (201, 404), r.text
        return r if r.status_code == 201 else None

    return (await eventually(attempt, timeout=30)).json()


async def submissions(bootstrap, submission_id):
    """Every read.submitted on the topic, start to end, carrying this submission id."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads metadata
        partitions = [TopicPartition("read.submitted", p) for p in consumer.partitions_for_topic("read.submitted")]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found = []
        deadline = time.monotonic() + 30
        while [p for p in partitions if await consumer.position(p) < end[p]]:
            assert time.monotonic() < deadline, "could not read read.submitted to its end"
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    envelope = orjson.loads(record.value)
                    if isinstance(envelope, dict) and envelope.get("payload", {}).get("submission_id") == submission_id:
                        found.append(envelope)
        return found
    finally:
        await consumer.stop()


async def polls(runtime, n):
    """Wait until the kazam-poller worker has completed n more polls."""
    worker = runtime.app.state.kazam_worker
    target = worker.steps + n
    await eventually(lambda: asyncio.sleep(0, worker.steps >= target), timeout=30)


async def test_a_finished_transaction_becomes_exactly_one_read(gateway, sim, kafka_bootstrap):
    runtime, client, issuer = gateway
    device_id, org, ext, charger = ids()
    await register(kafka_bootstrap, device_id, org, ext)
    linked = await link(client, issuer, org, charger, ext)
    assert (linked["chargerId"], linked["externalId"], linked["deviceId"], linked["organizationId"]) == (
        charger,
        ext,
        device_id,
        org,
    )

    now = int(time.time())
    txn = (
        await sim.post(
            "/simulator/transactions",
            json={
                "device_id": charger,
                "start_time": now - 1800,
                "end_time": now,
                "total_usage": 1234.56,
            },
        )
    ).json()

    envelope, _ = await wait_for_event(
        kafka_bootstrap,
        "read.submitted",
        lambda e: e.get("payload", {}).get("submission_id") == f"kazam:{txn['txn_id']}",
    )
    assert envelope["producer"] == "charger-gateway"
    p = envelope["payload"]
    assert (p["device_id"], p["external_id"], p["organization_id"]) == (device_id, ext, org)
    assert (p["read_type"], p["source"]) == ("Delta", "kazam")
    assert len(p["reads"]) == 1
    read = p["reads"][0]
    assert datetime.fromisoformat(read["start"]) == datetime.fromtimestamp(now - 1800, UTC)
    assert datetime.fromisoformat(read["end"]) == datetime.fromtimestamp(now, UTC)
    assert read["value_wh"] == 1235  # 1234.56 Wh

    # Kazam keeps answering with the same transaction on every poll: still one read.
    await polls(runtime, 4)
    assert len(await submissions(kafka_bootstrap, f"kazam:{txn['txn_id']}")) == 1
    recorded = await runtime.pool.fetchrow("SELECT * FROM kazam_transactions WHERE txn_id = $1", txn["txn_id"])
    assert (recorded["outcome"], recorded["value_wh"], recorded["device_id"]) == ("submitted", 1235, device_id)


async def test_a_running_transaction_holds_the_cursor_until_it_finishes(gateway, sim, kafka_bootstrap):
    runtime, client, issuer = gateway
    device_id, org, ext, charger = ids()
    await register(kafka_bootstrap, device_id, org, ext)
    await link(client, issuer, org, charger, ext)
    started_at = int(time.time()) - 5
    txn = (
        await sim.post(
            "/simulator/transactions", json={"device_id": charger, "ongoing": True, "start_time": started_at}
        )
    ).json()

    await polls(runtime, 3)
    assert await submissions(kafka_bootstrap, f"kazam:{txn['txn_id']}") == []
    listed = {c["chargerId"]: c for c in (await client.get("/api/charger", headers=headers(issuer, org))).json()}
    assert listed[charger]["pollCursor"] == datetime.fromtimestamp(started_at, UTC).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")

    stop = await sim.post(f"/simulator/transactions/{txn['txn_id']}/stop", json={"total_usage": 500})
    assert stop.status_code == 200
    envelope, _ = await wait_for_event(
        kafka_bootstrap,
        "read.submitted",
        lambda e: e.get("payload", {}).get("submission_id") == f"kazam:{txn['txn_id']}",
    )
    assert envelope["payload"]["reads"][0]["value_wh"] == 500
    assert datetime.fromisoformat(envelope["payload"]["reads"][0]["start"]) == datetime.fromtimestamp(started_at, UTC)
    await polls(runtime, 2)
    listed = {c["chargerId"]: c for c in (await client.get("/api/charger", headers=headers(issuer, org))).json()}
    assert listed[charger]["pollCursor"] > datetime.fromtimestamp(started_at, UTC).isoformat()  # moved on


async def test_transactions_before_the_link_or_of_unlinked_chargers_are_not_reads(gateway, sim, kafka_bootstrap):
    runtime, client, issuer = gateway
    device_id, org, ext, charger = ids()
    await register(kafka_bootstrap, device_id, org, ext)
    linked = await link(client, issuer, org, charger, ext)
    link_time = int(datetime.fromisoformat(linked["linkedAt"]).timestamp())
    before = (
        await sim.post(
            "/simulator/transactions",
            json={
                "device_id": charger,
                "start_time": link_time - 1200,
                "end_time": link_time - 60,
                "total_usage": 800,
            },
        )
    ).json()
    stranger = (await sim.post("/simulator/transactions", json={"device_id": f"x{charger}", "total_usage": 900})).json()
    await polls(runtime, 3)
    assert await submissions(kafka_bootstrap, f"kazam:{before['txn_id']}") == []
    assert await submissions(kafka_bootstrap, f"kazam:{stranger['txn_id']}") == []


async def test_charger_links(gateway, kafka_bootstrap):
    _, client, issuer = gateway
    device_id, org, ext, charger = ids()
    other_device, other_org, other_ext, other_charger = ids()
    await register(kafka_bootstrap, device_id, org, ext)
    await register(kafka_bootstrap, other_device, other_org, other_ext)
    await link(client, issuer, org, charger, ext)
    await link(client, issuer, other_org, other_charger, other_ext)

    # another organization's device answers like an unknown one
    theirs = await client.post(
        "/api/charger", json={"chargerId": "c-new", "externalId": other_ext}, headers=headers(issuer, org)
    )
    unknown = await client.post(
        "/api/charger", json={"chargerId": "c-new", "externalId": "nope"}, headers=headers(issuer, org)
    )
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["message"].replace(other_ext, "X") == unknown.json()["message"].replace("nope", "X")

    again = await client.post(
        "/api/charger", json={"chargerId": charger, "externalId": ext}, headers=headers(issuer, org)
    )
    assert again.status_code == 409 and charger in again.json()["message"]

    listed = (await client.get("/api/charger", headers=headers(issuer, org))).json()
    assert [c["chargerId"] for c in listed] == [charger]
    admin = issuer.headers(organization_id=1, organization_type="Admin", role="Admin")
    assert {charger, other_charger} <= {
        c["chargerId"] for c in (await client.get("/api/charger", headers=admin)).json()
    }

    for bad in ({"chargerId": "a/b", "externalId": ext}, {"chargerId": "", "externalId": ext}, {"externalId": ext}):
        assert (await client.post("/api/charger", json=bad, headers=headers(issuer, org))).status_code == 400
    read_only = headers(issuer, org, perms={"DEVICE_MANAGEMENT_CRUDL": "R"})
    assert (
        await client.post("/api/charger", json={"chargerId": "c2", "externalId": ext}, headers=read_only)
    ).status_code == 403
    assert (await client.delete(f"/api/charger/{charger}", headers=read_only)).status_code == 403
    assert (await client.get("/api/charger")).status_code == 401

    assert (await client.delete(f"/api/charger/{other_charger}", headers=headers(issuer, org))).status_code == 404
    assert (await client.delete(f"/api/charger/{charger}", headers=headers(issuer, org))).status_code == 204
    assert (await client.get("/api/charger", headers=headers(issuer, org))).json() == []
    assert (await client.delete(f"/api/charger/{charger}", headers=headers(issuer, org))).status_code == 404
    # freed: it can be linked again
    assert (
        await client.post("/api/charger", json={"chargerId": charger, "externalId": ext}, headers=headers(issuer, org))
    ).status_code == 201


async def test_charger_links_are_listed_a_page_at_a_time_with_the_total(gateway):
    runtime, client, issuer = gateway
    _, org, _, _ = ids()
    chargers = []
    for n in range(5):
        _, _, ext, charger = await known_device(runtime, org)
        charger = f"{n}{charger}"
        linked = await client.post(
            "/api/charger", json={"chargerId": charger, "externalId": ext}, headers=headers(issuer, org)
        )
        assert linked.status_code == 201, linked.text
        chargers.append(charger)

    pages = []
    for number in (1, 2, 3):
        r = await client.get("/api/charger", params={"pageNumber": number, "limit": 2}, headers=headers(issuer, org))
        assert r.status_code == 200 and r.headers["x-total-count"] == "5"
        pages.append([c["chargerId"] for c in r.json()])
    assert pages == [sorted(chargers)[0:2], sorted(chargers)[2:4], sorted(chargers)[4:]]
    for bad in ({"limit": 0}, {"limit": 501}, {"pageNumber": 0}, {"pageNumber": "x"}):
        r = await client.get("/api/charger", params=bad, headers=headers(issuer, org))
        assert r.status_code == 400 and r.json()["statusCode"] == 400, bad


async def test_an_unreachable_or_refusing_kazam_never_stops_the_poller(gateway, kazam_sim):
    runtime, client, issuer = gateway
    _, org, ext, charger = await known_device(runtime)
    await client.post("/api/charger", json={"chargerId": charger, "externalId": ext}, headers=headers(issuer, org))
    url, _ = kazam_sim
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        for kazam in (
            KazamAccess(session, f"http://127.0.0.1:{free_port()}", platform_token="t", attempts=2),  # nobody there
            KazamAccess(session, url, platform_token="wrong-token", attempts=2),  # 401
        ):
            cipher = runtime.app.state.kazam_cipher
            poller = KazamPoller(runtime.uow, cipher, lookback_s=60, chargers_per_request=100, kazam=kazam)
            assert await poller.step() is False  # one round, then the interval
            stats = poller.last
            assert stats["chargers"] >= 1 and stats["requests_failed"] >= 1 and stats["new_reads"] == 0
            worker = Worker("test-kazam-poller", poller.step, interval_s=0.05)
            worker.start()
            try:
                # every round ends well: a failing Kazam is no failure of the step (no retry, no backoff)
                await eventually(lambda w=worker: asyncio.sleep(0, w.steps >= 4), timeout=30)
                assert worker.status == "ok" and worker.failures == 0
            finally:
                await worker.stop()
    # the service's own poller went on meanwhile
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert runtime.worker_status()["kazam-poller"] == "ok"


async def test_an_api_user_links_chargers_to_devices_of_its_developer_organizations(gateway, kafka_bootstrap):
    runtime, client, issuer = gateway
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    base = uuid.uuid4().int % 10**9
    own, developer, other_developer, buyer, foreign = base, base + 1, base + 2, base + 3, base + 4
    organizations = [
        OrganizationRegistered(organization_id=own, name="api", organization_type="ApiUser", api_user_id=mine),
        OrganizationRegistered(organization_id=developer, name="dev", organization_type="Developer", api_user_id=mine),
        OrganizationRegistered(
            organization_id=other_developer, name="dev2", organization_type="Developer", api_user_id=mine
        ),
        OrganizationRegistered(organization_id=buyer, name="buy", organization_type="Buyer", api_user_id=mine),
        OrganizationRegistered(
            organization_id=foreign, name="theirs", organization_type="Developer", api_user_id=theirs
        ),
    ]
    await publish_events(kafka_bootstrap, organizations, producer="identity")
    for o in organizations:
        await eventually(lambda o=o: find_organization(runtime.pool, o.organization_id))
    device_id, ext = base + 10, f"ev-{uuid.uuid4().hex[:10]}"
    foreign_device, foreign_ext = base + 11, f"ev-{uuid.uuid4().hex[:10]}"
    await register(kafka_bootstrap, device_id, developer, ext)
    await register(kafka_bootstrap, foreign_device, foreign, foreign_ext)
    api_user = issuer.headers(
        role="ApiUser", organization_type="ApiUser", organization_id=own, permissions=ALL, apiUserId=mine
    )
    charger = f"ch{uuid.uuid4().hex[:8]}"

    async def attempt(body, headers=api_user):
        return await client.post(
            "/api/charger", json={"chargerId": charger, "externalId": ext, **body}, headers=headers
        )

    async def linked():
        r = await attempt({"organizationId": developer})
        assert r.status_code in (201, 404), r.text  # 404 until device.registered has reached the gateway
        return r if r.status_code == 201 else None

    link_row = (await eventually(linked, timeout=30)).json()
    assert (link_row["deviceId"], link_row["organizationId"]) == (device_id, developer)

    def refused(r, status, fragment):
        assert r.status_code == status, r.text
        assert fragment in r.json()["message"]

    refused(await attempt({}), 400, "organizationId is required")
    refused(await attempt({"organizationId": foreign}), 403, "not one of your organizations")
    refused(
        await attempt({"organizationId": buyer}), 403, "is a Buyer organization; this needs a Developer organization"
    )
    # its own other Developer organization does not hold the device; another API user's device is not reachable
    refused(await attempt({"organizationId": other_developer}), 404, "No device")
    await eventually(
        lambda: runtime.pool.fetchval("SELECT count(*) = 1 FROM devices WHERE device_id = $1", foreign_device)
    )
    refused(await attempt({"externalId": foreign_ext, "organizationId": developer}), 404, "No device")
    admin = issuer.headers(organization_id=1, organization_type="Admin", role="Admin", permissions=ALL)
    refused(await attempt({}, admin), 400, "organizationId is required")
    # a developer organization's own user cannot link into an API user's organization either
    refused(await attempt({"organizationId": developer}, headers(issuer, base + 99)), 403, "own organization")

    listed = (await client.get("/api/charger", headers=api_user)).json()  # all its Developer organizations
    assert [c["chargerId"] for c in listed] == [charger]
    assert [
        c["chargerId"]
        for c in (await client.get("/api/charger", params={"organizationId": developer}, headers=api_user)).json()
    ] == [charger]
    assert (await client.get("/api/charger", params={"organizationId": other_developer}, headers=api_user)).json() == []
    refused(
        await client.get("/api/charger", params={"organizationId": foreign}, headers=api_user), 403, "not one of your"
    )
    other_api_user = issuer.headers(
        role="ApiUser", organization_type="ApiUser", organization_id=base + 5, permissions=ALL, apiUserId=theirs
    )
    assert charger not in [c["chargerId"] for c in (await client.get("/api/charger", headers=other_api_user)).json()]
    refused(await client.delete(f"/api/charger/{charger}", headers=other_api_user), 404, "No charger")
    assert (await client.delete(f"/api/charger/{charger}", headers=api_user)).status_code == 204
    assert (await client.get("/api/charger", headers=api_user)).json() == []
    # an admin links for the Developer organization it names
    by_admin = await attempt({"organizationId": developer}, admin)
    assert by_admin.status_code == 201 and by_admin.json()["organizationId"] == developer


async def test_links_follow_device_renames_deletions_and_reused_external_ids(gateway, kafka_bootstrap):
    _, client, issuer = gateway
    device_id, org, ext, charger = ids()
    await register(kafka_bootstrap, device_id, org, ext)
    await link(client, issuer, org, charger, ext)

    # renamed: linkable under the new external id only
    renamed = f"{ext}-renamed"
    update = DeviceUpdated(
        device_id=device_id, device_uuid=uuid.uuid4(), external_id=renamed, organization_id=org, capacity_kw=7.4,
        country_code="IND", fuel_code="ES100", device_type_code="TC120", commissioning_date=datetime(2023, 1, 1, tzinfo=UTC),
        onboarded_at=datetime.now(UTC),
    )  # fmt: skip
    await publish_events(kafka_bootstrap, [update], producer="devices")
    second = f"ch{uuid.uuid4().hex[:8]}"
    await link(client, issuer, org, second, renamed)
    old_name = await client.post(
        "/api/charger", json={"chargerId": f"ch{uuid.uuid4().hex[:8]}", "externalId": ext}, headers=headers(issuer, org)
    )
    assert old_name.status_code == 404

    # deleted: its chargers are unlinked (no longer polled) and the external id is free for a new device
    await publish_events(
        kafka_bootstrap,
        [DeviceDeleted(device_id=device_id, external_id=renamed, organization_id=org)],
        producer="devices",
    )

    async def unlinked():
        listed = (await client.get("/api/charger", headers=headers(issuer, org))).json()
        return listed == []

    await eventually(unlinked)
    new_device = device_id + 7
    await register(kafka_bootstrap, new_device, org, renamed)
    relinked = await link(client, issuer, org, charger, renamed)
    assert relinked["deviceId"] == new_device


async def _handled(runtime, envelope) -> bool:
    return bool(await runtime.pool.fetchval("SELECT 1 FROM inbox WHERE event_id = $1", envelope.event_id))


async def _link_status(client, issuer, org, external_id) -> int:
    r = await client.post(
        "/api/charger",
        json={"chargerId": f"ch{uuid.uuid4().hex[:8]}", "externalId": external_id},
        headers=headers(issuer, org),
    )
    return r.status_code


async def test_a_deletion_that_arrives_before_the_registration_keeps_the_device_deleted(gateway, kafka_bootstrap):
    # device.deleted and device.registered travel on two topics: the deletion may be read first.
    runtime, client, issuer = gateway
    device_id, org, ext, _ = ids()
    deleted = await publish_events(
        kafka_bootstrap, [DeviceDeleted(device_id=device_id, external_id=ext, organization_id=org)], producer="devices"
    )
    await eventually(lambda: _handled(runtime, deleted[0]))
    registered = await register(kafka_bootstrap, device_id, org, ext)
    await eventually(lambda: _handled(runtime, registered))
    assert await _link_status(client, issuer, org, ext) == 404

    # The external id stays free for a device registered under it later.
    await register(kafka_bootstrap, device_id + 3, org, ext)
    assert (await link(client, issuer, org, f"ch{uuid.uuid4().hex[:8]}", ext))["deviceId"] == device_id + 3


async def test_an_older_device_state_arriving_late_is_ignored(gateway, kafka_bootstrap):
    runtime, client, issuer = gateway
    device_id, org, ext, charger = ids()
    renamed = f"{ext}-renamed"
    state = dict(
        device_id=device_id, device_uuid=uuid.uuid4(), organization_id=org, capacity_kw=7.4, country_code="IND", fuel_code="ES100",
        device_type_code="TC120", commissioning_date=datetime(2023, 1, 1, tzinfo=UTC), onboarded_at=datetime.now(UTC),
    )  # fmt: skip
    update = envelope_for(DeviceUpdated(external_id=renamed, **state), "devices")
    # The registration happened first but is read last.
    original = DeviceRegistered(external_id=ext, **state)
    late = envelope_for(original, "devices").model_copy(
        update={"occurred_at": update.occurred_at - timedelta(seconds=5)}
    )
    await publish_envelopes(kafka_bootstrap, [("device.updated", str(device_id), update.model_dump_json().encode())])
    await eventually(lambda: _handled(runtime, update))
    await publish_envelopes(
        kafka_bootstrap, [(topic_of(original.TYPE), str(device_id), late.model_dump_json().encode())]
    )
    await eventually(lambda: _handled(runtime, late))
    assert (await link(client, issuer, org, charger, renamed))["deviceId"] == device_id
    assert await _link_status(client, issuer, org, ext) == 404


async def test_a_registration_handled_while_the_deletion_is_in_flight_does_not_bring_the_device_back(gateway):
    # The two events come on two topics, so two consumers may handle them at the same moment.
    runtime, client, issuer = gateway
    device_id, org, ext, _ = ids()
    deleted = DeviceDeleted(device_id=device_id, external_id=ext, organization_id=org)
    registered = DeviceRegistered(
        device_id=device_id, device_uuid=uuid.uuid4(), external_id=ext, organization_id=org, capacity_kw=7.4,
        country_code="IND", fuel_code="ES100", device_type_code="TC120", commissioning_date=datetime(2023, 1, 1, tzinfo=UTC),
        onboarded_at=datetime.now(UTC),
    )  # fmt: skip
    # The deletion's unit of work stays open (uncommitted) until the block ends.
    async with handling(runtime.pool, "charger-gateway", handlers.on_device_deleted, deleted) as deleting:
        registering = asyncio.create_task(
            dispatch(runtime.pool, "charger-gateway", handlers.on_device_registered, registered)
        )
        deleting_pid = deleting.conn.get_server_pid()

        async def blocked() -> bool:
            # some transaction waits for a lock the deletion's transaction holds
            return bool(
                await runtime.pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND $1 = ANY(pg_blocking_pids(pid))",
                    deleting_pid,
                )
            )

        try:
            assert await eventually(blocked, timeout=5)  # the registration waits for the deletion
            assert not registering.done()
        except BaseException:
            registering.cancel()
            raise
    assert await registering  # handled (its inbox claim committed) once the deletion committed
    assert await _link_status(client, issuer, org, ext) == 404


async def test_a_kazam_answer_is_recorded_once_and_only_for_links_unchanged_since_the_poll_began(
    gateway, kafka_bootstrap
):
    # services.record_transactions, the write half of a poll round, without the simulator.
    runtime, client, issuer = gateway
    device_id, org, ext, charger = await known_device(runtime)
    linked = await client.post(
        "/api/charger", json={"chargerId": charger, "externalId": ext}, headers=headers(issuer, org)
    )
    assert linked.status_code == 201, linked.text
    # The stored link time (to the µs; the answer shows it to the millisecond, as D-REC writes times).
    linked_at = await runtime.pool.fetchval("SELECT linked_at FROM charger_links WHERE charger_id = $1", charger)
    assert linked.json()["linkedAt"] == iso(linked_at)
    link_now = Link(charger, device_id, ext, org, linked_at, int(linked_at.timestamp()))
    end = int(linked_at.timestamp()) + 60
    txn_id, bad_id = f"t{uuid.uuid4().hex}", f"t{uuid.uuid4().hex}"
    finished = {"txn_id": txn_id, "device_id": charger, "start_time": end - 600, "end_time": end, "total_usage": 10.5}
    negative = {**finished, "txn_id": bad_id, "total_usage": -1}

    async def recorded(txn: str):
        return await runtime.pool.fetchrow("SELECT outcome, reason FROM kazam_transactions WHERE txn_id = $1", txn)

    # The poll saw the charger linked earlier (unlinked and linked again meanwhile): nothing is credited.
    stale = replace(link_now, linked_at=linked_at - timedelta(minutes=5))
    uow = runtime.uow()
    assert await services.record_transactions(uow, [stale], [finished, negative], end + 10) == (0, 0)
    assert uow.committed == [] and await recorded(txn_id) is None and await recorded(bad_id) is None

    uow = runtime.uow()
    assert await services.record_transactions(uow, [link_now], [finished, negative], end + 10) == (1, 1)
    assert [(e.submission_id, e.device_id, e.reads[0].value_wh) for e in uow.committed] == [
        (f"kazam:{txn_id}", device_id, 11)
    ]
    await wait_for_event(  # through the outbox
        kafka_bootstrap, "read.submitted", lambda e: e.get("payload", {}).get("submission_id") == f"kazam:{txn_id}"
    )
    assert dict(await recorded(txn_id)) == {"outcome": "submitted", "reason": None}
    assert (await recorded(bad_id))["outcome"] == "skipped" and "total_usage" in (await recorded(bad_id))["reason"]

    # Seen again (the look-back re-reads it): already recorded, nothing sent.
    uow = runtime.uow()
    assert await services.record_transactions(uow, [link_now], [finished, negative], end + 20) == (0, 0)
    assert uow.committed == []
