"""Account helpers shared by identity's integration tests: registering with the D-REC sample body, logging in,
granting a module to a user."""

import uuid

from opendrec_devstack.drec_samples import access_token, bearer, log_in, register_with_organization, registration_body
from opendrec_identity import store

PASSWORD = "Member123"

__all__ = [
    "PASSWORD",
    "add_member",
    "bearer",
    "grant_to_user",
    "headers_for",
    "login",
    "new_organization",
    "register",
    "token_for",
]


async def login(client, email: str, password: str = PASSWORD):
    return await log_in(client, email, password)


async def token_for(client, body: dict) -> str:
    """The access token of a registered user, by the e-mail and password of their registration body."""
    return await access_token(client, body["email"], body["password"])


async def headers_for(client, email: str, password: str = PASSWORD) -> dict[str, str]:
    return bearer(await access_token(client, email, password))


async def register(client, kind: str = "Developer", **changes) -> tuple[dict, dict]:
    """Registers an organization with the D-REC sample body (`changes` on top); returns (the body, the answer)."""
    body = registration_body(kind, **changes)
    return body, await register_with_organization(client, body)


async def new_organization(client, kind: str = "Developer") -> tuple[dict, dict]:
    """Registers an organization; returns (its admin's registration answer, their headers)."""
    body, created = await register(client, kind, password=PASSWORD)
    return created, await headers_for(client, body["email"])


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


async def grant_to_user(client, admin: dict[str, str], user_id, module: str, permissions: list[str]):
    """An Admin grants `permissions` of `module` to one user (POST /api/permission by module name); the answer."""
    body = {"moduleName": module, "entityType": "User", "entityId": user_id, "permissions": permissions}
    return await client.post("/api/permission", headers=admin, json=body)
