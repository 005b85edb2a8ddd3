"""Identity's SQL: one function per query, parameters always bound."""

from __future__ import annotations

import asyncpg

from . import domain

# Names of the unique indexes, as asyncpg reports them in a UniqueViolationError.
EMAIL_UNIQUE = "users_email_unique"
ORGANIZATION_NAME_UNIQUE = "organizations_name_unique"

_ADMIN_BOOTSTRAP_LOCK = 0x1DE0001  # advisory lock key: one replica creates the first admin

_USER_WITH_ORGANIZATION = """
SELECT u.id, u.first_name, u.last_name, u.email, u.password_hash, u.role, u.status, u.email_confirmed,
       u.created_at, u.organization_id, o.name AS organization_name, o.address AS organization_address,
       o.organization_type, o.status AS organization_status, o.created_at AS organization_created_at
FROM users u JOIN organizations o ON o.id = u.organization_id
"""


async def email_taken(conn: asyncpg.Connection, email: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)", email))


async def organization_name_taken(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM organizations WHERE lower(name) = lower($1))", name))


async def insert_organization(
    conn: asyncpg.Connection, *, name: str, address: str | None, organization_type: str, secret_key_hash: str | None
) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO organizations (name, address, organization_type, secret_key_hash) VALUES ($1, $2, $3, $4) "
        "RETURNING id, name, address, organization_type, status, created_at",
        name,
        address,
        organization_type,
        secret_key_hash,
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


async def user_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_USER_WITH_ORGANIZATION + " WHERE u.email = $1", email)


async def user_by_id(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_USER_WITH_ORGANIZATION + " WHERE u.id = $1", user_id)


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
