"""Registration and the e-mail addresses that exist (issue 12). By default (REGISTRATION_DISCLOSURE=private) a
registration anyone may send (registerWithOrganization, and /api/user/register of an API user) answers a known
address as a fresh registration (201, the same shape), creates nothing and mails the address's owner instead; a
taken organization name is refused whatever the address. =drec keeps D-REC's 409 naming the e-mail."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opendrec_devstack.drec_samples import registration_body as registration
from opendrec_devstack.smtp_sink import read_mails, wait_for_mails
from opendrec_identity.app import build
from opendrec_kit.testing import started

from .accounts import register

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

ATTEMPT = "Someone tried to register with your OpenDREC e-mail address"


def _shape(answer: dict) -> dict:
    """The answer's keys and value types, nested."""
    return {k: _shape(v) if isinstance(v, dict) else type(v).__name__ for k, v in answer.items()}


def _without_identity(answer: dict) -> dict:
    """The answer less what differs between any two registrations (ids, names, times, the key)."""
    varying = {"id", "firstName", "lastName", "email", "name", "address", "createdAt", "apiUserId", "privateKey"}
    return {k: _without_identity(v) if isinstance(v, dict) else v for k, v in answer.items() if k not in varying}


def _api_user(**overrides) -> dict:
    tag = uuid.uuid4().hex[:10]
    return {
        **registration(email=f"apiuser-{tag}@example.org", orgName=f"Integrator-{tag}", secretKey="AP1234"),
        "organizationType": "ApiUser",
        **overrides,
    }


async def _counts(runtime, email: str, org_name: str) -> tuple[int, int]:
    users = await runtime.pool.fetchval("SELECT count(*) FROM users WHERE email = $1", email.lower())
    orgs = await runtime.pool.fetchval("SELECT count(*) FROM organizations WHERE lower(name) = lower($1)", org_name)
    return users, orgs


async def _attempt_mails(smtp_sink, email: str, count: int) -> list:
    mails = await asyncio.to_thread(wait_for_mails, smtp_sink[1], email, count, 20.0)
    return [m for m in mails if m["Subject"] == ATTEMPT]


@pytest.fixture(scope="module")
async def drec(make_identity_settings):
    async with started(build(make_identity_settings(registration_disclosure="drec"))) as client:
        yield client


async def test_a_known_email_is_answered_as_a_fresh_registration_and_its_owner_mailed(client, runtime, smtp_sink):
    body, fresh = await register(client)  # a fresh registration, for its answer's shape
    again = registration(email=body["email"].swapcase(), firstName="Mallory")
    answer = await client.post("/api/user/registerWithOrganization", json=again)
    assert answer.status_code == 201, answer.text
    taken = answer.json()
    assert _shape(taken) == _shape(fresh) and _without_identity(taken) == _without_identity(fresh)
    assert (taken["email"], taken["firstName"], taken["organization"]["name"]) == (
        body["email"].lower(),
        "Mallory",
        again["orgName"],
    )
    assert taken["id"] > fresh["id"] and taken["organization"]["id"] > fresh["organization"]["id"]
    [attempt] = await _attempt_mails(smtp_sink, body["email"], 2)  # the confirmation, then the attempt
    assert "Nothing was created" in attempt.get_content() and "Hello energy" in attempt.get_content()
    # nothing was made of it: only the owner's account has the address, the name is still free
    assert await _counts(runtime, body["email"], again["orgName"]) == (1, 0)
    login = await client.post("/api/auth/login", json={"username": body["email"], "password": body["password"]})
    assert login.status_code == 200
    assert (
        await client.post("/api/user/registerWithOrganization", json=registration(orgName=again["orgName"]))
    ).status_code == 201


async def test_a_taken_organization_name_is_refused_whatever_the_email(client, smtp_sink):
    """Else a taken name would tell a known address (201) from a new one (409)."""
    body, _ = await register(client)
    other, _ = await register(client)
    for email in (other["email"], f"new-{uuid.uuid4().hex[:8]}@example.org"):
        answer = await client.post(
            "/api/user/registerWithOrganization", json=registration(email=email, orgName=body["orgName"].upper())
        )
        assert answer.status_code == 409 and [d["field"] for d in answer.json()["details"]] == ["orgName"], email
    assert not [m for m in read_mails(smtp_sink[1], other["email"]) if m["Subject"] == ATTEMPT]


async def test_an_api_user_registration_with_a_known_email_gets_a_fresh_answer_and_a_key(client, runtime, smtp_sink):
    fresh_body = _api_user()
    fresh = await client.post("/api/user/register", json=fresh_body)
    assert fresh.status_code == 201, fresh.text
    again = _api_user(email=fresh_body["email"].upper())
    answer = await client.post("/api/user/register", json=again)
    assert answer.status_code == 201, answer.text
    taken = answer.json()
    assert _shape(taken) == _shape(fresh.json()) and _without_identity(taken) == _without_identity(fresh.json())
    key = serialization.load_pem_private_key(taken["privateKey"].encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey) and taken["privateKey"] != fresh.json()["privateKey"]
    assert taken["apiUserId"] != fresh.json()["apiUserId"]
    assert (
        await runtime.pool.fetchval("SELECT count(*) FROM api_users WHERE id = $1", uuid.UUID(taken["apiUserId"])) == 0
    )
    assert await _counts(runtime, fresh_body["email"], again["orgName"]) == (1, 0)
    assert len(await _attempt_mails(smtp_sink, fresh_body["email"], 2)) == 1


async def test_drec_mode_names_the_known_email_with_a_409(drec):
    body, _ = await register(drec)
    again = await drec.post("/api/user/registerWithOrganization", json=registration(email=body["email"].swapcase()))
    assert again.status_code == 409 and [d["field"] for d in again.json()["details"]] == ["email"]
    both = await drec.post(
        "/api/user/registerWithOrganization", json=registration(email=body["email"], orgName=body["orgName"].lower())
    )
    assert both.status_code == 409 and [d["field"] for d in both.json()["details"]] == ["email", "orgName"]
    api_user = _api_user()
    assert (await drec.post("/api/user/register", json=api_user)).status_code == 201
    taken = await drec.post("/api/user/register", json=_api_user(email=api_user["email"].upper()))
    assert taken.status_code == 409 and [d["field"] for d in taken.json()["details"]] == ["email"]
