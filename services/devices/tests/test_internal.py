"""Read-your-writes, the owner's side (opendrec_kit.owners): other services ask GET /internal/devices?id=..
and GET /internal/devices/by-external-id on their caller's behalf, and take device.registered with the device's
current state as they take the event. Visible exactly as through the public API; nothing told of the others."""

from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts import DeviceRegistered, Envelope, OrganizationRegistered, parse_event
from opendrec_devices import domain, handlers
from opendrec_kit.testing import wait_for_event

from .test_api import dev, new_org, payload
from .test_api_users import api_users, as_api_user  # noqa: F401 - api_users is a fixture used here
from .test_changes import ended, reservation
from .test_device_helpers import buyer, follow, register

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime.now(UTC)
STATES = "/internal/devices"
BY_EXTERNAL_ID = "/internal/devices/by-external-id"
READ = {"DEVICE_MANAGEMENT_CRUDL": "R"}


def admin(issuer):
    return issuer.headers(organization_id=1, organization_type="Admin", role="Admin")


def known(r) -> list[tuple[DeviceRegistered, datetime]]:
    """The answer as the asking service reads it (opendrec_kit.owners): events and when their state began."""
    assert r.status_code == 200, r.text
    envelopes = [Envelope.model_validate(item) for item in r.json()["events"]]
    assert all(e.producer == "devices" and e.type == "device.registered" for e in envelopes)
    events = [(parse_event(e), e.occurred_at) for e in envelopes]
    assert all(isinstance(event, DeviceRegistered) for event, _ in events)
    return events  # type: ignore[return-value]  # checked just above


def ids_of(r) -> list[int]:
    return [event.device_id for event, _ in known(r)]


async def states(client, headers, *device_ids):
    return await client.get(STATES, params=[("id", i) for i in device_ids], headers=headers)


async def by_external_id(client, headers, organization_id, external_id):
    return await client.get(
        BY_EXTERNAL_ID, params={"organizationId": organization_id, "externalId": external_id}, headers=headers
    )


async def test_the_owner_sees_its_devices_current_state_as_device_registered_carries_it(service):
    client, issuer = service
    org = new_org()
    headers = dev(issuer, org, role="DeviceOwner")
    first, second = await register(client, headers), await register(client, headers, yieldValue=1200)

    r = await states(client, headers, second["id"], first["id"], first["id"])
    assert ids_of(r) == [first["id"], second["id"]]  # once each, by id
    rows = {
        row["id"]: row
        for row in await client.runtime.pool.fetch("SELECT * FROM devices WHERE organization_id = $1", org)
    }
    for event, since in known(r):
        row = rows[event.device_id]
        assert event == domain.registered_event(row)  # exactly what device.registered carries
        assert since == row["updated_at"]

    one = await by_external_id(client, headers, org, second["externalId"])
    [(event, since)] = known(one)
    assert event == domain.registered_event(rows[second["id"]]) and event.yield_value == 1200
    assert since == rows[second["id"]]["updated_at"]


async def test_a_changed_device_answers_its_new_state_stamped_between_its_events(service, kafka_bootstrap):
    client, issuer = service
    org = new_org()
    headers = dev(issuer, org)
    device = await register(client, headers)
    changed = await client.patch(f"/api/device/{device['externalId']}", json={"capacity": 7.5}, headers=headers)
    assert changed.status_code == 200, changed.text

    [(event, since)] = known(await states(client, headers, device["id"]))
    assert event.capacity_kw == 7.5 and event.organization_id == org
    assert abs(since - datetime.fromisoformat(changed.json()["updatedAt"])) < timedelta(milliseconds=1)
    registered, _ = await wait_for_event(
        kafka_bootstrap, "device.registered", lambda e: e["payload"]["device_id"] == device["id"]
    )
    updated, _ = await wait_for_event(
        kafka_bootstrap, "device.updated", lambda e: e["payload"]["device_id"] == device["id"]
    )
    # after the state it replaced was announced, not after its own announcement: consumers order it right
    assert datetime.fromisoformat(registered["occurred_at"]) < since <= datetime.fromisoformat(updated["occurred_at"])
    assert updated["payload"] == event.model_dump(mode="json")


async def test_others_unknown_and_deleted_devices_are_left_out(service):
    client, issuer = service
    org, other = new_org(), new_org()
    mine, gone = await register(client, dev(issuer, org)), await register(client, dev(issuer, org))
    theirs = await register(client, dev(issuer, other))
    assert (await client.delete(f"/api/device/{gone['id']}", headers=dev(issuer, org))).status_code == 200

    r = await states(client, dev(issuer, org), mine["id"], gone["id"], theirs["id"], 2**63 - 1)
    assert ids_of(r) == [mine["id"]]
    nothing = await states(client, dev(issuer, org), theirs["id"], gone["id"])
    assert nothing.json() == {"events": []}
    # without Read on the device module nothing is seen, not even one's own
    blind = issuer.headers(
        organization_id=org, organization_type="Developer", permissions={"DEVICE_MANAGEMENT_CRUDL": "W"}
    )
    assert ids_of(await states(client, blind, mine["id"])) == []
    assert (await by_external_id(client, blind, org, mine["externalId"])).status_code == 404

    for headers, organization_id, external_id in (
        (dev(issuer, other), org, mine["externalId"]),  # another organization's: as if unknown
        (dev(issuer, org), org, gone["externalId"]),  # deleted
        (dev(issuer, org), org, "no-such-device"),
        (dev(issuer, org), other, theirs["externalId"]),  # a non-admin naming another organization
    ):
        hidden = await by_external_id(client, headers, organization_id, external_id)
        assert hidden.status_code == 404, hidden.text
        assert (
            hidden.json()["message"] == f"No device with externalId {external_id!r} in organization {organization_id}"
        )


async def test_an_admin_sees_every_device(service):
    client, issuer = service
    org, other = new_org(), new_org()
    one, two = await register(client, dev(issuer, org)), await register(client, dev(issuer, other))
    assert ids_of(await states(client, admin(issuer), one["id"], two["id"])) == [one["id"], two["id"]]
    [(event, _)] = known(await by_external_id(client, admin(issuer), other, two["externalId"]))
    assert event.device_id == two["id"] and event.organization_id == other


async def test_a_buyer_sees_the_devices_it_may_reserve(service):
    client, issuer = service
    org = new_org()
    free, held, freed = [await register(client, dev(issuer, org)) for _ in range(3)]
    await follow(
        client,
        handlers.on_reservation_created,
        reservation([held["id"]], NOW - timedelta(days=1), NOW + timedelta(days=30)),
    )
    done = reservation([freed["id"]], NOW - timedelta(days=1), NOW + timedelta(days=30))
    await follow(client, handlers.on_reservation_created, done)
    await follow(client, handlers.on_reservation_ended, ended(done))
    asked = (free["id"], held["id"], freed["id"])

    for role in ("Buyer", "SubBuyer"):
        # what GET /api/device/ungrouped/buyerreservation shows it: no active reservation holds them
        assert ids_of(await states(client, buyer(issuer, new_org(), role), *asked)) == [free["id"], freed["id"]]
    # not a buyer: a User of a Buyer organization, a Buyer role in a Developer organization
    user = issuer.headers(organization_id=new_org(), organization_type="Buyer", role="User", permissions=READ)
    odd = issuer.headers(organization_id=new_org(), organization_type="Developer", role="Buyer", permissions=READ)
    assert ids_of(await states(client, user, *asked)) == ids_of(await states(client, odd, *asked)) == []
    # a buyer acts for its own organization only: the developer's externalId is not its to look up
    assert (await by_external_id(client, buyer(issuer, new_org()), org, free["externalId"])).status_code == 404


async def test_an_api_user_sees_its_developer_organizations_devices_and_those_it_may_reserve(service, api_users):  # noqa: F811 - the fixture
    client, issuer = service
    me, them = api_users
    headers = as_api_user(issuer, me)
    mine = (await client.post("/api/device", json=payload(organizationId=me.developers[1]), headers=headers)).json()
    theirs, free = [
        (
            await client.post(
                "/api/device", json=payload(organizationId=them.developers[0]), headers=as_api_user(issuer, them)
            )
        ).json()
        for _ in range(2)
    ]
    await follow(
        client,
        handlers.on_reservation_created,
        reservation([theirs["id"]], NOW - timedelta(days=1), NOW + timedelta(days=30)),
    )

    # its own device; another API user's only while it is free to reserve (both have a Buyer organization)
    assert ids_of(await states(client, headers, mine["id"], theirs["id"], free["id"])) == [mine["id"], free["id"]]
    assert ids_of(await states(client, as_api_user(issuer, them), theirs["id"])) == [theirs["id"]]
    [(event, _)] = known(await by_external_id(client, headers, me.developers[1], mine["externalId"]))
    assert event.device_id == mine["id"] and event.organization_id == me.developers[1]
    for organization_id, external_id in (
        (them.developers[0], theirs["externalId"]),  # another API user's organization
        (me.developers[0], mine["externalId"]),  # its own organization, but not that device's
        (me.buyer, mine["externalId"]),  # its Buyer organization holds no devices
    ):
        assert (await by_external_id(client, headers, organization_id, external_id)).status_code == 404
    # an API user's Read on the device module comes from its approval
    unapproved = as_api_user(issuer, me, perms={"READS_MANAGEMENT_CRUDL": "R"})
    assert ids_of(await states(client, unapproved, mine["id"])) == []


async def test_a_token_is_required(service):
    client, issuer = service
    device = await register(client, dev(issuer, new_org()))
    assert (await states(client, {}, device["id"])).status_code == 401
    assert (await by_external_id(client, {}, device["organizationId"], device["externalId"])).status_code == 401
    expired = dev(issuer, device["organizationId"], expires_in=timedelta(minutes=-1))
    assert (await states(client, expired, device["id"])).status_code == 401


@pytest.mark.parametrize(
    "params, field",
    [
        ([], "id"),
        ([("id", 0)], "id"),
        ([("id", 2**63)], "id"),
        ([("id", "x")], "id"),
        ([("id", i) for i in range(1, 1002)], "id"),
    ],
)
async def test_a_malformed_question_is_a_422(service, params, field):
    client, issuer = service
    r = await client.get(STATES, params=params, headers=dev(issuer, new_org()))
    assert r.status_code == 422, r.text
    assert r.json()["message"] == f"Invalid question: check {field}"


async def test_the_most_ids_one_question_names(service):
    client, issuer = service
    device = await register(client, dev(issuer, org := new_org()))
    r = await states(client, dev(issuer, org), *range(1, 1000), device["id"])
    assert ids_of(r) == [device["id"]]


@pytest.mark.parametrize(
    "params, fields",
    [
        ({}, "externalId, organizationId"),
        ({"organizationId": 5}, "externalId"),
        ({"organizationId": 0, "externalId": "a"}, "organizationId"),
        ({"organizationId": 2**63, "externalId": "a"}, "organizationId"),
        ({"organizationId": 5, "externalId": ""}, "externalId"),
        ({"organizationId": 5, "externalId": "x" * (domain.MAX_EXTERNAL_ID + 1)}, "externalId"),
    ],
)
async def test_a_malformed_external_id_question_is_a_422(service, params, fields):
    client, issuer = service
    r = await client.get(BY_EXTERNAL_ID, params=params, headers=dev(issuer, new_org()))
    assert r.status_code == 422, r.text
    assert r.json()["message"] == f"Invalid question: check {fields}"


async def test_the_internal_routes_are_not_in_the_public_document(service):
    client, _ = service
    paths = client.runtime.app.openapi()["paths"]
    assert not [p for p in paths if p.startswith("/internal")]


async def test_an_api_users_organization_identity_registered_a_moment_ago_is_asked_of_identity(
    service,
    api_users,  # noqa: F811 - the fixture
    identity_owner,
):
    client, issuer = service
    me, _ = api_users
    fresh = new_org()  # organization.registered has not reached devices: identity is asked
    identity_owner.knows(
        f"/organizations/{fresh}",
        [
            (
                OrganizationRegistered(
                    organization_id=fresh, name="new", organization_type="Developer", api_user_id=me.api_user_id
                ),
                NOW,
            )
        ],
        producer="identity",
    )
    headers = as_api_user(issuer, me)
    r = await client.post("/api/device", json=payload(organizationId=fresh), headers=headers)
    assert r.status_code == 201, r.text
    device = r.json()
    # held: seen as its organization's device, not as one its Buyer organization may reserve
    await follow(
        client,
        handlers.on_reservation_created,
        reservation([device["id"]], NOW - timedelta(days=1), NOW + timedelta(days=30)),
    )
    assert ids_of(await states(client, headers, device["id"])) == [device["id"]]
    [(event, _)] = known(await by_external_id(client, headers, fresh, device["externalId"]))
    assert event.device_id == device["id"]

    # identity not answering is a 503 (the asking service says so), never a 404 that would hide the device
    identity_owner.answers[f"/internal/organizations/{fresh}"] = (500, {"message": "down"})
    assert (await states(client, headers, device["id"])).status_code == 503
    assert (await by_external_id(client, headers, fresh, device["externalId"])).status_code == 503
