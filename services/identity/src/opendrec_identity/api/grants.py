"""ACL modules and grants over HTTP (Admin only): parse, authorize, call a use case (services/grants.py), answer."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Query

from opendrec_kit import CurrentPrincipal, Principal, UoW, permission
from opendrec_kit.paging import Page

from ..bodies import Done, GrantChange, GrantOut, GrantsPage, ModuleChange, ModuleOut, ModulesPage, NewGrant, NewModule
from ..services import grants as use_cases
from .deps import ADMIN_ONLY, Ident, Paging
from .params import IdPath, ModuleIdPath, ModuleIdQuery

router = APIRouter()


# -- ACL modules ------------------------------------------------------------------------------------------------


@router.post("/api/aclmodules", status_code=201, response_model=ModuleOut, tags=["aclmodules"], dependencies=ADMIN_ONLY)
async def create_module(
    body: NewModule, uow: UoW, principal: Principal = permission("ACL_MODULE_MANAGEMENT_CRUDL", "Write")
) -> dict[str, Any]:
    """Add an ACL module and the actions it offers; then grant them to roles or users (POST /api/permission)."""
    return await use_cases.create_module(uow, principal, body)


@router.get("/api/aclmodules", response_model=ModulesPage, tags=["aclmodules"], dependencies=ADMIN_ONLY)
async def modules(
    uow: UoW, page: Page = Paging, principal: Principal = permission("ACL_MODULE_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """Every ACL module, oldest first, a page at a time."""
    return await use_cases.modules(uow, page)


@router.get("/api/aclmodules/{id}", response_model=ModuleOut, tags=["aclmodules"], dependencies=ADMIN_ONLY)
async def module(
    id: ModuleIdPath, uow: UoW, principal: Principal = permission("ACL_MODULE_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """One ACL module."""
    return await use_cases.module(uow, id)


@router.put("/api/aclmodules/{id}", response_model=ModuleOut, tags=["aclmodules"], dependencies=ADMIN_ONLY)
async def change_module(
    id: ModuleIdPath,
    body: ModuleChange,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("ACL_MODULE_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Change what a module offers, its description, or enable/disable it. Grants keep only the actions the
    module still offers; users who lose something (offer cut, module disabled) have their sessions revoked."""
    return await use_cases.change_module(uow, identity, principal, id, body)


# -- grants -------------------------------------------------------------------------------------------------------


@router.post("/api/permission", status_code=201, response_model=GrantOut, tags=["permission"], dependencies=ADMIN_ONLY)
async def grant(
    body: NewGrant, uow: UoW, principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Write")
) -> dict[str, Any]:
    """Grant actions of a module to a role (entityType Role, entityId the role's name) or to one user
    (entityType User, entityId the user's id), on top of what they hold. Holders see it in their next token."""
    return await use_cases.grant(uow, principal, body)


@router.get("/api/permission", response_model=GrantsPage, tags=["permission"], dependencies=ADMIN_ONLY)
async def grants(
    uow: UoW,
    page: Page = Paging,
    entityType: Literal["Role", "User"] | None = Query(None),
    entityId: str | None = Query(None, max_length=100, description="a role's name or a user's id"),
    moduleName: str | None = Query(None, max_length=100),
    aclmodulesId: ModuleIdQuery = None,
    principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """Role and user grants, oldest first, a page at a time; filter by entityType, entityId and module."""
    return await use_cases.grants(uow, page, entityType, entityId, moduleName, aclmodulesId)


@router.get("/api/permission/role/{id}", response_model=list[GrantOut], tags=["permission"], dependencies=ADMIN_ONLY)
async def role_grants(
    uow: UoW,
    id: str = Path(max_length=20, description="D-REC's role id (1 Admin ... 7 SubBuyer) or the role's name"),
    principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Read"),
) -> list[dict[str, Any]]:
    """The grants of a role, newest first. Admin only (D-REC also names OrganizationAdmin, which holds no
    PERMISSION_MANAGEMENT_CRUDL here)."""
    return await use_cases.role_grants(uow, id)


@router.get("/api/permission/user/{id}", response_model=list[GrantOut], tags=["permission"])
async def user_grants(id: IdPath, principal: CurrentPrincipal, uow: UoW) -> list[dict[str, Any]]:
    """The grants given to one user on top of their role's (an API user: its approved modules), newest first:
    the caller's own, a member's of the organization the caller administers, anyone's for an Admin."""
    return await use_cases.user_grants(uow, principal, id)


@router.put("/api/permission/{id}", response_model=GrantOut, tags=["permission"], dependencies=ADMIN_ONLY)
async def change_grant(
    id: IdPath,
    body: GrantChange,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Set the actions a grant gives. If any is taken away, the holders' current sessions are revoked
    (their next token carries the reduced permissions)."""
    return await use_cases.change_grant(uow, identity, principal, id, body.permissions)


@router.delete("/api/permission/{id}", response_model=Done, tags=["permission"], dependencies=ADMIN_ONLY)
async def remove_grant(
    id: IdPath,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Delete"),
) -> dict[str, Any]:
    """Remove a grant; the holders' current sessions are revoked."""
    return await use_cases.remove_grant(uow, identity, principal, id)


# -- D-REC's paths of the ACL module operations: aliases, the same handlers ------------------------------------

ACL_ALIAS = "/api/access-control-layer-module-service"

router.add_api_route(
    ACL_ALIAS,
    modules,
    methods=["GET"],
    response_model=ModulesPage,
    tags=["aclmodules"],
    dependencies=ADMIN_ONLY,
    summary="Modules (alias of GET /api/aclmodules)",
)
router.add_api_route(
    ACL_ALIAS,
    create_module,
    methods=["POST"],
    status_code=201,
    response_model=ModuleOut,
    tags=["aclmodules"],
    dependencies=ADMIN_ONLY,
    summary="Create Module (alias of POST /api/aclmodules)",
)
router.add_api_route(
    ACL_ALIAS + "/update/{id}",
    change_module,
    methods=["PUT"],
    response_model=ModuleOut,
    tags=["aclmodules"],
    dependencies=ADMIN_ONLY,
    summary="Change Module (alias of PUT /api/aclmodules/{id})",
)

# -- D-REC's paths of the grant operations: aliases, the same handlers -------------------------------------------

router.add_api_route(
    "/api/permission/module",
    grant,
    methods=["POST"],
    status_code=201,
    response_model=GrantOut,
    tags=["permission"],
    dependencies=ADMIN_ONLY,
    summary="Grant (alias of POST /api/permission)",
    description="D-REC's path of POST /api/permission, the same handler: its body (`aclmodulesId`, `entityType`, "
    "`entityId` a role's D-REC id or name or a user's id, `permissions`; `permissionValue` and `status` are "
    "computed here and not read). Admin only: D-REC also lets an OrganizationAdmin grant to users, who holds no "
    "PERMISSION_MANAGEMENT_CRUDL here.",
)
router.add_api_route(
    "/api/permission/update/{id}",
    change_grant,
    methods=["PUT"],
    response_model=GrantOut,
    tags=["permission"],
    dependencies=ADMIN_ONLY,
    summary="Change Grant (alias of PUT /api/permission/{id})",
    description="D-REC's path of PUT /api/permission/{id}, the same handler: `permissions` is read (D-REC's "
    "`aclmodulesId`, `entityType`, `entityId`, `permissionValue`, `status` are not). A reduction revokes the "
    "holders' sessions.",
)
