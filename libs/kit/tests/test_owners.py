"""Read-your-writes: asking an owning service on a read-model miss (opendrec_kit.owners)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from opendrec_contracts import OrganizationRegistered
from opendrec_kit import db
from opendrec_kit.auth import Principal
from opendrec_kit.errors import ApiError
from opendrec_kit.organizations import acting_organization, serving
from opendrec_kit.owners import OwnerServices
from opendrec_kit.testing import OwnerStandIn

SINCE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CALLER = Principal(user_id=7, organization_id=3, organization_type="ApiUser", role="ApiUser", email="a@x", token="tok")


@pytest.fixture
def identity() -> Iterator[OwnerStandIn]:
    owner = OwnerStandIn().start()
    yield owner
    owner.stop()


def owners_at(url: str, **kw: float) -> OwnerServices:
    return OwnerServices({"identity": url}, service="devices", **kw)  # type: ignore[arg-type]  # floats and ints


def registered(organization_id: int) -> OrganizationRegistered:
    return OrganizationRegistered(organization_id=organization_id, name="Solar Co", organization_type="Developer")


async def test_the_owners_state_comes_back_as_events_with_their_time_and_the_callers_token_travels(identity):
    identity.knows("/organizations/41", [(registered(41), SINCE)], producer="identity")
    owners = owners_at(identity.url)
    try:
        known = await owners.ask("identity", "/organizations/41", CALLER)
    finally:
        await owners.close()
    assert [(k.event, k.occurred_at) for k in known] == [(registered(41), SINCE)]
    assert identity.asked == [("/internal/organizations/41", "Bearer tok")]


async def test_an_entity_the_owner_does_not_know_or_show_is_an_empty_answer(identity):
    owners = owners_at(identity.url)
    try:
        assert await owners.ask("identity", "/organizations/42", CALLER) == []
    finally:
        await owners.close()


async def test_without_a_caller_token_nobody_is_asked(identity):
    owners = owners_at(identity.url)
    anonymous = Principal(user_id=1, organization_id=1, organization_type="Developer", role="User", email="u@x")
    assert await owners.ask("identity", "/organizations/41", anonymous) == []
    assert identity.asked == []


@pytest.mark.parametrize(
    "status, body", [(500, {"message": "boom"}), (200, {"events": [{"type": "no.such.event"}]}), (200, ["x"])]
)
async def test_an_owner_that_fails_or_answers_nonsense_is_a_503_not_a_404(identity, status, body):
    identity.answers["/internal/organizations/43"] = (status, body)
    owners = owners_at(identity.url)
    try:
        with pytest.raises(ApiError) as raised:
            await owners.ask("identity", "/organizations/43", CALLER)
    finally:
        await owners.close()
    assert raised.value.status == 503
    assert "identity" in raised.value.message


async def test_an_owner_that_is_down_is_a_503_saying_who():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    owners = owners_at(f"http://127.0.0.1:{port}", timeout_s=2.0)
    try:
        with pytest.raises(ApiError) as raised:
            await owners.ask("identity", "/organizations/44", CALLER)
    finally:
        await owners.close()
    assert raised.value.status == 503
    assert "identity did not answer" in raised.value.message


# -- organizations named by API users and admins (organizations.known_organization) -------------------------------


@pytest.fixture(scope="module")
async def pool(fresh_database):
    url = fresh_database("owners")
    await db.migrate(url, None)  # the kit's own tables, organization_directory among them
    pool = await db.create_pool(url, 1, 4)
    yield pool
    await pool.close()


@dataclass
class Serving:
    owners: OwnerServices


API_USER_ID = str(uuid.uuid4())
INTEGRATOR = Principal(
    user_id=9, organization_id=5, organization_type="ApiUser", role="ApiUser", email="i@x", api_user_id=API_USER_ID,
    token="integrator-token",
)  # fmt: skip


@pytest.mark.integration
async def test_an_organization_identity_registered_a_moment_ago_is_asked_for_while_serving_a_request(pool, identity):
    """The API user registered organization 61 in identity; organization.registered has not arrived here yet."""
    identity.knows(
        "/organizations/61",
        [(OrganizationRegistered(organization_id=61, name="New Dev", organization_type="Developer",
                                 api_user_id=API_USER_ID), SINCE)],
    )  # fmt: skip
    owners = owners_at(identity.url)
    async with pool.acquire() as conn:
        # Outside a request (event handlers, workers): only what the directory holds.
        with pytest.raises(ApiError) as outside:
            await acting_organization(conn, INTEGRATOR, 61)
        assert outside.value.status == 403 and identity.asked == []

        token = serving.set(Serving(owners))  # type: ignore[arg-type]  # what the runtime's middleware sets
        try:
            assert await acting_organization(conn, INTEGRATOR, 61, organization_type="Developer") == 61
            with pytest.raises(ApiError) as wrong_type:
                await acting_organization(conn, INTEGRATOR, 61, organization_type="Buyer")
            assert wrong_type.value.status == 403
            with pytest.raises(ApiError) as unknown:  # identity does not know it (or shows it to someone else)
                await acting_organization(conn, INTEGRATOR, 62)
            assert unknown.value.status == 403
        finally:
            serving.reset(token)
            await owners.close()
    assert [path for path, _ in identity.asked] == ["/internal/organizations/61"] * 2 + ["/internal/organizations/62"]
    assert {auth for _, auth in identity.asked} == {"Bearer integrator-token"}
