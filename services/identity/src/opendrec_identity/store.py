"""Identity's SQL: one function per query, parameters always bound."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from opendrec_kit.paging import Page

from . import domain

# Names of the unique indexes, as asyncpg reports them in a UniqueViolationError.
EMAIL_UNIQUE = "users_email_unique"
ORGANIZATION_NAME_UNIQUE = "organizations_name_unique"

_ADMIN_BOOTSTRAP_LOCK = 0x1DE0001  # advisory lock key: one replica creates the first admin

_USER_WITH_ORGANIZATION = """
SELECT u.id, u.first_name, u.last_name, u.email, u.password_hash, u.role, u.status, u.email_confirmed,
       u.created_at, u.organization_id, o.name AS organization_name, o.address AS organization_address,
       o.organization_type, o.status AS organization_status, o.created_at AS organization_created_at,
       o.api_user_id AS organization_api_user_id
FROM users u JOIN organizations o ON o.id = u.organization_id
"""


async def email_taken(conn: asyncpg.Connection, email: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)", email))


async def organization_name_taken(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM organizations WHERE lower(name) = lower($1))", name))


async def insert_organization(
    conn: asyncpg.Connection,
    *,
    name: str,
    address: str | None,
    organization_type: str,
    secret_key_hash: str | None,
    api_user_id: Any = None,
) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO organizations (name, address, organization_type, secret_key_hash, api_user_id) VALUES ($1, $2, $3, $4, $5) "
        "RETURNING id, name, address, organization_type, status, created_at",
        name,
        address,
        organization_type,
        secret_key_hash,
        api_user_id,
    )


async def insert_user(
    conn: asyncpg.Connection,
    *,
    organization_id: int,
    first_name: str,
    last_name: str,
    email: str,
    password_hash: str,
    role: str,
    email_confirmed: bool = False,
) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO users (organization_id, first_name, last_name, email, password_hash, role, email_confirmed) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "RETURNING id, first_name, last_name, email, role, status, email_confirmed, created_at",
        organization_id,
        first_name,
        last_name,
        email,
        password_hash,
        role,
        email_confirmed,
    )


async def unused_registration(conn: asyncpg.Connection) -> asyncpg.Record:
    """What a fresh registration would get now (a user id and an organization id from their sequences, never used
    then, and the column defaults), for answering one that is not made (REGISTRATION_DISCLOSURE=private)."""
    return await conn.fetchrow(
        "SELECT nextval(pg_get_serial_sequence('users', 'id')) AS user_id,"
        " nextval(pg_get_serial_sequence('organizations', 'id')) AS organization_id, now() AS created_at"
    )


async def user_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_USER_WITH_ORGANIZATION + " WHERE u.email = $1", email)


async def login_lookup(conn: asyncpg.Connection, keys: list[str], email: str | None) -> asyncpg.Record:
    """What a login reads, in one statement (one snapshot, one round trip): of the throttle `keys`, the latest
    `blocked_until` and the keys that have a row (`throttled`); the database's `now`; and the columns of
    `user_by_email`, NULL when there is no such user."""
    return await conn.fetchrow(
        "SELECT t.blocked_until, t.throttled, now() AS now, account.*"
        " FROM (SELECT max(blocked_until) AS blocked_until, coalesce(array_agg(key), '{}') AS throttled"
        " FROM login_throttle WHERE key = ANY($1::text[])) t"
        " LEFT JOIN (" + _USER_WITH_ORGANIZATION + " WHERE u.email = $2) account ON true",
        keys,
        email,
    )


async def user_by_id(conn: asyncpg.Connection, user_id: int, *, lock: bool = False) -> asyncpg.Record | None:
    """`lock`: the user's row stays locked to the end of the transaction (e.g. no move to another organization
    meanwhile)."""
    return await conn.fetchrow(
        _USER_WITH_ORGANIZATION + " WHERE u.id = $1" + (" FOR UPDATE OF u" if lock else ""), user_id
    )


async def update_password_hash(conn: asyncpg.Connection, user_id: int, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, password_hash)


async def module_grants(conn: asyncpg.Connection, role: str, user_id: int) -> list[domain.ModuleGrant]:
    """Every ACL module with what `role` and the user themselves were granted in it."""
    rows = await conn.fetch(
        """
        SELECT m.name, m.actions, m.status = 'Enable' AS enabled,
               coalesce(rp.actions, '') AS role_actions, coalesce(up.actions, '') AS user_actions
        FROM acl_modules m
        LEFT JOIN role_permissions rp ON rp.module = m.name AND rp.role = $1
        LEFT JOIN user_permissions up ON up.module = m.name AND up.user_id = $2
        ORDER BY m.id
        """,
        role,
        user_id,
    )
    return [
        domain.ModuleGrant(
            module=r["name"],
            supported=r["actions"],
            enabled=r["enabled"],
            role_actions=r["role_actions"],
            user_actions=r["user_actions"],
        )
        for r in rows
    ]


async def lock_admin_bootstrap(conn: asyncpg.Connection) -> None:
    """Held until the end of the caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADMIN_BOOTSTRAP_LOCK)


async def admin_exists(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'Admin')"))


# -- access tokens ---------------------------------------------------------------------------------


async def record_access_token(conn: asyncpg.Connection, jti: str, user_id: int, expires_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO access_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3)", jti, user_id, expires_at
    )


async def revoke_access_token(conn: asyncpg.Connection, jti: str, user_id: int, expires_at: datetime) -> bool:
    """Mark one token revoked; False if it was already. Unknown tokens are recorded revoked."""
    status = await conn.execute(
        "INSERT INTO access_tokens (jti, user_id, expires_at, revoked_at) VALUES ($1, $2, $3, now()) "
        "ON CONFLICT (jti) DO UPDATE SET revoked_at = now() WHERE access_tokens.revoked_at IS NULL",
        jti,
        user_id,
        expires_at,
    )
    return status.endswith(" 1")


async def revoke_user_tokens(
    conn: asyncpg.Connection, user_id: int, keep_jti: str | None = None
) -> list[asyncpg.Record]:
    """Revoke every live token of a user (but `keep_jti`); returns (jti, expires_at) of those revoked."""
    return await conn.fetch(
        "UPDATE access_tokens SET revoked_at = now() "
        "WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() AND jti IS DISTINCT FROM $2 "
        "RETURNING jti, expires_at",
        user_id,
        keep_jti,
    )


# -- one-time tokens -------------------------------------------------------------------------------


async def create_user_token(
    conn: asyncpg.Connection, user_id: int, purpose: str, token_hash: str, ttl_seconds: int
) -> None:
    """A new token of a purpose replaces the user's earlier unused ones."""
    await conn.execute(
        "UPDATE user_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        user_id,
        purpose,
    )
    await conn.execute(
        "INSERT INTO user_tokens (user_id, purpose, token_hash, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        user_id,
        purpose,
        token_hash,
        float(ttl_seconds),
    )


async def use_user_token(conn: asyncpg.Connection, purpose: str, token_hash: str) -> int | None:
    """Spend a live token (exactly once, even under concurrent calls); returns its user id."""
    return await conn.fetchval(
        "UPDATE user_tokens SET used_at = now() "
        "WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() RETURNING user_id",
        token_hash,
        purpose,
    )


async def confirm_email(conn: asyncpg.Connection, user_id: int) -> None:
    await conn.execute("UPDATE users SET email_confirmed = true, updated_at = now() WHERE id = $1", user_id)


async def update_profile(conn: asyncpg.Connection, user_id: int, first_name: str | None, last_name: str | None) -> None:
    await conn.execute(
        "UPDATE users SET first_name = coalesce($2, first_name), last_name = coalesce($3, last_name), updated_at = now() WHERE id = $1",
        user_id,
        first_name,
        last_name,
    )


# -- login throttling ------------------------------------------------------------------------------


async def lock_throttle_row(conn: asyncpg.Connection, key: str) -> asyncpg.Record:
    """The key's row, created if missing, locked until the caller's transaction ends."""
    await conn.execute("INSERT INTO login_throttle (key) VALUES ($1) ON CONFLICT (key) DO NOTHING", key)
    return await conn.fetchrow(
        "SELECT key, failures, window_start, blocked_until FROM login_throttle WHERE key = $1 FOR UPDATE", key
    )


async def save_throttle(
    conn: asyncpg.Connection, key: str, failures: int, window_start: datetime, blocked_until: datetime | None
) -> None:
    await conn.execute(
        "UPDATE login_throttle SET failures = $2, window_start = $3, blocked_until = $4 WHERE key = $1",
        key,
        failures,
        window_start,
        blocked_until,
    )


async def clear_throttle(conn: asyncpg.Connection, keys: list[str]) -> None:
    await conn.execute("DELETE FROM login_throttle WHERE key = ANY($1::text[])", keys)


async def clear_account_throttle(conn: asyncpg.Connection, account_key: str) -> None:
    """The account's count and its counts from every address."""
    await conn.execute("DELETE FROM login_throttle WHERE key = $1 OR starts_with(key, $1 || '|')", account_key)


async def now(conn: asyncpg.Connection) -> datetime:
    """The database's clock: every instance judges throttling windows by the same one."""
    return await conn.fetchval("SELECT now()")


# -- organizations and members ---------------------------------------------------------------------

_ORGANIZATION = "SELECT id, name, address, organization_type, status, created_at, api_user_id FROM organizations"


async def organization_by_id(
    conn: asyncpg.Connection, organization_id: int, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(_ORGANIZATION + " WHERE id = $1" + (" FOR UPDATE" if lock else ""), organization_id)


async def update_organization(
    conn: asyncpg.Connection, organization_id: int, changes: dict[str, Any]
) -> asyncpg.Record:
    """Set the given columns (name, address, status: fixed names chosen by the caller, never input)."""
    columns = [c for c in ("name", "address", "status") if c in changes]
    sets = "".join(f"{c} = ${i}, " for i, c in enumerate(columns, 2))
    await conn.execute(
        f"UPDATE organizations SET {sets}updated_at = now() WHERE id = $1",
        organization_id,
        *(changes[c] for c in columns),
    )
    return await conn.fetchrow(_ORGANIZATION + " WHERE id = $1", organization_id)


async def organizations_under_api_user_of(conn: asyncpg.Connection, organization_id: int) -> int:
    """How many live organizations are registered under the API user(s) of this (ApiUser) organization."""
    return await conn.fetchval(
        "SELECT count(*) FROM organizations o WHERE o.status <> 'Deleted' AND o.api_user_id IN "
        "(SELECT a.id FROM api_users a JOIN users u ON u.id = a.user_id WHERE u.organization_id = $1)",
        organization_id,
    )


async def remove_organization_users(conn: asyncpg.Connection, organization_id: int) -> list[int]:
    """Mark every user of the organization Deleted; the ids of those who were not already."""
    rows = await conn.fetch(
        "UPDATE users SET status = 'Deleted', updated_at = now() WHERE organization_id = $1 AND status <> 'Deleted' "
        "RETURNING id",
        organization_id,
    )
    return [r["id"] for r in rows]


async def expire_pending_invitations(conn: asyncpg.Connection, organization_id: int) -> int:
    """End the organization's open invitations (they expire now); how many there were."""
    status = await conn.execute(
        "UPDATE invitations SET expires_at = least(expires_at, now()), updated_at = now() "
        "WHERE organization_id = $1 AND status = 'Pending'",
        organization_id,
    )
    return int(status.split()[-1])


async def organizations_page(
    conn: asyncpg.Connection, page: Page, organization_type: str | None
) -> tuple[list[asyncpg.Record], int]:
    where = " WHERE ($1::text IS NULL OR organization_type = $1)"
    rows = await conn.fetch(
        _ORGANIZATION + where + " ORDER BY id LIMIT $2 OFFSET $3", organization_type, page.limit, page.offset
    )
    total = await conn.fetchval("SELECT count(*) FROM organizations" + where, organization_type)
    return rows, total


async def users_page(
    conn: asyncpg.Connection, page: Page, organization_id: int | None, members_only: bool
) -> tuple[list[asyncpg.Record], int]:
    """Users (of one organization, or all), oldest first; `members_only` leaves removed members out."""
    where = " WHERE ($1::bigint IS NULL OR u.organization_id = $1) AND (NOT $2 OR u.status <> 'Deleted')"
    rows = await conn.fetch(
        _USER_WITH_ORGANIZATION + where + " ORDER BY u.id LIMIT $3 OFFSET $4",
        organization_id,
        members_only,
        page.limit,
        page.offset,
    )
    total = await conn.fetchval("SELECT count(*) FROM users u" + where, organization_id, members_only)
    return rows, total


async def set_role(conn: asyncpg.Connection, user_id: int, role: str) -> None:
    await conn.execute("UPDATE users SET role = $2, updated_at = now() WHERE id = $1", user_id, role)


async def set_status(conn: asyncpg.Connection, user_id: int, status: str) -> None:
    await conn.execute("UPDATE users SET status = $2, updated_at = now() WHERE id = $1", user_id, status)


async def update_user(conn: asyncpg.Connection, user_id: int, changes: dict[str, Any]) -> None:
    """Set the given columns (first_name, last_name, email, status, email_confirmed: fixed names, never input)."""
    columns = [c for c in ("first_name", "last_name", "email", "status", "email_confirmed") if c in changes]
    sets = "".join(f"{c} = ${i}, " for i, c in enumerate(columns, 2))
    await conn.execute(
        f"UPDATE users SET {sets}updated_at = now() WHERE id = $1", user_id, *(changes[c] for c in columns)
    )


# -- invitations -----------------------------------------------------------------------------------

INVITATION_PENDING_UNIQUE = "invitations_pending_unique"

_INVITATION = """
SELECT i.id, i.organization_id, i.email, i.role, i.status, i.sender_id, i.expires_at, i.created_at, i.updated_at,
       o.name AS organization_name, o.organization_type, o.status AS organization_status, s.email AS sender_email
FROM invitations i JOIN organizations o ON o.id = i.organization_id JOIN users s ON s.id = i.sender_id
"""


async def insert_invitation(
    conn: asyncpg.Connection,
    *,
    organization_id: int,
    email: str,
    role: str,
    sender_id: int,
    token_hash: str,
    ttl_seconds: int,
) -> int:
    return await conn.fetchval(
        "INSERT INTO invitations (organization_id, email, role, sender_id, token_hash, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING id",
        organization_id,
        email,
        role,
        sender_id,
        token_hash,
        float(ttl_seconds),
    )


async def invitation_by_id(
    conn: asyncpg.Connection, invitation_id: int, *, lock: bool = False
) -> asyncpg.Record | None:
    if lock:
        await conn.execute("SELECT 1 FROM invitations WHERE id = $1 FOR UPDATE", invitation_id)
    return await conn.fetchrow(_INVITATION + " WHERE i.id = $1", invitation_id)


async def invitation_id_by_token(conn: asyncpg.Connection, token_hash: str) -> int | None:
    return await conn.fetchval("SELECT id FROM invitations WHERE token_hash = $1", token_hash)


async def invitations_page(
    conn: asyncpg.Connection, organization_id: int, page: Page
) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(
        _INVITATION + " WHERE i.organization_id = $1 ORDER BY i.id LIMIT $2 OFFSET $3",
        organization_id,
        page.limit,
        page.offset,
    )
    total = await conn.fetchval("SELECT count(*) FROM invitations WHERE organization_id = $1", organization_id)
    return rows, total


async def invitations_of(conn: asyncpg.Connection, organization_id: int, limit: int) -> list[asyncpg.Record]:
    """The invitations an organization sent, newest first."""
    return await conn.fetch(
        _INVITATION + " WHERE i.organization_id = $1 ORDER BY i.id DESC LIMIT $2", organization_id, limit
    )


async def invitations_to(conn: asyncpg.Connection, email: str, limit: int) -> list[asyncpg.Record]:
    """The invitations sent to an e-mail address, newest first."""
    return await conn.fetch(_INVITATION + " WHERE i.email = $1 ORDER BY i.id DESC LIMIT $2", email, limit)


async def answer_invitation(conn: asyncpg.Connection, invitation_id: int, status: str) -> None:
    await conn.execute("UPDATE invitations SET status = $2, updated_at = now() WHERE id = $1", invitation_id, status)


async def move_user(conn: asyncpg.Connection, user_id: int, organization_id: int, role: str) -> None:
    """Into another organization with a role; an account that had been removed is active again."""
    await conn.execute(
        "UPDATE users SET organization_id = $2, role = $3, status = 'Active', updated_at = now() WHERE id = $1",
        user_id,
        organization_id,
        role,
    )


async def reactivate_user(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    organization_id: int,
    role: str,
    first_name: str,
    last_name: str,
    password_hash: str,
) -> None:
    await conn.execute(
        "UPDATE users SET organization_id = $2, role = $3, first_name = $4, last_name = $5, password_hash = $6, "
        "status = 'Active', email_confirmed = true, updated_at = now() WHERE id = $1",
        user_id,
        organization_id,
        role,
        first_name,
        last_name,
        password_hash,
    )


# -- API users ---------------------------------------------------------------------------------------


async def insert_api_user(conn: asyncpg.Connection, api_user_id: Any, user_id: int, public_key_pem: str) -> None:
    await conn.execute(
        "INSERT INTO api_users (id, user_id, public_key_pem) VALUES ($1, $2, $3)", api_user_id, user_id, public_key_pem
    )


async def api_user_by_id(conn: asyncpg.Connection, api_user_id: Any) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT a.id, a.user_id, a.public_key_pem, a.permission_status, u.status AS user_status "
        "FROM api_users a JOIN users u ON u.id = a.user_id WHERE a.id = $1",
        api_user_id,
    )


async def api_user_by_user(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, user_id, permission_status FROM api_users WHERE user_id = $1", user_id)


async def module_names_by_id(conn: asyncpg.Connection) -> dict[int, tuple[str, str]]:
    """ACL module id -> (name, the actions it offers)."""
    return {
        r["id"]: (r["name"], r["actions"])
        for r in await conn.fetch("SELECT id, name, actions FROM acl_modules WHERE status = 'Enable'")
    }


async def replace_permission_request(conn: asyncpg.Connection, api_user_id: Any, requested: dict[str, str]) -> None:
    """The new request replaces the old one, and nothing is granted until an admin approves it."""
    await conn.execute("DELETE FROM api_user_permission_requests WHERE api_user_id = $1", api_user_id)
    await conn.executemany(
        "INSERT INTO api_user_permission_requests (api_user_id, module, actions) VALUES ($1, $2, $3)",
        [(api_user_id, module, actions) for module, actions in requested.items()],
    )
    await conn.execute("UPDATE api_users SET permission_status = 'Request' WHERE id = $1", api_user_id)
    await conn.execute(
        "DELETE FROM user_permissions WHERE user_id = (SELECT user_id FROM api_users WHERE id = $1)", api_user_id
    )


async def permission_request(conn: asyncpg.Connection, api_user_id: Any) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT module, actions FROM api_user_permission_requests WHERE api_user_id = $1 ORDER BY module", api_user_id
    )
    return {r["module"]: r["actions"] for r in rows}


async def set_api_user_permissions(conn: asyncpg.Connection, api_user_id: Any, user_id: int, status: str) -> None:
    """Active: grant what was requested; Deactive: grant nothing."""
    await conn.execute("UPDATE api_users SET permission_status = $2 WHERE id = $1", api_user_id, status)
    await conn.execute("DELETE FROM user_permissions WHERE user_id = $1", user_id)
    if status == "Active":
        await conn.execute(
            "INSERT INTO user_permissions (user_id, module, actions) SELECT $2, module, actions FROM api_user_permission_requests WHERE api_user_id = $1",
            api_user_id,
            user_id,
        )


async def spend_assertion(conn: asyncpg.Connection, jti: str, api_user_id: Any, expires_at: datetime) -> bool:
    """Record an assertion id; False if it was seen before (a replay). Expired ids are forgotten."""
    await conn.execute("DELETE FROM client_assertions WHERE expires_at < now() - interval '1 minute'")
    status = await conn.execute(
        "INSERT INTO client_assertions (jti, api_user_id, expires_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (api_user_id, jti) DO NOTHING",
        jti,
        api_user_id,
        expires_at,
    )
    return status.endswith(" 1")


async def replace_api_user_key(conn: asyncpg.Connection, api_user_id: Any, public_key_pem: str) -> None:
    await conn.execute(
        "UPDATE api_users SET public_key_pem = $2, key_created_at = now() WHERE id = $1", api_user_id, public_key_pem
    )


async def api_user_organizations_page(
    conn: asyncpg.Connection, api_user_id: Any, name: str | None, page: Page
) -> tuple[list[asyncpg.Record], int]:
    """Organizations registered under an API user (all API users' when None), optionally whose name contains `name`."""
    where = (
        " WHERE api_user_id IS NOT NULL AND ($1::uuid IS NULL OR api_user_id = $1)"
        " AND ($2::text IS NULL OR strpos(lower(name), lower($2)) > 0)"
    )
    rows = await conn.fetch(
        _ORGANIZATION + where + " ORDER BY id LIMIT $3 OFFSET $4", api_user_id, name, page.limit, page.offset
    )
    total = await conn.fetchval("SELECT count(*) FROM organizations" + where, api_user_id, name)
    return rows, total


async def api_users_page(conn: asyncpg.Connection, status: str | None, page: Page) -> tuple[list[asyncpg.Record], int]:
    where = " WHERE ($1::text IS NULL OR a.permission_status = $1)"
    rows = await conn.fetch(
        "SELECT a.id, a.user_id, a.permission_status, a.created_at, u.email, u.organization_id, o.name AS organization_name, "
        "coalesce((SELECT json_object_agg(r.module, r.actions) FROM api_user_permission_requests r WHERE r.api_user_id = a.id), '{}')::text AS requested "
        "FROM api_users a JOIN users u ON u.id = a.user_id JOIN organizations o ON o.id = u.organization_id"
        + where
        + " ORDER BY a.created_at, a.id LIMIT $2 OFFSET $3",
        status,
        page.limit,
        page.offset,
    )
    total = await conn.fetchval("SELECT count(*) FROM api_users a" + where, status)
    return rows, total


# -- ACL modules ---------------------------------------------------------------------------------------

ACL_MODULE_NAME_UNIQUE = "acl_modules_name_key"
ROLE_GRANT_UNIQUE = "role_permissions_pkey"
USER_GRANT_UNIQUE = "user_permissions_pkey"

_ACL_MODULE = "SELECT id, name, description, actions, status, created_at FROM acl_modules"


async def insert_acl_module(
    conn: asyncpg.Connection, name: str, description: str, actions: str, status: str
) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO acl_modules (name, description, actions, status) VALUES ($1, $2, $3, $4) "
        "RETURNING id, name, description, actions, status, created_at",
        name,
        description,
        actions,
        status,
    )


async def acl_module_by_id(conn: asyncpg.Connection, module_id: int, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(_ACL_MODULE + " WHERE id = $1" + (" FOR UPDATE" if lock else ""), module_id)


async def acl_module_by_name(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_ACL_MODULE + " WHERE name = $1", name)


async def acl_modules_page(conn: asyncpg.Connection, page: Page) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(_ACL_MODULE + " ORDER BY id LIMIT $1 OFFSET $2", page.limit, page.offset)
    return rows, await conn.fetchval("SELECT count(*) FROM acl_modules")


async def update_acl_module(
    conn: asyncpg.Connection, module_id: int, description: str | None, actions: str | None, status: str | None
) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE acl_modules SET description = coalesce($2, description), actions = coalesce($3, actions), status = coalesce($4, status) "
        "WHERE id = $1 RETURNING id, name, description, actions, status, created_at",
        module_id,
        description,
        actions,
        status,
    )


async def users_holding(conn: asyncpg.Connection, module: str, letters: str) -> list[int]:
    """Non-admin users granted any of `letters` in `module` (by their role or to them): those a reduction affects.
    Admins are left out: they hold every action of every module whatever their token lists."""
    return [
        r["id"]
        for r in await conn.fetch(
            "SELECT u.id FROM users u WHERE u.role <> 'Admin' AND ("
            " EXISTS (SELECT 1 FROM role_permissions rp WHERE rp.role = u.role AND rp.module = $1 AND rp.actions ~ ('[' || $2 || ']'))"
            " OR EXISTS (SELECT 1 FROM user_permissions up WHERE up.user_id = u.id AND up.module = $1 AND up.actions ~ ('[' || $2 || ']')))",
            module,
            letters,
        )
    ]


async def limit_grants_to(conn: asyncpg.Connection, module: str, offered: str) -> None:
    """Keep only the actions `module` still offers in every grant and API-user request; a grant left empty goes."""
    for table in ("role_permissions", "user_permissions", "api_user_permission_requests"):  # fixed names, not input
        kept = "regexp_replace(actions, '[^' || $2 || ']', '', 'g')"
        await conn.execute(f"DELETE FROM {table} WHERE module = $1 AND {kept} = ''", module, offered)
        await conn.execute(
            f"UPDATE {table} SET actions = {kept} WHERE module = $1 AND actions <> {kept}", module, offered
        )


# -- grants (role and user permissions) ------------------------------------------------------------------

_GRANTS = """
SELECT * FROM (
    SELECT g.id, m.id AS module_id, m.name AS module, m.actions AS offered, 'Role' AS entity_type, g.role AS entity_id, g.actions
    FROM role_permissions g JOIN acl_modules m ON m.name = g.module
    UNION ALL
    SELECT g.id, m.id, m.name, m.actions, 'User', g.user_id::text, g.actions
    FROM user_permissions g JOIN acl_modules m ON m.name = g.module
) grants
"""


async def insert_role_grant(conn: asyncpg.Connection, role: str, module: str, actions: str) -> int:
    return await conn.fetchval(
        "INSERT INTO role_permissions (role, module, actions) VALUES ($1, $2, $3) RETURNING id", role, module, actions
    )


async def insert_user_grant(conn: asyncpg.Connection, user_id: int, module: str, actions: str) -> int:
    return await conn.fetchval(
        "INSERT INTO user_permissions (user_id, module, actions) VALUES ($1, $2, $3) RETURNING id",
        user_id,
        module,
        actions,
    )


async def grant_by_id(conn: asyncpg.Connection, grant_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_GRANTS + " WHERE id = $1", grant_id)


async def grant_for(conn: asyncpg.Connection, entity_type: str, entity_id: str, module: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        _GRANTS + " WHERE entity_type = $1 AND entity_id = $2 AND module = $3", entity_type, entity_id, module
    )


_GRANT_TABLES = {"Role": "role_permissions", "User": "user_permissions"}


async def lock_grant(conn: asyncpg.Connection, entity_type: str, grant_id: int) -> str | None:
    """The grant's actions, locked until the caller's transaction ends (None once it is gone):
    two changes of one grant apply one after the other."""
    return await conn.fetchval(f"SELECT actions FROM {_GRANT_TABLES[entity_type]} WHERE id = $1 FOR UPDATE", grant_id)


async def set_grant_actions(conn: asyncpg.Connection, entity_type: str, grant_id: int, actions: str) -> None:
    await conn.execute(f"UPDATE {_GRANT_TABLES[entity_type]} SET actions = $2 WHERE id = $1", grant_id, actions)


async def delete_grant(conn: asyncpg.Connection, entity_type: str, grant_id: int) -> None:
    await conn.execute(f"DELETE FROM {_GRANT_TABLES[entity_type]} WHERE id = $1", grant_id)


async def grants_page(
    conn: asyncpg.Connection, page: Page, entity_type: str | None, entity_id: str | None, module: str | None
) -> tuple[list[asyncpg.Record], int]:
    where = " WHERE ($1::text IS NULL OR entity_type = $1) AND ($2::text IS NULL OR entity_id = $2) AND ($3::text IS NULL OR module = $3)"
    rows = await conn.fetch(
        _GRANTS + where + " ORDER BY id LIMIT $4 OFFSET $5", entity_type, entity_id, module, page.limit, page.offset
    )
    total = await conn.fetchval(
        "SELECT count(*) FROM (" + _GRANTS + where + ") matching", entity_type, entity_id, module
    )
    return rows, total


async def grants_of(conn: asyncpg.Connection, entity_type: str, entity_id: str) -> list[asyncpg.Record]:
    """A role's or a user's grants, newest first."""
    return await conn.fetch(
        _GRANTS + " WHERE entity_type = $1 AND entity_id = $2 ORDER BY id DESC", entity_type, entity_id
    )


async def user_ids_with_role(conn: asyncpg.Connection, role: str) -> list[int]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM users WHERE role = $1", role)]


async def revoke_tokens_of_users(conn: asyncpg.Connection, user_ids: list[int]) -> list[asyncpg.Record]:
    """Revoke every live token of these users; returns (user_id, jti, expires_at) of those revoked."""
    return await conn.fetch(
        "UPDATE access_tokens SET revoked_at = now() WHERE user_id = ANY($1::bigint[]) AND revoked_at IS NULL AND expires_at > now() "
        "RETURNING user_id, jti, expires_at",
        user_ids,
    )


# -- mails -------------------------------------------------------------------------------------------------


async def queue_mail(conn: asyncpg.Connection, recipient: str, subject: str, body: str) -> int:
    """Record a mail in the caller's transaction; it is sent once that transaction commits."""
    return await conn.fetchval(
        "INSERT INTO mails (recipient, subject, body) VALUES ($1, $2, $3) RETURNING id", recipient, subject, body
    )


async def lease_due_mails(
    conn: asyncpg.Connection, max_attempts: int, limit: int, lease_s: float
) -> list[asyncpg.Record]:
    """Due mails, leased for `lease_s` (their next attempt moved past it): sent after this transaction commits, and
    tried again by any instance if the lease runs out (a crash mid-send). Rows another instance is leasing are
    skipped. Oldest first."""
    rows = await conn.fetch(
        "UPDATE mails SET next_attempt_at = now() + make_interval(secs => $3) WHERE id IN ("
        " SELECT id FROM mails WHERE next_attempt_at <= now() AND attempts < $1 ORDER BY id LIMIT $2"
        " FOR UPDATE SKIP LOCKED) RETURNING id, recipient, subject, body, attempts",
        max_attempts,
        limit,
        lease_s,
    )
    return sorted(rows, key=lambda r: r["id"])


ABANDONED_BODY = "(not sent: its text was removed after the last attempt)"


async def mail_failed(
    conn: asyncpg.Connection, mail_id: int, attempts: int, error: str, retry_in_s: float, *, abandoned: bool
) -> None:
    """A failed attempt: tried again after `retry_in_s`, or, `abandoned`, kept for an operator with its error but
    without its text (it may hold a one-time token)."""
    await conn.execute(
        "UPDATE mails SET attempts = $2, last_error = $3, next_attempt_at = now() + make_interval(secs => $4),"
        " body = CASE WHEN $5 THEN $6 ELSE body END WHERE id = $1",
        mail_id,
        attempts,
        error,
        retry_in_s,
        abandoned,
        ABANDONED_BODY,
    )


async def delete_mail(conn: asyncpg.Connection, mail_id: int) -> None:
    await conn.execute("DELETE FROM mails WHERE id = $1", mail_id)


# -- dead letters an admin replayed (issue 13) ----------------------------------------------------------------


async def dead_letter_replays(conn: asyncpg.Connection, topics: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        'SELECT topic, partition, "offset", replayed_at, replayed_by FROM dead_letter_replays '
        "WHERE topic = ANY($1::text[])",
        topics,
    )


async def record_dead_letter_replays(
    conn: asyncpg.Connection, letters: list[tuple[str, int, int, str | None]], user_id: int
) -> None:
    """(topic, partition, offset, event id) replayed now by `user_id`; a second replay moves its time."""
    await conn.executemany(
        'INSERT INTO dead_letter_replays (topic, partition, "offset", event_id, replayed_by) '
        'VALUES ($1, $2, $3, $4, $5) ON CONFLICT (topic, partition, "offset") '
        "DO UPDATE SET replayed_at = now(), replayed_by = EXCLUDED.replayed_by",
        [(*letter, user_id) for letter in letters],
    )
