"""Account helpers shared by identity's integration tests."""

import uuid

from opendrec_identity import store

PASSWORD = "Member123"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client, email: str, password: str = PASSWORD):
    return await client.post("/api/auth/login", json={"username": email, "password": password})


async def headers_for(client, email: str, password: str = PASSWORD) -> dict[str, str]:
    resp = await login(client, email, password)
    assert resp.status_code == 200, resp.text
    return bearer(resp.json()["accessToken"])


async def new_organization(client, kind: str = "Developer") -> tuple[dict, dict]:
    """Registers an organization; returns (its admin's registration answer, their headers)."""
    tag = uuid.uuid4().hex[:10]
    body = {
        "firstName": "Org",
        "lastName": "Admin",
        "email": f"orgadmin-{tag}@example.org",
        "organizationType": kind,
        "password": PASSWORD,
        "confirmPassword": PASSWORD,
        "orgName": f"Org-{tag}",
        "secretKey": "GH2345",
    }
    resp = await client.post("/api/user/registerWithOrganization", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json(), await headers_for(client, body["email"])


async def add_member(runtime, organization_id: int, role: str) -> dict:
    """A member of the organization (test setup: invitations are tested on their own)."""
    email = f"{role.lower()}-{uuid.uuid4().hex[:8]}@example.org"
    async with runtime.pool.acquire() as conn:
        user = await store.insert_user(
            conn,
            organization_id=organization_id,
            first_name=role,
            last_name="Member",
            email=email,
            password_hash=await runtime.app.state.passwords.hash(PASSWORD),
            role=role,
        )
    return dict(user)
