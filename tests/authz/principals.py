"""Real principals for the authorization matrix, made through the public API only (via the gateway):
organizations registered, members invited by mail, an API user approved by the admin."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from opendrec_devstack.drec_samples import log_in, registration_body
from opendrec_devstack.drec_samples import unique_tag as tag
from opendrec_devstack.smtp_sink import read_mails
from opendrec_identity.client import ASSERTION_TYPE, client_assertion
from opendrec_kit.testing import eventually

PASSWORD = "Authz1234"


@dataclass
class Caller:
    """Who sends a request: a role, its token, and the organization it belongs to (or acts for)."""

    name: str  # label in reports, e.g. "DeviceOwner" or "other Buyer"
    role: str | None  # None: anonymous
    token: str | None = None
    user_id: int | None = None
    organization_id: int | None = None
    organization_type: str | None = None
    email: str | None = None
    password: str = PASSWORD
    api_user_id: str | None = None
    private_key: str | None = None
    spare_token: str | None = None  # a second session, for a call that ends one
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def expect(resp: httpx.Response, *statuses: int) -> Any:
    assert resp.status_code in statuses, (
        f"{resp.request.method} {resp.request.url} -> {resp.status_code}: {resp.text[:500]}"
    )
    return resp.json() if resp.content else None


async def login(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    return expect(await log_in(http, email, password), 200)["accessToken"]


def _registration(kind: str, org_name: str, label: str, last_name: str, **changes: Any) -> dict[str, Any]:
    """The D-REC registration sample as an authz principal: its e-mail and organization name share one tag."""
    t = tag()
    return registration_body(
        kind,
        password=PASSWORD,
        firstName="Authz",
        lastName=last_name,
        email=f"authz-{label}-{t}@example.org",
        orgName=f"{org_name} {t}",
        **({"orgAddress": "Pune", "secretKey": "AP1234"} | changes),
    )


async def whoami(http: httpx.AsyncClient, caller: Caller) -> Caller:
    me = expect(await http.get("/api/user/me", headers=caller.headers), 200)
    caller.user_id = me["id"]
    caller.organization_id = me["organization"]["id"]
    caller.organization_type = me["organization"].get("organizationType")
    return caller


async def register_organization(http: httpx.AsyncClient, kind: str, name: str, org_name: str) -> Caller:
    """registerWithOrganization, then log in: the organization's first user (OrganizationAdmin or Buyer)."""
    body = _registration(kind, org_name, kind.lower(), kind, orgAddress="Hyderabad", secretKey="AZ1234")
    created = expect(await http.post("/api/user/registerWithOrganization", json=body), 201)
    role = created["role"]
    caller = Caller(name, role, await login(http, body["email"]), email=body["email"])
    caller.extra["organization_name"] = body["orgName"]
    return await whoami(http, caller)


def _mailed(mail_dir, email: str) -> tuple[str, int] | None:
    for mail in read_mails(mail_dir, email):
        text = mail.get_body(("plain",)).get_content()
        token = re.search(r"^Token: (\S+)$", text, re.M)
        invitation = re.search(r"^Invitation: (\d+)$", text, re.M)
        if token and invitation:
            return token.group(1), int(invitation.group(1))
    return None


async def invite_member(http: httpx.AsyncClient, mail_dir, inviter: Caller, role: str, name: str) -> Caller:
    """Invite a new e-mail into the inviter's organization, register with the mailed token, log in."""
    email = f"authz-{role.lower()}-{tag()}@example.org"
    sent = expect(await http.post("/api/invitation", headers=inviter.headers, json={"email": email, "role": role}), 201)

    async def mailed():
        return _mailed(mail_dir, email)

    token, invitation_id = await eventually(mailed)
    assert invitation_id == sent["id"]
    body = {"firstName": "Authz", "lastName": role, "password": PASSWORD, "confirmPassword": PASSWORD}
    expect(await http.post(f"/api/invitation/register/{token}", json=body), 201)
    caller = Caller(name, role, await login(http, email), email=email)
    caller.extra["invitation_id"] = invitation_id
    return await whoami(http, caller)


async def api_user_token(http: httpx.AsyncClient, caller: Caller) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(caller.api_user_id, caller.private_key),
    }
    return expect(await http.post("/api/auth/token", data=form), 200)["access_token"]


async def api_user(http: httpx.AsyncClient, name: str, org_name: str) -> Caller:
    """An ApiUser registered (POST /api/user/register), holding no module until an admin approves some."""
    body = _registration("ApiUser", org_name, "apiuser", "Integrator")
    created = expect(await http.post("/api/user/register", json=body), 201)
    caller = Caller(
        name, "ApiUser", email=body["email"], api_user_id=created["apiUserId"], private_key=created["privateKey"]
    )
    caller.token = await api_user_token(http, caller)
    caller.extra.update(organization_name=body["orgName"], approved=False)
    return await whoami(http, caller)


async def approved_api_user(
    http: httpx.AsyncClient, admin: Caller, name: str, org_name: str, modules: dict[str, list[str]]
) -> Caller:
    """An ApiUser that asked for `modules` and was approved by the admin; its token carries them."""
    caller = await api_user(http, name, org_name)
    request = [{"moduleName": m, "permissions": actions} for m, actions in modules.items()]
    expect(await http.post("/api/permission/module/apiuser/request", headers=caller.headers, json=request), 200)
    url = f"/api/permission/module/verify/ByAdmin/{caller.api_user_id}"
    expect(await http.put(url, headers=admin.headers, json={"status": "Active"}), 200)
    caller.token = await api_user_token(http, caller)  # the approval revoked the earlier tokens
    caller.extra["approved"] = True
    return caller


async def organization_under(http: httpx.AsyncClient, api_user: Caller, kind: str, name: str, org_name: str) -> Caller:
    """An organization registered by the API user under itself; returns its first user. That user does
    not log in (D-REC manual 2.1: the API user acts for the organization), so it has no token."""
    body = _registration(kind, org_name, f"{kind.lower()}-of-api", kind, api_user_id=api_user.api_user_id)
    created = expect(await http.post("/api/user/register", headers=api_user.headers, json=body), 201)
    caller = Caller(
        name,
        created["role"],
        None,
        user_id=created["id"],
        organization_id=created["organization"]["id"],
        organization_type=kind,
        email=body["email"],
    )
    caller.extra["organization_name"] = body["orgName"]
    return caller
