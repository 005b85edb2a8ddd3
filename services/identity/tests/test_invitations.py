"""Invitations: the mail, registering with its token, accepting or rejecting, listing."""

import asyncio
import re
import uuid

import pytest

from opendrec_devstack.smtp_sink import wait_for_mails
from opendrec_kit.testing import TokenIssuer, wait_for_event

from .accounts import PASSWORD, add_member, headers_for, login, new_organization, register

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(scope="module")
def mail_dir(smtp_sink):
    return smtp_sink[1]


def invitee() -> str:
    return f"Invitee-{uuid.uuid4().hex[:8]}@Example.org"


async def invite(client, headers, organization_id, email, role="DeviceOwner"):
    return await client.post(
        f"/api/invitation?organizationId={organization_id}", headers=headers, json={"email": email, "role": role}
    )


async def invitation_mail(mail_dir, email):
    [mail] = await asyncio.to_thread(wait_for_mails, mail_dir, email.lower(), 1, 20.0)
    text = mail.get_body(("plain",)).get_content()
    return (
        mail,
        re.search(r"^Token: (\S+)$", text, re.M).group(1),
        int(re.search(r"^Invitation: (\d+)$", text, re.M).group(1)),
    )


def registration(**overrides) -> dict:
    return {"firstName": "New", "lastName": "Member", "password": PASSWORD, "confirmPassword": PASSWORD, **overrides}


# -- inviting ---------------------------------------------------------------------------------------------


async def test_an_invitation_is_mailed_and_the_invitee_registers_into_the_organization(
    client, mail_dir, runtime, kafka_bootstrap
):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    email = invitee()

    resp = await invite(client, headers, org_id, email)
    assert resp.status_code == 201, resp.text
    sent = resp.json()
    assert (sent["email"], sent["role"], sent["status"], sent["sender"]) == (
        email.lower(),
        "DeviceOwner",
        "Pending",
        owner["email"],
    )
    assert sent["organization"] == {"id": org_id, "name": owner["organization"]["name"]}
    assert "token" not in str(sent).lower()

    mail, token, invitation_id = await invitation_mail(mail_dir, email)
    assert invitation_id == sent["id"]
    assert f"/console/invitation/{token} in a browser" in mail.get_body(("plain",)).get_content()  # the console's link
    assert mail["Subject"] == f"You are invited to join {owner['organization']['name']} on OpenDREC"
    assert (
        await runtime.pool.fetchval("SELECT count(*) FROM invitations WHERE token_hash = $1", token) == 0
    )  # stored hashed

    registered = await client.post(f"/api/invitation/register/{token}", json=registration())
    assert registered.status_code == 201, registered.text
    user = registered.json()
    assert (user["email"], user["role"], user["emailConfirmed"], user["organization"]["id"]) == (
        email.lower(),
        "DeviceOwner",
        True,
        org_id,
    )
    me = (await client.get("/api/user/me", headers=await headers_for(client, email))).json()
    assert me["organization"]["id"] == org_id and me["role"] == "DeviceOwner"

    envelope, _ = await wait_for_event(
        kafka_bootstrap, "user.registered", lambda e: e["payload"].get("email") == email.lower()
    )
    assert envelope["payload"]["organization_id"] == org_id and envelope["payload"]["role"] == "DeviceOwner"

    listed = (await client.get(f"/api/invitation?organizationId={org_id}", headers=headers)).json()
    assert [(i["id"], i["status"]) for i in listed["invitations"]] == [(sent["id"], "Accepted")]
    assert (
        await client.post(f"/api/invitation/register/{token}", json=registration())
    ).status_code == 400  # single use


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "nope", "role": "User"}, "email"),
        ({"role": "User"}, "email"),
        ({"email": "someone@example.org"}, "role"),
        ({"email": "someone@example.org", "role": "SubBuyer"}, "role"),  # a Buyer role in a Developer organization
        ({"email": "someone@example.org", "role": "Admin"}, "role"),
    ],
)
async def test_invite_validation(client, payload, field):
    owner, headers = await new_organization(client)
    resp = await client.post(
        f"/api/invitation?organizationId={owner['organization']['id']}", headers=headers, json=payload
    )
    assert resp.status_code == 400, resp.text
    assert [d["field"] for d in resp.json()["details"]] == [field]


async def test_invite_conflicts(client, runtime):
    owner, headers = await new_organization(client, "Buyer")
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "SubBuyer")
    assert (await invite(client, headers, org_id, member["email"], "User")).status_code == 409
    assert (await invite(client, headers, org_id, owner["email"].upper(), "User")).status_code == 409
    email = invitee()
    assert (await invite(client, headers, org_id, email, "SubBuyer")).status_code == 201
    again = await invite(client, headers, org_id, email, "User")
    assert again.status_code == 409 and "open invitation" in again.json()["message"]


async def test_invite_permissions(client, runtime, admin):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    other, _ = await new_organization(client)
    assert (await invite(client, {}, org_id, invitee())).status_code == 401
    foreign = await invite(client, headers, other["organization"]["id"], invitee())
    assert foreign.status_code == 403
    member = await add_member(runtime, org_id, "DeviceOwner")  # DeviceOwner holds no INVITATION_MANAGEMENT_CRUDL
    denied = await invite(client, await headers_for(client, member["email"]), org_id, invitee())
    assert denied.status_code == 403 and "INVITATION_MANAGEMENT_CRUDL" in denied.json()["message"]
    assert (await invite(client, admin, other["organization"]["id"], invitee(), "User")).status_code == 201
    assert (await invite(client, admin, 987654321, invitee(), "User")).status_code == 404


async def test_the_default_organization_is_the_callers(client):
    owner, headers = await new_organization(client)
    resp = await client.post("/api/invitation", headers=headers, json={"email": invitee(), "role": "User"})
    assert resp.status_code == 201 and resp.json()["organization"]["id"] == owner["organization"]["id"]


# -- registering with the token -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"password": "weak", "confirmPassword": "weak"}, "password"),
        ({"confirmPassword": "Invite124"}, "confirmPassword"),
        ({"firstName": " "}, "firstName"),
        ({"lastName": None}, "lastName"),
    ],
)
async def test_invited_registration_validation_keeps_the_invitation_open(client, mail_dir, overrides, field):
    owner, headers = await new_organization(client)
    email = invitee()
    assert (await invite(client, headers, owner["organization"]["id"], email)).status_code == 201
    _, token, _ = await invitation_mail(mail_dir, email)
    resp = await client.post(f"/api/invitation/register/{token}", json=registration(**overrides))
    assert resp.status_code == 400, resp.text
    assert [d["field"] for d in resp.json()["details"]] == [field]
    assert (await client.post(f"/api/invitation/register/{token}", json=registration())).status_code == 201


async def test_invited_registration_refusals(client, mail_dir, runtime):
    assert (await client.post(f"/api/invitation/register/{'x' * 43}", json=registration())).status_code == 400
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]

    # Expired.
    email = invitee()
    sent = (await invite(client, headers, org_id, email)).json()
    _, token, _ = await invitation_mail(mail_dir, email)
    await runtime.pool.execute(
        "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = $1", sent["id"]
    )
    assert (await client.post(f"/api/invitation/register/{token}", json=registration())).status_code == 400

    # The address already has an account (its address proven): log in and accept instead.
    other, _ = await new_organization(client)
    existing = await add_member(runtime, other["organization"]["id"], "User")
    await runtime.pool.execute("UPDATE users SET email_confirmed = true WHERE id = $1", existing["id"])
    assert (await invite(client, headers, org_id, existing["email"])).status_code == 201
    _, token, _ = await invitation_mail(mail_dir, existing["email"])
    resp = await client.post(f"/api/invitation/register/{token}", json=registration())
    assert resp.status_code == 409 and "log in and accept" in resp.json()["message"]


async def test_a_removed_member_can_come_back_by_invitation(client, mail_dir, runtime):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "User")
    assert (
        await client.post(f"/api/Organization/{org_id}/remove-member/{member['id']}", headers=headers)
    ).status_code == 200
    assert (await invite(client, headers, org_id, member["email"], "DeviceOwner")).status_code == 201
    _, token, _ = await invitation_mail(mail_dir, member["email"])
    resp = await client.post(
        f"/api/invitation/register/{token}", json=registration(password="Back1234", confirmPassword="Back1234")
    )
    assert resp.status_code == 201, resp.text
    assert (resp.json()["id"], resp.json()["role"], resp.json()["status"]) == (member["id"], "DeviceOwner", "Active")
    assert (await login(client, member["email"], "Back1234")).status_code == 200


async def test_an_invitees_address_cannot_be_squatted_before_they_accept(client, mail_dir, runtime):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    email = invitee()
    assert (await invite(client, headers, org_id, email)).status_code == 201
    _, token, _ = await invitation_mail(mail_dir, email)
    # Someone who read the address somewhere registers it first, with an organization of theirs (never confirmed).
    await register(client, email=email, password=PASSWORD)
    squatter_headers = await headers_for(client, email)
    assert (await client.get("/api/user/me", headers=squatter_headers)).status_code == 200

    resp = await client.post(
        f"/api/invitation/register/{token}", json=registration(password="Mine1234", confirmPassword="Mine1234")
    )
    assert resp.status_code == 201, resp.text
    user = resp.json()
    assert (user["organization"]["id"], user["emailConfirmed"]) == (org_id, True)
    assert (await login(client, email, "Mine1234")).status_code == 200
    assert (await login(client, email, PASSWORD)).status_code == 401  # the squatter's password is gone
    assert (await client.get("/api/user/me", headers=squatter_headers)).status_code == 401  # and its session


# -- accepting and rejecting -----------------------------------------------------------------------------------


async def test_an_account_holder_accepts_and_moves_to_the_organization(client, runtime):
    owner, headers = await new_organization(client, "Buyer")
    org_id = owner["organization"]["id"]
    other, _ = await new_organization(client)
    member = await add_member(runtime, other["organization"]["id"], "User")
    sent = (await invite(client, headers, org_id, member["email"], "SubBuyer")).json()
    member_headers = await headers_for(client, member["email"])

    resp = await client.put(f"/api/invitation/{sent['id']}", headers=member_headers, json={"status": "Accepted"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "Accepted"
    assert (
        await client.get("/api/user/me", headers=member_headers)
    ).status_code == 401  # its token named the old organization
    me = (await client.get("/api/user/me", headers=await headers_for(client, member["email"]))).json()
    assert (me["organization"]["id"], me["role"]) == (org_id, "SubBuyer")
    again = await client.put(
        f"/api/invitation/{sent['id']}", headers=await headers_for(client, member["email"]), json={"status": "Rejected"}
    )
    assert again.status_code == 409


async def test_an_account_holder_rejects(client, runtime):
    owner, headers = await new_organization(client)
    other, _ = await new_organization(client)
    member = await add_member(runtime, other["organization"]["id"], "DeviceOwner")
    sent = (await invite(client, headers, owner["organization"]["id"], member["email"], "User")).json()
    member_headers = await headers_for(client, member["email"])
    resp = await client.put(f"/api/invitation/{sent['id']}", headers=member_headers, json={"status": "Rejected"})
    assert resp.status_code == 200 and resp.json()["status"] == "Rejected"
    me = (await client.get("/api/user/me", headers=member_headers)).json()
    assert me["organization"]["id"] == other["organization"]["id"]  # nothing moved, the token still works


async def test_answer_refusals(client, runtime):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    other, other_admin = await new_organization(client)
    member = await add_member(runtime, other["organization"]["id"], "User")
    sent = (await invite(client, headers, org_id, member["email"], "User")).json()
    url = f"/api/invitation/{sent['id']}"

    assert (await client.put(url, json={"status": "Accepted"})).status_code == 401
    bad = await client.put(url, headers=await headers_for(client, member["email"]), json={"status": "Maybe"})
    assert bad.status_code == 400 and bad.json()["details"][0]["field"] == "status"
    not_mine = await client.put(url, headers=other_admin, json={"status": "Accepted"})
    assert not_mine.status_code == 404
    assert (
        await client.put("/api/invitation/987654321", headers=other_admin, json={"status": "Accepted"})
    ).status_code == 404

    # An organization's administrator cannot walk away from it.
    admin_invite = (await invite(client, headers, org_id, other["email"], "User")).json()
    refused = await client.put(
        f"/api/invitation/{admin_invite['id']}", headers=other_admin, json={"status": "Accepted"}
    )
    assert refused.status_code == 409 and "OrganizationAdmin" in refused.json()["message"]

    await runtime.pool.execute(
        "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = $1", sent["id"]
    )
    expired = await client.put(url, headers=await headers_for(client, member["email"]), json={"status": "Accepted"})
    assert expired.status_code == 409 and "expired" in expired.json()["message"]


# -- listing ----------------------------------------------------------------------------------------------------


async def test_invitations_are_listed_a_page_at_a_time_for_one_organization(client, runtime, admin):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    ids = [(await invite(client, headers, org_id, invitee(), "User")).json()["id"] for _ in range(3)]
    other, other_headers = await new_organization(client)
    await invite(client, other_headers, other["organization"]["id"], invitee(), "User")

    first = (await client.get(f"/api/invitation?organizationId={org_id}&pageNumber=1&limit=2", headers=headers)).json()
    second = (await client.get(f"/api/invitation?organizationId={org_id}&pageNumber=2&limit=2", headers=headers)).json()
    assert (first["totalCount"], first["totalPages"], second["currentPage"]) == (3, 2, 2)
    assert [i["id"] for i in first["invitations"] + second["invitations"]] == ids
    default = (await client.get("/api/invitation", headers=headers)).json()
    assert [i["id"] for i in default["invitations"]] == ids
    assert (await client.get(f"/api/invitation?organizationId={org_id}", headers=admin)).json()["totalCount"] == 3

    assert (await client.get("/api/invitation")).status_code == 401
    assert (await client.get(f"/api/invitation?organizationId={org_id}", headers=other_headers)).status_code == 403
    member = await add_member(runtime, org_id, "User")
    denied = await client.get("/api/invitation", headers=await headers_for(client, member["email"]))
    assert denied.status_code == 403 and "INVITATION_MANAGEMENT_CRUDL" in denied.json()["message"]
    assert (await client.get("/api/invitation?limit=0", headers=headers)).status_code == 400


async def test_an_api_user_without_approved_modules_cannot_invite(client, runtime):
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    resp = await client.post(
        "/api/invitation",
        headers=issuer.headers(role="ApiUser", organization_type="ApiUser"),
        json={"email": invitee(), "role": "User"},
    )
    assert resp.status_code == 403
