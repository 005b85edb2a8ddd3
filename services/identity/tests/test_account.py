"""E-mail confirmation, password reset and change, profile: mails read back from a real SMTP sink."""

import asyncio
import logging
import re
import uuid

import pytest

from opendrec_devstack.net import free_port
from opendrec_devstack.smtp_sink import read_mails, start_smtp_sink, wait_for_mails
from opendrec_identity.app import build
from opendrec_kit.testing import TokenIssuer, eventually, started

from .accounts import bearer, login, token_for
from .accounts import register as register_organization

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(scope="module")
def mail_dir(smtp_sink):
    return smtp_sink[1]


async def register(client, **changes) -> tuple[dict, dict]:
    """A Buyer organization's first user, password First123."""
    return await register_organization(client, "Buyer", password="First123", **changes)


async def mails_to(mail_dir, email: str, count: int = 1):
    return await asyncio.to_thread(wait_for_mails, mail_dir, email, count, 20.0)


def token_in(mail) -> str:
    return re.search(r"^Token: (\S+)$", mail.get_body(("plain",)).get_content(), re.M).group(1)


def assert_field_error(resp, field: str, text: str) -> None:
    assert resp.status_code == 400, resp.text
    details = resp.json()["details"]
    assert [d["field"] for d in details] == [field], details
    assert text in details[0]["message"]


# -- e-mail confirmation ---------------------------------------------------------------------------------


async def test_registration_mails_a_confirmation_token_that_confirms_once(client, mail_dir, runtime):
    body, created = await register(client)
    [mail] = await mails_to(mail_dir, created["email"])
    assert mail["Subject"] == "Confirm your OpenDREC e-mail address"
    assert mail["From"] == "OpenDREC <no-reply@opendrec.local>"
    token = token_in(mail)
    assert f"/api/user/confirm-email/{token}" in mail.get_body(("plain",)).get_content()

    # Stored hashed only, and the sent mail (which held it) is gone from the queue.
    stored = await runtime.pool.fetch("SELECT token_hash FROM user_tokens WHERE user_id = $1", created["id"])
    assert len(stored) == 1 and stored[0]["token_hash"] != token and len(stored[0]["token_hash"]) == 64
    assert await runtime.pool.fetchval("SELECT count(*) FROM mails WHERE recipient = $1", created["email"]) == 0

    resp = await client.put(f"/api/user/confirm-email/{token}")
    assert resp.status_code == 200, resp.text
    me = await client.get("/api/user/me", headers=bearer(await token_for(client, body)))
    assert me.json()["emailConfirmed"] is True

    again = await client.put(f"/api/user/confirm-email/{token}")
    assert again.status_code == 400
    assert "invalid, already used or expired" in again.json()["message"]


async def test_an_unknown_confirmation_token_is_refused(client):
    resp = await client.put(f"/api/user/confirm-email/{'a' * 43}")
    assert resp.status_code == 400
    assert (await client.put(f"/api/user/confirm-email/{'a' * 201}")).status_code == 400


async def test_an_expired_confirmation_token_is_refused(client, mail_dir, runtime):
    _, created = await register(client)
    token = token_in((await mails_to(mail_dir, created["email"]))[0])
    await runtime.pool.execute(
        "UPDATE user_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1", created["id"]
    )
    assert (await client.put(f"/api/user/confirm-email/{token}")).status_code == 400
    assert await runtime.pool.fetchval("SELECT email_confirmed FROM users WHERE id = $1", created["id"]) is False


async def test_resend_sends_a_new_token_and_the_old_one_stops_working(client, mail_dir):
    body, created = await register(client)
    old = token_in((await mails_to(mail_dir, created["email"]))[0])
    token = await token_for(client, body)

    resp = await client.put("/api/user/resend-confirm-email", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    new = token_in((await mails_to(mail_dir, created["email"], 2))[1])
    assert new != old
    assert (await client.put(f"/api/user/confirm-email/{old}")).status_code == 400
    assert (await client.put(f"/api/user/confirm-email/{new}")).status_code == 200

    already = await client.put("/api/user/resend-confirm-email", headers=bearer(token))
    assert already.status_code == 409
    assert "already confirmed" in already.json()["message"]


async def test_resend_needs_a_login(client):
    assert (await client.put("/api/user/resend-confirm-email")).status_code == 401


# -- forgotten password ------------------------------------------------------------------------------------


async def test_forget_password_answers_the_same_for_unknown_emails_and_mails_only_real_ones(client, mail_dir):
    body, created = await register(client)
    known = await client.post("/api/user/forget-password", json={"email": body["email"].upper()})
    unknown_email = f"nobody-{uuid.uuid4().hex[:8]}@example.org"
    unknown = await client.post("/api/user/forget-password", json={"email": unknown_email})
    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json()

    mails = await mails_to(mail_dir, created["email"], 2)  # confirmation, then reset
    assert mails[1]["Subject"] == "Reset your OpenDREC password"
    assert "within 60 minutes" in mails[1].get_body(("plain",)).get_content()
    assert read_mails(mail_dir, unknown_email) == []


async def test_forget_password_needs_a_valid_email(client):
    assert_field_error(await client.post("/api/user/forget-password", json={"email": "nope"}), "email", "valid e-mail")
    assert_field_error(await client.post("/api/user/forget-password", json={}), "email", "required")


async def reset_token(client, mail_dir, email: str, count: int) -> str:
    assert (await client.post("/api/user/forget-password", json={"email": email})).status_code == 200
    return token_in((await mails_to(mail_dir, email, count))[count - 1])


async def test_reset_sets_the_new_password_once_and_ends_every_session(client, mail_dir):
    body, created = await register(client)
    session = await token_for(client, body)
    token = await reset_token(client, mail_dir, created["email"], 2)

    resp = await client.put(
        f"/api/user/reset/password/{token}", json={"newPassword": "Second456", "confirmPassword": "Second456"}
    )
    assert resp.status_code == 200, resp.text
    assert (await login(client, body["email"], body["password"])).status_code == 401
    assert (await login(client, body["email"], "Second456")).status_code == 200
    assert (await client.get("/api/user/me", headers=bearer(session))).status_code == 401

    again = await client.put(
        f"/api/user/reset/password/{token}", json={"newPassword": "Third789x", "confirmPassword": "Third789x"}
    )
    assert again.status_code == 400
    assert (await login(client, body["email"], "Second456")).status_code == 200


async def test_a_newer_reset_token_replaces_the_older_one(client, mail_dir):
    _, created = await register(client)
    first = await reset_token(client, mail_dir, created["email"], 2)
    second = await reset_token(client, mail_dir, created["email"], 3)
    pw = {"newPassword": "Other1234", "confirmPassword": "Other1234"}
    assert (await client.put(f"/api/user/reset/password/{first}", json=pw)).status_code == 400
    assert (await client.put(f"/api/user/reset/password/{second}", json=pw)).status_code == 200


async def test_an_expired_reset_token_is_refused(client, mail_dir, runtime):
    body, created = await register(client)
    token = await reset_token(client, mail_dir, created["email"], 2)
    await runtime.pool.execute(
        "UPDATE user_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1 AND purpose = 'reset_password'",
        created["id"],
    )
    resp = await client.put(
        f"/api/user/reset/password/{token}", json={"newPassword": "Other1234", "confirmPassword": "Other1234"}
    )
    assert resp.status_code == 400
    assert (await login(client, body["email"], body["password"])).status_code == 200


@pytest.mark.parametrize(
    ("payload", "field", "text"),
    [
        ({"newPassword": "short", "confirmPassword": "short"}, "newPassword", "6 to 128"),
        ({"newPassword": "abcdefgh", "confirmPassword": "abcdefgh"}, "newPassword", "one letter and one digit"),
        ({"newPassword": "Good12345", "confirmPassword": "Good12346"}, "confirmPassword", "must match newPassword"),
        ({"confirmPassword": "Good12345"}, "newPassword", "required"),
        ({"newPassword": "Good12345"}, "confirmPassword", "required"),
    ],
)
async def test_reset_validates_the_new_password_without_spending_the_token(client, mail_dir, payload, field, text):
    _, created = await register(client)
    token = await reset_token(client, mail_dir, created["email"], 2)
    assert_field_error(await client.put(f"/api/user/reset/password/{token}", json=payload), field, text)
    ok = await client.put(
        f"/api/user/reset/password/{token}", json={"newPassword": "Good12345", "confirmPassword": "Good12345"}
    )
    assert ok.status_code == 200


async def test_reset_with_an_unknown_token_is_refused(client):
    resp = await client.put(
        f"/api/user/reset/password/{'b' * 43}", json={"newPassword": "Good12345", "confirmPassword": "Good12345"}
    )
    assert resp.status_code == 400


# -- password change ----------------------------------------------------------------------------------------


async def test_change_password_keeps_this_session_and_ends_the_others(client):
    body, _ = await register(client)
    this, other = [await token_for(client, body) for _ in range(2)]
    resp = await client.put(
        "/api/user/password",
        headers=bearer(this),
        json={"oldPassword": body["password"], "newPassword": "Changed99", "confirmPassword": "Changed99"},
    )
    assert resp.status_code == 200, resp.text
    assert (await client.get("/api/user/me", headers=bearer(this))).status_code == 200
    assert (await client.get("/api/user/me", headers=bearer(other))).status_code == 401
    assert (await login(client, body["email"], body["password"])).status_code == 401
    assert (await login(client, body["email"], "Changed99")).status_code == 200


@pytest.mark.parametrize(
    ("payload", "field", "text"),
    [
        (
            {"oldPassword": "Wrong1234", "newPassword": "Changed99", "confirmPassword": "Changed99"},
            "oldPassword",
            "not your current password",
        ),
        (
            {"oldPassword": "First123", "newPassword": "First123", "confirmPassword": "First123"},
            "newPassword",
            "must differ",
        ),
        ({"oldPassword": "First123", "newPassword": "weak", "confirmPassword": "weak"}, "newPassword", "6 to 128"),
        (
            {"oldPassword": "First123", "newPassword": "Changed99", "confirmPassword": "Changed98"},
            "confirmPassword",
            "must match",
        ),
        ({"newPassword": "Changed99", "confirmPassword": "Changed99"}, "oldPassword", "required"),
    ],
)
async def test_change_password_validation(client, payload, field, text):
    body, _ = await register(client)
    token = await token_for(client, body)
    assert_field_error(await client.put("/api/user/password", headers=bearer(token), json=payload), field, text)
    assert (await login(client, body["email"], body["password"])).status_code == 200


async def test_change_password_needs_login_and_the_password_permission(client, runtime):
    payload = {"oldPassword": "First123", "newPassword": "Changed99", "confirmPassword": "Changed99"}
    assert (await client.put("/api/user/password", json=payload)).status_code == 401
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    resp = await client.put(
        "/api/user/password",
        json=payload,
        headers=issuer.headers(role="ApiUser", organization_type="ApiUser", permissions={}),
    )
    assert resp.status_code == 403
    assert "PASSWORD_MANAGEMENT_CRUDL" in resp.json()["message"]


# -- profile and me ---------------------------------------------------------------------------------------------


async def test_profile_changes_the_names(client):
    body, created = await register(client)
    token = await token_for(client, body)
    resp = await client.put(
        "/api/user/profile", headers=bearer(token), json={"firstName": " Grace ", "lastName": "Hopper"}
    )
    assert resp.status_code == 200, resp.text
    assert (resp.json()["firstName"], resp.json()["lastName"], resp.json()["id"]) == ("Grace", "Hopper", created["id"])
    only_last = await client.put("/api/user/profile", headers=bearer(token), json={"lastName": "H."})
    assert (only_last.json()["firstName"], only_last.json()["lastName"]) == ("Grace", "H.")
    me = (await client.get("/api/user/me", headers=bearer(token))).json()
    assert (me["firstName"], me["lastName"]) == ("Grace", "H.")


async def test_profile_validation_and_login(client):
    body, _ = await register(client)
    token = await token_for(client, body)
    assert_field_error(
        await client.put("/api/user/profile", headers=bearer(token), json={"firstName": "  "}), "firstName", "required"
    )
    assert_field_error(
        await client.put("/api/user/profile", headers=bearer(token), json={"lastName": "x" * 101}),
        "lastName",
        "at most 100",
    )
    empty = await client.put("/api/user/profile", headers=bearer(token), json={})
    assert empty.status_code == 400 and "firstName, lastName or both" in empty.text
    assert (await client.put("/api/user/profile", json={"firstName": "X"})).status_code == 401


# -- delivery ----------------------------------------------------------------------------------------------------


async def test_a_mail_queued_while_smtp_is_down_is_sent_once_it_is_back(make_identity_settings, tmp_path):
    port = free_port()
    settings = make_identity_settings(smtp_url=f"smtp://127.0.0.1:{port}")
    runtime = build(settings)
    async with started(runtime) as client:
        _, created = await register(client)

        async def failed_once():
            return await runtime.pool.fetchval("SELECT attempts FROM mails WHERE recipient = $1", created["email"])

        await eventually(failed_once, timeout=10)  # the commit kept the mail although SMTP refused it
        sink = start_smtp_sink(tmp_path, port)
        try:
            [mail] = await asyncio.to_thread(wait_for_mails, tmp_path, created["email"], 1, 30.0)
            assert mail["Subject"] == "Confirm your OpenDREC e-mail address"

            async def gone():
                return await runtime.pool.fetchval("SELECT count(*) FROM mails") == 0

            await eventually(gone, timeout=10)
        finally:
            sink.stop()


async def test_no_token_or_password_reaches_the_logs(client, mail_dir, caplog):
    with caplog.at_level(logging.DEBUG):
        body, created = await register(client)
        confirm = token_in((await mails_to(mail_dir, created["email"]))[0])
        await client.put(f"/api/user/confirm-email/{confirm}")
        reset = await reset_token(client, mail_dir, created["email"], 2)
        await client.put(
            f"/api/user/reset/password/{reset}", json={"newPassword": "Secret789", "confirmPassword": "Secret789"}
        )
        session = await token_for(client, {**body, "password": "Secret789"})
        await client.put(
            "/api/user/password",
            headers=bearer(session),
            json={"oldPassword": "Secret789", "newPassword": "Secret790", "confirmPassword": "Secret790"},
        )
    # httpx is the test's own client (it logs the URLs it calls) and mail.log the in-process SMTP sink
    # (it logs what it receives); everything else is the service.
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name not in ("httpx", "mail.log"))
    assert "password reset" in logged and "email confirmed" in logged
    for name, secret in {
        "confirm": confirm,
        "reset": reset,
        "pw1": "Secret789",
        "pw2": "Secret790",
        "pw0": body["password"],
        "sig": session.split(".")[2],
    }.items():
        i = logged.find(secret)
        assert i < 0, (name, logged[max(0, i - 300) : i + 100])
