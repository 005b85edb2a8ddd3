"""ACL modules and the grants an Admin gives per role and per user (D-REC API-user manual, steps 1-2).

Grants are read when a token is issued (its `perms`), so an addition shows in the holder's next
token. A reduction (a grant cut or removed, a module offering fewer actions or disabled) must not
wait for old tokens to expire: the affected users' sessions are revoked at once, everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from opendrec_kit import ApiError, Principal, UnitOfWork
from opendrec_kit.paging import Page
from opendrec_kit.timestamps import iso

from .. import domain, store
from ..bodies import ModuleChange, NewGrant, NewModule
from .common import Identity, invalid, page_of, refusing_taken, revoke_sessions_of_users, visible_user

log = logging.getLogger(__name__)


def module_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "permissions": domain.action_names(row["actions"]),
        "status": row["status"],
        "createdAt": iso(row["created_at"]),
    }


def grant_out(row: Any) -> dict[str, Any]:
    entity_id = int(row["entity_id"]) if row["entity_type"] == "User" else row["entity_id"]
    return {
        "id": row["id"],
        "aclmodulesId": row["module_id"],
        "moduleName": row["module"],
        "entityType": row["entity_type"],
        "entityId": entity_id,
        "permissions": domain.action_names(row["actions"]),
        "permissionValue": domain.permission_value(row["actions"]),
        "status": 1,  # D-REC's "active" (a grant here is in force until removed)
    }


def _offered(module: str, offered: str, letters: str) -> str:
    try:
        return domain.check_offered(module, offered, letters)
    except domain.Invalid as exc:
        raise invalid("permissions", str(exc)) from None


async def _affected(conn: asyncpg.Connection, grant: asyncpg.Record) -> list[int]:
    """Who holds a grant: the user it was given to, or every user of the role."""
    if grant["entity_type"] == "User":
        return [int(grant["entity_id"])]
    return await store.user_ids_with_role(conn, grant["entity_id"])


async def _user_target(conn: asyncpg.Connection, entity_id: str | int) -> int:
    try:
        user_id = domain.grantable_user_id(entity_id)
    except domain.Invalid as exc:
        raise invalid("entityId", str(exc)) from None
    user = await store.user_by_id(conn, user_id)
    if user is None or user["status"] == "Deleted":
        raise invalid("entityId", f"no user with id {user_id}")
    try:
        domain.grantable_role(user["role"])
    except domain.Invalid as exc:
        raise invalid("entityId", f"user {user_id} is {user['role']}: {exc}") from None
    return user_id


def _managed_elsewhere(grant: asyncpg.Record, user_role: str | None) -> None:
    """Grants of API users come from their approved request; an admin changes those by approving."""
    if grant["entity_type"] == "User" and user_role == domain.API_USER:
        raise ApiError(409, domain.API_USER_GRANTS)


def _duplicate(entity_type: str, entity_id: str, module: str, grant_id: int | None) -> ApiError:
    where = (
        f" (id {grant_id}); change it with PUT /api/permission/{grant_id}"
        if grant_id
        else "; change it with PUT /api/permission/{id}"
    )
    return ApiError(409, f"{entity_type} {entity_id} already has a grant in {module}{where}")


# -- ACL modules ------------------------------------------------------------------------------------------------


async def create_module(uow: UnitOfWork, principal: Principal, body: NewModule) -> dict[str, Any]:
    """An ACL module and the actions it offers."""
    taken = ApiError(
        409, f"An ACL module named {body.name} already exists", [{"field": "name", "message": "already exists"}]
    )
    with refusing_taken(store.ACL_MODULE_NAME_UNIQUE, taken):
        async with uow:
            row = await store.insert_acl_module(
                uow.conn, body.name, body.description, domain.letters_of(body.permissions), body.status
            )
    log.info("acl module created", extra={"acl_module": row["name"], "module_id": row["id"], "by": principal.user_id})
    return module_out(row)


async def modules(uow: UnitOfWork, page: Page) -> dict[str, Any]:
    async with uow.reading() as r:
        rows, total = await store.acl_modules_page(r.conn, page)
    return page_of("aclmodules", [module_out(row) for row in rows], page, total)


async def module(uow: UnitOfWork, module_id: int) -> dict[str, Any]:
    async with uow.reading() as r:
        row = await store.acl_module_by_id(r.conn, module_id)
    if row is None:
        raise ApiError(404, f"ACL module {module_id} does not exist")
    return module_out(row)


async def change_module(
    uow: UnitOfWork, identity: Identity, principal: Principal, module_id: int, body: ModuleChange
) -> dict[str, Any]:
    """Change what a module offers, its description, or enable/disable it. Grants keep only the actions the
    module still offers; users who lose something (offer cut, module disabled) have their sessions revoked."""
    async with uow:
        before = await store.acl_module_by_id(uow.conn, module_id, lock=True)
        if before is None:
            raise ApiError(404, f"ACL module {module_id} does not exist")
        offered = domain.letters_of(body.permissions) if body.permissions is not None else before["actions"]
        status = body.status or before["status"]
        # What holders lose: a disabled module gives nothing.
        lost = domain.removed_actions(
            before["actions"] if before["status"] == "Enable" else "", offered if status == "Enable" else ""
        )
        affected = await store.users_holding(uow.conn, before["name"], lost) if lost else []
        if offered != before["actions"]:
            await store.limit_grants_to(uow.conn, before["name"], offered)
        row = await store.update_acl_module(uow.conn, module_id, body.description, offered, status)
        revoked = await revoke_sessions_of_users(uow, affected)
    identity.refuse_here(revoked)
    log.info(
        "acl module changed",
        extra={
            "acl_module": row["name"],
            "actions": row["actions"],
            "status": row["status"],
            "users_affected": len(affected),
            "by": principal.user_id,
        },
    )
    return module_out(row)


# -- grants -------------------------------------------------------------------------------------------------------


async def grant(uow: UnitOfWork, principal: Principal, body: NewGrant) -> dict[str, Any]:
    """Actions of a module for a role or one user, on top of what they hold (shown in their next token)."""
    letters = domain.letters_of(body.permissions)
    try:
        async with uow:
            conn = uow.conn
            if body.aclmodulesId is not None:
                module, field = await store.acl_module_by_id(conn, body.aclmodulesId), "aclmodulesId"
            else:
                module, field = await store.acl_module_by_name(conn, body.moduleName or ""), "moduleName"
            if module is None:
                raise invalid(field, "no such ACL module (GET /api/aclmodules lists them)")
            _offered(module["name"], module["actions"], letters)
            if body.entityType == "Role":
                try:
                    entity_id = domain.grantable_role_named(str(body.entityId))
                except domain.Invalid as exc:
                    raise invalid("entityId", str(exc)) from None
            else:
                entity_id = str(await _user_target(conn, body.entityId))
            existing = await store.grant_for(conn, body.entityType, entity_id, module["name"])
            if existing is not None:
                raise _duplicate(body.entityType, entity_id, module["name"], existing["id"])
            if body.entityType == "Role":
                grant_id = await store.insert_role_grant(conn, entity_id, module["name"], letters)
            else:
                grant_id = await store.insert_user_grant(conn, int(entity_id), module["name"], letters)
            row = await store.grant_by_id(conn, grant_id)
    except asyncpg.UniqueViolationError as exc:  # granted by someone else since our check
        if exc.constraint_name not in (store.ROLE_GRANT_UNIQUE, store.USER_GRANT_UNIQUE):
            raise
        raise _duplicate(body.entityType, str(body.entityId), str(body.moduleName or body.aclmodulesId), None) from None
    log.info(
        "permission granted",
        extra={
            "grant_id": grant_id,
            "entity_type": body.entityType,
            "entity_id": entity_id,
            "acl_module": module["name"],
            "actions": letters,
            "by": principal.user_id,
        },
    )
    return grant_out(row)


async def grants(
    uow: UnitOfWork,
    page: Page,
    entity_type: str | None,
    entity_id: str | None,
    module_name: str | None,
    module_id: int | None,
) -> dict[str, Any]:
    """Role and user grants, oldest first, filtered by entity and module (by name and/or id)."""
    async with uow.reading() as r:
        if module_id is not None:
            module = await store.acl_module_by_id(r.conn, module_id)
            if module is None or (module_name is not None and module_name != module["name"]):
                return {"permissions": [], "currentPage": page.number, "totalPages": 0, "totalCount": 0}
            module_name = module["name"]
        rows, total = await store.grants_page(r.conn, page, entity_type, entity_id, module_name)
    return page_of("permissions", [grant_out(row) for row in rows], page, total)


async def role_grants(uow: UnitOfWork, role_id: str) -> list[dict[str, Any]]:
    """A role's grants (named by D-REC's role id or by its name), newest first. Admin and ApiUser hold none:
    Admin holds everything, an API user what its approved request gives it."""
    role = domain.role_named(role_id)
    if role is None:
        raise ApiError(
            404, f"Role {role_id} does not exist (ids: {', '.join(f'{i} {r}' for i, r in domain.ROLE_IDS.items())})"
        )
    async with uow.reading() as r:
        rows = await store.grants_of(r.conn, "Role", role)
    return [grant_out(row) for row in rows]


async def user_grants(uow: UnitOfWork, principal: Principal, user_id: int) -> list[dict[str, Any]]:
    """The grants given to one user on top of their role's (an API user: its approved modules), newest first;
    for a user the caller may read (domain.user_visibility)."""
    async with uow.reading() as r:
        await visible_user(r.conn, principal, user_id)
        rows = await store.grants_of(r.conn, "User", str(user_id))
    return [grant_out(row) for row in rows]


async def _locked_grant(conn: asyncpg.Connection, grant_id: int) -> tuple[asyncpg.Record, str]:
    """The grant, locked, with its current actions; 404 if there is none, 409 if an API user's."""
    row = await store.grant_by_id(conn, grant_id)
    actions = await store.lock_grant(conn, row["entity_type"], grant_id) if row else None
    if row is None or actions is None:
        raise ApiError(404, f"Permission {grant_id} does not exist")
    if row["entity_type"] == "User":
        user = await store.user_by_id(conn, int(row["entity_id"]))
        _managed_elsewhere(row, user["role"] if user else None)
    return row, actions


async def change_grant(
    uow: UnitOfWork, identity: Identity, principal: Principal, grant_id: int, actions: Sequence[str]
) -> dict[str, Any]:
    """Set the actions a grant gives. If any is taken away, the holders' current sessions are revoked."""
    letters = domain.letters_of(actions)
    async with uow:
        row, before = await _locked_grant(uow.conn, grant_id)
        _offered(row["module"], row["offered"], letters)
        await store.set_grant_actions(uow.conn, row["entity_type"], grant_id, letters)
        reduced = bool(domain.removed_actions(before, letters))
        affected = await _affected(uow.conn, row) if reduced else []
        revoked = await revoke_sessions_of_users(uow, affected)
        row = await store.grant_by_id(uow.conn, grant_id)
    identity.refuse_here(revoked)
    log.info(
        "permission changed",
        extra={"grant_id": grant_id, "actions": letters, "users_affected": len(affected), "by": principal.user_id},
    )
    return grant_out(row)


async def remove_grant(uow: UnitOfWork, identity: Identity, principal: Principal, grant_id: int) -> dict[str, Any]:
    """Remove a grant; the holders' current sessions are revoked."""
    async with uow:
        row, _ = await _locked_grant(uow.conn, grant_id)
        await store.delete_grant(uow.conn, row["entity_type"], grant_id)
        affected = await _affected(uow.conn, row)
        revoked = await revoke_sessions_of_users(uow, affected)
    identity.refuse_here(revoked)
    log.info(
        "permission removed", extra={"grant_id": grant_id, "users_affected": len(affected), "by": principal.user_id}
    )
    return {
        "success": True,
        "message": f"Permission {grant_id} ({row['entity_type']} {row['entity_id']}, {row['module']}) has been removed",
    }
