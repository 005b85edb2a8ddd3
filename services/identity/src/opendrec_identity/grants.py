"""ACL modules and the grants an Admin gives per role and per user (D-REC API-user manual, steps 1-2).

Grants are read when a token is issued (its `perms`), so an addition shows in the holder's next
token. A reduction (a grant cut or removed, a module offering fewer actions or disabled) must not
wait for old tokens to expire: the affected users' sessions are revoked at once, everywhere.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from opendrec_kit import ApiError, Pool, Principal, Runtime, permission
from opendrec_kit.errors import field_rule

from . import domain, store
from .api import Done, revoke_here, revoke_sessions_of_users
from .organizations import ADMIN_ONLY, Paging

log = logging.getLogger(__name__)

router = APIRouter()

Action = Literal["Read", "Write", "Update", "Delete"]
ModuleStatus = Literal["Enable", "Disable"]


# -- bodies (origin-drec-api field names) ---------------------------------------------------------------------


class NewModule(BaseModel):
    name: str = Field(description=domain.MODULE_NAME_RULE)
    description: str = ""
    permissions: list[Action] = Field(min_length=1, description="the actions the module offers")
    status: ModuleStatus = "Enable"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return field_rule(domain.check_module_name, value)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return field_rule(domain.optional_text, value, "description", 500) or ""


class ModuleChange(BaseModel):
    description: str | None = None
    permissions: list[Action] | None = Field(
        default=None, min_length=1, description="the actions the module offers from now on"
    )
    status: ModuleStatus | None = None

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return None if value is None else field_rule(domain.optional_text, value, "description", 500) or ""

    @model_validator(mode="after")
    def _something(self) -> ModuleChange:
        if self.description is None and self.permissions is None and self.status is None:
            raise PydanticCustomError("empty", "give description, permissions or status")
        return self


class ModuleOut(BaseModel):
    id: int
    name: str
    description: str
    permissions: list[str] = Field(description="the actions the module offers")
    status: str
    createdAt: datetime


class ModulesPage(BaseModel):
    aclmodules: list[ModuleOut]
    currentPage: int
    totalPages: int
    totalCount: int


class NewGrant(BaseModel):
    aclmodulesId: int | None = None
    moduleName: str | None = None
    entityType: Literal["Role", "User"]
    entityId: str | int = Field(description="Role: the role's name (e.g. DeviceOwner); User: the user's id")
    permissions: list[Action] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_module(self) -> NewGrant:
        if (self.aclmodulesId is None) == (self.moduleName is None):
            raise PydanticCustomError("module", "give aclmodulesId or moduleName (one of them)")
        return self


class GrantChange(BaseModel):
    permissions: list[Action] = Field(
        min_length=1, description="the actions granted from now on (to remove them all, DELETE the grant)"
    )


class GrantOut(BaseModel):
    id: int
    aclmodulesId: int
    moduleName: str
    entityType: str
    entityId: str | int = Field(description="Role: its name; User: the user's id")
    permissions: list[str]


class GrantsPage(BaseModel):
    permissions: list[GrantOut]
    currentPage: int
    totalPages: int
    totalCount: int


def module_out(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "permissions": domain.action_names(row["actions"]),
        "status": row["status"],
        "createdAt": row["created_at"],
    }


def grant_out(row: asyncpg.Record) -> dict[str, Any]:
    entity_id = int(row["entity_id"]) if row["entity_type"] == "User" else row["entity_id"]
    return {
        "id": row["id"],
        "aclmodulesId": row["module_id"],
        "moduleName": row["module"],
        "entityType": row["entity_type"],
        "entityId": entity_id,
        "permissions": domain.action_names(row["actions"]),
    }


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(400, f"Invalid request: check {field}", [{"field": field, "message": message}])


def _offered(module: str, offered: str, letters: str) -> str:
    try:
        return domain.check_offered(module, offered, letters)
    except domain.Invalid as exc:
        raise _invalid("permissions", str(exc)) from None


async def _affected(conn: asyncpg.Connection, grant: asyncpg.Record) -> list[int]:
    """Who holds a grant: the user it was given to, or every user of the role."""
    if grant["entity_type"] == "User":
        return [int(grant["entity_id"])]
    return await store.user_ids_with_role(conn, grant["entity_id"])


async def _user_target(conn: asyncpg.Connection, entity_id: str | int) -> int:
    try:
        user_id = domain.grantable_user_id(entity_id)
    except domain.Invalid as exc:
        raise _invalid("entityId", str(exc)) from None
    user = await store.user_by_id(conn, user_id)
    if user is None or user["status"] == "Deleted":
        raise _invalid("entityId", f"no user with id {user_id}")
    try:
        domain.grantable_role(user["role"])
    except domain.Invalid as exc:
        raise _invalid("entityId", f"user {user_id} is {user['role']}: {exc}") from None
    return user_id


def _managed_elsewhere(grant: asyncpg.Record, user_role: str | None) -> None:
    """Grants of API users come from their approved request; an admin changes those by approving."""
    if grant["entity_type"] == "User" and user_role == domain.API_USER:
        raise ApiError(409, domain.API_USER_GRANTS)


# -- ACL modules ------------------------------------------------------------------------------------------------


@router.post("/api/aclmodules", status_code=201, response_model=ModuleOut, tags=["aclmodules"], dependencies=ADMIN_ONLY)
async def create_module(
    body: NewModule, pool: Pool, principal: Principal = permission("ACL_MODULE_MANAGEMENT_CRUDL", "Write")
) -> dict[str, Any]:
    """Add an ACL module and the actions it offers; then grant them to roles or users (POST /api/permission)."""
    try:
        async with pool.acquire() as conn:
            row = await store.insert_acl_module(
                conn, body.name, body.description, domain.letters_of(body.permissions), body.status
            )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != store.ACL_MODULE_NAME_UNIQUE:
            raise
        raise ApiError(
            409, f"An ACL module named {body.name} already exists", [{"field": "name", "message": "already exists"}]
        ) from None
    log.info("acl module created", extra={"module": row["name"], "module_id": row["id"], "by": principal.user_id})
    return module_out(row)


@router.get("/api/aclmodules", response_model=ModulesPage, tags=["aclmodules"], dependencies=ADMIN_ONLY)
async def modules(
    pool: Pool, page: domain.Page = Paging, principal: Principal = permission("ACL_MODULE_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """Every ACL module, oldest first, a page at a time."""
    async with pool.acquire() as conn:
        rows, total = await store.acl_modules_page(conn, page)
    return {
        "aclmodules": [module_out(r) for r in rows],
        "currentPage": page.number,
        "totalPages": domain.total_pages(total, page.limit),
        "totalCount": total,
    }


@router.get("/api/aclmodules/{id}", response_model=ModuleOut, tags=["aclmodules"], dependencies=ADMIN_ONLY)
async def module(
    id: int, pool: Pool, principal: Principal = permission("ACL_MODULE_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """One ACL module."""
    async with pool.acquire() as conn:
        row = await store.acl_module_by_id(conn, id)
    if row is None:
        raise ApiError(404, f"ACL module {id} does not exist")
    return module_out(row)


@router.put("/api/aclmodules/{id}", response_model=ModuleOut, tags=["aclmodules"], dependencies=ADMIN_ONLY)
async def change_module(
    id: int,
    body: ModuleChange,
    request: Request,
    pool: Pool,
    runtime: Runtime,
    principal: Principal = permission("ACL_MODULE_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Change what a module offers, its description, or enable/disable it. Grants keep only the actions the
    module still offers; users who lose something (offer cut, module disabled) have their sessions revoked."""
    async with pool.acquire() as conn, conn.transaction():
        before = await store.acl_module_by_id(conn, id, lock=True)
        if before is None:
            raise ApiError(404, f"ACL module {id} does not exist")
        offered = domain.letters_of(body.permissions) if body.permissions is not None else before["actions"]
        status = body.status or before["status"]
        # What holders lose: a disabled module gives nothing.
        lost = domain.removed_actions(
            before["actions"] if before["status"] == "Enable" else "", offered if status == "Enable" else ""
        )
        affected = await store.users_holding(conn, before["name"], lost) if lost else []
        if offered != before["actions"]:
            await store.limit_grants_to(conn, before["name"], offered)
        row = await store.update_acl_module(conn, id, body.description, offered, status)
        revoked = await revoke_sessions_of_users(conn, affected, runtime.settings.service_name)
    revoke_here(request, revoked)
    log.info(
        "acl module changed",
        extra={
            "module": row["name"],
            "actions": row["actions"],
            "status": row["status"],
            "users_affected": len(affected),
            "by": principal.user_id,
        },
    )
    return module_out(row)


# -- grants -------------------------------------------------------------------------------------------------------


@router.post("/api/permission", status_code=201, response_model=GrantOut, tags=["permission"], dependencies=ADMIN_ONLY)
async def grant(
    body: NewGrant, pool: Pool, principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Write")
) -> dict[str, Any]:
    """Grant actions of a module to a role (entityType Role, entityId the role's name) or to one user
    (entityType User, entityId the user's id), on top of what they hold. Holders see it in their next token."""
    letters = domain.letters_of(body.permissions)
    try:
        async with pool.acquire() as conn, conn.transaction():
            if body.aclmodulesId is not None:
                module, field = await store.acl_module_by_id(conn, body.aclmodulesId), "aclmodulesId"
            else:
                module, field = await store.acl_module_by_name(conn, body.moduleName or ""), "moduleName"
            if module is None:
                raise _invalid(field, "no such ACL module (GET /api/aclmodules lists them)")
            _offered(module["name"], module["actions"], letters)
            if body.entityType == "Role":
                try:
                    entity_id = domain.grantable_role(str(body.entityId))
                except domain.Invalid as exc:
                    raise _invalid("entityId", str(exc)) from None
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
            "module": module["name"],
            "actions": letters,
            "by": principal.user_id,
        },
    )
    return grant_out(row)


def _duplicate(entity_type: str, entity_id: str, module: str, grant_id: int | None) -> ApiError:
    where = (
        f" (id {grant_id}); change it with PUT /api/permission/{grant_id}"
        if grant_id
        else "; change it with PUT /api/permission/{id}"
    )
    return ApiError(409, f"{entity_type} {entity_id} already has a grant in {module}{where}")


@router.get("/api/permission", response_model=GrantsPage, tags=["permission"], dependencies=ADMIN_ONLY)
async def grants(
    pool: Pool,
    page: domain.Page = Paging,
    entityType: Literal["Role", "User"] | None = Query(None),
    entityId: str | None = Query(None, max_length=100, description="a role's name or a user's id"),
    moduleName: str | None = Query(None, max_length=100),
    aclmodulesId: int | None = Query(None),
    principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """Role and user grants, oldest first, a page at a time; filter by entityType, entityId and module."""
    async with pool.acquire() as conn:
        module_name = moduleName
        if aclmodulesId is not None:
            module = await store.acl_module_by_id(conn, aclmodulesId)
            if module is None or (moduleName is not None and moduleName != module["name"]):
                return {"permissions": [], "currentPage": page.number, "totalPages": 0, "totalCount": 0}
            module_name = module["name"]
        rows, total = await store.grants_page(conn, page, entityType, entityId, module_name)
    return {
        "permissions": [grant_out(r) for r in rows],
        "currentPage": page.number,
        "totalPages": domain.total_pages(total, page.limit),
        "totalCount": total,
    }


async def _grant(conn: asyncpg.Connection, grant_id: int) -> tuple[asyncpg.Record, str]:
    """The grant, locked, with its current actions; 404 if there is none, 409 if an API user's."""
    row = await store.grant_by_id(conn, grant_id)
    actions = await store.lock_grant(conn, row["entity_type"], grant_id) if row else None
    if row is None or actions is None:
        raise ApiError(404, f"Permission {grant_id} does not exist")
    if row["entity_type"] == "User":
        user = await store.user_by_id(conn, int(row["entity_id"]))
        _managed_elsewhere(row, user["role"] if user else None)
    return row, actions


@router.put("/api/permission/{id}", response_model=GrantOut, tags=["permission"], dependencies=ADMIN_ONLY)
async def change_grant(
    id: int,
    body: GrantChange,
    request: Request,
    pool: Pool,
    runtime: Runtime,
    principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Set the actions a grant gives. If any is taken away, the holders' current sessions are revoked
    (their next token carries the reduced permissions)."""
    letters = domain.letters_of(body.permissions)
    async with pool.acquire() as conn, conn.transaction():
        row, before = await _grant(conn, id)
        _offered(row["module"], row["offered"], letters)
        await store.set_grant_actions(conn, row["entity_type"], id, letters)
        reduced = bool(domain.removed_actions(before, letters))
        affected = await _affected(conn, row) if reduced else []
        revoked = await revoke_sessions_of_users(conn, affected, runtime.settings.service_name)
        row = await store.grant_by_id(conn, id)
    revoke_here(request, revoked)
    log.info(
        "permission changed",
        extra={"grant_id": id, "actions": letters, "users_affected": len(affected), "by": principal.user_id},
    )
    return grant_out(row)


@router.delete("/api/permission/{id}", response_model=Done, tags=["permission"], dependencies=ADMIN_ONLY)
async def remove_grant(
    id: int,
    request: Request,
    pool: Pool,
    runtime: Runtime,
    principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Delete"),
) -> dict[str, Any]:
    """Remove a grant; the holders' current sessions are revoked."""
    async with pool.acquire() as conn, conn.transaction():
        row, _ = await _grant(conn, id)
        await store.delete_grant(conn, row["entity_type"], id)
        affected = await _affected(conn, row)
        revoked = await revoke_sessions_of_users(conn, affected, runtime.settings.service_name)
    revoke_here(request, revoked)
    log.info("permission removed", extra={"grant_id": id, "users_affected": len(affected), "by": principal.user_id})
    return {
        "success": True,
        "message": f"Permission {id} ({row['entity_type']} {row['entity_id']}, {row['module']}) has been removed",
    }
