"""Read-your-writes: asking an owning service on a read-model miss (opendrec_kit.owners)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from opendrec_contracts import OrganizationRegistered
from opendrec_kit.auth import Principal
from opendrec_kit.errors import ApiError
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
