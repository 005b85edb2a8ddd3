"""Registration and the e-mail addresses that exist (issue 12): REGISTRATION_DISCLOSURE=drec (the default) keeps
D-REC's 409 naming the e-mail, what D-REC clients expect; =private answers a known address as a fresh registration
(201, the same shape), creates nothing and mails the address's owner instead."""

from __future__ import annotations

import asyncio

import pytest

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


@pytest.fixture(scope="module")
async def private(make_identity_settings):
    async with started(build(make_identity_settings(registration_disclosure="private"))) as client:
        yield client


async def test_by_default_a_known_email_gets_drecs_409(client):
    body, _ = await register(client)
    again = await client.post("/api/user/registerWithOrganization", json=registration(email=body["email"]))
    assert again.status_code == 409 and [d["field"] for d in again.json()["details"]] == ["email"]


async def test_private_answers_a_known_email_as_a_fresh_registration_and_mails_its_owner(private, smtp_sink):
    body, fresh = await register(private)  # a fresh registration, for its answer's shape
    [confirmation] = await asyncio.to_thread(wait_for_mails, smtp_sink[1], body["email"], 1, 20.0)
    again = registration(email=body["email"].upper(), firstName="Mallory")
    answer = await private.post("/api/user/registerWithOrganization", json=again)
    assert answer.status_code == 201, answer.text
    taken = answer.json()
    assert _shape(taken) == _shape(fresh)
    assert (taken["email"], taken["firstName"], taken["organization"]["name"]) == (
        body["email"].lower(),
        "Mallory",
        again["orgName"],
    )
    assert taken["id"] > fresh["id"] and taken["organization"]["id"] > fresh["organization"]["id"]
    mails = await asyncio.to_thread(wait_for_mails, smtp_sink[1], body["email"], 2, 20.0)
    attempt = next(m for m in mails if m is not confirmation and m["Subject"] == ATTEMPT)
    assert "Nothing was created" in attempt.get_content() and "Hello energy" in attempt.get_content()
    # nothing was made of it: the name is still free, and only the owner's account answers the address
    assert (
        await private.post("/api/user/registerWithOrganization", json=registration(orgName=again["orgName"]))
    ).status_code == 201
    login = await private.post("/api/auth/login", json={"username": body["email"], "password": body["password"]})
    assert login.status_code == 200


async def test_private_still_names_a_taken_organization_name(private, smtp_sink):
    body, _ = await register(private)
    answer = await private.post("/api/user/registerWithOrganization", json=registration(orgName=body["orgName"]))
    assert answer.status_code == 409 and [d["field"] for d in answer.json()["details"]] == ["orgName"]
    assert not [m for m in read_mails(smtp_sink[1], body["email"]) if m["Subject"] == ATTEMPT]
